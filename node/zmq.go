package node

import (
	"github.com/sv2kit/sv2kit/internal/config"

	"context"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	zmq "github.com/pebbe/zmq4"
)

// ZMQConfig names the node's ZMQ publishers, as in bitcoin.conf
// (zmqpubhashblock=tcp://127.0.0.1:28332, ...). Empty endpoints are not
// subscribed; topics may share an endpoint.
type ZMQConfig struct {
	HashBlock string // zmqpubhashblock: new tips, the fastest new-block signal
	Sequence  string // zmqpubsequence: blocks connected/disconnected, mempool adds/removals
	RawTx     string // zmqpubrawtx: transactions as they enter the mempool (and again when mined)

	// RcvHWM bounds the messages queued per socket before libzmq drops them
	// (default 20000). A drop shows up as a Gap.
	RcvHWM int
	// MaxMessageSize bounds one message (default 8 MiB, above the largest
	// possible transaction); a peer that sends more is disconnected.
	MaxMessageSize int64
	// ReconnectInterval and ReconnectIntervalMax pace reconnection to a
	// publisher that went away (defaults 100 ms and 5 s).
	ReconnectInterval    time.Duration
	ReconnectIntervalMax time.Duration
	// KeepAliveIdle is the TCP keep-alive idle time, so a dead node host is
	// noticed and the connection rebuilt (default 60 s).
	KeepAliveIdle time.Duration
	// PollInterval is how often Run checks its context while idle (default 100 ms).
	PollInterval time.Duration

	Logger hclog.Logger
}

// Enabled reports whether any topic is configured.
func (c ZMQConfig) Enabled() bool { return c.HashBlock != "" || c.Sequence != "" || c.RawTx != "" }

// Validate checks the endpoints without connecting.
func (c ZMQConfig) Validate() error {
	for _, e := range []struct{ key, ep string }{
		{"zmq-hashblock", c.HashBlock}, {"zmq-sequence", c.Sequence}, {"zmq-rawtx", c.RawTx},
	} {
		if e.ep == "" {
			continue
		}
		if !strings.HasPrefix(e.ep, "tcp://") && !strings.HasPrefix(e.ep, "ipc://") {
			return config.Invalid(e.key, fmt.Sprintf("endpoint %q is not tcp:// or ipc://", e.ep),
				"use the value of the matching zmqpub... line in bitcoin.conf, e.g. tcp://127.0.0.1:28332")
		}
		if strings.HasPrefix(e.ep, "tcp://") && strings.Contains(e.ep, "0.0.0.0") {
			return config.Invalid(e.key, fmt.Sprintf("endpoint %q is a bind address", e.ep),
				"connect to the node's address, e.g. tcp://127.0.0.1:28332, even if bitcoin.conf binds 0.0.0.0")
		}
	}
	if c.RcvHWM < 0 || c.MaxMessageSize < 0 || c.ReconnectInterval < 0 || c.ReconnectIntervalMax < 0 ||
		c.KeepAliveIdle < 0 || c.PollInterval < 0 {
		return config.Invalid("zmq", "negative limit or interval",
			"use positive values or leave them unset")
	}
	return nil
}

func (c ZMQConfig) withDefaults() ZMQConfig {
	if c.RcvHWM == 0 {
		c.RcvHWM = 20000
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 8 << 20
	}
	if c.ReconnectInterval == 0 {
		c.ReconnectInterval = 100 * time.Millisecond
	}
	if c.ReconnectIntervalMax == 0 {
		c.ReconnectIntervalMax = 5 * time.Second
	}
	if c.KeepAliveIdle == 0 {
		c.KeepAliveIdle = 60 * time.Second
	}
	if c.PollInterval == 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return c
}

// ZMQStats counts what a Subscriber saw.
type ZMQStats struct {
	Messages  uint64
	Gaps      uint64
	Malformed uint64
}

// Subscriber receives the node's ZMQ notifications. Make one with
// NewSubscriber and call Run once.
type Subscriber struct {
	cfg    ZMQConfig
	groups []endpointGroup
	log    hclog.Logger

	messages, gaps, malformed atomic.Uint64
}

// endpointGroup is one SUB socket: an endpoint and the topics it carries.
type endpointGroup struct {
	endpoint string
	topics   []string
}

// NewSubscriber validates cfg. It does not connect; Run does.
func NewSubscriber(cfg ZMQConfig) (*Subscriber, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, config.Invalid("zmq", "no endpoint configured",
			"set zmq-hashblock (and zmq-sequence) to the node's zmqpubhashblock/zmqpubsequence addresses, or run without ZMQ")
	}
	cfg = cfg.withDefaults()
	byEndpoint := map[string][]string{}
	for _, t := range []struct{ topic, ep string }{
		{TopicHashBlock, cfg.HashBlock}, {TopicSequence, cfg.Sequence}, {TopicRawTx, cfg.RawTx},
	} {
		if t.ep != "" {
			byEndpoint[t.ep] = append(byEndpoint[t.ep], t.topic)
		}
	}
	s := &Subscriber{cfg: cfg, log: cfg.Logger}
	for ep, topics := range byEndpoint {
		s.groups = append(s.groups, endpointGroup{endpoint: ep, topics: topics})
	}
	sort.Slice(s.groups, func(i, j int) bool { return s.groups[i].endpoint < s.groups[j].endpoint })
	return s, nil
}

// Stats returns counters; safe to call while Run runs.
func (s *Subscriber) Stats() ZMQStats {
	return ZMQStats{Messages: s.messages.Load(), Gaps: s.gaps.Load(), Malformed: s.malformed.Load()}
}

// Run connects, then delivers events on out until ctx is done. A slow
// reader of out makes messages queue in libzmq up to RcvHWM, after which the
// node's messages are dropped and the next one arrives as a Gap. Run owns its
// ZMQ context and sockets and closes them before it returns; it returns
// ctx.Err() when stopped, or an error if the sockets could not be set up.
// ZMQ connects asynchronously: a node that is down is not an error, its
// messages simply start when it is up.
func (s *Subscriber) Run(ctx context.Context, out chan<- Event) error {
	zctx, err := zmq.NewContext()
	if err != nil {
		return fmt.Errorf("zmq context: %w", err)
	}
	defer zctx.Term() // runs last: every socket is closed by then
	poller := zmq.NewPoller()
	endpoints := map[*zmq.Socket]string{} // SUB socket → endpoint
	monitors := map[*zmq.Socket]*endpointGroup{}
	for i := range s.groups {
		g := &s.groups[i]
		sock, mon, err := s.open(zctx, g, i)
		if sock != nil {
			defer sock.Close()
		}
		if mon != nil {
			defer mon.Close()
		}
		if err != nil {
			return err
		}
		poller.Add(sock, zmq.POLLIN)
		poller.Add(mon, zmq.POLLIN)
		endpoints[sock] = g.endpoint
		monitors[mon] = g
		s.log.Info("zmq subscribed", "endpoint", g.endpoint, "topics", strings.Join(g.topics, ","))
	}

	seq := newSeqTracker()
	lost := map[string]bool{} // endpoints whose connection dropped
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		polled, err := poller.Poll(s.cfg.PollInterval)
		if err != nil {
			if zmq.AsErrno(err) == zmq.Errno(syscall.EINTR) {
				continue
			}
			return fmt.Errorf("zmq poll: %w", err)
		}
		for _, p := range polled {
			if g, ok := monitors[p.Socket]; ok {
				if err := s.connectionEvents(ctx, p.Socket, g, seq, lost, out); err != nil {
					return err
				}
				continue
			}
			// Drain what is queued, bounded so one busy socket cannot
			// starve the context check and the other sockets.
			for range 1000 {
				frames, err := p.Socket.RecvMessageBytes(zmq.DONTWAIT)
				if err != nil {
					if !retryable(err) {
						s.log.Warn("zmq receive failed", "endpoint", endpoints[p.Socket], "error", err)
					}
					break
				}
				if err := s.handle(ctx, seq, endpoints[p.Socket], frames, out); err != nil {
					return err
				}
			}
		}
	}
}

func retryable(err error) bool {
	e := zmq.AsErrno(err)
	return e == zmq.Errno(syscall.EAGAIN) || e == zmq.Errno(syscall.EINTR)
}

// connectionEvents handles the socket monitor of one endpoint. When the
// connection to a publisher drops (the node stopped or restarted) and comes
// back, messages may have been lost without a visible hole in the sequence
// numbers (a restarted node counts from 0 again and the first messages may
// be lost while we reconnect), and a restarted node's mempool is not the one
// we mirrored: so a reconnection is a Gap on each of its topics, reported at
// once, and the next message of each topic sets a new baseline.
func (s *Subscriber) connectionEvents(ctx context.Context, mon *zmq.Socket, g *endpointGroup,
	seq *seqTracker, lost map[string]bool, out chan<- Event) error {
	for range 100 {
		ev, _, _, err := mon.RecvEvent(zmq.DONTWAIT)
		if err != nil {
			if !retryable(err) {
				s.log.Warn("zmq monitor receive failed", "endpoint", g.endpoint, "error", err)
			}
			return nil
		}
		switch {
		case ev&zmq.EVENT_DISCONNECTED != 0:
			if !lost[g.endpoint] {
				s.log.Warn("zmq publisher disconnected (node stopped or restarting?); reconnecting",
					"endpoint", g.endpoint)
			}
			lost[g.endpoint] = true
		case ev&zmq.EVENT_CONNECTED != 0 && lost[g.endpoint]:
			lost[g.endpoint] = false
			s.log.Warn("zmq publisher reconnected: resyncing", "endpoint", g.endpoint)
			for _, t := range g.topics {
				seq.reset(g.endpoint, t)
				s.gaps.Add(1)
				if err := deliver(ctx, out, Gap{Topic: t, Endpoint: g.endpoint, Reconnect: true}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// open makes the SUB socket of one endpoint and the PAIR socket that
// receives its connection events (i numbers the inproc monitor address).
func (s *Subscriber) open(zctx *zmq.Context, g *endpointGroup, i int) (sock, mon *zmq.Socket, err error) {
	sock, err = zctx.NewSocket(zmq.SUB)
	if err != nil {
		return nil, nil, fmt.Errorf("zmq socket for %s: %w", g.endpoint, err)
	}
	set := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("zmq %s for %s: %w", what, g.endpoint, err)
		}
		return nil
	}
	for _, step := range []error{
		set("linger", sock.SetLinger(0)), // nothing to flush on a SUB socket; never block Term
		set("rcvhwm", sock.SetRcvhwm(s.cfg.RcvHWM)),
		set("maxmsgsize", sock.SetMaxmsgsize(s.cfg.MaxMessageSize)),
		set("tcp keepalive", sock.SetTcpKeepalive(1)),
		set("tcp keepalive idle", sock.SetTcpKeepaliveIdle(int(s.cfg.KeepAliveIdle/time.Second))),
		set("tcp keepalive interval", sock.SetTcpKeepaliveIntvl(10)),
		set("reconnect interval", sock.SetReconnectIvl(s.cfg.ReconnectInterval)),
		set("reconnect interval max", sock.SetReconnectIvlMax(s.cfg.ReconnectIntervalMax)),
	} {
		if step != nil {
			return sock, nil, step
		}
	}
	if strings.Contains(g.endpoint, "[") { // an IPv6 literal, as Core's ZMQ_IPV6 publishers allow
		if err := set("ipv6", sock.SetIpv6(true)); err != nil {
			return sock, nil, err
		}
	}
	for _, t := range g.topics {
		if err := set("subscribe "+t, sock.SetSubscribe(t)); err != nil {
			return sock, nil, err
		}
	}
	// The monitor and its reader are set up before connecting, so no
	// connection event is missed.
	addr := fmt.Sprintf("inproc://sv2kit-zmq-monitor-%d", i)
	if err := set("monitor", sock.Monitor(addr, zmq.EVENT_CONNECTED|zmq.EVENT_DISCONNECTED)); err != nil {
		return sock, nil, err
	}
	if mon, err = zctx.NewSocket(zmq.PAIR); err != nil {
		return sock, nil, fmt.Errorf("zmq monitor socket for %s: %w", g.endpoint, err)
	}
	if err := set("monitor linger", mon.SetLinger(0)); err != nil {
		return sock, mon, err
	}
	if err := set("monitor connect", mon.Connect(addr)); err != nil {
		return sock, mon, err
	}
	if err := set("connect", sock.Connect(g.endpoint)); err != nil {
		return sock, mon, err
	}
	return sock, mon, nil
}

// handle checks one message and delivers its events. It returns an error
// only when ctx ended while delivering.
func (s *Subscriber) handle(ctx context.Context, seq *seqTracker, endpoint string, frames [][]byte, out chan<- Event) error {
	topic, body, n, err := splitFrames(frames)
	if err != nil {
		s.reject(endpoint, err)
		return nil
	}
	if !s.subscribed(endpoint, topic) {
		// SUBSCRIBE filters by prefix; a longer topic name is not ours.
		return nil
	}
	s.messages.Add(1)
	// The sequence number counts even when the body turns out malformed:
	// the node sent that message, so the next one must follow it.
	if gap, expected := seq.observe(endpoint, topic, n); gap {
		s.gaps.Add(1)
		s.log.Warn("zmq messages lost or node restarted: resyncing", "endpoint", endpoint, "topic", topic,
			"expected", expected, "got", n)
		if err := deliver(ctx, out, Gap{Topic: topic, Endpoint: endpoint, Expected: expected, Got: n}); err != nil {
			return err
		}
	}
	ev, err := parseBody(topic, body)
	if err != nil {
		s.reject(endpoint, err)
		return nil
	}
	return deliver(ctx, out, ev)
}

func (s *Subscriber) subscribed(endpoint, topic string) bool {
	for _, g := range s.groups {
		if g.endpoint != endpoint {
			continue
		}
		for _, t := range g.topics {
			if t == topic {
				return true
			}
		}
	}
	return false
}

func (s *Subscriber) reject(endpoint string, err error) {
	n := s.malformed.Add(1)
	// A broken publisher could send many; log the first few and then rarely.
	if n <= 10 || n%1000 == 0 {
		s.log.Warn("zmq message malformed, skipped", "endpoint", endpoint, "error", err, "malformed_total", n)
	}
}

func deliver(ctx context.Context, out chan<- Event, ev Event) error {
	select {
	case out <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
