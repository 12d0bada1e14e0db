package provider

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/templates"
)

// fastPathBench is a core with n clients in 4 reservation groups, ready for
// a fast-path new tip.
func fastPathBench(b *testing.B, n int) (*Core, *testChain, time.Time) {
	c := newCore(b, Config{HalvingInterval: 150, NoRetargeting: true, MaxClients: n})
	ch := newTestChain(31, 1000)
	now := t0
	c.NodeTemplate(ch.source(someTxs()), ch.info(), now)
	for i := 0; i < n; i++ {
		connect(b, c, ClientID(i+1), uint32(100*(i%4)), now)
	}
	return c, ch, now
}

func reportPercentiles(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	if len(d) == 0 {
		return
	}
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds()), "p99-ns")
}

// benchFastPath measures NewTip → Actions (and, with encode, the frames of
// all SetNewPrevHash messages, one encoding per client as a shell that does
// not share encodings would do).
func benchFastPath(b *testing.B, encode bool) {
	const clients = 1000
	c, ch, now := fastPathBench(b, clients)
	src := ch.source(nil)
	buf := make([]byte, 0, 128*clients)
	durs := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		now = now.Add(time.Minute)
		notice := ch.mine(uint32(now.Unix()))
		b.StartTimer()
		start := time.Now()
		a := c.NewTip(notice, now)
		if encode {
			buf = buf[:0]
			for _, o := range a.Send {
				var err error
				if buf, err = codec.AppendFrame(buf, o.Msg, codec.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		}
		durs = append(durs, time.Since(start))
		b.StopTimer()
		if len(a.Send) != clients {
			b.Fatalf("%d SetNewPrevHash, want %d", len(a.Send), clients)
		}
		s := *src
		s.Height, s.PrevHash = ch.height+1, ch.tip
		c.NodeTemplate(&s, ch.info(), now)
		b.StartTimer()
	}
	b.StopTimer()
	reportPercentiles(b, durs)
}

func BenchmarkNewTipFastPath1000Clients(b *testing.B)        { benchFastPath(b, false) }
func BenchmarkNewTipFastPath1000ClientsEncoded(b *testing.B) { benchFastPath(b, true) }

// BenchmarkEncodeSetNewPrevHash1000 is the encoding share alone: 1000
// SetNewPrevHash frames.
func BenchmarkEncodeSetNewPrevHash1000(b *testing.B) {
	c, ch, now := fastPathBench(b, 1000)
	a := c.NewTip(ch.mine(uint32(now.Unix())), now)
	buf := make([]byte, 0, 128*1000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf = buf[:0]
		for _, o := range a.Send {
			buf, _ = codec.AppendFrame(buf, o.Msg, codec.Options{})
		}
	}
	b.ReportMetric(float64(len(buf))/1000, "bytes/frame")
}

// benchNodeTemplate measures a tip-change NodeTemplate with a 4000-tx
// source for one group (one client).
func benchNodeTemplate(b *testing.B, reservation uint32) {
	c := newCore(b, Config{HalvingInterval: 150, NoRetargeting: true})
	ch := newTestChain(32, 1000)
	specs := make([]txSpec, 4000)
	for i := range specs {
		specs[i] = txSpec{fee: int64(1000 + i), weight: 990, witness: i%3 != 0, parent: -1}
		if i%10 == 9 {
			specs[i].parent = i - 1
		}
	}
	srcA := ch.source(specs)
	srcB := *srcA
	srcB.PrevHash[0] ^= 0xff
	c.NodeTemplate(srcA, ch.info(), t0)
	connect(b, c, 1, reservation, t0)
	srcs := []*templates.Source{&srcB, srcA}
	durs := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		a := c.NodeTemplate(srcs[i%2], ChainInfo{}, t0)
		durs = append(durs, time.Since(start))
		if len(a.Send) != 3 {
			b.Fatalf("%d messages", len(a.Send))
		}
	}
	b.StopTimer()
	reportPercentiles(b, durs)
}

// No transaction dropped: the node's witness commitment is used.
func BenchmarkNodeTemplate4000Tx(b *testing.B) { benchNodeTemplate(b, 100) }

// A reservation that drops transactions: fit, merkle path and witness
// commitment recomputed.
func BenchmarkNodeTemplate4000TxDropping(b *testing.B) { benchNodeTemplate(b, 50_000) }

// BenchmarkClientMemory reports the heap retained per connected, set-up
// client (state, group membership, token bucket).
func BenchmarkClientMemory(b *testing.B) {
	const n = 10_000
	var perClient float64
	for i := 0; i < b.N; i++ {
		c := newCore(b, Config{HalvingInterval: 150, NoRetargeting: true, MaxClients: n + 1})
		ch := newTestChain(33, 1000)
		c.NodeTemplate(ch.source(someTxs()), ch.info(), t0)
		connect(b, c, 1, 100, t0)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for id := 2; id <= n+1; id++ {
			connect(b, c, ClientID(id), uint32(100*(id%4)), t0)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perClient = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(c)
	}
	b.ReportMetric(perClient, "bytes/client")
}
