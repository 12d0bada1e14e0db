package mining

import (
	"errors"
	"fmt"
	"sync"
)

// MaxExtranonceSize caps the full extranonce (prefix + rollable part), as
// rust's MAX_EXTRANONCE_LEN does (DIGEST §6.3).
const MaxExtranonceSize = 32

// ErrExtranonceExhausted is returned by Allocate when every channel id of the
// local extranonce bytes is in use (or the configured channel limit is hit).
var ErrExtranonceExhausted = errors.New("extranonce space exhausted")

// ExtranonceAllocator subdivides an extranonce space — a fixed upstream
// prefix and an upstream rollable size (the pool channel's, or our own when
// solo) — into per-channel prefixes (DIGEST §6.3). The upstream rollable area
// is split into local bytes that identify a channel and DownstreamSize bytes
// that extended channels roll themselves:
//
//	full extranonce = upstream prefix ‖ channel id (local bytes, big-endian) ‖ downstream part
//
// Extended channels get prefix = upstream prefix ‖ id and extranonce_size =
// DownstreamSize. Standard channels (header-only) get the whole extranonce as
// their prefix: upstream prefix ‖ id ‖ zeros. Ids are unique across both
// kinds, so no two channels can produce the same coinbase.
//
// Rebase moves every allocation to a new upstream prefix/size (failover to
// another pool) while keeping DownstreamSize, because an open extended
// channel's extranonce_size cannot change.
//
// Safe for concurrent use: one allocator serves every downstream connection.
type ExtranonceAllocator struct {
	mu        sync.Mutex
	prefix    []byte
	size      int // upstream rollable size
	down      int // downstream rollable size for extended channels
	max       uint64
	next      uint64
	free      []uint64
	inUse     map[uint64]struct{}
	maxActive int
}

// Extranonce is one channel's allocation: its id in the local bytes.
// Prefix and size are derived from the allocator's current layout.
type Extranonce struct {
	ID       uint64
	Standard bool
}

// NewExtranonceAllocator creates an allocator for an upstream extranonce
// space of len(upstreamPrefix)+upstreamSize bytes (≤ 32), giving extended
// channels downstreamSize rollable bytes and using the remaining
// upstreamSize−downstreamSize bytes (at least 1) as channel ids. maxChannels
// bounds the allocations in use (0 = only the id space bounds them).
func NewExtranonceAllocator(upstreamPrefix []byte, upstreamSize, downstreamSize, maxChannels int) (*ExtranonceAllocator, error) {
	a := &ExtranonceAllocator{down: downstreamSize, inUse: make(map[uint64]struct{}), maxActive: maxChannels}
	if downstreamSize < 0 || maxChannels < 0 {
		return nil, fmt.Errorf("extranonce: negative downstream size %d or channel limit %d", downstreamSize, maxChannels)
	}
	if err := a.setLayout(upstreamPrefix, upstreamSize); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *ExtranonceAllocator) setLayout(prefix []byte, size int) error {
	full := len(prefix) + size
	if size < 0 || full > MaxExtranonceSize {
		return fmt.Errorf("extranonce: prefix %d + size %d bytes exceeds %d", len(prefix), size, MaxExtranonceSize)
	}
	local := size - a.down
	if local < 1 {
		return fmt.Errorf("extranonce: upstream size %d leaves no byte for channel ids after %d downstream bytes", size, a.down)
	}
	var max uint64 = 1<<63 - 1
	if local < 8 {
		max = 1<<(8*uint(local)) - 1
	}
	if a.next > max+1 {
		return fmt.Errorf("extranonce: %d local bytes cannot hold channel id %d already allocated", local, a.next-1)
	}
	a.prefix = append([]byte(nil), prefix...)
	a.size = size
	a.max = max
	return nil
}

// Rebase moves the allocator to a new upstream prefix and rollable size,
// keeping every allocation's id and the downstream size. Channels must then
// be told their new prefixes (Session.Reprefix).
func (a *ExtranonceAllocator) Rebase(upstreamPrefix []byte, upstreamSize int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.setLayout(upstreamPrefix, upstreamSize)
}

// FullSize is the full extranonce length jobs must leave room for.
func (a *ExtranonceAllocator) FullSize() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.prefix) + a.size
}

// DownstreamSize is the extranonce_size extended channels get.
func (a *ExtranonceAllocator) DownstreamSize() int { return a.down }

// UpstreamPrefix returns a copy of the current upstream prefix.
func (a *ExtranonceAllocator) UpstreamPrefix() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]byte(nil), a.prefix...)
}

// Allocate reserves a channel id. Ids are handed out fresh first and reused
// (oldest released first) only once the id space is used up, so a closed
// channel's prefix is not immediately someone else's.
func (a *ExtranonceAllocator) Allocate(standard bool) (Extranonce, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.maxActive > 0 && len(a.inUse) >= a.maxActive {
		return Extranonce{}, ErrExtranonceExhausted
	}
	var id uint64
	switch {
	case a.next <= a.max:
		id = a.next
		a.next++
	case len(a.free) > 0:
		id = a.free[0]
		a.free = a.free[1:]
	default:
		return Extranonce{}, ErrExtranonceExhausted
	}
	a.inUse[id] = struct{}{}
	return Extranonce{ID: id, Standard: standard}, nil
}

// Release returns an allocation for reuse. Releasing twice is harmless.
func (a *ExtranonceAllocator) Release(e Extranonce) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.inUse[e.ID]; !ok {
		return
	}
	delete(a.inUse, e.ID)
	a.free = append(a.free, e.ID)
}

// InUse reports the number of allocations not released.
func (a *ExtranonceAllocator) InUse() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.inUse)
}

// Prefix returns the channel's extranonce_prefix under the current layout
// and its extranonce_size (0 for standard channels).
func (a *ExtranonceAllocator) Prefix(e Extranonce) (prefix []byte, size int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	local := a.size - a.down
	n := len(a.prefix) + local
	if e.Standard {
		n += a.down
	}
	p := make([]byte, n)
	copy(p, a.prefix)
	id := e.ID
	for i := len(a.prefix) + local - 1; i >= len(a.prefix); i-- {
		p[i] = byte(id)
		id >>= 8
	}
	if e.Standard {
		return p, 0
	}
	return p, a.down
}
