package templates

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxScriptSigSize is the consensus limit on a coinbase scriptSig; the
// minimum is 2 bytes.
const MaxScriptSigSize = 100

// witnessCommitmentHeader starts the BIP141 commitment output script:
// OP_RETURN, push 36, 0xaa21a9ed.
var witnessCommitmentHeader = []byte{0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed}

// Coinbase describes a coinbase transaction with a gap for the extranonce in
// its scriptSig: scriptSig = ScriptSigPrefix ‖ extranonce ‖ ScriptSigSuffix.
type Coinbase struct {
	Version         uint32
	ScriptSigPrefix []byte
	ExtranonceSize  int
	ScriptSigSuffix []byte
	Sequence        uint32
	// Outputs are consensus-serialized outputs back to back, without a count.
	Outputs     []byte
	OutputCount int
	LockTime    uint32
	// Witness adds the BIP141 marker and flag and the 32-byte zero witness
	// reserved value; required when the block carries a witness commitment.
	Witness bool
}

// Validate checks the consensus limits that do not depend on the extranonce value.
func (c *Coinbase) Validate() error {
	n := len(c.ScriptSigPrefix) + c.ExtranonceSize + len(c.ScriptSigSuffix)
	if n < 2 || n > MaxScriptSigSize {
		return fmt.Errorf("coinbase scriptSig is %d bytes; consensus allows 2 to %d", n, MaxScriptSigSize)
	}
	if c.OutputCount < 1 {
		return errors.New("coinbase has no outputs")
	}
	return nil
}

// Parts returns the serialized coinbase before and after the extranonce,
// with witness data when witness is true (and c.Witness is set).
func (c *Coinbase) Parts(witness bool) (prefix, suffix []byte) {
	witness = witness && c.Witness
	scriptLen := len(c.ScriptSigPrefix) + c.ExtranonceSize + len(c.ScriptSigSuffix)
	prefix = make([]byte, 0, 4+2+1+36+9+len(c.ScriptSigPrefix))
	prefix = binary.LittleEndian.AppendUint32(prefix, c.Version)
	if witness {
		prefix = append(prefix, 0x00, 0x01)
	}
	prefix = append(prefix, 0x01)                   // one input
	prefix = append(prefix, make([]byte, 32)...)    // null prevout hash
	prefix = append(prefix, 0xff, 0xff, 0xff, 0xff) // prevout index
	prefix = appendVarInt(prefix, uint64(scriptLen))
	prefix = append(prefix, c.ScriptSigPrefix...)

	suffix = make([]byte, 0, len(c.ScriptSigSuffix)+4+9+len(c.Outputs)+34+4)
	suffix = append(suffix, c.ScriptSigSuffix...)
	suffix = binary.LittleEndian.AppendUint32(suffix, c.Sequence)
	suffix = appendVarInt(suffix, uint64(c.OutputCount))
	suffix = append(suffix, c.Outputs...)
	if witness {
		suffix = append(suffix, 0x01, 0x20)
		suffix = append(suffix, make([]byte, 32)...)
	}
	suffix = binary.LittleEndian.AppendUint32(suffix, c.LockTime)
	return prefix, suffix
}

// Bytes serializes the coinbase with the given extranonce.
func (c *Coinbase) Bytes(extranonce []byte, witness bool) []byte {
	p, s := c.Parts(witness)
	out := make([]byte, 0, len(p)+len(extranonce)+len(s))
	out = append(out, p...)
	out = append(out, extranonce...)
	return append(out, s...)
}

// StripWitness turns the witness form of a coinbase split around its
// extranonce into the non-witness form whose hash is the txid, the way the
// Mining Protocol carries it (DIGEST §6.4): drop the marker and flag after
// the version and the 34-byte witness (one item of 32 zero bytes) before the
// locktime. Parts that are not in witness form are returned unchanged.
func StripWitness(prefix, suffix []byte) ([]byte, []byte) {
	if len(prefix) >= 6 && prefix[4] == 0x00 && prefix[5] != 0x00 {
		p := make([]byte, 0, len(prefix)-2)
		p = append(p, prefix[:4]...)
		prefix = append(p, prefix[6:]...)
		if n := len(suffix); n >= 38 && suffix[n-38] == 0x01 && suffix[n-37] == 0x20 {
			s := make([]byte, 0, n-34)
			s = append(s, suffix[:n-38]...)
			suffix = append(s, suffix[n-4:]...)
		}
	}
	return prefix, suffix
}

// TxOutput is one coinbase output.
type TxOutput struct {
	Value    int64
	PkScript []byte
}

// SerializeOutputs writes outputs back to back without a count.
func SerializeOutputs(outs []TxOutput) []byte {
	var b []byte
	for _, o := range outs {
		b = binary.LittleEndian.AppendUint64(b, uint64(o.Value))
		b = appendVarInt(b, uint64(len(o.PkScript)))
		b = append(b, o.PkScript...)
	}
	return b
}

// ParseOutputs reads exactly count outputs written back to back without a
// count prefix (NewTemplate.coinbase_tx_outputs) and fails on leftover bytes.
func ParseOutputs(raw []byte, count int) ([]TxOutput, error) {
	if count < 0 || count > len(raw)/9 {
		return nil, fmt.Errorf("outputs: count %d does not fit in %d bytes", count, len(raw))
	}
	// Parsed by hand: wire.ReadTxOut borrows from btcd's script free list and
	// allocated megabytes per call, and this runs once per job.
	outs := make([]TxOutput, 0, count)
	rest := raw
	for i := 0; i < count; i++ {
		if len(rest) < 9 {
			return nil, fmt.Errorf("output %d: %d bytes left, need at least 9", i, len(rest))
		}
		value := int64(binary.LittleEndian.Uint64(rest))
		n, k, ok := ReadCompactSize(rest[8:])
		if !ok {
			return nil, fmt.Errorf("output %d: truncated or non-canonical script length", i)
		}
		rest = rest[8+k:]
		if n > uint64(len(rest)) {
			return nil, fmt.Errorf("output %d: script of %d bytes, %d left", i, n, len(rest))
		}
		outs = append(outs, TxOutput{Value: value, PkScript: bytes.Clone(rest[:n])})
		rest = rest[n:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("outputs: %d bytes left after %d outputs", len(rest), count)
	}
	return outs, nil
}

// ParseOutputVector reads a CompactSize-prefixed output vector (the form of
// AllocateMiningJobToken.Success and SetCustomMiningJob outputs).
func ParseOutputVector(raw []byte) ([]TxOutput, error) {
	n, k, ok := ReadCompactSize(raw)
	if !ok {
		return nil, errors.New("output count: truncated or non-canonical CompactSize")
	}
	if n > uint64(len(raw)/9) {
		return nil, fmt.Errorf("output count %d does not fit in %d bytes", n, len(raw))
	}
	return ParseOutputs(raw[k:], int(n))
}

// ReadCompactSize reads a canonical CompactSize from b: the value, its
// length, and false when b is short or the encoding is not minimal (as
// consensus serialization never produces and btcd refuses).
func ReadCompactSize(b []byte) (v uint64, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch b[0] {
	case 0xfd:
		if len(b) < 3 {
			return 0, 0, false
		}
		v = uint64(binary.LittleEndian.Uint16(b[1:]))
		return v, 3, v >= 0xfd
	case 0xfe:
		if len(b) < 5 {
			return 0, 0, false
		}
		v = uint64(binary.LittleEndian.Uint32(b[1:]))
		return v, 5, v > 0xffff
	case 0xff:
		if len(b) < 9 {
			return 0, 0, false
		}
		v = binary.LittleEndian.Uint64(b[1:])
		return v, 9, v > 0xffffffff
	default:
		return uint64(b[0]), 1, true
	}
}

// SerializeOutputVector writes a CompactSize-prefixed output vector.
func SerializeOutputVector(outs []TxOutput) []byte {
	return append(appendVarInt(nil, uint64(len(outs))), SerializeOutputs(outs)...)
}

// WitnessCommitment computes the BIP141 commitment hash over the wtxids of the
// non-coinbase transactions in block order (the coinbase's wtxid counts as
// zero) and a zero witness reserved value.
func WitnessCommitment(wtxids [][32]byte) [32]byte {
	leaves := make([][32]byte, len(wtxids)+1)
	copy(leaves[1:], wtxids)
	root := MerkleRootOf(leaves)
	var buf [64]byte
	copy(buf[:32], root[:])
	return DoubleSHA256(buf[:])
}

// WitnessCommitmentScript is the output script carrying a witness commitment.
func WitnessCommitmentScript(commitment [32]byte) []byte {
	return append(append([]byte{}, witnessCommitmentHeader...), commitment[:]...)
}

// IsWitnessCommitment reports whether a script is a BIP141 commitment output.
func IsWitnessCommitment(pkScript []byte) bool {
	return len(pkScript) >= 38 && bytes.Equal(pkScript[:6], witnessCommitmentHeader)
}
