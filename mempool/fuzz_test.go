package mempool

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/wire"
)

// FuzzStoreAdd feeds arbitrary bytes to Store.Add: no panic, memory bounded
// by the input, and the parser agrees with btcd's wire.MsgTx on what is a
// transaction and on its ids.
func FuzzStoreAdd(f *testing.F) {
	f.Add(ser(f, simpleTx(1, true)))
	f.Add(ser(f, simpleTx(2, false)))
	f.Add(ser(f, synthTx(3, []wire.OutPoint{outpoint(1), outpoint(2)}, 3, true)))
	f.Add(ser(f, synthTx(4, nil, 1, false)))
	f.Add([]byte{2, 0, 0, 0, 0, 1, 1})
	f.Add([]byte{2, 0, 0, 0, 0xfd, 0xfd, 0})
	f.Add([]byte{})
	// Scripts with sigops, pushes and a push that runs past the end.
	sig := wire.NewMsgTx(2)
	sig.AddTxIn(wire.NewTxIn(&wire.OutPoint{Index: 1}, []byte{0xac, 0x02, 0xae, 0xae, 0xad, 0x4c, 0x01, 0xac, 0xaf}, nil))
	sig.AddTxOut(wire.NewTxOut(1, []byte{0x51, 0xae, 0x4d, 0x03, 0x00, 0xac, 0xac, 0xac, 0xac}))
	sig.AddTxOut(wire.NewTxOut(2, []byte{0xac, 0x4e, 0xff, 0xff}))
	f.Add(ser(f, sig))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s := NewStore(0)
		e, err := s.Add(raw)
		var tx wire.MsgTx
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if s.Len() != 0 || s.Bytes() != 0 {
				t.Fatal("rejected bytes were stored")
			}
			// Counts that cannot fit are where wire.MsgTx would allocate
			// in proportion to the count, not to the input: skip it there.
			if strings.Contains(err.Error(), "cannot fit") || len(raw) > MaxTxSize {
				return
			}
			r := bytes.NewReader(raw)
			if tx.Deserialize(r) == nil && r.Len() == 0 {
				t.Fatalf("wire.MsgTx accepts what Add refused (%v)", err)
			}
			return
		}
		r := bytes.NewReader(raw)
		if err := tx.Deserialize(r); err != nil || r.Len() != 0 {
			t.Fatalf("Add accepted what wire.MsgTx refuses: %v, %d bytes left", err, r.Len())
		}
		if e.TxID != tx.TxHash() || e.WTxID != tx.WitnessHash() || e.Size != len(raw) {
			t.Fatalf("entry %+v, wire ids %s %s", e, tx.TxHash(), tx.WitnessHash())
		}
		got, ok := s.ByWTxID(e.WTxID)
		if !ok || !bytes.Equal(got, raw) {
			t.Fatal("not found by wtxid")
		}
		k := 0
		if _, err := WalkInputs(got, func(op wire.OutPoint) {
			if op != tx.TxIn[k].PreviousOutPoint {
				t.Fatalf("input %d: %v", k, op)
			}
			k++
		}); err != nil || k != len(tx.TxIn) {
			t.Fatalf("%d inputs walked, want %d (%v)", k, len(tx.TxIn), err)
		}
		// The exported scanner: spends in order, weight and legacy sigops
		// as btcd's consensus code counts them.
		k = 0
		ti, err := ScanTx(raw, ScanOptions{SigOps: true, Spend: func(op wire.OutPoint) {
			if op != tx.TxIn[k].PreviousOutPoint {
				t.Fatalf("scan input %d: %v", k, op)
			}
			k++
		}})
		if err != nil || k != len(tx.TxIn) {
			t.Fatalf("ScanTx: %d inputs, %v", k, err)
		}
		btx := btcutil.NewTx(&tx)
		if w := blockchain.GetTransactionWeight(btx); int64(ti.Weight) != w || ti.TxID != tx.TxHash() {
			t.Fatalf("ScanTx weight %d, btcd %d", ti.Weight, w)
		}
		if n := blockchain.CountSigOps(btx); ti.SigOps != n {
			t.Fatalf("ScanTx sigops %d, btcd %d", ti.SigOps, n)
		}
		if s.Bytes() != Cost(len(raw), tx.HasWitness()) {
			t.Fatalf("accounted %d", s.Bytes())
		}
		if !s.Remove(e.TxID) || s.Len() != 0 || s.Bytes() != 0 {
			t.Fatal("remove")
		}
	})
}
