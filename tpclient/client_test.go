package tpclient_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/tpclient"
)

// fakeTP is a minimal TDP server over real TCP + Noise that answers as
// script says, for the client's own tests (tp's tests drive the client
// against the real server).
func fakeTP(t *testing.T, serve func(conn *noise.Conn)) (addr string, key [32]byte) {
	t.Helper()
	auth, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := noise.Listen("tcp", "127.0.0.1:0", &noise.Config{AuthorityKey: auth, MaxPayload: messages.MaxPayload})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer conn.Close(); serve(conn) }()
		}
	}()
	return ln.Addr().String(), noise.PublicKey(auth)
}

func read(conn *noise.Conn) codec.Message {
	m, _, err := messages.Read(conn, codec.Options{})
	if err != nil {
		return nil
	}
	return m
}

func TestDialSetupAndEvents(t *testing.T) {
	got := make(chan *messages.CoinbaseOutputConstraints, 1)
	addr, key := fakeTP(t, func(conn *noise.Conn) {
		if sc, ok := read(conn).(*messages.SetupConnection); !ok || sc.Protocol != 2 || sc.MinVersion != 2 || sc.Vendor != "test-agent" {
			return
		}
		_ = conn.WriteMessage(&messages.SetupConnectionSuccess{UsedVersion: 2}, codec.Options{})
		c, _ := read(conn).(*messages.CoinbaseOutputConstraints)
		got <- c
		_ = conn.WriteMessage(&messages.NewTemplate{TemplateID: 1, FutureTemplate: true}, codec.Options{})
		_ = conn.WriteMessage(&messages.SetNewPrevHash{TemplateID: 1}, codec.Options{})
		for {
			switch m := read(conn).(type) {
			case *messages.RequestTransactionData:
				if m.TemplateID == 1 {
					_ = conn.WriteMessage(&messages.RequestTransactionDataSuccess{TemplateID: 1, ExcessData: make([]byte, 32),
						TransactionList: [][]byte{{1, 2, 3}}}, codec.Options{})
				} else {
					_ = conn.WriteMessage(&messages.RequestTransactionDataError{TemplateID: m.TemplateID, ErrorCode: "template-id-not-found"}, codec.Options{})
				}
			case nil:
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tpclient.Dial(ctx, tpclient.Config{Addr: addr, AuthorityPubKey: &key, MaxAdditionalSize: 77, MaxAdditionalSigops: 3, UserAgent: "test-agent"})
	if err != nil {
		t.Fatal(err)
	}
	if cc := <-got; cc == nil || cc.CoinbaseOutputMaxAdditionalSize != 77 || cc.CoinbaseOutputMaxAdditionalSigops != 3 {
		t.Fatalf("constraints %+v", cc)
	}
	if _, ok := (<-c.Events()).(*messages.NewTemplate); !ok {
		t.Fatal("first event is not NewTemplate")
	}
	if _, ok := (<-c.Events()).(*messages.SetNewPrevHash); !ok {
		t.Fatal("second event is not SetNewPrevHash")
	}
	// Concurrent requests get their own answers.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(id uint64) {
			defer wg.Done()
			td, err := c.RequestTransactionData(ctx, id)
			if id == 1 && (err != nil || len(td.TransactionList) != 1) {
				t.Errorf("template 1: %v", err)
			}
			var te *tpclient.TxDataError
			if id != 1 && (!errors.As(err, &te) || te.Code != "template-id-not-found" || te.TemplateID != id) {
				t.Errorf("template %d: %v", id, err)
			}
		}(uint64(i%2 + 1))
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for range c.Events() {
	}
	if _, err := c.RequestTransactionData(ctx, 1); !errors.Is(err, tpclient.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestDialRefused(t *testing.T) {
	addr, key := fakeTP(t, func(conn *noise.Conn) {
		read(conn)
		_ = conn.WriteMessage(&messages.SetupConnectionError{ErrorCode: "unsupported-protocol"}, codec.Options{})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := tpclient.Dial(ctx, tpclient.Config{Addr: addr, AuthorityPubKey: &key})
	var se *tpclient.SetupError
	if !errors.As(err, &se) || se.Code != "unsupported-protocol" {
		t.Fatalf("Dial: %v", err)
	}
	// A wrong pinned key fails the handshake.
	other := key
	other[0] ^= 1
	if _, err := tpclient.Dial(ctx, tpclient.Config{Addr: addr, AuthorityPubKey: &other}); err == nil {
		t.Fatal("wrong authority key accepted")
	}
}

// TestEventsEndWithConnection: the server going away closes Events and
// Err says why; a blocked reader does not prevent Close.
func TestEventsEndWithConnection(t *testing.T) {
	addr, key := fakeTP(t, func(conn *noise.Conn) {
		read(conn)
		_ = conn.WriteMessage(&messages.SetupConnectionSuccess{UsedVersion: 2}, codec.Options{})
		read(conn)
		for i := 0; i < tpclient.EventBuffer+10; i++ {
			_ = conn.WriteMessage(&messages.SetNewPrevHash{TemplateID: uint64(i)}, codec.Options{})
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tpclient.Dial(ctx, tpclient.Config{Addr: addr, AuthorityPubKey: &key})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the reader blocks on a full channel
	_ = c.Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("reader did not stop after Close")
	}
	if c.Err() == nil {
		t.Fatal("Err is nil after the end")
	}
}

// TestUnpinnedKeyWarnsOnce: without a pinned key the connection is made
// and logged as unauthenticated once (noise's warning), not once more by
// the client with its address repeated.
func TestUnpinnedKeyWarnsOnce(t *testing.T) {
	addr, _ := fakeTP(t, func(conn *noise.Conn) {
		read(conn)
		_ = conn.WriteMessage(&messages.SetupConnectionSuccess{UsedVersion: 2}, codec.Options{})
		read(conn)
		read(conn)
	})
	var buf syncBuffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Warn}).With("addr", addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tpclient.Dial(ctx, tpclient.Config{Addr: addr, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	out := buf.String()
	if n := strings.Count(out, "[WARN]"); n != 1 || !strings.Contains(out, "not authenticated") || strings.Count(out, "addr=") != 1 {
		t.Fatalf("want one warning naming the address once:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
