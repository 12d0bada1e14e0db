package node

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/internal/zmqtest"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/hashicorp/go-hclog"
)

// runSubscriber starts Run; stop cancels it and returns Run's error and how
// long it took to return.
func runSubscriber(t *testing.T, cfg ZMQConfig) (events chan Event, sub *Subscriber, stop func() (error, time.Duration)) {
	t.Helper()
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}})
	cfg.PollInterval = 50 * time.Millisecond
	sub, err := NewSubscriber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	events = make(chan Event, 256)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx, events) }()
	stopped := false
	stop = func() (error, time.Duration) {
		if stopped {
			return nil, 0
		}
		stopped = true
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			return err, time.Since(start)
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not stop")
			return nil, 0
		}
	}
	t.Cleanup(func() { stop() })
	return events, sub, stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(b, "\n"))
	return len(b), nil
}

func next(t *testing.T, events chan Event) Event {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
		return nil
	}
}

func expectNone(t *testing.T, events chan Event) {
	t.Helper()
	select {
	case ev := <-events:
		t.Fatalf("unexpected event %#v", ev)
	case <-time.After(100 * time.Millisecond):
	}
}

// warmUp publishes on each topic until the subscriber has seen each one (the
// PUB/SUB slow joiner: messages before the subscription reaches the
// publisher are dropped), then sends a marker per topic and drains up to it,
// so the test continues from a clean, in-sequence state.
func warmUp(t *testing.T, p *zmqtest.CorePub, events chan Event, topics ...string) {
	t.Helper()
	warm := hashN(200)
	seen := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < len(topics) {
		if time.Now().After(deadline) {
			t.Fatalf("subscriber never received %v (got %v)", topics, seen)
		}
		for _, tp := range topics {
			if !seen[tp] {
				p.Send(tp, warmBody(tp, warm))
			}
		}
		timer := time.After(20 * time.Millisecond)
	drain:
		for {
			select {
			case ev := <-events:
				seen[topicOf(t, ev)] = true
			case <-timer:
				break drain
			}
		}
	}
	marker := hashN(201)
	for _, tp := range topics {
		p.Send(tp, warmBody(tp, marker))
		for {
			ev := next(t, events)
			if _, gap := ev.(Gap); gap {
				t.Fatalf("gap during warm-up: %#v", ev)
			}
			if isMarker(ev, marker) {
				break
			}
		}
	}
}

func warmBody(topic string, h chainhash.Hash) []byte {
	switch topic {
	case TopicSequence:
		s := uint64(1)
		return seqBody(h, 'A', &s)
	case TopicRawTx:
		return h[:]
	}
	return zmqtest.DisplayBytes(h)
}

func topicOf(t *testing.T, ev Event) string {
	switch e := ev.(type) {
	case BlockConnected:
		return e.Topic
	case TxAdded:
		return TopicSequence
	case RawTx:
		return TopicRawTx
	}
	t.Fatalf("unexpected event during warm-up: %#v", ev)
	return ""
}

func isMarker(ev Event, h chainhash.Hash) bool {
	switch e := ev.(type) {
	case BlockConnected:
		return e.Hash == h
	case TxAdded:
		return e.TxID == h
	case RawTx:
		return bytes.Equal(e.Tx, h[:])
	}
	return false
}

func TestZMQCoreFrames(t *testing.T) {
	pub := zmqtest.New(t, "")
	events, sub, stop := runSubscriber(t, ZMQConfig{HashBlock: pub.Endpoint(), Sequence: pub.Endpoint(), RawTx: pub.Endpoint()})
	warmUp(t, pub, events, TopicHashBlock, TopicSequence, TopicRawTx)

	// hashblock: the body is the hash in RPC display order.
	h1 := hashN(1)
	pub.HashBlock(h1)
	if ev := next(t, events); ev != (BlockConnected{Hash: h1, Topic: TopicHashBlock}) {
		t.Fatalf("hashblock: %#v", ev)
	}
	// sequence C, D, A, R.
	h2, h3, tx1, tx2 := hashN(2), hashN(3), hashN(4), hashN(5)
	s7, s8 := uint64(7), uint64(8)
	pub.Send(TopicSequence, seqBody(h2, 'C', nil))
	pub.Send(TopicSequence, seqBody(h3, 'D', nil))
	pub.Send(TopicSequence, seqBody(tx1, 'A', &s7))
	pub.Send(TopicSequence, seqBody(tx2, 'R', &s8))
	for _, want := range []Event{
		BlockConnected{Hash: h2, Topic: TopicSequence}, BlockDisconnected{Hash: h3},
		TxAdded{TxID: tx1, MempoolSeq: 7}, TxRemoved{TxID: tx2, MempoolSeq: 8},
	} {
		if ev := next(t, events); ev != want {
			t.Fatalf("sequence: got %#v want %#v", ev, want)
		}
	}
	// rawtx: a real transaction.
	legacy, _ := testTxs()
	var buf bytes.Buffer
	legacy.Serialize(&buf)
	pub.Send(TopicRawTx, buf.Bytes())
	if ev, ok := next(t, events).(RawTx); !ok || !bytes.Equal(ev.Tx, buf.Bytes()) {
		t.Fatalf("rawtx: %#v", ev)
	}
	expectNone(t, events)

	// A lost message: the sequence number skips one.
	n := pub.Seq[TopicHashBlock]
	pub.Seq[TopicHashBlock]++
	h4 := hashN(6)
	pub.HashBlock(h4)
	if ev := next(t, events); ev != (Gap{Topic: TopicHashBlock, Endpoint: pub.Endpoint(), Expected: n, Got: n + 1}) {
		t.Fatalf("gap: %#v", ev)
	}
	if ev := next(t, events); ev != (BlockConnected{Hash: h4, Topic: TopicHashBlock}) {
		t.Fatalf("message after gap: %#v", ev)
	}
	// Other topics are unaffected.
	pub.Send(TopicSequence, seqBody(h4, 'C', nil))
	if ev := next(t, events); ev != (BlockConnected{Hash: h4, Topic: TopicSequence}) {
		t.Fatalf("sequence after hashblock gap: %#v", ev)
	}

	// A restart-style reset: the counter starts again at 0.
	n = pub.Seq[TopicSequence]
	pub.Seq[TopicSequence] = 0
	pub.Send(TopicSequence, seqBody(tx1, 'A', &s8))
	if ev := next(t, events); ev != (Gap{Topic: TopicSequence, Endpoint: pub.Endpoint(), Expected: n, Got: 0}) {
		t.Fatalf("reset: %#v", ev)
	}
	if ev := next(t, events); ev != (TxAdded{TxID: tx1, MempoolSeq: 8}) {
		t.Fatalf("after reset: %#v", ev)
	}

	// Malformed messages are skipped; the loop goes on. Those with a valid
	// sequence frame still count, so no gap follows them.
	before := sub.Stats().Malformed
	pub.Raw([]byte(TopicHashBlock), zmqtest.DisplayBytes(h1))          // 2 frames
	pub.Send(TopicHashBlock, zmqtest.DisplayBytes(h1)[:31])            // 31-byte hash
	pub.Send(TopicSequence, seqBody(h1, 'X', nil))                     // unknown label
	pub.Raw([]byte(TopicSequence), seqBody(h1, 'C', nil), []byte{1})   // short sequence frame
	pub.Raw([]byte(TopicRawTx), []byte{1}, le32(1), []byte("extra..")) // 4 frames
	h5 := hashN(7)
	pub.HashBlock(h5)
	if ev := next(t, events); ev != (BlockConnected{Hash: h5, Topic: TopicHashBlock}) {
		t.Fatalf("after malformed: %#v", ev)
	}
	pub.Send(TopicSequence, seqBody(h5, 'D', nil))
	if ev := next(t, events); ev != (BlockDisconnected{Hash: h5}) {
		t.Fatalf("sequence after malformed: %#v", ev)
	}
	expectNone(t, events)
	if got := sub.Stats().Malformed - before; got != 5 {
		t.Errorf("malformed count %d, want 5", got)
	}
	if st := sub.Stats(); st.Gaps != 2 || st.Messages == 0 {
		t.Errorf("stats: %+v", st)
	}

	// Cancelling the context stops Run promptly.
	err, took := stop()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
	if took > 500*time.Millisecond {
		t.Errorf("Run took %v to stop", took)
	}
}

// Each topic on its own endpoint, and a publisher that really restarts (its
// socket closed and bound again, counters from 0), as when the node restarts.
func TestZMQSeparateEndpointsAndRestart(t *testing.T) {
	blocks := zmqtest.New(t, "")
	seqs := zmqtest.New(t, "")
	events, _, stop := runSubscriber(t, ZMQConfig{HashBlock: blocks.Endpoint(), Sequence: seqs.Endpoint()})
	warmUp(t, blocks, events, TopicHashBlock)
	warmUp(t, seqs, events, TopicSequence)

	h := hashN(30)
	blocks.HashBlock(h)
	if ev := next(t, events); ev != (BlockConnected{Hash: h, Topic: TopicHashBlock}) {
		t.Fatalf("hashblock: %#v", ev)
	}

	// The node restarts: same endpoint, new socket, counters from zero.
	ep := blocks.Endpoint()
	blocks.Close()
	// The subscriber notices the connection drop and, once the publisher is
	// back, reports a Gap at once, before any new message: a restarted node
	// counts from 0 again, so the numbers alone may not show what was lost.
	blocks = zmqtest.New(t, ep)
	ev := next(t, events)
	if g, ok := ev.(Gap); !ok || !g.Reconnect || g.Topic != TopicHashBlock || g.Endpoint != ep {
		t.Fatalf("after restart: %#v, want a reconnect Gap", ev)
	}
	// Then messages flow again (publish until the subscription is back).
	deadline := time.Now().Add(10 * time.Second)
	for got := false; !got; {
		if time.Now().After(deadline) {
			t.Fatal("no message after the publisher restarted")
		}
		blocks.HashBlock(hashN(31))
		select {
		case ev := <-events:
			if ev != (BlockConnected{Hash: hashN(31), Topic: TopicHashBlock}) {
				t.Fatalf("after reconnect: %#v", ev)
			}
			got = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	// The first message after the reconnect set a new baseline: in order
	// from there, no further gap.
	for range 3 {
		blocks.HashBlock(hashN(32))
		if ev := next(t, events); ev != (BlockConnected{Hash: hashN(32), Topic: TopicHashBlock}) {
			t.Fatalf("after the new baseline: %#v", ev)
		}
	}
	// The other endpoint was not affected.
	s9 := uint64(9)
	seqs.Send(TopicSequence, seqBody(h, 'A', &s9))
	if ev := next(t, events); ev != (TxAdded{TxID: h, MempoolSeq: 9}) {
		t.Fatalf("other endpoint: %#v", ev)
	}
	if err, _ := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v", err)
	}
}

// A consumer that stops reading must not keep Run from stopping.
func TestZMQStopsWhileBlockedOnConsumer(t *testing.T) {
	pub := zmqtest.New(t, "")
	cfg := ZMQConfig{HashBlock: pub.Endpoint(), PollInterval: 20 * time.Millisecond}
	sub, err := NewSubscriber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan Event) // nobody reads
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx, events) }()
	deadline := time.Now().Add(5 * time.Second)
	for sub.Stats().Messages == 0 && time.Now().Before(deadline) {
		pub.HashBlock(hashN(1))
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run blocked on its consumer")
	}
}
