package mempool

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

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

// blockDuringListing is a node on which a block confirming the mempool's
// only transaction connects while the mirror lists the mempool: the
// listing already lacks the transaction, the tip read before it does not
// show the block yet.
type blockDuringListing struct {
	tx        *wire.MsgTx
	raw       []byte
	tip       chainhash.Hash
	connected bool
	listings  int
}

func (f *blockDuringListing) block() *wire.MsgBlock {
	cb := simpleTx(1000, false)
	return &wire.MsgBlock{Transactions: []*wire.MsgTx{cb, f.tx}}
}

func (f *blockDuringListing) mempool() []chainhash.Hash {
	f.listings++
	if f.listings == 2 { // the first poll after the fill: the block lands now
		f.connected = true
		f.tip = f.block().BlockHash()
	}
	if f.connected {
		return nil
	}
	return []chainhash.Hash{f.tx.TxHash()}
}

func (f *blockDuringListing) GetRawMempool(context.Context) ([]chainhash.Hash, error) {
	return f.mempool(), nil
}

func (f *blockDuringListing) GetRawMempoolVerbose(context.Context) (map[chainhash.Hash]node.MempoolEntry, error) {
	v := map[chainhash.Hash]node.MempoolEntry{}
	for _, id := range f.mempool() {
		v[id] = node.MempoolEntry{Fee: 1000}
	}
	return v, nil
}

func (f *blockDuringListing) GetRawTransactions(_ context.Context, ids []chainhash.Hash) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for k, id := range ids {
		if id == f.tx.TxHash() {
			out[k] = f.raw
		}
	}
	return out, nil
}

func (f *blockDuringListing) GetBlock(_ context.Context, h chainhash.Hash) (*wire.MsgBlock, error) {
	if b := f.block(); f.connected && h == b.BlockHash() {
		return b, nil
	}
	return nil, errors.New("no such block")
}

func (f *blockDuringListing) GetBestBlockHash(context.Context) (chainhash.Hash, error) {
	return f.tip, nil
}

// A block that connects while the mirror lists the mempool: its
// transaction is removed as confirmed by that block, not as one that left
// the mempool (the flake TestMirrorPollRegtest showed under load: Blocks 0,
// Confirmed 0, Removes 202).
func TestPollBlockDuringListing(t *testing.T) {
	tx := simpleTx(1, true)
	f := &blockDuringListing{tx: tx, raw: ser(t, tx), tip: chainhash.Hash{1}}
	m, err := New(Config{PollInterval: time.Hour, Logger: testLogger(t)}, f)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var tip chainhash.Hash
	if err := m.pollOnce(ctx, &tip, true, "initial fill"); err != nil {
		t.Fatal(err)
	}
	if m.Store().Len() != 1 {
		t.Fatalf("fill: %d transactions", m.Store().Len())
	}
	if err := m.pollOnce(ctx, &tip, false, "poll"); err != nil {
		t.Fatal(err)
	}
	st := m.Stats()
	if st.Count != 0 || st.Blocks != 1 || st.Confirmed != 1 || st.Removes != 0 || tip != f.block().BlockHash() {
		t.Fatalf("after the block: %+v, tip %s", st, tip)
	}
}
