package tpserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"

	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/provider"
	"github.com/sv2kit/sv2kit/templates"
)

// ConvertTemplate turns a getblocktemplate result into the core's Source.
func ConvertTemplate(t *node.BlockTemplate) (*templates.Source, error) {
	if t == nil {
		return nil, errors.New("no template")
	}
	if t.Height < 1 || t.Height > 1<<31 {
		return nil, fmt.Errorf("template height %d out of range", t.Height)
	}
	src := &templates.Source{
		Height:            t.Height,
		PrevHash:          t.PreviousBlockHash,
		Version:           uint32(t.Version),
		Bits:              t.Bits,
		Target:            t.TargetLE(),
		CurTime:           clampTime(t.CurTime),
		MinTime:           clampTime(t.MinTime),
		CoinbaseValue:     t.CoinbaseValue,
		WitnessCommitment: t.DefaultWitnessCommitment,
		Txs:               make([]templates.Tx, len(t.Transactions)),
	}
	for i := range t.Transactions {
		tx := &t.Transactions[i]
		var deps []int
		if len(tx.Depends) > 0 {
			deps = make([]int, len(tx.Depends))
			for j, d := range tx.Depends {
				// BIP22: 1-based indices of earlier transactions.
				if d < 1 || d > i {
					return nil, fmt.Errorf("transaction %d depends on %d, not an earlier template transaction", i+1, d)
				}
				deps[j] = d - 1
			}
		}
		src.Txs[i] = templates.Tx{
			Data:    tx.Data,
			TxID:    tx.TxID,
			WTxID:   tx.WTxID,
			Fee:     tx.Fee,
			SigOps:  tx.SigOps,
			Weight:  tx.Weight,
			Depends: deps,
		}
	}
	return src, nil
}

func clampTime(t int64) uint32 {
	if t < 0 {
		return 0
	}
	if t > int64(^uint32(0)) {
		return ^uint32(0)
	}
	return uint32(t)
}

// headerCache keeps (parent, time) of recent blocks so a template's chain
// info costs one getblockheader per new block, not eleven.
type headerCache struct {
	mu    sync.Mutex
	max   int
	m     map[chainhash.Hash]headerInfo
	order []chainhash.Hash
}

type headerInfo struct {
	prev chainhash.Hash
	time uint32
}

func newHeaderCache(max int) *headerCache {
	return &headerCache{max: max, m: make(map[chainhash.Hash]headerInfo, max)}
}

func (h *headerCache) get(hash chainhash.Hash) (headerInfo, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i, ok := h.m[hash]
	return i, ok
}

func (h *headerCache) put(hash chainhash.Hash, i headerInfo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.m[hash]; ok {
		return
	}
	if len(h.order) >= h.max {
		delete(h.m, h.order[0])
		h.order = append(h.order[:0], h.order[1:]...)
	}
	h.m[hash] = i
	h.order = append(h.order, hash)
}

// header returns a block's parent and time, from the cache or the node.
func (s *Server) header(ctx context.Context, hash chainhash.Hash) (headerInfo, error) {
	if i, ok := s.headers.get(hash); ok {
		return i, nil
	}
	h, err := s.cfg.Node.GetBlockHeader(ctx, hash)
	if err != nil {
		return headerInfo{}, err
	}
	i := headerInfo{prev: h.PrevBlock, time: clampTime(h.Timestamp.Unix())}
	s.headers.put(hash, i)
	return i, nil
}

// chainInfo describes the tip a template builds on: its time and the times
// of its ancestors (for the median time past of the block after next).
// Missing headers only cost the next fast path, so errors give a shorter
// list, not a failure.
func (s *Server) chainInfo(ctx context.Context, t *node.BlockTemplate) provider.ChainInfo {
	ci := provider.ChainInfo{TipHash: t.PreviousBlockHash, TipHeight: t.Height - 1}
	hash := t.PreviousBlockHash
	for h := t.Height - 1; h >= 0 && len(ci.RecentTimes) < 11; h-- {
		i, err := s.header(ctx, hash)
		if err != nil {
			s.log.Debug("header for chain info unavailable", "hash", hash, "error", err)
			break
		}
		ci.RecentTimes = append(ci.RecentTimes, i.time)
		hash = i.prev
	}
	if len(ci.RecentTimes) > 0 {
		ci.TipTime = ci.RecentTimes[0]
	}
	return ci
}

// fetchLoop answers the core's template requests: one getblocktemplate in
// flight, requests arriving meanwhile coalesced into one more. Node errors
// are logged with what to do and retried with backoff, forever.
func (s *Server) fetchLoop(ctx context.Context) {
	bo := s.cfg.NodeBackoff
	failing := false
	var lastErrClass string
	var lastErrLog time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.fetchReq:
		}
		for {
			err := s.fetchOnce(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				if failing {
					s.log.Info("node answers getblocktemplate again; templates resume", "after_attempts", bo.Attempt())
					failing = false
					lastErrClass = ""
				}
				bo.Reset()
				s.m.nodeUp.Set(1)
				break
			}
			class := errorClass(err)
			s.m.nodeErrors.WithLabelValues(class).Inc()
			s.m.nodeUp.Set(0)
			if node.IsTransport(err) || node.IsCookie(err) || node.IsWrongNetwork(err) {
				s.networkOK.Store(false) // it may come back as another node
			}
			wait := bo.Next()
			if class != lastErrClass || time.Since(lastErrLog) > 5*time.Minute {
				lvl := s.log.Warn
				if !node.Temporary(err) {
					lvl = s.log.Error
				}
				lvl("node cannot give a template; clients stay connected on their current template",
					"error", err, "class", class, "hint", node.Hint(err), "retry_in", wait.Round(time.Millisecond))
				lastErrClass, lastErrLog = class, time.Now()
			} else {
				s.log.Debug("getblocktemplate failed again", "error", err, "retry_in", wait)
			}
			failing = true
			if node.Sleep(ctx, wait) != nil {
				return
			}
			// A request that arrived meanwhile is served by this retry.
			select {
			case <-s.fetchReq:
			default:
			}
		}
	}
}

func (s *Server) fetchOnce(ctx context.Context) error {
	if !s.networkOK.Load() {
		info, err := s.cfg.Node.CheckNetwork(ctx)
		if err != nil {
			return err
		}
		s.networkOK.Store(true)
		s.log.Info("node reached", "url", s.cfg.Node.URL(), "chain", info.Chain, "height", info.Blocks,
			"initial_block_download", info.InitialBlockDownload)
	}
	start := time.Now()
	tpl, err := s.cfg.Node.GetBlockTemplate(ctx, "")
	s.m.gbtDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return err
	}
	src, err := ConvertTemplate(tpl)
	if err != nil {
		return fmt.Errorf("node template unusable: %w", err)
	}
	chain := s.chainInfo(ctx, tpl)
	select {
	case s.templates <- templateEvent{src: src, chain: chain}:
	case <-ctx.Done():
	}
	return nil
}

// errorClass names a node error for logs and the tp_node_errors_total metric.
func errorClass(err error) string {
	switch {
	case node.IsWrongNetwork(err):
		return "wrong-network"
	case node.IsTimeout(err):
		return "timeout"
	case node.IsTransport(err):
		return "down"
	case node.IsCookie(err):
		return "cookie"
	case node.IsAuth(err), node.IsForbidden(err):
		return "auth"
	case node.IsInitialDownload(err):
		return "initial-block-download"
	case node.IsNotConnected(err):
		return "no-peers"
	case node.IsWarmup(err):
		return "warmup"
	case node.IsBusy(err):
		return "busy"
	}
	return "other"
}

// tipLoop runs the TipWatcher (ZMQ hints, or getblocktemplate long-poll,
// plus a safety poll) and turns each new tip into a notice for the core,
// with the block's parent and time when the node says them in time.
func (s *Server) tipLoop(ctx context.Context) {
	zmqTips := s.cfg.ZMQ.HashBlock != "" || s.cfg.ZMQ.Sequence != ""
	w := node.NewTipWatcher(s.cfg.Node, node.TipWatcherConfig{
		LongPoll:     !zmqTips,
		PollInterval: s.cfg.TipPollInterval,
		Backoff:      s.cfg.NodeBackoff,
		Logger:       s.log.Named("tips"),
	})
	var wg sync.WaitGroup
	defer wg.Wait()
	if s.cfg.ZMQ.Enabled() {
		sub, err := node.NewSubscriber(s.cfg.ZMQ)
		if err != nil {
			s.log.Error("ZMQ configuration unusable; relying on polling", "error", err)
		} else {
			events := make(chan node.Event, 1024)
			wg.Add(2)
			go func() {
				defer wg.Done()
				if err := sub.Run(ctx, events); err != nil && ctx.Err() == nil {
					s.log.Error("ZMQ subscriber stopped; relying on polling", "error", err)
				}
			}()
			go func() { defer wg.Done(); s.zmqLoop(ctx, events, w) }()
		}
	}
	tips := make(chan node.Tip, 16)
	wg.Add(1)
	go func() { defer wg.Done(); _ = w.Run(ctx, tips) }()
	first := true
	var lastWarn time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-tips:
			s.m.tips.WithLabelValues(t.Source.String()).Inc()
			recentGap := time.Since(time.Unix(0, s.lastGap.Load())) < 30*time.Second
			if zmqTips && !first && t.Source == node.SourcePoll && !recentGap && time.Since(lastWarn) > 10*time.Minute {
				lastWarn = time.Now()
				s.log.Warn("new block learned by polling, not from ZMQ: check that the node publishes "+
					"zmqpubhashblock/zmqpubsequence at the configured endpoints and that this host can reach them",
					"hash", t.Hash, "zmq_hashblock", s.cfg.ZMQ.HashBlock, "zmq_sequence", s.cfg.ZMQ.Sequence)
			}
			first = false
			notice := provider.TipNotice{Hash: t.Hash}
			hctx, cancel := context.WithTimeout(ctx, headerTimeout)
			i, err := s.header(hctx, t.Hash)
			cancel()
			if err == nil {
				prev := [32]byte(i.prev)
				notice.PrevHash, notice.Time = &prev, i.time
			} else if ctx.Err() == nil {
				s.log.Warn("new tip: header unavailable; waiting for the node's template", "hash", t.Hash, "error", err, "hint", node.Hint(err))
			}
			at := t.At
			if at.IsZero() {
				at = time.Now()
			}
			select {
			case s.tips <- tipEvent{notice: notice, at: at}:
			case <-ctx.Done():
				return
			}
			if t.Template != nil && s.networkOK.Load() {
				// The long-poll brought the node's template for this tip:
				// hand it over now instead of waiting for another call.
				if src, err := ConvertTemplate(t.Template); err == nil {
					chain := s.chainInfo(ctx, t.Template)
					select {
					case s.templates <- templateEvent{src: src, chain: chain}:
					case <-ctx.Done():
						return
					}
				}
			}
		}
	}
}

// zmqLoop routes ZMQ events: blocks to the tip watcher, mempool changes to
// the core, gaps to a resync of both.
func (s *Server) zmqLoop(ctx context.Context, events <-chan node.Event, w *node.TipWatcher) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			switch e := ev.(type) {
			case node.BlockConnected:
				w.Notify(e)
			case node.BlockDisconnected, node.TxAdded, node.TxRemoved:
				s.m.mempoolNotices.Inc()
				s.signalMempool()
			case node.Gap:
				s.lastGap.Store(time.Now().UnixNano())
				s.m.zmqGaps.WithLabelValues(e.Topic).Inc()
				if e.Reconnect {
					s.log.Warn("ZMQ publisher reconnected (the node may have restarted); resyncing tip and template",
						"topic", e.Topic, "endpoint", e.Endpoint)
				} else {
					s.log.Warn("ZMQ notifications lost (sequence gap); resyncing tip and template",
						"topic", e.Topic, "expected", e.Expected, "got", e.Got)
				}
				w.Notify(e)
				// Resync the template now, whatever the interval says.
				select {
				case s.fetchReq <- struct{}{}:
				default:
				}
			}
		}
	}
}

func (s *Server) signalMempool() {
	select {
	case s.mempool <- struct{}{}:
	default:
	}
}
