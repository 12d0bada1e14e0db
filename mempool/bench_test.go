package mempool

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/btcsuite/btcd/wire"
)

type txShape struct {
	name       string
	nIn, nOut  int
	witness    bool
	chainEvery int // every chainEvery-th tx spends the previous one (0: never)
}

var benchShapes = []txShape{
	{name: "p2wpkh-1in-2out", nIn: 1, nOut: 2, witness: true},
	{name: "p2wpkh-2in-2out", nIn: 2, nOut: 2, witness: true},
	{name: "legacy-1in-2out", nIn: 1, nOut: 2},
}

func shapeTxs(tb testing.TB, sh txShape, n int) (raws [][]byte, total int) {
	raws = make([][]byte, n)
	for i := range raws {
		ins := make([]wire.OutPoint, sh.nIn)
		for k := range ins {
			ins[k] = outpoint(uint64(i*sh.nIn + k + 1))
		}
		raws[i] = ser(tb, synthTx(uint64(i)+1, ins, sh.nOut, sh.witness))
		total += len(raws[i])
	}
	return raws, total
}

// BenchmarkStoreMemory measures the heap a store takes per transaction
// beyond the transaction's raw bytes: runtime.MemStats after a GC, before
// and after adding 100,000 synthetic transactions of common shapes. It
// reports overhead-B/tx (measured), accounted-B/tx (what Cost charges
// beyond the raw bytes) and the time per Add.
func BenchmarkStoreMemory(b *testing.B) {
	const n = 100_000
	for _, sh := range benchShapes {
		b.Run(sh.name, func(b *testing.B) {
			raws, total := shapeTxs(b, sh, n)
			var overhead, accounted, nsPerAdd float64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				s := NewStore(0)
				b.ResetTimer()
				for _, raw := range raws {
					if _, err := s.Add(raw); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				nsPerAdd = float64(b.Elapsed().Nanoseconds()) / n
				runtime.GC()
				runtime.ReadMemStats(&after)
				if s.Len() != n {
					b.Fatalf("%d stored", s.Len())
				}
				overhead = (float64(after.HeapAlloc) - float64(before.HeapAlloc) - float64(total)) / n
				accounted = float64(s.Bytes()-int64(total)) / n
				runtime.KeepAlive(s)
				b.StartTimer()
			}
			b.ReportMetric(float64(total)/n, "raw-B/tx")
			b.ReportMetric(overhead, "overhead-B/tx")
			b.ReportMetric(accounted, "accounted-B/tx")
			b.ReportMetric(nsPerAdd, "ns/add")
		})
	}
}

// BenchmarkLookup4000 looks up a 4,000-transaction declaration in a store
// of 100,000 (the DeclareMiningJob path).
func BenchmarkLookup4000(b *testing.B) {
	raws, _ := shapeTxs(b, benchShapes[0], 100_000)
	s := NewStore(0)
	wtxids := make([][32]byte, 0, 4000)
	for i, raw := range raws {
		e, err := s.Add(raw)
		if err != nil {
			b.Fatal(err)
		}
		if i%25 == 0 {
			wtxids = append(wtxids, e.WTxID)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, missing := s.LookupWTxIDs(wtxids); len(missing) != 0 {
			b.Fatal("missing")
		}
	}
}

// BenchmarkRemoveConfirmed removes a 3,000-transaction block from a store of
// 100,000, the conflict scan included.
func BenchmarkRemoveConfirmed(b *testing.B) {
	raws, _ := shapeTxs(b, benchShapes[0], 100_000)
	blk := &wire.MsgBlock{Transactions: []*wire.MsgTx{simpleTx(1<<40, false)}}
	for i := range 3000 {
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(raws[i*30])); err != nil {
			b.Fatal(err)
		}
		blk.Transactions = append(blk.Transactions, &tx)
	}
	for b.Loop() {
		b.StopTimer()
		s := NewStore(0)
		for _, raw := range raws {
			s.Add(raw)
		}
		b.StartTimer()
		if c, _ := s.RemoveConfirmed(blk); c != 3000 {
			b.Fatalf("%d confirmed", c)
		}
	}
}
