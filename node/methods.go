package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/btcsuite/btcd/wire"
)

// rawTxBatchSize is how many getrawtransaction calls go in one HTTP request.
const rawTxBatchSize = 500

func (c *Client) gbtRules() []string {
	// Core refuses templates without the segwit rule, and on signet without
	// the signet rule; btcd ignores rules.
	if c.cfg.Network == "signet" {
		return []string{"segwit", "signet"}
	}
	return []string{"segwit"}
}

// GetBlockTemplate calls getblocktemplate {"rules":["segwit"]}. With a
// non-empty longPollID (from a previous template) it is a BIP22 long-poll:
// the node answers when the tip changes, or when the mempool changed and
// some time passed (about a minute on both Core and btcd); the call is then
// bounded by LongPollTimeout instead of Timeout.
func (c *Client) GetBlockTemplate(ctx context.Context, longPollID string) (*BlockTemplate, error) {
	req := map[string]any{"rules": c.gbtRules()}
	timeout := c.cfg.Timeout
	if longPollID != "" {
		req["longpollid"] = longPollID
		timeout = c.cfg.LongPollTimeout
	}
	raw, err := c.call(ctx, timeout, "getblocktemplate", req)
	if err != nil {
		return nil, err
	}
	t, err := ParseBlockTemplate(raw)
	if err != nil {
		return nil, fmt.Errorf("getblocktemplate: %w", err)
	}
	return t, nil
}

// ProposeBlock asks the node to check a complete block without proof of work
// (BIP23 getblocktemplate proposal mode). It returns "" when the node accepts
// the block, or the node's reject reason (e.g. "bad-txnmrklroot",
// "bad-cb-height"; "inconclusive-not-best-prevblk" on Core or "bad-prevblk"
// on btcd when the block does not build on the tip).
func (c *Client) ProposeBlock(ctx context.Context, rawBlock []byte) (reason string, err error) {
	req := map[string]any{"mode": "proposal", "data": hex.EncodeToString(rawBlock), "rules": c.gbtRules()}
	raw, err := c.call(ctx, c.cfg.Timeout, "getblocktemplate", req)
	if err != nil {
		return "", err
	}
	s, err := nullOrString(raw)
	if err != nil {
		return "", fmt.Errorf("getblocktemplate proposal: %w", err)
	}
	return s, nil
}

// SubmitBlock submits a block. It returns "" when the node accepted it,
// otherwise the node's answer: Core and Knots say "duplicate",
// "duplicate-invalid", "duplicate-inconclusive", "inconclusive" or a BIP22
// reason; btcd says "rejected: <why>" (for a known block too). The error is
// for calls that did not get an answer.
func (c *Client) SubmitBlock(ctx context.Context, rawBlock []byte) (result string, err error) {
	raw, err := c.call(ctx, c.cfg.Timeout, "submitblock", hex.EncodeToString(rawBlock))
	if err != nil {
		return "", err
	}
	s, err := nullOrString(raw)
	if err != nil {
		return "", fmt.Errorf("submitblock: %w", err)
	}
	return s, nil
}

func nullOrString(raw json.RawMessage) (string, error) {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("unexpected result %.100s", raw)
	}
	return s, nil
}

// BlockchainInfo is the part of getblockchaininfo callers use.
type BlockchainInfo struct {
	Chain                string // normalised to Core's names: main, test, testnet4, signet, regtest
	Blocks               int64
	Headers              int64
	BestBlockHash        chainhash.Hash
	MedianTime           int64
	VerificationProgress float64 // Core only
	InitialBlockDownload bool    // Core only; false on btcd
	Pruned               bool
	Warnings             string
}

// GetBlockchainInfo calls getblockchaininfo.
func (c *Client) GetBlockchainInfo(ctx context.Context) (*BlockchainInfo, error) {
	raw, err := c.call(ctx, c.cfg.Timeout, "getblockchaininfo")
	if err != nil {
		return nil, err
	}
	var j struct {
		Chain                string          `json:"chain"`
		Blocks               int64           `json:"blocks"`
		Headers              int64           `json:"headers"`
		BestBlockHash        string          `json:"bestblockhash"`
		MedianTime           int64           `json:"mediantime"`
		VerificationProgress float64         `json:"verificationprogress"`
		InitialBlockDownload bool            `json:"initialblockdownload"`
		Pruned               bool            `json:"pruned"`
		Warnings             json.RawMessage `json:"warnings"` // a string, or an array since Core 28
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("getblockchaininfo: decode: %w", err)
	}
	best, err := hashFromRPC(j.BestBlockHash)
	if err != nil {
		return nil, fmt.Errorf("getblockchaininfo: bestblockhash: %w", err)
	}
	chain, ok := normalizeChain(j.Chain)
	if !ok {
		chain = j.Chain
	}
	info := &BlockchainInfo{
		Chain: chain, Blocks: j.Blocks, Headers: j.Headers, BestBlockHash: best,
		MedianTime: j.MedianTime, VerificationProgress: j.VerificationProgress,
		InitialBlockDownload: j.InitialBlockDownload, Pruned: j.Pruned,
	}
	var ws string
	var wl []string
	if json.Unmarshal(j.Warnings, &ws) == nil {
		info.Warnings = ws
	} else if json.Unmarshal(j.Warnings, &wl) == nil {
		info.Warnings = strings.Join(wl, "; ")
	}
	return info, nil
}

// CheckNetwork compares the node's chain with Config.Network and returns a
// *NetworkError when they differ. With Network unset it only reports the
// node's chain.
func (c *Client) CheckNetwork(ctx context.Context) (*BlockchainInfo, error) {
	info, err := c.GetBlockchainInfo(ctx)
	if err != nil {
		return nil, err
	}
	if c.cfg.Network != "" && info.Chain != c.cfg.Network {
		return info, &NetworkError{URL: c.cfg.URL, Want: c.cfg.Network, Got: info.Chain}
	}
	return info, nil
}

// GetBestBlockHash calls getbestblockhash.
func (c *Client) GetBestBlockHash(ctx context.Context) (chainhash.Hash, error) {
	raw, err := c.call(ctx, c.cfg.Timeout, "getbestblockhash")
	if err != nil {
		return chainhash.Hash{}, err
	}
	return decodeHashResult("getbestblockhash", raw)
}

// GetBlockHash calls getblockhash.
func (c *Client) GetBlockHash(ctx context.Context, height int64) (chainhash.Hash, error) {
	raw, err := c.call(ctx, c.cfg.Timeout, "getblockhash", height)
	if err != nil {
		return chainhash.Hash{}, err
	}
	return decodeHashResult("getblockhash", raw)
}

func decodeHashResult(method string, raw json.RawMessage) (chainhash.Hash, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return chainhash.Hash{}, fmt.Errorf("%s: decode: %w", method, err)
	}
	h, err := hashFromRPC(s)
	if err != nil {
		return chainhash.Hash{}, fmt.Errorf("%s: %w", method, err)
	}
	return h, nil
}

// GetBlockCount calls getblockcount.
func (c *Client) GetBlockCount(ctx context.Context) (int64, error) {
	raw, err := c.call(ctx, c.cfg.Timeout, "getblockcount")
	if err != nil {
		return 0, err
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, fmt.Errorf("getblockcount: decode: %w", err)
	}
	return n, nil
}

// GetBlockHeader calls getblockheader <hash> false and decodes the header.
func (c *Client) GetBlockHeader(ctx context.Context, hash chainhash.Hash) (*wire.BlockHeader, error) {
	raw, err := c.call(ctx, c.cfg.Timeout, "getblockheader", hash.String(), false)
	if err != nil {
		return nil, err
	}
	b, err := decodeHexResult(raw)
	if err != nil {
		return nil, fmt.Errorf("getblockheader: %w", err)
	}
	var h wire.BlockHeader
	if err := h.Deserialize(bytes.NewReader(b)); err != nil {
		return nil, fmt.Errorf("getblockheader: decode header: %w", err)
	}
	return &h, nil
}

// BlockHeaderInfo is the part of getblockheader <hash> true callers use.
type BlockHeaderInfo struct {
	Hash          chainhash.Hash
	Height        int64
	Confirmations int64 // -1 when the block is not on the best chain
	PrevHash      chainhash.Hash
	Time          int64
	MedianTime    int64 // Core only
	Bits          uint32
}

// GetBlockHeaderVerbose calls getblockheader <hash> true.
func (c *Client) GetBlockHeaderVerbose(ctx context.Context, hash chainhash.Hash) (*BlockHeaderInfo, error) {
	raw, err := c.call(ctx, c.cfg.Timeout, "getblockheader", hash.String(), true)
	if err != nil {
		return nil, err
	}
	var j struct {
		Hash          string `json:"hash"`
		Height        int64  `json:"height"`
		Confirmations int64  `json:"confirmations"`
		PrevHash      string `json:"previousblockhash"`
		Time          int64  `json:"time"`
		MedianTime    int64  `json:"mediantime"`
		Bits          string `json:"bits"`
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("getblockheader: decode: %w", err)
	}
	info := &BlockHeaderInfo{Height: j.Height, Confirmations: j.Confirmations, Time: j.Time, MedianTime: j.MedianTime}
	if info.Hash, err = hashFromRPC(j.Hash); err != nil {
		return nil, fmt.Errorf("getblockheader: %w", err)
	}
	if j.PrevHash != "" { // absent for the genesis block
		if info.PrevHash, err = hashFromRPC(j.PrevHash); err != nil {
			return nil, fmt.Errorf("getblockheader: %w", err)
		}
	}
	var bits uint64
	if _, err := fmt.Sscanf(j.Bits, "%x", &bits); err != nil || bits > math.MaxUint32 {
		return nil, fmt.Errorf("getblockheader: bits %q", j.Bits)
	}
	info.Bits = uint32(bits)
	return info, nil
}

// GetBlock calls getblock <hash> 0 and decodes the block.
func (c *Client) GetBlock(ctx context.Context, hash chainhash.Hash) (*wire.MsgBlock, error) {
	raw, err := c.call(ctx, c.cfg.Timeout, "getblock", hash.String(), 0)
	if err != nil {
		return nil, err
	}
	b, err := decodeHexResult(raw)
	if err != nil {
		return nil, fmt.Errorf("getblock: %w", err)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(b)); err != nil {
		return nil, fmt.Errorf("getblock: decode block: %w", err)
	}
	return &blk, nil
}

func decodeHexResult(raw json.RawMessage) ([]byte, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("decode hex: %w", err)
	}
	return b, nil
}

// NetworkInfo is the part of getnetworkinfo callers use.
type NetworkInfo struct {
	Version         int64  // e.g. 270100 for Core 27.1.0
	Subversion      string // e.g. "/Satoshi:27.1.0/" or "/Satoshi:27.1.0/Knots:20240801/"
	ProtocolVersion int64
	Connections     int64
	NetworkActive   bool
}

// GetNetworkInfo calls getnetworkinfo (Core and Knots; btcd does not have it).
func (c *Client) GetNetworkInfo(ctx context.Context) (*NetworkInfo, error) {
	raw, err := c.call(ctx, c.cfg.Timeout, "getnetworkinfo")
	if err != nil {
		return nil, err
	}
	var j struct {
		Version         int64  `json:"version"`
		Subversion      string `json:"subversion"`
		ProtocolVersion int64  `json:"protocolversion"`
		Connections     int64  `json:"connections"`
		NetworkActive   bool   `json:"networkactive"`
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("getnetworkinfo: decode: %w", err)
	}
	return &NetworkInfo{Version: j.Version, Subversion: j.Subversion, ProtocolVersion: j.ProtocolVersion,
		Connections: j.Connections, NetworkActive: j.NetworkActive}, nil
}

// Implementation names NodeInfo reports.
const (
	ImplCore    = "core"
	ImplKnots   = "knots"
	ImplBtcd    = "btcd"
	ImplUnknown = "unknown"
)

// NodeInfo says which node software answers and its version.
type NodeInfo struct {
	Implementation string // ImplCore, ImplKnots, ImplBtcd or ImplUnknown
	Version        int64  // Core/Knots: 270100 = 27.1.0; btcd: 240200 = 0.24.2
	Subversion     string // empty for btcd
	Connections    int64
}

// NodeInfo detects the node software: getnetworkinfo on Core and Knots,
// getinfo on btcd (which lacks getnetworkinfo).
func (c *Client) NodeInfo(ctx context.Context) (*NodeInfo, error) {
	ni, err := c.GetNetworkInfo(ctx)
	if err == nil {
		impl := ImplUnknown
		switch {
		case strings.Contains(ni.Subversion, "Knots"):
			impl = ImplKnots
		case strings.Contains(ni.Subversion, "/Satoshi:"):
			impl = ImplCore
		}
		return &NodeInfo{Implementation: impl, Version: ni.Version, Subversion: ni.Subversion, Connections: ni.Connections}, nil
	}
	code, isRPC := rpcCode(err)
	if !isRPC || (code != CodeMethodNotFound && code != codeBtcdUnimplemented) {
		return nil, err
	}
	raw, err := c.call(ctx, c.cfg.Timeout, "getinfo")
	if err != nil {
		return nil, err
	}
	var j struct {
		Version     int64 `json:"version"`
		Connections int64 `json:"connections"`
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("getinfo: decode: %w", err)
	}
	return &NodeInfo{Implementation: ImplBtcd, Version: j.Version, Connections: j.Connections}, nil
}

// GetRawMempool calls getrawmempool and returns the txids.
func (c *Client) GetRawMempool(ctx context.Context) ([]chainhash.Hash, error) {
	raw, err := c.call(ctx, c.cfg.Timeout, "getrawmempool")
	if err != nil {
		return nil, err
	}
	var ids []string
	if err := json.Unmarshal(raw, &ids); err != nil {
		return nil, fmt.Errorf("getrawmempool: decode: %w", err)
	}
	out := make([]chainhash.Hash, len(ids))
	for i, s := range ids {
		if out[i], err = hashFromRPC(s); err != nil {
			return nil, fmt.Errorf("getrawmempool: %w", err)
		}
	}
	return out, nil
}

// MempoolEntry is the part of a getrawmempool true entry callers use.
type MempoolEntry struct {
	WTxID   chainhash.Hash // Core only; zero on btcd
	Fee     int64          // base fee in satoshis
	Weight  int64          // 0 when the node does not say (old Core)
	VSize   int64
	Time    int64
	Height  int64
	Depends []chainhash.Hash // unconfirmed parents
}

// GetRawMempoolVerbose calls getrawmempool true.
func (c *Client) GetRawMempoolVerbose(ctx context.Context) (map[chainhash.Hash]MempoolEntry, error) {
	raw, err := c.call(ctx, c.cfg.Timeout, "getrawmempool", true)
	if err != nil {
		return nil, err
	}
	var j map[string]struct {
		WTxID string   `json:"wtxid"`
		Fee   *float64 `json:"fee"` // btcd, Core before 23
		Fees  *struct {
			Base float64 `json:"base"`
		} `json:"fees"` // Core 0.19+
		Weight  int64    `json:"weight"`
		VSize   int64    `json:"vsize"`
		Time    int64    `json:"time"`
		Height  int64    `json:"height"`
		Depends []string `json:"depends"`
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("getrawmempool verbose: decode: %w", err)
	}
	out := make(map[chainhash.Hash]MempoolEntry, len(j))
	for id, e := range j {
		txid, err := hashFromRPC(id)
		if err != nil {
			return nil, fmt.Errorf("getrawmempool verbose: %w", err)
		}
		me := MempoolEntry{Weight: e.Weight, VSize: e.VSize, Time: e.Time, Height: e.Height}
		switch {
		case e.Fees != nil:
			me.Fee = btcToSat(e.Fees.Base)
		case e.Fee != nil:
			me.Fee = btcToSat(*e.Fee)
		}
		if e.WTxID != "" {
			if me.WTxID, err = hashFromRPC(e.WTxID); err != nil {
				return nil, fmt.Errorf("getrawmempool verbose: %w", err)
			}
		}
		for _, d := range e.Depends {
			dh, err := hashFromRPC(d)
			if err != nil {
				return nil, fmt.Errorf("getrawmempool verbose: %w", err)
			}
			me.Depends = append(me.Depends, dh)
		}
		out[txid] = me
	}
	return out, nil
}

func btcToSat(btc float64) int64 { return int64(math.Round(btc * 1e8)) }

// GetRawTransaction calls getrawtransaction <txid> and returns the serialized
// transaction (with witness).
func (c *Client) GetRawTransaction(ctx context.Context, txid chainhash.Hash) ([]byte, error) {
	raw, err := c.call(ctx, c.cfg.Timeout, "getrawtransaction", txid.String())
	if err != nil {
		return nil, err
	}
	b, err := decodeHexResult(raw)
	if err != nil {
		return nil, fmt.Errorf("getrawtransaction: %w", err)
	}
	return b, nil
}

// GetRawTransactions fetches many transactions with JSON-RPC batches of
// rawTxBatchSize calls per HTTP request (Core, Knots and btcd all take
// batches). out[i] is txids[i]'s serialization, or nil when the node does not
// know it (it left the mempool since the caller listed it; without txindex
// confirmed transactions are unknown too).
func (c *Client) GetRawTransactions(ctx context.Context, txids []chainhash.Hash) ([][]byte, error) {
	out := make([][]byte, len(txids))
	for start := 0; start < len(txids); start += rawTxBatchSize {
		end := min(start+rawTxBatchSize, len(txids))
		err := c.rawTxBatch(ctx, txids[start:end], out[start:end])
		if err != nil && c.cfg.CookieFile != "" && (IsAuth(err) || IsCookie(err)) {
			err = c.rawTxBatch(ctx, txids[start:end], out[start:end]) // a new cookie after a restart
		}
		if err != nil {
			return nil, fmt.Errorf("getrawtransaction (batch of %d): %w", end-start, err)
		}
	}
	return out, nil
}

func (c *Client) rawTxBatch(ctx context.Context, txids []chainhash.Hash, out [][]byte) error {
	// The batch client is separate from the lanes, but takes a lane's slot
	// so MaxConcurrent still bounds what we ask of the node.
	l, err := c.acquire(ctx)
	if err != nil {
		return err
	}
	defer c.release(l)

	bc, err := rpcclient.NewBatch(c.connConfig())
	if err != nil {
		return fmt.Errorf("batch client: %w", err)
	}
	futs := make([]rpcclient.FutureRawResult, len(txids))
	for i, id := range txids {
		param, _ := json.Marshal(id.String())
		futs[i] = bc.RawRequestAsync("getrawtransaction", []json.RawMessage{param})
	}
	// Send blocks until the HTTP exchange ends; it runs in a goroutine that
	// owns the batch client and shuts it down when Send returns. It is not
	// shut down earlier: rpcclient drops the reply of a request whose client
	// shuts down while it retries, and Send would then wait forever. If we
	// stop waiting (ctx, timeout, probe), the goroutine still ends when the
	// exchange does.
	done := make(chan error, 1)
	go func() {
		defer bc.Shutdown()
		defer func() {
			// rpcclient indexes replies by id without checking; a reply
			// with an id we did not send must not crash the process.
			if r := recover(); r != nil {
				done <- fmt.Errorf("malformed batch reply: %v", r)
			}
		}()
		done <- bc.Send()
	}()
	sendErr, err := await(c, ctx, c.cfg.Timeout, done)
	if err != nil {
		return err
	}
	if sendErr != nil {
		return c.classify(sendErr)
	}
	for i, f := range futs {
		var resp *rpcclient.Response
		select {
		case resp = <-f:
		default:
			return fmt.Errorf("no reply for %s in the batch", txids[i])
		}
		ready := make(chan *rpcclient.Response, 1)
		ready <- resp
		res, err := rpcclient.FutureRawResult(ready).Receive()
		if err != nil {
			err = c.classify(err)
			if IsNotFound(err) {
				out[i] = nil
				continue
			}
			return fmt.Errorf("%s: %w", txids[i], err)
		}
		if out[i], err = decodeHexResult(res); err != nil {
			return fmt.Errorf("%s: %w", txids[i], err)
		}
	}
	return nil
}
