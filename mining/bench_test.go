package mining

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
)

// benchTemplate returns a template with a merkle path of depth d (2^d − 1 other
// transactions, the depth of a block with that many).
func benchTemplate(b *testing.B, id uint64, future bool, depth int, fullSize int) *JobTemplate {
	nt := newTemplateMsg(id, future, 900_000, nil)
	for i := 0; i < depth; i++ {
		nt.MerklePath = append(nt.MerklePath, [32]byte{byte(i), 1, 2, 3})
	}
	// A witness commitment output like a real template.
	wc := newTemplateMsg(id, future, 900_000, fakeTxsOnly(1))
	nt.CoinbaseTxOutputs, nt.CoinbaseTxOutputsCount = wc.CoinbaseTxOutputs, wc.CoinbaseTxOutputsCount
	return jobTemplate(b, nt, fullSize)
}

func fakeTxsOnly(n int) []*wire.MsgTx { _, txs := fakeTxs(n, 1); return txs }

// BenchmarkSubmitExtended validates accepted shares on an extended channel.
// "rolling" submits nonces on one extranonce (what a device does between
// extranonce changes: the merkle root comes from the per-channel cache);
// "new-extranonce" changes the extranonce on every share (worst case: the
// coinbase and the whole merkle path are hashed per share).
func BenchmarkSubmitExtended(b *testing.B) {
	for _, mode := range []string{"rolling", "new-extranonce"} {
		for _, depth := range []int{0, 6, 12} {
			b.Run(fmt.Sprintf("%s/path=%d", mode, depth), func(b *testing.B) {
				alloc := mustAlloc(b, []byte{1, 2, 3, 4}, 12, 8)
				s := NewSession(Config{DuplicateWindow: 4096}, alloc)
				c, _ := s.OpenExtended(&messages.OpenExtendedMiningChannel{NominalHashRate: 1, MaxTarget: MaxTarget}, t0)
				c.SetTarget(MaxTarget) // every share is accepted
				jt := benchTemplate(b, 1, true, depth, alloc.FullSize())
				if _, err := s.NewTemplate(jt); err != nil {
					b.Fatal(err)
				}
				tip := tipAt(mainnetBits, t0)
				if _, err := s.NewPrevHash(1, tip); err != nil {
					b.Fatal(err)
				}
				m := &messages.SubmitSharesExtended{ChannelID: c.ID(), JobID: c.Jobs()[0].ID, NTime: tip.MinNTime, Version: jt.Version, Extranonce: make([]byte, 8)}
				now := t0.Add(time.Second)
				newExt := mode == "new-extranonce"
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					m.Nonce = uint32(i)
					if newExt {
						binary.LittleEndian.PutUint64(m.Extranonce, uint64(i))
					}
					if r := s.SubmitExtended(m, now); r.Status != Accepted {
						b.Fatalf("share %d: %q", i, r.Code)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "shares/s")
			})
		}
	}
}

func BenchmarkSubmitStandard(b *testing.B) {
	alloc := mustAlloc(b, []byte{1, 2, 3, 4}, 12, 8)
	s := NewSession(Config{DuplicateWindow: 4096, StandardJobs: true}, alloc)
	c, _ := s.OpenStandard(&messages.OpenStandardMiningChannel{NominalHashRate: 1, MaxTarget: MaxTarget}, t0)
	c.SetTarget(MaxTarget)
	jt := benchTemplate(b, 1, true, 12, alloc.FullSize())
	s.NewTemplate(jt)
	tip := tipAt(mainnetBits, t0)
	s.NewPrevHash(1, tip)
	m := &messages.SubmitSharesStandard{ChannelID: c.ID(), JobID: c.Jobs()[0].ID, NTime: tip.MinNTime, Version: jt.Version}
	now := t0.Add(time.Second)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Nonce = uint32(i)
		m.Version = jt.Version | uint32(i>>32)<<13
		if r := s.SubmitStandard(m, now); r.Status != Accepted {
			b.Fatalf("share %d: %q", i, r.Code)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "shares/s")
}

// BenchmarkNewTip1000 measures what jdc does for 1,000 device channels when
// a new block arrives: the future template's jobs (sent ahead, before the
// block when the TP sends its empty future template early) and the
// SetNewPrevHash that activates them. Reported: mean and p99 per tip change
// for both steps, and for the SetNewPrevHash step alone.
//
// Back-to-back tip changes allocate far faster than jdc ever does (one tip
// per block, a template every few seconds), so the garbage collector runs
// every few iterations and dominates the p99. The "settled" variants run a
// collection before each tip change (outside the measured time) to show the
// latency of a tip change that does not overlap one.
func BenchmarkNewTip1000(b *testing.B) {
	for _, kind := range []string{"extended", "standard", "group", "extended-settled", "group-settled"} {
		for _, depth := range []int{0, 12} {
			settled := strings.HasSuffix(kind, "-settled")
			kind := strings.TrimSuffix(kind, "-settled")
			name := kind
			if settled {
				name += "-settled"
			}
			b.Run(fmt.Sprintf("%s/path=%d", name, depth), func(b *testing.B) {
				alloc := mustAlloc(b, []byte{1, 2, 3, 4}, 12, 8)
				s := NewSession(Config{MaxChannels: 1000, StandardJobs: kind == "standard"}, alloc)
				for i := 0; i < 1000; i++ {
					if kind == "extended" {
						s.OpenExtended(&messages.OpenExtendedMiningChannel{NominalHashRate: 1e12, MaxTarget: MaxTarget}, t0)
					} else {
						s.OpenStandard(&messages.OpenStandardMiningChannel{NominalHashRate: 1e12, MaxTarget: MaxTarget}, t0)
					}
				}
				jts := make([]*JobTemplate, 64)
				for i := range jts {
					jts[i] = benchTemplate(b, uint64(i+1), true, depth, alloc.FullSize())
				}
				both := make([]time.Duration, 0, b.N)
				snph := make([]time.Duration, 0, b.N)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					jt := jts[i%len(jts)]
					tip := tipAt(mainnetBits, t0.Add(time.Duration(i)*time.Second))
					if settled {
						b.StopTimer()
						runtime.GC()
						b.StartTimer()
					}
					start := time.Now()
					out, err := s.NewTemplate(jt)
					if err != nil {
						b.Fatal(err)
					}
					mid := time.Now()
					out2, err := s.NewPrevHash(jt.ID, tip)
					if err != nil {
						b.Fatal(err)
					}
					end := time.Now()
					both = append(both, end.Sub(start))
					snph = append(snph, end.Sub(mid))
					if len(out)+len(out2) == 0 {
						b.Fatal("no messages")
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(p99(both).Microseconds()), "p99-µs/tip")
				b.ReportMetric(float64(p99(snph).Microseconds()), "p99-snph-µs")
			})
		}
	}
}

func p99(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)*99)/100]
}

// BenchmarkNewTip1000Sessions is the same fan-out when each device is its
// own connection (one Session with one extended channel each), as in jdc.
//
// "append" uses AppendNewTemplate/AppendNewPrevHash with one shared tip and
// one reused message buffer, as a fan-out loop can.
func BenchmarkNewTip1000Sessions(b *testing.B) {
	for _, mode := range []string{"extended", "extended-append"} {
		for _, depth := range []int{0, 12} {
			appendMode := mode == "extended-append"
			b.Run(fmt.Sprintf("%s/path=%d", mode, depth), func(b *testing.B) {
				alloc := mustAlloc(b, []byte{1, 2, 3, 4}, 12, 8)
				sessions := make([]*Session, 1000)
				for i := range sessions {
					sessions[i] = NewSession(Config{}, alloc)
					sessions[i].OpenExtended(&messages.OpenExtendedMiningChannel{NominalHashRate: 1e12, MaxTarget: MaxTarget}, t0)
				}
				jts := make([]*JobTemplate, 64)
				for i := range jts {
					jts[i] = benchTemplate(b, uint64(i+1), true, depth, alloc.FullSize())
				}
				both := make([]time.Duration, 0, b.N)
				snph := make([]time.Duration, 0, b.N)
				var buf []codec.Message
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					jt := jts[i%len(jts)]
					tip := tipAt(mainnetBits, t0.Add(time.Duration(i)*time.Second))
					tip.Target = tip.NetworkTarget()
					start := time.Now()
					var err error
					for _, s := range sessions {
						if appendMode {
							buf, err = s.AppendNewTemplate(buf[:0], jt)
						} else {
							_, err = s.NewTemplate(jt)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					mid := time.Now()
					shared := &tip
					for _, s := range sessions {
						if appendMode {
							buf, err = s.AppendNewPrevHash(buf[:0], jt.ID, shared)
						} else {
							_, err = s.NewPrevHash(jt.ID, tip)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					end := time.Now()
					both = append(both, end.Sub(start))
					snph = append(snph, end.Sub(mid))
				}
				b.StopTimer()
				b.ReportMetric(float64(p99(both).Microseconds()), "p99-µs/tip")
				b.ReportMetric(float64(p99(snph).Microseconds()), "p99-snph-µs")
			})
		}
	}
}

// BenchmarkChannelMemory reports the heap held per open channel with one
// active job and one pending future job (duplicate tables empty: they grow
// with accepted shares, up to 32 KiB per channel at the default window).
func BenchmarkChannelMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		alloc := mustAlloc(b, []byte{1, 2, 3, 4}, 12, 8)
		jts := []*JobTemplate{benchTemplate(b, 1, true, 12, alloc.FullSize()), benchTemplate(b, 2, true, 12, alloc.FullSize())}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := NewSession(Config{MaxChannels: 10_000}, alloc)
		for i := 0; i < 10_000; i++ {
			s.OpenExtended(&messages.OpenExtendedMiningChannel{NominalHashRate: 1e12, MaxTarget: MaxTarget}, t0)
		}
		s.NewTemplate(jts[0])
		s.NewPrevHash(1, tipAt(mainnetBits, t0))
		s.NewTemplate(jts[1])
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/10_000, "B/channel")
		runtime.KeepAlive(s)
	}
}
