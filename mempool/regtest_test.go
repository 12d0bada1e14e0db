package mempool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/node"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(b, "\n"))
	return len(b), nil
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: testWriter{t}})
}

func regtestClient(t *testing.T, n *regtest.Node) *node.Client {
	t.Helper()
	c, err := node.NewClient(node.Config{
		URL: "http://" + n.RPCAddr(), User: n.RPCUser(), Password: n.RPCPass(), Network: "regtest",
		Timeout: 10 * time.Second, Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: testWriter{t}}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// startMirror runs a mirror until the test ends and waits for its first sync.
func startMirror(t *testing.T, cfg Config, rpc RPC) *Mirror {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	m, err := New(cfg, rpc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not stop within 10 s")
		}
	})
	select {
	case <-m.Synced():
	case err := <-done:
		t.Fatalf("Run returned %v before the first sync", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no first sync within 20 s")
	}
	return m
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inMirror reports whether every tx is in the store, by txid and by wtxid,
// with the node's bytes.
func inMirror(s *Store, txs ...*wire.MsgTx) bool {
	for _, tx := range txs {
		raw, ok := s.ByWTxID(tx.WitnessHash())
		if !ok {
			return false
		}
		var buf bytes.Buffer
		tx.Serialize(&buf)
		if !bytes.Equal(raw, buf.Bytes()) {
			return false
		}
		if _, ok := s.ByTxID(tx.TxHash()); !ok {
			return false
		}
	}
	return true
}

// diffNode compares the store with the node's mempool and describes the
// difference ("" when they agree).
func diffNode(ctx context.Context, c *node.Client, s *Store) string {
	ids, err := c.GetRawMempool(ctx)
	if err != nil {
		return err.Error()
	}
	mine := map[chainhash.Hash]bool{}
	for _, id := range s.TxIDs() {
		mine[id] = true
	}
	var missing, extra int
	for _, id := range ids {
		if !mine[id] {
			missing++
		}
		delete(mine, id)
	}
	extra = len(mine)
	if missing == 0 && extra == 0 {
		return ""
	}
	return fmt.Sprintf("node has %d, mirror %d: %d missing, %d extra", len(ids), s.Len(), missing, extra)
}

func waitConverged(t *testing.T, ctx context.Context, c *node.Client, s *Store, d time.Duration) {
	t.Helper()
	var last string
	deadline := time.Now().Add(d)
	for {
		if last = diffNode(ctx, c, s); last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror did not converge in %v: %s", d, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lookupTemplate looks up the node's current template's transactions as a
// declaration would and returns (transactions, misses).
func lookupTemplate(t *testing.T, ctx context.Context, c *node.Client, m *Mirror) (int, int) {
	t.Helper()
	tpl, err := c.GetBlockTemplate(ctx, "")
	if err != nil {
		t.Fatalf("getblocktemplate: %v", err)
	}
	wtxids := make([][32]byte, len(tpl.Transactions))
	for i, tx := range tpl.Transactions {
		wtxids[i] = tx.WTxID
	}
	found, missing := m.LookupWTxIDs(wtxids)
	for i, raw := range found {
		if raw != nil && !bytes.Equal(raw, tpl.Transactions[i].Data) {
			t.Fatalf("template tx %d: the mirror's bytes differ from the node's", i)
		}
	}
	return len(wtxids), len(missing)
}

// The polling mirror against a real btcd: the first fill, new
// transactions, a block, the template lookup, and the node killed and
// restarted with an empty mempool.
func TestMirrorPollRegtest(t *testing.T) {
	n := regtest.Start(t, regtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := regtestClient(t, n)
	w := n.Wallet()

	pre, err := w.SendMany(ctx, 200)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m := startMirror(t, Config{PollInterval: 100 * time.Millisecond, RetryMax: 200 * time.Millisecond, FetchBatch: 64}, c)
	t.Logf("first fill of %d transactions: %v", m.Store().Len(), time.Since(start))
	if !inMirror(m.Store(), pre...) {
		t.Fatal("not every transaction sent before the start is in the mirror")
	}
	if d := diffNode(ctx, c, m.Store()); d != "" {
		t.Fatal(d)
	}
	st := m.Stats()
	if st.Mode != ModePoll || st.Resyncs != 1 || st.Fetched < 200 || !st.InSync || st.LastSync.IsZero() {
		t.Fatalf("stats after the fill: %+v", st)
	}
	// Fees came with the first listing.
	if e, ok := m.Store().Get(pre[0].TxHash()); !ok || e.Fee <= 0 {
		t.Fatalf("entry %+v", e)
	}

	// New transactions, a parent and its child, follow within a poll or two.
	parent, err := w.Send(ctx, regtest.SendOpts{Outputs: 2})
	if err != nil {
		t.Fatal(err)
	}
	child, err := w.Send(ctx, regtest.SendOpts{SpendUnconfirmed: true})
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	waitFor(t, 5*time.Second, "new transactions", func() bool { return inMirror(m.Store(), parent, child) })
	t.Logf("new transactions in the mirror after %v (poll interval 100 ms)", time.Since(sent).Round(time.Millisecond))

	// A declaration of the node's own template finds every transaction.
	total, misses := lookupTemplate(t, ctx, c, m)
	t.Logf("in-sync lookup: %d template transactions, %d missing", total, misses)
	if total < 200 || misses != 0 {
		t.Fatalf("template lookup: %d transactions, %d missing", total, misses)
	}

	// A block confirms them: the mirror drops them.
	if _, err := n.Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ctx, c, m.Store(), 5*time.Second)
	if m.Store().Len() != 0 {
		t.Fatalf("%d transactions left after the block", m.Store().Len())
	}
	st = m.Stats()
	if st.Blocks < 1 || st.Confirmed < 202 {
		t.Fatalf("stats after the block: %+v", st)
	}

	// The node is killed: the mirror keeps what it has and retries.
	more, err := w.SendMany(ctx, 20)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "20 more", func() bool { return inMirror(m.Store(), more...) })
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the mirror to notice", func() bool { st := m.Stats(); return !st.InSync && st.FetchErrors > 0 })
	if !inMirror(m.Store(), more...) {
		t.Fatal("the mirror dropped transactions while the node was down")
	}
	resyncs := m.Stats().Resyncs
	// btcd comes back without its mempool: the mirror follows.
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a resync after the restart", func() bool { return m.Stats().Resyncs > resyncs })
	waitConverged(t, ctx, c, m.Store(), 5*time.Second)
	if m.Store().Len() != 0 {
		t.Fatalf("%d transactions left after the restart", m.Store().Len())
	}
	after, err := w.SendMany(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "transactions after the restart", func() bool { return inMirror(m.Store(), after...) })
	waitConverged(t, ctx, c, m.Store(), 5*time.Second)
	st = m.Stats()
	t.Logf("stats: %+v", st)
	if st.LookupMisses != 0 || st.Malformed != 0 || !st.InSync {
		t.Fatalf("stats: %+v", st)
	}
}

// Transactions arriving and confirming over several blocks while the mirror
// runs, with chains, a replacement and blocks mined right after sends. Each
// round starts on a new tip, so the node's next template holds the round's
// transactions: it is looked up at once (a declaration made the instant the
// node accepted them: the worst case, misses expected within one poll) and
// again once the mirror has polled (a miner in sync: no miss allowed). At
// the end the mirror equals the node's mempool.
func TestMirrorChurnRegtest(t *testing.T) {
	n := regtest.Start(t, regtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := regtestClient(t, n)
	w := n.Wallet()
	if err := w.Fund(ctx, 80); err != nil {
		t.Fatal(err)
	}
	const poll = 50 * time.Millisecond
	m := startMirror(t, Config{PollInterval: poll, RetryMax: 200 * time.Millisecond}, c)

	var instantTxs, instantMisses, settledTxs, settledMisses int
	var maxLag time.Duration
	for round := range 6 {
		if round > 0 {
			if _, err := n.Generate(ctx, 1); err != nil {
				t.Fatal(err)
			}
		}
		var sent []*wire.MsgTx
		for k := range 8 {
			opts := regtest.SendOpts{Outputs: 1 + k%3}
			if k%3 == 2 {
				opts.SpendUnconfirmed = true
			}
			if k == 5 {
				opts.Replaceable = true
			}
			tx, err := w.Send(ctx, opts)
			if err != nil {
				t.Fatalf("round %d send %d: %v", round, k, err)
			}
			if k == 5 {
				ds, err := w.DoubleSpend(ctx, tx)
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				ds.Serialize(&buf)
				if err := n.Call(ctx, "sendrawtransaction", nil, fmt.Sprintf("%x", buf.Bytes())); err != nil {
					t.Fatalf("replacement: %v", err)
				}
				tx = ds
			}
			sent = append(sent, tx)
		}
		last := time.Now()
		tpl, err := c.GetBlockTemplate(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		wtxids := make([][32]byte, len(tpl.Transactions))
		for i, tx := range tpl.Transactions {
			wtxids[i] = tx.WTxID
		}
		_, missing := m.LookupWTxIDs(wtxids)
		instantTxs += len(wtxids)
		instantMisses += len(missing)

		waitFor(t, 5*time.Second, "the round's transactions", func() bool { return inMirror(m.Store(), sent...) })
		maxLag = max(maxLag, time.Since(last))
		time.Sleep(2 * poll)
		found, missing := m.LookupWTxIDs(wtxids)
		settledTxs += len(wtxids)
		settledMisses += len(missing)
		for i, raw := range found {
			if raw != nil && !bytes.Equal(raw, tpl.Transactions[i].Data) {
				t.Fatalf("template tx %d: the mirror's bytes differ from the node's", i)
			}
		}
		if round%2 == 1 {
			// More, mined at the start of the next round, maybe before
			// the mirror has seen them.
			if _, err := w.SendMany(ctx, 10); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitConverged(t, ctx, c, m.Store(), 5*time.Second)
	if _, err := n.Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ctx, c, m.Store(), 5*time.Second)
	st := m.Stats()
	t.Logf("declared at the instant the node accepted them: %d of %d template transactions missing (%.1f%%)",
		instantMisses, instantTxs, 100*float64(instantMisses)/float64(max(instantTxs, 1)))
	t.Logf("declared after the mirror caught up (one poll, %v): %d of %d missing; slowest arrival %v",
		poll, settledMisses, settledTxs, maxLag.Round(time.Millisecond))
	t.Logf("stats: %+v", st)
	if settledMisses != 0 || settledTxs < 40 {
		t.Fatalf("in-sync declarations found %d of %d transactions missing", settledMisses, settledTxs)
	}
	if st.Blocks < 6 || st.Confirmed == 0 || st.Malformed != 0 || st.Adds < 48 {
		t.Fatalf("stats: %+v", st)
	}
}
