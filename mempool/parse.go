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

// TxInfo is what ScanTx learns about a transaction in one pass over its
// bytes.
type TxInfo struct {
	TxID chainhash.Hash
	// WTxID is computed only with ScanOptions.WTxID (it costs one more hash
	// of the whole transaction); without witness it always equals TxID.
	WTxID     chainhash.Hash
	Weight    int // BIP141: 3 × size without witness + size with it
	NIn, NOut int
	Witness   bool
	// SigOps is the legacy sigop count of the scriptSigs and output scripts
	// (LegacySigOps; the block limit's sigop cost is 4 × this), counted only
	// with ScanOptions.SigOps.
	SigOps int
}

// VSize is the virtual size, ceil(weight / 4).
func (t *TxInfo) VSize() int { return (t.Weight + 3) / 4 }

// ScanOptions says what ScanTx does besides checking the transaction and
// computing its txid and weight.
type ScanOptions struct {
	WTxID  bool // compute TxInfo.WTxID
	SigOps bool // count TxInfo.SigOps
	// Spend, if set, is called with the outpoint of every input in order,
	// while scanning: a transaction that turns out malformed may already
	// have reported some.
	Spend func(op wire.OutPoint)
}

// ScanTx checks that raw is exactly one transaction in consensus
// serialization (with or without witness, canonical compact sizes, no
// trailing bytes, no empty witness record behind a witness flag) and
// computes its ids and size. It accepts what btcd's wire.MsgTx accepts for a
// buffer of at most MaxTxSize bytes (FuzzStoreAdd checks this), but it never
// allocates, so hostile counts cost nothing: every count must fit in the
// bytes that remain. Errors wrap ErrMalformed.
func ScanTx(raw []byte, opt ScanOptions) (TxInfo, error) {
	var ti TxInfo
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
		ti.Witness = true
		nIn = r.compact()
	}
	// Every input takes at least 41 bytes, every output 9.
	if r.err == nil && nIn > uint64(r.left()/41) {
		return ti, fmt.Errorf("%w: %d inputs cannot fit in %d bytes", ErrMalformed, nIn, r.left())
	}
	for i := uint64(0); i < nIn && r.err == nil; i++ {
		if opt.Spend != nil && r.left() >= 36 {
			opt.Spend(outpointAt(raw, r.off))
		}
		r.skip(36) // outpoint
		ti.SigOps += r.script(opt.SigOps)
		r.skip(4) // sequence
	}
	nOut := r.compact()
	if r.err == nil && nOut > uint64(r.left()/9) {
		return ti, fmt.Errorf("%w: %d outputs cannot fit in %d bytes", ErrMalformed, nOut, r.left())
	}
	for i := uint64(0); i < nOut && r.err == nil; i++ {
		r.skip(8) // value
		ti.SigOps += r.script(opt.SigOps)
	}
	witStart := r.off
	if ti.Witness {
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
	ti.NIn, ti.NOut = int(nIn), int(nOut)

	base := len(raw)
	if ti.Witness {
		// txid: the serialization without marker, flag and witnesses.
		h := sha256.New()
		h.Write(raw[:4])
		h.Write(raw[6:witStart])
		h.Write(raw[witEnd:])
		var first [32]byte
		h.Sum(first[:0])
		ti.TxID = sha256.Sum256(first[:])
		base = len(raw) - 2 - (witEnd - witStart)
		if opt.WTxID {
			ti.WTxID = chainhash.DoubleHashH(raw)
		}
	} else {
		ti.TxID = chainhash.DoubleHashH(raw)
		ti.WTxID = ti.TxID
	}
	ti.Weight = base*3 + len(raw)
	return ti, nil
}

// txInfo is what the store needs to know about a transaction.
type txInfo struct {
	txid, wtxid chainhash.Hash
	vsize       int // ceil(weight/4)
	witness     bool
}

// parseTx is ScanTx with the wtxid, in the store's terms.
func parseTx(raw []byte) (txInfo, error) {
	t, err := ScanTx(raw, ScanOptions{WTxID: true})
	return txInfo{txid: t.TxID, wtxid: t.WTxID, vsize: t.VSize(), witness: t.Witness}, err
}

func outpointAt(raw []byte, off int) wire.OutPoint {
	var op wire.OutPoint
	copy(op.Hash[:], raw[off:off+32])
	op.Index = binary.LittleEndian.Uint32(raw[off+32:])
	return op
}

// WalkInputs calls f with the outpoint each input of raw spends, in order,
// and returns the number of outputs, reading no further than that. It is
// for a transaction ScanTx accepted: it does not check the rest.
func WalkInputs(raw []byte, f func(op wire.OutPoint)) (nOut int, err error) {
	r := reader{b: raw}
	r.skip(4)
	nIn := r.compact()
	if nIn == 0 && r.err == nil {
		r.skip(1)
		nIn = r.compact()
	}
	for i := uint64(0); i < nIn && r.err == nil; i++ {
		if r.left() < 36 {
			r.fail("outpoint")
			break
		}
		op := outpointAt(raw, r.off)
		r.skip(36)
		r.skip(r.compact())
		r.skip(4)
		if r.err == nil && f != nil {
			f(op)
		}
	}
	n := r.compact()
	if r.err != nil {
		return 0, r.err
	}
	return int(n), nil
}

// LegacySigOps counts a script's sigops the way consensus does for the
// block's legacy limit: CHECKSIG(VERIFY) 1, CHECKMULTISIG(VERIFY) 20,
// pushed data skipped; a script that ends inside a push stops the count.
func LegacySigOps(s []byte) int {
	n := 0
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

// script skips a CompactSize-prefixed script and returns its legacy sigops
// when count is set.
func (r *reader) script(count bool) int {
	n := r.compact()
	if r.err == nil && count && n <= uint64(r.left()) {
		c := LegacySigOps(r.b[r.off : r.off+int(n)])
		r.skip(n)
		return c
	}
	r.skip(n)
	return 0
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
