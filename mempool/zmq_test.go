package mempool

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	zmq "github.com/pebbe/zmq4"
	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/node"
)

// corePub is a real libzmq PUB socket that sends what Bitcoin Core sends:
// [topic, body, 4-byte LE sequence number], one counter per topic.
type corePub struct {
	t        *testing.T
	zctx     *zmq.Context
	sock     *zmq.Socket
	endpoint string
	seq      map[string]uint32
	mempool  uint64 // Core's mempool sequence, carried by A and R
}

func newCorePub(t *testing.T, endpoint string) *corePub {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	sock, err := zctx.NewSocket(zmq.PUB)
	if err != nil {
		t.Fatal(err)
	}
	sock.SetLinger(0)
	if endpoint == "" {
		endpoint = "tcp://127.0.0.1:*"
	}
	if err := sock.Bind(endpoint); err != nil {
		t.Fatalf("bind %s: %v", endpoint, err)
	}
	ep, err := sock.GetLastEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	p := &corePub{t: t, zctx: zctx, sock: sock, endpoint: ep, seq: map[string]uint32{}, mempool: 1000}
	t.Cleanup(p.close)
	return p
}

func (p *corePub) close() {
	if p.sock != nil {
		p.sock.Close()
		p.zctx.Term()
		p.sock = nil
	}
}

func (p *corePub) send(topic string, body []byte) {
	p.t.Helper()
	n := p.seq[topic]
	p.seq[topic] = n + 1
	var s [4]byte
	binary.LittleEndian.PutUint32(s[:], n)
	if _, err := p.sock.SendMessage([]byte(topic), body, s[:]); err != nil {
		p.t.Fatalf("publish: %v", err)
	}
}

// displayBytes is a hash as Core publishes it (reversed, RPC display order).
func displayBytes(h chainhash.Hash) []byte {
	b := make([]byte, 32)
	for i := range 32 {
		b[i] = h[31-i]
	}
	return b
}

func (p *corePub) seqEvent(h chainhash.Hash, label byte) {
	p.t.Helper()
	body := append(displayBytes(h), label)
	if label == 'A' || label == 'R' {
		p.mempool++
		body = binary.LittleEndian.AppendUint64(body, p.mempool)
	}
	p.send(node.TopicSequence, body)
}

func (p *corePub) added(tx *wire.MsgTx)   { p.seqEvent(tx.TxHash(), 'A') }
func (p *corePub) removed(tx *wire.MsgTx) { p.seqEvent(tx.TxHash(), 'R') }
func (p *corePub) rawtx(tx *wire.MsgTx) {
	p.t.Helper()
	var buf bytes.Buffer
	tx.Serialize(&buf)
	p.send(node.TopicRawTx, buf.Bytes())
}

// warmUp publishes a harmless message (a 'C' for the current tip: the
// mirror fetches the block and finds nothing to remove) until the mirror
// has received one: PUB drops everything sent before the subscription
// reached it (the slow joiner). Later messages arrive in order after it.
func warmUp(t *testing.T, p *corePub, m *Mirror, tip chainhash.Hash) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.Stats().ZMQEvents == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the mirror never received a ZMQ message")
		}
		p.seqEvent(tip, 'C')
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
	pub := newCorePub(t, "")
	m := startMirror(t, Config{ZMQSequence: pub.endpoint, ZMQRawTx: pub.endpoint, FetchDelay: 200 * time.Millisecond,
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
	pub.rawtx(tx1)
	pub.added(tx1)
	pub.added(tx2)
	pub.rawtx(tx2)
	pub.added(tx3)
	waitFor(t, 5*time.Second, "three announced transactions", func() bool { return inMirror(m.Store(), tx1, tx2, tx3) })
	st := m.Stats()
	if st.FromRawTx-base.FromRawTx != 2 || st.Fetched-base.Fetched != 1 {
		t.Fatalf("from rawtx %d, fetched %d; want 2 and 1", st.FromRawTx-base.FromRawTx, st.Fetched-base.Fetched)
	}

	// A replacement: the node removes the original ('R') and adds the new one.
	orig := send(regtest.SendOpts{Replaceable: true})
	pub.added(orig)
	pub.rawtx(orig)
	waitFor(t, 5*time.Second, "the replaceable transaction", func() bool { return inMirror(m.Store(), orig) })
	repl, err := w.DoubleSpend(ctx, orig)
	if err != nil {
		t.Fatal(err)
	}
	sendRaw(t, ctx, n, repl)
	pub.removed(orig)
	pub.added(repl)
	pub.rawtx(repl)
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
		pub.rawtx(tx) // Core publishes the block's transactions again
	}
	pub.seqEvent(*hashes[0], 'C')
	waitFor(t, 5*time.Second, "the block's transactions to leave", func() bool { return m.Store().Len() == 0 })
	if st := m.Stats(); st.Blocks-base.Blocks != 1 || st.Confirmed < 9 || st.Resyncs != 1 || st.Gaps != 0 {
		t.Fatalf("after the block: %+v", st)
	}

	// A lost rawtx message is no reason to resync: the announcement still
	// comes and the transaction is fetched.
	tx5 := send(regtest.SendOpts{})
	pub.seq[node.TopicRawTx]++
	pub.added(tx5)
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
	pub.seq[node.TopicSequence]++ // one message lost
	pub.added(silent[0])
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
	ep := pub.endpoint
	pub.close()
	pub = newCorePub(t, ep)
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
		pub.added(after) // repeated until the subscription is back (slow joiner)
		time.Sleep(50 * time.Millisecond)
	}
	waitConverged(t, ctx, c, m.Store(), 5*time.Second)
	st = m.Stats()
	t.Logf("stats: %+v", st)
	if st.Malformed != 0 || st.LookupMisses != 0 || !st.InSync {
		t.Fatalf("stats: %+v", st)
	}
}
