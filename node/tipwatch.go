package node

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/hashicorp/go-hclog"
)

// TipSource says how a tip was learned.
type TipSource int

const (
	SourcePoll     TipSource = iota // getbestblockhash (first tip, safety net, resync)
	SourceZMQ                       // ZMQ hashblock or sequence 'C'
	SourceLongPoll                  // getblocktemplate long-poll
)

func (s TipSource) String() string {
	switch s {
	case SourcePoll:
		return "poll"
	case SourceZMQ:
		return "zmq"
	case SourceLongPoll:
		return "longpoll"
	}
	return "unknown"
}

// Tip is a new best block.
type Tip struct {
	Hash   chainhash.Hash
	Source TipSource
	// Template is a template on this tip when the long-poll brought it
	// (Source == SourceLongPoll), so the caller can skip one getblocktemplate.
	Template *BlockTemplate
	At       time.Time // when the watcher learned it
}

// TipTracker is the decision core of TipWatcher: it holds the last tip and
// says whether an observation is news. It does no IO and is not safe for
// concurrent use.
//
// Observations pushed by the node (ZMQ) are in the node's order and apply at
// once. Answers to calls (poll, long-poll) can be overtaken: a call sent
// before a change may answer with the old tip after we learned the new one.
// So each call carries the generation (count of tip changes) at which it was
// sent; an answer that disagrees with the current tip applies only if no
// change happened since it was sent, otherwise the caller should ask again.
type TipTracker struct {
	tip           chainhash.Hash
	known         bool
	gen           uint64
	hashblockSeen bool
}

// Tip returns the current tip, if any.
func (t *TipTracker) Tip() (chainhash.Hash, bool) { return t.tip, t.known }

// Gen returns the number of tip changes so far; stamp calls with it.
func (t *TipTracker) Gen() uint64 { return t.gen }

// Pushed records a ZMQ block notification and reports whether it is a new tip.
// Once hashblock messages arrive, sequence 'C' messages are not used for
// tips: during a reorg the node sends one 'C' per connected block, on
// another socket whose order relative to hashblock is not guaranteed, while
// hashblock names only the final tip.
func (t *TipTracker) Pushed(hash chainhash.Hash, topic string) bool {
	if topic == TopicHashBlock {
		t.hashblockSeen = true
	} else if t.hashblockSeen {
		return false
	}
	return t.apply(hash)
}

// Polled records a call's answer; sentAt is Gen() when the call was sent.
// changed means a new tip; recheck means the answer was overtaken by a newer
// change and disagrees with it, so the caller should ask the node again.
func (t *TipTracker) Polled(hash chainhash.Hash, sentAt uint64) (changed, recheck bool) {
	if t.known && hash == t.tip {
		return false, false
	}
	if t.known && sentAt != t.gen {
		return false, true
	}
	return t.apply(hash), false
}

func (t *TipTracker) apply(hash chainhash.Hash) bool {
	if t.known && hash == t.tip {
		return false
	}
	t.tip, t.known = hash, true
	t.gen++
	return true
}

// TipRPC is what TipWatcher needs from a node; *Client implements it.
type TipRPC interface {
	GetBestBlockHash(ctx context.Context) (chainhash.Hash, error)
	GetBlockTemplate(ctx context.Context, longPollID string) (*BlockTemplate, error)
}

// TipWatcherConfig configures a TipWatcher.
type TipWatcherConfig struct {
	// LongPoll runs getblocktemplate long-polls: the new-block signal when
	// there is no ZMQ (btcd, or ZMQ not configured).
	LongPoll bool
	// PollInterval paces the getbestblockhash safety poll (default 10 s;
	// with ZMQ or long-poll it only catches what they missed).
	PollInterval time.Duration
	// MinLongPollInterval keeps a node that answers long-polls at once
	// without a new tip from being asked in a tight loop (default 1 s).
	MinLongPollInterval time.Duration
	// Backoff paces retries after node errors (zero value: 250 ms to 30 s).
	Backoff Backoff
	Logger  hclog.Logger
}

// TipWatcher tells its caller about new tips as fast as it learns them:
// from ZMQ events the caller forwards with Notify (the fast path: no RPC in
// between), from getblocktemplate long-polls, and from a periodic
// getbestblockhash.
type TipWatcher struct {
	rpc   TipRPC
	cfg   TipWatcherConfig
	log   hclog.Logger
	hints chan Event
	// missed is set when Notify found hints full: Run then asks the node.
	missed atomic.Bool
	// gen mirrors the tracker's generation for the calling goroutines.
	gen atomic.Uint64
}

// NewTipWatcher returns a watcher; Run starts it.
func NewTipWatcher(rpc TipRPC, cfg TipWatcherConfig) *TipWatcher {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 10 * time.Second
	}
	if cfg.MinLongPollInterval <= 0 {
		cfg.MinLongPollInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &TipWatcher{rpc: rpc, cfg: cfg, log: cfg.Logger, hints: make(chan Event, 64)}
}

// Notify hands the watcher a ZMQ event: BlockConnected is a tip candidate,
// Gap makes it ask the node. Other events are ignored. It never blocks; if
// the watcher is behind, it falls back to asking the node.
func (w *TipWatcher) Notify(ev Event) {
	switch ev.(type) {
	case BlockConnected, Gap:
	default:
		return
	}
	select {
	case w.hints <- ev:
	default:
		w.missed.Store(true)
	}
}

type tipAnswer struct {
	hash   chainhash.Hash
	sentAt uint64
	source TipSource
	tpl    *BlockTemplate
	// ack, when set, receives the generation after Run processed the
	// answer: the long-poller's next call is based on exactly that state.
	ack chan uint64
}

// Run watches until ctx is done and sends each new tip on out (blocking, so
// a slow reader delays later tips but loses none of the latest). The first
// tip is the node's tip when it first answers. Node errors are logged with
// Hint and retried with backoff; Run only returns ctx.Err(). Its goroutines
// (poller, long-poller) stop before it returns.
func (w *TipWatcher) Run(ctx context.Context, out chan<- Tip) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	answers := make(chan tipAnswer, 4)
	pollNow := make(chan struct{}, 1)
	requestPoll := func() {
		select {
		case pollNow <- struct{}{}:
		default: // one is pending already
		}
	}
	wg.Add(1)
	go func() { defer wg.Done(); w.poller(ctx, pollNow, answers) }()
	if w.cfg.LongPoll {
		wg.Add(1)
		go func() { defer wg.Done(); w.longPoller(ctx, answers) }()
	}
	requestPoll()

	var tracker TipTracker
	emit := func(t Tip) error {
		w.gen.Store(tracker.Gen())
		w.log.Debug("new tip", "hash", t.Hash, "source", t.Source)
		select {
		case out <- t:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		if w.missed.Swap(false) {
			requestPoll()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-w.hints:
			switch e := ev.(type) {
			case BlockConnected:
				if tracker.Pushed(e.Hash, e.Topic) {
					if err := emit(Tip{Hash: e.Hash, Source: SourceZMQ, At: time.Now()}); err != nil {
						return err
					}
				}
			case Gap:
				requestPoll()
			}
		case a := <-answers:
			changed, recheck := tracker.Polled(a.hash, a.sentAt)
			if recheck {
				requestPoll()
			}
			w.gen.Store(tracker.Gen())
			if a.ack != nil {
				a.ack <- tracker.Gen()
			}
			if changed {
				if err := emit(Tip{Hash: a.hash, Source: a.source, Template: a.tpl, At: time.Now()}); err != nil {
					return err
				}
			}
		}
	}
}

// poller answers poll requests and the safety tick with getbestblockhash.
func (w *TipWatcher) poller(ctx context.Context, pollNow <-chan struct{}, answers chan<- tipAnswer) {
	tick := time.NewTicker(w.cfg.PollInterval)
	defer tick.Stop()
	bo := w.cfg.Backoff
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-pollNow:
		case <-tick.C:
		}
		for {
			sentAt := w.gen.Load()
			hash, err := w.rpc.GetBestBlockHash(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				if failing {
					w.log.Info("node answers again", "after_attempts", bo.Attempt())
					failing = false
				}
				bo.Reset()
				select {
				case answers <- tipAnswer{hash: hash, sentAt: sentAt, source: SourcePoll}:
				case <-ctx.Done():
					return
				}
				break
			}
			wait := bo.Next()
			w.logNodeError("getbestblockhash", err, !failing, wait)
			failing = true
			if Sleep(ctx, wait) != nil {
				return
			}
		}
	}
}

// longPoller keeps one getblocktemplate long-poll open.
func (w *TipWatcher) longPoller(ctx context.Context, answers chan<- tipAnswer) {
	bo := w.cfg.Backoff
	failing := false
	id := ""
	var lastPrev chainhash.Hash
	ack := make(chan uint64, 1)
	sentAt := w.gen.Load()
	for {
		start := time.Now()
		tpl, err := w.rpc.GetBlockTemplate(ctx, id)
		if ctx.Err() != nil {
			return
		}
		if err != nil && id != "" && IsTimeout(err) {
			// Nothing happened within LongPollTimeout: poll again.
			w.log.Debug("long-poll expired; polling again")
			continue
		}
		if err != nil {
			wait := bo.Next()
			w.logNodeError("getblocktemplate long-poll", err, !failing, wait)
			failing = true
			if IsTransport(err) && !IsTimeout(err) {
				id = "" // the node restarted: start over with a plain call
			}
			if Sleep(ctx, wait) != nil {
				return
			}
			if id == "" {
				sentAt = w.gen.Load() // a plain call answers with the tip of now
			}
			continue
		}
		if failing {
			w.log.Info("long-poll works again", "after_attempts", bo.Attempt())
			failing = false
		}
		bo.Reset()
		select {
		case answers <- tipAnswer{hash: tpl.PreviousBlockHash, sentAt: sentAt, source: SourceLongPoll, tpl: tpl, ack: ack}:
		case <-ctx.Done():
			return
		}
		// The next long-poll waits for a change from this answer's tip;
		// stamp it with the generation that holds that tip, so its answer
		// is not mistaken for an overtaken one.
		select {
		case sentAt = <-ack:
		case <-ctx.Done():
			return
		}
		if tpl.LongPollID == "" {
			w.log.Warn("the node does not support getblocktemplate long-poll; relying on the getbestblockhash poll",
				"interval", w.cfg.PollInterval)
			return
		}
		id = tpl.LongPollID
		newTip := tpl.PreviousBlockHash != lastPrev
		lastPrev = tpl.PreviousBlockHash
		// A new tip: poll again at once (blocks can come back to back). The
		// same tip answered quickly: the node answers at once (mempool
		// change, or it ignores longpollid); do not hammer it.
		if d := time.Since(start); !newTip && d < w.cfg.MinLongPollInterval {
			if Sleep(ctx, w.cfg.MinLongPollInterval-d) != nil {
				return
			}
		}
	}
}

// logNodeError logs the first error of a streak as a warning with its hint,
// the following ones at debug level.
func (w *TipWatcher) logNodeError(what string, err error, first bool, wait time.Duration) {
	if first {
		w.log.Warn("node call failed; retrying", "call", what, "error", err, "hint", Hint(err), "retry_in", wait)
		return
	}
	w.log.Debug("node call failed; retrying", "call", what, "error", err, "retry_in", wait)
}
