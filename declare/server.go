package declare

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sv2kit/sv2kit/internal/blockfile"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// Defaults for zero Config fields.
const (
	DefaultListen           = "127.0.0.1:34264"
	DefaultMaxConnections   = 2000
	DefaultMaxConnsPerIP    = 64
	DefaultSetupTimeout     = 10 * time.Second
	DefaultWriteQueue       = 64
	DefaultWriteTimeout     = 10 * time.Second
	DefaultProposalTimeout  = 30 * time.Second
	DefaultSubmitTimeout    = 60 * time.Second
	DefaultSweepInterval    = 30 * time.Second
	DefaultTipPoll          = 10 * time.Second
	DefaultConcurrentChecks = 8
)

// NodeRPC is what the JDS asks of its node; *node.Client implements it.
type NodeRPC interface {
	node.TipRPC
	GetBlockHeaderVerbose(ctx context.Context, hash chainhash.Hash) (*node.BlockHeaderInfo, error)
	ProposeBlock(ctx context.Context, rawBlock []byte) (string, error)
	SubmitBlock(ctx context.Context, rawBlock []byte) (string, error)
}

// Config configures a Server.
type Config struct {
	// AuthorityKey signs the per-connection Noise certificates: the pool's
	// authority key, whose public half JDCs pin.
	AuthorityKey *btcec.PrivateKey
	// CertValidity is the certificate lifetime (noise default 1h).
	CertValidity time.Duration
	// HandshakeTimeout and MaxHandshakes bound Noise handshakes (noise
	// defaults 10 s and 128).
	HandshakeTimeout time.Duration
	MaxHandshakes    int

	Policy Policy
	Node   NodeRPC
	// Txs is the mempool mirror's store.
	Txs TxSource
	// ZMQ (optional) names the node's hashblock/sequence publishers, the
	// fastest new-tip signal; without it the JDS long-polls
	// getblocktemplate and polls getbestblockhash every TipPollInterval.
	ZMQ             node.ZMQConfig
	TipPollInterval time.Duration

	// BlockDir receives every block the JDS rebuilds, written and synced
	// before submitblock (required).
	BlockDir string

	MaxConnections  int
	MaxConnsPerIP   int
	SetupTimeout    time.Duration // from handshake to SetupConnection
	WriteQueue      int           // frames queued per connection before it counts as slow
	WriteTimeout    time.Duration
	ProposalTimeout time.Duration // the node's proposal check
	SubmitTimeout   time.Duration
	SweepInterval   time.Duration
	// ConcurrentChecks bounds the declarations checked at once over all
	// connections, from parsing to the node's answer: each may assemble a
	// block of up to 4 MB and hold it while the node checks it. A
	// declaration that finds no free slot within ProposalTimeout is
	// answered internal-error (the JDC retries or falls back).
	ConcurrentChecks int

	// TokenSecret keys token MACs; zero means random.
	TokenSecret [32]byte

	Logger hclog.Logger
	// Metrics (from NewMetrics) receives the server's measurements; nil
	// keeps them unexported.
	Metrics *Metrics
	Now     func() time.Time
}

func (c *Config) normalize() {
	d := func(v *time.Duration, x time.Duration) {
		if *v == 0 {
			*v = x
		}
	}
	i := func(v *int, x int) {
		if *v == 0 {
			*v = x
		}
	}
	i(&c.MaxConnections, DefaultMaxConnections)
	i(&c.MaxConnsPerIP, DefaultMaxConnsPerIP)
	i(&c.WriteQueue, DefaultWriteQueue)
	i(&c.ConcurrentChecks, DefaultConcurrentChecks)
	d(&c.SetupTimeout, DefaultSetupTimeout)
	d(&c.WriteTimeout, DefaultWriteTimeout)
	d(&c.ProposalTimeout, DefaultProposalTimeout)
	d(&c.SubmitTimeout, DefaultSubmitTimeout)
	d(&c.SweepInterval, DefaultSweepInterval)
	d(&c.TipPollInterval, DefaultTipPoll)
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Server is the JDS: the Job Declaration Protocol over Noise towards JDCs,
// the node calls, and the pool API (it implements PoolAPI).
type Server struct {
	cfg  Config
	core *Core
	log  hclog.Logger
	m    *Metrics

	nextID    atomic.Uint64
	refreshAt atomic.Int64 // unix nanoseconds of the last refreshChain
	chainMu   sync.Mutex   // one updateChain at a time
	mu        sync.Mutex
	conns     map[uint64]*jdConn
	perIP     map[string]int
	wg        sync.WaitGroup
	ready     chan struct{}
	once      sync.Once
	checks    chan struct{} // one slot per declaration being checked
}

var _ PoolAPI = (*Server)(nil)

// New checks cfg and returns a server. It does not listen; Serve does.
func New(cfg Config) (*Server, error) {
	cfg.normalize()
	if cfg.AuthorityKey == nil {
		return nil, errors.New("declare: Config.AuthorityKey is required")
	}
	if cfg.Node == nil || cfg.Txs == nil {
		return nil, errors.New("declare: Config.Node and Config.Txs are required")
	}
	if cfg.BlockDir == "" {
		return nil, errors.New("declare: Config.BlockDir is required (blocks are written before they are submitted)")
	}
	secret := cfg.TokenSecret
	if secret == ([32]byte{}) {
		if _, err := rand.Read(secret[:]); err != nil {
			return nil, fmt.Errorf("declare: token secret: %w", err)
		}
	}
	core, err := NewCore(cfg.Policy, cfg.Txs, secret)
	if err != nil {
		return nil, err
	}
	m := cfg.Metrics
	if m == nil {
		m = newDiscardMetrics()
	}
	return &Server{cfg: cfg, core: core, log: cfg.Logger, m: m, conns: make(map[uint64]*jdConn), perIP: make(map[string]int),
		ready: make(chan struct{}), checks: make(chan struct{}, cfg.ConcurrentChecks)}, nil
}

// Core is the server's decision core (for metrics and tests).
func (s *Server) Core() *Core { return s.core }

// Ready is closed once the server knows the chain tip and answers
// declarations.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// NoiseConfig is the responder configuration Serve uses.
func (s *Server) NoiseConfig() *noise.Config {
	maxMissing := s.core.policy.MaxMissingBytes + 3*s.core.policy.MaxMissingTxs + 6 + messages.TrailingAllowance
	return &noise.Config{
		AuthorityKey:     s.cfg.AuthorityKey,
		CertValidity:     s.cfg.CertValidity,
		HandshakeTimeout: s.cfg.HandshakeTimeout,
		MaxHandshakes:    s.cfg.MaxHandshakes,
		Logger:           s.log.Named("noise"),
		MaxPayload: func(h codec.Header) int {
			n := messages.MaxPayload(h)
			if h.ExtensionType&0x7fff == messages.ExtensionCore && h.MsgType == messages.TypeProvideMissingTransactionsSuccess {
				return min(n, maxMissing)
			}
			return n
		},
	}
}

// Serve runs the JDS on ln (a plain TCP listener; Serve adds Noise) until
// ctx is done: the tip watcher, the token sweeper and every connection.
// It returns when all of them have stopped.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	nl, err := noise.NewListener(ln, s.NoiseConfig())
	if err != nil {
		return fmt.Errorf("jds listener: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.tipLoop(ctx) }()
	go func() { defer s.wg.Done(); s.sweepLoop(ctx) }()
	go func() {
		<-ctx.Done()
		nl.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.close("shutting down")
		}
		s.mu.Unlock()
	}()
	var acceptErr error
	for {
		c, err := nl.Accept()
		if err != nil {
			if ctx.Err() == nil {
				acceptErr = fmt.Errorf("jds accept: %w", err)
				cancel()
			}
			break
		}
		s.admit(ctx, c)
	}
	s.wg.Wait()
	return acceptErr
}

// admit applies the connection bounds and starts the connection.
func (s *Server) admit(ctx context.Context, c *noise.Conn) {
	ip := remoteIP(c.RemoteAddr())
	s.mu.Lock()
	if ctx.Err() != nil {
		s.mu.Unlock()
		c.Close()
		return
	}
	reason := ""
	switch {
	case len(s.conns) >= s.cfg.MaxConnections:
		reason = "limit"
	case s.perIP[ip] >= s.cfg.MaxConnsPerIP:
		reason = "per-ip-limit"
	}
	if reason != "" {
		s.mu.Unlock()
		s.m.connRefused.WithLabelValues(reason).Inc()
		s.log.Warn("connection refused", "remote", c.RemoteAddr(), "reason", reason)
		c.Close()
		return
	}
	id := s.nextID.Add(1)
	jc := &jdConn{s: s, id: id, c: c, ip: ip, out: make(chan codec.Message, s.cfg.WriteQueue), done: make(chan struct{}),
		log: s.log.With("conn", id, "remote", c.RemoteAddr().String())}
	s.conns[id] = jc
	s.perIP[ip]++
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		jc.run(ctx)
		s.mu.Lock()
		delete(s.conns, id)
		if s.perIP[ip]--; s.perIP[ip] <= 0 {
			delete(s.perIP, ip)
		}
		s.mu.Unlock()
	}()
}

func remoteIP(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

func (s *Server) sweepLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, x := range s.core.Sweep(s.cfg.Now()) {
				s.mu.Lock()
				jc := s.conns[x.Conn]
				s.mu.Unlock()
				if jc != nil {
					jc.reject(x.Reply)
				}
			}
		}
	}
}

// tipLoop follows the node's tip and gives the core the next block's
// height, nBits and minimum time.
func (s *Server) tipLoop(ctx context.Context) {
	zmqTips := s.cfg.ZMQ.HashBlock != "" || s.cfg.ZMQ.Sequence != ""
	w := node.NewTipWatcher(s.cfg.Node, node.TipWatcherConfig{LongPoll: !zmqTips, PollInterval: s.cfg.TipPollInterval,
		Logger: s.log.Named("tips")})
	var wg sync.WaitGroup
	defer wg.Wait()
	if zmqTips {
		zc := s.cfg.ZMQ
		zc.RawTx = "" // the mirror has its own subscription
		if zc.Logger == nil {
			zc.Logger = s.log.Named("zmq")
		}
		sub, err := node.NewSubscriber(zc)
		if err != nil {
			s.log.Error("ZMQ configuration unusable; following the tip by polling", "error", err)
		} else {
			events := make(chan node.Event, 256)
			wg.Add(2)
			go func() {
				defer wg.Done()
				if err := sub.Run(ctx, events); err != nil && ctx.Err() == nil {
					s.log.Error("ZMQ subscriber stopped; following the tip by polling", "error", err)
				}
			}()
			go func() {
				defer wg.Done()
				for {
					select {
					case <-ctx.Done():
						return
					case ev := <-events:
						w.Notify(ev)
					}
				}
			}()
		}
	}
	tips := make(chan node.Tip, 16)
	wg.Add(1)
	go func() { defer wg.Done(); _ = w.Run(ctx, tips) }()
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-tips:
			if err := s.updateChain(ctx, t); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("new tip: could not learn the next block's parameters; declarations wait", "hash", t.Hash, "error", err, "hint", node.Hint(err))
			}
		}
	}
}

// updateChain asks the node what the block after its tip must carry. The
// node's current template wins over t (which may be older by then), so
// concurrent callers (tip watcher, catch-up) never move the chain back.
func (s *Server) updateChain(ctx context.Context, t node.Tip) error {
	s.chainMu.Lock()
	defer s.chainMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var ch Chain
	tmpl, err := s.cfg.Node.GetBlockTemplate(ctx, "")
	if err != nil && t.Template != nil && t.Template.PreviousBlockHash == t.Hash {
		tmpl, err = t.Template, nil
	}
	if err == nil {
		ch = Chain{TipHash: tmpl.PreviousBlockHash, Height: tmpl.Height - 1, Bits: tmpl.Bits, MinTime: uint32(max(tmpl.MinTime, 0))}
	} else {
		// Core without peers refuses getblocktemplate: the tip's header
		// gives the height, and nBits stays the same except at a
		// retarget, which the proposal check would then reject.
		s.log.Debug("getblocktemplate failed; using the tip's header", "error", err)
		h, err := s.cfg.Node.GetBlockHeaderVerbose(ctx, t.Hash)
		if err != nil {
			return err
		}
		ch = Chain{TipHash: t.Hash, Height: h.Height, Bits: h.Bits}
		if h.MedianTime > 0 {
			ch.MinTime = uint32(h.MedianTime + 1)
		}
	}
	if cur, ok := s.core.Chain(); ok && cur == ch {
		return nil
	}
	s.core.SetChain(ch)
	s.once.Do(func() { close(s.ready) })
	s.log.Info("chain tip", "hash", chainhash.Hash(ch.TipHash), "height", ch.Height, "next_bits", fmt.Sprintf("%08x", ch.Bits), "source", t.Source.String())
	return nil
}

// ValidateCustomJob implements PoolAPI.
func (s *Server) ValidateCustomJob(ctx context.Context, userIdentity string, job *messages.SetCustomMiningJob) (Verdict, error) {
	start := time.Now()
	v := s.core.ValidateCustomJob(userIdentity, job, s.cfg.Now())
	if v.Code == CodeStaleChainTip {
		// The miner's node may have seen a new block a moment before our
		// tip watcher: ask the node and check again if the tip moved.
		before, _ := s.core.Chain()
		s.refreshChain(ctx)
		if after, _ := s.core.Chain(); after.TipHash != before.TipHash {
			v = s.core.ValidateCustomJob(userIdentity, job, s.cfg.Now())
		}
	}
	s.m.validationSecond.Observe(time.Since(start).Seconds())
	if v.OK {
		s.m.validations.WithLabelValues("ok", "").Inc()
	} else {
		s.m.validations.WithLabelValues("rejected", v.Code).Inc()
		s.log.Info("custom job rejected", "user", userIdentity, "channel", job.ChannelID, "request", job.RequestID, "code", v.Code, "details", v.Details)
	}
	return v, nil
}

// SubmitBlockShare implements PoolAPI: it rebuilds the block of a
// block-solving share on a declared job, writes it and submits it.
func (s *Server) SubmitBlockShare(ctx context.Context, userIdentity string, share BlockShare) (BlockResult, error) {
	b, err := s.core.BlockFromShare(share)
	if err != nil {
		s.log.Warn("pool block hand-over refused", "user", userIdentity, "error", err)
		return BlockResult{}, err
	}
	s.log.Info("block from the pool's share", "user", userIdentity, "hash", b.HashString(), "height", b.Height)
	return s.publish(ctx, b, "pool-api")
}

// publish writes a block to disk, syncs it, then submits it, retrying
// while the node cannot be reached.
func (s *Server) publish(ctx context.Context, b *FoundBlock, via string) (BlockResult, error) {
	res := BlockResult{Hash: b.HashString()}
	path, err := blockfile.WriteHex(s.cfg.BlockDir, b.Height, b.HashString(), b.Raw)
	if err != nil {
		// Submitting matters more than the copy: go on, loudly.
		s.log.Error("could not write the block to disk; submitting anyway", "hash", res.Hash, "error", err)
	} else {
		s.log.Info("block written", "hash", res.Hash, "path", path)
	}
	// The submission must not die with the connection that brought it.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.SubmitTimeout)
	defer cancel()
	result, err := node.SubmitBlockRetrying(sctx, s.cfg.Node, b.Raw, func(err error, attempt int, wait time.Duration) {
		s.log.Warn("submitblock did not reach the node; retrying", "attempt", attempt, "retry_in", wait, "error", err, "hint", node.Hint(err))
	})
	if err != nil {
		s.m.blocks.WithLabelValues(via, "error").Inc()
		if path != "" {
			s.log.Error("submitblock failed; the block is on disk, submit it by hand: bitcoin-cli submitblock $(cat FILE)",
				"hash", res.Hash, "file", path, "error", err, "hint", node.Hint(err))
		} else {
			s.log.Error("submitblock failed and the block is not on disk", "hash", res.Hash, "block", hex.EncodeToString(b.Raw),
				"error", err, "hint", node.Hint(err))
		}
		return res, fmt.Errorf("submitblock %s: %w", res.Hash, err)
	}
	res.Result = result
	res.Accepted = result == "" || node.IsDuplicateBlock(result)
	if res.Accepted {
		s.m.blocks.WithLabelValues(via, "accepted").Inc()
		s.log.Info("block accepted by the node", "hash", res.Hash, "height", b.Height, "via", via, "result", result)
	} else {
		s.m.blocks.WithLabelValues(via, "rejected").Inc()
		s.log.Error("block rejected by the node", "hash", res.Hash, "height", b.Height, "via", via, "result", result)
	}
	return res, nil
}

// ServeAPI serves the pool HTTP/JSON API on ln until ctx is done.
func (s *Server) ServeAPI(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           NewHTTPHandler(s, s.log.Named("api")),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      s.cfg.SubmitTimeout + 10*time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("pool API: %w", err)
	case <-ctx.Done():
		// Validations end in milliseconds; a block hand-over may be
		// retrying submitblock for up to SubmitTimeout and is let finish.
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.SubmitTimeout+5*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			s.log.Warn("pool API: requests still running at shutdown", "error", err)
		}
		<-errc
		return nil
	}
}

// SetMetrics replaces the server's metrics; call it before Serve (metrics
// built with NewMetrics(reg, s.Core()) export the core's gauges too).
func (s *Server) SetMetrics(m *Metrics) { s.m = m }

// refreshChain asks the node for its tip now, at most every 50 ms however
// many connections ask, and updates the chain when it moved.
func (s *Server) refreshChain(ctx context.Context) {
	now := time.Now().UnixNano()
	last := s.refreshAt.Load()
	if now-last < int64(50*time.Millisecond) || !s.refreshAt.CompareAndSwap(last, now) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	best, err := s.cfg.Node.GetBestBlockHash(ctx)
	if err != nil {
		return
	}
	if ch, ok := s.core.Chain(); ok && ch.TipHash == [32]byte(best) {
		return
	}
	if err := s.updateChain(ctx, node.Tip{Hash: best, Source: node.SourcePoll, At: time.Now()}); err != nil {
		s.log.Debug("chain refresh failed", "error", err)
	}
}
