package node

import (
	"github.com/sv2kit/sv2kit/internal/config"

	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := []Config{
		{URL: "http://127.0.0.1:8332", CookieFile: "/home/u/.bitcoin/.cookie"},
		{URL: "http://node:18443", User: "u", Password: "p", Network: "regtest"},
		{URL: "https://node.example:443", User: "u", Password: "p", Network: "mainnet"},
		{URL: "http://[::1]:8332", User: "u", Password: "p", Network: "testnet3", Timeout: time.Second},
	}
	for _, c := range ok {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := []struct {
		cfg      Config
		key, fix string
	}{
		{Config{}, "url", "http://127.0.0.1:8332"},
		{Config{URL: "127.0.0.1:8332", CookieFile: "c"}, "url", "http://host:port"},
		{Config{URL: "http://127.0.0.1", CookieFile: "c"}, "url", "http://host:port"},
		{Config{URL: "ftp://127.0.0.1:21", CookieFile: "c"}, "url", "http://host:port"},
		{Config{URL: "http://u:p@127.0.0.1:8332", CookieFile: "c"}, "url", "http://host:port"},
		{Config{URL: "http://127.0.0.1:8332"}, "cookie-file", ".cookie"},
		{Config{URL: "http://127.0.0.1:8332", CookieFile: "c", User: "u", Password: "p"}, "cookie-file", "not both"},
		{Config{URL: "http://127.0.0.1:8332", Password: "p"}, "user", "rpcuser"},
		{Config{URL: "http://127.0.0.1:8332", User: "u"}, "password", "rpcpassword"},
		{Config{URL: "http://127.0.0.1:8332", CookieFile: "c", Network: "moon"}, "network", "regtest"},
		{Config{URL: "http://127.0.0.1:8332", CookieFile: "c", Timeout: -1}, "timeout", "30s"},
		{Config{URL: "http://127.0.0.1:8332", CookieFile: "c", MaxConcurrent: -1}, "max-concurrent", "4"},
	}
	for _, b := range bad {
		err := b.cfg.Validate()
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != b.key || !strings.Contains(err.Error(), b.fix) {
			t.Errorf("%+v: got %v, want key %q mentioning %q", b.cfg, err, b.key, b.fix)
		}
		if _, err := NewClient(b.cfg); err == nil {
			t.Errorf("NewClient accepted %+v", b.cfg)
		}
	}
	c, err := NewClient(Config{URL: "http://127.0.0.1:8332/", CookieFile: "c", Network: "testnet3"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := c.Config()
	if got.Timeout != DefaultTimeout || got.MaxConcurrent != DefaultMaxConcurrent || got.Network != "test" ||
		got.LongPollTimeout != DefaultLongPollTimeout || got.Logger == nil || c.hostPath != "127.0.0.1:8332" {
		t.Errorf("defaults: %+v host %q", got, c.hostPath)
	}
}

func TestZMQConfigValidate(t *testing.T) {
	if _, err := NewSubscriber(ZMQConfig{}); err == nil {
		t.Error("no endpoints accepted")
	}
	for _, c := range []ZMQConfig{
		{HashBlock: "127.0.0.1:28332"},
		{Sequence: "tcp://0.0.0.0:28332"},
		{HashBlock: "tcp://127.0.0.1:28332", RcvHWM: -1},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	s, err := NewSubscriber(ZMQConfig{HashBlock: "tcp://127.0.0.1:28332", Sequence: "tcp://127.0.0.1:28333",
		RawTx: "tcp://127.0.0.1:28333"})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.groups) != 2 || len(s.groups[1].topics) != 2 {
		t.Errorf("groups: %+v", s.groups)
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: -1}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Errorf("step %d: %v want %v", i, got, w*time.Millisecond)
		}
	}
	b.Reset()
	if got := b.Next(); got != 100*time.Millisecond {
		t.Errorf("after reset: %v", got)
	}

	// Jitter draws from [d·(1−j), d].
	j := Backoff{Initial: time.Second, Max: time.Minute, Jitter: 0.5, Rand: func() float64 { return 0.999999 }}
	if got := j.Next(); got < 500*time.Millisecond || got > 501*time.Millisecond {
		t.Errorf("max jitter: %v", got)
	}
	j = Backoff{Initial: time.Second, Max: time.Minute, Jitter: 0.5, Rand: func() float64 { return 0 }}
	if got := j.Next(); got != time.Second {
		t.Errorf("no jitter draw: %v", got)
	}
	var z Backoff // defaults, real randomness: within bounds
	for i := 0; i < 40; i++ {
		d := z.Next()
		if d <= 0 || d > defaultBackoffMax {
			t.Fatalf("default backoff %v", d)
		}
	}
}

func TestRetry(t *testing.T) {
	ctx := context.Background()
	calls := 0
	var notified []int
	err := Retry(ctx, &Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond}, func(context.Context) error {
		calls++
		if calls < 4 {
			return &RPCError{Code: CodeInitialDownload, Message: "ibd"}
		}
		return nil
	}, func(err error, attempt int, wait time.Duration) {
		if !IsInitialDownload(err) || wait <= 0 {
			t.Errorf("notify %v %v", err, wait)
		}
		notified = append(notified, attempt)
	})
	if err != nil || calls != 4 || len(notified) != 3 || notified[2] != 3 {
		t.Fatalf("retry: %v calls=%d notified=%v", err, calls, notified)
	}

	perm := errors.New("bad config")
	calls = 0
	err = Retry(ctx, nil, func(context.Context) error { calls++; return Permanent(perm) }, nil)
	if err != perm || calls != 1 {
		t.Fatalf("permanent: %v %d", err, calls)
	}

	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = Retry(cctx, &Backoff{Initial: 10 * time.Second}, func(context.Context) error { return errors.New("down") }, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "down") || time.Since(start) > time.Second {
		t.Fatalf("ctx: %v after %v", err, time.Since(start))
	}
}
