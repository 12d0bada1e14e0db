// Package devices is jdc's Mining Protocol server: the side mining devices
// and proxies connect to (DIGEST §6). jdc's core hands it work (a coinbase
// split around the extranonce space devices share, and a merkle path) and
// chain tips; the server turns them into jobs on every channel at once,
// keeps each channel's difficulty near a share rate, validates every share
// with the mining core, and hands up the shares that meet the upstream
// target or find a block.
//
// Connections are Noise (or plaintext for local devices), one reader and one
// writer goroutine each; the writer drains a bounded queue and a device that
// cannot keep up is dropped, so no device can delay the others. Channel
// decisions are made by package mining's pure core; this package is the IO
// shell and the fan-out around it.
package devices

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// maxFramePayload caps what a device may send in one frame: the largest
// message a device sends (SubmitSharesExtended with a TLV) is well below it.
const maxFramePayload = 1 << 17

// Server is the device-facing Mining Protocol server.
type Server struct {
	cfg Config
	log hclog.Logger
	m   *metrics
	ln  *noise.Listener

	ctx    context.Context // ends when Run returns
	cancel context.CancelFunc
	wg     sync.WaitGroup // connection goroutines
	runs   atomic.Bool

	shares chan Share
	events chan event

	connsMu  sync.Mutex
	conns    map[uint64]*conn
	perIP    map[string]int
	nextConn uint64

	upstreamTarget atomic.Pointer[[32]byte]

	// state is the work and tip every channel is given; see work.go.
	state workSet
	stats serverStats

	// onTipSent, when set before Run, is called after a tip's frames were
	// written to a connection (benchmarks).
	onTipSent func(posted, written time.Time)
	// onTipQueued, when set before Run, is called once a tip was queued
	// for every connection (benchmarks).
	onTipQueued func(posted, queued time.Time)
}

// New validates cfg, registers the metrics and binds the listener. Devices
// are served once Run is called.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.resolved()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	ncfg := &noise.Config{
		AuthorityKey:     cfg.AuthorityKey,
		StaticKey:        cfg.StaticKey,
		CertValidity:     cfg.CertValidity,
		Plaintext:        cfg.Plaintext,
		HandshakeTimeout: cfg.SetupTimeout,
		MaxHandshakes:    cfg.MaxHandshakes,
		MaxPayload: func(h codec.Header) int {
			return min(messages.MaxPayload(h), maxFramePayload)
		},
		Logger: cfg.Logger.Named("noise"),
	}
	tcp, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("devices: listen on %s: %w", cfg.Listen, err)
	}
	ln, err := noise.NewListener(batchListener{tcp}, ncfg)
	if err != nil {
		return nil, fmt.Errorf("devices: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		m:      m,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		shares: make(chan Share, cfg.ShareQueue),
		events: make(chan event, 1024),
		conns:  make(map[uint64]*conn),
		perIP:  make(map[string]int),
	}
	if err := s.state.init(&s.cfg); err != nil {
		ln.Close()
		return nil, fmt.Errorf("devices: %w", err)
	}
	return s, nil
}

// Addr is the address devices connect to (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shares delivers the shares that meet the upstream target or the network
// target (Share.Block). It is never closed (select on it together with
// the context that stops Run). It is bounded: when jdc does not keep up, ordinary
// upstream shares are dropped (counted and logged), but a block never is —
// the device's reader waits for room instead.
func (s *Server) Shares() <-chan Share { return s.shares }

// SetUpstreamTarget sets the target at or below which shares go upstream
// (the pool channel's target). Until it is called, only blocks go up.
func (s *Server) SetUpstreamTarget(t [32]byte) {
	s.upstreamTarget.Store(&t)
}

// Run serves devices until ctx ends, then closes every connection and waits
// for their goroutines. It returns nil after ctx ended, or the listener's
// error if accepting failed.
func (s *Server) Run(ctx context.Context) error {
	if !s.runs.CompareAndSwap(false, true) {
		return errors.New("devices: Run called twice")
	}
	s.log.Info("device server listening", "addr", s.Addr().String(), "plaintext", s.cfg.Plaintext)
	acceptErr := make(chan error, 1)
	go func() { acceptErr <- s.acceptLoop() }()
	dispatchDone := make(chan struct{})
	go func() {
		defer close(dispatchDone)
		s.dispatch()
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-acceptErr:
		err = fmt.Errorf("devices: %w", err)
	}
	s.cancel()
	s.ln.Close()
	if err == nil {
		<-acceptErr
	}
	<-dispatchDone
	s.connsMu.Lock()
	all := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		all = append(all, c)
	}
	s.connsMu.Unlock()
	for _, c := range all {
		c.close("server stopping", nil)
	}
	s.wg.Wait()
	return err
}

func (s *Server) acceptLoop() error {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			return err
		}
		s.connsMu.Lock()
		if len(s.conns) >= s.cfg.MaxConns {
			s.connsMu.Unlock()
			s.m.dropped.WithLabelValues("max_connections").Inc()
			s.log.Warn("device refused: too many connections", "remote", nc.RemoteAddr().String(), "max_conns", s.cfg.MaxConns)
			nc.Close()
			continue
		}
		ip := hostOf(nc.RemoteAddr())
		if s.cfg.MaxConnsPerIP > 0 && s.perIP[ip] >= s.cfg.MaxConnsPerIP {
			s.connsMu.Unlock()
			s.m.dropped.WithLabelValues("max_connections_per_ip").Inc()
			s.log.Warn("device refused: too many connections from its address", "remote", nc.RemoteAddr().String(),
				"max_conns_per_ip", s.cfg.MaxConnsPerIP)
			nc.Close()
			continue
		}
		s.nextConn++
		c := newConn(s, s.nextConn, nc)
		s.conns[c.id] = c
		s.perIP[ip]++
		s.connsMu.Unlock()
		s.m.connections.Inc()
		c.log.Debug("device connected", "plaintext", s.cfg.Plaintext)
		s.wg.Add(2)
		go c.readLoop()
		go c.writeLoop()
	}
}

func (s *Server) removeConn(c *conn) {
	s.connsMu.Lock()
	_, ok := s.conns[c.id]
	delete(s.conns, c.id)
	if ok {
		ip := hostOf(c.nc.RemoteAddr())
		if s.perIP[ip]--; s.perIP[ip] <= 0 {
			delete(s.perIP, ip)
		}
	}
	s.connsMu.Unlock()
	if ok {
		s.m.connections.Dec()
	}
	c.closeChannels()
}

// connections returns a snapshot of the connections.
func (s *Server) connections() []*conn {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	out := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		out = append(out, c)
	}
	return out
}

// hostOf is the IP address of a TCP peer.
func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}
