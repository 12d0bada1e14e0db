package declare

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// jdConn is one JDC connection: this reader goroutine handles requests in
// order, a writer goroutine drains a bounded queue.
type jdConn struct {
	s    *Server
	id   uint64
	c    *noise.Conn
	ip   string
	log  hclog.Logger
	out  chan codec.Message
	done chan struct{}

	closeOnce sync.Once
	why       string
}

// close ends the connection once, with the reason logged.
func (jc *jdConn) close(why string) {
	jc.closeOnce.Do(func() {
		jc.why = why
		close(jc.done)
		jc.c.Close()
	})
}

// send queues a message; a full queue means the peer does not read and
// the connection is dropped.
func (jc *jdConn) send(m codec.Message) {
	select {
	case jc.out <- m:
	case <-jc.done:
	default:
		jc.s.m.connClosed.WithLabelValues("slow-peer").Inc()
		jc.close(fmt.Sprintf("slow peer: %d frames queued", cap(jc.out)))
	}
}

func (jc *jdConn) writer() {
	for {
		select {
		case <-jc.done:
			return
		case m := <-jc.out:
			_ = jc.c.SetWriteDeadline(time.Now().Add(jc.s.cfg.WriteTimeout))
			if err := jc.c.WriteMessage(m, codec.Options{}); err != nil {
				jc.close("write: " + err.Error())
				return
			}
		}
	}
}

func (jc *jdConn) run(ctx context.Context) {
	s := jc.s
	defer jc.close("done")
	full, ok := jc.setup()
	if !ok {
		return
	}
	now := s.cfg.Now()
	s.core.Connect(jc.id, full, now)
	s.m.connections.Inc()
	mode := "coinbase-only"
	if full {
		mode = "full-template"
	}
	jc.log.Info("JDC connected", "mode", mode)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); jc.writer() }()
	defer func() {
		jc.close("done")
		wg.Wait()
		s.core.Disconnect(jc.id)
		s.m.connections.Dec()
		jc.log.Info("JDC disconnected", "reason", jc.why)
	}()
	for {
		m, h, err := messages.Read(jc.c, codec.Options{})
		if err != nil {
			switch {
			case errors.Is(err, messages.ErrUnknownExtension):
				jc.log.Debug("frame of an unknown extension dropped", "extension", h.ExtensionType, "type", h.MsgType)
				continue
			case errors.Is(err, messages.ErrUnknownMessage):
				// A message of a newer spec: the frame was read whole, so
				// the stream is intact; skip it.
				jc.log.Debug("unknown message dropped", "type", h.MsgType)
				continue
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
				jc.close("peer closed the connection")
			default:
				select {
				case <-jc.done:
				default:
					s.m.connClosed.WithLabelValues("malformed").Inc()
					jc.close("read: " + err.Error())
					jc.log.Warn("closing connection", "reason", jc.why)
				}
			}
			return
		}
		if why := jc.handle(ctx, m); why != "" {
			jc.close(why)
			jc.log.Warn("closing connection", "reason", why)
			return
		}
	}
}

// setup reads SetupConnection under a deadline and answers it.
func (jc *jdConn) setup() (fullTemplate, ok bool) {
	s := jc.s
	_ = jc.c.SetReadDeadline(time.Now().Add(s.cfg.SetupTimeout))
	m, _, err := messages.Read(jc.c, codec.Options{})
	if err != nil {
		s.m.connRefused.WithLabelValues("setup").Inc()
		jc.log.Info("no SetupConnection", "error", err)
		return false, false
	}
	_ = jc.c.SetReadDeadline(time.Time{})
	sc, isSetup := m.(*messages.SetupConnection)
	fail := func(flags uint32, code, why string) (bool, bool) {
		s.m.connRefused.WithLabelValues("setup").Inc()
		jc.log.Info("SetupConnection refused", "code", code, "why", why)
		_ = jc.c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		_ = jc.c.WriteMessage(&messages.SetupConnectionError{Flags: flags, ErrorCode: code}, codec.Options{})
		return false, false
	}
	switch {
	case !isSetup:
		s.m.connRefused.WithLabelValues("setup").Inc()
		jc.log.Info("first message is not SetupConnection", "message", m.MessageName())
		return false, false
	case sc.Protocol != messages.ProtocolJobDeclaration:
		return fail(0, "unsupported-protocol", fmt.Sprintf("protocol %d; this is a Job Declaration Server (1)", sc.Protocol))
	case sc.MinVersion > 2 || sc.MaxVersion < 2:
		return fail(0, "protocol-version-mismatch", fmt.Sprintf("versions %d..%d; only 2 exists", sc.MinVersion, sc.MaxVersion))
	}
	full := sc.Flags&messages.FlagDeclareTxData != 0
	pol := s.core.policy
	switch {
	case full && !pol.AllowFullTemplate:
		return fail(messages.FlagDeclareTxData, "unsupported-feature-flags", "full-template mode is not allowed here")
	case !full && !pol.AllowCoinbaseOnly:
		return fail(0, "unsupported-feature-flags", "this JDS requires full-template mode (flag DECLARE_TX_DATA)")
	}
	_ = jc.c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if err := jc.c.WriteMessage(&messages.SetupConnectionSuccess{UsedVersion: 2, Flags: sc.Flags & messages.FlagDeclareTxData}, codec.Options{}); err != nil {
		jc.log.Info("SetupConnection.Success not sent", "error", err)
		return false, false
	}
	jc.log = jc.log.With("vendor", sc.Vendor)
	return full, true
}

// handle answers one message; a non-empty result closes the connection
// with that reason.
func (jc *jdConn) handle(ctx context.Context, m codec.Message) string {
	s := jc.s
	switch m := m.(type) {
	case *messages.AllocateMiningJobToken:
		r, err := s.core.Allocate(jc.id, m, s.cfg.Now())
		if err != nil {
			s.m.connClosed.WithLabelValues("rate-limit").Inc()
			return err.Error()
		}
		s.m.tokensAllocated.Inc()
		jc.send(r)
	case *messages.DeclareMiningJob:
		if !jc.acquireCheck(ctx) {
			// Not spent: the token may be declared again.
			jc.reject(&messages.DeclareMiningJobError{RequestID: m.RequestID, ErrorCode: CodeInternal,
				ErrorDetails: []byte(jc.busy())})
			return ""
		}
		defer jc.releaseCheck()
		jc.catchUp(ctx, m)
		start := time.Now()
		st := s.core.Declare(jc.id, m, s.cfg.Now())
		jc.step(ctx, st, start, m.RequestID, len(m.WtxidList))
	case *messages.ProvideMissingTransactionsSuccess:
		start := time.Now()
		bytes := 0
		for _, tx := range m.TransactionList {
			bytes += len(tx)
		}
		s.m.missingBytes.Add(float64(bytes))
		if !jc.acquireCheck(ctx) {
			if s.core.Cancel(jc.id, m.RequestID) {
				jc.reject(&messages.DeclareMiningJobError{RequestID: m.RequestID, ErrorCode: CodeInternal, ErrorDetails: []byte(jc.busy())})
			}
			return ""
		}
		defer jc.releaseCheck()
		st, ok := s.core.Provide(jc.id, m, s.cfg.Now())
		if !ok {
			jc.log.Warn("ProvideMissingTransactions.Success for no waiting declaration; ignored", "request", m.RequestID)
			return ""
		}
		jc.step(ctx, st, start, m.RequestID, -1)
	case *messages.PushSolution:
		b, err := s.core.PushSolution(jc.id, m, s.cfg.Now())
		if err != nil {
			jc.log.Warn("PushSolution not rebuilt", "error", err)
			s.m.blocks.WithLabelValues("push-solution", "not-rebuilt").Inc()
			return ""
		}
		jc.log.Info("block from PushSolution", "hash", b.HashString(), "height", b.Height, "field_order_2025", b.Swapped)
		_, _ = s.publish(ctx, b, "push-solution")
	default:
		s.m.connClosed.WithLabelValues("unexpected-message").Inc()
		return "unexpected message " + m.MessageName()
	}
	return ""
}

// step carries out a declaration step: reply, ask for transactions, or
// have the node check the block and answer.
func (jc *jdConn) step(ctx context.Context, st Step, start time.Time, req uint32, ntx int) {
	s := jc.s
	switch {
	case st.Reply != nil:
		s.m.checkSeconds.Observe(time.Since(start).Seconds())
		jc.reject(st.Reply)
	case st.Missing != nil:
		s.m.checkSeconds.Observe(time.Since(start).Seconds())
		s.m.missingRounds.Inc()
		s.m.missingTxs.Add(float64(len(st.Missing.UnknownTxPositionList)))
		jc.log.Info("asking for missing transactions", "request", req, "missing", len(st.Missing.UnknownTxPositionList), "declared", ntx)
		jc.send(st.Missing)
	case st.Proposal != nil:
		s.m.checkSeconds.Observe(time.Since(start).Seconds())
		pstart := time.Now()
		pctx, cancel := context.WithTimeout(ctx, s.cfg.ProposalTimeout)
		reason, err := s.cfg.Node.ProposeBlock(pctx, st.Proposal.Block)
		cancel()
		s.m.proposalSeconds.Observe(time.Since(pstart).Seconds())
		ok, bad := s.core.ProposalDone(st.Proposal, reason, err, s.cfg.Now())
		switch {
		case ok != nil:
			s.m.declarations.WithLabelValues("accepted", "").Inc()
			jc.log.Info("job declared", "request", req, "txs", st.Proposal.Txs, "check", pstart.Sub(start), "node_check", time.Since(pstart))
			jc.send(ok)
		case bad != nil:
			jc.reject(bad)
		}
	}
}

// acquireCheck waits, at most ProposalTimeout, for one of the server's
// ConcurrentChecks slots.
func (jc *jdConn) acquireCheck(ctx context.Context) bool {
	select {
	case jc.s.checks <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(jc.s.cfg.ProposalTimeout)
	defer t.Stop()
	select {
	case jc.s.checks <- struct{}{}:
		return true
	case <-ctx.Done():
	case <-jc.done:
	case <-t.C:
		jc.log.Warn("no free declaration check slot; declaration refused", "concurrent_checks", cap(jc.s.checks), "waited", jc.s.cfg.ProposalTimeout)
	}
	return false
}

func (jc *jdConn) releaseCheck() { <-jc.s.checks }

func (jc *jdConn) busy() string {
	return fmt.Sprintf("this JDS is busy checking %d other declarations; retry shortly", cap(jc.s.checks))
}

func (jc *jdConn) reject(e *messages.DeclareMiningJobError) {
	jc.s.m.declarations.WithLabelValues("rejected", e.ErrorCode).Inc()
	jc.log.Info("declaration rejected", "request", e.RequestID, "code", e.ErrorCode, "details", string(e.ErrorDetails))
	jc.send(e)
}

// catchUp asks the node for its tip when a declaration builds on a block
// this JDS has not heard of yet: a miner's node may learn a new block a
// moment before our tip watcher does, and the job should not be refused
// for that.
func (jc *jdConn) catchUp(ctx context.Context, m *messages.DeclareMiningJob) {
	cb, e := parseDeclaredCoinbase(m.CoinbaseTxPrefix, m.CoinbaseTxSuffix)
	if e != nil {
		return
	}
	if ch, ok := jc.s.core.Chain(); ok && cb.height <= ch.Height+1 {
		return
	}
	jc.s.refreshChain(ctx)
}
