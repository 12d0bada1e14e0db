package devices

import (
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/sv2kit/sv2kit/mining"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/templates"
)

// event is a call from jdc, handled in order by the dispatcher goroutine so
// SetWork and SetPrevHash never wait for the fan-out.
type event struct {
	work    *Work
	prev    *PrevHash
	barrier chan struct{} // closed when the events before it were handled
	at      time.Time
}

// workSet is the work every channel is given: the allocator that splits the
// extranonce space, the current tip, the template active on it and the
// future templates sent ahead. A new connection's session is brought up to
// date from it (replay). Guarded by mu; the dispatcher writes it while it
// fans out, so a connection set up concurrently sees either the state
// before the event (and then gets the event) or after it.
type workSet struct {
	mu    sync.RWMutex
	cfg   *Config
	alloc *mining.ExtranonceAllocator
	works map[uint64]*mining.JobTemplate
	order []uint64
	tip   *mining.ChainTip
	// tipWork is the future form of the newest template active on the tip
	// (the one SetPrevHash activated, or a later non-future work): a new
	// connection gets it as a future job activated at once.
	tipWork *mining.JobTemplate
	futures []*mining.JobTemplate
	// ready is closed once the first work set the extranonce layout;
	// channel opens wait for it (bounded) so a device's first prefix is
	// already the right length.
	ready     chan struct{}
	readyOnce sync.Once
}

// initialExtranonceSpace is the layout assumed before the first work: the
// extended channels' size plus 2 bytes of channel ids. Channels opened
// before the first work get SetExtranoncePrefix if the work's space differs.
func (c *Config) initialExtranonceSpace() int { return c.ExtranonceSize + 2 }

func (w *workSet) init(cfg *Config) error {
	w.cfg = cfg
	w.works = make(map[uint64]*mining.JobTemplate)
	w.ready = make(chan struct{})
	a, err := mining.NewExtranonceAllocator(nil, cfg.initialExtranonceSpace(), cfg.ExtranonceSize, 0)
	if err != nil {
		return err
	}
	w.alloc = a
	return nil
}

// remember keeps jt by its work id, forgetting the oldest beyond MaxWorks.
func (w *workSet) remember(jt *mining.JobTemplate) {
	if _, ok := w.works[jt.ID]; !ok {
		w.order = append(w.order, jt.ID)
	}
	w.works[jt.ID] = jt
	for len(w.order) > w.cfg.MaxWorks {
		delete(w.works, w.order[0])
		w.order = w.order[1:]
	}
}

// futureForm returns jt, or for a template sent active a copy marked
// future (the copy shares the template's immutable parts).
func futureForm(jt *mining.JobTemplate) *mining.JobTemplate {
	if jt.Future {
		return jt
	}
	cp := *jt
	cp.Future = true
	return &cp
}

// sessionConfig is the mining core configuration of one connection.
func (s *Server) sessionConfig(c *conn) mining.Config {
	return mining.Config{
		Vardiff:       mining.VardiffConfig{SharesPerMinute: s.cfg.SharesPerMinute, Window: s.cfg.VardiffWindow},
		EasiestTarget: mining.TargetFromDifficulty(s.cfg.MinDifficulty),
		MaxChannels:   s.cfg.MaxChannelsPerConn,
		StandardJobs:  c.standardJobsOnly() || s.cfg.PerChannelJobs,
	}
}

// newSession creates a connection's session and brings it to the current
// work. Callers hold state.mu (read) so no event is missed.
func (s *Server) newSession(c *conn) *mining.Session {
	sess := mining.NewSession(s.sessionConfig(c), s.state.alloc)
	st := &s.state
	if st.tip != nil && st.tipWork != nil {
		if _, err := sess.NewTemplate(st.tipWork); err == nil {
			_, _ = sess.NewPrevHash(st.tipWork.ID, *st.tip)
		}
	}
	for _, f := range st.futures {
		_, _ = sess.NewTemplate(f)
	}
	return sess
}

// SetWork gives every channel a job for w at once: a future job when
// w.Future (activated by SetPrevHash), otherwise a job active on the
// current tip. It returns at once; the fan-out runs in the server.
func (s *Server) SetWork(w Work) {
	w.CoinbasePrefix = append([]byte(nil), w.CoinbasePrefix...)
	w.CoinbaseSuffix = append([]byte(nil), w.CoinbaseSuffix...)
	w.MerklePath = append([][32]byte(nil), w.MerklePath...)
	s.post(event{work: &w, at: time.Now()})
}

// SetPrevHash moves every channel to a new tip, activating the future work
// p.WorkID with one SetNewPrevHash per channel (per group channel where
// devices understand groups). It returns at once.
func (s *Server) SetPrevHash(p PrevHash) {
	s.post(event{prev: &p, at: time.Now()})
}

// sync waits until every event posted before it was handled.
func (s *Server) sync() {
	b := make(chan struct{})
	s.post(event{barrier: b})
	select {
	case <-b:
	case <-s.ctx.Done():
	}
}

func (s *Server) post(e event) {
	select {
	case s.events <- e:
	case <-s.ctx.Done():
	}
}

// dispatch handles jdc's events in order and runs vardiff, until the server
// stops.
func (s *Server) dispatch() {
	interval := min(max(s.cfg.VardiffWindow/6, 100*time.Millisecond), 5*time.Second)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case e := <-s.events:
			switch {
			case e.work != nil:
				s.handleWork(e.work, e.at)
			case e.prev != nil:
				s.handlePrevHash(e.prev, e.at)
			case e.barrier != nil:
				close(e.barrier)
			}
		case now := <-tick.C:
			s.tick(now)
		}
	}
}

func (s *Server) handleWork(w *Work, at time.Time) {
	jt, err := jobTemplate(w)
	if err != nil {
		s.log.Error("work refused", "work", w.ID, "error", err)
		return
	}
	st := &s.state
	st.mu.Lock()
	defer st.mu.Unlock()
	conns := s.connections()
	rebased := false
	if w.ExtranonceSpace != st.alloc.FullSize() {
		if err := st.alloc.Rebase(nil, w.ExtranonceSpace); err != nil {
			s.log.Error("work refused: its extranonce space cannot be split for the devices", "work", w.ID,
				"extranonce_space", w.ExtranonceSpace, "device_extranonce_size", s.cfg.ExtranonceSize, "error", err)
			return
		}
		s.log.Info("extranonce space changed; re-prefixing every channel", "extranonce_space", w.ExtranonceSpace)
		rebased = true
	}
	st.remember(jt)
	st.readyOnce.Do(func() { close(st.ready) })
	if jt.Future {
		st.futures = append(st.futures, jt)
		if len(st.futures) > 4 {
			st.futures = st.futures[1:]
		}
	} else {
		if st.tip == nil {
			s.log.Warn("work kept for later: no chain tip yet (send it as future work, then SetPrevHash)", "work", w.ID)
			return
		}
		st.tipWork = futureForm(jt)
	}
	s.forEachConn(conns, func(c *conn, enc *fanoutEncoder) {
		c.mu.Lock()
		defer c.mu.Unlock()
		sess := c.cs.sess
		if sess == nil {
			return
		}
		b := &batch{}
		if rebased {
			for _, m := range sess.Reprefix() {
				b.frames = append(b.frames, enc.frame(m))
				s.m.countJob(m)
			}
		}
		msgs, err := sess.AppendNewTemplate(enc.msgs[:0], jt)
		if err != nil {
			c.log.Warn("no job for work", "work", w.ID, "error", err)
		}
		for _, m := range msgs {
			b.frames = append(b.frames, enc.frame(m))
			s.m.countJob(m)
		}
		enc.msgs = msgs
		if len(b.frames) > 0 {
			c.send(b)
		}
	})
	s.log.Debug("work sent", "work", w.ID, "future", jt.Future, "connections", len(conns), "took", time.Since(at))
}

func (s *Server) handlePrevHash(p *PrevHash, at time.Time) {
	st := &s.state
	st.mu.Lock()
	defer st.mu.Unlock()
	jt := st.works[p.WorkID]
	if jt == nil {
		s.log.Error("SetPrevHash for an unknown work; devices keep their current job", "work", p.WorkID)
		return
	}
	// Devices may only be switched to a job they got as a future job: a
	// work sent active is sent again as one first.
	fj := futureForm(jt)
	// One tip shared by every session (the mining core keeps the pointer):
	// never modified after this.
	tip := &mining.ChainTip{PrevHash: p.PrevHash, MinNTime: p.MinNTime, NBits: p.NBits,
		Target: templates.TargetFromBits(p.NBits), Since: s.cfg.now()}
	st.tip, st.tipWork, st.futures = tip, fj, nil

	conns := s.connections()
	enc := newFanoutEncoder()
	observe := func(t time.Time) { s.m.tipLatency.Observe(t.Sub(at).Seconds()) }
	if s.onTipSent != nil {
		hook := s.onTipSent
		observe = func(t time.Time) {
			s.m.tipLatency.Observe(t.Sub(at).Seconds())
			hook(at, t)
		}
	}
	// One allocation for every connection's batch and frames.
	batches := make([]batch, len(conns))
	frames := make([]outFrame, 0, 2*len(conns))
	var msgs []codec.Message // reused: each connection's messages are encoded at once
	for i, c := range conns {
		c.mu.Lock()
		sess := c.cs.sess
		if sess == nil {
			c.mu.Unlock()
			continue
		}
		b := &batches[i]
		b.onSent = observe
		start := len(frames)
		b.frames = frames[start:start]
		msgs = msgs[:0]
		if fj != jt {
			msgs, _ = sess.AppendNewTemplate(msgs, fj)
		}
		n := len(msgs)
		var err error
		if msgs, err = sess.AppendNewPrevHash(msgs, fj.ID, tip); err != nil {
			// The session never had this future template (it arrived while
			// the connection was being set up): give it now, then activate.
			msgs, _ = sess.AppendNewTemplate(msgs[:n], fj)
			if msgs, err = sess.AppendNewPrevHash(msgs, fj.ID, tip); err != nil {
				c.log.Warn("no job for the new tip", "work", p.WorkID, "error", err)
			}
		}
		for _, m := range msgs {
			b.frames = append(b.frames, enc.frame(m))
			s.m.countJob(m)
		}
		if len(b.frames) > 0 {
			if end := start + len(b.frames); end <= cap(frames) && &frames[:end][start] == &b.frames[0] {
				frames = frames[:end] // the batch's frames live in the shared slice
				b.frames = b.frames[:len(b.frames):len(b.frames)]
			}
			c.send(b)
		}
		c.mu.Unlock()
	}
	if s.onTipQueued != nil {
		s.onTipQueued(at, time.Now())
	}
	s.log.Debug("new tip sent", "work", p.WorkID, "connections", len(conns), "took", time.Since(at))
}

// parallelConns is the number of connections from which a work fan-out is
// split over the CPUs: standard channels need a merkle root each (≈ 2 µs
// with a 12-level path), which is worth spreading.
const parallelConns = 128

// forEachConn runs f for every connection, on up to GOMAXPROCS goroutines
// for many connections; each goroutine has its own encoder. f locks the
// connection itself; connections are independent.
func (s *Server) forEachConn(conns []*conn, f func(*conn, *fanoutEncoder)) {
	workers := min(runtime.GOMAXPROCS(0), len(conns)/parallelConns)
	if workers <= 1 {
		enc := newFanoutEncoder()
		for _, c := range conns {
			f(c, enc)
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (len(conns) + workers - 1) / workers
	for lo := 0; lo < len(conns); lo += chunk {
		part := conns[lo:min(len(conns), lo+chunk)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc := newFanoutEncoder()
			for _, c := range part {
				f(c, enc)
			}
		}()
	}
	wg.Wait()
}

// tick runs vardiff on every session and refreshes the hash-rate estimates.
func (s *Server) tick(now time.Time) {
	for _, c := range s.connections() {
		c.mu.Lock()
		if c.cs.sess == nil {
			c.mu.Unlock()
			continue
		}
		msgs := c.cs.sess.Tick(now)
		if len(msgs) > 0 {
			b := &batch{}
			for _, m := range msgs {
				b.frames = append(b.frames, encodeFrame(m))
			}
			s.m.setTargets.Add(float64(len(msgs)))
			c.send(b)
		}
		c.updateHashRates(now)
		c.mu.Unlock()
	}
}

// hashRateFromDifficulty converts difficulty found per second into hashes
// per second (difficulty 1 ≈ 2^32 hashes).
func hashRateFromDifficulty(diffPerSecond float64) float64 {
	return diffPerSecond * math.Ldexp(1, 32)
}
