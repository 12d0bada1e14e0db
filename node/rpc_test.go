package node

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

func TestCoreErrorCodes(t *testing.T) {
	s := newCoreServer(t)
	c := mustClient(t, Config{URL: s.url(), User: "alice", Password: "secret"})
	ctx := context.Background()

	cases := []struct {
		code    int
		msg     string
		is      func(error) bool
		hint    string
		retries bool
	}{
		{-10, "Bitcoin Core is in initial block download…", IsInitialDownload, "initial block download", true},
		{-9, "Bitcoin Core is not connected!", IsNotConnected, "no peers", true},
		{-28, "Loading block index…", IsWarmup, "starting", true},
		{-8, "Invalid mode", func(error) bool { return true }, "", false},
	}
	for _, tc := range cases {
		s.setFail(tc.code, tc.msg)
		_, err := c.GetBlockTemplate(ctx, "")
		if err == nil {
			t.Fatalf("code %d: no error", tc.code)
		}
		var re *RPCError
		if !errors.As(err, &re) || re.Code != tc.code || re.Message != tc.msg {
			t.Fatalf("code %d: got %#v (%v)", tc.code, re, err)
		}
		if !tc.is(err) {
			t.Errorf("code %d: classifier false for %v", tc.code, err)
		}
		if !strings.HasPrefix(err.Error(), "getblocktemplate: ") {
			t.Errorf("error not wrapped with the method: %v", err)
		}
		if h := Hint(err); tc.hint != "" && !strings.Contains(h, tc.hint) {
			t.Errorf("code %d: hint %q lacks %q", tc.code, h, tc.hint)
		}
		if Temporary(err) != tc.retries {
			t.Errorf("code %d: Temporary = %v", tc.code, !tc.retries)
		}
		if IsTransport(err) || IsAuth(err) {
			t.Errorf("code %d misclassified", tc.code)
		}
	}
	s.setFail(0, "")

	// -9's hint is the one operators most need: say what to check.
	s.setFail(-9, "Bitcoin Core is not connected!")
	_, err := c.GetBlockTemplate(ctx, "")
	if h := Hint(err); !strings.Contains(h, "connect=") || !strings.Contains(h, "getblocktemplate") {
		t.Errorf("-9 hint: %q", h)
	}
	s.setFail(0, "")

	// Unknown method: Core answers 404 with a JSON error.
	_, err = c.call(ctx, time.Second, "nosuchmethod")
	if code, ok := rpcCode(err); !ok || code != CodeMethodNotFound {
		t.Errorf("unknown method: %v", err)
	}

	// The lane that saw RPC errors is still fine.
	if _, err := c.GetBestBlockHash(ctx); err != nil {
		t.Fatalf("after errors: %v", err)
	}
}

func TestHTTPErrors(t *testing.T) {
	s := newCoreServer(t)
	ctx := context.Background()

	bad := mustClient(t, Config{URL: s.url(), User: "alice", Password: "wrong"})
	_, err := bad.GetBestBlockHash(ctx)
	if !IsAuth(err) {
		t.Fatalf("wrong password: %v", err)
	}
	if h := Hint(err); !strings.Contains(h, "rpcuser/rpcpassword") || !strings.Contains(h, "cookie") {
		t.Errorf("401 hint: %q", h)
	}
	if Temporary(err) || IsTransport(err) {
		t.Errorf("401 classified as temporary/transport")
	}

	c := mustClient(t, Config{URL: s.url(), User: "alice", Password: "secret"})
	s.setHTTP(http.StatusServiceUnavailable, "Work queue depth exceeded")
	_, err = c.GetBestBlockHash(ctx)
	if !IsBusy(err) || !Temporary(err) || !strings.Contains(Hint(err), "rpcworkqueue") {
		t.Errorf("503: %v / %q", err, Hint(err))
	}
	var he *HTTPError
	if !errors.As(err, &he) || he.Body != "Work queue depth exceeded" {
		t.Errorf("503 body: %#v", he)
	}
	s.setHTTP(http.StatusForbidden, "")
	_, err = c.GetBestBlockHash(ctx)
	if !IsForbidden(err) || !strings.Contains(Hint(err), "rpcallowip") {
		t.Errorf("403: %v / %q", err, Hint(err))
	}
	s.setHTTP(0, "")
	if _, err := c.GetBestBlockHash(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCookieAuthFollowsRestart(t *testing.T) {
	s := newCoreServer(t)
	dir := t.TempDir()
	cookie := filepath.Join(dir, ".cookie")
	writeCookie(t, cookie, "aaaa")
	s.mu.Lock()
	s.cookiePath = cookie
	s.mu.Unlock()

	c := mustClient(t, Config{URL: s.url(), CookieFile: cookie, MaxConcurrent: 2})
	ctx := context.Background()
	if _, err := c.GetBestBlockHash(ctx); err != nil {
		t.Fatalf("with cookie: %v", err)
	}
	// Use both lanes so that each has cached the old cookie.
	if _, err := c.GetRawTransactions(ctx, []chainhash.Hash{hashN(1)}); err != nil {
		t.Fatalf("batch with cookie: %v", err)
	}

	// The node stops (deletes its cookie): a cookie error with a hint.
	os.Remove(cookie)
	_, err := c.GetBestBlockHash(ctx)
	if !IsCookie(err) || !Temporary(err) || !strings.Contains(Hint(err), "running") {
		t.Fatalf("no cookie: %v / %q", err, Hint(err))
	}

	// It restarts with a new cookie: the very next calls work, no 30 s wait.
	writeCookie(t, cookie, "bbbb")
	for i := 0; i < 4; i++ {
		if _, err := c.GetBestBlockHash(ctx); err != nil {
			t.Fatalf("after the cookie was rewritten (call %d): %v", i, err)
		}
	}
	// Rewritten again while the file exists (a restart we did not see).
	writeCookie(t, cookie, "cccc")
	for i := 0; i < 4; i++ {
		if _, err := c.GetBestBlockHash(ctx); err != nil {
			t.Fatalf("after a second rewrite (call %d): %v", i, err)
		}
	}
	if _, err := c.GetRawTransactions(ctx, []chainhash.Hash{hashN(1)}); err != nil {
		t.Fatalf("batch after rewrite: %v", err)
	}

	// A cookie the node does not accept stays an auth error.
	writeCookie(t, cookie, "dddd")
	s.mu.Lock()
	s.cookiePath = ""
	s.mu.Unlock()
	if _, err := c.GetBestBlockHash(ctx); !IsAuth(err) {
		t.Fatalf("stale cookie: %v", err)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestNodeDownFailsFast(t *testing.T) {
	addr := freePort(t)
	c := mustClient(t, Config{URL: "http://" + addr, User: "u", Password: "p", Timeout: 20 * time.Second})
	start := time.Now()
	_, err := c.GetBestBlockHash(context.Background())
	took := time.Since(start)
	if !IsTransport(err) || IsTimeout(err) || !Temporary(err) {
		t.Fatalf("node down: %v", err)
	}
	if h := Hint(err); !strings.Contains(h, "cannot reach the node at http://"+addr) || !strings.Contains(h, "rpcbind") {
		t.Errorf("hint: %q", h)
	}
	// rpcclient alone would retry for ~22 s; the probe answers in well under 2 s.
	if took > 2*time.Second {
		t.Errorf("took %v to notice the node is down", took)
	}
	// The batch path too.
	_, err = c.GetRawTransactions(context.Background(), []chainhash.Hash{hashN(3)})
	if !IsTransport(err) {
		t.Fatalf("batch, node down: %v", err)
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	s := newCoreServer(t)
	c := mustClient(t, Config{URL: s.url(), User: "alice", Password: "secret", Timeout: 400 * time.Millisecond, MaxConcurrent: 1})

	s.setHang(true)
	start := time.Now()
	_, err := c.GetBestBlockHash(context.Background())
	if !IsTimeout(err) || !IsTransport(err) || !strings.Contains(Hint(err), "did not answer in time") {
		t.Fatalf("hung node: %v", err)
	}
	if d := time.Since(start); d < 350*time.Millisecond || d > 2*time.Second {
		t.Errorf("timeout after %v", d)
	}

	// Cancellation returns the context's error, promptly, and is not a node problem.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	start = time.Now()
	_, err = c.GetBestBlockHash(ctx)
	if !errors.Is(err, context.Canceled) || IsTransport(err) || Hint(err) != "" {
		t.Fatalf("cancel: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancel took %v", d)
	}

	// With one lane, the abandoned calls did not block the next one.
	s.setHang(false)
	if _, err := c.GetBestBlockHash(context.Background()); err != nil {
		t.Fatalf("after hang: %v", err)
	}

	// Close makes calls in flight return ErrClosed.
	s.setHang(true)
	go func() { time.Sleep(100 * time.Millisecond); c.Close() }()
	if _, err := c.GetBestBlockHash(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("close: %v", err)
	}
	if _, err := c.GetBestBlockHash(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func TestLongPollDoesNotBlockOtherCalls(t *testing.T) {
	s := newCoreServer(t)
	c := mustClient(t, Config{URL: s.url(), User: "alice", Password: "secret", MaxConcurrent: 2})
	ctx := context.Background()
	first, err := c.GetBlockTemplate(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	type res struct {
		t   *BlockTemplate
		err error
	}
	done := make(chan res, 1)
	go func() {
		tpl, err := c.GetBlockTemplate(ctx, first.LongPollID)
		done <- res{tpl, err}
	}()
	time.Sleep(100 * time.Millisecond)
	// While the long-poll waits, other calls go through.
	for i := 0; i < 3; i++ {
		if _, err := c.GetBlockCount(ctx); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case r := <-done:
		t.Fatalf("long-poll returned before the tip changed: %+v", r)
	default:
	}
	newTip := hashN(9)
	s.setTip(newTip)
	select {
	case r := <-done:
		if r.err != nil || r.t.PreviousBlockHash != newTip {
			t.Fatalf("long-poll: %v %v", r.err, r.t)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long-poll did not return after the tip changed")
	}
}

func TestNetworkCheckAndNodeInfo(t *testing.T) {
	s := newCoreServer(t)
	ctx := context.Background()
	c := mustClient(t, Config{URL: s.url(), User: "alice", Password: "secret", Network: "main"})
	info, err := c.CheckNetwork(ctx)
	if !IsWrongNetwork(err) || info == nil || info.Chain != "regtest" {
		t.Fatalf("wrong network: %v %+v", err, info)
	}
	if h := Hint(err); !strings.Contains(h, "runs regtest but network is set to main") {
		t.Errorf("hint: %q", h)
	}
	c2 := mustClient(t, Config{URL: s.url(), User: "alice", Password: "secret", Network: "regtest"})
	if _, err := c2.CheckNetwork(ctx); err != nil {
		t.Fatal(err)
	}
	ni, err := c2.NodeInfo(ctx)
	if err != nil || ni.Implementation != ImplCore || ni.Version != 270100 {
		t.Fatalf("node info: %v %+v", err, ni)
	}
}

func TestBatchRawTransactions(t *testing.T) {
	s := newCoreServer(t)
	c := mustClient(t, Config{URL: s.url(), User: "alice", Password: "secret"})
	var ids []chainhash.Hash
	s.mu.Lock()
	for i := 0; i < 1203; i++ { // three HTTP batches
		h := hashN(byte(i))
		h[31] = byte(i >> 8)
		ids = append(ids, h)
		if i%100 != 7 {
			s.mempool[h.String()] = "0100"
		}
	}
	s.mu.Unlock()
	before := s.calls.Load()
	out, err := c.GetRawTransactions(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.calls.Load() - before; n != 3 {
		t.Errorf("%d HTTP requests, want 3", n)
	}
	for i, b := range out {
		if i%100 == 7 {
			if b != nil {
				t.Errorf("tx %d unknown to the node but got %x", i, b)
			}
			continue
		}
		if len(b) != 2 || b[0] != 1 {
			t.Fatalf("tx %d: %x", i, b)
		}
	}
}
