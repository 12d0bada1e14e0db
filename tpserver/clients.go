package tpserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sv2kit/sv2kit/provider"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// outFrame is one frame for a client's writer. payload may be shared by
// many clients (encoded once) and must not be modified.
type outFrame struct {
	hdr     codec.Header
	payload []byte
	tip     *tipFanout
	// closeReason, when set, makes the writer close the connection after
	// the frames queued before it.
	closeReason string
}

// clientConn is one client. The event loop sends on queue; stop is closed
// once, by shut, from the loop or the writer.
type clientConn struct {
	id     provider.ClientID
	conn   *noise.Conn
	remote string
	ip     string
	queue  chan outFrame
	stop   chan struct{}
	once   sync.Once
}

// shut makes the reader and writer end (idempotent).
func (c *clientConn) shut() {
	c.once.Do(func() {
		close(c.stop)
		_ = c.conn.Close()
	})
}

type clientMsg struct {
	id  provider.ClientID
	msg codec.Message
}

type goneEvent struct {
	id     provider.ClientID
	reason string
}

// tipFanout measures one fast-path SetNewPrevHash fan-out: from the tip
// notice to the last client's frame written.
type tipFanout struct {
	start     time.Time
	remaining atomic.Int64
	done      func(time.Duration)
}

func (t *tipFanout) finish() {
	if t != nil && t.remaining.Add(-1) == 0 && t.done != nil {
		t.done(time.Since(t.start))
	}
}

func (s *Server) acceptLoop(ctx context.Context, clients *sync.WaitGroup) {
	var nextID provider.ClientID
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept failed", "error", err)
			if sleepCtx(ctx, 100*time.Millisecond) {
				return
			}
			continue
		}
		remote := conn.RemoteAddr().String()
		ip, _, _ := net.SplitHostPort(remote)
		if max := s.cfg.Provider.MaxClients; s.live.Load() >= int64(max) {
			s.log.Warn("client refused: too many clients", "remote", remote, "max", max)
			s.m.refused.WithLabelValues("max-clients").Inc()
			_ = conn.Close()
			continue
		}
		if !s.takeIP(ip) {
			s.log.Warn("client refused: too many connections from its address", "remote", remote, "max_per_ip", s.cfg.MaxClientsPerIP)
			s.m.refused.WithLabelValues("max-clients-per-ip").Inc()
			_ = conn.Close()
			continue
		}
		s.live.Add(1)
		nextID++
		c := &clientConn{
			id:     nextID,
			conn:   conn,
			remote: remote,
			ip:     ip,
			queue:  make(chan outFrame, s.cfg.SendQueue),
			stop:   make(chan struct{}),
		}
		select {
		case s.connected <- c:
		case <-ctx.Done():
			_ = conn.Close()
			s.releaseClient(c)
			return
		}
		clients.Add(2)
		go func() { defer clients.Done(); s.reader(ctx, c) }()
		go func() { defer clients.Done(); s.writer(ctx, c) }()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) (stopped bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return true
	case <-t.C:
		return false
	}
}

func (s *Server) takeIP(ip string) bool {
	s.ipMu.Lock()
	defer s.ipMu.Unlock()
	if s.cfg.MaxClientsPerIP > 0 && s.perIP[ip] >= s.cfg.MaxClientsPerIP {
		return false
	}
	s.perIP[ip]++
	return true
}

// releaseClient returns a client's slots (called once per accepted client,
// by the event loop when it forgets the client).
func (s *Server) releaseClient(c *clientConn) {
	s.live.Add(-1)
	s.ipMu.Lock()
	if s.perIP[c.ip] <= 1 {
		delete(s.perIP, c.ip)
	} else {
		s.perIP[c.ip]--
	}
	s.ipMu.Unlock()
}

// reader decodes the client's frames and hands them to the event loop.
// Until CoinbaseOutputConstraints arrives a read deadline applies (the
// setup deadline); after it a client may stay silent forever.
func (s *Server) reader(ctx context.Context, c *clientConn) {
	_ = c.conn.SetReadDeadline(time.Now().Add(s.cfg.SetupTimeout))
	setupDone := false
	lim := msgLimiter{tokens: msgBurst}
	for {
		m, h, err := messages.Read(c.conn, codec.Options{})
		if err != nil {
			if errors.Is(err, messages.ErrUnknownExtension) {
				s.log.Debug("frame of an unknown extension ignored", "client", c.id, "header", h.String())
				continue
			}
			s.clientGone(ctx, c, readReason(err, h, setupDone))
			return
		}
		if !setupDone {
			if _, ok := m.(*messages.CoinbaseOutputConstraints); ok {
				setupDone = true
				_ = c.conn.SetReadDeadline(time.Time{})
			}
		}
		if wait := lim.take(time.Now()); wait > 0 {
			// A client flooding us waits here; only its own messages slow.
			if sleepCtx(ctx, wait) {
				return
			}
		}
		select {
		case s.inbox <- clientMsg{id: c.id, msg: m}:
		case <-c.stop:
			return
		case <-ctx.Done():
			return
		}
	}
}

// Every message costs the event loop some work (a SubmitSolution a block
// rebuild); a client gets at most msgRate per second after a burst.
const (
	msgRate  = 200
	msgBurst = 400
)

// msgLimiter is a token bucket owned by one reader.
type msgLimiter struct {
	tokens float64
	last   time.Time
}

// take spends a token and returns how long to wait first when none is left.
func (l *msgLimiter) take(now time.Time) time.Duration {
	if !l.last.IsZero() {
		l.tokens = min(msgBurst, l.tokens+now.Sub(l.last).Seconds()*msgRate)
	}
	l.last = now
	l.tokens--
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(-l.tokens / msgRate * float64(time.Second))
}

func readReason(err error, h codec.Header, setupDone bool) string {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		return "client closed the connection"
	case errors.As(err, &ne) && ne.Timeout() && !setupDone:
		return "no SetupConnection and CoinbaseOutputConstraints within the setup deadline"
	case errors.Is(err, noise.ErrFrameTooLarge):
		return fmt.Sprintf("frame too large: %v", err)
	case errors.Is(err, messages.ErrUnknownMessage):
		return fmt.Sprintf("unknown message type 0x%02x", h.MsgType)
	case h.Length > 0 || h.MsgType != 0:
		return fmt.Sprintf("malformed %s: %v", messages.Name(h.Extension(), h.MsgType), err)
	}
	return fmt.Sprintf("read: %v", err)
}

// clientGone tells the event loop that a connection ended.
func (s *Server) clientGone(ctx context.Context, c *clientConn, reason string) {
	select {
	case s.gone <- goneEvent{id: c.id, reason: reason}:
	case <-c.stop:
	case <-ctx.Done():
	}
}

// writer drains the client's queue. A write that fails or times out ends
// the connection.
func (s *Server) writer(ctx context.Context, c *clientConn) {
	defer func() {
		// Frames never written still count as done for the latency of
		// their fan-out (the client is gone).
		for {
			select {
			case f := <-c.queue:
				f.tip.finish()
			default:
				return
			}
		}
	}()
	// The write deadline moves at most once a second (setting it costs a
	// timer update per frame otherwise); a write still gets between
	// WriteTimeout and WriteTimeout+1s.
	var deadline time.Time
	for {
		select {
		case f := <-c.queue:
			if f.closeReason != "" {
				// The frames before it are written (writes are synchronous).
				c.shut()
				return
			}
			if now := time.Now(); deadline.Sub(now) < s.cfg.WriteTimeout {
				deadline = now.Add(s.cfg.WriteTimeout + time.Second)
				_ = c.conn.SetWriteDeadline(deadline)
			}
			err := c.conn.WriteFrame(f.hdr, f.payload)
			f.tip.finish()
			if err != nil {
				s.clientGone(ctx, c, fmt.Sprintf("write failed: %v", err))
				c.shut()
				return
			}
		case <-c.stop:
			return
		case <-ctx.Done():
			c.shut()
			return
		}
	}
}
