// Package testpool is a small Stratum V2 pool for tests and the demo: the
// pool a jdc mines on. It is the Mining Protocol server side for miners
// that choose their own work: a Noise responder (or plaintext), connections
// that set REQUIRES_WORK_SELECTION, extended channels with an extranonce
// prefix and a vardiff target from the mining core, SetCustomMiningJob
// checked through the JDS pool API (declare.PoolAPI, identity = the
// channel's user_identity), SubmitSharesExtended validated and counted per
// user, and blocks found on custom jobs handed to the JDS to rebuild and
// broadcast. It sends no jobs of its own.
//
// Knobs for failover tests reject every custom job or every share, and a
// pool can be closed and a new one started on the same address.
package testpool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/declare"
	"github.com/sv2kit/sv2kit/mining"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// Defaults for zero Config fields.
const (
	DefaultExtranonceSize  = 16
	DefaultChannelIDBytes  = 4
	DefaultMaxConns        = 256
	DefaultSetupTimeout    = 10 * time.Second
	DefaultAPITimeout      = 10 * time.Second
	DefaultWriteTimeout    = 10 * time.Second
	DefaultSendQueue       = 256
	DefaultSharesPerMinute = 10
	DefaultTickInterval    = 5 * time.Second
	// MaxUsers bounds the per-user statistics; later users are counted
	// under OtherUsers.
	MaxUsers = 1024
	// OtherUsers is the Stats.Users key for users beyond MaxUsers.
	OtherUsers = "(other)"
)

// Error codes the pool sends besides the mining core's.
const (
	CodeWorkSelectionRequired = "work-selection-required"
	CodeStandardNotSupported  = "standard-channels-not-supported-for-custom-work"
	CodeUnsupportedFlags      = "unsupported-feature-flags"
	CodeUnsupportedProtocol   = "unsupported-protocol"
	CodeVersionMismatch       = "protocol-version-mismatch"
	CodeJDNotSupported        = "jd-not-supported"
	CodeJDSUnavailable        = "jds-unavailable"
	CodeInvalidCustomJob      = "invalid-job"
	// CodeRejectedByPolicy answers every custom job or share while the
	// corresponding knob is on.
	CodeRejectedByPolicy = "rejected-by-pool-policy"
)

// Config configures a Pool. Zero values take the documented defaults.
type Config struct {
	// Listen is the address to serve on (port 0 picks one; see Addr).
	Listen string
	// AuthorityKey signs the Noise certificates; required unless Plaintext.
	AuthorityKey *btcec.PrivateKey
	// StaticKey is the Noise static key; nil means one per connection.
	StaticKey *btcec.PrivateKey
	// Plaintext serves without Noise (local tests only).
	Plaintext bool
	// API is the JDS pool API that checks custom jobs and takes blocks.
	API declare.PoolAPI

	// ExtranonceSize is the extranonce_size extended channels get (the
	// bytes the client rolls and subdivides). Default 16.
	ExtranonceSize int
	// ChannelIDBytes is the length of the per-channel extranonce prefix.
	// Default 4. ChannelIDBytes+ExtranonceSize must be at most 32.
	ChannelIDBytes int
	// SharesPerMinute is vardiff's aim per channel. Default 10.
	SharesPerMinute float64
	// MinDifficulty is the easiest share difficulty (0: any target, which
	// suits regtest).
	MinDifficulty float64

	MaxConns     int           // default 256
	SetupTimeout time.Duration // handshake + SetupConnection; default 10s
	APITimeout   time.Duration // each PoolAPI call; default 10s
	WriteTimeout time.Duration // each frame written; default 10s
	SendQueue    int           // frames queued per connection; default 256
	TickInterval time.Duration // vardiff updates; default 5s

	// BlocksDir, when set, receives every block-solving share (JSON) with
	// fsync before it is handed to the API.
	BlocksDir string

	// RejectCustomJobs and RejectShares start the knobs on (see
	// SetRejectCustomJobs, SetRejectShares).
	RejectCustomJobs, RejectShares bool

	Logger     hclog.Logger
	Registerer prometheus.Registerer
}

// Pool is a running test pool.
type Pool struct {
	cfg   Config
	log   hclog.Logger
	ln    *noise.Listener
	alloc *mining.ExtranonceAllocator
	mcfg  mining.Config
	m     *poolMetrics

	rejectJobs   atomic.Bool
	rejectShares atomic.Bool
	jobSeq       atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	blocks chan blockShare

	mu     sync.Mutex
	conns  map[*conn]struct{}
	stats  statsState
	closed bool
	ran    bool
	done   chan struct{}
}

// New checks cfg and binds the listener. Serve with Run.
func New(cfg Config) (*Pool, error) {
	if cfg.API == nil {
		return nil, errors.New("testpool: no JDS pool API")
	}
	if !cfg.Plaintext && cfg.AuthorityKey == nil {
		return nil, errors.New("testpool: an authority key is required unless plaintext")
	}
	if cfg.ExtranonceSize <= 0 {
		cfg.ExtranonceSize = DefaultExtranonceSize
	}
	if cfg.ChannelIDBytes <= 0 {
		cfg.ChannelIDBytes = DefaultChannelIDBytes
	}
	if cfg.ChannelIDBytes+cfg.ExtranonceSize > mining.MaxExtranonceSize {
		return nil, fmt.Errorf("testpool: extranonce %d + %d bytes exceeds %d", cfg.ChannelIDBytes,
			cfg.ExtranonceSize, mining.MaxExtranonceSize)
	}
	if cfg.SharesPerMinute <= 0 {
		cfg.SharesPerMinute = DefaultSharesPerMinute
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.SetupTimeout <= 0 {
		cfg.SetupTimeout = DefaultSetupTimeout
	}
	if cfg.APITimeout <= 0 {
		cfg.APITimeout = DefaultAPITimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = DefaultSendQueue
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = DefaultTickInterval
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	alloc, err := mining.NewExtranonceAllocator(nil, cfg.ChannelIDBytes+cfg.ExtranonceSize, cfg.ExtranonceSize, 0)
	if err != nil {
		return nil, fmt.Errorf("testpool: extranonce layout: %w", err)
	}
	m, err := newPoolMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	ln, err := noise.Listen("tcp", cfg.Listen, &noise.Config{
		AuthorityKey: cfg.AuthorityKey, StaticKey: cfg.StaticKey, Plaintext: cfg.Plaintext,
		HandshakeTimeout: cfg.SetupTimeout, MaxPayload: messages.MaxPayload, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("testpool: %w", err)
	}
	mcfg := mining.Config{Vardiff: mining.VardiffConfig{SharesPerMinute: cfg.SharesPerMinute}}
	if cfg.MinDifficulty > 0 {
		mcfg.EasiestTarget = mining.TargetFromDifficulty(cfg.MinDifficulty)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{
		cfg: cfg, log: log, ln: ln, alloc: alloc, mcfg: mcfg, m: m,
		ctx: ctx, cancel: cancel, blocks: make(chan blockShare, 1024),
		conns: map[*conn]struct{}{}, stats: newStatsState(), done: make(chan struct{}),
	}
	p.rejectJobs.Store(cfg.RejectCustomJobs)
	p.rejectShares.Store(cfg.RejectShares)
	return p, nil
}

// Addr is the bound address.
func (p *Pool) Addr() net.Addr { return p.ln.Addr() }

// SetRejectCustomJobs makes the pool answer every SetCustomMiningJob with
// SetCustomMiningJob.Error (CodeRejectedByPolicy) while on.
func (p *Pool) SetRejectCustomJobs(on bool) { p.rejectJobs.Store(on) }

// SetRejectShares makes the pool answer every share with SubmitShares.Error
// (CodeRejectedByPolicy) while on.
func (p *Pool) SetRejectShares(on bool) { p.rejectShares.Store(on) }

// Run serves until ctx ends or Close is called, then closes every
// connection and waits for its goroutines.
func (p *Pool) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.closed || p.ran {
		p.mu.Unlock()
		return errors.New("testpool: Run after Close or a second Run")
	}
	p.ran = true
	p.mu.Unlock()
	defer close(p.done)
	stop := context.AfterFunc(ctx, p.cancel)
	defer stop()

	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.submitBlocks()
	}()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		<-p.ctx.Done()
		p.ln.Close()
	}()
	p.log.Info("pool listening", "addr", p.Addr().String(), "plaintext", p.cfg.Plaintext)
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			p.cancel()
			p.closeConns()
			p.wg.Wait()
			if p.ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("testpool: accept: %w", err)
		}
		p.mu.Lock()
		if len(p.conns) >= p.cfg.MaxConns {
			p.mu.Unlock()
			p.log.Warn("connection refused: too many connections", "remote", nc.RemoteAddr().String(),
				"max", p.cfg.MaxConns)
			nc.Close()
			continue
		}
		c := newConn(p, nc)
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.m.connections.Inc()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			c.serve(p.ctx)
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
			p.m.connections.Dec()
		}()
	}
}

func (p *Pool) closeConns() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.nc.Close()
	}
}

// Close stops the pool: the listener, every connection and, if Run is
// running, waits for it to return. The address can then be bound again
// by a new Pool.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	ran := p.ran
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	if ran {
		<-p.done
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
