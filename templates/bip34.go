package templates

// HeightScript returns the BIP34 height push that must start a coinbase
// scriptSig, exactly as Bitcoin Core writes it (CScript() << height): OP_0
// for 0, OP_1..OP_16 for 1–16, otherwise a minimal little-endian CScriptNum
// push. Core pads a scriptSig shorter than 2 bytes (heights 1–16) with OP_0
// because consensus requires 2–100 bytes; callers that build the whole
// scriptSig add extranonce bytes after it, which satisfies that too.
func HeightScript(height int64) []byte {
	switch {
	case height == 0:
		return []byte{0x00}
	case height >= 1 && height <= 16:
		return []byte{0x50 + byte(height)}
	}
	num := scriptNum(height)
	return append([]byte{byte(len(num))}, num...)
}

// scriptNum is the minimal CScriptNum encoding of a non-negative value.
func scriptNum(v int64) []byte {
	var out []byte
	for v > 0 {
		out = append(out, byte(v))
		v >>= 8
	}
	// A set sign bit would make the number negative: add a 0x00 byte.
	if len(out) > 0 && out[len(out)-1]&0x80 != 0 {
		out = append(out, 0)
	}
	return out
}

// ParseHeightScript reads the BIP34 height at the start of a scriptSig.
// ok is false when the script does not start with a height push.
func ParseHeightScript(script []byte) (height int64, n int, ok bool) {
	if len(script) == 0 {
		return 0, 0, false
	}
	op := script[0]
	switch {
	case op == 0x00:
		return 0, 1, true
	case op >= 0x51 && op <= 0x60:
		return int64(op - 0x50), 1, true
	case op >= 1 && op <= 8:
		l := int(op)
		if len(script) < 1+l {
			return 0, 0, false
		}
		num := script[1 : 1+l]
		if num[l-1]&0x80 != 0 {
			return 0, 0, false // negative heights do not exist
		}
		var v int64
		for i := l - 1; i >= 0; i-- {
			v = v<<8 | int64(num[i])
		}
		return v, 1 + l, true
	}
	return 0, 0, false
}
