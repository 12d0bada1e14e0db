// Package provider is the Template Provider's core: the decisions of `tp`
// as a deterministic state machine. It has no network, no goroutines and no
// clock; the shell (cmd/tp) feeds it events — a client connected, sent a
// message or left; the node answered getblocktemplate (NodeTemplate); a new
// block was announced (NewTip); the mempool changed; a timer ticked — and
// carries out the Actions each returns: messages to send, connections to
// close, a template to fetch, blocks to write and submit, lines to log.
//
// # Templates and groups
//
// Clients are grouped by their coinbase reservation
// (CoinbaseOutputConstraints): a node template is built once per group, and
// groups whose reservation needs no transaction dropped share one build and
// one template id. Template ids come from one counter, strictly increasing
// from 1, and every client sees the ids it receives increase.
//
// # The new-block path
//
// Every client holds, besides its current template, an empty template for
// the next height (NewTemplate future=true, no SetNewPrevHash), sent right
// after its current template. When NewTip reports a block whose parent is
// the current tip, and the next block's nBits cannot differ (not a retarget
// height, not a min-difficulty network), the core answers with one
// SetNewPrevHash per client naming that empty template — prev hash, nBits,
// target and a timestamp the node accepts (max(now, MTP+1), see
// nextTimeFloor) — and asks for the node's template. When it arrives,
// clients get it as a non-future NewTemplate, then the next empty template.
// Anywhere the core cannot be sure (parent unknown, reorg, retarget,
// testnet's min-difficulty rule, unknown timestamps) it sends nothing and
// waits for the node's template, then sends it as a future template with
// its SetNewPrevHash.
//
// # Bounds
//
// Clients (Config.MaxClients), groups (Config.MaxGroups), cached templates
// (the current tip's, at most MaxTemplatesPerGroup per group, and the
// previous tip's for Config.PrevTipRetention), RequestTransactionData per
// client (a token bucket), the coinbase of a SubmitSolution
// (MaxCoinbaseTxSize) and recently found blocks are all bounded.
//
// Sources passed to NodeTemplate are kept (templates alias their
// transactions): the caller must not modify them afterwards.
package provider
