package node

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/internal/regtest"
)

func regtestClient(t *testing.T, n *regtest.Node, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		URL: "http://" + n.RPCAddr(), User: n.RPCUser(), Password: n.RPCPass(), Network: "regtest",
		Timeout: 10 * time.Second,
		Logger:  hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}}),
	}
	if mod != nil {
		mod(&cfg)
	}
	return mustClient(t, cfg)
}

func serializeTx(t *testing.T, tx *wire.MsgTx) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRegtestBtcd runs every RPC path against a real btcd: templates with
// real signed segwit transactions, proposals, submission, long-poll, the
// mempool, and the node killed and restarted under the same client.
func TestRegtestBtcd(t *testing.T) {
	n := regtest.Start(t, regtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := regtestClient(t, n, nil)
	params := &chaincfg.RegressionNetParams

	info, err := c.CheckNetwork(ctx)
	if err != nil || info.Chain != "regtest" {
		t.Fatalf("CheckNetwork: %v %+v", err, info)
	}
	ni, err := c.NodeInfo(ctx)
	if err != nil || ni.Implementation != ImplBtcd || ni.Version == 0 {
		t.Fatalf("NodeInfo: %v %+v", err, ni)
	}
	t.Logf("node: %+v, height %d", ni, info.Blocks)

	// A template on the current tip.
	count, err := c.GetBlockCount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	best, err := c.GetBestBlockHash(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := c.GetBlockTemplate(ctx, "")
	if err != nil {
		t.Fatalf("GetBlockTemplate: %v", err)
	}
	if tpl.Height != count+1 || tpl.PreviousBlockHash != best || tpl.Bits != 0x207fffff ||
		tpl.Target.Cmp(compactToBig(0x207fffff)) != 0 || tpl.LongPollID == "" || tpl.WeightLimit != 4000000 {
		t.Fatalf("template: height %d (count %d) prev %s (best %s) bits %x longpoll %q",
			tpl.Height, count, tpl.PreviousBlockHash, best, tpl.Bits, tpl.LongPollID)
	}
	if want := blockchain.CalcBlockSubsidy(int32(tpl.Height), params) + tpl.TotalFees(); tpl.CoinbaseValue != want {
		t.Errorf("coinbasevalue %d, want %d", tpl.CoinbaseValue, want)
	}

	// btcd regenerates a template only on a new tip (or 60 s after a
	// mempool change): mine one block, then send, then ask.
	if _, err := n.Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	w := n.Wallet()
	if err := w.Fund(ctx, 3); err != nil {
		t.Fatal(err)
	}
	var sent []*wire.MsgTx
	for _, rate := range []float64{2, 5, 11} {
		tx, err := w.Send(ctx, regtest.SendOpts{FeeRate: rate})
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		sent = append(sent, tx)
	}
	child, err := w.Send(ctx, regtest.SendOpts{FeeRate: 20, SpendUnconfirmed: true})
	if err != nil {
		t.Fatalf("send child: %v", err)
	}
	sent = append(sent, child)

	// The mempool: txids, then the raw transactions in one batch.
	pool, err := c.GetRawMempool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inPool := map[chainhash.Hash]bool{}
	for _, h := range pool {
		inPool[h] = true
	}
	ids := []chainhash.Hash{}
	for _, tx := range sent {
		if !inPool[tx.TxHash()] {
			t.Fatalf("sent tx %s not in getrawmempool", tx.TxHash())
		}
		ids = append(ids, tx.TxHash())
	}
	ids = append(ids, hashN(99)) // unknown
	raws, err := c.GetRawTransactions(ctx, ids)
	if err != nil {
		t.Fatalf("GetRawTransactions: %v", err)
	}
	for i, tx := range sent {
		if !bytes.Equal(raws[i], serializeTx(t, tx)) {
			t.Errorf("raw tx %d differs", i)
		}
	}
	if raws[len(sent)] != nil {
		t.Errorf("unknown tx returned %x", raws[len(sent)])
	}
	verbose, err := c.GetRawMempoolVerbose(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := verbose[child.TxHash()]; !ok || e.Fee <= 0 || e.Weight <= 0 || len(e.Depends) != 1 {
		t.Errorf("verbose entry of the child: %+v", e)
	}

	tpl, err = c.GetBlockTemplate(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	byID := map[chainhash.Hash]TemplateTx{}
	for _, tt := range tpl.Transactions {
		byID[tt.TxID] = tt
	}
	for i, tx := range sent {
		tt, ok := byID[tx.TxHash()]
		if !ok {
			t.Fatalf("sent tx %d missing from the template (%d txs)", i, len(tpl.Transactions))
		}
		if tt.WTxID != tx.WitnessHash() || tt.WTxID == tt.TxID || tt.Weight != blockchain.GetTransactionWeight(btcutil.NewTx(tx)) ||
			tt.Fee <= 0 || !bytes.Equal(tt.Data, serializeTx(t, tx)) {
			t.Errorf("template tx %d: wtxid %s weight %d fee %d", i, tt.WTxID, tt.Weight, tt.Fee)
		}
	}
	if ct := byID[child.TxHash()]; len(ct.Depends) != 1 {
		t.Errorf("child depends %v", ct.Depends)
	}
	if want := blockchain.CalcBlockSubsidy(int32(tpl.Height), params) + tpl.TotalFees(); tpl.CoinbaseValue != want {
		t.Errorf("coinbasevalue %d, want %d", tpl.CoinbaseValue, want)
	}
	// btcd sends the commitment for a template with witness transactions;
	// ours, from the wtxids, is the same.
	if tpl.DefaultWitnessCommitment == nil || !bytes.Equal(tpl.DefaultWitnessCommitment, WitnessCommitmentScript(tpl.Transactions)) {
		t.Errorf("witness commitment %x vs computed %x", tpl.DefaultWitnessCommitment, WitnessCommitmentScript(tpl.Transactions))
	}

	// Proposals: the assembled block is valid; corrupted ones get a reason.
	blk := assembleBlock(t, tpl, w.PkScript(), 7)
	if reason, err := c.ProposeBlock(ctx, serializeBlock(t, blk)); err != nil || reason != "" {
		t.Fatalf("valid proposal: %q %v", reason, err)
	}
	bad := *blk
	bad.Header.MerkleRoot[0] ^= 1
	if reason, err := c.ProposeBlock(ctx, serializeBlock(t, &bad)); err != nil || reason != "bad-txnmrklroot" {
		t.Errorf("bad merkle root: %q %v", reason, err)
	}
	dropped := *blk
	dropped.Transactions = append([]*wire.MsgTx(nil), blk.Transactions[:len(blk.Transactions)-1]...)
	setMerkleRoot(&dropped) // consistent merkle root; the witness commitment is now wrong
	if reason, err := c.ProposeBlock(ctx, serializeBlock(t, &dropped)); err != nil || reason == "" {
		t.Errorf("tx dropped: %q %v", reason, err)
	} else {
		t.Logf("btcd on a block with a dropped tx: %q", reason)
	}
	stale := *blk
	stale.Header.PrevBlock = hashN(1)
	if reason, err := c.ProposeBlock(ctx, serializeBlock(t, &stale)); err != nil || reason != "bad-prevblk" {
		t.Errorf("unknown prev block: %q %v", reason, err)
	}

	// Long-poll: waits while nothing happens, returns when a block arrives.
	type lpResult struct {
		t   *BlockTemplate
		err error
	}
	lp := make(chan lpResult, 1)
	go func() {
		t, err := c.GetBlockTemplate(ctx, tpl.LongPollID)
		lp <- lpResult{t, err}
	}()
	select {
	case r := <-lp:
		t.Fatalf("long-poll returned before a block: %+v %v", r.t, r.err)
	case <-time.After(500 * time.Millisecond):
	}
	// Calls go on while the long-poll waits.
	if _, err := c.GetBlockCount(ctx); err != nil {
		t.Fatal(err)
	}

	// Submit the block: accepted, the tip advances, the long-poll returns.
	solve(t, blk)
	raw := serializeBlock(t, blk)
	if res, err := c.SubmitBlock(ctx, raw); err != nil || res != "" {
		t.Fatalf("submitblock: %q %v", res, err)
	}
	hash := blk.BlockHash()
	if got, err := c.GetBestBlockHash(ctx); err != nil || got != hash {
		t.Fatalf("tip after submit: %s %v, want %s", got, err, hash)
	}
	select {
	case r := <-lp:
		if r.err != nil || r.t.PreviousBlockHash != hash || r.t.Height != tpl.Height+1 {
			t.Fatalf("long-poll after the block: %v %+v", r.err, r.t)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long-poll did not return after the block")
	}
	// A second submission: btcd says "rejected: ..." (Core: "duplicate").
	if res, err := c.SubmitBlock(ctx, raw); err != nil || !strings.HasPrefix(res, "rejected") {
		t.Errorf("duplicate submit: %q %v", res, err)
	} else {
		t.Logf("btcd on a duplicate block: %q", res)
	}
	gotBlk, err := c.GetBlock(ctx, hash)
	if err != nil || gotBlk.BlockHash() != hash || len(gotBlk.Transactions) != len(blk.Transactions) ||
		gotBlk.Transactions[1].WitnessHash() != blk.Transactions[1].WitnessHash() {
		t.Fatalf("GetBlock: %v", err)
	}
	hdr, err := c.GetBlockHeader(ctx, hash)
	if err != nil || hdr.BlockHash() != hash {
		t.Fatalf("GetBlockHeader: %v", err)
	}
	hv, err := c.GetBlockHeaderVerbose(ctx, hash)
	if err != nil || hv.Height != tpl.Height || hv.PrevHash != tpl.PreviousBlockHash || hv.Bits != 0x207fffff {
		t.Fatalf("GetBlockHeaderVerbose: %v %+v", err, hv)
	}
	if h, err := c.GetBlockHash(ctx, tpl.Height); err != nil || h != hash {
		t.Fatalf("GetBlockHash: %v", err)
	}
	if _, err := c.GetBlock(ctx, hashN(2)); !IsNotFound(err) {
		t.Errorf("unknown block: %v", err)
	}
	pool, err = c.GetRawMempool(ctx)
	if err != nil || len(pool) != 0 {
		t.Errorf("mempool after the block: %d %v", len(pool), err)
	}

	// The node is killed: a transport error, quickly, with a hint.
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.GetBestBlockHash(ctx)
	if !IsTransport(err) || !Temporary(err) || !strings.Contains(Hint(err), "cannot reach the node") {
		t.Fatalf("node killed: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("noticed the dead node after %v", d)
	}
	t.Logf("node killed: %v; hint: %s", err, Hint(err))

	// Restarted: the same client works again.
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetBestBlockHash(ctx); err != nil || got != hash {
		t.Fatalf("after restart: %s %v", got, err)
	}
	if _, err := c.GetBlockTemplate(ctx, ""); err != nil {
		t.Fatalf("template after restart: %v", err)
	}

	// Wrong password.
	wrong := regtestClient(t, n, func(c *Config) { c.Password = "wrong" })
	_, err = wrong.GetBestBlockHash(ctx)
	if !IsAuth(err) || Temporary(err) {
		t.Fatalf("wrong password: %v", err)
	}
	t.Logf("wrong password: %v; hint: %s", err, Hint(err))

	// Wrong network.
	mainnet := regtestClient(t, n, func(c *Config) { c.Network = "main" })
	if _, err := mainnet.CheckNetwork(ctx); !IsWrongNetwork(err) {
		t.Fatalf("wrong network: %v", err)
	}
}

// TestRegtestTipWatcherLongPoll: without ZMQ, the long-poll brings a new tip
// (with its template) as soon as a block is mined.
func TestRegtestTipWatcherLongPoll(t *testing.T) {
	n := regtest.Start(t, regtest.Options{NoActivation: true})
	c := regtestClient(t, n, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A fresh chain at height 0: a template pays the full 50 BTC subsidy.
	tpl, err := c.GetBlockTemplate(ctx, "")
	if err != nil || tpl.Height != 1 || tpl.CoinbaseValue != 50*btcutil.SatoshiPerBitcoin || len(tpl.Transactions) != 0 ||
		tpl.DefaultWitnessCommitment != nil {
		t.Fatalf("template at height 1: %v %+v", err, tpl)
	}

	rpc := &countingTipRPC{TipRPC: c}
	w := NewTipWatcher(rpc, TipWatcherConfig{LongPoll: true, PollInterval: time.Hour,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: testWriter{t}})})
	tips := make(chan Tip, 8)
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx, tips) }()
	defer func() {
		wcancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run: %v", err)
		}
	}()

	first := nextTip(t, tips)
	genesis, _ := c.GetBestBlockHash(ctx)
	if first.Hash != genesis {
		t.Fatalf("first tip %s, want %s", first.Hash, genesis)
	}
	// The first tip comes from the initial getbestblockhash or the first
	// template, whichever answers first; wait for the other one too, so
	// that the next tip can only come from the long-poll (the safety poll
	// runs hourly here).
	rpc.waitInitial(t)
	for i := 0; i < 2; i++ {
		hashes, err := n.Generate(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		tip := nextTip(t, tips)
		if tip.Hash != *hashes[0] || tip.Source != SourceLongPoll || tip.Template == nil ||
			tip.Template.PreviousBlockHash != tip.Hash {
			t.Fatalf("tip %d: %+v, want %s from the long-poll", i, tip, hashes[0])
		}
		t.Logf("block %d seen by the long-poll after %v", i, time.Since(start))
	}
}

func nextTip(t *testing.T, tips chan Tip) Tip {
	t.Helper()
	select {
	case tip := <-tips:
		return tip
	case <-time.After(15 * time.Second):
		t.Fatal("no tip within 15 s")
		return Tip{}
	}
}
