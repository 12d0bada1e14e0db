package regtest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// gbt is the part of a getblocktemplate result the tests read.
type gbt struct {
	Version                  int32   `json:"version"`
	PreviousBlockHash        string  `json:"previousblockhash"`
	Transactions             []gbtTx `json:"transactions"`
	CoinbaseValue            int64   `json:"coinbasevalue"`
	LongPollID               string  `json:"longpollid"`
	CurTime                  int64   `json:"curtime"`
	Bits                     string  `json:"bits"`
	Height                   int32   `json:"height"`
	DefaultWitnessCommitment string  `json:"default_witness_commitment"`
	SubmitOld                *bool   `json:"submitold"`
}

type gbtTx struct {
	Data    string  `json:"data"`
	TxID    string  `json:"txid"`
	Hash    string  `json:"hash"`
	Depends []int64 `json:"depends"`
	Fee     int64   `json:"fee"`
	Weight  int64   `json:"weight"`
}

var segwitRules = map[string]any{"rules": []string{"segwit"}}

func getTemplate(t *testing.T, ctx context.Context, n *Node) (gbt, json.RawMessage) {
	t.Helper()
	var raw json.RawMessage
	if err := n.Call(ctx, "getblocktemplate", &raw, segwitRules); err != nil {
		t.Fatalf("getblocktemplate: %v", err)
	}
	var tpl gbt
	if err := json.Unmarshal(raw, &tpl); err != nil {
		t.Fatalf("decoding template: %v", err)
	}
	return tpl, raw
}

func mempool(t *testing.T, ctx context.Context, n *Node) map[string]bool {
	t.Helper()
	var ids []string
	if err := n.Call(ctx, "getrawmempool", &ids); err != nil {
		t.Fatalf("getrawmempool: %v", err)
	}
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func TestSendSegwitTxTemplateAndProposal(t *testing.T) {
	t.Parallel()
	n := Start(t, Options{})
	ctx := testCtx(t)
	w := n.Wallet()

	if !strings.HasPrefix(w.Address().EncodeAddress(), "bcrt1q") {
		t.Fatalf("wallet address %s is not regtest P2WPKH", w.Address())
	}
	h, _ := n.Height(ctx)
	if h != SegwitHeight-1 {
		t.Fatalf("started at height %d, want %d", h, SegwitHeight-1)
	}
	start := time.Now()
	if err := w.Fund(ctx, 2); err != nil {
		t.Fatal(err)
	}
	coins, total, _ := w.Balance(ctx)
	t.Logf("Fund(2) after activation: %v; wallet holds %d mature coins, %v", time.Since(start), coins, total)
	if h2, _ := n.Height(ctx); h2 != h {
		t.Errorf("Fund(2) mined %d blocks; the activation coinbases should suffice", h2-h)
	}

	// An empty template: btcd omits default_witness_commitment then.
	empty, emptyRaw := getTemplate(t, ctx, n)
	t.Logf("empty template: %s", emptyRaw)
	if len(empty.Transactions) != 0 {
		t.Fatalf("template has %d txs before any send", len(empty.Transactions))
	}

	tx, err := w.Send(ctx, SendOpts{FeeRate: 5, Outputs: 2, Amount: btcutil.Amount(1e6)})
	if err != nil {
		t.Fatal(err)
	}
	txid := tx.TxHash()
	if !tx.HasWitness() || len(tx.TxIn[0].Witness) != 2 {
		t.Fatalf("tx is not a P2WPKH spend: %v", tx.TxIn[0].Witness)
	}
	if !mempool(t, ctx, n)[txid.String()] {
		t.Fatalf("%s not in getrawmempool", txid)
	}

	// btcd regenerates a template for new mempool txs only on a new tip or
	// 60 s after the last one; the empty template above was generated at
	// this tip, so the new tx is not in the next template yet.
	stale, _ := getTemplate(t, ctx, n)
	t.Logf("template right after the send (same tip): %d txs", len(stale.Transactions))

	// A block with the tx: mined by generate, then a template on that tip
	// with a second send.
	if _, err := n.Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Confirmations int64  `json:"confirmations"`
		BlockHash     string `json:"blockhash"`
	}
	if err := n.Call(ctx, "getrawtransaction", &conf, txid.String(), 1); err != nil {
		t.Fatal(err)
	}
	if conf.Confirmations != 1 {
		t.Fatalf("tx has %d confirmations after a block, want 1", conf.Confirmations)
	}

	tx2, err := w.Send(ctx, SendOpts{FeeRate: 3})
	if err != nil {
		t.Fatal(err)
	}
	tpl, raw := getTemplate(t, ctx, n)
	t.Logf("template with one tx: %s", truncate(string(raw), 1500))
	if len(tpl.Transactions) != 1 || tpl.Transactions[0].TxID != tx2.TxHash().String() {
		t.Fatalf("template txs %+v, want %s", tpl.Transactions, tx2.TxHash())
	}
	if tpl.Transactions[0].Hash != tx2.WitnessHash().String() {
		t.Errorf("template hash %s, want wtxid %s", tpl.Transactions[0].Hash, tx2.WitnessHash())
	}
	if tpl.DefaultWitnessCommitment == "" {
		t.Fatal("template with a segwit tx lacks default_witness_commitment")
	}
	// btcd's default_witness_commitment is the bare 32-byte commitment;
	// Bitcoin Core's is the whole output script 6a24aa21a9ed<commitment>.
	if len(tpl.DefaultWitnessCommitment) != 64 {
		t.Errorf("default_witness_commitment %q: want 32 bytes (btcd's form)", tpl.DefaultWitnessCommitment)
	}

	// Proposal mode (BIP23), which the Job Declarator Server relies on.
	block := blockFromTemplate(t, tpl, w.PkScript())
	propose := func(b *wire.MsgBlock) (json.RawMessage, error) {
		var res json.RawMessage
		err := n.Call(ctx, "getblocktemplate", &res, map[string]any{"mode": "proposal", "data": blockHex(b)})
		return res, err
	}
	res, err := propose(block)
	t.Logf("proposal valid block: result=%s err=%v", res, err)
	if err != nil || string(res) != "null" {
		t.Fatalf("valid proposal: result %s, err %v; want null", res, err)
	}
	// PoW is not checked in proposal mode.
	unsolved := copyBlock(block)
	for solved(unsolved) {
		unsolved.Header.Nonce++
	}
	res, err = propose(unsolved)
	t.Logf("proposal with high hash: result=%s err=%v", res, err)
	if err != nil || string(res) != "null" {
		t.Errorf("unsolved proposal: result %s, err %v; want null", res, err)
	}
	cases := []struct {
		name   string
		mutate func(b *wire.MsgBlock)
		want   string
	}{
		{"bad merkle root", func(b *wire.MsgBlock) { b.Header.MerkleRoot[0] ^= 1 }, `"bad-txnmrklroot"`},
		{"bad prevblock", func(b *wire.MsgBlock) { b.Header.PrevBlock[0] ^= 1 }, `"bad-prevblk"`},
		{"coinbase pays 1 sat too much", func(b *wire.MsgBlock) {
			b.Transactions[0].TxOut[0].Value++
			b.Header.MerkleRoot = merkleRoot(b.Transactions)
		}, `"bad-cb-value"`},
		{"witness commitment mismatch", func(b *wire.MsgBlock) {
			b.Transactions[0].TxOut[1].PkScript[10] ^= 1
			b.Header.MerkleRoot = merkleRoot(b.Transactions)
		}, `"bad-witness-merkle-match"`},
		{"tx missing its input", func(b *wire.MsgBlock) {
			b.Transactions[1].TxIn[0].PreviousOutPoint.Index = 7
			recommit(b)
		}, `"bad-txns-missinginput"`},
		{"bad signature", func(b *wire.MsgBlock) {
			b.Transactions[1].TxOut[0].Value--
			recommit(b)
		}, ``},
		{"wrong bits", func(b *wire.MsgBlock) { b.Header.Bits = 0x207ffffe }, `"bad-diffbits"`},
		{"time too old", func(b *wire.MsgBlock) { b.Header.Timestamp = time.Unix(1296688602, 0) }, `"time-too-old"`},
	}
	for _, c := range cases {
		b := copyBlock(block)
		c.mutate(b)
		res, err := propose(b)
		t.Logf("proposal %s: result=%s err=%v", c.name, res, err)
		if err != nil {
			t.Errorf("%s: RPC error %v, want a rejection string", c.name, err)
			continue
		}
		if c.want != "" && string(res) != c.want {
			t.Errorf("%s: result %s, want %s", c.name, res, c.want)
		}
		if string(res) == "null" {
			t.Errorf("%s: accepted", c.name)
		}
	}
	var rpcErr *RPCError
	var garbage json.RawMessage
	err = n.Call(ctx, "getblocktemplate", &garbage, map[string]any{"mode": "proposal", "data": "00ff"})
	t.Logf("proposal of undecodable data: result=%s err=%v", garbage, err)
	if !errors.As(err, &rpcErr) {
		t.Errorf("undecodable proposal: %v, want an RPC error", err)
	}
	// Templates without the rules argument, and with a coinbase from btcd.
	var noRules, cbTxn json.RawMessage
	err = n.Call(ctx, "getblocktemplate", &noRules)
	t.Logf("getblocktemplate without rules: err=%v, %d bytes", err, len(noRules))
	if err := n.Call(ctx, "getblocktemplate", &cbTxn, map[string]any{"rules": []string{"segwit"}, "capabilities": []string{"coinbasetxn"}}); err != nil {
		t.Errorf("getblocktemplate coinbasetxn: %v", err)
	}
	var withCb struct {
		CoinbaseTxn *gbtTx `json:"coinbasetxn"`
	}
	_ = json.Unmarshal(cbTxn, &withCb)
	t.Logf("getblocktemplate coinbasetxn: coinbasetxn present: %v", withCb.CoinbaseTxn != nil)

	// The valid block is accepted by submitblock and carries tx2.
	var sub json.RawMessage
	if err := n.Call(ctx, "submitblock", &sub, blockHex(block)); err != nil || string(sub) != "null" {
		t.Fatalf("submitblock: %s %v", sub, err)
	}
	if err := n.Call(ctx, "submitblock", &sub, blockHex(block)); err != nil {
		t.Fatalf("submitblock again: %v", err)
	}
	t.Logf("submitblock of the same block again: %s", sub)
	if h2, _ := n.Height(ctx); h2 != h+2 {
		t.Fatalf("height %d after submitblock, want %d", h2, h+2)
	}
	if len(mempool(t, ctx, n)) != 0 {
		t.Fatal("mempool not empty after the block")
	}
	// The wallet picks up the coinbase of the submitted block.
	before := len(w.utxos)
	if _, _, err := w.Balance(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.known[wire.OutPoint{Hash: block.Transactions[0].TxHash()}]; !ok {
		t.Errorf("wallet did not see the submitted block's coinbase (%d -> %d outputs)", before, len(w.utxos))
	}
}

func TestSendManyAndChain(t *testing.T) {
	t.Parallel()
	n := Start(t, Options{})
	ctx := testCtx(t)
	w := n.Wallet()

	start := time.Now()
	txs, err := w.SendMany(ctx, 200, 1, 2, 5, 10, 20)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SendMany(200) from a fresh chain: %v", time.Since(start))
	if len(txs) != 200 {
		t.Fatalf("%d txs, want 200", len(txs))
	}
	var verbose map[string]struct {
		Fee   float64 `json:"fee"`
		Vsize int64   `json:"vsize"`
	}
	if err := n.Call(ctx, "getrawmempool", &verbose, true); err != nil {
		t.Fatal(err)
	}
	rates := map[int64]int{}
	for _, tx := range txs {
		e, ok := verbose[tx.TxHash().String()]
		if !ok {
			t.Fatalf("%s not in the mempool", tx.TxHash())
		}
		sat := int64(e.Fee*1e8 + 0.5)
		rates[sat/e.Vsize]++
	}
	t.Logf("mempool fee rates (sat/vB: count): %v", rates)
	if len(rates) < 5 {
		t.Errorf("want 5 distinct fee rates, got %v", rates)
	}
	// Every SendMany tx is independent (its parent is confirmed).
	for _, tx := range txs {
		if verbose[tx.TxIn[0].PreviousOutPoint.Hash.String()].Vsize != 0 {
			t.Fatalf("%s spends a mempool parent", tx.TxHash())
		}
	}

	// A chained spend: the child spends an output of a mempool parent.
	parent, err := w.Send(ctx, SendOpts{FeeRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	child, err := w.Send(ctx, SendOpts{FeeRate: 50, SpendUnconfirmed: true})
	if err != nil {
		t.Fatal(err)
	}
	if child.TxIn[0].PreviousOutPoint.Hash != parent.TxHash() {
		t.Fatalf("child spends %v, want parent %s", child.TxIn[0].PreviousOutPoint, parent.TxHash())
	}
	pool := mempool(t, ctx, n)
	if !pool[parent.TxHash().String()] || !pool[child.TxHash().String()] {
		t.Fatal("parent or child missing from the mempool")
	}
	if len(pool) != 202 {
		t.Errorf("mempool has %d txs, want 202", len(pool))
	}

	// Mine everything; the wallet sees its outputs confirmed.
	if _, err := n.Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if left := mempool(t, ctx, n); len(left) != 0 {
		t.Fatalf("%d txs left in the mempool after a block", len(left))
	}
	nCoins, total, err := w.Balance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("balance after the block: %d coins, %v", nCoins, total)
	if len(w.pending) != 0 {
		t.Errorf("%d txs still pending after the block", len(w.pending))
	}
	// A second round reuses the confirmed outputs without splitting.
	h0, _ := n.Height(ctx)
	if _, err := w.SendMany(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if h1, _ := n.Height(ctx); h1 != h0 {
		t.Errorf("second SendMany mined %d blocks, want 0", h1-h0)
	}
}

// TestLargeTemplate fills the mempool with a few thousand transactions and
// checks that a template carries them all.
func TestLargeTemplate(t *testing.T) {
	t.Parallel()
	n := Start(t, Options{})
	ctx := testCtx(t)
	const count = 3000
	start := time.Now()
	txs, err := n.Wallet().SendMany(ctx, count)
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Since(start)
	tpl, raw := getTemplate(t, ctx, n)
	t.Logf("SendMany(%d): %v; template: %d txs, %d bytes of JSON, in %v", count, sent, len(tpl.Transactions), len(raw), time.Since(start)-sent)
	if len(txs) != count || len(tpl.Transactions) != count {
		t.Fatalf("sent %d, template has %d, want %d", len(txs), len(tpl.Transactions), count)
	}
	// Sorted by fee rate (--blockprioritysize=0): the first pays the most.
	first, last := tpl.Transactions[0], tpl.Transactions[count-1]
	if first.Fee*last.Weight < last.Fee*first.Weight {
		t.Errorf("template not ordered by fee rate: first %d/%d, last %d/%d", first.Fee, first.Weight, last.Fee, last.Weight)
	}
	start = time.Now()
	if _, err := n.Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	t.Logf("mining the %d-tx block: %v", count, time.Since(start))
	if left := mempool(t, ctx, n); len(left) != 0 {
		t.Fatalf("%d txs left after the block", len(left))
	}
}

func TestRestartAndKill(t *testing.T) {
	t.Parallel()
	n := Start(t, Options{})
	ctx := testCtx(t)
	w := n.Wallet()
	if err := w.Fund(ctx, 3); err != nil {
		t.Fatal(err)
	}
	unconfirmed, err := w.Send(ctx, SendOpts{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := n.Height(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rpcAddr, p2pAddr := n.RPCAddr(), n.P2PAddr()

	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := n.Height(ctx); err != nil || got != h {
		t.Fatalf("height after restart %d (%v), want %d", got, err, h)
	}
	if n.RPCAddr() != rpcAddr || n.P2PAddr() != p2pAddr {
		t.Fatal("addresses changed across restart")
	}
	if len(mempool(t, ctx, n)) != 0 {
		t.Log("btcd kept its mempool across a restart")
	} else {
		t.Logf("btcd's mempool is empty after a restart (%s is gone)", unconfirmed.TxHash())
	}
	// The wallet rescans: the unconfirmed send is forgotten, its input back.
	if _, err := w.Send(ctx, SendOpts{}); err != nil {
		t.Fatalf("send after restart: %v", err)
	}
	if _, err := n.Generate(ctx, 2); err != nil {
		t.Fatal(err)
	}
	h += 2

	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	if n.Running() {
		t.Fatal("running after Kill")
	}
	if _, err := n.Height(ctx); err == nil {
		t.Fatal("RPC answers after Kill")
	}
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := n.Height(ctx); err != nil || got != h {
		t.Fatalf("height after kill+restart %d (%v), want %d", got, err, h)
	}
	// The chain is usable: a send and a block after the crash.
	tx, err := w.Send(ctx, SendOpts{})
	if err != nil {
		t.Fatalf("send after kill+restart: %v", err)
	}
	if _, err := n.Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Confirmations int64 `json:"confirmations"`
	}
	if err := n.Call(ctx, "getrawtransaction", &conf, tx.TxHash().String(), 1); err != nil || conf.Confirmations != 1 {
		t.Fatalf("tx after restart: %+v %v", conf, err)
	}
	// rpcclient works too (HTTP POST mode, no TLS).
	if cnt, err := n.Client().GetBlockCount(); err != nil || int32(cnt) != h+1 {
		t.Fatalf("rpcclient GetBlockCount %d %v, want %d", cnt, err, h+1)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestDoubleSpend(t *testing.T) {
	t.Parallel()
	n := Start(t, Options{})
	ctx := testCtx(t)
	w := n.Wallet()
	if err := w.Fund(ctx, 2); err != nil {
		t.Fatal(err)
	}
	tx, err := w.Send(ctx, SendOpts{FeeRate: 2})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := w.DoubleSpend(ctx, tx)
	if err != nil {
		t.Fatal(err)
	}
	if ds.TxHash() == tx.TxHash() || ds.TxIn[0].PreviousOutPoint != tx.TxIn[0].PreviousOutPoint {
		t.Fatal("double spend is not a conflicting tx")
	}
	var rpcErr *RPCError
	err = n.Call(ctx, "sendrawtransaction", nil, txHex(ds))
	t.Logf("double spend while the original is in the mempool: %v", err)
	if !errors.As(err, &rpcErr) || rpcErr.Code != -26 || !strings.Contains(err.Error(), "already spent") {
		t.Fatalf("double spend: %v, want -26 already spent", err)
	}
	// testmempoolaccept agrees and reports the reason.
	var tma json.RawMessage
	if err := n.Call(ctx, "testmempoolaccept", &tma, []string{txHex(ds)}, 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("testmempoolaccept: %s", tma)

	// Once the original is confirmed.
	if _, err := n.Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	err = n.Call(ctx, "sendrawtransaction", nil, txHex(ds))
	t.Logf("double spend after the original is confirmed: %v", err)
	if !errors.As(err, &rpcErr) {
		t.Fatalf("double spend after confirmation: %v, want an RPC error", err)
	}

	// A replaceable original is replaced by the double spend (BIP125).
	rbf, err := w.Send(ctx, SendOpts{FeeRate: 2, Replaceable: true})
	if err != nil {
		t.Fatal(err)
	}
	repl, err := w.DoubleSpend(ctx, rbf)
	if err != nil {
		t.Fatal(err)
	}
	err = n.Call(ctx, "sendrawtransaction", nil, txHex(repl))
	t.Logf("double spend of a BIP125-signalling tx: %v", err)
	if err != nil {
		t.Fatalf("replacement rejected: %v", err)
	}
	pool := mempool(t, ctx, n)
	if pool[rbf.TxHash().String()] || !pool[repl.TxHash().String()] {
		t.Fatal("replacement did not replace")
	}
	// The wallet notices at the next block: the replaced tx is dropped, the
	// replacement's output (which pays the wallet) is confirmed.
	if _, err := n.Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Balance(ctx); err != nil {
		t.Fatal(err)
	}
	if len(w.pending) != 0 {
		t.Fatalf("pending after the block: %d", len(w.pending))
	}
	if _, ok := w.utxos[wire.OutPoint{Hash: repl.TxHash()}]; !ok {
		t.Fatal("wallet does not hold the replacement's output")
	}
	if _, ok := w.utxos[wire.OutPoint{Hash: rbf.TxHash()}]; ok {
		t.Fatal("wallet still holds the replaced tx's output")
	}
	if _, err := w.Send(ctx, SendOpts{}); err != nil {
		t.Fatal(err)
	}
}

// TestLongPoll records btcd's BIP22 long-poll behaviour: a long poll
// returns when a block is connected; new mempool txs alone wake it only
// 60 s after the template was generated.
func TestLongPoll(t *testing.T) {
	t.Parallel()
	n := Start(t, Options{})
	ctx := testCtx(t)
	w := n.Wallet()
	if err := w.Fund(ctx, 1); err != nil {
		t.Fatal(err)
	}
	tpl, _ := getTemplate(t, ctx, n)
	if tpl.LongPollID == "" {
		t.Fatal("no longpollid")
	}
	t.Logf("longpollid %s", tpl.LongPollID)

	type result struct {
		tpl gbt
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		var r result
		var raw json.RawMessage
		r.err = n.Call(ctx, "getblocktemplate", &raw, map[string]any{"rules": []string{"segwit"}, "longpollid": tpl.LongPollID})
		if r.err == nil {
			r.err = json.Unmarshal(raw, &r.tpl)
		}
		r.at = time.Now()
		done <- r
	}()

	time.Sleep(300 * time.Millisecond)
	if _, err := w.Send(ctx, SendOpts{}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		t.Fatalf("long poll returned after a new mempool tx: %+v", r)
	case <-time.After(time.Second):
		t.Log("long poll did not return within 1 s of a new mempool tx")
	}
	mined := time.Now()
	if _, err := n.Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Logf("long poll returned %v after the block; height %d, submitold %v", r.at.Sub(mined), r.tpl.Height, *r.tpl.SubmitOld)
		if r.tpl.Height != tpl.Height+1 {
			t.Errorf("long poll template height %d, want %d", r.tpl.Height, tpl.Height+1)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long poll did not return after a block")
	}
	// A stale longpollid returns at once.
	var raw json.RawMessage
	start := time.Now()
	if err := n.Call(ctx, "getblocktemplate", &raw, map[string]any{"rules": []string{"segwit"}, "longpollid": tpl.LongPollID}); err != nil {
		t.Fatal(err)
	}
	t.Logf("stale longpollid answered in %v", time.Since(start))
}

func TestBuildLock(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := lockFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := lockFile(short, path); err == nil {
		t.Fatal("second lock taken while the first is held")
	}
	unlock()
	unlock2, err := lockFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	unlock2()
}

func TestVsizeEstimate(t *testing.T) {
	// The estimate must never be below a real signed tx's vsize.
	w, err := newWallet()
	if err != nil {
		t.Fatal(err)
	}
	for nIn := 1; nIn <= 3; nIn++ {
		for nOut := 1; nOut <= 3; nOut++ {
			var ins []*utxo
			for i := 0; i < nIn; i++ {
				ins = append(ins, &utxo{op: wire.OutPoint{Index: uint32(i)}, value: 1e8})
			}
			var outs []*wire.TxOut
			for i := 0; i < nOut; i++ {
				outs = append(outs, &wire.TxOut{Value: 1e6, PkScript: w.pkScript})
			}
			tx := w.newTx(ins, outs, seqNoRBF)
			if err := w.sign(tx, ins); err != nil {
				t.Fatal(err)
			}
			real := (int64(tx.SerializeSizeStripped())*3 + int64(tx.SerializeSize()) + 3) / 4
			if est := vsize(nIn, outs); est < real || est > real+int64(nIn) {
				t.Errorf("%d in %d out: estimate %d, real %d", nIn, nOut, est, real)
			}
		}
	}
}

// ---- block assembly from a template (test-only) ----

func blockFromTemplate(t *testing.T, tpl gbt, payTo []byte) *wire.MsgBlock {
	t.Helper()
	sig, err := txscript.NewScriptBuilder().AddInt64(int64(tpl.Height)).AddInt64(0).AddData([]byte("sv2kit")).Script()
	if err != nil {
		t.Fatal(err)
	}
	cb := wire.NewMsgTx(2)
	cb.AddTxIn(&wire.TxIn{
		PreviousOutPoint: wire.OutPoint{Index: wire.MaxPrevOutIndex},
		SignatureScript:  sig,
		Sequence:         wire.MaxTxInSequenceNum,
	})
	cb.AddTxOut(&wire.TxOut{Value: tpl.CoinbaseValue, PkScript: payTo})
	if tpl.DefaultWitnessCommitment != "" {
		script, err := hex.DecodeString(tpl.DefaultWitnessCommitment)
		if err != nil {
			t.Fatal(err)
		}
		if len(script) == 32 { // btcd: the commitment alone
			script = append([]byte{0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed}, script...)
		}
		cb.AddTxOut(&wire.TxOut{Value: 0, PkScript: script})
		cb.TxIn[0].Witness = wire.TxWitness{make([]byte, 32)} // the zero witness nonce btcd commits to
	}
	txs := []*wire.MsgTx{cb}
	for _, tt := range tpl.Transactions {
		raw, err := hex.DecodeString(tt.Data)
		if err != nil {
			t.Fatal(err)
		}
		tx := new(wire.MsgTx)
		if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
		txs = append(txs, tx)
	}
	prev, err := chainhash.NewHashFromStr(tpl.PreviousBlockHash)
	if err != nil {
		t.Fatal(err)
	}
	bits, err := strconv.ParseUint(tpl.Bits, 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	b := &wire.MsgBlock{
		Header: wire.BlockHeader{
			Version:    tpl.Version,
			PrevBlock:  *prev,
			MerkleRoot: merkleRoot(txs),
			Timestamp:  time.Unix(tpl.CurTime, 0),
			Bits:       uint32(bits),
		},
		Transactions: txs,
	}
	for !solved(b) {
		b.Header.Nonce++
	}
	return b
}

func merkleRoot(txs []*wire.MsgTx) chainhash.Hash {
	level := make([]chainhash.Hash, len(txs))
	for i, tx := range txs {
		level[i] = tx.TxHash()
	}
	return merkleOf(level)
}

func merkleOf(level []chainhash.Hash) chainhash.Hash {
	for len(level) > 1 {
		if len(level)%2 == 1 {
			level = append(level, level[len(level)-1])
		}
		next := make([]chainhash.Hash, len(level)/2)
		for i := range next {
			next[i] = chainhash.DoubleHashH(append(level[2*i][:], level[2*i+1][:]...))
		}
		level = next
	}
	return level[0]
}

// recommit recomputes the witness commitment (output 1 of the coinbase,
// zero nonce) and the merkle root after a change to the block's txs.
func recommit(b *wire.MsgBlock) {
	level := make([]chainhash.Hash, len(b.Transactions))
	for i, tx := range b.Transactions {
		if i > 0 {
			level[i] = tx.WitnessHash()
		}
	}
	root := merkleOf(level)
	var nonce [32]byte
	c := chainhash.DoubleHashH(append(root[:], nonce[:]...))
	b.Transactions[0].TxOut[1].PkScript = append([]byte{0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed}, c[:]...)
	b.Header.MerkleRoot = merkleRoot(b.Transactions)
}

// solved reports whether the header hash meets its target.
func solved(b *wire.MsgBlock) bool {
	h := b.Header.BlockHash()
	le := slices.Clone(h[:])
	slices.Reverse(le)
	return new(big.Int).SetBytes(le).Cmp(compactToBig(b.Header.Bits)) <= 0
}

func compactToBig(c uint32) *big.Int {
	mant := big.NewInt(int64(c & 0x007fffff))
	exp := uint(c >> 24)
	if exp <= 3 {
		return mant.Rsh(mant, 8*(3-exp))
	}
	return mant.Lsh(mant, 8*(exp-3))
}

func copyBlock(b *wire.MsgBlock) *wire.MsgBlock {
	var buf bytes.Buffer
	if err := b.Serialize(&buf); err != nil {
		panic(err)
	}
	c := new(wire.MsgBlock)
	if err := c.Deserialize(&buf); err != nil {
		panic(err)
	}
	return c
}

func blockHex(b *wire.MsgBlock) string {
	var buf bytes.Buffer
	if err := b.Serialize(&buf); err != nil {
		panic(err)
	}
	return hex.EncodeToString(buf.Bytes())
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
