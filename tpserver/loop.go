package tpserver

import (
	"context"
	"time"

	"github.com/sv2kit/sv2kit/internal/corelog"

	"github.com/sv2kit/sv2kit/provider"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

type templateEvent struct {
	src   *templates.Source
	chain provider.ChainInfo
}

type tipEvent struct {
	notice provider.TipNotice
	at     time.Time // when the notice reached us
}

// loopState is what only the event loop touches.
type loopState struct {
	clients map[provider.ClientID]*clientConn
	// closing are clients the core closed whose writer still flushes.
	closing map[provider.ClientID]*clientConn
	enc     encoder
	// waitingTip is when a new tip arrived that the fast path could not
	// announce: the SetNewPrevHash then comes with the node's template.
	waitingTip  time.Time
	waitingHash [32]byte
	lastStats   provider.Stats
}

// eventLoop owns the core: every event goes through it, one at a time, and
// its Actions are carried out before the next event.
func (s *Server) eventLoop(ctx context.Context) {
	st := &loopState{clients: make(map[provider.ClientID]*clientConn), closing: make(map[provider.ClientID]*clientConn)}
	st.enc.init()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// Without ZMQ sequence notices nothing says when the mempool changed:
	// treat it as always changed (the core spaces fetches by Interval).
	pollMempool := s.cfg.ZMQ.Sequence == ""
	// With ZMQ sequence, still look once a minute: notices that never
	// arrive (a wrong endpoint, a node without zmqpubsequence) must not
	// stop fee updates.
	const mempoolSafety = time.Minute
	lastSafety := time.Now()
	for {
		select {
		case <-ctx.Done():
			for _, c := range st.clients {
				c.shut()
				s.releaseClient(c)
			}
			for _, c := range st.closing {
				c.shut()
			}
			s.m.clients.Set(0)
			return
		case c := <-s.connected:
			st.clients[c.id] = c
			s.m.clients.Set(float64(len(st.clients)))
			s.log.Debug("client connected", "client", c.id, "remote", c.remote)
			s.apply(st, s.core.ClientConnected(c.id, time.Now()), nil)
		case m := <-s.inbox:
			s.apply(st, s.core.ClientMessage(m.id, m.msg, time.Now()), nil)
		case g := <-s.gone:
			if c := st.clients[g.id]; c != nil {
				s.log.Info("client disconnected", "client", c.id, "remote", c.remote, "reason", g.reason)
				s.forget(st, c)
			}
			delete(st.closing, g.id)
		case t := <-s.templates:
			a := s.core.NodeTemplate(t.src, t.chain, time.Now())
			var fan *tipFanout
			if !st.waitingTip.IsZero() && t.src.PrevHash == st.waitingHash {
				if hasSetNewPrevHash(&a) {
					fan = s.newFanout(st.waitingTip, "node")
				}
				st.waitingTip = time.Time{}
			}
			s.apply(st, a, fan)
			s.updateStats(st)
		case t := <-s.tips:
			a := s.core.NewTip(t.notice, time.Now())
			var fan *tipFanout
			if hasSetNewPrevHash(&a) {
				fan = s.newFanout(t.at, "fast")
				st.waitingTip = time.Time{}
			} else if a.FetchTemplate {
				st.waitingTip, st.waitingHash = t.at, t.notice.Hash
			}
			s.apply(st, a, fan)
			if fan != nil && s.tipQueued != nil {
				s.tipQueued(time.Since(t.at))
			}
			s.updateStats(st)
		case <-s.mempool:
			s.apply(st, s.core.MempoolChanged(time.Now()), nil)
		case now := <-tick.C:
			s.apply(st, s.core.Tick(now), nil)
			if pollMempool || now.Sub(lastSafety) >= mempoolSafety {
				lastSafety = now
				s.apply(st, s.core.MempoolChanged(now), nil)
			}
			s.updateStats(st)
		}
	}
}

func hasSetNewPrevHash(a *provider.Actions) bool {
	for _, o := range a.Send {
		if _, ok := o.Msg.(*messages.SetNewPrevHash); ok {
			return true
		}
	}
	return false
}

func (s *Server) newFanout(start time.Time, path string) *tipFanout {
	hook := s.tipWritten
	obs := s.m.tipLatency.WithLabelValues(path)
	return &tipFanout{start: start, done: func(d time.Duration) {
		obs.Observe(d.Seconds())
		if hook != nil {
			hook(d)
		}
	}}
}

// forget removes a client the core still knows.
func (s *Server) forget(st *loopState, c *clientConn) {
	s.core.ClientGone(c.id)
	s.drop(st, c)
}

// drop removes a client from the table and ends its goroutines.
func (s *Server) drop(st *loopState, c *clientConn) {
	delete(st.clients, c.id)
	c.shut()
	s.releaseClient(c)
	s.m.clients.Set(float64(len(st.clients)))
}

// apply carries out the core's Actions in the documented order. fan, when
// set, measures the SetNewPrevHash fan-out among the frames sent.
func (s *Server) apply(st *loopState, a provider.Actions, fan *tipFanout) {
	if fan != nil {
		// One extra count, released below, so the fan-out cannot finish
		// before every frame is queued.
		fan.remaining.Store(int64(len(a.Send)) + 1)
	}
	for _, o := range a.Send {
		c := st.clients[o.Client]
		if c == nil {
			fan.finish()
			continue
		}
		f, err := st.enc.frame(o.Msg)
		if err != nil {
			s.log.Error("cannot encode a message; client dropped", "client", c.id, "msg", o.Msg.MessageName(), "error", err)
			fan.finish()
			s.forget(st, c)
			continue
		}
		if fan != nil {
			if _, ok := o.Msg.(*messages.SetNewPrevHash); ok {
				f.tip = fan
			} else {
				fan.finish()
			}
		}
		select {
		case c.queue <- f:
			s.m.countSent(o.Msg)
		default:
			f.tip.finish()
			s.log.Warn("client dropped: send queue full (slow client)", "client", c.id, "remote", c.remote, "queue", cap(c.queue))
			s.m.slowDropped.Inc()
			s.forget(st, c)
		}
	}
	fan.finish()
	for _, b := range a.Blocks {
		select {
		case s.blocks <- b:
		default:
			// Never lose a block: write it here (the submitter is stuck
			// on a slow node), and say it was not submitted.
			s.log.Error("block submission queue full; block written to disk but not submitted", "hash", b.HashString())
			if path, err := s.writeBlock(&b); err != nil {
				s.log.Error("cannot write found block", "hash", b.HashString(), "error", err)
			} else {
				s.log.Error("submit it by hand: bitcoin-cli submitblock $(cat FILE)", "file", path)
			}
		}
	}
	for _, cl := range a.Close {
		c := st.clients[cl.Client]
		if c == nil {
			continue
		}
		s.log.Info("closing client", "client", c.id, "remote", c.remote, "reason", cl.Reason)
		select {
		case c.queue <- outFrame{closeReason: cl.Reason}:
			// The writer closes after the frames queued before.
			delete(st.clients, c.id)
			st.closing[c.id] = c
			s.releaseClient(c)
			s.m.clients.Set(float64(len(st.clients)))
		default:
			s.drop(st, c)
		}
	}
	if a.FetchTemplate {
		select {
		case s.fetchReq <- struct{}{}:
		default:
		}
	}
	corelog.Write(s.log, a.Logs)
}

func (s *Server) updateStats(st *loopState) {
	now := s.core.Snapshot()
	prev := st.lastStats
	s.m.readyClients.Set(float64(now.ReadyClients))
	s.m.groups.Set(float64(now.Groups))
	s.m.cached.Set(float64(now.Templates))
	if now.HaveTip {
		s.m.tipHeight.Set(float64(now.TipHeight))
	}
	s.m.feeUpdates.Add(float64(now.FeeUpdates - prev.FeeUpdates))
	s.m.tipChanges.Add(float64(now.TipChanges - prev.TipChanges))
	s.m.fastPaths.Add(float64(now.FastPaths - prev.FastPaths))
	s.m.blocksFound.Add(float64(now.BlocksFound - prev.BlocksFound))
	s.m.templateFees.Set(float64(now.SourceFees))
	s.m.templateTxs.Set(float64(now.SourceTxs))
	st.lastStats = now
}

// encoder encodes each message value once: the core shares one value among
// the clients it goes to (and across events, e.g. a template's transaction
// data), so the payload is built once and every writer only encrypts it.
type encoder struct {
	cache map[codec.Message][]byte
	order []codec.Message
}

const encoderCache = 32

func (e *encoder) init() { e.cache = make(map[codec.Message][]byte, encoderCache) }

func (e *encoder) frame(m codec.Message) (outFrame, error) {
	h := codec.Header{ExtensionType: m.ExtensionType(), MsgType: m.MsgType()}
	if p, ok := e.cache[m]; ok {
		return outFrame{hdr: h, payload: p}, nil
	}
	p, err := codec.Append(nil, m, codec.Options{})
	if err != nil {
		return outFrame{}, err
	}
	if len(e.order) >= encoderCache {
		delete(e.cache, e.order[0])
		e.order = append(e.order[:0], e.order[1:]...)
	}
	e.cache[m] = p
	e.order = append(e.order, m)
	return outFrame{hdr: h, payload: p}, nil
}
