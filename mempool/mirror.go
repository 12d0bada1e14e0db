package mempool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/node"
)

// RPC is what the mirror asks of the node; *node.Client implements it.
type RPC interface {
	GetRawMempool(ctx context.Context) ([]chainhash.Hash, error)
	GetRawMempoolVerbose(ctx context.Context) (map[chainhash.Hash]node.MempoolEntry, error)
	GetRawTransactions(ctx context.Context, txids []chainhash.Hash) ([][]byte, error)
	GetBlock(ctx context.Context, hash chainhash.Hash) (*wire.MsgBlock, error)
	GetBestBlockHash(ctx context.Context) (chainhash.Hash, error)
}

var _ RPC = (*node.Client)(nil)

// Modes Stats reports.
const (
	ModePoll = "poll"
	ModeZMQ  = "zmq"
)

// Stats are the mirror's counters, ready to export as metrics.
type Stats struct {
	StoreStats

	Mode     string    // ModeZMQ or ModePoll
	InSync   bool      // the last exchange with the node succeeded (false while it is down or refuses)
	LastSync time.Time // when the mirror last agreed with a listing of the node (zero before)

	Resyncs     uint64 // full listings diffed: the first fill, after a gap, after the node came back, safety checks
	Polls       uint64 // listings diffed in poll mode
	Gaps        uint64 // ZMQ sequence gaps (lost messages, publisher reconnected)
	Blocks      uint64 // connected blocks whose transactions were removed
	Fetched     uint64 // transactions fetched with getrawtransaction
	FromRawTx   uint64 // transactions taken from ZMQ rawtx messages
	NotFound    uint64 // transactions that left the node's mempool before they could be fetched
	FetchErrors uint64 // node calls that failed (each retried)
	Malformed   uint64 // transactions from the node the parser refused (a bug somewhere: logged)
	ZMQEvents   uint64 // ZMQ events handled
}

// Mirror keeps a Store equal to a node's mempool. Make one with New and
// call Run once; the store and Stats are safe to use while it runs.
type Mirror struct {
	cfg   Config
	rpc   RPC
	store *Store
	log   hclog.Logger

	started  atomic.Bool
	synced   chan struct{}
	syncOnce sync.Once
	healthy  atomic.Bool
	lastSync atomic.Int64 // unix nanoseconds

	resyncs, polls, gaps, blocks, fetched, fromRawTx, notFound, fetchErrors, malformed, zmqEvents atomic.Uint64
}

// New validates cfg and returns a mirror with an empty store. It does not
// contact the node; Run does.
func New(cfg Config, rpc RPC) (*Mirror, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rpc == nil {
		return nil, errors.New("mempool: no node client")
	}
	cfg = cfg.withDefaults()
	return &Mirror{
		cfg:    cfg,
		rpc:    rpc,
		store:  NewStore(cfg.MaxBytes),
		log:    cfg.Logger,
		synced: make(chan struct{}),
	}, nil
}

// Store is the mirror's store: look transactions up there.
func (m *Mirror) Store() *Store { return m.store }

// LookupWTxIDs is Store.LookupWTxIDs: it finds a declared job's transactions
// and counts hits and misses.
func (m *Mirror) LookupWTxIDs(wtxids [][32]byte) (found [][]byte, missing []int) {
	return m.store.LookupWTxIDs(wtxids)
}

// Synced is closed once the mirror has been filled from the node the first
// time.
func (m *Mirror) Synced() <-chan struct{} { return m.synced }

// Mode says how the mirror follows the node.
func (m *Mirror) Mode() string {
	if m.cfg.ZMQSequence != "" {
		return ModeZMQ
	}
	return ModePoll
}

// Stats returns the counters.
func (m *Mirror) Stats() Stats {
	st := Stats{
		StoreStats: m.store.Stats(),
		Mode:       m.Mode(),
		InSync:     m.healthy.Load(),
		Resyncs:    m.resyncs.Load(), Polls: m.polls.Load(), Gaps: m.gaps.Load(), Blocks: m.blocks.Load(),
		Fetched: m.fetched.Load(), FromRawTx: m.fromRawTx.Load(), NotFound: m.notFound.Load(),
		FetchErrors: m.fetchErrors.Load(), Malformed: m.malformed.Load(), ZMQEvents: m.zmqEvents.Load(),
	}
	if ns := m.lastSync.Load(); ns != 0 {
		st.LastSync = time.Unix(0, ns)
	}
	return st
}

// Run fills the mirror from the node and keeps it current until ctx is
// done, then returns ctx's error. It never gives up on the node: while the
// node is down or refuses, it retries with backoff and resyncs once it is
// back. It returns early only when ZMQ cannot be set up. Every goroutine it
// starts has ended when it returns.
func (m *Mirror) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("mempool: Run called twice")
	}
	m.log.Info("mempool mirror starting", "mode", m.Mode(), "max_bytes", m.cfg.MaxBytes)
	if m.Mode() == ModeZMQ {
		return m.runZMQ(ctx)
	}
	return m.runPoll(ctx)
}

func (m *Mirror) backoff() *node.Backoff {
	return &node.Backoff{Max: m.cfg.RetryMax}
}

func (m *Mirror) markSynced() {
	m.lastSync.Store(time.Now().UnixNano())
	m.syncOnce.Do(func() { close(m.synced) })
}

// nodeFailed logs a failed exchange with the node: the first of a run of
// failures as a warning with the operator hint, then every tenth.
func (m *Mirror) nodeFailed(what string, err error, attempt int, wait time.Duration) {
	m.fetchErrors.Add(1)
	m.healthy.Store(false)
	args := []any{"error", err, "attempt", attempt, "retry_in", wait.Round(time.Millisecond)}
	if h := node.Hint(err); h != "" {
		args = append(args, "hint", h)
	}
	if attempt == 1 || attempt%10 == 0 {
		m.log.Warn("mempool mirror: "+what+" failed; the mirror may lag until the node answers", args...)
	} else {
		m.log.Debug("mempool mirror: "+what+" failed", args...)
	}
}

// ---- polling ----

func (m *Mirror) runPoll(ctx context.Context) error {
	var tip chainhash.Hash
	full := true
	failures := 0
	b := m.backoff()
	for {
		reason := "poll"
		if full {
			reason = "initial fill"
			if failures > 0 {
				reason = "node back"
			}
		}
		err := m.pollOnce(ctx, &tip, full, reason)
		wait := m.cfg.PollInterval
		switch {
		case err == nil:
			if failures > 0 {
				m.log.Info("mempool mirror: node answers again; resynced", "failed_attempts", failures)
			}
			full, failures = false, 0
			b.Reset()
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			failures++
			full = true
			wait = b.Next()
			m.nodeFailed("poll", err, failures, wait)
		}
		if node.Sleep(ctx, wait) != nil {
			return ctx.Err()
		}
	}
}

// pollOnce removes the new tip's transactions when the tip moved, then
// diffs the node's mempool listing against the store. full lists with fees
// and counts as a resync.
//
// A listing taken while a block connects already lacks the block's
// transactions: reconciled, they would be counted as removed one by one and
// the block, handled on the next poll, would confirm none. So the tip is
// read again after the listing, and a listing that straddles a new block is
// taken again once that block is handled (a few times at most; then the
// last listing is used, as before).
func (m *Mirror) pollOnce(ctx context.Context, tip *chainhash.Hash, full bool, reason string) error {
	best, err := m.rpc.GetBestBlockHash(ctx)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		if best != *tip {
			if *tip != (chainhash.Hash{}) {
				blk, err := m.rpc.GetBlock(ctx, best)
				if err != nil {
					return fmt.Errorf("getblock %s: %w", best, err)
				}
				m.removeBlock(blk)
			}
			*tip = best
		}
		l, err := m.list(ctx, full)
		if err != nil {
			return err
		}
		if best, err = m.rpc.GetBestBlockHash(ctx); err != nil {
			return err
		}
		if best == *tip || attempt == 3 {
			if err := m.apply(ctx, l, full, reason); err != nil {
				return err
			}
			break
		}
	}
	if !full {
		m.polls.Add(1)
	}
	return nil
}

func (m *Mirror) removeBlock(blk *wire.MsgBlock) {
	confirmed, conflicts := m.store.RemoveConfirmed(blk)
	m.blocks.Add(1)
	m.log.Debug("mempool mirror: block", "hash", blk.BlockHash(), "txs", len(blk.Transactions),
		"confirmed_removed", confirmed, "conflicts_removed", conflicts)
}

// listing is one full listing of the node's mempool; fees is nil when the
// listing was taken without them.
type listing struct {
	start time.Time
	ids   []chainhash.Hash
	fees  map[chainhash.Hash]int64
}

// sync diffs a full listing of the node's mempool against the store: it
// drops what the node no longer has and fetches what the store lacks. With
// full (a resync) or when the store is nearly full, the listing carries
// fees, so evictions drop the lowest fee rates.
func (m *Mirror) sync(ctx context.Context, full bool, reason string) error {
	l, err := m.list(ctx, full)
	if err != nil {
		return err
	}
	return m.apply(ctx, l, full, reason)
}

func (m *Mirror) list(ctx context.Context, full bool) (listing, error) {
	l := listing{start: time.Now()}
	if full || m.store.Bytes() > m.cfg.MaxBytes/10*9 {
		v, err := m.rpc.GetRawMempoolVerbose(ctx)
		if err != nil {
			return l, err
		}
		l.ids = make([]chainhash.Hash, 0, len(v))
		l.fees = make(map[chainhash.Hash]int64, len(v))
		for id, e := range v {
			l.ids = append(l.ids, id)
			l.fees[id] = e.Fee
		}
		return l, nil
	}
	var err error
	l.ids, err = m.rpc.GetRawMempool(ctx)
	return l, err
}

// apply makes the store agree with the listing l.
func (m *Mirror) apply(ctx context.Context, l listing, full bool, reason string) error {
	start, ids, fees := l.start, l.ids, l.fees
	missing, removed := m.store.Reconcile(ids)
	added, err := m.fetchAdd(ctx, missing, fees)
	if err != nil {
		return err
	}
	if fees != nil {
		m.store.SetFees(fees)
	}
	m.healthy.Store(true)
	m.markSynced()
	if full {
		m.resyncs.Add(1)
		m.log.Info("mempool mirror: resynced", "reason", reason, "node_txs", len(ids), "added", added,
			"removed", removed, "held", m.store.Len(), "took", time.Since(start).Round(time.Millisecond))
	} else if added+removed > 0 {
		m.log.Trace("mempool mirror: poll", "added", added, "removed", removed, "held", m.store.Len())
	}
	return nil
}

// fetchAdd fetches ids in batches, FetchConcurrency at a time, and adds
// them (with their fees when known). It waits for every batch.
func (m *Mirror) fetchAdd(ctx context.Context, ids []chainhash.Hash, fees map[chainhash.Hash]int64) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		added    atomic.Int64
	)
	sem := make(chan struct{}, m.cfg.FetchConcurrency)
	for start := 0; start < len(ids); start += m.cfg.FetchBatch {
		batch := ids[start:min(start+m.cfg.FetchBatch, len(ids))]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			raws, err := m.rpc.GetRawTransactions(ctx, batch)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
				return
			}
			for k, raw := range raws {
				fee := FeeUnknown
				if f, ok := fees[batch[k]]; ok {
					fee = f
				}
				if m.addFetched(raw, fee, batch[k]) {
					added.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return int(added.Load()), firstErr
	}
	return int(added.Load()), ctx.Err()
}

// addFetched adds a transaction fetched from the node (nil: the node no
// longer has it) and reports whether the store took it.
func (m *Mirror) addFetched(raw []byte, fee int64, txid chainhash.Hash) bool {
	if raw == nil {
		m.notFound.Add(1)
		return false
	}
	m.fetched.Add(1)
	return m.add(raw, fee, txid)
}

func (m *Mirror) add(raw []byte, fee int64, txid chainhash.Hash) bool {
	e, err := m.store.AddWithFee(raw, fee)
	switch {
	case err == nil:
		if e.TxID != txid && txid != (chainhash.Hash{}) {
			m.log.Warn("mempool mirror: the node answered a different transaction", "asked", txid, "got", e.TxID)
		}
		return true
	case errors.Is(err, ErrExists):
		return false
	case errors.Is(err, ErrMalformed):
		n := m.malformed.Add(1)
		if n <= 10 || n%1000 == 0 {
			m.log.Warn("mempool mirror: transaction from the node does not parse, skipped", "txid", txid, "error", err, "malformed_total", n)
		}
		return false
	default: // ErrFull, ErrTooLarge: counted by the store
		m.log.Debug("mempool mirror: transaction not admitted", "txid", txid, "error", err)
		return false
	}
}

// resyncRetry runs a full sync until it succeeds or ctx is done.
func (m *Mirror) resyncRetry(ctx context.Context, reason string) error {
	b := m.backoff()
	for attempt := 1; ; attempt++ {
		err := m.sync(ctx, true, reason)
		if err == nil {
			if attempt > 1 {
				m.log.Info("mempool mirror: node answers again", "failed_attempts", attempt-1)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := b.Next()
		m.nodeFailed("resync ("+reason+")", err, attempt, wait)
		if node.Sleep(ctx, wait) != nil {
			return ctx.Err()
		}
	}
}
