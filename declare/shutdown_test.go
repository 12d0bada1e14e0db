package declare

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire"
	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// TestServeStopsEverything: cancelling Serve's context ends every goroutine
// the JDS started (tip watcher, sweeper, a handshake in flight, a
// connection waiting for SetupConnection, set-up connections, one with a
// declaration waiting for its missing transactions) and the pool API, and
// Serve and ServeAPI return.
func TestServeStopsEverything(t *testing.T) {
	e := newEnv(t)
	// The JDS's own node client, closed after Serve as cmd/jds does.
	nc, err := node.NewClient(node.Config{URL: "http://" + e.n.RPCAddr(), User: e.n.RPCUser(), Password: e.n.RPCPass(),
		Network: "regtest", Timeout: 20 * time.Second, Logger: testLogger(t, hclog.Error)})
	if err != nil {
		t.Fatal(err)
	}
	key, err := noise.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{AuthorityKey: key, Node: nc, Txs: e.mirror.Store(), BlockDir: t.TempDir(),
		Policy:          Policy{PayoutScript: poolScript, HalvingInterval: RegtestHalvingInterval, AllowFullTemplate: true},
		TipPollInterval: 200 * time.Millisecond, SetupTimeout: time.Minute, Logger: testLogger(t, hclog.Warn)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served, apiServed := make(chan error, 1), make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	go func() { apiServed <- s.ServeAPI(ctx, apiLn) }()
	select {
	case <-s.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("JDS not ready")
	}
	j := &jds{s: s, addr: ln.Addr().String(), pub: noise.PublicKey(key)}

	// A TCP connection that never starts its handshake.
	raw, err := net.Dial("tcp", j.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// A Noise connection that never sends SetupConnection.
	pub := j.pub
	dialRaw(t, j.addr, &pub)
	// A JDC holding tokens, and one whose declaration waits for missing
	// transactions it will never provide.
	idle := dialJDP(t, j, messages.FlagDeclareTxData)
	idle.allocate("alice")
	waiting := dialJDP(t, j, messages.FlagDeclareTxData)
	tok := waiting.allocate("bob")
	job := e.buildJob([]*wire.MsgTx{synthTx(1, true), synthTx(2, true)}, jobOpts{})
	waiting.send(&messages.DeclareMiningJob{RequestID: 99, MiningJobToken: tok.MiningJobToken, Version: job.version,
		CoinbaseTxPrefix: job.prefix, CoinbaseTxSuffix: job.suffix, WtxidList: job.wtxids})
	if m, ok := waiting.read().(*messages.ProvideMissingTransactions); !ok || len(m.UnknownTxPositionList) != 2 {
		t.Fatalf("%#v", m)
	}
	// The pool API with a keep-alive connection open.
	if _, err := NewHTTPClient("http://"+apiLn.Addr().String()).ValidateCustomJob(ctx, "alice", &messages.SetCustomMiningJob{}); err != nil {
		t.Fatal(err)
	}

	cancel()
	for name, ch := range map[string]chan error{"Serve": served, "ServeAPI": apiServed} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s did not return", name)
		}
	}
	nc.Close()
	// The env's mirror and node client run goroutines of their own, so
	// count only those in the server's code.
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := serverGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of the server still run:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serverGoroutines returns the stacks of goroutines running the JDS's
// code, Noise's, the node client's tip watcher or an HTTP server.
func serverGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "declare.Test") || strings.Contains(g, "declare.newEnv") {
			continue
		}
		for _, mark := range []string{"sv2kit/declare.", "sv2kit/sv2/noise.", "sv2kit/node.(*TipWatcher)", "sv2kit/node.(*Subscriber)", "net/http.(*conn).serve", "net/http.(*Server)"} {
			if strings.Contains(g, mark) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}
