package mining

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// TestJobTemplateAgainstBtcd checks the coinbase, txid, merkle root and
// witness commitment of jobs against btcd's own transaction and block code.
func TestJobTemplateAgainstBtcd(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 7, 16} {
		t.Run(fmt.Sprintf("%d txs", n), func(t *testing.T) {
			raw, txs := fakeTxs(n, int64(n))
			nt := newTemplateMsg(42, false, 1000, txs)
			jt := jobTemplate(t, nt, 16)
			if jt.Witness() != (n > 0) {
				t.Fatalf("witness %v with %d txs", jt.Witness(), n)
			}
			full := bytes.Repeat([]byte{0x5a}, 16)
			full[15] = byte(n)

			var cb wire.MsgTx
			if err := cb.Deserialize(bytes.NewReader(jt.CoinbaseTx(full, true))); err != nil {
				t.Fatal(err)
			}
			wantScript := append(append(append(templates.HeightScript(1000), 8), "/sv2kit/"...), 16)
			wantScript = append(wantScript, full...)
			if !bytes.Equal(cb.TxIn[0].SignatureScript, wantScript) {
				t.Fatalf("scriptSig %x, want %x", cb.TxIn[0].SignatureScript, wantScript)
			}
			if cb.Version != 2 || cb.LockTime != 999 || cb.TxIn[0].Sequence != 0xfffffffe || !blockchain.IsCoinBaseTx(&cb) {
				t.Fatalf("coinbase fields %+v", cb)
			}
			if cb.TxOut[0].Value != 5_000_000_000 || !bytes.Equal(cb.TxOut[0].PkScript, payout[0].PkScript) {
				t.Fatalf("payout %+v", cb.TxOut[0])
			}
			if cb.HasWitness() != (n > 0) || len(cb.TxOut) != 1+int(nt.CoinbaseTxOutputsCount) {
				t.Fatalf("witness %v outputs %d", cb.HasWitness(), len(cb.TxOut))
			}
			// The stripped form hashes to btcd's txid.
			txid := templates.DoubleSHA256(jt.CoinbaseTx(full, false))
			if txid != cb.TxHash() {
				t.Fatalf("txid %x, btcd %x", txid, cb.TxHash())
			}
			// Merkle root over coinbase + txs, and the witness commitment.
			btxs := []*btcutil.Tx{btcutil.NewTx(&cb)}
			for _, tx := range txs {
				btxs = append(btxs, btcutil.NewTx(tx))
			}
			root := blockchain.CalcMerkleRoot(btxs, false)
			if got := jt.MerkleRoot(full); got != root {
				t.Fatalf("merkle root %x, btcd %x", got, root)
			}
			store := blockchain.BuildMerkleTreeStore(btxs, false)
			if *store[len(store)-1] != root {
				t.Fatal("btcd tree store disagrees with CalcMerkleRoot")
			}
			// The session's midstate path gives the same root.
			s := NewSession(Config{}, mustAlloc(t, nil, 16, 8))
			prefix, ext := full[:8], full[8:]
			if got := s.merkleRoot(jt, prefix, ext); got != root {
				t.Fatalf("midstate merkle root %x, btcd %x", got, root)
			}
			// A full block assembled from a job parses and commits to its txs.
			j := &Job{Template: jt, ExtranoncePrefix: prefix, ExtranonceSize: 8}
			h := &templates.Header{Version: jt.Version, MerkleRoot: root, Time: 1, Bits: regtestBits}
			blk, err := btcutil.NewBlockFromBytes(j.Block(h, ext, raw))
			if err != nil {
				t.Fatal(err)
			}
			if blk.MsgBlock().Header.MerkleRoot != root || len(blk.Transactions()) != n+1 {
				t.Fatal("assembled block differs")
			}
			if err := blockchain.ValidateWitnessCommitment(blk); err != nil {
				t.Fatalf("witness commitment: %v", err)
			}
		})
	}
}

func mustAlloc(t testing.TB, prefix []byte, size, down int) *ExtranonceAllocator {
	t.Helper()
	a, err := NewExtranonceAllocator(prefix, size, down, 0)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestCustomJobRoundTrip: the pool's rebuild of a JDC's SetCustomMiningJob
// gives the same coinbase, so shares hash the same on both sides.
func TestCustomJobRoundTrip(t *testing.T) {
	_, txs := fakeTxs(5, 9)
	jt := jobTemplate(t, newTemplateMsg(7, false, 500, txs), 20)
	tip := tipAt(regtestBits, t0)
	m := jt.SetCustomMiningJob(3, 11, []byte("token"), &tip)
	if m.MinNTime != tip.MinNTime || m.PrevHash != tip.PrevHash || m.NBits != regtestBits || m.ChannelID != 3 || m.RequestID != 11 {
		t.Fatalf("custom job fields %+v", m)
	}
	// Through the wire and back.
	payload, err := codec.Append(nil, m, codec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var dec messages.SetCustomMiningJob
	if err := codec.Decode(payload, &dec, codec.Options{}); err != nil {
		t.Fatal(err)
	}
	got, err := JobTemplateFromCustomJob(&dec, 20, 99)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []bool{false, true} {
		p1, s1 := jt.CoinbaseParts(w)
		p2, s2 := got.CoinbaseParts(w)
		if !bytes.Equal(p1, p2) || !bytes.Equal(s1, s2) {
			t.Fatalf("witness=%v: pool's coinbase parts differ", w)
		}
	}
	if got.ID != 99 || got.Version != jt.Version || !got.Witness() || len(got.MerklePath) != len(jt.MerklePath) {
		t.Fatalf("custom template %+v", got)
	}
	if _, err := JobTemplateFromCustomJob(&messages.SetCustomMiningJob{CoinbaseTxOutputs: []byte{5, 1}}, 20, 1); err == nil {
		t.Fatal("bad outputs accepted")
	}
	if _, err := JobTemplateFromCustomJob(m, 33, 1); err == nil {
		t.Fatal("extranonce 33 accepted")
	}
}

func TestNewJobTemplateErrors(t *testing.T) {
	_, txs := fakeTxs(1, 1)
	nt := newTemplateMsg(1, false, 100, txs)
	tests := []struct {
		name string
		cc   CoinbaseConfig
	}{
		{"zero extranonce", CoinbaseConfig{Outputs: payout}},
		{"extranonce 33", CoinbaseConfig{Outputs: payout, ExtranonceSize: 33}},
		{"overpay", CoinbaseConfig{Outputs: []templates.TxOutput{{Value: 5_000_000_001, PkScript: payout[0].PkScript}}, ExtranonceSize: 8}},
		{"negative", CoinbaseConfig{Outputs: []templates.TxOutput{{Value: -1, PkScript: payout[0].PkScript}}, ExtranonceSize: 8}},
		{"tag too long", CoinbaseConfig{Outputs: payout, Tag: make([]byte, 76), ExtranonceSize: 8}},
		{"scriptSig > 100", CoinbaseConfig{Outputs: payout, Tag: make([]byte, 70), ExtranonceSize: 32}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewJobTemplate(nt, tc.cc); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	bad := *nt
	bad.CoinbaseTxOutputsCount = 3
	if _, err := NewJobTemplate(&bad, CoinbaseConfig{Outputs: payout, ExtranonceSize: 8}); err == nil {
		t.Fatal("bad template outputs accepted")
	}
	if _, err := PayRemaining(nil, 1); err == nil {
		t.Fatal("no payout accepted")
	}
	if _, err := PayRemaining([]templates.TxOutput{{}, {Value: 10}}, 5); err == nil {
		t.Fatal("overpaying outputs accepted")
	}
	outs, _ := PayRemaining([]templates.TxOutput{{Value: 1}, {Value: 10}}, 50)
	if outs[0].Value != 40 || outs[1].Value != 10 {
		t.Fatalf("pay remaining %+v", outs)
	}
}

// TestSv2TPVectorTemplate builds a job from sv2-tp's NewTemplate test vector
// (non-final sequence and time-locked coinbase copied verbatim).
func TestSv2TPVectorTemplate(t *testing.T) {
	nt := &messages.NewTemplate{
		TemplateID: 1, Version: 0x30000000, CoinbaseTxVersion: 2,
		CoinbasePrefix: []byte{0x03, 0x01, 0x21, 0x00}, CoinbaseTxInputSequence: 0xffffffff,
		CoinbaseTxValueRemaining: 2_100_000_000_000_000, CoinbaseTxOutputsCount: 1,
		CoinbaseTxOutputs:  []byte{1, 0, 0, 0, 0, 0, 0, 0, 3, 0x6a, 0x01, 0x2a},
		CoinbaseTxLocktime: 903387,
		MerklePath:         [][32]byte{{0x1a, 0x62}},
	}
	jt, err := NewJobTemplate(nt, CoinbaseConfig{Outputs: []templates.TxOutput{{Value: 1, PkScript: payout[0].PkScript}}, ExtranonceSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	var cb wire.MsgTx
	if err := cb.Deserialize(bytes.NewReader(jt.CoinbaseTx(make([]byte, 8), true))); err != nil {
		t.Fatal(err)
	}
	if jt.Witness() || cb.LockTime != 903387 || cb.TxIn[0].Sequence != 0xffffffff || len(cb.TxOut) != 2 || cb.TxOut[1].Value != 1 {
		t.Fatalf("coinbase %+v", cb)
	}
	if !bytes.HasPrefix(cb.TxIn[0].SignatureScript, []byte{0x03, 0x01, 0x21, 0x00, 0x08}) {
		t.Fatalf("scriptSig %x", cb.TxIn[0].SignatureScript)
	}
}
