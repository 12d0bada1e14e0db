package jdc

import (
	"encoding/binary"
	"fmt"

	"github.com/btcsuite/btcd/txscript"

	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// builtCoinbase is one source's coinbase for one template.
type builtCoinbase struct {
	cb templates.Coinbase
	// poolPrefix is the pool channel's extranonce prefix at build time: the
	// first bytes of the extranonce area (DIGEST §6.3).
	poolPrefix []byte
	// deviceSpace is what the devices fill after poolPrefix.
	deviceSpace int
	// scriptSigPrefix is SetCustomMiningJob.coinbase_prefix: the TP prefix,
	// the tag push and the push opcode of the extranonce area.
	scriptSigPrefix []byte
	// outputs is our outputs followed by the template's, as a
	// CompactSize-prefixed vector (SetCustomMiningJob.coinbase_tx_outputs).
	outputVector []byte
}

// buildCoinbase lays out a coinbase the way SRI's JobFactory does (DIGEST
// §6.4): scriptSig = TP prefix ‖ push(tag) ‖ OP_PUSHBYTES_N ‖ extranonce(N)
// with N = len(poolPrefix) + deviceSpace; our outputs first (the first one
// gets the template's whole value minus what the others carry), the
// template's outputs last.
func buildCoinbase(t *messages.NewTemplate, tag string, ours []templates.TxOutput, poolPrefix []byte, deviceSpace int) (*builtCoinbase, error) {
	n := len(poolPrefix) + deviceSpace
	if deviceSpace < 1 || n > MaxExtranonce {
		return nil, fmt.Errorf("extranonce area of %d bytes (prefix %d + %d) is outside 1..%d", n, len(poolPrefix), deviceSpace, MaxExtranonce)
	}
	if len(ours) == 0 {
		return nil, fmt.Errorf("no payout output")
	}
	witness, err := scanOutputs(t)
	if err != nil {
		return nil, err
	}
	outs := make([]templates.TxOutput, len(ours))
	copy(outs, ours)
	var others int64
	for _, o := range outs[1:] {
		others += o.Value
	}
	payout := int64(t.CoinbaseTxValueRemaining) - others
	if payout < 0 || t.CoinbaseTxValueRemaining > 21_000_000*100_000_000 {
		return nil, fmt.Errorf("outputs carry %d sat but the template only has %d", others, t.CoinbaseTxValueRemaining)
	}
	outs[0].Value = payout

	ss := make([]byte, 0, len(t.CoinbasePrefix)+len(tag)+2)
	ss = append(ss, t.CoinbasePrefix...)
	if tag != "" {
		ss = append(ss, byte(len(tag)))
		ss = append(ss, tag...)
	}
	ss = append(ss, byte(n)) // OP_PUSHBYTES_n (n ≤ 32 < 0x4c)

	raw := templates.SerializeOutputs(outs)
	raw = append(raw, t.CoinbaseTxOutputs...)
	count := len(outs) + int(t.CoinbaseTxOutputsCount)
	vec := appendVarInt(make([]byte, 0, 9+len(raw)), uint64(count))
	vec = append(vec, raw...)

	b := &builtCoinbase{
		cb: templates.Coinbase{
			Version:         t.CoinbaseTxVersion,
			ScriptSigPrefix: ss,
			ExtranonceSize:  n,
			Sequence:        t.CoinbaseTxInputSequence,
			Outputs:         raw,
			OutputCount:     count,
			LockTime:        t.CoinbaseTxLocktime,
			Witness:         witness,
		},
		poolPrefix:      append([]byte(nil), poolPrefix...),
		deviceSpace:     deviceSpace,
		scriptSigPrefix: ss,
		outputVector:    vec,
	}
	if err := b.cb.Validate(); err != nil {
		return nil, err
	}
	return b, nil
}

// deviceParts are the non-witness coinbase parts the devices hash, the pool
// prefix appended to the prefix.
func (b *builtCoinbase) deviceParts() (prefix, suffix []byte) {
	p, s := b.cb.Parts(false)
	return append(p, b.poolPrefix...), s
}

// fullExtranonce is the whole extranonce area for a device share.
func (b *builtCoinbase) fullExtranonce(device []byte) []byte {
	ex := make([]byte, 0, len(b.poolPrefix)+len(device))
	ex = append(ex, b.poolPrefix...)
	return append(ex, device...)
}

// scanOutputs walks the template's outputs (value ‖ CompactSize length ‖
// script, back to back, exactly CoinbaseTxOutputsCount of them) and reports
// whether one is a BIP141 commitment. Walked by hand: the wire parser
// allocates a large script buffer per output.
func scanOutputs(t *messages.NewTemplate) (commitment bool, err error) {
	b := t.CoinbaseTxOutputs
	for i := uint32(0); i < t.CoinbaseTxOutputsCount; i++ {
		if len(b) < 9 {
			return false, fmt.Errorf("template output %d is truncated", i)
		}
		b = b[8:]
		n, k, ok := templates.ReadCompactSize(b)
		if !ok || uint64(len(b)-k) < n {
			return false, fmt.Errorf("template output %d is truncated", i)
		}
		if templates.IsWitnessCommitment(b[k : k+int(n)]) {
			commitment = true
		}
		b = b[k+int(n):]
	}
	if len(b) != 0 {
		return false, fmt.Errorf("%d bytes after the template's %d outputs", len(b), t.CoinbaseTxOutputsCount)
	}
	return commitment, nil
}

// outputsConstraints is what outs add to a coinbase: serialized size and
// sigop cost (legacy sigops count four times).
func outputsConstraints(outs []templates.TxOutput) (size uint32, sigops uint16) {
	var s, ops int
	for _, o := range outs {
		s += 8 + varIntLen(uint64(len(o.PkScript))) + len(o.PkScript)
		ops += txscript.GetSigOpCount(o.PkScript) * 4
	}
	if ops > 0xffff {
		ops = 0xffff
	}
	return uint32(s), uint16(ops)
}

func appendVarInt(b []byte, v uint64) []byte {
	switch {
	case v < 0xfd:
		return append(b, byte(v))
	case v <= 0xffff:
		return binary.LittleEndian.AppendUint16(append(b, 0xfd), uint16(v))
	case v <= 0xffffffff:
		return binary.LittleEndian.AppendUint32(append(b, 0xfe), uint32(v))
	}
	return binary.LittleEndian.AppendUint64(append(b, 0xff), v)
}

func varIntLen(v uint64) int {
	switch {
	case v < 0xfd:
		return 1
	case v <= 0xffff:
		return 3
	case v <= 0xffffffff:
		return 5
	}
	return 9
}
