package mempool

import (
	"context"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"

	"github.com/sv2kit/sv2kit/node"
)

// maxPending bounds the announced transactions waiting to be fetched; past
// it the mirror drops them and resyncs instead.
const maxPending = 200_000

// pending is an announced transaction not yet in the store.
type pending struct {
	batch uint64 // the fetch it is in flight in; 0 while queued
}

type fetchResult struct {
	batch uint64
	gen   uint64 // blocks handled when the fetch started
	ids   []chainhash.Hash
	raws  [][]byte
	err   error
}

// zmqLoop is the state of the ZMQ path. Only runZMQ's goroutine touches it;
// fetch workers only call the node and hand back a fetchResult.
type zmqLoop struct {
	m       *Mirror
	ctx     context.Context
	pending map[chainhash.Hash]*pending
	queue   []chainhash.Hash // announced, to fetch (may hold ids no longer pending)
	cache   *rawCache
	results chan fetchResult

	inflight  int
	nextBatch uint64
	gen       uint64 // blocks handled
	flush     *time.Timer
	armed     bool
	fetchB    *node.Backoff
	failures  int
}

func (m *Mirror) runZMQ(ctx context.Context) error {
	sub, err := node.NewSubscriber(node.ZMQConfig{Sequence: m.cfg.ZMQSequence, RawTx: m.cfg.ZMQRawTx, Logger: m.log})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	events := make(chan node.Event, 4096)
	subDone := make(chan error, 1)
	go func() { subDone <- sub.Run(ctx, events) }()

	l := &zmqLoop{
		m: m, ctx: ctx,
		pending: make(map[chainhash.Hash]*pending),
		cache:   newRawCache(32<<20, 20_000, 30*time.Second),
		results: make(chan fetchResult, m.cfg.FetchConcurrency), // workers never block on it
		flush:   time.NewTimer(time.Hour),
		fetchB:  &node.Backoff{Initial: m.cfg.FetchDelay, Max: m.cfg.RetryMax},
	}
	l.flush.Stop()
	defer func() {
		cancel()
		// Every fetch worker sends exactly one result (the channel has
		// room for all of them) and the subscriber ends on cancel.
		for range l.inflight {
			<-l.results
		}
		if subDone != nil {
			<-subDone
		}
		l.flush.Stop()
	}()
	if err := m.resyncRetry(ctx, "initial fill"); err != nil {
		return err
	}
	resync := time.NewTicker(m.cfg.ResyncInterval)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-subDone:
			subDone = nil
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("mempool mirror: zmq: %w", err)
		case ev := <-events:
			if err := l.handle(ev); err != nil {
				return err
			}
		case r := <-l.results:
			l.inflight--
			l.apply(r)
		case <-l.flush.C:
			l.armed = false
			l.startFetches()
		case <-resync.C:
			if err := l.resync("periodic check"); err != nil {
				return err
			}
		}
	}
}

func (l *zmqLoop) handle(ev node.Event) error {
	m := l.m
	m.zmqEvents.Add(1)
	switch e := ev.(type) {
	case node.TxAdded:
		if _, ok := l.pending[e.TxID]; ok || m.store.Has(e.TxID) {
			return nil
		}
		if raw, ok := l.cache.take(e.TxID); ok {
			if m.add(raw, FeeUnknown, e.TxID) {
				m.fromRawTx.Add(1)
			}
			return nil
		}
		if len(l.pending) >= maxPending {
			m.log.Warn("mempool mirror: too many announced transactions waiting to be fetched; resyncing", "waiting", len(l.pending))
			return l.resync("fetch backlog")
		}
		l.pending[e.TxID] = &pending{}
		l.queue = append(l.queue, e.TxID)
		if len(l.queue) >= m.cfg.FetchBatch {
			l.startFetches()
		} else {
			l.arm(m.cfg.FetchDelay)
		}
	case node.RawTx:
		ti, err := parseTx(e.Tx)
		if err != nil {
			m.malformed.Add(1)
			m.log.Debug("mempool mirror: rawtx message does not parse", "error", err)
			return nil
		}
		if _, ok := l.pending[ti.txid]; ok {
			delete(l.pending, ti.txid) // a fetch in flight for it is ignored
			if m.add(e.Tx, FeeUnknown, ti.txid) {
				m.fromRawTx.Add(1)
			}
			return nil
		}
		if !m.store.Has(ti.txid) {
			l.cache.put(ti.txid, e.Tx) // its announcement may come next (or it was mined)
		}
	case node.TxRemoved:
		m.store.Remove(e.TxID)
		delete(l.pending, e.TxID)
		l.cache.drop(e.TxID)
	case node.BlockConnected:
		if e.Topic != node.TopicSequence {
			return nil
		}
		blk, err := m.rpc.GetBlock(l.ctx, e.Hash)
		if err != nil {
			if l.ctx.Err() != nil {
				return l.ctx.Err()
			}
			m.nodeFailed("getblock "+e.Hash.String(), err, 1, 0)
			return l.resync("block not fetched")
		}
		l.gen++
		m.removeBlock(blk)
		for _, tx := range blk.Transactions {
			id := tx.TxHash()
			delete(l.pending, id)
			l.cache.drop(id)
		}
	case node.BlockDisconnected:
		// The node announces the transactions that return to its mempool.
	case node.Gap:
		if e.Topic != node.TopicSequence {
			// A lost rawtx only means a fetch: announcements still come.
			m.log.Debug("mempool mirror: rawtx messages lost", "endpoint", e.Endpoint)
			return nil
		}
		m.gaps.Add(1)
		if e.Reconnect {
			m.log.Warn("mempool mirror: zmq publisher reconnected (node restarted?); resyncing", "endpoint", e.Endpoint)
		} else {
			m.log.Warn("mempool mirror: zmq sequence gap, messages lost; resyncing", "endpoint", e.Endpoint,
				"expected", e.Expected, "got", e.Got)
		}
		return l.resync("zmq gap")
	}
	return nil
}

func (l *zmqLoop) arm(d time.Duration) {
	if !l.armed {
		l.flush.Reset(d)
		l.armed = true
	}
}

// startFetches starts as many batches from the queue as the concurrency
// bound allows.
func (l *zmqLoop) startFetches() {
	m := l.m
	for l.inflight < m.cfg.FetchConcurrency && len(l.queue) > 0 {
		l.nextBatch++
		batch := l.nextBatch
		ids := make([]chainhash.Hash, 0, min(len(l.queue), m.cfg.FetchBatch))
		k := 0
		for ; k < len(l.queue) && len(ids) < m.cfg.FetchBatch; k++ {
			id := l.queue[k]
			if p, ok := l.pending[id]; ok && p.batch == 0 {
				p.batch = batch
				ids = append(ids, id)
			}
		}
		l.queue = append(l.queue[:0], l.queue[k:]...)
		if len(ids) == 0 {
			continue
		}
		l.inflight++
		gen := l.gen
		go func() {
			raws, err := m.rpc.GetRawTransactions(l.ctx, ids)
			l.results <- fetchResult{batch: batch, gen: gen, ids: ids, raws: raws, err: err}
		}()
	}
	if len(l.queue) > 0 && l.inflight == 0 {
		l.arm(m.cfg.FetchDelay)
	}
}

func (l *zmqLoop) apply(r fetchResult) {
	m := l.m
	if r.err != nil {
		if l.ctx.Err() != nil {
			return
		}
		l.failures++
		wait := l.fetchB.Next()
		m.nodeFailed("getrawtransaction", r.err, l.failures, wait)
		for _, id := range r.ids {
			if p, ok := l.pending[id]; ok && p.batch == r.batch {
				p.batch = 0
				l.queue = append(l.queue, id)
			}
		}
		l.arm(wait)
		return
	}
	if l.failures > 0 {
		m.log.Info("mempool mirror: node answers again", "failed_fetches", l.failures)
		m.healthy.Store(true)
	}
	l.failures = 0
	l.fetchB.Reset()
	for k, id := range r.ids {
		p, ok := l.pending[id]
		if !ok || p.batch != r.batch {
			continue // removed, taken from rawtx, or a resync started over
		}
		if r.gen != l.gen {
			// A block came while the answer was on its way: it may have
			// confirmed or conflicted the transaction. Ask again.
			p.batch = 0
			l.queue = append(l.queue, id)
			continue
		}
		delete(l.pending, id)
		m.addFetched(r.raws[k], FeeUnknown, id)
	}
	if len(l.queue) > 0 {
		l.startFetches()
	}
}

// resync drops what is waiting and diffs a full listing, retrying until the
// node answers. Events that arrive meanwhile wait in the channel and are
// applied afterwards; each is idempotent against the new state.
func (l *zmqLoop) resync(reason string) error {
	clear(l.pending)
	l.queue = l.queue[:0]
	return l.m.resyncRetry(l.ctx, reason)
}

// rawCache keeps recent rawtx bodies by txid for a short while, so an
// announcement that arrives after its rawtx message finds it. Bounded by
// bytes, count and age.
type rawCache struct {
	maxBytes, maxCount int
	maxAge             time.Duration

	m     map[chainhash.Hash]cachedRaw
	fifo  []cacheRef
	head  int
	bytes int
	seq   uint64
}

type cachedRaw struct {
	raw []byte
	seq uint64
}

type cacheRef struct {
	id  chainhash.Hash
	seq uint64
	at  time.Time
}

func newRawCache(maxBytes, maxCount int, maxAge time.Duration) *rawCache {
	return &rawCache{maxBytes: maxBytes, maxCount: maxCount, maxAge: maxAge, m: make(map[chainhash.Hash]cachedRaw)}
}

func (c *rawCache) put(id chainhash.Hash, raw []byte) {
	now := time.Now()
	if _, ok := c.m[id]; ok || len(raw) > c.maxBytes {
		return
	}
	c.seq++
	c.m[id] = cachedRaw{raw: raw, seq: c.seq}
	c.fifo = append(c.fifo, cacheRef{id: id, seq: c.seq, at: now})
	c.bytes += len(raw)
	for c.head < len(c.fifo) {
		f := c.fifo[c.head]
		e, live := c.m[f.id]
		live = live && e.seq == f.seq
		if live && c.bytes <= c.maxBytes && len(c.m) <= c.maxCount && now.Sub(f.at) < c.maxAge {
			break
		}
		if live {
			delete(c.m, f.id)
			c.bytes -= len(e.raw)
		}
		c.fifo[c.head] = cacheRef{}
		c.head++
	}
	if c.head > len(c.fifo)/2 && c.head > 1024 {
		c.fifo = append(c.fifo[:0], c.fifo[c.head:]...)
		c.head = 0
	}
}

func (c *rawCache) take(id chainhash.Hash) ([]byte, bool) {
	e, ok := c.m[id]
	if !ok {
		return nil, false
	}
	c.drop(id)
	return e.raw, true
}

func (c *rawCache) drop(id chainhash.Hash) {
	if e, ok := c.m[id]; ok {
		delete(c.m, id)
		c.bytes -= len(e.raw)
	}
}
