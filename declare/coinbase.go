package declare

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sv2kit/sv2kit/mempool"
	"github.com/sv2kit/sv2kit/templates"
)

// MaxExtranonce is the longest extranonce a declared coinbase may leave
// room for (SRI's MAX_EXTRANONCE_LEN; PushSolution's B0_32).
const MaxExtranonce = 32

// declaredCoinbase is a DeclareMiningJob's coinbase taken apart.
type declaredCoinbase struct {
	prefix, suffix   []byte // as declared (witness form when witness)
	sprefix, ssuffix []byte // the txid (non-witness) form
	extranonceLen    int
	version          uint32
	witness          bool
	scriptPrefix     []byte // scriptSig bytes before the extranonce
	scriptSuffix     []byte // scriptSig bytes after it
	sequence         uint32
	outputVector     []byte // CompactSize count + outputs, as in the suffix
	outputs          []templates.TxOutput
	lockTime         uint32
	witOff, witEnd   int   // the witness's place in the tail parseTail read
	height           int64 // BIP34
	weight           int64
	sigops           int64
}

// coinbaseError is a rejected coinbase: the error code and the readable why.
type coinbaseError struct{ code, details string }

func cbErr(code, format string, args ...any) *coinbaseError {
	return &coinbaseError{code: code, details: fmt.Sprintf(format, args...)}
}

// parseDeclaredCoinbase reads a declared coinbase split around its
// extranonce. The extranonce length is not on the wire: it is what makes
// prefix ‖ extranonce ‖ suffix exactly one transaction whose scriptSig has
// the length its prefix announces. Layouts with the extranonce at the end of
// the scriptSig (what every known JDC sends) are tried first.
func parseDeclaredCoinbase(prefix, suffix []byte) (*declaredCoinbase, *coinbaseError) {
	cb := &declaredCoinbase{prefix: prefix, suffix: suffix}
	r := txReader{b: prefix}
	cb.version = r.u32()
	nIn := r.compact()
	if r.err == nil && nIn == 0 {
		if f := r.byte(); f != 1 {
			return nil, cbErr(CodeInvalidCoinbaseTx, "coinbase_tx_prefix: segwit marker followed by flag %#x, want 0x01", f)
		}
		cb.witness = true
		nIn = r.compact()
	}
	if r.err != nil {
		return nil, cbErr(CodeInvalidCoinbaseTx, "coinbase_tx_prefix: truncated before the input")
	}
	if nIn != 1 {
		return nil, cbErr(CodeInvalidCoinbaseTxInput, "coinbase has %d inputs; it must have exactly one", nIn)
	}
	prev := r.bytes(36)
	if prev == nil {
		return nil, cbErr(CodeInvalidCoinbaseTx, "coinbase_tx_prefix: truncated in the input's outpoint")
	}
	if !bytes.Equal(prev[:32], make([]byte, 32)) || binary.LittleEndian.Uint32(prev[32:]) != 0xffffffff {
		return nil, cbErr(CodeInvalidCoinbaseTxInput, "coinbase input spends %x:%d; a coinbase input must be null (32 zero bytes, index 0xffffffff)", prev[:32], binary.LittleEndian.Uint32(prev[32:]))
	}
	scriptLen := r.compact()
	if r.err != nil {
		return nil, cbErr(CodeInvalidCoinbaseTx, "coinbase_tx_prefix: truncated before the scriptSig length")
	}
	cb.scriptPrefix = prefix[r.off:]
	if scriptLen < 2 || scriptLen > templates.MaxScriptSigSize {
		return nil, cbErr(CodeInvalidCoinbaseTx, "coinbase scriptSig is %d bytes; consensus allows 2 to %d", scriptLen, templates.MaxScriptSigSize)
	}
	if uint64(len(cb.scriptPrefix)) > scriptLen {
		return nil, cbErr(CodeInvalidCoinbaseTx, "coinbase_tx_prefix runs %d bytes past the %d-byte scriptSig; it must end where the extranonce starts", uint64(len(cb.scriptPrefix))-scriptLen, scriptLen)
	}
	remain := int(scriptLen) - len(cb.scriptPrefix)
	found := false
	for e := min(remain, MaxExtranonce); e >= 0; e-- {
		rest := remain - e
		if rest > len(suffix) {
			continue
		}
		if cb.parseTail(suffix[rest:]) {
			cb.extranonceLen = e
			cb.scriptSuffix = suffix[:rest]
			found = true
			break
		}
	}
	if !found {
		if remain > MaxExtranonce && !cb.parseTailAny(suffix) {
			return nil, cbErr(CodeInvalidCoinbaseTx, "coinbase_tx_suffix does not parse as the end of a coinbase (sequence, outputs, witness, locktime)")
		}
		return nil, cbErr(CodeInvalidCoinbaseTx, "no extranonce of 0 to %d bytes makes prefix ‖ extranonce ‖ suffix one coinbase transaction (scriptSig %d bytes, %d of them in the prefix)", MaxExtranonce, scriptLen, len(cb.scriptPrefix))
	}
	h, _, ok := templates.ParseHeightScript(cb.scriptPrefix)
	if !ok {
		return nil, cbErr(CodeInvalidCoinbaseTx, "coinbase scriptSig does not start with a BIP34 height push (inside coinbase_tx_prefix)")
	}
	cb.height = h
	cb.sprefix, cb.ssuffix = prefix, suffix
	if cb.witness {
		// The txid form: no marker and flag, no witness (whatever it holds).
		rest := len(cb.scriptSuffix)
		cb.sprefix = append(append(make([]byte, 0, len(prefix)-2), prefix[:4]...), prefix[6:]...)
		cb.ssuffix = append(append(make([]byte, 0, len(suffix)), suffix[:rest+cb.witOff]...), suffix[rest+cb.witEnd:]...)
	}
	full := len(prefix) + cb.extranonceLen + len(suffix)
	base := len(cb.sprefix) + cb.extranonceLen + len(cb.ssuffix)
	cb.weight = int64(base*3 + full)
	cb.sigops = 4 * int64(mempool.LegacySigOps(cb.scriptPrefix)+mempool.LegacySigOps(cb.scriptSuffix))
	for _, o := range cb.outputs {
		cb.sigops += 4 * int64(mempool.LegacySigOps(o.PkScript))
	}
	return cb, nil
}

// parseTailAny reports whether some tail of suffix parses (for the error
// message only).
func (cb *declaredCoinbase) parseTailAny(suffix []byte) bool {
	for i := 0; i <= len(suffix) && i <= templates.MaxScriptSigSize; i++ {
		c := *cb
		if c.parseTail(suffix[i:]) {
			return true
		}
	}
	return false
}

// parseTail reads sequence, outputs, witness (if any) and locktime, which
// must use up tail exactly.
func (cb *declaredCoinbase) parseTail(tail []byte) bool {
	r := txReader{b: tail}
	seq := r.u32()
	start := r.off
	n := r.compact()
	if r.err != nil || n == 0 || n > uint64(r.left()/9) {
		return false
	}
	outs := make([]templates.TxOutput, 0, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		v := r.bytes(8)
		s := r.bytes(r.compact())
		if r.err != nil {
			return false
		}
		outs = append(outs, templates.TxOutput{Value: int64(binary.LittleEndian.Uint64(v)), PkScript: s})
	}
	end := r.off
	witOff := r.off
	if cb.witness {
		items := r.compact()
		if r.err != nil || items == 0 || items > uint64(r.left()) {
			return false // a witness flag needs a witness
		}
		for j := uint64(0); j < items && r.err == nil; j++ {
			r.skip(r.compact())
		}
	}
	witEnd := r.off
	lt := r.u32()
	if r.err != nil || r.off != len(tail) {
		return false
	}
	cb.sequence, cb.outputs, cb.outputVector, cb.lockTime = seq, outs, tail[start:end], lt
	cb.witOff, cb.witEnd = witOff, witEnd
	return true
}

// coinbase returns the serialized coinbase with an extranonce, in witness
// form (as it goes into the block) and its txid.
func (cb *declaredCoinbase) coinbase(extranonce []byte) (raw []byte, txid [32]byte) {
	raw = make([]byte, 0, len(cb.prefix)+len(extranonce)+len(cb.suffix))
	raw = append(append(append(raw, cb.prefix...), extranonce...), cb.suffix...)
	s := make([]byte, 0, len(cb.sprefix)+len(extranonce)+len(cb.ssuffix))
	s = append(append(append(s, cb.sprefix...), extranonce...), cb.ssuffix...)
	return raw, templates.DoubleSHA256(s)
}

// errTx is a coinbase part that does not parse; parseDeclaredCoinbase
// turns it into a coinbaseError that says where.
var errTx = errors.New("malformed transaction")

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
