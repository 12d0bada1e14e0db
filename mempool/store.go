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
// that MaxBytes bounds the heap the store really uses. BenchmarkStoreMemory
// measures it (runtime.MemStats after a GC, before and after adding 30,000
// to 300,000 transactions; see docs/PERFORMANCE.md): 167–240 bytes for a
// segwit transaction, 117–152 without witness, the spread being the maps'
// load factor. The slot, the txid map entry, the eviction heap and the
// size-class rounding of the raw copy make up EntryOverhead; a transaction
// with a witness (wtxid ≠ txid) adds a wtxid map entry, WitnessOverhead.
// Both are set at the top of the measured range, so MaxBytes is not exceeded.
const (
	EntryOverhead   = 160
	WitnessOverhead = 80
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
	Conflicts uint64 // removed because a block spends an output they spend (descendants included)
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
	heap    []uint32                  // eviction order: heap[0] goes first
	bytes   int64
	raw     int64
	order   uint64

	adds, removes, confirmed, conflicts, evictions, rejected uint64

	lookupHits, lookupMisses atomic.Uint64
}

// slot is one transaction. Slots live in fixed-size chunks and are found by
// index, so the maps hold no pointers and the garbage collector does not
// scan them. A slot does not keep the ids (the map keys do): the rare paths
// that need them from a slot (eviction, conflicts, Get) hash the raw bytes
// again, which keeps 64 bytes per transaction off the heap.
type slot struct {
	raw     []byte // nil when the slot is free
	order   uint64 // add order: smaller is older
	fee     int64  // FeeUnknown or satoshis
	vsize   uint32
	cost    uint32 // accounted bytes
	pos     int32  // index in heap
	witness bool   // wtxid ≠ txid
}

const chunkBits = 10

// NewStore returns an empty store bounded to maxBytes accounted bytes
// (0: unbounded; a negative bound is treated as 0).
func NewStore(maxBytes int64) *Store {
	return &Store{
		maxBytes: max(maxBytes, 0),
		byTxID:   make(map[chainhash.Hash]uint32),
		byWTxID:  make(map[chainhash.Hash]uint32),
	}
}

func (s *Store) slot(i uint32) *slot { return &s.chunks[i>>chunkBits][i&(1<<chunkBits-1)] }

// ids hashes a stored transaction again.
func (sl *slot) ids() (txid, wtxid chainhash.Hash) {
	ti, _ := parseTx(sl.raw) // it parsed when it was added
	return ti.txid, ti.wtxid
}

func (s *Store) entry(sl *slot, txid chainhash.Hash) Entry {
	wtxid := txid
	if sl.witness {
		wtxid = chainhash.DoubleHashH(sl.raw)
	}
	return Entry{TxID: txid, WTxID: wtxid, Size: len(sl.raw), VSize: int(sl.vsize), Fee: sl.fee}
}

// Cost is the number of accounted bytes a transaction of that size takes in
// a store.
func Cost(size int, witness bool) int64 {
	c := int64(size) + EntryOverhead
	if witness {
		c += WitnessOverhead
	}
	return c
}

// Add parses raw (consensus serialization, with or without witness), copies
// it and adds it with an unknown fee. See AddWithFee.
func (s *Store) Add(raw []byte) (Entry, error) { return s.AddWithFee(raw, FeeUnknown) }

// AddWithFee adds a transaction whose fee is known (FeeUnknown if not).
// Malformed bytes are refused with an error wrapping ErrMalformed. When
// MaxBytes would be exceeded, the transactions least worth keeping are
// evicted first (see lessSlot); if the new one is itself the least worth
// keeping it is not added (ErrFull). The store does not check that the
// transaction is valid or that it does not conflict with a stored one: that
// is the node's business, and the node reports what it removes.
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
	cost := Cost(len(raw), ti.witness)
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
		return s.entry(sl, ti.txid), ErrExists
	}
	cand := slot{raw: cp, order: s.order + 1, fee: fee, vsize: uint32(ti.vsize), cost: uint32(cost), witness: ti.witness}
	for s.maxBytes > 0 && s.bytes+cost > s.maxBytes && len(s.heap) > 0 {
		if s.lessSlot(&cand, s.slot(s.heap[0])) {
			s.evictions++
			return s.entry(&cand, ti.txid), fmt.Errorf("%w: %s", ErrFull, ti.txid)
		}
		s.evictions++
		v := s.slot(s.heap[0])
		txid, wtxid := v.ids()
		s.removeLocked(s.heap[0], txid, wtxid)
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
	sl.pos = int32(len(s.heap))
	s.heap = append(s.heap, i)
	s.heapUp(int(sl.pos))
	s.bytes += cost
	s.raw += int64(len(cp))
	s.adds++
	return s.entry(sl, ti.txid), nil
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

// SetFees records many fees under one lock and returns how many of the
// transactions are in the store.
func (s *Store) SetFees(fees map[chainhash.Hash]int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for txid, fee := range fees {
		i, ok := s.byTxID[txid]
		if !ok {
			continue
		}
		n++
		if fee < 0 {
			fee = FeeUnknown
		}
		if sl := s.slot(i); sl.fee != fee {
			sl.fee = fee
			s.heapFix(int(sl.pos))
		}
	}
	return n
}

// Remove drops one transaction (not its descendants: the node reports each
// transaction it removes). It reports whether the transaction was there.
func (s *Store) Remove(txid chainhash.Hash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.byTxID[txid]
	if ok {
		s.removeTxID(i, txid)
		s.removes++
	}
	return ok
}

// RemoveConfirmed drops the transactions of a block that the node connected,
// and every stored transaction that spends an output the block spends (a
// double spend the block settled), with its descendants. It returns how
// many of each it dropped. Finding the conflicts takes one pass over the
// store under the read lock (readers go on meanwhile; a few tens of
// milliseconds for a full mempool), which is what keeps the store free of a
// per-input index.
func (s *Store) RemoveConfirmed(block *wire.MsgBlock) (confirmed, conflicts int) {
	if block == nil || len(block.Transactions) == 0 {
		return 0, 0
	}
	ids := make([]chainhash.Hash, len(block.Transactions))
	spent := make(map[wire.OutPoint]struct{})
	for k, tx := range block.Transactions {
		ids[k] = tx.TxHash() // hashed outside the lock
		if k == 0 {
			continue // the coinbase spends nothing
		}
		for _, in := range tx.TxIn {
			spent[in.PreviousOutPoint] = struct{}{}
		}
	}
	s.mu.Lock()
	for _, id := range ids {
		if i, ok := s.byTxID[id]; ok {
			s.removeTxID(i, id)
			confirmed++
		}
	}
	s.confirmed += uint64(confirmed)
	empty := len(s.byTxID) == 0
	s.mu.Unlock()
	if len(spent) == 0 || empty {
		return confirmed, 0
	}

	// Only the mirror's loop writes, so the set found under the read lock
	// is still right when the write lock is taken; removal re-checks anyway.
	s.mu.RLock()
	dead := map[chainhash.Hash]uint32{}
	for id, i := range s.byTxID {
		hit := false
		WalkInputs(s.slot(i).raw, func(op wire.OutPoint) {
			if _, ok := spent[op]; ok {
				hit = true
			}
		})
		if hit {
			dead[id] = i
		}
	}
	// Descendants: whatever spends an output of a dead transaction.
	for added := len(dead); added > 0; {
		added = 0
		for id, i := range s.byTxID {
			if _, ok := dead[id]; ok {
				continue
			}
			hit := false
			WalkInputs(s.slot(i).raw, func(op wire.OutPoint) {
				if _, ok := dead[op.Hash]; ok {
					hit = true
				}
			})
			if hit {
				dead[id] = i
				added++
			}
		}
	}
	s.mu.RUnlock()
	if len(dead) == 0 {
		return confirmed, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, i := range dead {
		if j, ok := s.byTxID[id]; ok && j == i {
			s.removeTxID(i, id)
			conflicts++
		}
	}
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
	var dropIDs []chainhash.Hash
	for id, i := range s.byTxID {
		if _, ok := listed[id]; !ok {
			drop = append(drop, i)
			dropIDs = append(dropIDs, id)
		}
	}
	for k, i := range drop {
		s.removeTxID(i, dropIDs[k])
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

// removeTxID removes slot i whose txid the caller knows.
func (s *Store) removeTxID(i uint32, txid chainhash.Hash) {
	wtxid := txid
	if sl := s.slot(i); sl.witness {
		wtxid = chainhash.DoubleHashH(sl.raw)
	}
	s.removeLocked(i, txid, wtxid)
}

func (s *Store) removeLocked(i uint32, txid, wtxid chainhash.Hash) {
	sl := s.slot(i)
	delete(s.byTxID, txid)
	if sl.witness {
		delete(s.byWTxID, wtxid)
	}
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
		if sl := s.slot(i); !sl.witness {
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
		return s.entry(s.slot(i), txid), true
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

// LookupWTxIDsFees is LookupWTxIDs that also returns each found
// transaction's fee (FeeUnknown when the store was not told it, and for the
// missing ones), so that the Job Declarator Server can tell what a declared
// coinbase should be paying.
func (s *Store) LookupWTxIDsFees(wtxids [][32]byte) (found [][]byte, fees []int64, missing []int) {
	found = make([][]byte, len(wtxids))
	fees = make([]int64, len(wtxids))
	s.mu.RLock()
	for i, w := range wtxids {
		fees[i] = FeeUnknown
		if sl := s.byWTxIDSlotLocked(w); sl != nil {
			found[i] = sl.raw
			fees[i] = sl.fee
		} else {
			missing = append(missing, i)
		}
	}
	s.mu.RUnlock()
	s.lookupHits.Add(uint64(len(wtxids) - len(missing)))
	s.lookupMisses.Add(uint64(len(missing)))
	return found, fees, missing
}

func (s *Store) byWTxIDSlotLocked(wtxid chainhash.Hash) *slot {
	if i, ok := s.byWTxID[wtxid]; ok {
		return s.slot(i)
	}
	if i, ok := s.byTxID[wtxid]; ok {
		if sl := s.slot(i); !sl.witness {
			return sl
		}
	}
	return nil
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
