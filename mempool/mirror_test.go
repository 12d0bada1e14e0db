package mempool

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"

	"github.com/sv2kit/sv2kit/node"
)

// A node that is not there: Run keeps retrying, reports it, and stops at
// once when cancelled.
func TestMirrorNodeDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c, err := node.NewClient(node.Config{URL: "http://" + addr, User: "u", Password: "p", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, cfg := range []Config{
		{PollInterval: 50 * time.Millisecond, RetryMax: 100 * time.Millisecond},
		{ZMQSequence: "tcp://" + addr, RetryMax: 100 * time.Millisecond},
	} {
		cfg.Logger = testLogger(t)
		m, err := New(cfg, c)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		waitFor(t, 5*time.Second, "failed attempts", func() bool { return m.Stats().FetchErrors >= 3 })
		select {
		case <-m.Synced():
			t.Fatal("synced without a node")
		default:
		}
		if st := m.Stats(); st.InSync || !st.LastSync.IsZero() || st.Mode != m.Mode() {
			t.Fatalf("stats %+v", st)
		}
		if err := m.Run(ctx); err == nil {
			t.Fatal("a second Run was accepted")
		}
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not stop")
		}
		t.Logf("%s: stopped in %v after %d failed attempts", m.Mode(), time.Since(start).Round(time.Millisecond), m.Stats().FetchErrors)
	}
}

func TestRawCacheBounds(t *testing.T) {
	id := func(i int) chainhash.Hash { return chainhash.Hash{byte(i), byte(i >> 8), 1} }
	c := newRawCache(1000, 5, time.Hour)
	for i := range 10 {
		c.put(id(i), make([]byte, 100))
	}
	if len(c.m) != 5 || c.bytes != 500 {
		t.Fatalf("count bound: %d entries, %d bytes", len(c.m), c.bytes)
	}
	if _, ok := c.take(id(4)); ok {
		t.Fatal("the oldest were not dropped first")
	}
	if raw, ok := c.take(id(9)); !ok || len(raw) != 100 {
		t.Fatal("newest missing")
	}
	if _, ok := c.take(id(9)); ok || c.bytes != 400 {
		t.Fatal("take did not remove")
	}
	for i := 10; i < 14; i++ {
		c.put(id(i), make([]byte, 300))
	}
	if c.bytes > 1000 {
		t.Fatalf("byte bound: %d", c.bytes)
	}
	c.put(id(99), make([]byte, 5000)) // larger than the whole cache
	if _, ok := c.m[id(99)]; ok {
		t.Fatal("oversized body cached")
	}
	// Age bound.
	old := newRawCache(1<<20, 1000, time.Millisecond)
	old.put(id(1), []byte{1})
	time.Sleep(5 * time.Millisecond)
	old.put(id(2), []byte{2})
	if _, ok := old.m[id(1)]; ok || len(old.m) != 1 {
		t.Fatal("expired body kept")
	}
	// Many puts and takes: the queue does not grow without bound.
	for i := range 100000 {
		old.put(id(i+10), []byte{1})
		old.take(id(i + 10))
	}
	if len(old.fifo)-old.head > 2048 {
		t.Fatalf("queue holds %d references", len(old.fifo)-old.head)
	}
}
