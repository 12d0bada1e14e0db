package tpserver

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/provider"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

func serialize(t *testing.T, tx *wire.MsgTx) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := tx.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestRegtestBtcd drives tp with a real btcd (templates from
// getblocktemplate, tips from long-poll) and a tpclient over TCP + Noise:
// templates with real signed segwit transactions, RequestTransactionData,
// a CPU-mined SubmitSolution the node accepts, new tips (fast-path
// SetNewPrevHash, then the full template), stale template ids, and the
// node killed and restarted under a connected client.
func TestRegtestBtcd(t *testing.T) {
	t.Parallel()
	n := regtest.Start(t, regtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := n.Wallet()
	if err := w.Fund(ctx, 4); err != nil {
		t.Fatal(err)
	}
	// Transactions before tp's first getblocktemplate: btcd builds its
	// first template with them (later it regenerates only on a new tip or
	// after 60 s).
	sent := map[chainhash.Hash][]byte{}
	for _, rate := range []float64{2, 7, 13} {
		tx, err := w.Send(ctx, regtest.SendOpts{FeeRate: rate})
		if err != nil {
			t.Fatal(err)
		}
		sent[tx.TxHash()] = serialize(t, tx)
	}
	child, err := w.Send(ctx, regtest.SendOpts{FeeRate: 30, SpendUnconfirmed: true})
	if err != nil {
		t.Fatal(err)
	}
	sent[child.TxHash()] = serialize(t, child)

	nc := nodeClient(t, n)
	tp := startTP(t, nc, func(c *Config) { c.SubmitTimeout = 1500 * time.Millisecond })
	c := tp.dial(t, 64)

	// Setup: the current template with its SetNewPrevHash, then the empty
	// future template for the next height.
	nt, snph, empty := initial(t, c)
	best, err := nc.GetBestBlockHash(ctx)
	if err != nil {
		t.Fatal(err)
	}
	height, err := n.Height(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snph.PrevHash != [32]byte(best) || snph.NBits != 0x207fffff || snph.Target != templates.TargetFromBits(0x207fffff) {
		t.Fatalf("SetNewPrevHash %+v, best %s", snph, best)
	}
	if !bytes.Equal(nt.CoinbasePrefix, templates.HeightScript(int64(height)+1)) || nt.CoinbaseTxLocktime != uint32(height) {
		t.Fatalf("coinbase prefix %x locktime %d at height %d", nt.CoinbasePrefix, nt.CoinbaseTxLocktime, height+1)
	}
	// 4 transactions + the coinbase: 3 merkle siblings; segwit
	// transactions: the witness commitment is the required output.
	if len(nt.MerklePath) != 3 || nt.CoinbaseTxOutputsCount != 1 {
		t.Fatalf("template: %d merkle siblings, %d outputs", len(nt.MerklePath), nt.CoinbaseTxOutputsCount)
	}
	if subsidy := templates.Subsidy(int64(height)+1, 150); nt.CoinbaseTxValueRemaining <= uint64(subsidy) {
		t.Fatalf("value remaining %d does not include fees over the subsidy %d", nt.CoinbaseTxValueRemaining, subsidy)
	}

	// RequestTransactionData: every transaction, with witness, in block
	// order (the parent before its child); the 32-byte excess data.
	td, err := c.RequestTransactionData(ctx, nt.TemplateID)
	if err != nil {
		t.Fatal(err)
	}
	if len(td.TransactionList) != 4 || !bytes.Equal(td.ExcessData, make([]byte, 32)) {
		t.Fatalf("transaction data: %d txs, excess %x", len(td.TransactionList), td.ExcessData)
	}
	pos := map[chainhash.Hash]int{}
	for i, raw := range td.TransactionList {
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sent[tx.TxHash()], raw) || !tx.HasWitness() {
			t.Fatalf("tx %d (%s) is not one we sent, with its witness", i, tx.TxHash())
		}
		pos[tx.TxHash()] = i
	}
	if pos[child.TxHash()] < pos[child.TxIn[0].PreviousOutPoint.Hash] {
		t.Fatal("child before its parent")
	}
	if _, err := c.RequestTransactionData(ctx, 999999); !isTxDataErr(err, provider.ErrTemplateIDNotFound) {
		t.Fatalf("unknown template id: %v", err)
	}

	// SubmitSolution of a CPU-mined block: the node takes it as its tip.
	sol, hash := solve(t, nt, snph, w.PkScript(), 7)
	if err := c.SubmitSolution(ctx, sol); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "the node to accept the block", func() bool {
		b, err := nc.GetBestBlockHash(ctx)
		return err == nil && b == chainhash.Hash(hash)
	})
	if h, _ := n.Height(ctx); h != height+1 {
		t.Fatalf("height %d after the block, want %d", h, height+1)
	}
	blk, err := nc.GetBlock(ctx, chainhash.Hash(hash))
	if err != nil || len(blk.Transactions) != 5 {
		t.Fatalf("block on the node: %v (%d txs)", err, len(blk.Transactions))
	}
	file := filepath.Join(tp.dir, "blocks", fmt.Sprintf("%d-%s.hex", height+1, chainhash.Hash(hash)))
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("found block not on disk: %v", err)
	}
	waitUntil(t, 10*time.Second, "the submit metric", func() bool {
		return tp.metric(t, "tp_blocks_submitted_total", "result", "accepted") == 1
	})

	// Our block is a new tip: SetNewPrevHash for the empty template the
	// client holds (fast path), then the full template, then the next
	// empty one.
	checkNewTip := func(tip [32]byte, empty uint64) *newTipResult {
		t.Helper()
		p := nextPrevHash(t, c)
		if p.PrevHash != tip || p.TemplateID != empty {
			t.Fatalf("SetNewPrevHash(%d) on %x, want template %d on %x", p.TemplateID, p.PrevHash, empty, tip)
		}
		full := nextTemplate(t, c, false)
		next := nextTemplate(t, c, true)
		return &newTipResult{snph: p, full: full, empty: next.TemplateID}
	}
	r := checkNewTip(hash, empty.TemplateID)
	if len(r.full.MerklePath) != 0 || r.full.TemplateID <= empty.TemplateID {
		t.Fatalf("template after our block: id %d, %d siblings (mempool is empty)", r.full.TemplateID, len(r.full.MerklePath))
	}

	// A block mined by the node itself.
	hashes, err := n.Generate(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	prev := r
	r = checkNewTip(*hashes[0], r.empty)
	if tp.metric(t, "tp_new_tip_latency_seconds", "path", "fast") < 2 {
		t.Fatal("new-tip latency not recorded for the fast path")
	}

	// The first template is two tips old now: pruned.
	if _, err := c.RequestTransactionData(ctx, nt.TemplateID); !isTxDataErr(err, provider.ErrStaleTemplateID) {
		t.Fatalf("template of two tips ago: %v", err)
	}
	td2, err := c.RequestTransactionData(ctx, r.full.TemplateID)
	if err != nil || len(td2.TransactionList) != 0 {
		t.Fatalf("current template's data: %v", err)
	}
	// A solution on the previous tip's template is still checked, written
	// and submitted (the node decides: a competing block at that height).
	staleSol, staleHash := solve(t, prev.full, prev.snph, w.PkScript(), 8)
	if err := c.SubmitSolution(ctx, staleSol); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the stale solution's submission", func() bool {
		sum := 0.0
		for _, r := range []string{resultAccepted, resultDuplicate, resultRejected, resultError} {
			sum += tp.metric(t, "tp_blocks_submitted_total", "result", r)
		}
		return sum == 2
	})
	tp.logs.waitFor(t, "stale=true", time.Second)
	if _, err := os.Stat(filepath.Join(tp.dir, "blocks", fmt.Sprintf("%d-%s.hex", height+2, chainhash.Hash(staleHash)))); err != nil {
		t.Fatalf("stale block not on disk: %v", err)
	}

	// The node dies: the client stays connected; when the node is back,
	// templates resume.
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	tp.logs.waitFor(t, "clients stay connected", 20*time.Second)
	// A block found while the node is down: written to disk, submitblock
	// retried until SubmitTimeout, then reported; the file is the block.
	downSol, downHash := solve(t, r.full, r.snph, w.PkScript(), 9)
	if err := c.SubmitSolution(ctx, downSol); err != nil {
		t.Fatal(err)
	}
	tp.logs.waitFor(t, "submitblock did not reach the node; retrying", 5*time.Second)
	waitUntil(t, 10*time.Second, "the failed submission to be reported", func() bool {
		return tp.metric(t, "tp_blocks_submitted_total", "result", "error") == 1
	})
	downFile := filepath.Join(tp.dir, "blocks", fmt.Sprintf("%d-%s.hex", height+3, chainhash.Hash(downHash)))
	if c.Err() != nil {
		t.Fatalf("client disconnected while the node was down: %v", c.Err())
	}
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// Submitted by hand, as the log says.
	hexBlock, err := os.ReadFile(downFile)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(hexBlock)))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := nc.SubmitBlock(ctx, raw); err != nil || res != "" {
		t.Fatalf("block file submitted by hand: %q %v", res, err)
	}
	if b, err := nc.GetBestBlockHash(ctx); err != nil || b != chainhash.Hash(downHash) {
		t.Fatalf("best %s after the hand submission, want %x (%v)", b, downHash, err)
	}
	hashes, err = n.Generate(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Fast path (SetNewPrevHash, then the full template) or not (the full
	// future template, its SetNewPrevHash, then the empty one): either way
	// a template follows.
	_, p := waitPrevHash(t, c, *hashes[0], 30*time.Second)
	if m := next(t, c, 20*time.Second); describe(m) == "" {
		t.Fatal("no template after the restart")
	}
	t.Logf("after the node's restart: SetNewPrevHash(%d) on the new block", p.TemplateID)
	tp.logs.waitFor(t, "node answers getblocktemplate again; templates resume", 5*time.Second)
	if c.Err() != nil {
		t.Fatal(c.Err())
	}
}

type newTipResult struct {
	snph  *messages.SetNewPrevHash
	full  *messages.NewTemplate
	empty uint64
}
