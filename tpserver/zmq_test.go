package tpserver

import (
	"context"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"

	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/internal/zmqtest"
	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/sv2/messages"
)

// TestZMQ runs tp on the ZMQ path: a real libzmq publisher sends Bitcoin
// Core's hashblock and sequence frames for blocks btcd (the RPC source)
// really mined. A hashblock triggers the fast path; sequence 'A' triggers a
// template fetch; a lost hashblock plus a sequence gap triggers a resync
// that finds the missed block.
func TestZMQ(t *testing.T) {
	t.Parallel()
	n := regtest.Start(t, regtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pub := zmqtest.New(t, "")
	nc := nodeClient(t, n)
	tp := startTP(t, nc, func(c *Config) {
		c.ZMQ.HashBlock = pub.Endpoint()
		c.ZMQ.Sequence = pub.Endpoint()
		// Only ZMQ (or a gap's resync) can make tips arrive within the test.
		c.TipPollInterval = 10 * time.Minute
	})
	c := tp.dial(t, 32)
	_, _, empty := initial(t, c)

	// PUB/SUB slow joiner: publish until the subscription is live.
	var warm [32]byte
	warm[0] = 0xee
	waitUntil(t, 10*time.Second, "the ZMQ subscription", func() bool {
		pub.Sequence(warm, 'A')
		time.Sleep(20 * time.Millisecond)
		return tp.metric(t, "tp_mempool_notices_total") > 0
	})

	// hashblock → fast-path SetNewPrevHash for the empty template.
	hashes, err := n.Generate(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	pub.HashBlock(*hashes[0])
	p := nextPrevHash(t, c)
	if p.PrevHash != [32]byte(*hashes[0]) || p.TemplateID != empty.TemplateID {
		t.Fatalf("SetNewPrevHash(%d) on %x, want %d on %s", p.TemplateID, p.PrevHash, empty.TemplateID, hashes[0])
	}
	nextTemplate(t, c, false)
	nextTemplate(t, c, true)
	if tp.metric(t, "tp_tip_notices_total", "source", "zmq") < 1 {
		t.Fatal("tip not counted as learned from ZMQ")
	}

	// sequence 'A' → the core asks the node for a template (once Interval
	// has passed since the last fetch).
	time.Sleep(1100 * time.Millisecond)
	before := tp.metric(t, "tp_getblocktemplate_duration_seconds")
	var txid [32]byte
	txid[0] = 1
	pub.Sequence(txid, 'A')
	waitUntil(t, 5*time.Second, "a fetch after a mempool notice", func() bool {
		return tp.metric(t, "tp_getblocktemplate_duration_seconds") > before
	})

	// A block whose hashblock is lost, then a sequence gap: tp resyncs and
	// finds the block.
	hashes, err = n.Generate(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	pub.Seq[zmqtest.TopicSequence] += 3
	txid[0] = 2
	pub.Sequence(txid, 'A')
	_, p = waitPrevHash(t, c, *hashes[0], 15*time.Second)
	tp.logs.waitFor(t, "sequence gap", time.Second)
	if tp.metric(t, "tp_zmq_gaps_total", "topic", zmqtest.TopicSequence) < 1 {
		t.Fatal("gap not counted")
	}
	best, err := nc.GetBestBlockHash(ctx)
	if err != nil || best != chainhash.Hash(p.PrevHash) {
		t.Fatalf("best %s, SetNewPrevHash on %x (%v)", best, p.PrevHash, err)
	}
}

// TestFeeUpdate: transactions arriving on the same tip reach the client as
// a non-future template once their fees exceed fee-delta. btcd regenerates
// its template on the same tip only 60 s after the last one, so this test
// waits that long (in parallel with the others).
func TestFeeUpdate(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 60 s for btcd")
	}
	t.Parallel()
	n := regtest.Start(t, regtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := n.Wallet()
	if err := w.Fund(ctx, 3); err != nil {
		t.Fatal(err)
	}
	nc := nodeClient(t, n)
	tp := startTP(t, nc, nil)
	c := tp.dial(t, 32)
	nt, snph, _ := initial(t, c)
	if len(nt.MerklePath) != 0 {
		t.Fatalf("first template has %d siblings; the mempool was empty", len(nt.MerklePath))
	}
	for _, rate := range []float64{20, 25} {
		if _, err := w.Send(ctx, regtest.SendOpts{FeeRate: rate}); err != nil {
			t.Fatal(err)
		}
	}
	// The next message is the fee update: same tip, no SetNewPrevHash.
	m := next(t, c, 90*time.Second)
	up, ok := m.(*messages.NewTemplate)
	if !ok || up.FutureTemplate {
		t.Fatalf("got %s, want a non-future NewTemplate", describe(m))
	}
	if len(up.MerklePath) != 2 || up.CoinbaseTxValueRemaining < nt.CoinbaseTxValueRemaining+2000 {
		t.Fatalf("fee update: %d siblings, value %d (was %d)", len(up.MerklePath), up.CoinbaseTxValueRemaining, nt.CoinbaseTxValueRemaining)
	}
	if tp.metric(t, "tp_fee_updates_total") < 1 {
		t.Fatal("fee update not counted")
	}
	// It is minable on the announced tip: solve it, the node accepts it.
	sol, hash := solve(t, up, snph, w.PkScript(), 1)
	if err := c.SubmitSolution(ctx, sol); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "the node to accept the fee-update block", func() bool {
		b, err := nc.GetBestBlockHash(ctx)
		return err == nil && b == chainhash.Hash(hash)
	})
}

// TestWrongNetwork: a node on another chain than configured is reported
// with the fix, retried, and clients stay connected waiting for it.
func TestWrongNetwork(t *testing.T) {
	t.Parallel()
	n := regtest.Start(t, regtest.Options{})
	nc, err := node.NewClient(node.Config{URL: "http://" + n.RPCAddr(), User: n.RPCUser(), Password: n.RPCPass(), Network: "main"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	tp := startTP(t, nc, nil)
	c := tp.dial(t, 10)
	tp.logs.waitFor(t, "class=wrong-network", 10*time.Second)
	tp.logs.waitFor(t, "point the RPC URL at a main node", time.Second)
	if tp.metric(t, "tp_node_errors_total", "class", "wrong-network") < 1 || tp.metric(t, "tp_node_up") != 0 {
		t.Fatal("wrong network not counted")
	}
	select {
	case m := <-c.Events():
		t.Fatalf("template from a node on the wrong network: %s", describe(m))
	case <-time.After(300 * time.Millisecond):
	}
	if c.Err() != nil {
		t.Fatal(c.Err())
	}
}
