package tpserver

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/provider"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/templates"
	"github.com/sv2kit/sv2kit/tpclient"
)

// fakeChain makes node templates without a node, for shell tests and
// benchmarks that feed the event loop directly.
type fakeChain struct {
	height int64
	tip    [32]byte
	times  []uint32 // newest first
}

func newFakeChain() *fakeChain {
	ch := &fakeChain{height: 1000}
	_, _ = rand.Read(ch.tip[:])
	now := uint32(time.Now().Unix())
	for i := 0; i < 11; i++ {
		ch.times = append(ch.times, now-uint32(600*(i+1)))
	}
	return ch
}

// source is a template on the current tip with txs transactions of size
// bytes each.
func (ch *fakeChain) source(txs, size int) (*templates.Source, provider.ChainInfo) {
	src := &templates.Source{
		Height:        ch.height + 1,
		PrevHash:      ch.tip,
		Version:       0x20000000,
		Bits:          0x207fffff,
		Target:        templates.TargetFromBits(0x207fffff),
		CurTime:       uint32(time.Now().Unix()),
		MinTime:       ch.times[5] + 1,
		CoinbaseValue: templates.Subsidy(ch.height+1, 150),
	}
	for i := 0; i < txs; i++ {
		tx := templates.Tx{Data: make([]byte, size), Fee: int64(1000 + i), SigOps: 4, Weight: int64(4 * size)}
		_, _ = rand.Read(tx.TxID[:])
		tx.WTxID = tx.TxID
		src.Txs = append(src.Txs, tx)
		src.CoinbaseValue += tx.Fee
	}
	return src, provider.ChainInfo{TipHash: ch.tip, TipHeight: ch.height, TipTime: ch.times[0], RecentTimes: ch.times}
}

// mine moves the fake chain one block on and returns the tip notice.
func (ch *fakeChain) mine() provider.TipNotice {
	parent := ch.tip
	_, _ = rand.Read(ch.tip[:])
	ch.height++
	t := max(uint32(time.Now().Unix()), ch.times[0]+1)
	ch.times = append([]uint32{t}, ch.times[:10]...)
	return provider.TipNotice{Hash: ch.tip, PrevHash: &parent, Time: t}
}

func startFake(t *testing.T, mod func(*Config)) (*testTP, *fakeChain) {
	t.Helper()
	tp := startTP(t, nil, mod)
	ch := newFakeChain()
	src, ci := ch.source(3, 200)
	tp.s.templates <- templateEvent{src: src, chain: ci}
	return tp, ch
}

func rawDial(t *testing.T, tp *testTP) *noise.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := noise.Dial(ctx, "tcp", tp.s.Addr().String(), &noise.Config{AuthorityPubKey: &tp.key, MaxPayload: messages.MaxPayload})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}

func write(t *testing.T, conn *noise.Conn, m codec.Message) {
	t.Helper()
	if err := conn.WriteMessage(m, codec.Options{}); err != nil {
		t.Fatal(err)
	}
}

// expectClosed reads until the server closes the connection.
func expectClosed(t *testing.T, conn *noise.Conn) {
	t.Helper()
	for {
		_, _, err := conn.ReadFrame()
		if err == nil {
			continue
		}
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open: %v", err)
		}
		return
	}
}

func TestSetupErrors(t *testing.T) {
	t.Parallel()
	tp, _ := startFake(t, nil)
	tests := []struct {
		name  string
		setup messages.SetupConnection
		code  string
	}{
		{"mining protocol", messages.SetupConnection{Protocol: messages.ProtocolMining, MinVersion: 2, MaxVersion: 2}, provider.ErrUnsupportedProtocol},
		{"job declaration", messages.SetupConnection{Protocol: messages.ProtocolJobDeclaration, MinVersion: 2, MaxVersion: 2}, provider.ErrUnsupportedProtocol},
		{"version 3 only", messages.SetupConnection{Protocol: messages.ProtocolTemplateDistribution, MinVersion: 3, MaxVersion: 3}, provider.ErrProtocolVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn := rawDial(t, tp)
			write(t, conn, &tc.setup)
			m, _, err := messages.Read(conn, codec.Options{})
			if err != nil {
				t.Fatal(err)
			}
			se, ok := m.(*messages.SetupConnectionError)
			if !ok || se.ErrorCode != tc.code {
				t.Fatalf("got %s %+v, want SetupConnection.Error %q", m.MessageName(), m, tc.code)
			}
			expectClosed(t, conn)
		})
	}
}

func TestBadClients(t *testing.T) {
	t.Parallel()
	tp, _ := startFake(t, func(c *Config) { c.SetupTimeout = 300 * time.Millisecond })
	setup := &messages.SetupConnection{Protocol: messages.ProtocolTemplateDistribution, MinVersion: 2, MaxVersion: 2}

	t.Run("silent after handshake", func(t *testing.T) {
		conn := rawDial(t, tp)
		expectClosed(t, conn)
		tp.logs.waitFor(t, "setup deadline", time.Second)
	})
	t.Run("setup without constraints", func(t *testing.T) {
		conn := rawDial(t, tp)
		write(t, conn, setup)
		expectClosed(t, conn)
	})
	t.Run("malformed constraints", func(t *testing.T) {
		conn := rawDial(t, tp)
		write(t, conn, setup)
		if err := conn.WriteFrame(codec.Header{MsgType: messages.TypeCoinbaseOutputConstraints}, []byte{1, 2}); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, conn)
		tp.logs.waitFor(t, "malformed CoinbaseOutputConstraints", time.Second)
	})
	t.Run("message before setup", func(t *testing.T) {
		conn := rawDial(t, tp)
		write(t, conn, &messages.RequestTransactionData{TemplateID: 1})
		expectClosed(t, conn)
		tp.logs.waitFor(t, "RequestTransactionData before SetupConnection", time.Second)
	})
	// The server is still fine for a good client.
	c := tp.dial(t, 10)
	initial(t, c)
}

func TestMaxClients(t *testing.T) {
	t.Parallel()
	tp, _ := startFake(t, func(c *Config) { c.Provider.MaxClients = 2 })
	a, b := tp.dial(t, 10), tp.dial(t, 10)
	initial(t, a)
	initial(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := tpclient.Dial(ctx, tpclient.Config{Addr: tp.s.Addr().String(), AuthorityPubKey: &tp.key}); err == nil {
		_ = c.Close()
		t.Fatal("third client accepted with max-clients 2")
	}
	if tp.metric(t, "tp_clients_refused_total", "reason", "max-clients") != 1 {
		t.Fatal("refusal not counted")
	}
	// A slot frees when a client leaves.
	_ = a.Close()
	waitUntil(t, 5*time.Second, "the slot to free", func() bool { return tp.metric(t, "tp_clients") == 1 })
	initial(t, tp.dial(t, 10))
}

// TestSlowClientDropped: a client that asks for transaction data and never
// reads is dropped when its queue fills; another client keeps getting new
// tips without delay.
func TestSlowClientDropped(t *testing.T) {
	t.Parallel()
	tp := startTP(t, nil, func(c *Config) {
		c.SendQueue = 4
		c.WriteTimeout = time.Minute // the queue, not the write deadline, drops it
	})
	ch := newFakeChain()
	src, ci := ch.source(8, 100_000) // ~800 kB of transaction data per answer
	tp.s.templates <- templateEvent{src: src, chain: ci}

	good := tp.dial(t, 10)
	initial(t, good)

	slow := rawDial(t, tp)
	write(t, slow, &messages.SetupConnection{Protocol: messages.ProtocolTemplateDistribution, MinVersion: 2, MaxVersion: 2})
	write(t, slow, &messages.CoinbaseOutputConstraints{CoinbaseOutputMaxAdditionalSize: 10})
	// Read the setup answer and the first template to learn its id.
	var id uint64
	for id == 0 {
		m, _, err := messages.Read(slow, codec.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if nt, ok := m.(*messages.NewTemplate); ok {
			id = nt.TemplateID
		}
	}
	// Ask for far more than socket buffers hold, and never read. The server
	// may drop the client before all 20 are written: closing a socket with
	// requests still unread resets it, and the next write fails. That is the
	// drop this test waits for below, not an error.
	for i := 0; i < 20; i++ {
		if err := slow.WriteMessage(&messages.RequestTransactionData{TemplateID: id}, codec.Options{}); err != nil {
			t.Logf("request %d not written (dropped already): %v", i, err)
			break
		}
	}
	tp.logs.waitFor(t, "send queue full (slow client)", 20*time.Second)
	if tp.metric(t, "tp_clients_dropped_slow_total") != 1 {
		t.Fatal("drop not counted")
	}
	// The good client still follows the chain.
	notice := ch.mine()
	tp.s.tips <- tipEvent{notice: notice, at: time.Now()}
	p := nextPrevHash(t, good)
	if p.PrevHash != notice.Hash {
		t.Fatal("good client got the wrong tip")
	}
	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := slow.ReadFrame(); err != nil {
			if errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "timeout") {
				break
			}
			t.Fatalf("slow client not disconnected: %v", err)
		}
	}
}

func TestMsgLimiter(t *testing.T) {
	var l msgLimiter
	l.tokens = msgBurst
	now := time.Unix(1000, 0)
	for i := 0; i < msgBurst; i++ {
		if w := l.take(now); w != 0 {
			t.Fatalf("message %d of the burst waits %v", i, w)
		}
	}
	if w := l.take(now); w <= 0 || w > time.Second/msgRate+time.Millisecond {
		t.Fatalf("beyond the burst: wait %v", w)
	}
	// After a second, msgRate more.
	now = now.Add(time.Second)
	for i := 0; i < msgRate-1; i++ {
		if w := l.take(now); w != 0 {
			t.Fatalf("message %d after a second waits %v", i, w)
		}
	}
}
