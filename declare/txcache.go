package declare

import "sync"

// DefaultTxCache is how many transactions' facts the core remembers
// between declarations (about 120 bytes each).
const DefaultTxCache = 200_000

// txFacts is what a declaration needs of a transaction beyond its inputs.
// A wtxid commits to every byte of the transaction, so the facts found for
// a wtxid hold for every later declaration of it.
type txFacts struct {
	txid   [32]byte
	weight int64
	sigops int64
}

type cachedTx struct {
	wtxid [32]byte
	txFacts
}

// txCache remembers txFacts by wtxid: many JDCs declare mostly the same
// transactions, and hashing their txids again is most of a declaration's
// cost. Two generations: when the current one is full it becomes the old
// one and the older is dropped, so the bound holds without bookkeeping.
type txCache struct {
	mu       sync.Mutex
	max      int
	cur, old map[[32]byte]txFacts
}

// get returns the facts of the wtxids whose flag is set (nil when unknown).
func (c *txCache) get(wtxids [][32]byte, want []bool) []*txFacts {
	out := make([]*txFacts, len(wtxids))
	if c.max <= 0 {
		return out
	}
	facts := make([]txFacts, len(wtxids))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, w := range wtxids {
		if want == nil || !want[i] {
			continue
		}
		f, ok := c.cur[w]
		if !ok {
			if f, ok = c.old[w]; ok {
				c.cur[w] = f
			}
		}
		if ok {
			facts[i] = f
			out[i] = &facts[i]
		}
	}
	return out
}

func (c *txCache) put(txs []cachedTx) {
	if c.max <= 0 || len(txs) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range txs {
		if c.cur == nil || len(c.cur) >= c.max/2 {
			c.old, c.cur = c.cur, make(map[[32]byte]txFacts, c.max/2)
		}
		c.cur[t.wtxid] = t.txFacts
	}
}
