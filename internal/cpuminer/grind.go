package cpuminer

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/sv2kit/sv2kit/templates"
)

// VersionRollingMask is the BIP323 general-purpose version bits a standard
// channel may roll (DIGEST §6.5).
const VersionRollingMask uint32 = 0x1fffffe0

// chunkBits splits the 32-bit nonce space into 2^(32-chunkBits) chunks, so
// several workers grind one header template without overlap and each one
// looks at new work at least once per chunk.
const chunkBits = 24

// work is one activated job as the grinders see it. It is immutable except
// for target (tightened by SetTarget) and segments (the shared cursor into
// the job's search space); done is closed when the work is superseded.
type work struct {
	session   uint64 // the connection the job came from
	channelID uint32
	jobID     uint32
	version   uint32
	mask      uint32 // version bits that may be rolled (0: fixed version)
	prevHash  [32]byte
	merkle    [32]byte
	nbits     uint32
	minNTime  uint32
	received  time.Time // ntime may advance by the seconds elapsed since
	netTarget [32]byte

	target   atomic.Pointer[[32]byte]
	segments *atomic.Uint64
	done     chan struct{}
}

// idle reports the placeholder work that means "nothing to mine".
func (w *work) idle() bool { return w.segments == nil }

// found is a header that met the share target.
type found struct {
	w       *work
	nonce   uint32
	ntime   uint32
	version uint32
	hash    [32]byte
	block   bool // also met the network target
}

// grinder holds the current work and runs the hashing goroutines.
type grinder struct {
	cur     atomic.Pointer[work]
	found   chan found
	dropped atomic.Uint64
	hashes  atomic.Uint64
	blocks  atomic.Uint64
	rate    float64 // hashes/s per worker; 0 = unlimited
}

func newGrinder(workers int, totalRate float64, queue int) *grinder {
	g := &grinder{found: make(chan found, queue)}
	if totalRate > 0 {
		g.rate = totalRate / float64(workers)
	}
	g.cur.Store(&work{done: make(chan struct{})})
	return g
}

// set replaces the current work (nil: stop mining) and wakes the workers.
func (g *grinder) set(w *work) {
	if w == nil {
		w = &work{done: make(chan struct{})}
	}
	old := g.cur.Swap(w)
	close(old.done)
}

// run is one hashing goroutine; it returns when ctx ends.
func (g *grinder) run(ctx context.Context) {
	lim := limiter{rate: g.rate}
	batch := uint32(4096)
	if g.rate > 0 {
		// Small batches under a cap, so a low rate is spread evenly and a
		// new job is picked up within a batch's time.
		batch = uint32(min(max(g.rate/20, 1), 4096))
		// A random phase: devices started together must not hash in
		// lockstep (at a fraction of a hash per second on regtest they
		// would find competing blocks at the same instant).
		lim.next = time.Now().Add(time.Duration(rand.Float64() * float64(batch) / g.rate * float64(time.Second)))
	}
	for {
		w := g.cur.Load()
		if w.idle() {
			select {
			case <-w.done:
				continue
			case <-ctx.Done():
				return
			}
		}
		if !g.segment(ctx, w, &lim, batch) {
			return
		}
	}
}

// segment grinds one chunk of the nonce space of the next header variant
// (version roll or ntime) of w. It returns false when ctx ended.
func (g *grinder) segment(ctx context.Context, w *work, lim *limiter, batch uint32) bool {
	s := w.segments.Add(1) - 1
	chunk := uint32(s) & (1<<(32-chunkBits) - 1)
	roll := s >> (32 - chunkBits)

	var hdr [80]byte
	version := w.version
	if w.mask != 0 {
		version = w.version&^w.mask | deposit(uint32(roll), w.mask)
	}
	ntime := w.minNTime
	if el := time.Since(w.received); el > 0 {
		ntime += uint32(el / time.Second)
	}
	binary.LittleEndian.PutUint32(hdr[0:], version)
	copy(hdr[4:36], w.prevHash[:])
	copy(hdr[36:68], w.merkle[:])
	binary.LittleEndian.PutUint32(hdr[68:], ntime)
	binary.LittleEndian.PutUint32(hdr[72:], w.nbits)

	start := chunk << chunkBits
	const chunkLen = 1 << chunkBits
	for off := uint32(0); off < chunkLen; off += batch {
		if !lim.wait(ctx, w.done, batch) {
			return ctx.Err() == nil
		}
		select {
		case <-w.done:
			return true
		default:
		}
		n := min(batch, chunkLen-off)
		scan(&hdr, start+off, n, w.target.Load(), func(nonce uint32, h *[32]byte) {
			f := found{w: w, nonce: nonce, ntime: ntime, version: version, hash: *h,
				block: templates.MeetsTarget(h, &w.netTarget)}
			if f.block {
				g.blocks.Add(1)
			}
			select {
			case g.found <- f:
			default:
				g.dropped.Add(1) // the connection is not keeping up; never block hashing
			}
		})
		g.hashes.Add(uint64(n))
	}
	return true
}

// scan hashes the header with nonces start … start+n-1 and calls hit for
// each hash at or below target.
func scan(hdr *[80]byte, start, n uint32, target *[32]byte, hit func(nonce uint32, hash *[32]byte)) {
	var h [32]byte // outside the loop: it escapes to hit once, not per hash
	for i := uint32(0); i < n; i++ {
		nonce := start + i
		binary.LittleEndian.PutUint32(hdr[76:], nonce)
		h1 := sha256.Sum256(hdr[:])
		h = sha256.Sum256(h1[:])
		// Quick reject on the top byte before the full comparison.
		if h[31] > target[31] || !templates.MeetsTarget(&h, target) {
			continue
		}
		hit(nonce, &h)
	}
}

// deposit spreads the low bits of v over the set bits of mask (PDEP).
func deposit(v, mask uint32) uint32 {
	var out uint32
	for m := mask; m != 0 && v != 0; v >>= 1 {
		low := m & -m
		if v&1 != 0 {
			out |= low
		}
		m &^= low
	}
	return out
}

// limiter paces one worker to rate hashes per second (0: unlimited).
type limiter struct {
	rate float64
	next time.Time
}

// wait blocks until n more hashes fit under the rate. It returns false
// without consuming when ctx ends or stale closes first.
func (l *limiter) wait(ctx context.Context, stale <-chan struct{}, n uint32) bool {
	if l.rate <= 0 {
		return ctx.Err() == nil
	}
	now := time.Now()
	// At most one second of unused allowance is carried forward.
	if l.next.Before(now.Add(-time.Second)) {
		l.next = now.Add(-time.Second)
	}
	if d := l.next.Sub(now); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		case <-stale:
			return false
		}
	}
	l.next = l.next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	return true
}
