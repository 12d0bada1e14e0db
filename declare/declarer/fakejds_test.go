package declarer

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// fakeJDS is a scripted JDS over a real Noise listener: it answers
// SetupConnection and token allocations like a JDS and hands each
// DeclareMiningJob to a test's script.
type fakeJDS struct {
	t   testing.TB
	ln  *noise.Listener
	pub [32]byte
	b   behavior

	// got receives every message the fake read, in order.
	got chan codec.Message

	mu    sync.Mutex
	conns []*noise.Conn
	wg    sync.WaitGroup
	ntok  uint32
}

type behavior struct {
	// setup answers SetupConnection; nil: Success echoing DECLARE_TX_DATA.
	setup func(*messages.SetupConnection) codec.Message
	// noTokens: AllocateMiningJobToken is never answered.
	noTokens bool
	// declare handles a DeclareMiningJob; nil: Success with token "ok".
	declare func(p *peer, m *messages.DeclareMiningJob)
	opts    codec.Options
}

type peer struct {
	t    testing.TB
	c    *noise.Conn
	opts codec.Options
	f    *fakeJDS
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Logf("%s", p)
	return len(p), nil
}

func startFake(t testing.TB, b behavior) *fakeJDS {
	t.Helper()
	auth, err := noise.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := noise.Listen("tcp", "127.0.0.1:0", &noise.Config{AuthorityKey: auth, MaxPayload: messages.MaxPayload})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeJDS{t: t, ln: ln, pub: noise.PublicKey(auth), b: b, got: make(chan codec.Message, 10000)}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				f.serve(&peer{t: t, c: c, opts: b.opts, f: f})
			}()
		}
	}()
	t.Cleanup(f.close)
	return f
}

func (f *fakeJDS) addr() string { return f.ln.Addr().String() }

// dropAll closes every connection the fake accepted.
func (f *fakeJDS) dropAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
}

func (f *fakeJDS) close() {
	f.ln.Close()
	f.dropAll()
	f.wg.Wait()
}

// next returns the next message the fake read of type T, skipping others.
func next[T codec.Message](t *testing.T, f *fakeJDS) T {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m := <-f.got:
			if v, ok := m.(T); ok {
				return v
			}
		case <-timeout:
			var zero T
			t.Fatalf("fake JDS: no %T received", zero)
			return zero
		}
	}
}

func (p *peer) read() (codec.Message, error) {
	for {
		h, payload, err := p.c.ReadFrame()
		if err != nil {
			return nil, err
		}
		m, err := messages.Decode(h, payload, p.opts)
		if err != nil {
			return nil, err
		}
		select {
		case p.f.got <- m:
		default:
		}
		return m, nil
	}
}

func (p *peer) send(m codec.Message) {
	if err := p.c.WriteMessage(m, p.opts); err != nil && !errors.Is(err, net.ErrClosed) {
		p.t.Logf("fake JDS: send %s: %v", m.MessageName(), err)
	}
}

func (f *fakeJDS) serve(p *peer) {
	for {
		m, err := p.read()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.t.Logf("fake JDS: read: %v", err)
			}
			return
		}
		switch m := m.(type) {
		case *messages.SetupConnection:
			if f.b.setup != nil {
				p.send(f.b.setup(m))
				continue
			}
			p.send(&messages.SetupConnectionSuccess{UsedVersion: 2, Flags: m.Flags & messages.FlagDeclareTxData})
		case *messages.AllocateMiningJobToken:
			if f.b.noTokens {
				continue
			}
			p.send(f.token(m.RequestID))
		case *messages.DeclareMiningJob:
			if f.b.declare != nil {
				f.b.declare(p, m)
				continue
			}
			p.send(&messages.DeclareMiningJobSuccess{RequestID: m.RequestID, NewMiningJobToken: []byte("ok")})
		}
	}
}

// token makes a fresh token: a 4-byte counter, like SRI's JDS.
func (f *fakeJDS) token(reqID uint32) *messages.AllocateMiningJobTokenSuccess {
	f.mu.Lock()
	f.ntok++
	n := f.ntok
	f.mu.Unlock()
	return &messages.AllocateMiningJobTokenSuccess{
		RequestID:      reqID,
		MiningJobToken: binary.LittleEndian.AppendUint32(nil, n),
		// one zero-value output paying OP_TRUE
		CoinbaseTxOutputs: []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x51},
	}
}

// dial connects a Declarer to f with test defaults, closed at cleanup.
func dial(t *testing.T, f *fakeJDS, mod func(*Config)) *Declarer {
	t.Helper()
	cfg := Config{
		Addr:            f.addr(),
		AuthorityPubKey: &f.pub,
		UserIdentifier:  "farm1",
		FullTemplate:    true,
		Timeout:         5 * time.Second,
		Logger:          testLogger(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// testJob is a job of n fake transactions.
func testJob(token []byte, n int) Job {
	txs := make([][]byte, n)
	for i := range txs {
		txs[i] = binary.LittleEndian.AppendUint32([]byte("tx-"), uint32(i))
	}
	return Job{
		Token:          token,
		Version:        0x20000000,
		CoinbasePrefix: []byte{2, 0, 0, 0, 0, 1, 1},
		CoinbaseSuffix: []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0},
		WTxIDs:         WTxIDs(txs),
		Txs:            txs,
		ExcessData:     make([]byte, 32),
	}
}
