// Package mempool mirrors a Bitcoin node's mempool with the raw
// transactions, so that the Job Declarator Server finds the transactions of
// a declared job by wtxid without asking the miner for them.
//
// The package has a core and a shell:
//
//   - Store (store.go) is the core: raw transactions found by txid and by
//     wtxid in O(1), removal of a block's transactions and of the mempool
//     transactions that conflict with it, a diff against a full listing
//     (Reconcile), a memory bound with eviction by fee rate, and the lookup
//     of a declared job's wtxids with hit and miss counters. It does no IO
//     and any number of readers run in parallel with its one writer.
//   - Mirror (mirror.go, zmqloop.go) is the shell: it fills the store from
//     the node (getrawmempool, then getrawtransaction in batches) and keeps
//     it current, either from ZMQ `sequence` (+ `rawtx`) notifications with
//     gap detection and resync (Bitcoin Core, Knots), or by polling
//     getrawmempool and diffing (btcd, or a node without ZMQ). A node that
//     is down or restarted is retried with backoff and resynced when back.
//
// What "in sync" means here: a transaction that reaches the node is in the
// mirror after the node's ZMQ message plus one getrawtransaction round
// (FetchDelay, 100 ms by default; none with rawtx), or after at most one
// PollInterval (2 s by default) when polling. Stats().LookupMisses over
// LookupHits+LookupMisses is the rate at which declarations find a
// transaction missing; for a miner whose node is in sync it should stay
// near zero.
//
// The parser (parse.go) reads a transaction in one bounded pass without
// allocating per input or output, so hostile bytes cost nothing; a fuzz
// target checks that it accepts exactly what btcd's wire.MsgTx accepts and
// computes the same ids.
package mempool
