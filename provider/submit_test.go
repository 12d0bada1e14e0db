package provider

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// minerCoinbase builds a client's coinbase for a NewTemplate: the prefix,
// an 8-byte extranonce, a payout of the whole value, then the required
// outputs. witness selects the serialization.
func minerCoinbase(nt *messages.NewTemplate, extranonce uint64, witness bool) (raw []byte, txid [32]byte) {
	cb := templates.Coinbase{
		Version:         nt.CoinbaseTxVersion,
		ScriptSigPrefix: nt.CoinbasePrefix,
		ExtranonceSize:  8,
		Sequence:        nt.CoinbaseTxInputSequence,
		Outputs: append(templates.SerializeOutputs([]templates.TxOutput{{Value: int64(nt.CoinbaseTxValueRemaining), PkScript: []byte{0x51}}}),
			nt.CoinbaseTxOutputs...),
		OutputCount: 1 + int(nt.CoinbaseTxOutputsCount),
		LockTime:    nt.CoinbaseTxLocktime,
		Witness:     nt.CoinbaseTxOutputsCount > 0,
	}
	en := binary.LittleEndian.AppendUint64(nil, extranonce)
	return cb.Bytes(en, witness), templates.DoubleSHA256(cb.Bytes(en, false))
}

// grind finds a nonce whose header meets the target of bits (easy bits only).
func grind(t testing.TB, nt *messages.NewTemplate, snph *messages.SetNewPrevHash, witness bool) *messages.SubmitSolution {
	t.Helper()
	raw, txid := minerCoinbase(nt, 42, witness)
	h := templates.Header{
		Version:    nt.Version | 0x00abc000, // rolled BIP320 bits
		PrevHash:   snph.PrevHash,
		MerkleRoot: templates.MerkleRoot(txid, nt.MerklePath),
		Time:       snph.HeaderTimestamp + 3,
		Bits:       snph.NBits,
	}
	target := templates.TargetFromBits(snph.NBits)
	for h.Nonce = 0; h.Nonce < 1000; h.Nonce++ {
		hash := h.Hash()
		if templates.MeetsTarget(&hash, &target) {
			return &messages.SubmitSolution{TemplateID: nt.TemplateID, Version: h.Version, HeaderTimestamp: h.Time, HeaderNonce: h.Nonce, CoinbaseTx: raw}
		}
	}
	t.Fatal("no nonce found")
	return nil
}

// checkBlock parses a found block with btcd and checks what a node checks
// first: merkle root, witness commitment, proof of work.
func checkBlock(t testing.TB, b FoundBlock, prev [32]byte, ntxs int, segwit bool) *btcutil.Block {
	t.Helper()
	blk, err := btcutil.NewBlockFromBytes(b.Raw)
	if err != nil {
		t.Fatalf("block does not parse: %v", err)
	}
	hdr := blk.MsgBlock().Header
	if [32]byte(hdr.PrevBlock) != prev || [32]byte(hdr.BlockHash()) != b.Hash {
		t.Fatalf("prev %v, hash %v (reported %s)", hdr.PrevBlock, hdr.BlockHash(), b.HashString())
	}
	if len(blk.Transactions()) != ntxs {
		t.Fatalf("%d transactions, want %d", len(blk.Transactions()), ntxs)
	}
	store := blockchain.BuildMerkleTreeStore(blk.Transactions(), false)
	if *store[len(store)-1] != hdr.MerkleRoot {
		t.Fatal("merkle root does not match btcd's")
	}
	if segwit {
		if !blk.Transactions()[0].HasWitness() {
			t.Fatal("coinbase has no witness")
		}
	}
	if err := blockchain.ValidateWitnessCommitment(blk); err != nil {
		t.Fatalf("witness commitment: %v", err)
	}
	if err := blockchain.CheckProofOfWork(blk, chaincfg.RegressionNetParams.PowLimit); err != nil {
		t.Fatalf("proof of work: %v", err)
	}
	return blk
}

func hasLog(a Actions, substr string) bool {
	for _, l := range a.Logs {
		if strings.Contains(l.Msg, substr) {
			return true
		}
	}
	return false
}

func TestSubmitSolution(t *testing.T) {
	c := newCore(t, regtestConfig())
	ch := newTestChain(11, 300)
	src := ch.source(someTxs())
	c.NodeTemplate(src, ch.info(), t0)
	nt, snph, _ := initial(t, sentTo(connect(t, c, 1, 100, t0), 1))

	sol := grind(t, nt, snph, true)
	a := c.ClientMessage(1, sol, t0)
	if len(a.Blocks) != 1 || len(a.Close) != 0 {
		t.Fatalf("blocks %d, close %v, logs %+v", len(a.Blocks), a.Close, a.Logs)
	}
	b := a.Blocks[0]
	if b.Stale || b.TemplateID != nt.TemplateID || b.Height != src.Height {
		t.Fatalf("%+v", b)
	}
	blk := checkBlock(t, b, ch.tip, 1+len(src.Txs), true)
	if blk.MsgBlock().Header.Version != int32(sol.Version) {
		t.Fatal("version not taken from the solution")
	}
	for _, l := range a.Logs {
		if l.Level >= LevelWarn {
			t.Fatalf("warning on a clean solution: %s %v", l.Msg, l.Fields)
		}
	}
	// The same solution again is not submitted twice.
	if a := c.ClientMessage(1, sol, t0); len(a.Blocks) != 0 {
		t.Fatal("duplicate solution submitted again")
	}
	if c.Snapshot().BlocksFound != 1 {
		t.Fatal("BlocksFound")
	}
}

func TestSubmitSolutionInvalidPoW(t *testing.T) {
	c := newCore(t, regtestConfig())
	ch := newTestChain(12, 300)
	ch.bits = 0x1d00ffff
	c.NodeTemplate(ch.source(someTxs()), ch.info(), t0)
	nt, snph, _ := initial(t, sentTo(connect(t, c, 1, 100, t0), 1))
	raw, _ := minerCoinbase(nt, 1, true)
	for nonce := uint32(0); nonce < 8; nonce++ {
		a := c.ClientMessage(1, &messages.SubmitSolution{TemplateID: nt.TemplateID, Version: nt.Version, HeaderTimestamp: snph.HeaderTimestamp, HeaderNonce: nonce, CoinbaseTx: raw}, t0)
		if len(a.Blocks) != 0 || len(a.Close) != 0 || !hasLog(a, "does not meet the block target") {
			t.Fatalf("nonce %d: %+v", nonce, a)
		}
	}
}

func TestSubmitSolutionStaleTemplate(t *testing.T) {
	cfg := regtestConfig()
	cfg.PrevTipRetention = 10 * time.Second
	c := newCore(t, cfg)
	ch := newTestChain(13, 300)
	c.NodeTemplate(ch.source(someTxs()), ch.info(), t0)
	nt, snph, _ := initial(t, sentTo(connect(t, c, 1, 100, t0), 1))
	oldTip := ch.tip
	// A new tip without the fast path (parent unknown), then its template.
	n := ch.mine(uint32(t0.Unix()))
	n.PrevHash = nil
	c.NewTip(n, t0)
	c.NodeTemplate(ch.source(nil), ch.info(), t0.Add(time.Second))

	sol := grind(t, nt, snph, true)
	a := c.ClientMessage(1, sol, t0.Add(5*time.Second))
	if len(a.Blocks) != 1 || !a.Blocks[0].Stale {
		t.Fatalf("stale solution: %+v", a)
	}
	checkBlock(t, a.Blocks[0], oldTip, 5, true)
	// After the retention the template is gone: logged, not submitted.
	sol.HeaderNonce++ // a different block
	a = c.ClientMessage(1, sol, t0.Add(12*time.Second))
	if len(a.Blocks) != 0 || !hasLog(a, "no longer known") || len(a.Close) != 0 {
		t.Fatalf("pruned: %+v", a)
	}
}

func TestSubmitSolutionEmptyTemplateAfterFastPath(t *testing.T) {
	c := newCore(t, regtestConfig())
	ch := newTestChain(14, 300)
	c.NodeTemplate(ch.source(someTxs()), ch.info(), t0)
	_, _, empty := initial(t, sentTo(connect(t, c, 1, 100, t0), 1))

	// Before activation the empty template cannot be mined.
	raw, _ := minerCoinbase(empty, 7, false)
	a := c.ClientMessage(1, &messages.SubmitSolution{TemplateID: empty.TemplateID, CoinbaseTx: raw}, t0)
	if len(a.Blocks) != 0 || !hasLog(a, "no SetNewPrevHash activated") {
		t.Fatalf("unactivated: %+v", a)
	}

	notice := ch.mine(uint32(t0.Unix()) + 1)
	a = c.NewTip(notice, t0.Add(time.Second))
	snph := sentTo(a, 1)[0].(*messages.SetNewPrevHash)
	a = c.ClientMessage(1, grind(t, empty, snph, false), t0.Add(2*time.Second))
	if len(a.Blocks) != 1 || a.Blocks[0].Stale {
		t.Fatalf("%+v", a)
	}
	blk := checkBlock(t, a.Blocks[0], notice.Hash, 1, false)
	if a.Blocks[0].Height != 302 {
		t.Fatalf("height %d", a.Blocks[0].Height)
	}
	if h, _ := blockchain.ExtractCoinbaseHeight(blk.Transactions()[0]); h != 302 {
		t.Fatalf("BIP34 height %d", h)
	}
}

func TestSubmitSolutionRepairsWitnessAndWarns(t *testing.T) {
	c := newCore(t, regtestConfig())
	ch := newTestChain(15, 300)
	c.NodeTemplate(ch.source(someTxs()), ch.info(), t0)
	nt, snph, _ := initial(t, sentTo(connect(t, c, 1, 100, t0), 1))
	// Stripped coinbase (no witness) and a version change outside BIP320.
	sol := grind(t, nt, snph, false)
	sol.Version ^= 0x40000000
	for {
		h := templates.Header{Version: sol.Version, PrevHash: snph.PrevHash, Time: sol.HeaderTimestamp, Bits: snph.NBits, Nonce: sol.HeaderNonce}
		_, txid := minerCoinbase(nt, 42, false)
		h.MerkleRoot = templates.MerkleRoot(txid, nt.MerklePath)
		hash, target := h.Hash(), templates.TargetFromBits(snph.NBits)
		if templates.MeetsTarget(&hash, &target) {
			break
		}
		sol.HeaderNonce++
	}
	a := c.ClientMessage(1, sol, t0)
	if len(a.Blocks) != 1 {
		t.Fatalf("%+v", a)
	}
	checkBlock(t, a.Blocks[0], ch.tip, 5, true)
	if !hasLog(a, "witness replaced") || !hasLog(a, "outside the BIP320 bits") {
		t.Fatalf("warnings missing: %+v", a.Logs)
	}
}

func TestSubmitSolutionGarbage(t *testing.T) {
	c := newCore(t, regtestConfig())
	ch := newTestChain(16, 300)
	c.NodeTemplate(ch.source(someTxs()), ch.info(), t0)
	nt, snph, _ := initial(t, sentTo(connect(t, c, 1, 100, t0), 1))
	good := grind(t, nt, snph, true)
	huge := bytes.Repeat([]byte{0xff}, MaxCoinbaseTxSize+1)
	for _, tc := range []struct {
		name string
		cb   []byte
		id   uint64
	}{
		{"empty", nil, nt.TemplateID},
		{"random", []byte("not a transaction at all"), nt.TemplateID},
		{"truncated", good.CoinbaseTx[:len(good.CoinbaseTx)/2], nt.TemplateID},
		{"huge", huge, nt.TemplateID},
		{"huge counts", append([]byte{1, 0, 0, 0, 0xff}, bytes.Repeat([]byte{0xff}, 40)...), nt.TemplateID},
		{"unknown template", good.CoinbaseTx, 999},
		{"template id 0", good.CoinbaseTx, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := *good
			m.TemplateID, m.CoinbaseTx = tc.id, tc.cb
			a := c.ClientMessage(1, &m, t0)
			if len(a.Blocks) != 0 || len(a.Close) != 0 || len(a.Logs) == 0 {
				t.Fatalf("%+v", a)
			}
		})
	}
	// A coinbase that is not one (valid PoW is unlikely but checks run).
	if a := c.ClientMessage(1, good, t0); len(a.Blocks) != 1 {
		t.Fatal("client unusable after garbage")
	}
}

func FuzzSubmitSolution(f *testing.F) {
	c := newCore(f, regtestConfig())
	ch := newTestChain(17, 300)
	c.NodeTemplate(ch.source(someTxs()), ch.info(), t0)
	nt, snph, _ := initial(f, sentTo(connect(f, c, 1, 100, t0), 1))
	good := grind(f, nt, snph, true)
	f.Add(good.CoinbaseTx, good.HeaderNonce)
	f.Add(good.CoinbaseTx[:40], uint32(0))
	f.Add([]byte{}, uint32(1))
	f.Fuzz(func(t *testing.T, cb []byte, nonce uint32) {
		m := *good
		m.CoinbaseTx, m.HeaderNonce = cb, nonce
		a := c.ClientMessage(1, &m, t0)
		for _, b := range a.Blocks {
			if _, err := btcutil.NewBlockFromBytes(b.Raw); err != nil {
				t.Fatalf("found block does not parse: %v", err)
			}
		}
		if len(a.Close) != 0 {
			t.Fatal("client closed")
		}
	})
}
