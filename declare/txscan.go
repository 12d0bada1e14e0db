package declare

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// outpoint is a spent output, the key of the in-block double-spend check.
type outpoint struct {
	hash  [32]byte
	index uint32
}

// txInfo is what the declaration checks need of a transaction.
type txInfo struct {
	txid   [32]byte
	wtxid  [32]byte // only when scanTx was asked for it
	weight int64
	sigops int64 // legacy sigop cost (scriptSig and scriptPubKey, ×4)
}

// maxTxBytes bounds one transaction: it cannot weigh more than a block.
const maxTxBytes = 4_000_000

var errTx = errors.New("malformed transaction")

// scanTx reads a raw transaction (with or without witness) in one pass
// without allocating: it computes the txid (and the wtxid if asked), the
// weight and the legacy sigop cost, and calls spend for every input's
// outpoint. It fails on anything that is not exactly one transaction.
func scanTx(raw []byte, wantWTxID bool, spend func(op outpoint)) (txInfo, error) {
	var ti txInfo
	if len(raw) > maxTxBytes {
		return ti, fmt.Errorf("%w: %d bytes", errTx, len(raw))
	}
	r := txReader{b: raw}
	r.skip(4)
	nIn := r.compact()
	witness := false
	if nIn == 0 && r.err == nil {
		if f := r.byte(); f != 1 {
			return ti, fmt.Errorf("%w: witness flag %#x", errTx, f)
		}
		witness = true
		nIn = r.compact()
	}
	if nIn == 0 || (r.err == nil && nIn > uint64(r.left()/41)) {
		return ti, fmt.Errorf("%w: %d inputs", errTx, nIn)
	}
	var sigops int64
	for i := uint64(0); i < nIn && r.err == nil; i++ {
		if r.left() < 36 {
			r.err = errTx
			break
		}
		if spend != nil {
			var op outpoint
			copy(op.hash[:], raw[r.off:r.off+32])
			op.index = binary.LittleEndian.Uint32(raw[r.off+32:])
			spend(op)
		}
		r.skip(36)
		sigops += countSigOps(r.bytes(r.compact()))
		r.skip(4)
	}
	nOut := r.compact()
	if r.err == nil && nOut > uint64(r.left()/9) {
		return ti, fmt.Errorf("%w: %d outputs", errTx, nOut)
	}
	for i := uint64(0); i < nOut && r.err == nil; i++ {
		r.skip(8)
		sigops += countSigOps(r.bytes(r.compact()))
	}
	witStart := r.off
	if witness {
		nonEmpty := false
		for i := uint64(0); i < nIn && r.err == nil; i++ {
			items := r.compact()
			if r.err == nil && items > uint64(r.left()) {
				r.err = errTx
				break
			}
			nonEmpty = nonEmpty || items > 0
			for j := uint64(0); j < items && r.err == nil; j++ {
				r.skip(r.compact())
			}
		}
		if r.err == nil && !nonEmpty {
			// Consensus refuses a witness flag without any witness.
			return ti, fmt.Errorf("%w: witness flag set but no input has a witness", errTx)
		}
	}
	witEnd := r.off
	r.skip(4)
	if r.err != nil {
		return ti, fmt.Errorf("%w: truncated", errTx)
	}
	if r.off != len(raw) {
		return ti, fmt.Errorf("%w: %d bytes after the transaction", errTx, len(raw)-r.off)
	}
	base := len(raw)
	if witness {
		h := sha256.New()
		h.Write(raw[:4])
		h.Write(raw[6:witStart])
		h.Write(raw[witEnd:])
		var first [32]byte
		h.Sum(first[:0])
		ti.txid = sha256.Sum256(first[:])
		base = len(raw) - 2 - (witEnd - witStart)
		if wantWTxID {
			ti.wtxid = dsha(raw)
		}
	} else {
		ti.txid = dsha(raw)
		ti.wtxid = ti.txid
	}
	ti.weight = int64(base*3 + len(raw))
	ti.sigops = sigops * 4
	return ti, nil
}

func dsha(b []byte) [32]byte {
	h := sha256.Sum256(b)
	return sha256.Sum256(h[:])
}

// countSigOps counts a script's legacy (inaccurate) sigops the way
// consensus does for the block limit: CHECKSIG 1, CHECKMULTISIG 20.
// A script that ends in the middle of a push stops the count.
func countSigOps(s []byte) int64 {
	var n int64
	for i := 0; i < len(s); {
		op := s[i]
		i++
		switch {
		case op >= 0x01 && op <= 0x4b:
			i += int(op)
		case op == 0x4c:
			if i >= len(s) {
				return n
			}
			i += 1 + int(s[i])
		case op == 0x4d:
			if i+2 > len(s) {
				return n
			}
			i += 2 + int(binary.LittleEndian.Uint16(s[i:]))
		case op == 0x4e:
			if i+4 > len(s) {
				return n
			}
			i += 4 + int(binary.LittleEndian.Uint32(s[i:]))
		case op == 0xac || op == 0xad:
			n++
		case op == 0xae || op == 0xaf:
			n += 20
		}
	}
	return n
}

// txReader walks a byte slice; the first error sticks.
type txReader struct {
	b   []byte
	off int
	err error
}

func (r *txReader) left() int { return len(r.b) - r.off }

func (r *txReader) skip(n uint64) {
	if r.err != nil {
		return
	}
	if n > uint64(r.left()) {
		r.err = errTx
		return
	}
	r.off += int(n)
}

func (r *txReader) bytes(n uint64) []byte {
	start := r.off
	r.skip(n)
	if r.err != nil {
		return nil
	}
	return r.b[start:r.off]
}

func (r *txReader) byte() byte {
	if r.err != nil || r.left() < 1 {
		r.err = errTx
		return 0
	}
	r.off++
	return r.b[r.off-1]
}

func (r *txReader) u32() uint32 {
	b := r.bytes(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

// compact reads a CompactSize, refusing non-canonical encodings as
// consensus does.
func (r *txReader) compact() uint64 {
	first := r.byte()
	if r.err != nil {
		return 0
	}
	var v, min uint64
	switch first {
	case 0xfd:
		b := r.bytes(2)
		if b == nil {
			return 0
		}
		v, min = uint64(binary.LittleEndian.Uint16(b)), 0xfd
	case 0xfe:
		b := r.bytes(4)
		if b == nil {
			return 0
		}
		v, min = uint64(binary.LittleEndian.Uint32(b)), 0x10000
	case 0xff:
		b := r.bytes(8)
		if b == nil {
			return 0
		}
		v, min = binary.LittleEndian.Uint64(b), 0x100000000
	default:
		return uint64(first)
	}
	if v < min {
		r.err = errTx
		return 0
	}
	return v
}

// walkInputs calls spend for every input's outpoint of a transaction that
// scanTx accepted before.
func walkInputs(raw []byte, spend func(op outpoint)) error {
	r := txReader{b: raw}
	r.skip(4)
	nIn := r.compact()
	if nIn == 0 && r.err == nil {
		r.byte()
		nIn = r.compact()
	}
	for i := uint64(0); i < nIn && r.err == nil; i++ {
		if r.left() < 36 {
			return errTx
		}
		var op outpoint
		copy(op.hash[:], raw[r.off:r.off+32])
		op.index = binary.LittleEndian.Uint32(raw[r.off+32:])
		spend(op)
		r.skip(36)
		r.skip(r.compact())
		r.skip(4)
	}
	if r.err != nil {
		return fmt.Errorf("%w: truncated", errTx)
	}
	return nil
}
