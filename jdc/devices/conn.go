package devices

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// outFrame is one frame to write. With ids set, the payload is written once
// per id with its first four bytes (the channel_id of every channel message)
// replaced: one encoding serves every channel of a fan-out.
type outFrame struct {
	h       codec.Header
	payload []byte // shared, read-only
	ids     []uint32
}

// batch is what the send queue holds: the frames of one event for one
// connection, written together. onSent runs after they were flushed.
type batch struct {
	frames []outFrame
	onSent func(time.Time)
}

// conn is one device connection: a reader goroutine (setup, then requests
// and shares) and a writer goroutine draining a bounded queue.
type conn struct {
	s      *Server
	id     uint64
	nc     *noise.Conn
	bc     *batchConn // nil if the listener did not wrap the connection
	remote string
	log    hclog.Logger

	q      chan *batch
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	closed atomic.Bool
	// queued counts batches sent to the queue and not yet flushed.
	queued atomic.Int64

	// Set during setup, read-only afterwards.
	flags  uint32
	vendor string

	// Share answers not sent yet (reader goroutine only).
	acks     []pendingAck
	ackCount int

	// mu guards the channel state (see channels.go). Lock order:
	// Server.state before conn.mu.
	mu sync.Mutex
	cs connState
}

func newConn(s *Server, id uint64, nc *noise.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		s:      s,
		id:     id,
		nc:     nc,
		remote: nc.RemoteAddr().String(),
		q:      make(chan *batch, s.cfg.SendQueue),
		ctx:    ctx,
		cancel: cancel,
	}
	c.bc, _ = nc.NetConn().(*batchConn)
	c.log = s.log.With("conn", id, "remote", c.remote)
	c.cs.init()
	return c
}

// send queues a batch without ever blocking: a device whose queue is full is
// too slow to keep up and is dropped, so it cannot delay anyone else.
func (c *conn) send(b *batch) {
	if c.closed.Load() {
		return
	}
	select {
	case c.q <- b:
		c.queued.Add(1)
	default:
		c.s.m.dropped.WithLabelValues("send_queue_full").Inc()
		c.close("slow device: send queue full", fmt.Errorf("%d batches waiting", cap(c.q)))
	}
}

// single is a one-message batch in one allocation (share answers).
type single struct {
	b   batch
	f   [1]outFrame
	buf [64]byte
}

// sendMsg queues one message.
func (c *conn) sendMsg(m codec.Message) {
	one := new(single)
	p, err := codec.Append(one.buf[:0], m, codec.Options{})
	if err != nil {
		// Only our own messages are encoded here; a failure is a bug.
		c.log.Error("encode failed", "message", m.MessageName(), "error", err)
		return
	}
	one.f[0] = outFrame{h: codec.Header{ExtensionType: m.ExtensionType(), MsgType: m.MsgType()}, payload: p}
	one.b.frames = one.f[:]
	c.send(&one.b)
}

// sendThenClose queues m and closes the connection once it was written (or
// the write failed or timed out).
func (c *conn) sendThenClose(m codec.Message, reason string, err error) {
	p, encErr := codec.Append(nil, m, codec.Options{})
	if encErr != nil {
		c.close(reason, err)
		return
	}
	c.send(&batch{
		frames: []outFrame{{h: codec.Header{ExtensionType: m.ExtensionType(), MsgType: m.MsgType()}, payload: p}},
		onSent: func(time.Time) { c.close(reason, err) },
	})
}

// close ends the connection once, logging why. It takes no lock.
func (c *conn) close(reason string, err error) {
	c.once.Do(func() {
		c.closed.Store(true)
		args := []any{"reason", reason}
		if err != nil {
			args = append(args, "error", err)
		}
		if c.s.ctx.Err() != nil {
			c.log.Debug("device disconnected", args...)
		} else {
			c.log.Info("device disconnected", args...)
		}
		c.cancel()
		c.nc.Close()
		// The reader, which ends now that the connection is closed,
		// removes the connection and its channels: close may be called with
		// c.mu held (a fan-out dropping a slow device).
	})
}

// writeLoop drains the send queue. Everything queued at the moment is
// written with one system call (see batchConn); each flush has a deadline, so
// a device that stops reading is dropped after WriteTimeout.
func (c *conn) writeLoop() {
	defer c.s.wg.Done()
	var scratch []byte
	var callbacks []func(time.Time)
	var deadline time.Time
	for {
		var b *batch
		select {
		case b = <-c.q:
		case <-c.ctx.Done():
			return
		}
		if c.bc != nil {
			c.bc.hold()
		}
		callbacks = callbacks[:0]
		var err error
		n := int64(0)
		for {
			n++
			scratch, err = c.writeBatch(b, scratch)
			if b.onSent != nil {
				callbacks = append(callbacks, b.onSent)
			}
			if err != nil || c.bc == nil || c.bc.pending() >= maxBatch {
				break
			}
			select {
			case b = <-c.q:
				continue
			default:
			}
			break
		}
		if err == nil && c.bc != nil {
			// The deadline is moved only when less than half of
			// WriteTimeout is left: a flush is bounded by between half and
			// all of it, without a timer update per write.
			now := c.s.cfg.now()
			if deadline.Sub(now) < c.s.cfg.WriteTimeout/2 {
				deadline = now.Add(c.s.cfg.WriteTimeout)
				err = c.nc.SetWriteDeadline(deadline)
			}
			if err == nil {
				err = c.bc.flush()
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.s.m.dropped.WithLabelValues("write_timeout").Inc()
				c.close("slow device: write timed out", err)
			} else {
				c.close("write failed", err)
			}
			return
		}
		c.queued.Add(-n)
		now := time.Now()
		for _, f := range callbacks {
			f(now)
		}
	}
}

func (c *conn) writeBatch(b *batch, scratch []byte) ([]byte, error) {
	for _, f := range b.frames {
		if f.ids == nil {
			if err := c.nc.WriteFrame(f.h, f.payload); err != nil {
				return scratch, err
			}
			continue
		}
		scratch = append(scratch[:0], f.payload...)
		for _, id := range f.ids {
			binary.LittleEndian.PutUint32(scratch, id)
			if err := c.nc.WriteFrame(f.h, scratch); err != nil {
				return scratch, err
			}
		}
	}
	if cap(scratch) > 1<<20 {
		scratch = nil
	}
	return scratch, nil
}

// readLoop runs the connection: SetupConnection under a deadline, then every
// frame the device sends, until the connection ends.
func (c *conn) readLoop() {
	defer c.s.wg.Done()
	defer c.s.removeConn(c)
	if err := c.setup(); err != nil {
		return
	}
	for {
		h, p, err := c.nc.ReadFrame()
		if err != nil {
			switch {
			case c.closed.Load():
			case errors.Is(err, io.EOF):
				c.close("device closed the connection", nil)
			case errors.Is(err, noise.ErrFrameTooLarge), errors.Is(err, noise.ErrDecrypt):
				c.s.m.dropped.WithLabelValues("malformed_frame").Inc()
				c.close("malformed frame", err)
			default:
				c.close("read failed", err)
			}
			return
		}
		m, err := messages.Decode(h, p, codec.Options{})
		if errors.Is(err, messages.ErrUnknownExtension) {
			c.log.Debug("ignoring frame of an unknown extension", "header", h)
			continue
		}
		if err != nil {
			c.s.m.dropped.WithLabelValues("malformed_frame").Inc()
			c.close("malformed frame", fmt.Errorf("%s: %w", messages.Name(h.ExtensionType, h.MsgType), err))
			return
		}
		switch m.(type) {
		case *messages.SubmitSharesStandard, *messages.SubmitSharesExtended:
		default:
			c.flushAcks() // answers keep the order of the requests
		}
		if err := c.handle(m); err != nil {
			c.s.m.dropped.WithLabelValues("protocol_violation").Inc()
			c.close("protocol violation", err)
			return
		}
		if len(c.acks) > 0 && (c.ackCount >= maxAckBatch || !c.moreBuffered()) {
			c.flushAcks()
		}
	}
}

// Setup-connection error codes.
const (
	codeUnsupportedFlags    = "unsupported-feature-flags"
	codeUnsupportedProtocol = "unsupported-protocol"
	codeVersionMismatch     = "protocol-version-mismatch"
)

// supportedFlags are the Mining SetupConnection flags this server honours:
// standard jobs on request, and version rolling (always allowed). Work
// selection (custom jobs from devices) is not offered.
const supportedFlags = messages.FlagRequiresStandardJobs | messages.FlagRequiresVersionRolling

// setup waits for SetupConnection and answers it. On failure the connection
// is closed (after the Error was written) and an error returned.
func (c *conn) setup() error {
	if err := c.nc.SetReadDeadline(c.s.cfg.now().Add(c.s.cfg.SetupTimeout)); err != nil {
		c.close("set deadline", err)
		return err
	}
	m, h, err := messages.Read(c.nc, codec.Options{})
	if err != nil {
		var ne net.Error
		reason := "no SetupConnection"
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			reason = "no SetupConnection within the setup timeout"
		case errors.Is(err, io.EOF):
		default:
			c.s.m.dropped.WithLabelValues("malformed_frame").Inc()
		}
		c.close(reason, err)
		return err
	}
	sc, ok := m.(*messages.SetupConnection)
	if !ok {
		err := fmt.Errorf("first message is %s", messages.Name(h.ExtensionType, h.MsgType))
		c.s.m.dropped.WithLabelValues("protocol_violation").Inc()
		c.close("protocol violation", err)
		return err
	}
	if err := c.nc.SetReadDeadline(time.Time{}); err != nil {
		c.close("set deadline", err)
		return err
	}
	fail := func(flags uint32, code string, err error) error {
		c.s.m.setupFailed.WithLabelValues(code).Inc()
		c.sendThenClose(&messages.SetupConnectionError{Flags: flags, ErrorCode: code}, "setup refused: "+code, err)
		return err
	}
	switch {
	case sc.Protocol != messages.ProtocolMining:
		return fail(0, codeUnsupportedProtocol, fmt.Errorf("protocol %d", sc.Protocol))
	case sc.MinVersion > 2 || sc.MaxVersion < 2:
		return fail(0, codeVersionMismatch, fmt.Errorf("versions %d..%d", sc.MinVersion, sc.MaxVersion))
	case sc.Flags&^supportedFlags != 0:
		return fail(sc.Flags&^supportedFlags, codeUnsupportedFlags, fmt.Errorf("flags 0x%x", sc.Flags))
	}
	c.flags = sc.Flags
	c.vendor = sc.Vendor
	// c.log is not replaced: the writer and the dispatcher use it already.
	c.log.Info("device set up", "vendor", sc.Vendor, "flags", fmt.Sprintf("0x%x", sc.Flags), "hardware", sc.HardwareVersion,
		"firmware", sc.Firmware, "device_id", sc.DeviceID)
	// Version rolling is always allowed, so REQUIRES_FIXED_VERSION is never
	// set; standard channels are accepted, so neither is
	// REQUIRES_EXTENDED_CHANNELS.
	c.startSession()
	c.sendMsg(&messages.SetupConnectionSuccess{UsedVersion: 2, Flags: 0})
	c.mu.Lock()
	c.armOpenTimer()
	c.mu.Unlock()
	return nil
}

// standardJobsOnly reports REQUIRES_STANDARD_JOBS: the device takes
// NewMiningJob per channel and knows nothing of group channels.
func (c *conn) standardJobsOnly() bool { return c.flags&messages.FlagRequiresStandardJobs != 0 }
