package mempool

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/internal/zmqtest"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/node"
)

// rawTx serializes tx for the rawtx topic.
func rawTx(tx *wire.MsgTx) []byte {
	var buf bytes.Buffer
	tx.Serialize(&buf)
	return buf.Bytes()
}

// warmUp publishes a harmless message (a 'C' for the current tip: the
// mirror fetches the block and finds nothing to remove) until the mirror
// has received one: PUB drops everything sent before the subscription
// reached it (the slow joiner). Later messages arrive in order after it.
func warmUp(t *testing.T, p *zmqtest.CorePub, m *Mirror, tip chainhash.Hash) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.Stats().ZMQEvents == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the mirror never received a ZMQ message")
		}
		p.Sequence(tip, 'C')
		time.Sleep(20 * time.Millisecond)
	}
	// Let the last warm-up messages be handled (each is one block fetch).
	waitFor(t, 5*time.Second, "the warm-up to settle", func() bool {
		st := m.Stats()
		if st.Blocks != st.ZMQEvents {
			return false
		}
		time.Sleep(100 * time.Millisecond)
		return m.Stats().ZMQEvents == st.ZMQEvents
	})
}

func sendRaw(t *testing.T, ctx context.Context, n *regtest.Node, tx *wire.MsgTx) {
	t.Helper()
	var buf bytes.Buffer
	tx.Serialize(&buf)
	if err := n.Call(ctx, "sendrawtransaction", nil, fmt.Sprintf("%x", buf.Bytes())); err != nil {
		t.Fatalf("sendrawtransaction: %v", err)
	}
}

// The ZMQ path: a real libzmq publisher sends Bitcoin Core's sequence and
// rawtx frames for real transactions that a real btcd holds (btcd has no
// ZMQ of its own). Additions with and without their rawtx, a replacement
// removed, a block, a sequence gap and a publisher restart, each resynced
// against the node.
func TestMirrorZMQRegtest(t *testing.T) {
	n := regtest.Start(t, regtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := regtestClient(t, n)
	w := n.Wallet()
	if err := w.Fund(ctx, 30); err != nil {
		t.Fatal(err)
	}
	pre, err := w.SendMany(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	pub := zmqtest.New(t, "")
	m := startMirror(t, Config{ZMQSequence: pub.Endpoint(), ZMQRawTx: pub.Endpoint(), FetchDelay: 200 * time.Millisecond,
		ResyncInterval: time.Hour, RetryMax: 200 * time.Millisecond}, c)
	if !inMirror(m.Store(), pre...) || m.Stats().Mode != ModeZMQ {
		t.Fatal("first fill incomplete")
	}
	tip, err := c.GetBestBlockHash(ctx)
	if err != nil {
		t.Fatal(err)
	}
	warmUp(t, pub, m, tip)
	base := m.Stats()

	// Additions: rawtx before its announcement, rawtx after it, and no
	// rawtx at all (fetched with getrawtransaction).
	send := func(opts regtest.SendOpts) *wire.MsgTx {
		t.Helper()
		tx, err := w.Send(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	tx1, tx2, tx3 := send(regtest.SendOpts{}), send(regtest.SendOpts{Outputs: 2}), send(regtest.SendOpts{SpendUnconfirmed: true})
	pub.RawTx(rawTx(tx1))
	pub.Sequence(tx1.TxHash(), 'A')
	pub.Sequence(tx2.TxHash(), 'A')
	pub.RawTx(rawTx(tx2))
	pub.Sequence(tx3.TxHash(), 'A')
	waitFor(t, 5*time.Second, "three announced transactions", func() bool { return inMirror(m.Store(), tx1, tx2, tx3) })
	st := m.Stats()
	if st.FromRawTx-base.FromRawTx != 2 || st.Fetched-base.Fetched != 1 {
		t.Fatalf("from rawtx %d, fetched %d; want 2 and 1", st.FromRawTx-base.FromRawTx, st.Fetched-base.Fetched)
	}

	// A replacement: the node removes the original ('R') and adds the new one.
	orig := send(regtest.SendOpts{Replaceable: true})
	pub.Sequence(orig.TxHash(), 'A')
	pub.RawTx(rawTx(orig))
	waitFor(t, 5*time.Second, "the replaceable transaction", func() bool { return inMirror(m.Store(), orig) })
	repl, err := w.DoubleSpend(ctx, orig)
	if err != nil {
		t.Fatal(err)
	}
	sendRaw(t, ctx, n, repl)
	pub.Sequence(orig.TxHash(), 'R')
	pub.Sequence(repl.TxHash(), 'A')
	pub.RawTx(rawTx(repl))
	waitFor(t, 5*time.Second, "the replacement", func() bool { return inMirror(m.Store(), repl) && !m.Store().Has(orig.TxHash()) })
	if d := diffNode(ctx, c, m.Store()); d != "" {
		t.Fatalf("after the replacement: %s", d)
	}
	total, misses := lookupTemplate(t, ctx, c, m)
	t.Logf("in-sync lookup (zmq): %d template transactions, %d missing", total, misses)
	if misses != 0 {
		t.Fatalf("%d of %d template transactions missing", misses, total)
	}

	// A block: 'C' makes the mirror fetch it and drop its transactions.
	hashes, err := n.Generate(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tx := range []*wire.MsgTx{tx1, tx2, tx3, repl} {
		pub.RawTx(rawTx(tx)) // Core publishes the block's transactions again
	}
	pub.Sequence(*hashes[0], 'C')
	waitFor(t, 5*time.Second, "the block's transactions to leave", func() bool { return m.Store().Len() == 0 })
	if st := m.Stats(); st.Blocks-base.Blocks != 1 || st.Confirmed < 9 || st.Resyncs != 1 || st.Gaps != 0 {
		t.Fatalf("after the block: %+v", st)
	}

	// A lost rawtx message is no reason to resync: the announcement still
	// comes and the transaction is fetched.
	tx5 := send(regtest.SendOpts{})
	pub.Seq[node.TopicRawTx]++
	pub.Sequence(tx5.TxHash(), 'A')
	waitFor(t, 5*time.Second, "a transaction after a rawtx gap", func() bool { return inMirror(m.Store(), tx5) })
	if st := m.Stats(); st.Resyncs != 1 {
		t.Fatalf("rawtx gap resynced: %+v", st)
	}

	// A lost sequence message: transactions the node took meanwhile were
	// never announced; the gap makes the mirror resync against the node.
	var silent []*wire.MsgTx
	for range 4 {
		silent = append(silent, send(regtest.SendOpts{}))
	}
	pub.Seq[node.TopicSequence]++ // one message lost
	pub.Sequence(silent[0].TxHash(), 'A')
	waitFor(t, 5*time.Second, "the resync after a gap", func() bool { return inMirror(m.Store(), silent...) })
	if st := m.Stats(); st.Gaps != 1 || st.Resyncs != 2 {
		t.Fatalf("after the gap: %+v", st)
	}
	if d := diffNode(ctx, c, m.Store()); d != "" {
		t.Fatalf("after the gap: %s", d)
	}

	// The publisher restarts (as when the node restarts: same endpoint,
	// counters from zero): the reconnection is a gap, and the mirror
	// resyncs and finds what it was never told about.
	later := send(regtest.SendOpts{})
	ep := pub.Endpoint()
	pub.Close()
	pub = zmqtest.New(t, ep)
	waitFor(t, 10*time.Second, "the resync after the publisher restarted", func() bool { return m.Stats().Resyncs >= 3 })
	if !inMirror(m.Store(), later) {
		t.Fatal("the resync after the reconnection missed a transaction")
	}
	// Messages flow again after the reconnection.
	after := send(regtest.SendOpts{})
	deadline := time.Now().Add(10 * time.Second)
	for !inMirror(m.Store(), after) {
		if time.Now().After(deadline) {
			t.Fatal("no announcement received after the publisher restarted")
		}
		pub.Sequence(after.TxHash(), 'A') // repeated until the subscription is back (slow joiner)
		time.Sleep(50 * time.Millisecond)
	}
	waitConverged(t, ctx, c, m.Store(), 5*time.Second)
	st = m.Stats()
	t.Logf("stats: %+v", st)
	if st.Malformed != 0 || st.LookupMisses != 0 || !st.InSync {
		t.Fatalf("stats: %+v", st)
	}
}
