package devices

import (
	"context"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/mining"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// benchDevice connects conns devices over loopback, each opening chans
// channels, and drains everything the server sends.
func benchDevices(b *testing.B, ts *testServer, conns, chans int, flags uint32, extended, noRead bool) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	sem := make(chan struct{}, 32)
	for i := 0; i < conns; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := noise.Dial(ctx, "tcp", ts.addr, &noise.Config{Plaintext: ts.pub == nil, AuthorityPubKey: ts.pub})
			if err != nil {
				errs <- err
				return
			}
			b.Cleanup(func() { c.Close() })
			w := func(m codec.Message) {
				if err := c.WriteMessage(m, codec.Options{}); err != nil {
					errs <- err
				}
			}
			w(&messages.SetupConnection{Protocol: messages.ProtocolMining, MinVersion: 2, MaxVersion: 2, Flags: flags})
			// Connect at most 32 at a time: wait for the answer.
			if _, _, err := c.ReadFrame(); err != nil {
				errs <- err
				return
			}
			for j := 0; j < chans; j++ {
				if extended {
					w(&messages.OpenExtendedMiningChannel{RequestID: uint32(j), UserIdentity: "bench", NominalHashRate: 1e12, MaxTarget: mining.MaxTarget, MinExtranonceSize: 4})
				} else {
					w(&messages.OpenStandardMiningChannel{RequestID: uint32(j), UserIdentity: "bench", NominalHashRate: 1e12, MaxTarget: mining.MaxTarget})
				}
			}
			if noRead {
				return // what the server sends stays in the socket buffers
			}
			go func() {
				if ts.pub == nil {
					_, _ = io.Copy(io.Discard, c.NetConn())
					return
				}
				for {
					if _, _, err := c.ReadFrame(); err != nil {
						return
					}
				}
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for ts.s.Stats().Channels != conns*chans {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d channels open", ts.s.Stats().Channels, conns*chans)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkNewTipFanout measures SetPrevHash → the SetNewPrevHash (and
// nothing else: the future job was sent ahead) written to every device
// connection. Reported: p50/p99 of the time until the LAST connection's
// frame was written ("all"), and p99 over single connections ("conn").
func BenchmarkNewTipFanout(b *testing.B) {
	for _, bc := range []struct {
		name      string
		plaintext bool
		conns     int
		chans     int
		flags     uint32
		extended  bool
		noRead    bool
	}{
		{"1000conns/standard/noise", false, 1000, 1, messages.FlagRequiresStandardJobs, false, false},
		{"1000conns/standard/noise/devices-not-reading", false, 1000, 1, messages.FlagRequiresStandardJobs, false, true},
		{"1000conns/extended/noise", false, 1000, 1, 0, true, false},
		{"1000conns/standard/plaintext", true, 1000, 1, messages.FlagRequiresStandardJobs, false, false},
		{"1conn-1000chans/group/noise", false, 1, 1000, 0, false, false},
		{"1conn-1000chans/standard-jobs/noise", false, 1, 1000, messages.FlagRequiresStandardJobs, false, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ts := startServer(b, Config{Plaintext: bc.plaintext, MaxChannelsPerConn: 2000, SendQueue: 1024,
				Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{b}})})
			var mu sync.Mutex
			var per []time.Duration
			var lastWritten time.Time
			got := 0
			done := make(chan struct{}, 1)
			ts.s.onTipSent = func(posted, written time.Time) {
				mu.Lock()
				per = append(per, written.Sub(posted))
				got++
				if written.After(lastWritten) {
					lastWritten = written
				}
				if got == bc.conns {
					done <- struct{}{}
				}
				mu.Unlock()
			}
			var queued []time.Duration
			ts.s.onTipQueued = func(posted, at time.Time) {
				mu.Lock()
				queued = append(queued, at.Sub(posted))
				mu.Unlock()
			}
			ts.s.SetWork(testWork(1, true, 8))
			ts.s.SetPrevHash(prevHash(1, hardBits))
			ts.s.sync()
			benchDevices(b, ts, bc.conns, bc.chans, bc.flags, bc.extended, bc.noRead)
			<-time.After(200 * time.Millisecond)
			mu.Lock()
			got, per, queued = 0, per[:0], queued[:0]
			mu.Unlock()
			for len(done) > 0 {
				<-done
			}

			// The timer runs through the whole cycle (future work, flush, tip)
			// so -benchtime stays a bound on wall time; the tip latency is in
			// the reported metrics.
			var all []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				id := uint64(i + 2)
				ts.s.SetWork(testWork(id, true, 8))
				ts.s.sync()
				idle(ts.s) // the future jobs are flushed
				mu.Lock()
				got, lastWritten = 0, time.Time{}
				mu.Unlock()
				posted := time.Now()
				ts.s.SetPrevHash(prevHash(id, hardBits))
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					b.Fatalf("tip %d: only %d of %d connections written", id, got, bc.conns)
				}
				mu.Lock()
				all = append(all, lastWritten.Sub(posted))
				mu.Unlock()
			}
			b.StopTimer()
			slices.Sort(all)
			mu.Lock()
			slices.Sort(per)
			slices.Sort(queued)
			b.ReportMetric(float64(pct(queued, 50).Microseconds()), "queued-p50-µs")
			b.ReportMetric(float64(pct(all, 50).Microseconds()), "all-p50-µs")
			b.ReportMetric(float64(pct(all, 99).Microseconds()), "all-p99-µs")
			b.ReportMetric(float64(pct(per, 99).Microseconds()), "conn-p99-µs")
			mu.Unlock()
		})
	}
}

// idle waits until every connection's writer flushed what it was given.
func idle(s *Server) {
	for {
		busy := false
		for _, c := range s.connections() {
			if c.queued.Load() > 0 {
				busy = true
				break
			}
		}
		if !busy {
			return
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, len(d)*p/100)]
}

// BenchmarkShareValidation measures a share through the server's path
// without the network: the mining core's validation plus the answer and
// metrics (one connection, one standard channel).
func BenchmarkShareValidation(b *testing.B) {
	ts := startServer(b, Config{Plaintext: true, Logger: hclog.NewNullLogger(), SendQueue: 1 << 20})
	ts.s.SetWork(testWork(1, true, 8))
	ts.s.SetPrevHash(prevHash(1, hardBits))
	ts.s.sync()
	d := ts.dial(b, messages.FlagRequiresStandardJobs)
	ch := d.openStandard(b, "bench", 1)
	waitFor[*messages.MiningSetNewPrevHash](b, d, nil)
	c := ts.s.connections()[0]
	sh := d.grind(b, ch.ChannelID, nil, false)
	m := &messages.SubmitSharesStandard{ChannelID: ch.ChannelID, JobID: sh.job, NTime: sh.ntime, Version: sh.version}
	go func() {
		for range d.msgs {
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.SequenceNumber = uint32(i)
		m.Nonce = uint32(i)
		_ = c.handle(m)
		c.flushAcks()
	}
}

// BenchmarkFanoutDispatch measures the server's own work for a new tip on
// 1,000 connections (one channel each) without the network: session
// updates, encoding and queueing; the writers' system calls are excluded.
func BenchmarkFanoutDispatch(b *testing.B) {
	for _, bc := range []struct {
		name     string
		flags    uint32
		extended bool
	}{
		{"standard", messages.FlagRequiresStandardJobs, false},
		{"extended", 0, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := New(Config{Listen: "127.0.0.1:0", Plaintext: true, MinDifficulty: testMinDifficulty, SendQueue: 4})
			if err != nil {
				b.Fatal(err)
			}
			defer s.ln.Close()
			const n = 1000
			var conns []*conn
			for i := 0; i < n; i++ {
				p1, p2 := net.Pipe()
				defer p1.Close()
				defer p2.Close()
				c := newConn(s, uint64(i+1), noise.Server(p1, &noise.Config{Plaintext: true}))
				c.flags = bc.flags
				s.conns[c.id] = c
				c.startSession()
				if bc.extended {
					c.cs.sess.OpenExtended(&messages.OpenExtendedMiningChannel{RequestID: 1, MaxTarget: mining.MaxTarget, MinExtranonceSize: 4}, time.Now())
				} else {
					c.cs.sess.OpenStandard(&messages.OpenStandardMiningChannel{RequestID: 1, MaxTarget: mining.MaxTarget}, time.Now())
				}
				conns = append(conns, c)
			}
			drain := func() {
				for _, c := range conns {
					for len(c.q) > 0 {
						<-c.q
					}
				}
			}
			w := testWork(1, true, 8)
			s.handleWork(&w, time.Now())
			s.handlePrevHash(&PrevHash{WorkID: 1, NBits: hardBits}, time.Now())
			drain()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				w := testWork(uint64(i+2), true, 8)
				s.handleWork(&w, time.Now())
				drain()
				b.StartTimer()
				s.handlePrevHash(&PrevHash{WorkID: uint64(i + 2), NBits: hardBits}, time.Now())
				b.StopTimer()
				drain()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkWorkDispatch measures a future work reaching 1,000 connections
// with one standard channel each that need NewMiningJob (a merkle root per
// channel, 12-level path: a 4,000-transaction block), without the network.
func BenchmarkWorkDispatch(b *testing.B) {
	s, err := New(Config{Listen: "127.0.0.1:0", Plaintext: true, MinDifficulty: testMinDifficulty, SendQueue: 4})
	if err != nil {
		b.Fatal(err)
	}
	defer s.ln.Close()
	const n = 1000
	var conns []*conn
	for i := 0; i < n; i++ {
		p1, p2 := net.Pipe()
		defer p1.Close()
		defer p2.Close()
		c := newConn(s, uint64(i+1), noise.Server(p1, &noise.Config{Plaintext: true}))
		c.flags = messages.FlagRequiresStandardJobs
		s.conns[c.id] = c
		c.startSession()
		c.cs.sess.OpenStandard(&messages.OpenStandardMiningChannel{RequestID: 1, MaxTarget: mining.MaxTarget}, time.Now())
		conns = append(conns, c)
	}
	path := make([][32]byte, 12)
	for i := range path {
		path[i][0] = byte(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := testWork(uint64(i+1), true, 8)
		w.MerklePath = path
		s.handleWork(&w, time.Now())
		b.StopTimer()
		for _, c := range conns {
			for len(c.q) > 0 {
				<-c.q
			}
		}
		b.StartTimer()
	}
}

// BenchmarkSharesOverNoise sends shares over one Noise connection as fast
// as the server answers them (windowed), both ends on this machine: the
// whole path a proxy's shares take (decrypt, decode, validate, answer,
// encrypt).
func BenchmarkSharesOverNoise(b *testing.B) {
	// Every hash meets the easiest target: all shares are accepted, as a
	// healthy proxy's are (and vardiff never retargets).
	ts := startServer(b, Config{Logger: hclog.NewNullLogger(), SendQueue: 4096, MinDifficulty: 1e-20, SharesPerMinute: 1e12})
	ts.s.SetWork(testWork(1, true, 8))
	ts.s.SetPrevHash(prevHash(1, hardBits))
	ts.s.sync()
	d := dialDevice(b, ts.addr, devOpts{authority: ts.pub, flags: messages.FlagRequiresStandardJobs, batch: true})
	ch := d.openStandard(b, "bench", 1)
	waitFor[*messages.MiningSetNewPrevHash](b, d, nil)
	sh := d.grind(b, ch.ChannelID, nil, false)
	// Answers acknowledge batches: count the shares they cover.
	answered := make(chan int, 1<<16)
	go func() {
		for m := range d.msgs {
			switch m := m.(type) {
			case *messages.SubmitSharesSuccess:
				answered <- int(m.NewSubmitsAcceptedCount)
			case *messages.SubmitSharesError:
				answered <- 1
			}
		}
	}()
	// The device sends its shares in bursts of 64 (one write each), at most
	// 512 unanswered.
	const burst, window = 64, 512
	inflight := 0
	b.ResetTimer()
	for i := 0; i < b.N; {
		for inflight+burst > window {
			inflight -= <-answered
		}
		d.bc.hold()
		for j := 0; j < burst && i < b.N; j, i = j+1, i+1 {
			m := &messages.SubmitSharesStandard{ChannelID: ch.ChannelID, SequenceNumber: uint32(i), JobID: sh.job,
				Nonce: uint32(i), NTime: sh.ntime, Version: sh.version}
			if err := d.c.WriteMessage(m, codec.Options{}); err != nil {
				b.Fatal(err)
			}
			inflight++
		}
		if err := d.bc.flush(); err != nil {
			b.Fatal(err)
		}
	}
	for inflight > 0 {
		inflight -= <-answered
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "shares/s")
}
