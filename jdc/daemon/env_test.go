package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/declare"
	"github.com/sv2kit/sv2kit/internal/cpuminer"
	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/internal/testpool"
	"github.com/sv2kit/sv2kit/jdc"
	"github.com/sv2kit/sv2kit/jdc/devices"
	"github.com/sv2kit/sv2kit/mempool"
	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/provider"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/tpserver"
)

// logBuf collects a component's log, printed when the test fails.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// env is a whole regtest network on loopback: a real btcd, sv2kit's tp, and
// per pair a JDS and the test pool; jdc and CPU miners are added by tests.
type env struct {
	t    *testing.T
	ctx  context.Context
	n    *regtest.Node
	rpc  *node.Client
	logs *logBuf
	log  hclog.Logger

	tpAddr string
	tpKey  [32]byte
	tpStop func()
	tpAuth *btcec.PrivateKey

	pairs []*testPair
}

type testPair struct {
	payout   []byte
	auth     *btcec.PrivateKey
	key      [32]byte
	jds      *declare.Server
	jdsAddr  string
	jdsStop  func()
	pool     *testpool.Pool
	poolAddr string
	// policy, when set, adjusts the JDS's policy at its next start.
	policy func(*declare.Policy)
}

func newEnv(t *testing.T, pairs int) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	logs := &logBuf{}
	e := &env{t: t, ctx: ctx, logs: logs,
		log: hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: logs, Name: "test"})}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("JDC_TEST_LOG") != "" {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	e.n = regtest.Start(t, regtest.Options{})
	rpc, err := node.NewClient(node.Config{URL: "http://" + e.n.RPCAddr(), User: e.n.RPCUser(), Password: e.n.RPCPass(),
		Network: "regtest", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rpc.Close)
	e.rpc = rpc
	e.tpAuth = mustKey(t)
	e.tpKey = noise.PublicKey(e.tpAuth)
	e.startTP("127.0.0.1:0")
	for i := 0; i < pairs; i++ {
		p := &testPair{payout: append([]byte{0x00, 0x14}, bytes.Repeat([]byte{byte(0xa0 + i)}, 20)...), auth: mustKey(t)}
		p.key = noise.PublicKey(p.auth)
		e.pairs = append(e.pairs, p)
		e.startJDS(i, "127.0.0.1:0")
		e.startPool(i, "127.0.0.1:0", false, false)
	}
	return e
}

func mustKey(t *testing.T) *btcec.PrivateKey {
	k, err := noise.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (e *env) startTP(addr string) {
	t := e.t
	s, err := tpserver.New(tpserver.Config{
		Listen: addr, AuthorityKey: e.tpAuth,
		Provider:        provider.Config{HalvingInterval: 150, NoRetargeting: true, Interval: time.Second},
		Node:            e.rpc,
		TipPollInterval: 500 * time.Millisecond,
		NodeBackoff:     node.Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond},
		DataDir:         t.TempDir(),
		Logger:          e.log.Named("tp"),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.tpAddr = s.Addr().String()
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	e.tpStop = func() { cancel(); <-done }
	t.Cleanup(e.tpStop)
}

func (e *env) startJDS(i int, addr string) {
	t := e.t
	p := e.pairs[i]
	pol := declare.Policy{PayoutScript: p.payout, HalvingInterval: declare.RegtestHalvingInterval,
		AllowFullTemplate: true, AllowCoinbaseOnly: true}
	if p.policy != nil {
		p.policy(&pol)
	}
	srv, err := declare.New(declare.Config{
		AuthorityKey: p.auth,
		Policy:       pol,
		Node:         e.rpc, Txs: mempool.NewStore(0), BlockDir: t.TempDir(), TipPollInterval: 200 * time.Millisecond,
		Logger: e.log.Named("jds").With("pair", i),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	select {
	case <-srv.Ready():
	case <-e.ctx.Done():
		t.Fatal("JDS not ready")
	}
	p.jds, p.jdsAddr = srv, ln.Addr().String()
	p.jdsStop = func() { cancel(); <-done }
	t.Cleanup(p.jdsStop)
}

func (e *env) startPool(i int, addr string, rejectJobs, rejectShares bool) {
	t := e.t
	p := e.pairs[i]
	pool, err := testpool.New(testpool.Config{
		Listen: addr, AuthorityKey: p.auth, API: p.jds, TickInterval: time.Second,
		RejectCustomJobs: rejectJobs, RejectShares: rejectShares,
		Logger: e.log.Named("pool").With("pair", i), Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = pool.Run(e.ctx) }()
	p.pool, p.poolAddr = pool, pool.Addr().String()
	t.Cleanup(func() { _ = pool.Close() })
}

// startJDC runs jdc over the env's pairs.
func (e *env) startJDC(mode jdc.Mode, mod func(*Config)) *Daemon {
	t := e.t
	cfg := Config{
		Core:   jdc.Config{Mode: mode, ReturnAfter: 3 * time.Second, ProbeInterval: time.Second, TokenTimeout: 3 * time.Second, DeclareTimeout: 5 * time.Second, CustomJobTimeout: 3 * time.Second},
		TPAddr: e.tpAddr, TPAuthorityKey: &e.tpKey,
		Devices: devices.Config{Listen: "127.0.0.1:0", Plaintext: true, MinDifficulty: 1e-12,
			SharesPerMinute: 60, VardiffWindow: 5 * time.Second},
		Node:         e.rpc,
		BlocksDir:    t.TempDir(),
		Timeout:      3 * time.Second,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
		Logger:     e.log.Named("jdc"),
		Registerer: prometheus.NewRegistry(),
	}
	for i, p := range e.pairs {
		key := p.key
		cfg.Upstreams = append(cfg.Upstreams, Upstream{PoolAddr: p.poolAddr, PoolAuthorityKey: &key,
			JDSAddr: p.jdsAddr, JDSAuthorityKey: &key, UserIdentity: "farm" + string(rune('0'+i))})
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("jdc Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("jdc did not stop within 10s")
		}
	})
	return d
}

// startMiner runs a CPU miner on jdc's device port.
func (e *env) startMiner(addr string, hashRate float64) *cpuminer.Miner {
	m, err := cpuminer.New(cpuminer.Config{Addr: addr, Plaintext: true, UserIdentity: "rig", HashRate: hashRate,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond, Logger: e.log.Named("miner")})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
	return m
}

func (e *env) height() int32 {
	h, err := e.n.Height(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

// tipBlock returns the node's best block.
func (e *env) tipBlock() *wire.MsgBlock {
	h, err := e.rpc.GetBestBlockHash(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := e.rpc.GetBlock(e.ctx, h)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *env) blockAt(h int32) *wire.MsgBlock {
	hash, err := e.rpc.GetBlockHash(e.ctx, int64(h))
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := e.rpc.GetBlock(e.ctx, hash)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

var _ = chainhash.Hash{}

// stallProxy forwards TCP to a target and, while stalled, holds every byte
// from the target: a peer that is there but does not answer.
type stallProxy struct {
	ln      net.Listener
	target  string
	stalled atomic.Bool
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *stallProxy) Addr() string { return p.ln.Addr().String() }

func (p *stallProxy) serve(c net.Conn) {
	defer c.Close()
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer u.Close()
	go func() { _, _ = io.Copy(u, c); u.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := u.Read(buf)
		for p.stalled.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
