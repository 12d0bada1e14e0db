package templates

import (
	"encoding/binary"
	"math/big"

	"github.com/btcsuite/btcd/wire"
)

// Header is an 80-byte block header with hashes in internal byte order.
type Header struct {
	Version    uint32
	PrevHash   [32]byte
	MerkleRoot [32]byte
	Time       uint32
	Bits       uint32
	Nonce      uint32
}

// Bytes serializes the header as it is hashed.
func (h *Header) Bytes() [80]byte {
	var b [80]byte
	binary.LittleEndian.PutUint32(b[0:], h.Version)
	copy(b[4:36], h.PrevHash[:])
	copy(b[36:68], h.MerkleRoot[:])
	binary.LittleEndian.PutUint32(b[68:], h.Time)
	binary.LittleEndian.PutUint32(b[72:], h.Bits)
	binary.LittleEndian.PutUint32(b[76:], h.Nonce)
	return b
}

// Hash is the block hash (internal byte order).
func (h *Header) Hash() [32]byte {
	b := h.Bytes()
	return DoubleSHA256(b[:])
}

// TargetFromBits expands a compact nBits value into a 256-bit target in
// little-endian byte order (the SV2 U256 form). Negative or overflowing
// encodings give the zero target, which no hash meets.
func TargetFromBits(bits uint32) [32]byte {
	var t [32]byte
	exp := int(bits >> 24)
	mant := bits & 0x007fffff
	if bits&0x00800000 != 0 || mant == 0 {
		return t
	}
	// value = mant * 256^(exp-3)
	if exp <= 3 {
		binary.LittleEndian.PutUint32(t[:4], mant>>(8*(3-exp)))
		return t
	}
	for i := 0; i < 3; i++ {
		b := byte(mant >> (8 * i))
		if b == 0 {
			continue
		}
		pos := exp - 3 + i
		if pos >= 32 {
			return [32]byte{} // overflow: not a valid target
		}
		t[pos] = b
	}
	return t
}

// TargetToBig converts a little-endian U256 target to a big.Int.
func TargetToBig(t [32]byte) *big.Int {
	var be [32]byte
	for i := range t {
		be[31-i] = t[i]
	}
	return new(big.Int).SetBytes(be[:])
}

// BigToTarget converts a non-negative big.Int (at most 256 bits) to the
// little-endian U256 form; larger values saturate to all ones.
func BigToTarget(v *big.Int) [32]byte {
	var t [32]byte
	if v.Sign() <= 0 {
		return t
	}
	if v.BitLen() > 256 {
		for i := range t {
			t[i] = 0xff
		}
		return t
	}
	be := v.FillBytes(make([]byte, 32))
	for i := range be {
		t[31-i] = be[i]
	}
	return t
}

// MeetsTarget reports whether hash, read as a little-endian 256-bit integer,
// is at most target (also little-endian).
func MeetsTarget(hash, target *[32]byte) bool {
	for i := 31; i >= 0; i-- {
		if hash[i] != target[i] {
			return hash[i] < target[i]
		}
	}
	return true
}

// AssembleBlock serializes a block from its header, its coinbase (witness
// serialization when the block has a witness commitment) and the other
// transactions in block order, each already serialized.
func AssembleBlock(h *Header, coinbase []byte, txs [][]byte) []byte {
	size := 80 + wire.VarIntSerializeSize(uint64(len(txs)+1)) + len(coinbase)
	for _, tx := range txs {
		size += len(tx)
	}
	out := make([]byte, 0, size)
	hb := h.Bytes()
	out = append(out, hb[:]...)
	out = appendVarInt(out, uint64(len(txs)+1))
	out = append(out, coinbase...)
	for _, tx := range txs {
		out = append(out, tx...)
	}
	return out
}

func appendVarInt(b []byte, v uint64) []byte {
	switch {
	case v < 0xfd:
		return append(b, byte(v))
	case v <= 0xffff:
		return append(b, 0xfd, byte(v), byte(v>>8))
	case v <= 0xffffffff:
		return binary.LittleEndian.AppendUint32(append(b, 0xfe), uint32(v))
	default:
		return binary.LittleEndian.AppendUint64(append(b, 0xff), v)
	}
}
