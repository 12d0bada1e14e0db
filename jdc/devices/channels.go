package devices

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/sv2kit/sv2kit/mining"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
)

// Codes this server adds to the mining core's.
const (
	// codeExtendedNotForStandardJobs refuses an extended channel on a
	// connection that set REQUIRES_STANDARD_JOBS (it cannot take extended
	// jobs).
	codeExtendedNotForStandardJobs = "extended-channels-not-supported-for-standard-jobs"
	// codeWorkSelectionNotSupported answers SetCustomMiningJob: devices get
	// work from jdc, they do not declare their own.
	codeWorkSelectionNotSupported = "jd-not-supported"
)

// connState is a connection's channels: the mining core session and what
// this package adds per channel. Guarded by conn.mu.
type connState struct {
	sess     *mining.Session
	info     map[uint32]*chanInfo
	timer    *time.Timer // OpenTimeout while the connection has no channel
	rejectLg time.Time   // last rejected-share log line (rate limit)
}

// chanInfo is per-channel bookkeeping for stats and metrics.
type chanInfo struct {
	kind     mining.Kind
	user     string
	labels   []string
	lastDiff float64   // Stats().DifficultySum at the last estimate
	lastAt   time.Time // time of the last estimate
	rate     float64   // hashes per second, smoothed
}

func (cs *connState) init() { cs.info = make(map[uint32]*chanInfo) }

// armOpenTimer closes the connection if it still has no channel after
// OpenTimeout. Called with c.mu held or before the connection is shared.
func (c *conn) armOpenTimer() {
	if c.cs.timer != nil {
		c.cs.timer.Stop()
	}
	c.cs.timer = time.AfterFunc(c.s.cfg.OpenTimeout, func() {
		c.mu.Lock()
		idle := len(c.cs.info) == 0
		c.mu.Unlock()
		if idle {
			c.s.m.dropped.WithLabelValues("no_channel").Inc()
			c.close("no channel open", fmt.Errorf("none within %s", c.s.cfg.OpenTimeout))
		}
	})
}

// startSession creates the connection's mining session, under the work
// lock so it is brought up to date without missing an event.
func (c *conn) startSession() {
	c.s.state.mu.RLock()
	defer c.s.state.mu.RUnlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cs.sess = c.s.newSession(c)
}

// handle processes one message from the device. An error closes the
// connection (protocol violation).
func (c *conn) handle(m codec.Message) error {
	now := c.s.cfg.now()
	switch m := m.(type) {
	case *messages.SubmitSharesStandard:
		c.submit(m.ChannelID, m.SequenceNumber, func(s *mining.Session) mining.Result { return s.SubmitStandard(m, now) }, nil, now)
	case *messages.SubmitSharesExtended:
		c.submit(m.ChannelID, m.SequenceNumber, func(s *mining.Session) mining.Result { return s.SubmitExtended(m, now) }, m.Extranonce, now)
	case *messages.OpenStandardMiningChannel:
		c.waitReady()
		now = c.s.cfg.now()
		c.mu.Lock()
		ch, msgs := c.cs.sess.OpenStandard(m, now)
		c.opened(ch, msgs, now)
		c.mu.Unlock()
	case *messages.OpenExtendedMiningChannel:
		if c.standardJobsOnly() {
			c.s.m.openFailed.WithLabelValues(codeExtendedNotForStandardJobs).Inc()
			c.sendMsg(&messages.OpenMiningChannelError{RequestID: m.RequestID, ErrorCode: codeExtendedNotForStandardJobs})
			return nil
		}
		c.waitReady()
		now = c.s.cfg.now()
		c.mu.Lock()
		ch, msgs := c.cs.sess.OpenExtended(m, now)
		c.opened(ch, msgs, now)
		c.mu.Unlock()
	case *messages.UpdateChannel:
		c.mu.Lock()
		msgs := c.cs.sess.UpdateChannel(m, now)
		c.sendAll(msgs)
		c.mu.Unlock()
		for _, r := range msgs {
			if _, ok := r.(*messages.SetTarget); ok {
				c.s.m.setTargets.Inc()
			}
		}
	case *messages.CloseChannel:
		c.mu.Lock()
		ids := c.cs.sess.Close(m.ChannelID)
		for _, id := range ids {
			c.forget(id)
		}
		if len(c.cs.info) == 0 && len(ids) > 0 {
			c.armOpenTimer()
		}
		c.mu.Unlock()
		c.log.Debug("channel closed by device", "channel", m.ChannelID, "reason", m.ReasonCode, "closed", len(ids))
	case *messages.RequestExtensions:
		// No extension is offered; answer so the device goes on without
		// waiting for a timeout (DIGEST §7.1).
		c.sendMsg(&messages.RequestExtensionsError{RequestID: m.RequestID, UnsupportedExtensions: m.RequestedExtensions})
	case *messages.SetCustomMiningJob:
		c.sendMsg(&messages.SetCustomMiningJobError{ChannelID: m.ChannelID, RequestID: m.RequestID, ErrorCode: codeWorkSelectionNotSupported})
	default:
		return fmt.Errorf("unexpected %s from a device", m.MessageName())
	}
	return nil
}

// waitReady holds a channel open until jdc's first work set the extranonce
// layout, at most SetupTimeout; after that the channel opens on the assumed
// layout and is re-prefixed when work arrives.
func (c *conn) waitReady() {
	select {
	case <-c.s.state.ready:
		return
	default:
	}
	t := time.NewTimer(c.s.cfg.SetupTimeout)
	defer t.Stop()
	select {
	case <-c.s.state.ready:
	case <-t.C:
		c.log.Warn("opening a channel before jdc has work; its extranonce prefix may change")
	case <-c.ctx.Done():
	}
}

// opened records a channel the session opened (ch nil: refused) and sends
// the session's answer. Called with c.mu held.
func (c *conn) opened(ch *mining.Channel, msgs []codec.Message, now time.Time) {
	c.sendAll(msgs)
	if ch == nil {
		for _, m := range msgs {
			if e, ok := m.(*messages.OpenMiningChannelError); ok {
				c.s.m.openFailed.WithLabelValues(e.ErrorCode).Inc()
				c.log.Info("channel refused", "code", e.ErrorCode)
			}
		}
		return
	}
	kind := ch.Kind().String()
	c.cs.info[ch.ID()] = &chanInfo{kind: ch.Kind(), user: ch.UserIdentity(), lastAt: now,
		labels: []string{strconv.FormatUint(c.id, 10), strconv.FormatUint(uint64(ch.ID()), 10), ch.UserIdentity()}}
	if c.cs.timer != nil {
		c.cs.timer.Stop()
		c.cs.timer = nil
	}
	c.s.m.opened.WithLabelValues(kind).Inc()
	c.s.m.channels.WithLabelValues(kind).Inc()
	for _, m := range msgs {
		c.s.m.countJob(m)
	}
	c.log.Debug("channel opened", "channel", ch.ID(), "kind", kind, "user", ch.UserIdentity(),
		"difficulty", mining.DifficultyFromTarget(ch.Target()), "extranonce_size", ch.ExtranonceSize())
}

// forget drops a closed channel's bookkeeping. Called with c.mu held.
func (c *conn) forget(id uint32) {
	ci, ok := c.cs.info[id]
	if !ok {
		return
	}
	delete(c.cs.info, id)
	c.s.m.channels.WithLabelValues(ci.kind.String()).Dec()
	c.s.m.hashrate.DeleteLabelValues(ci.labels...)
}

// closeChannels closes every channel of a connection that ended.
func (c *conn) closeChannels() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cs.timer != nil {
		c.cs.timer.Stop()
		c.cs.timer = nil
	}
	if c.cs.sess != nil {
		c.cs.sess.CloseAll()
	}
	for id := range c.cs.info {
		c.forget(id)
	}
}

// sendAll queues msgs as one batch. Called with c.mu held, so the answers
// keep their order relative to fan-outs.
func (c *conn) sendAll(msgs []codec.Message) {
	if len(msgs) == 0 {
		return
	}
	b := &batch{frames: make([]outFrame, 0, len(msgs))}
	for _, m := range msgs {
		b.frames = append(b.frames, encodeFrame(m))
	}
	c.send(b)
}

// submit validates a share with the mining core, answers the device, and
// hands the share up when it meets the upstream or the network target.
func (c *conn) submit(chID, seq uint32, validate func(*mining.Session) mining.Result, ext []byte, now time.Time) {
	c.mu.Lock()
	r := validate(c.cs.sess)
	var up *Share
	if r.OK() {
		c.ack(chID, seq, r.Difficulty)
		block := r.Status == mining.BlockFound
		if t := c.s.upstreamTarget.Load(); block || (t != nil && mining.MeetsTarget(&r.Hash, t)) {
			j := r.Job
			up = &Share{
				WorkID:       j.Template.ID,
				ChannelID:    chID,
				UserIdentity: r.Channel.UserIdentity(),
				Extranonce:   j.FullExtranonce(make([]byte, 0, len(j.ExtranoncePrefix)+len(ext)), ext),
				Version:      r.Header.Version,
				NTime:        r.Header.Time,
				Nonce:        r.Header.Nonce,
				Hash:         r.Hash,
				Block:        block,
				PrevHash:     r.Header.PrevHash,
				NBits:        r.Header.Bits,
			}
		}
	} else {
		c.flushAcks() // the answers keep the order of the shares
		c.sendMsg(&messages.SubmitSharesError{ChannelID: chID, SequenceNumber: seq, ErrorCode: r.Code})
		if now.Sub(c.cs.rejectLg) >= time.Second {
			c.cs.rejectLg = now
			c.log.Debug("share rejected", "channel", chID, "sequence", seq, "code", r.Code)
		}
	}
	c.mu.Unlock()

	if !r.OK() {
		c.s.stats.rejected.Add(1)
		c.s.m.rejected.WithLabelValues(r.Code).Inc()
		return
	}
	c.s.stats.accepted.Add(1)
	c.s.m.accepted.Inc()
	c.s.m.acceptedDiff.Add(r.Difficulty)
	if up != nil {
		c.s.deliver(c, up)
	}
}

// deliver hands a share to jdc. Ordinary upstream shares are dropped when
// jdc is behind; a block never is: the device's reader waits for room.
func (s *Server) deliver(c *conn, sh *Share) {
	if sh.Block {
		s.stats.blocks.Add(1)
		s.m.blocks.Inc()
		c.log.Info("block found", "hash", fmt.Sprintf("%x", reverse(sh.Hash)), "channel", sh.ChannelID,
			"user", sh.UserIdentity, "work", sh.WorkID)
	}
	select {
	case s.shares <- *sh:
	default:
		if !sh.Block {
			s.m.upstreamLost.Inc()
			c.log.Warn("upstream share dropped: jdc is not taking shares fast enough", "queue", cap(s.shares))
			return
		}
		c.log.Warn("share queue full: holding this device's reader until jdc takes the block", "queue", cap(s.shares))
		select {
		case s.shares <- *sh:
		case <-s.ctx.Done():
			c.log.Error("server stopping with a block not handed to jdc", "hash", fmt.Sprintf("%x", reverse(sh.Hash)))
			return
		}
	}
	s.stats.upstream.Add(1)
	s.m.upstream.Inc()
}

func reverse(h [32]byte) [32]byte {
	for i := 0; i < 16; i++ {
		h[i], h[31-i] = h[31-i], h[i]
	}
	return h
}

// updateHashRates refreshes each channel's hash-rate estimate from the
// difficulty it found since the last call. Called with c.mu held.
func (c *conn) updateHashRates(now time.Time) {
	for id, ci := range c.cs.info {
		ch := c.cs.sess.Channel(id)
		if ch == nil {
			continue
		}
		dt := now.Sub(ci.lastAt).Seconds()
		if dt <= 0 {
			continue
		}
		sum := ch.Stats().DifficultySum
		inst := hashRateFromDifficulty((sum - ci.lastDiff) / dt)
		ci.lastDiff, ci.lastAt = sum, now
		// Exponential smoothing over about a vardiff window.
		alpha := math.Min(1, dt/math.Max(c.s.cfg.VardiffWindow.Seconds(), 1))
		if ci.rate == 0 {
			ci.rate = inst
		} else {
			ci.rate += alpha * (inst - ci.rate)
		}
		c.s.m.hashrate.WithLabelValues(ci.labels...).Set(ci.rate)
	}
}

// pendingAck is a SubmitShares.Success not sent yet: the accepted shares of
// one channel since its last answer (SubmitShares.Success acknowledges a
// batch: the last sequence number, the count and the sum of difficulty).
type pendingAck struct {
	channel uint32
	last    uint32
	count   uint32
	sum     float64
}

// maxAckBatch bounds the shares one SubmitShares.Success acknowledges.
const maxAckBatch = 64

// ack records an accepted share. The reader sends the answers when no
// further frame is buffered (the end of the device's burst) or the batch
// is full, so a burst of shares costs one answer per channel. Reader only.
func (c *conn) ack(ch, seq uint32, diff float64) {
	for i := range c.acks {
		if a := &c.acks[i]; a.channel == ch {
			a.last, a.count, a.sum = seq, a.count+1, a.sum+diff
			c.ackCount++
			return
		}
	}
	c.acks = append(c.acks, pendingAck{channel: ch, last: seq, count: 1, sum: diff})
	c.ackCount++
}

// flushAcks sends the pending answers. Reader only.
func (c *conn) flushAcks() {
	if len(c.acks) == 0 {
		return
	}
	if len(c.acks) == 1 {
		a := c.acks[0]
		c.sendMsg(&messages.SubmitSharesSuccess{ChannelID: a.channel, LastSequenceNumber: a.last,
			NewSubmitsAcceptedCount: a.count, NewSharesSum: uint64(math.Round(a.sum))})
	} else {
		msgs := make([]codec.Message, 0, len(c.acks))
		for _, a := range c.acks {
			msgs = append(msgs, &messages.SubmitSharesSuccess{ChannelID: a.channel, LastSequenceNumber: a.last,
				NewSubmitsAcceptedCount: a.count, NewSharesSum: uint64(math.Round(a.sum))})
		}
		c.sendAll(msgs)
	}
	c.acks = c.acks[:0]
	c.ackCount = 0
}

// moreBuffered reports whether another frame (or part of one) of the
// device's burst is already read.
func (c *conn) moreBuffered() bool {
	return c.bc != nil && c.bc.r != nil && c.bc.r.Buffered() > 0
}
