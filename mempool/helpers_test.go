package mempool

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// synthTx builds a transaction that spends ins and has nOut outputs; with
// witness, each input carries a 72-byte signature and a 33-byte key as a
// P2WPKH spend does. seed makes it unique.
func synthTx(seed uint64, ins []wire.OutPoint, nOut int, witness bool) *wire.MsgTx {
	tx := wire.NewMsgTx(2)
	for _, op := range ins {
		in := wire.NewTxIn(&op, nil, nil)
		if witness {
			sig := make([]byte, 72)
			binary.LittleEndian.PutUint64(sig, seed)
			in.Witness = wire.TxWitness{sig, make([]byte, 33)}
		} else {
			script := make([]byte, 107)
			binary.LittleEndian.PutUint64(script, seed)
			in.SignatureScript = script
		}
		tx.AddTxIn(in)
	}
	for k := 0; k < nOut; k++ {
		pk := make([]byte, 22)
		pk[0], pk[1] = 0x00, 0x14
		binary.LittleEndian.PutUint64(pk[2:], seed+uint64(k))
		tx.AddTxOut(wire.NewTxOut(int64(1000+k), pk))
	}
	tx.LockTime = uint32(seed)
	return tx
}

// outpoint returns a made-up confirmed outpoint.
func outpoint(n uint64) wire.OutPoint {
	var h chainhash.Hash
	binary.LittleEndian.PutUint64(h[:], n)
	h[31] = 0xee
	return wire.OutPoint{Hash: h, Index: uint32(n % 7)}
}

func ser(t testing.TB, tx *wire.MsgTx) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// simpleTx is a one-input, one-output transaction spending a fresh outpoint.
func simpleTx(seed uint64, witness bool) *wire.MsgTx {
	return synthTx(seed, []wire.OutPoint{outpoint(seed)}, 1, witness)
}

// checkInvariants verifies the store's internal consistency.
func checkInvariants(t *testing.T, s *Store) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	var bytes, raw int64
	live := 0
	for c := range s.chunks {
		for k := range s.chunks[c] {
			sl := &s.chunks[c][k]
			if sl.raw == nil {
				continue
			}
			live++
			i := uint32(c<<chunkBits | k)
			txid, wtxid := sl.ids()
			if j, ok := s.byTxID[txid]; !ok || j != i {
				t.Fatalf("slot %d (%s) not indexed by txid", i, txid)
			}
			if sl.witness != (wtxid != txid) {
				t.Fatalf("slot %d: witness flag %v", i, sl.witness)
			}
			if sl.witness {
				if j, ok := s.byWTxID[wtxid]; !ok || j != i {
					t.Fatalf("slot %d not indexed by wtxid", i)
				}
			}
			if int(sl.pos) >= len(s.heap) || s.heap[sl.pos] != i {
				t.Fatalf("slot %d: heap position %d wrong", i, sl.pos)
			}
			bytes += int64(sl.cost)
			raw += int64(len(sl.raw))
		}
	}
	if live != len(s.byTxID) || live != len(s.heap) {
		t.Fatalf("%d live slots, %d txids, %d heap entries", live, len(s.byTxID), len(s.heap))
	}
	if len(s.byWTxID) > live {
		t.Fatalf("%d wtxid entries for %d transactions", len(s.byWTxID), live)
	}
	if bytes != s.bytes || raw != s.raw {
		t.Fatalf("accounted %d/%d bytes, counters say %d/%d", bytes, raw, s.bytes, s.raw)
	}
	if s.maxBytes > 0 && s.bytes > s.maxBytes {
		t.Fatalf("%d bytes over the bound %d", s.bytes, s.maxBytes)
	}
	for j := 1; j < len(s.heap); j++ {
		if s.heapLess(j, (j-1)/2) {
			t.Fatalf("heap order broken at %d", j)
		}
	}
}
