package mempool

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// Memory the store accounts for each transaction beyond its raw bytes, so
// that MaxBytes bounds the heap the store really uses. The figures come
// from BenchmarkStoreMemory (runtime.MemStats before and after adding 100,000
// transactions; see docs/PERFORMANCE.md): the slot, the txid map entry, the
// size-class rounding of the raw copy and the eviction heap make up
// EntryOverhead; each input adds an outpoint index entry; a transaction with
// a witness (wtxid ≠ txid) adds a wtxid map entry.
const (
	EntryOverhead   = 192
	InputOverhead   = 64
	WitnessOverhead = 56
)

// FeeUnknown is Entry.Fee when the store was not told the fee.
const FeeUnknown int64 = -1

// Errors Add returns besides ErrMalformed.
var (
	// ErrExists: the transaction is in the store already (Add returns its
	// entry, unchanged but for a fee it did not know).
	ErrExists = errors.New("transaction already in the mirror")
	// ErrTooLarge: the transaction alone is larger than MaxBytes.
	ErrTooLarge = errors.New("transaction larger than the mirror's memory bound")
	// ErrFull: the memory bound is reached and every transaction that could
	// make room is more worth keeping than this one (a lower fee rate).
	ErrFull = errors.New("mirror full of transactions worth more than this one")
)

// Entry describes a transaction in the store.
type Entry struct {
	TxID  chainhash.Hash // internal byte order
	WTxID chainhash.Hash // equals TxID for a transaction without witness
	Size  int            // raw bytes
	VSize int            // virtual size, ceil(weight/4)
	Fee   int64          // satoshis, or FeeUnknown
}

// StoreStats are the store's counters.
type StoreStats struct {
	Count    int   // transactions held
	Bytes    int64 // accounted bytes: raw bytes plus the per-entry overheads
	RawBytes int64 // raw transaction bytes
	MaxBytes int64 // the bound, 0 when unbounded

	Adds      uint64 // transactions added
	Removes   uint64 // removed one by one (Remove, Reconcile)
	Confirmed uint64 // removed by RemoveConfirmed because the block holds them
	Conflicts uint64 // removed because a block or a newer transaction spends an output they spend (descendants included)
	Evictions uint64 // dropped or not admitted because of MaxBytes
	Rejected  uint64 // raw bytes refused: malformed or larger than MaxBytes

	LookupHits   uint64 // LookupWTxIDs: wtxids found
	LookupMisses uint64 // LookupWTxIDs: wtxids not found
}

// Store holds raw transactions found by txid and by wtxid in O(1). It does
// no IO. It is safe for concurrent use: any number of readers run in
// parallel, writers one at a time.
//
// The byte slices it returns are shared with the store and with other
// readers: callers must not modify them. The store never modifies them
// either (Add copies its input), so a slice stays valid after its
// transaction left the store.
type Store struct {
	maxBytes int64

	mu      sync.RWMutex
	chunks  [][]slot
	free    []uint32
	byTxID  map[chainhash.Hash]uint32
	byWTxID map[chainhash.Hash]uint32 // only transactions whose wtxid differs from their txid
	spends  map[wire.OutPoint]uint32  // outpoint → the transaction spending it
	heap    []uint32                  // eviction order: heap[0] goes first
	bytes   int64
	raw     int64
	order   uint64

	adds, removes, confirmed, conflicts, evictions, rejected uint64

	lookupHits, lookupMisses atomic.Uint64
}

// slot is one transaction. Slots live in fixed-size chunks and are found by
// index, so the maps hold no pointers and the garbage collector does not
// scan them.
type slot struct {
	raw   []byte // nil when the slot is free
	txid  chainhash.Hash
	wtxid chainhash.Hash
	order uint64 // add order: smaller is older
	fee   int64  // FeeUnknown or satoshis
	vsize uint32
	cost  uint32 // accounted bytes
	pos   int32  // index in heap
}

const chunkBits = 10

// NewStore returns an empty store bounded to maxBytes accounted bytes
// (0: unbounded; a negative bound is treated as 0).
func NewStore(maxBytes int64) *Store {
	return &Store{
		maxBytes: max(maxBytes, 0),
		byTxID:   make(map[chainhash.Hash]uint32),
		byWTxID:  make(map[chainhash.Hash]uint32),
		spends:   make(map[wire.OutPoint]uint32),
	}
}

func (s *Store) slot(i uint32) *slot { return &s.chunks[i>>chunkBits][i&(1<<chunkBits-1)] }

func (s *Store) entry(sl *slot) Entry {
	return Entry{TxID: sl.txid, WTxID: sl.wtxid, Size: len(sl.raw), VSize: int(sl.vsize), Fee: sl.fee}
}

// Cost is the number of accounted bytes a transaction of that size, inputs
// and witness takes in a store.
func Cost(size, inputs int, witness bool) int64 {
	c := int64(size) + EntryOverhead + InputOverhead*int64(inputs)
	if witness {
		c += WitnessOverhead
	}
	return c
}

// Add parses raw (consensus serialization, with or without witness), copies
// it and adds it with an unknown fee. See AddWithFee.
func (s *Store) Add(raw []byte) (Entry, error) { return s.AddWithFee(raw, FeeUnknown) }

// AddWithFee adds a transaction whose fee is known (FeeUnknown if not).
// Malformed bytes are refused with an error wrapping ErrMalformed. A
// transaction that spends an output another stored transaction spends
// replaces it, with its descendants: the node accepted the newer one. When
// MaxBytes would be exceeded, the transactions least worth keeping are
// evicted first (see Evict order in the package doc); if the new one is
// itself the least worth keeping it is not added (ErrFull).
func (s *Store) AddWithFee(raw []byte, fee int64) (Entry, error) {
	ti, err := parseTx(raw)
	if err != nil {
		s.mu.Lock()
		s.rejected++
		s.mu.Unlock()
		return Entry{}, err
	}
	if fee < 0 {
		fee = FeeUnknown
	}
	cost := Cost(len(raw), ti.nIn, ti.witness)
	if s.maxBytes > 0 && cost > s.maxBytes {
		s.mu.Lock()
		s.rejected++
		s.mu.Unlock()
		return Entry{TxID: ti.txid, WTxID: ti.wtxid, Size: len(raw), VSize: ti.vsize, Fee: fee},
			fmt.Errorf("%w: %s needs %d bytes, the bound is %d", ErrTooLarge, ti.txid, cost, s.maxBytes)
	}
	cp := make([]byte, len(raw))
	copy(cp, raw)

	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.byTxID[ti.txid]; ok {
		sl := s.slot(i)
		if sl.fee == FeeUnknown && fee != FeeUnknown {
			sl.fee = fee
			s.heapFix(int(sl.pos))
		}
		return s.entry(sl), ErrExists
	}
	// The node replaced whatever spends the same outputs.
	walkTx(cp, func(op wire.OutPoint) {
		if j, ok := s.spends[op]; ok {
			s.conflicts += uint64(s.removeWithDescendants(j))
		}
	})
	cand := slot{raw: cp, txid: ti.txid, wtxid: ti.wtxid, order: s.order + 1, fee: fee,
		vsize: uint32(ti.vsize), cost: uint32(cost)}
	for s.maxBytes > 0 && s.bytes+cost > s.maxBytes && len(s.heap) > 0 {
		if s.lessSlot(&cand, s.slot(s.heap[0])) {
			s.evictions++
			return s.entry(&cand), fmt.Errorf("%w: %s", ErrFull, ti.txid)
		}
		s.evictions++
		s.removeLocked(s.heap[0])
	}
	s.order++
	var i uint32
	if n := len(s.free); n > 0 {
		i = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		n := len(s.chunks) << chunkBits
		s.chunks = append(s.chunks, make([]slot, 1<<chunkBits))
		for k := n + 1<<chunkBits - 1; k > n; k-- {
			s.free = append(s.free, uint32(k))
		}
		i = uint32(n)
	}
	sl := s.slot(i)
	*sl = cand
	s.byTxID[ti.txid] = i
	if ti.witness {
		s.byWTxID[ti.wtxid] = i
	}
	walkTx(cp, func(op wire.OutPoint) { s.spends[op] = i })
	sl.pos = int32(len(s.heap))
	s.heap = append(s.heap, i)
	s.heapUp(int(sl.pos))
	s.bytes += cost
	s.raw += int64(len(cp))
	s.adds++
	return s.entry(sl), nil
}

// SetFee records the fee of a stored transaction (it orders evictions). It
// reports whether the transaction is in the store.
func (s *Store) SetFee(txid chainhash.Hash, fee int64) bool {
	if fee < 0 {
		fee = FeeUnknown
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.byTxID[txid]
	if !ok {
		return false
	}
	sl := s.slot(i)
	if sl.fee != fee {
		sl.fee = fee
		s.heapFix(int(sl.pos))
	}
	return true
}

// Remove drops one transaction (not its descendants: the node reports each
// transaction it removes). It reports whether the transaction was there.
func (s *Store) Remove(txid chainhash.Hash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.byTxID[txid]
	if ok {
		s.removeLocked(i)
		s.removes++
	}
	return ok
}

// RemoveConfirmed drops the transactions of a block that the node connected,
// and every stored transaction that spends an output the block spends (a
// double spend the block settled), with its descendants. It returns how
// many of each it dropped.
func (s *Store) RemoveConfirmed(block *wire.MsgBlock) (confirmed, conflicts int) {
	if block == nil {
		return 0, 0
	}
	ids := make([]chainhash.Hash, len(block.Transactions))
	for k, tx := range block.Transactions {
		ids[k] = tx.TxHash() // hashed outside the lock
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, tx := range block.Transactions {
		if i, ok := s.byTxID[ids[k]]; ok {
			s.removeLocked(i)
			confirmed++
		}
		if k == 0 {
			continue // the coinbase spends nothing
		}
		for _, in := range tx.TxIn {
			if i, ok := s.spends[in.PreviousOutPoint]; ok {
				conflicts += s.removeWithDescendants(i)
			}
		}
	}
	s.confirmed += uint64(confirmed)
	s.conflicts += uint64(conflicts)
	return confirmed, conflicts
}

// Reconcile makes the store agree with a full listing of the node's mempool:
// it drops every stored transaction not in ids and returns the ids it does
// not hold (to fetch), in the order given, without duplicates.
func (s *Store) Reconcile(ids []chainhash.Hash) (missing []chainhash.Hash, removed int) {
	listed := make(map[chainhash.Hash]struct{}, len(ids))
	for _, id := range ids {
		listed[id] = struct{}{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var drop []uint32
	for id, i := range s.byTxID {
		if _, ok := listed[id]; !ok {
			drop = append(drop, i)
		}
	}
	for _, i := range drop {
		s.removeLocked(i)
	}
	s.removes += uint64(len(drop))
	for _, id := range ids {
		if _, ok := s.byTxID[id]; ok {
			continue
		}
		if _, dup := listed[id]; dup {
			delete(listed, id)
			missing = append(missing, id)
		}
	}
	return missing, len(drop)
}

// removeWithDescendants drops i and every stored transaction that spends
// its outputs, recursively, and returns how many it dropped.
func (s *Store) removeWithDescendants(i uint32) int {
	n := 0
	stack := []uint32{i}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		sl := s.slot(i)
		if sl.raw == nil {
			continue
		}
		txid, raw := sl.txid, sl.raw
		s.removeLocked(i)
		n++
		nOut := walkTx(raw, nil)
		for k := 0; k < nOut; k++ {
			if j, ok := s.spends[wire.OutPoint{Hash: txid, Index: uint32(k)}]; ok {
				stack = append(stack, j)
			}
		}
	}
	return n
}

func (s *Store) removeLocked(i uint32) {
	sl := s.slot(i)
	delete(s.byTxID, sl.txid)
	if sl.wtxid != sl.txid {
		delete(s.byWTxID, sl.wtxid)
	}
	walkTx(sl.raw, func(op wire.OutPoint) {
		if j, ok := s.spends[op]; ok && j == i {
			delete(s.spends, op)
		}
	})
	s.heapRemove(int(sl.pos))
	s.bytes -= int64(sl.cost)
	s.raw -= int64(len(sl.raw))
	*sl = slot{}
	s.free = append(s.free, i)
}

// ByTxID returns the raw transaction with that txid (internal byte order).
func (s *Store) ByTxID(txid chainhash.Hash) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if i, ok := s.byTxID[txid]; ok {
		return s.slot(i).raw, true
	}
	return nil, false
}

// ByWTxID returns the raw transaction with that wtxid (internal byte order).
func (s *Store) ByWTxID(wtxid chainhash.Hash) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byWTxIDLocked(wtxid)
}

func (s *Store) byWTxIDLocked(wtxid chainhash.Hash) ([]byte, bool) {
	if i, ok := s.byWTxID[wtxid]; ok {
		return s.slot(i).raw, true
	}
	// Without witness the wtxid is the txid, and only byTxID holds it.
	if i, ok := s.byTxID[wtxid]; ok {
		if sl := s.slot(i); sl.wtxid == wtxid {
			return sl.raw, true
		}
	}
	return nil, false
}

// Get returns the entry of a txid.
func (s *Store) Get(txid chainhash.Hash) (Entry, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if i, ok := s.byTxID[txid]; ok {
		return s.entry(s.slot(i)), true
	}
	return Entry{}, false
}

// Has reports whether the store holds a txid.
func (s *Store) Has(txid chainhash.Hash) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.byTxID[txid]
	return ok
}

// LookupWTxIDs finds the transactions of a declared job: found[i] is the raw
// transaction with wtxids[i] (internal byte order, as in DeclareMiningJob's
// wtxid_list) or nil, and missing lists the positions of the nil ones in
// increasing order (what ProvideMissingTransactions asks for). Every hit and
// miss is counted (StoreStats.LookupHits, LookupMisses): the miss rate of
// declarations from miners whose node is in sync says how far the mirror
// lags.
func (s *Store) LookupWTxIDs(wtxids [][32]byte) (found [][]byte, missing []int) {
	found = make([][]byte, len(wtxids))
	s.mu.RLock()
	for i, w := range wtxids {
		if raw, ok := s.byWTxIDLocked(w); ok {
			found[i] = raw
		} else {
			missing = append(missing, i)
		}
	}
	s.mu.RUnlock()
	s.lookupHits.Add(uint64(len(wtxids) - len(missing)))
	s.lookupMisses.Add(uint64(len(missing)))
	return found, missing
}

// TxIDs returns a snapshot of the stored txids, in no particular order.
func (s *Store) TxIDs() []chainhash.Hash {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]chainhash.Hash, 0, len(s.byTxID))
	for id := range s.byTxID {
		out = append(out, id)
	}
	return out
}

// Len is the number of stored transactions.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byTxID)
}

// Bytes is the accounted size: raw bytes plus the per-entry overheads (Cost).
func (s *Store) Bytes() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.bytes
}

// MaxBytes is the bound (0: unbounded).
func (s *Store) MaxBytes() int64 { return s.maxBytes }

// Stats returns the counters.
func (s *Store) Stats() StoreStats {
	s.mu.RLock()
	st := StoreStats{
		Count: len(s.byTxID), Bytes: s.bytes, RawBytes: s.raw, MaxBytes: s.maxBytes,
		Adds: s.adds, Removes: s.removes, Confirmed: s.confirmed, Conflicts: s.conflicts,
		Evictions: s.evictions, Rejected: s.rejected,
	}
	s.mu.RUnlock()
	st.LookupHits = s.lookupHits.Load()
	st.LookupMisses = s.lookupMisses.Load()
	return st
}

// Eviction order. A transaction whose fee is known goes before one whose fee
// is not (the mirror learns fees from the node's full listings, so the
// unknown ones are the newest arrivals, the likeliest to be in the next
// templates); among known fees the lowest fee rate goes first; otherwise
// the oldest goes first.
func (s *Store) lessSlot(a, b *slot) bool {
	ak, bk := a.fee != FeeUnknown, b.fee != FeeUnknown
	if ak != bk {
		return ak
	}
	if ak {
		// a.fee/a.vsize < b.fee/b.vsize, in 128 bits.
		ah, al := bits.Mul64(uint64(a.fee), uint64(max(b.vsize, 1)))
		bh, bl := bits.Mul64(uint64(b.fee), uint64(max(a.vsize, 1)))
		if ah != bh {
			return ah < bh
		}
		if al != bl {
			return al < bl
		}
	}
	return a.order < b.order
}

func (s *Store) heapLess(x, y int) bool { return s.lessSlot(s.slot(s.heap[x]), s.slot(s.heap[y])) }

func (s *Store) heapSwap(x, y int) {
	s.heap[x], s.heap[y] = s.heap[y], s.heap[x]
	s.slot(s.heap[x]).pos = int32(x)
	s.slot(s.heap[y]).pos = int32(y)
}

func (s *Store) heapUp(j int) {
	for j > 0 {
		p := (j - 1) / 2
		if !s.heapLess(j, p) {
			break
		}
		s.heapSwap(j, p)
		j = p
	}
}

func (s *Store) heapDown(j int) bool {
	start := j
	n := len(s.heap)
	for {
		l := 2*j + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && s.heapLess(r, l) {
			c = r
		}
		if !s.heapLess(c, j) {
			break
		}
		s.heapSwap(j, c)
		j = c
	}
	return j > start
}

func (s *Store) heapFix(j int) {
	if !s.heapDown(j) {
		s.heapUp(j)
	}
}

func (s *Store) heapRemove(j int) {
	last := len(s.heap) - 1
	if j != last {
		s.heapSwap(j, last)
	}
	s.heap = s.heap[:last]
	if j != last {
		s.heapFix(j)
	}
}
