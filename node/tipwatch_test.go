package node

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"

	"github.com/sv2kit/sv2kit/internal/zmqtest"

	"github.com/hashicorp/go-hclog"
)

func TestTipTracker(t *testing.T) {
	var tr TipTracker
	a, b, c, d := hashN(1), hashN(2), hashN(3), hashN(4)
	if _, ok := tr.Tip(); ok {
		t.Fatal("tip known at start")
	}
	// The first answer, whenever it was sent, is the tip.
	if changed, recheck := tr.Polled(a, 0); !changed || recheck {
		t.Fatal("first poll")
	}
	if changed, _ := tr.Polled(a, 1); changed {
		t.Fatal("same tip again")
	}
	// ZMQ pushes apply at once.
	if !tr.Pushed(b, TopicHashBlock) || tr.Gen() != 2 {
		t.Fatal("push b")
	}
	if tr.Pushed(b, TopicHashBlock) {
		t.Fatal("duplicate push")
	}
	// A poll sent before b arrived answers a: overtaken, ignored, ask again.
	if changed, recheck := tr.Polled(a, 1); changed || !recheck {
		t.Fatalf("overtaken poll: changed=%v recheck=%v", changed, recheck)
	}
	// A poll sent after b arrived that says a: the node really is at a
	// (reorg back, invalidateblock): it applies.
	if changed, _ := tr.Polled(a, tr.Gen()); !changed {
		t.Fatal("fresh poll disagreeing")
	}
	// An overtaken answer that agrees is simply not news.
	if changed, recheck := tr.Polled(a, 0); changed || recheck {
		t.Fatal("overtaken but agreeing")
	}
	// Once hashblock is seen, sequence 'C' no longer moves the tip (during
	// a reorg it names intermediate blocks).
	if tr.Pushed(c, TopicSequence) {
		t.Fatal("sequence C used while hashblock is subscribed")
	}
	var seqOnly TipTracker
	if !seqOnly.Pushed(c, TopicSequence) || !seqOnly.Pushed(d, TopicSequence) {
		t.Fatal("sequence C without hashblock")
	}
	if tip, _ := seqOnly.Tip(); tip != d {
		t.Fatal("sequence tip")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

// countingTipRPC counts a watcher's calls, so a test can wait for its
// initial calls instead of sleeping a guessed while.
type countingTipRPC struct {
	TipRPC
	polled  atomic.Int64 // getbestblockhash calls answered
	started atomic.Int64 // getblocktemplate calls made
}

func (r *countingTipRPC) GetBestBlockHash(ctx context.Context) (chainhash.Hash, error) {
	defer r.polled.Add(1)
	return r.TipRPC.GetBestBlockHash(ctx)
}

func (r *countingTipRPC) GetBlockTemplate(ctx context.Context, longPollID string) (*BlockTemplate, error) {
	r.started.Add(1)
	return r.TipRPC.GetBlockTemplate(ctx, longPollID)
}

// waitInitial waits until the first getbestblockhash was answered and the
// long-poll after the first template is under way: from then on a new tip
// can only come from the long-poll (the safety poll being hourly).
func (r *countingTipRPC) waitInitial(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for r.polled.Load() < 1 || r.started.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("initial calls not done after 15 s: %d polls answered, %d templates asked", r.polled.Load(), r.started.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startWatcher(t *testing.T, rpc TipRPC, cfg TipWatcherConfig) (*TipWatcher, chan Tip) {
	t.Helper()
	w := NewTipWatcher(rpc, cfg)
	tips := make(chan Tip, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, tips) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != context.Canceled {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("TipWatcher.Run did not stop")
		}
	})
	return w, tips
}

// The node is in initial block download at first: the watcher logs the
// hint once, retries with backoff, and reports the tip when the node is
// ready. Then ZMQ (through a real libzmq publisher and Subscriber) is the
// fast path, and a Gap makes it ask the node.
func TestTipWatcherZMQAndRecovery(t *testing.T) {
	s := newCoreServer(t)
	s.setFail(CodeInitialDownload, "Bitcoin Core is in initial block download…")
	c := mustClient(t, Config{URL: s.url(), User: "alice", Password: "secret"})
	logs := &syncBuffer{}
	w, tips := startWatcher(t, c, TipWatcherConfig{
		PollInterval: time.Hour,
		Backoff:      Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		Logger:       hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: logs}),
	})
	deadline := time.Now().Add(5 * time.Second)
	for s.methodCalls("getbestblockhash") < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case tip := <-tips:
		t.Fatalf("tip during IBD: %+v", tip)
	default:
	}
	s.setFail(0, "")
	t0 := nextTip(t, tips)
	s.mu.Lock()
	want := s.tip
	s.mu.Unlock()
	if t0.Hash != want || t0.Source != SourcePoll {
		t.Fatalf("first tip %+v", t0)
	}
	out := logs.String()
	if strings.Count(out, "initial block download; templates are available") != 1 || !strings.Contains(out, "node answers again") {
		t.Errorf("logs:\n%s", out)
	}

	// ZMQ: publisher → Subscriber → Notify → Tip, without any RPC.
	pub := zmqtest.New(t, "")
	events, _, _ := runSubscriber(t, ZMQConfig{HashBlock: pub.Endpoint(), Sequence: pub.Endpoint()})
	warmUp(t, pub, events, TopicHashBlock, TopicSequence)
	fwdCtx, stopFwd := context.WithCancel(context.Background())
	fwdDone := make(chan struct{})
	go func() {
		defer close(fwdDone)
		for {
			select {
			case ev := <-events:
				w.Notify(ev)
			case <-fwdCtx.Done():
				return
			}
		}
	}()
	defer func() { stopFwd(); <-fwdDone }()

	polls := s.methodCalls("getbestblockhash")
	h1 := hashN(11)
	s.setTip(h1)
	start := time.Now()
	pub.HashBlock(h1)
	if tip := nextTip(t, tips); tip.Hash != h1 || tip.Source != SourceZMQ {
		t.Fatalf("zmq tip %+v", tip)
	}
	t.Logf("hashblock published → Tip delivered in %v", time.Since(start))
	// sequence 'C' for the same block, and mempool events: nothing new.
	pub.Send(TopicSequence, seqBody(h1, 'C', nil))
	ms := uint64(3)
	pub.Send(TopicSequence, seqBody(hashN(50), 'A', &ms))
	select {
	case tip := <-tips:
		t.Fatalf("unexpected tip %+v", tip)
	case <-time.After(100 * time.Millisecond):
	}
	if n := s.methodCalls("getbestblockhash"); n != polls {
		t.Errorf("the ZMQ path called getbestblockhash %d times", n-polls)
	}

	// Messages lost: the block h2 was announced while we missed it. The Gap
	// makes the watcher ask the node, which knows h2.
	h2 := hashN(12)
	s.setTip(h2)
	pub.Seq[TopicHashBlock]++ // the lost announcement
	pub.HashBlock(h2)         // arrives as Gap, then BlockConnected h2
	tip := nextTip(t, tips)
	if tip.Hash != h2 {
		t.Fatalf("after gap: %+v", tip)
	}
	select {
	case extra := <-tips:
		if extra.Hash != h2 {
			t.Fatalf("extra tip %+v", extra)
		}
		t.Fatalf("tip h2 reported twice: %+v", extra)
	case <-time.After(200 * time.Millisecond):
	}
	if s.methodCalls("getbestblockhash") == polls {
		t.Error("the Gap did not make the watcher ask the node")
	}

	// A block we never hear about over ZMQ: only a poll finds it. Notify
	// drops nothing silently: a Gap alone is enough.
	h3 := hashN(13)
	s.setTip(h3)
	w.Notify(Gap{Topic: TopicHashBlock})
	if tip := nextTip(t, tips); tip.Hash != h3 || tip.Source != SourcePoll {
		t.Fatalf("resync tip %+v", tip)
	}
}

// Without ZMQ: the long-poll delivers the tip with its template, and the
// watcher survives the node disappearing and coming back.
func TestTipWatcherLongPollCore(t *testing.T) {
	s := newCoreServer(t)
	c := mustClient(t, Config{URL: s.url(), User: "alice", Password: "secret", Timeout: 2 * time.Second})
	rpc := &countingTipRPC{TipRPC: c}
	_, tips := startWatcher(t, rpc, TipWatcherConfig{LongPoll: true, PollInterval: time.Hour,
		Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
	first := nextTip(t, tips)
	rpc.waitInitial(t) // the next tip can only come from the long-poll
	h := hashN(21)
	s.setTip(h)
	tip := nextTip(t, tips)
	if tip.Hash != h || tip.Source != SourceLongPoll || tip.Template == nil || tip.Template.PreviousBlockHash != h {
		t.Fatalf("long-poll tip %+v (first %+v)", tip, first)
	}

	// The node answers HTTP 503 for a while: retried, then the next block arrives.
	s.setHTTP(503, "Work queue depth exceeded")
	time.Sleep(100 * time.Millisecond)
	h2 := hashN(22)
	s.setTip(h2) // wakes the long-poll that was waiting, if any
	s.setHTTP(0, "")
	if tip := nextTip(t, tips); tip.Hash != h2 {
		t.Fatalf("after 503: %+v", tip)
	}
}
