// Package tpserver is the Template Provider daemon's IO shell around
// provider.Core: the Noise listener and one reader and one writer goroutine
// per client, the event loop that owns the core, the getblocktemplate fetch
// loop, tip and mempool notices from the node (ZMQ, or getblocktemplate
// long-poll), found-block persistence and submission, and Prometheus
// metrics. Every decision is the core's; this package only moves bytes and
// events.
//
// Goroutines and their owners (all stop when Run's context is done, and Run
// waits for them):
//
//	accept loop          → one reader and one writer per client
//	event loop           owns the Core and the client table
//	fetch loop           getblocktemplate, one call in flight, backoff
//	tip loop             TipWatcher (ZMQ hints / long-poll / poll) → header → NewTip
//	zmq subscriber       (when configured) → tip hints, mempool changes, gaps
//	block submitter      writes found blocks to disk (fsync), then submitblock
package tpserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/internal/config"
	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/provider"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// Defaults for Config's zero values.
const (
	DefaultMaxClientsPerIP  = 100
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultSetupTimeout     = 10 * time.Second
	DefaultSendQueue        = 64
	DefaultWriteTimeout     = 15 * time.Second
	DefaultTipPollInterval  = 10 * time.Second
	DefaultSubmitTimeout    = 2 * time.Minute
	// headerTimeout bounds the getblockheader call on the new-tip path:
	// past it the core gets the tip without its parent and waits for the
	// node's template.
	headerTimeout = 3 * time.Second
	// inboxSize bounds client messages waiting for the event loop.
	inboxSize = 1024
	// blockQueue bounds found blocks waiting to be written and submitted.
	blockQueue = 64
)

// Config configures a Server. Zero values select the documented defaults.
type Config struct {
	// Listen is the TDP address, e.g. "127.0.0.1:8336" (port 0 picks one).
	Listen string
	// AuthorityKey signs the per-connection certificates (required).
	AuthorityKey *btcec.PrivateKey
	// StaticKey is the Noise static key; nil means a fresh one per connection.
	StaticKey *btcec.PrivateKey
	// CertValidity of the certificates (default 1 h).
	CertValidity time.Duration

	// MaxClientsPerIP bounds connections from one address (default 100;
	// negative: no limit). Provider.MaxClients bounds them all.
	MaxClientsPerIP int
	// HandshakeTimeout bounds the Noise handshake (default 10 s).
	HandshakeTimeout time.Duration
	// SetupTimeout bounds the time from the handshake to
	// CoinbaseOutputConstraints (default 10 s).
	SetupTimeout time.Duration
	// SendQueue is the number of frames queued per client before it is
	// dropped as too slow (default 64).
	SendQueue int
	// WriteTimeout bounds one frame write to a client (default 15 s).
	WriteTimeout time.Duration

	// Provider is the core's configuration (fee delta, interval, chain
	// parameters, MaxClients, ...).
	Provider provider.Config

	// Node is the node's RPC client; nil runs without a node (tests and
	// benchmarks feed templates and tips directly). The caller closes it.
	Node *node.Client
	// ZMQ names the node's ZMQ publishers; without hashblock/sequence the
	// tip comes from getblocktemplate long-polling.
	ZMQ node.ZMQConfig
	// TipPollInterval paces the getbestblockhash safety poll (default 10 s).
	TipPollInterval time.Duration
	// NodeBackoff paces retries of a failing node (zero: 250 ms to 30 s).
	NodeBackoff node.Backoff

	// DataDir holds found blocks (DataDir/blocks/<height>-<hash>.hex).
	DataDir string
	// SubmitTimeout bounds the retries of one submitblock (default 2 min).
	SubmitTimeout time.Duration

	// Registry receives the metrics; nil keeps them unregistered.
	Registry prometheus.Registerer
	// Logger; nil discards.
	Logger hclog.Logger

	// tipWritten, when set (benchmarks), is told how long each fast-path
	// SetNewPrevHash fan-out took; tipQueued how long from the tip notice
	// to every SetNewPrevHash queued to its client's writer.
	tipWritten, tipQueued func(time.Duration)
}

func (c Config) withDefaults() Config {
	if c.MaxClientsPerIP == 0 {
		c.MaxClientsPerIP = DefaultMaxClientsPerIP
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.SetupTimeout <= 0 {
		c.SetupTimeout = DefaultSetupTimeout
	}
	if c.SendQueue <= 0 {
		c.SendQueue = DefaultSendQueue
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.TipPollInterval <= 0 {
		c.TipPollInterval = DefaultTipPollInterval
	}
	if c.SubmitTimeout <= 0 {
		c.SubmitTimeout = DefaultSubmitTimeout
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	c.Provider = c.Provider.WithDefaults()
	return c
}

// Server is a running Template Provider. Make one with New, then call Run.
type Server struct {
	cfg     Config
	log     hclog.Logger
	ln      *noise.Listener
	core    *provider.Core
	m       *metrics
	headers *headerCache

	// Event loop inputs.
	connected chan *clientConn
	inbox     chan clientMsg
	gone      chan goneEvent
	templates chan templateEvent
	tips      chan tipEvent
	mempool   chan struct{} // cap 1: coalesced mempool-change signal
	fetchReq  chan struct{} // cap 1: coalesced template request
	blocks    chan provider.FoundBlock

	// Per-IP connection counts (accept loop and event loop).
	ipMu  sync.Mutex
	perIP map[string]int
	live  atomic.Int64

	tipWritten, tipQueued func(time.Duration) // from Config

	// networkOK: the node was checked to be on the configured network
	// (since it was last unreachable); only then are its templates used.
	networkOK atomic.Bool
	// lastGap is when ZMQ last reported a gap (unix ns): a resync by
	// polling then is expected, not a sign of a broken ZMQ setup.
	lastGap atomic.Int64

	ran atomic.Bool
}

// New checks cfg, binds the listener and returns a Server ready to Run.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.AuthorityKey == nil {
		return nil, config.Invalid("keys.authority-secret-key", "no authority key", "set it, or leave it empty to use the key file in the data directory")
	}
	if cfg.DataDir == "" {
		return nil, config.Invalid("datadir", "not set", "set a directory where found blocks and keys are kept")
	}
	core, err := provider.New(cfg.Provider)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "blocks"), 0o700); err != nil {
		return nil, config.Invalid("datadir", fmt.Sprintf("cannot create %s: %v", filepath.Join(cfg.DataDir, "blocks"), err), "make the directory writable or choose another")
	}
	ln, err := noise.Listen("tcp", cfg.Listen, &noise.Config{
		AuthorityKey:     cfg.AuthorityKey,
		StaticKey:        cfg.StaticKey,
		CertValidity:     cfg.CertValidity,
		HandshakeTimeout: cfg.HandshakeTimeout,
		MaxPayload:       messages.MaxPayload,
		Logger:           cfg.Logger.Named("noise"),
	})
	if err != nil {
		return nil, config.Invalid("server.listen", err.Error(), "choose a free host:port (another tp or sv2-tp may be running)")
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		ln:      ln,
		core:    core,
		m:       newMetrics(cfg.Registry),
		headers: newHeaderCache(64),
		// Unbuffered: the loop registers a client before its reader starts,
		// so the client's first message never precedes its connection.
		connected:  make(chan *clientConn),
		inbox:      make(chan clientMsg, inboxSize),
		gone:       make(chan goneEvent, 256),
		templates:  make(chan templateEvent, 1),
		tips:       make(chan tipEvent, 16),
		mempool:    make(chan struct{}, 1),
		fetchReq:   make(chan struct{}, 1),
		blocks:     make(chan provider.FoundBlock, blockQueue),
		perIP:      make(map[string]int),
		tipWritten: cfg.tipWritten,
		tipQueued:  cfg.tipQueued,
	}
	return s, nil
}

// Close releases the listener of a Server that will not Run (Run closes
// it itself when it ends).
func (s *Server) Close() error {
	if s.ran.Load() {
		return nil
	}
	return s.ln.Close()
}

// Addr is the bound TDP address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx is done, then closes every connection and waits for
// its goroutines. Node errors never end it.
func (s *Server) Run(ctx context.Context) error {
	if s.ran.Swap(true) {
		return errors.New("tpserver: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	start := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	var clients sync.WaitGroup // readers and writers
	start(func() { s.acceptLoop(ctx, &clients) })
	start(func() { s.blockLoop(ctx) })
	if s.cfg.Node != nil {
		s.fetchReq <- struct{}{} // the first template, whatever the tip watcher says
		start(func() { s.fetchLoop(ctx) })
		start(func() { s.tipLoop(ctx) })
	}
	s.log.Info("Template Provider listening", "addr", s.ln.Addr().String())
	s.eventLoop(ctx)
	_ = s.ln.Close()
	cancel()
	wg.Wait()
	clients.Wait()
	return nil
}
