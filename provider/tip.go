package provider

import (
	"math"
	"slices"
	"time"

	"github.com/sv2kit/sv2kit/templates"
)

// ChainInfo describes the tip a node template builds on; it lets the core
// predict the header timestamp of the block after the next one.
type ChainInfo struct {
	TipHash   [32]byte // must equal the template's PrevHash
	TipHeight int64    // must equal the template's Height-1
	TipTime   uint32
	// RecentTimes are the timestamps of the tip and its ancestors, newest
	// first (RecentTimes[0] is the tip's), up to 11.
	RecentTimes []uint32
}

// TipNotice is a new best block as ZMQ (hashblock) or a long-poll reports it.
type TipNotice struct {
	Hash [32]byte
	// PrevHash is the new block's parent, nil if unknown.
	PrevHash *[32]byte
	// Time is the new block's timestamp, 0 if unknown.
	Time uint32
}

// maxStaleAnswers bounds how many getblocktemplate answers for the tip the
// fast path left are ignored (answers to requests sent before the block).
const maxStaleAnswers = 2

// NodeTemplate handles a getblocktemplate result.
func (c *Core) NodeTemplate(src *templates.Source, chain ChainInfo, now time.Time) Actions {
	var a Actions
	if src == nil {
		a.log(LevelError, "nil node template ignored")
		return a
	}
	if src.Height < 1 {
		a.log(LevelError, "node template with invalid height ignored", "height", src.Height)
		return a
	}
	c.lastFetch = now
	c.mempoolDirty = false
	if c.fast != nil && src.PrevHash == c.fast.parent && c.staleAnswers < maxStaleAnswers {
		// Asked before the block arrived; the fast path already moved on.
		c.staleAnswers++
		a.log(LevelDebug, "node template for the previous tip ignored; fetching again", "prev", DisplayHash(src.PrevHash))
		a.FetchTemplate = true
		return a
	}
	if c.haveTip && c.fast == nil && src.PrevHash == c.tip {
		if src.Bits != c.src.Bits || src.Height != c.height {
			// Same tip, other nBits: min-difficulty networks lower the
			// difficulty 20 minutes after the tip. A non-future template
			// cannot carry nBits, so announce it again.
			a.log(LevelInfo, "node template changes nBits on the same tip; announcing it again",
				"bits", src.Bits, "previous_bits", c.src.Bits)
			c.tipChange(&a, src, chain, now, false)
			return a
		}
		c.sameTip(&a, src, chain, now)
		return a
	}
	c.tipChange(&a, src, chain, now, true)
	return a
}

// setSource makes src the latest node template.
func (c *Core) setSource(a *Actions, src *templates.Source, chain ChainInfo) {
	c.src = src
	c.srcFull = nil
	clear(c.built)
	c.built = c.built[:0]
	var fees int64
	for i := range src.Txs {
		fees += src.Txs[i].Fee
	}
	c.srcFees = fees
	c.recent = c.recent[:0]
	switch {
	case chain.TipHash != src.PrevHash || chain.TipHeight != src.Height-1:
		if chain.TipHash != ([32]byte{}) {
			a.log(LevelWarn, "chain info does not match the node template; no fast path on the next block",
				"template_prev", DisplayHash(src.PrevHash), "chain_tip", DisplayHash(chain.TipHash))
		}
		c.recent = nil
	case len(chain.RecentTimes) == 0:
		if chain.TipTime != 0 {
			c.recent = append(c.recent, chain.TipTime)
		}
	case chain.TipTime != 0 && chain.RecentTimes[0] != chain.TipTime:
		a.log(LevelWarn, "chain info: RecentTimes[0] is not the tip's time; no fast path on the next block")
		c.recent = nil
	default:
		c.recent = append(c.recent, chain.RecentTimes[:min(11, len(chain.RecentTimes))]...)
	}
}

// moveTip makes newTip the current tip: templates of the old tip are kept
// for PrevTipRetention, older ones are pruned.
func (c *Core) moveTip(newTip [32]byte, now time.Time) {
	for _, id := range c.prevIDs {
		delete(c.entries, id)
	}
	c.prevIDs, c.curIDs = c.curIDs, c.prevIDs[:0]
	c.prevTip, c.tip, c.haveTip = c.tip, newTip, true
	c.prevUntil = now.Add(c.cfg.PrevTipRetention)
	c.stats.TipChanges++
}

// bitsKnowable reports whether the nBits of the block at height h equal
// those of its parent whatever h's timestamp: no retarget at h, and no
// min-difficulty rule that depends on the timestamp.
func (c *Core) bitsKnowable(h int64) bool {
	if c.cfg.NoRetargeting {
		return true
	}
	return !c.cfg.MinDifficultyBlocks && h%c.cfg.RetargetInterval != 0
}

// emptyFor is the empty template for height h (no transactions, subsidy only).
func (c *Core) emptyFor(h int64, version uint32) *templates.Template {
	return templates.EmptyNext(&templates.Template{Height: h - 1, Version: version}, c.cfg.HalvingInterval)
}

// tipChange handles a node template on a tip other than the current one
// (newTip) or one whose nBits changed: every group gets a future template
// and SetNewPrevHash (or, after a confirmed fast path, a non-future
// template), then the next empty template.
func (c *Core) tipChange(a *Actions, src *templates.Source, chain ChainInfo, now time.Time, newTip bool) {
	fast := c.fast
	announced := fast != nil && fast.hash == src.PrevHash
	confirmed := false
	if announced {
		e := fast.latest()
		confirmed = src.Height == c.height && src.Bits == e.bits && e.timestamp >= src.MinTime
		if !confirmed {
			a.log(LevelWarn, "node template disagrees with the fast-path SetNewPrevHash; announcing the node's",
				"height", src.Height, "bits", src.Bits, "fast_bits", e.bits, "mintime", src.MinTime, "fast_time", e.timestamp)
		}
	} else if newTip {
		c.moveTip(src.PrevHash, now)
	}
	c.fast = nil
	c.minDiffFetched = false
	c.staleAnswers = 0
	c.setSource(a, src, chain)
	c.height = src.Height
	for _, e := range c.empties {
		delete(c.entries, e.id)
	}
	clear(c.empties)
	c.empties = c.empties[:0]
	a.log(LevelInfo, "new tip template", "height", src.Height, "prev", DisplayHash(src.PrevHash), "txs", len(src.Txs), "fees", c.srcFees, "fast_path", confirmed)

	// Full templates first, so their ids precede the next empty template's.
	for i := 0; i < len(c.groups); {
		g := c.groups[i]
		t, err := c.buildFor(g.res)
		if err != nil {
			c.failGroup(a, g, err)
			continue
		}
		g.current, g.lastSent, g.lastFees, g.pending = c.entryFor(t), now, t.Fees, nil
		i++
	}
	var empty *entry
	if len(c.groups) > 0 && c.bitsKnowable(src.Height+1) {
		empty = c.newEntry(c.emptyFor(src.Height+1, src.Version))
		c.empties = append(c.empties, empty)
	}
	for _, g := range c.groups {
		e := g.current
		for _, cl := range g.clients {
			if confirmed && cl.onFast {
				a.send(cl.id, e.newTemplate(false))
			} else {
				a.send(cl.id, e.newTemplate(true))
				a.send(cl.id, e.setNewPrevHash())
			}
			cl.onFast, cl.empty = false, empty
			if empty != nil {
				a.send(cl.id, empty.newTemplate(true))
			}
		}
	}
}

// sameTip handles a node template on the current tip: fee updates.
func (c *Core) sameTip(a *Actions, src *templates.Source, chain ChainInfo, now time.Time) {
	c.setSource(a, src, chain)
	for i := 0; i < len(c.groups); {
		g := c.groups[i]
		if g.current == nil {
			// Waiting since before the first template (cannot happen once a
			// tip is known, kept for safety).
			if !c.startGroup(a, g, now) {
				continue
			}
			for _, cl := range g.clients {
				c.sendCurrent(a, g, cl)
			}
			i++
			continue
		}
		i++
		g.pending = nil
		if c.srcFees < g.lastFees+c.cfg.FeeDelta {
			continue // no template of this source can qualify
		}
		t, err := c.buildFor(g.res)
		if err != nil {
			a.log(LevelError, "fee-update template build failed", "reservation_bytes", g.res.OutputBytes, "error", err)
			continue
		}
		if t.Fees < g.lastFees+c.cfg.FeeDelta {
			continue
		}
		if now.Sub(g.lastSent) >= c.cfg.Interval {
			c.sendUpdate(a, g, t, now)
		} else {
			g.pending = t
		}
	}
}

// sendUpdate sends a fee-improved template of the current tip to a group.
func (c *Core) sendUpdate(a *Actions, g *group, t *templates.Template, now time.Time) {
	e := c.entryFor(t)
	a.log(LevelDebug, "fee update", "template_id", e.id, "fees", t.Fees, "previous_fees", g.lastFees, "clients", len(g.clients))
	g.current, g.lastSent, g.lastFees, g.pending = e, now, t.Fees, nil
	c.stats.FeeUpdates++
	nt := e.newTemplate(false)
	for _, cl := range g.clients {
		a.send(cl.id, nt)
	}
}

// NewTip handles a new best block reported by ZMQ or a long-poll. When the
// block is a child of the current tip and the next block's nBits and a
// valid timestamp are known, every client gets a SetNewPrevHash for the
// empty template it already holds (the fast path); in every case the node
// is asked for a fresh template.
func (c *Core) NewTip(tip TipNotice, now time.Time) Actions {
	var a Actions
	if (c.haveTip && tip.Hash == c.tip) || (c.fast != nil && tip.Hash == c.fast.hash) {
		return a // already known (ZMQ and polling both report it)
	}
	a.FetchTemplate = true
	c.lastFetch = now
	why := c.fastPathRefusal(tip)
	var floor uint32
	if why == "" {
		var ok bool
		if floor, ok = nextTimeFloor(c.height, tip.Time, tip.Time != 0, c.recent); !ok {
			why = "timestamps of the last blocks unknown"
		}
	}
	if why != "" {
		a.log(LevelDebug, "new tip: waiting for the node's template", "hash", DisplayHash(tip.Hash), "reason", why)
		return a
	}
	bits := c.src.Bits
	target := templates.TargetFromBits(bits)
	ts := max(unixSeconds(now), floor)
	for _, e := range c.empties {
		e.activated, e.prev, e.bits, e.target, e.timestamp = true, tip.Hash, bits, target, ts
	}
	parent := c.tip
	c.moveTip(tip.Hash, now)
	for _, e := range c.empties {
		c.curIDs = append(c.curIDs, e.id)
	}
	c.fast = &fastTip{hash: tip.Hash, parent: parent, entries: c.empties}
	c.empties = nil
	c.height++
	if tip.Time != 0 && len(c.recent) > 0 {
		c.recent = slices.Insert(c.recent, 0, tip.Time)
		c.recent = c.recent[:min(11, len(c.recent))]
	} else {
		c.recent = c.recent[:0]
	}
	c.stats.FastPaths++
	n := 0
	for _, g := range c.groups {
		n += len(g.clients)
	}
	a.Send = make([]Outgoing, 0, n)
	latest := c.fast.latest()
	for _, g := range c.groups {
		g.current, g.pending = latest, nil
		for _, cl := range g.clients {
			if e := cl.empty; e != nil {
				a.Send = append(a.Send, Outgoing{Client: cl.id, Msg: e.setNewPrevHash()})
				cl.onFast, cl.empty = true, nil
			}
		}
	}
	a.log(LevelInfo, "new tip: fast-path SetNewPrevHash", "hash", DisplayHash(tip.Hash), "height", c.height-1,
		"template_id", latest.id, "timestamp", ts, "clients", n)
	return a
}

// fastPathRefusal says why the fast path cannot announce tip ("" if it can).
func (c *Core) fastPathRefusal(tip TipNotice) string {
	switch {
	case c.src == nil || !c.haveTip:
		return "no template yet"
	case c.fast != nil:
		return "the previous fast-path tip is not confirmed by the node yet"
	case tip.PrevHash == nil:
		return "parent of the new block unknown"
	case *tip.PrevHash != c.tip:
		return "new block is not a child of the current tip (reorg or missed block)"
	case !c.bitsKnowable(c.height + 1):
		return "nBits of the next block cannot be known in advance (retarget or min-difficulty network)"
	case len(c.empties) == 0:
		return "no empty template prepared"
	}
	return ""
}

// nextTimeFloor returns the smallest header timestamp the node accepts for
// a child of a new tip at newHeight: MTP+1, where the median time past MTP
// is the median of the timestamps of the new tip and its ancestors, 11
// blocks (fewer near genesis: Core sorts the available ones and takes the
// element at index n/2). ancestors are the timestamps of the new tip's
// parent and older blocks, newest first.
//
// With the new tip's own time unknown the median cannot be computed, but it
// can be bounded: adding a value to a set never raises its k-th smallest
// element, so with m window blocks and the m-1 ancestors known, the element
// at index m/2 of the full window is at most the element at index m/2 of
// the known ones (for m = 11: the 6th smallest of the 10 ancestors). That
// bound+1 is a timestamp the node accepts, at most a few blocks' spacing
// later than the exact floor.
func nextTimeFloor(newHeight int64, newTime uint32, newTimeKnown bool, ancestors []uint32) (uint32, bool) {
	if newHeight < 0 {
		return 0, false
	}
	m := int(min(11, newHeight+1))
	need := m - 1
	if len(ancestors) < need {
		return 0, false
	}
	var buf [11]uint32
	vals := buf[:0]
	if newTimeKnown {
		vals = append(vals, newTime)
	}
	vals = append(vals, ancestors[:need]...)
	slices.Sort(vals)
	k := m / 2
	if k >= len(vals) || vals[k] == math.MaxUint32 {
		return 0, false
	}
	return vals[k] + 1, true
}

func unixSeconds(t time.Time) uint32 {
	s := t.Unix()
	if s < 0 {
		return 0
	}
	if s > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(s)
}

// MempoolChanged notes a mempool change (ZMQ sequence or a periodic check);
// the node is asked for a template when Interval has passed since the last.
func (c *Core) MempoolChanged(now time.Time) Actions {
	var a Actions
	c.mempoolDirty = true
	c.maybeFetch(&a, now)
	return a
}

func (c *Core) maybeFetch(a *Actions, now time.Time) {
	if c.mempoolDirty && c.src != nil && c.fast == nil && now.Sub(c.lastFetch) >= c.cfg.Interval {
		a.FetchTemplate = true
		c.mempoolDirty = false
		c.lastFetch = now
	}
}

// Tick runs timers: held-back fee updates, pruning of the previous tip's
// templates, mempool-driven fetches. Call it about once a second.
func (c *Core) Tick(now time.Time) Actions {
	var a Actions
	if len(c.prevIDs) > 0 && !now.Before(c.prevUntil) {
		for _, id := range c.prevIDs {
			delete(c.entries, id)
		}
		c.prevIDs = c.prevIDs[:0]
	}
	for _, g := range c.groups {
		if g.pending != nil && now.Sub(g.lastSent) >= c.cfg.Interval {
			c.sendUpdate(&a, g, g.pending, now)
		}
	}
	c.maybeFetch(&a, now)
	// Min-difficulty networks: 20 minutes after the tip the next block may
	// use the minimum difficulty; the node's template then has other nBits.
	if c.cfg.MinDifficultyBlocks && !c.minDiffFetched && c.src != nil && c.fast == nil && len(c.recent) > 0 &&
		uint64(unixSeconds(now)) > uint64(c.recent[0])+minDifficultyDelay {
		c.minDiffFetched = true
		a.FetchTemplate = true
		c.lastFetch = now
	}
	return a
}

// minDifficultyDelay is testnet's rule: a block timestamped more than 20
// minutes (twice the target spacing) after its parent may have the minimum
// difficulty.
const minDifficultyDelay = 20 * 60
