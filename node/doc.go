// Package node gives the rest of sv2kit access to a Bitcoin node: Bitcoin Core
// or Knots (0.21 and later) over JSON-RPC and ZMQ, and btcd over JSON-RPC.
//
// The package has four parts:
//
//   - Client (rpc.go, methods.go): JSON-RPC through btcd's rpcclient in HTTP
//     POST mode, with context-aware calls, cookie or user/password
//     authentication, typed results (BlockTemplate and friends) and errors
//     that say what is wrong and what to do (errors.go: Hint).
//   - Subscriber (zmq.go): ZMQ `hashblock`, `sequence` and `rawtx` topics as
//     typed events, each topic's sequence number checked so that a lost
//     message becomes a Gap event and the caller resyncs.
//   - TipWatcher (tipwatch.go): "a new tip" as fast as the node can tell us:
//     ZMQ when configured, getblocktemplate long-polling otherwise, and a slow
//     getbestblockhash poll as a safety net. Its decisions live in TipTracker,
//     a small state machine tested without a network.
//   - Backoff and Retry (backoff.go): exponential backoff with jitter for
//     callers that wait for a node that is down, warming up, in initial block
//     download or without peers.
//
// Node-specific behaviour this package absorbs (btcd vs Bitcoin Core):
//
//   - getblocktemplate: btcd omits `rules` and `vbavailable`, sends
//     `coinbaseaux.flags` and `maxtime`, formats `bits` without zero padding,
//     and sends `default_witness_commitment` only when the template has
//     witness transactions, and then only as the 32-byte commitment hash
//     where Core sends the whole output script (6a24aa21a9ed…);
//     BlockTemplate always holds the script. btcd regenerates its template
//     only on a new tip, or on a mempool change once the last template is
//     60 s old. Missing txid/hash/weight are computed from `data`.
//   - long-poll: both return on a new tip; Core also returns when the mempool
//     changed (checked every 10 s after the first minute), btcd when the
//     mempool changed and the template is at least 60 s old, and btcd returns
//     at once when another caller regenerated the template meanwhile.
//   - proposal (BIP23): both answer null for a valid block and a reason string
//     otherwise; a block that does not build on the tip is
//     "inconclusive-not-best-prevblk" on Core and "bad-prevblk" on btcd.
//   - submitblock: Core answers null, "duplicate", "inconclusive" or a BIP22
//     reason; btcd answers null or "rejected: <error text>" for everything else.
//   - getnetworkinfo is unimplemented in btcd; NodeInfo falls back to getinfo.
//   - btcd returns RPC errors with HTTP 200, Core with HTTP 500 (404 for an
//     unknown method); both carry the JSON error object, which is what counts.
package node
