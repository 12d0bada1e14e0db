package mempool

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// MaxTxSize bounds one raw transaction: a transaction cannot weigh more than
// a block (4,000,000 weight units), so its serialization with witness cannot
// exceed 4,000,000 bytes.
const MaxTxSize = 4_000_000

// ErrMalformed wraps every reason a raw transaction is rejected by the parser.
var ErrMalformed = errors.New("malformed transaction")

// txInfo is what the store needs to know about a transaction, computed by
// one bounded pass over its bytes without allocating its parts.
type txInfo struct {
	txid, wtxid chainhash.Hash
	vsize       int // ceil(weight/4)
	nIn, nOut   int
	witness     bool
}

// parseTx checks that raw is exactly one transaction in consensus
// serialization (with or without witness, canonical compact sizes, no
// trailing bytes, no empty witness record behind a witness flag) and
// computes its ids and size. It accepts what btcd's wire.MsgTx accepts for a
// buffer of at most MaxTxSize bytes (FuzzParseMatchesWire checks this), but
// it never allocates per input or output, so hostile counts cost nothing:
// every count must fit in the bytes that remain.
func parseTx(raw []byte) (txInfo, error) {
	var ti txInfo
	if len(raw) > MaxTxSize {
		return ti, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(raw), MaxTxSize)
	}
	r := reader{b: raw}
	r.skip(4) // version
	nIn := r.compact()
	if nIn == 0 && r.err == nil {
		// A zero input count is the segwit marker; the flag must be 1.
		if f := r.byte(); r.err == nil && f != 0x01 {
			return ti, fmt.Errorf("%w: witness flag %#x", ErrMalformed, f)
		}
		ti.witness = true
		nIn = r.compact()
	}
	// Every input takes at least 41 bytes, every output 9.
	if r.err == nil && nIn > uint64(r.left()/41) {
		return ti, fmt.Errorf("%w: %d inputs cannot fit in %d bytes", ErrMalformed, nIn, r.left())
	}
	for i := uint64(0); i < nIn && r.err == nil; i++ {
		r.skip(36) // outpoint
		r.skip(r.compact())
		r.skip(4) // sequence
	}
	nOut := r.compact()
	if r.err == nil && nOut > uint64(r.left()/9) {
		return ti, fmt.Errorf("%w: %d outputs cannot fit in %d bytes", ErrMalformed, nOut, r.left())
	}
	for i := uint64(0); i < nOut && r.err == nil; i++ {
		r.skip(8) // value
		r.skip(r.compact())
	}
	witStart := r.off
	if ti.witness {
		nonEmpty := false
		for i := uint64(0); i < nIn && r.err == nil; i++ {
			items := r.compact()
			if r.err == nil && items > uint64(r.left()) {
				return ti, fmt.Errorf("%w: %d witness items cannot fit in %d bytes", ErrMalformed, items, r.left())
			}
			if items > 0 {
				nonEmpty = true
			}
			for j := uint64(0); j < items && r.err == nil; j++ {
				r.skip(r.compact())
			}
		}
		if r.err == nil && !nonEmpty {
			return ti, fmt.Errorf("%w: witness flag set but no witness", ErrMalformed)
		}
	}
	witEnd := r.off
	r.skip(4) // lock time
	if r.err != nil {
		return ti, r.err
	}
	if r.off != len(raw) {
		return ti, fmt.Errorf("%w: %d bytes after the transaction", ErrMalformed, len(raw)-r.off)
	}
	ti.nIn, ti.nOut = int(nIn), int(nOut)

	ti.wtxid = chainhash.DoubleHashH(raw)
	base := len(raw)
	if ti.witness {
		// txid: the serialization without marker, flag and witnesses.
		h := sha256.New()
		h.Write(raw[:4])
		h.Write(raw[6:witStart])
		h.Write(raw[witEnd:])
		var first [32]byte
		h.Sum(first[:0])
		ti.txid = sha256.Sum256(first[:])
		base = len(raw) - 2 - (witEnd - witStart)
	} else {
		ti.txid = ti.wtxid
	}
	weight := base*3 + len(raw)
	ti.vsize = (weight + 3) / 4
	return ti, nil
}

// walkTx calls f with the outpoint each input of raw spends and returns the
// number of outputs. raw must have passed parseTx.
func walkTx(raw []byte, f func(op wire.OutPoint)) (nOut int) {
	r := reader{b: raw}
	r.skip(4)
	nIn := r.compact()
	if nIn == 0 {
		r.skip(1)
		nIn = r.compact()
	}
	for i := uint64(0); i < nIn && r.err == nil; i++ {
		if r.left() < 36 {
			return 0
		}
		var op wire.OutPoint
		copy(op.Hash[:], raw[r.off:r.off+32])
		op.Index = binary.LittleEndian.Uint32(raw[r.off+32:])
		r.skip(36)
		r.skip(r.compact())
		r.skip(4)
		if f != nil {
			f(op)
		}
	}
	n := r.compact()
	if r.err != nil {
		return 0
	}
	return int(n)
}

// reader walks a byte slice; the first error sticks and later reads are
// no-ops, so callers check r.err once per step.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated at byte %d (%s)", ErrMalformed, r.off, what)
	}
}

func (r *reader) skip(n uint64) {
	if r.err != nil {
		return
	}
	if n > uint64(r.left()) {
		r.fail("field")
		return
	}
	r.off += int(n)
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.left() < 1 {
		r.fail("byte")
		return 0
	}
	r.off++
	return r.b[r.off-1]
}

// compact reads a CompactSize and rejects non-canonical encodings, as btcd
// and Bitcoin Core do.
func (r *reader) compact() uint64 {
	d := r.byte()
	if r.err != nil {
		return 0
	}
	var n int
	var min uint64
	switch d {
	case 0xfd:
		n, min = 2, 0xfd
	case 0xfe:
		n, min = 4, 0x10000
	case 0xff:
		n, min = 8, 0x100000000
	default:
		return uint64(d)
	}
	if r.left() < n {
		r.fail("compact size")
		return 0
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(r.b[r.off+i])
	}
	r.off += n
	if v < min {
		r.err = fmt.Errorf("%w: non-canonical compact size %d at byte %d", ErrMalformed, v, r.off-n-1)
		return 0
	}
	return v
}
