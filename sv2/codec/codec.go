package codec

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Errors returned (wrapped in *FieldError) by Encode and Decode.
var (
	// ErrShort: the payload ended before the field did.
	ErrShort = errors.New("truncated")
	// ErrInvalid: a value outside what the type allows (B0_32 longer than 32, OPTION count > 1, ...).
	ErrInvalid = errors.New("invalid value")
	// ErrTooLong: a value too long for its type on encode, or a payload over MaxPayload.
	ErrTooLong = errors.New("too long for its type")
)

// FieldError names the field where encoding or decoding failed.
type FieldError struct {
	Field string
	Err   error
	// Detail is a human-readable explanation (lengths involved).
	Detail string
}

func (e *FieldError) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("field %s: %v: %s", e.Field, e.Err, e.Detail)
	}
	return fmt.Sprintf("field %s: %v", e.Field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// Options select wire variants that cannot be told apart on the wire.
type Options struct {
	// PushSolution2025 selects the field order of SRI's 2025 builds
	// (ntime before nonce) for JDP PushSolution. The default is spec HEAD.
	PushSolution2025 bool
}

// Message is what every SV2 message implements.
type Message interface {
	// MsgType is the msg_type byte.
	MsgType() uint8
	// ExtensionType is the extension_type to send, channel bit included.
	ExtensionType() uint16
	// MessageName is the spec name, for logs.
	MessageName() string
	// Fields walks the fields in wire order. It is the single declaration of
	// the message's layout.
	Fields(c *Codec)
}

type mode uint8

const (
	modeEncode mode = iota
	modeDecode
	modeSize
	modeMax // largest encoding the declaration allows
	modeString
)

// Codec walks a message's fields. One value serves one operation; obtain it
// through Encode, Decode, Size or String.
type Codec struct {
	mode mode
	opts Options
	buf  []byte // encode: output; decode: input
	off  int    // decode read offset
	size int    // size and max modes
	// unbounded: max mode met a field that can fill a whole frame.
	unbounded bool
	err       error
	sb        *strings.Builder
	n         int // fields printed
}

var codecPool = sync.Pool{New: func() any { return new(Codec) }}

func getCodec(m mode, opts Options) *Codec {
	c := codecPool.Get().(*Codec)
	*c = Codec{mode: m, opts: opts}
	return c
}

func putCodec(c *Codec) {
	c.buf = nil
	c.sb = nil
	codecPool.Put(c)
}

// Options returns the wire-variant options of this walk.
func (c *Codec) Options() Options { return c.opts }

// Decoding reports whether the walk decodes (messages use it to fill defaults).
func (c *Codec) Decoding() bool { return c.mode == modeDecode }

// Append appends the encoded payload of m to dst.
func Append(dst []byte, m Message, opts Options) ([]byte, error) {
	// Grow once to the exact size when dst cannot hold m: appending field by
	// field would reallocate log(n) times for a 1 MB transaction list.
	if cap(dst)-len(dst) < smallMessage {
		dst = slices.Grow(dst, Size(m))
	}
	c := getCodec(modeEncode, opts)
	c.buf = dst
	start := len(dst)
	m.Fields(c)
	out, err := c.buf, c.err
	putCodec(c)
	if err != nil {
		return dst, fmt.Errorf("encode %s: %w", m.MessageName(), err)
	}
	if len(out)-start > MaxPayload {
		return dst, fmt.Errorf("encode %s: payload %d bytes: %w", m.MessageName(), len(out)-start, ErrTooLong)
	}
	return out, nil
}

// AppendFrame appends a plaintext frame (header and payload) for m to dst.
func AppendFrame(dst []byte, m Message, opts Options) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, HeaderSize)...)
	out, err := Append(dst, m, opts)
	if err != nil {
		return dst[:start], err
	}
	Header{ExtensionType: m.ExtensionType(), MsgType: m.MsgType(), Length: uint32(len(out) - start - HeaderSize)}.Put(out[start:])
	return out, nil
}

// Decode fills m from payload. Byte-string fields of m alias payload. Bytes
// after the last declared field are ignored (peers append fields and TLVs).
func Decode(payload []byte, m Message, opts Options) error {
	c := getCodec(modeDecode, opts)
	c.buf = payload
	m.Fields(c)
	err := c.err
	putCodec(c)
	if err != nil {
		return fmt.Errorf("decode %s: %w", m.MessageName(), err)
	}
	return nil
}

// smallMessage is the spare capacity below which Append sizes m first.
const smallMessage = 512

// Size returns the encoded payload size of m.
func Size(m Message) int {
	c := getCodec(modeSize, Options{})
	m.Fields(c)
	n := c.size
	putCodec(c)
	return n
}

// MaxSize returns the largest payload m's declared fields can encode to
// (trailing TLVs excluded), or bounded=false when a field can fill a whole
// frame (transaction lists). Receivers use it to refuse oversized frames
// before allocating them.
func MaxSize(m Message) (n int, bounded bool) {
	c := getCodec(modeMax, Options{})
	m.Fields(c)
	n, bounded = c.size, !c.unbounded
	putCodec(c)
	if !bounded || n > MaxPayload {
		return MaxPayload, false
	}
	return n, true
}

// String renders m for logs: Name{field=value ...}. Long byte strings are cut.
func String(m Message) string {
	var sb strings.Builder
	c := getCodec(modeString, Options{})
	c.sb = &sb
	sb.WriteString(m.MessageName())
	sb.WriteByte('{')
	m.Fields(c)
	sb.WriteByte('}')
	putCodec(c)
	return sb.String()
}

func (c *Codec) fail(field string, err error, detail string) {
	if c.err == nil {
		c.err = &FieldError{Field: field, Err: err, Detail: detail}
	}
}

// take returns the next n input bytes, or nil after recording ErrShort.
func (c *Codec) take(field string, n int) []byte {
	if c.err != nil {
		return nil
	}
	if n < 0 || len(c.buf)-c.off < n {
		c.fail(field, ErrShort, fmt.Sprintf("need %d bytes, %d left", n, len(c.buf)-c.off))
		return nil
	}
	b := c.buf[c.off : c.off+n : c.off+n]
	c.off += n
	return b
}

// Remaining is the number of undecoded input bytes.
func (c *Codec) remaining() int { return len(c.buf) - c.off }

func (c *Codec) label(name string) {
	if c.n > 0 {
		c.sb.WriteByte(' ')
	}
	c.n++
	c.sb.WriteString(name)
	c.sb.WriteByte('=')
}

// ---- fixed-size types ----

// U8 is an unsigned byte.
func (c *Codec) U8(name string, p *uint8) {
	switch c.mode {
	case modeEncode:
		c.buf = append(c.buf, *p)
	case modeDecode:
		if b := c.take(name, 1); b != nil {
			*p = b[0]
		}
	case modeSize, modeMax:
		c.size++
	case modeString:
		c.label(name)
		c.sb.WriteString(strconv.FormatUint(uint64(*p), 10))
	}
}

// Bool is a BOOL: written 0/1, read from bit 0 only.
func (c *Codec) Bool(name string, p *bool) {
	switch c.mode {
	case modeEncode:
		var v byte
		if *p {
			v = 1
		}
		c.buf = append(c.buf, v)
	case modeDecode:
		if b := c.take(name, 1); b != nil {
			*p = b[0]&1 == 1
		}
	case modeSize, modeMax:
		c.size++
	case modeString:
		c.label(name)
		c.sb.WriteString(strconv.FormatBool(*p))
	}
}

// U16 is a little-endian uint16.
func (c *Codec) U16(name string, p *uint16) {
	switch c.mode {
	case modeEncode:
		c.buf = binary.LittleEndian.AppendUint16(c.buf, *p)
	case modeDecode:
		if b := c.take(name, 2); b != nil {
			*p = binary.LittleEndian.Uint16(b)
		}
	case modeSize, modeMax:
		c.size += 2
	case modeString:
		c.label(name)
		c.sb.WriteString(strconv.FormatUint(uint64(*p), 10))
	}
}

// U24 is a little-endian 24-bit value held in a uint32.
func (c *Codec) U24(name string, p *uint32) {
	switch c.mode {
	case modeEncode:
		if *p > MaxPayload {
			c.fail(name, ErrTooLong, fmt.Sprintf("%d exceeds U24", *p))
			return
		}
		c.buf = append(c.buf, byte(*p), byte(*p>>8), byte(*p>>16))
	case modeDecode:
		if b := c.take(name, 3); b != nil {
			*p = uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
		}
	case modeSize, modeMax:
		c.size += 3
	case modeString:
		c.label(name)
		c.sb.WriteString(strconv.FormatUint(uint64(*p), 10))
	}
}

// U32 is a little-endian uint32.
func (c *Codec) U32(name string, p *uint32) {
	switch c.mode {
	case modeEncode:
		c.buf = binary.LittleEndian.AppendUint32(c.buf, *p)
	case modeDecode:
		if b := c.take(name, 4); b != nil {
			*p = binary.LittleEndian.Uint32(b)
		}
	case modeSize, modeMax:
		c.size += 4
	case modeString:
		c.label(name)
		c.sb.WriteString(strconv.FormatUint(uint64(*p), 10))
	}
}

// U64 is a little-endian uint64.
func (c *Codec) U64(name string, p *uint64) {
	switch c.mode {
	case modeEncode:
		c.buf = binary.LittleEndian.AppendUint64(c.buf, *p)
	case modeDecode:
		if b := c.take(name, 8); b != nil {
			*p = binary.LittleEndian.Uint64(b)
		}
	case modeSize, modeMax:
		c.size += 8
	case modeString:
		c.label(name)
		c.sb.WriteString(strconv.FormatUint(*p, 10))
	}
}

// F32 is an IEEE-754 binary32, little-endian.
func (c *Codec) F32(name string, p *float32) {
	switch c.mode {
	case modeEncode:
		c.buf = binary.LittleEndian.AppendUint32(c.buf, math.Float32bits(*p))
	case modeDecode:
		if b := c.take(name, 4); b != nil {
			*p = math.Float32frombits(binary.LittleEndian.Uint32(b))
		}
	case modeSize, modeMax:
		c.size += 4
	case modeString:
		c.label(name)
		c.sb.WriteString(strconv.FormatFloat(float64(*p), 'g', -1, 32))
	}
}

// U256 is 32 raw bytes (hashes in internal byte order, targets little-endian).
func (c *Codec) U256(name string, p *[32]byte) { c.fixed(name, p[:]) }

// Pubkey is a 32-byte BIP340 x-only key.
func (c *Codec) Pubkey(name string, p *[32]byte) { c.fixed(name, p[:]) }

// Signature is a 64-byte BIP340 signature.
func (c *Codec) Signature(name string, p *[64]byte) { c.fixed(name, p[:]) }

func (c *Codec) fixed(name string, p []byte) {
	switch c.mode {
	case modeEncode:
		c.buf = append(c.buf, p...)
	case modeDecode:
		if b := c.take(name, len(p)); b != nil {
			copy(p, b)
		}
	case modeSize, modeMax:
		c.size += len(p)
	case modeString:
		c.label(name)
		writeHex(c.sb, p)
	}
}

// ---- variable-length types ----

// Str0255 is a STR0_255: U8 length then bytes (UTF-8 not validated).
func (c *Codec) Str0255(name string, p *string) {
	switch c.mode {
	case modeEncode:
		if len(*p) > 255 {
			c.fail(name, ErrTooLong, fmt.Sprintf("%d bytes, STR0_255 holds 255", len(*p)))
			return
		}
		c.buf = append(c.buf, byte(len(*p)))
		c.buf = append(c.buf, *p...)
	case modeDecode:
		l := c.take(name, 1)
		if l == nil {
			return
		}
		if b := c.take(name, int(l[0])); b != nil {
			*p = string(b)
		}
	case modeSize:
		c.size += 1 + len(*p)
	case modeMax:
		c.size += 1 + 255
	case modeString:
		c.label(name)
		c.sb.WriteString(strconv.Quote(*p))
	}
}

// B032 is a B0_32: U8 length (at most 32) then bytes.
func (c *Codec) B032(name string, p *[]byte) { c.bytes(name, p, 1, 32) }

// B0255 is a B0_255: U8 length then bytes.
func (c *Codec) B0255(name string, p *[]byte) { c.bytes(name, p, 1, 255) }

// B064K is a B0_64K: U16 length then bytes.
func (c *Codec) B064K(name string, p *[]byte) { c.bytes(name, p, 2, 65535) }

// B016M is a B0_16M: U24 length then bytes.
func (c *Codec) B016M(name string, p *[]byte) { c.bytes(name, p, 3, MaxPayload) }

func (c *Codec) bytes(name string, p *[]byte, lenSize, max int) {
	switch c.mode {
	case modeEncode:
		if len(*p) > max {
			c.fail(name, ErrTooLong, fmt.Sprintf("%d bytes, limit %d", len(*p), max))
			return
		}
		c.buf = appendLen(c.buf, len(*p), lenSize)
		c.buf = append(c.buf, *p...)
	case modeDecode:
		n, ok := c.readLen(name, lenSize)
		if !ok {
			return
		}
		if n > max {
			c.fail(name, ErrInvalid, fmt.Sprintf("length %d, limit %d", n, max))
			return
		}
		if b := c.take(name, n); b != nil {
			*p = b
		}
	case modeSize:
		c.size += lenSize + len(*p)
	case modeMax:
		c.size += lenSize + max
	case modeString:
		c.label(name)
		writeHex(c.sb, *p)
	}
}

func appendLen(b []byte, n, lenSize int) []byte {
	switch lenSize {
	case 1:
		return append(b, byte(n))
	case 2:
		return append(b, byte(n), byte(n>>8))
	default:
		return append(b, byte(n), byte(n>>8), byte(n>>16))
	}
}

func (c *Codec) readLen(name string, lenSize int) (int, bool) {
	b := c.take(name, lenSize)
	if b == nil {
		return 0, false
	}
	switch lenSize {
	case 1:
		return int(b[0]), true
	case 2:
		return int(binary.LittleEndian.Uint16(b)), true
	default:
		return int(b[0]) | int(b[1])<<8 | int(b[2])<<16, true
	}
}

// OptionU32 is an OPTION[U32]: count 0 or 1, then the value. nil is None.
func (c *Codec) OptionU32(name string, p **uint32) {
	switch c.mode {
	case modeEncode:
		if *p == nil {
			c.buf = append(c.buf, 0)
			return
		}
		c.buf = append(c.buf, 1)
		c.buf = binary.LittleEndian.AppendUint32(c.buf, **p)
	case modeDecode:
		cnt := c.take(name, 1)
		if cnt == nil {
			return
		}
		switch cnt[0] {
		case 0:
			*p = nil
		case 1:
			if b := c.take(name, 4); b != nil {
				v := binary.LittleEndian.Uint32(b)
				*p = &v
			}
		default:
			c.fail(name, ErrInvalid, fmt.Sprintf("OPTION count %d", cnt[0]))
		}
	case modeSize:
		c.size++
		if *p != nil {
			c.size += 4
		}
	case modeMax:
		c.size += 5
	case modeString:
		c.label(name)
		if *p == nil {
			c.sb.WriteString("none")
		} else {
			c.sb.WriteString(strconv.FormatUint(uint64(**p), 10))
		}
	}
}

// seqCount handles the element count of a SEQ and returns it when decoding.
// minElem is the smallest encoding of one element: the count is refused when
// the remaining bytes cannot hold that many, so nothing is allocated for it.
func (c *Codec) seqCount(name string, n, lenSize, max, minElem int) (int, bool) {
	switch c.mode {
	case modeEncode:
		if n > max {
			c.fail(name, ErrTooLong, fmt.Sprintf("%d elements, limit %d", n, max))
			return 0, false
		}
		c.buf = appendLen(c.buf, n, lenSize)
		return n, true
	case modeDecode:
		cnt, ok := c.readLen(name, lenSize)
		if !ok {
			return 0, false
		}
		if cnt*minElem > c.remaining() {
			c.fail(name, ErrShort, fmt.Sprintf("%d elements need at least %d bytes, %d left", cnt, cnt*minElem, c.remaining()))
			return 0, false
		}
		return cnt, true
	case modeSize:
		c.size += lenSize
		return n, true
	case modeMax:
		c.size += lenSize
		return max, true
	}
	return n, true
}

// Seq0255U256 is a SEQ0_255[U256].
func (c *Codec) Seq0255U256(name string, p *[][32]byte) { c.seqU256(name, p, 1, 255) }

// Seq064KU256 is a SEQ0_64K[U256].
func (c *Codec) Seq064KU256(name string, p *[][32]byte) { c.seqU256(name, p, 2, 65535) }

func (c *Codec) seqU256(name string, p *[][32]byte, lenSize, max int) {
	if c.mode == modeString {
		c.label(name)
		c.sb.WriteString("[")
		for i, h := range *p {
			if i == 4 {
				fmt.Fprintf(c.sb, " …%d more", len(*p)-4)
				break
			}
			if i > 0 {
				c.sb.WriteByte(' ')
			}
			writeHex(c.sb, h[:])
		}
		c.sb.WriteString("]")
		return
	}
	n, ok := c.seqCount(name, len(*p), lenSize, max, 32)
	if !ok {
		return
	}
	switch c.mode {
	case modeEncode:
		for i := range *p {
			c.buf = append(c.buf, (*p)[i][:]...)
		}
	case modeDecode:
		b := c.take(name, 32*n)
		if b == nil {
			return
		}
		out := make([][32]byte, n)
		for i := range out {
			copy(out[i][:], b[32*i:])
		}
		*p = out
	case modeSize, modeMax:
		c.size += 32 * n
	}
}

// Seq064KU16 is a SEQ0_64K[U16].
func (c *Codec) Seq064KU16(name string, p *[]uint16) {
	seqInts(c, name, p, 2, binary.LittleEndian.AppendUint16, binary.LittleEndian.Uint16)
}

// Seq064KU32 is a SEQ0_64K[U32].
func (c *Codec) Seq064KU32(name string, p *[]uint32) {
	seqInts(c, name, p, 4, binary.LittleEndian.AppendUint32, binary.LittleEndian.Uint32)
}

// seqInts is a SEQ0_64K of fixed-size little-endian integers.
func seqInts[T uint16 | uint32](c *Codec, name string, p *[]T, size int, put func([]byte, T) []byte, get func([]byte) T) {
	if c.mode == modeString {
		c.label(name)
		fmt.Fprint(c.sb, *p)
		return
	}
	n, ok := c.seqCount(name, len(*p), 2, 65535, size)
	if !ok {
		return
	}
	switch c.mode {
	case modeEncode:
		for _, v := range *p {
			c.buf = put(c.buf, v)
		}
	case modeDecode:
		b := c.take(name, size*n)
		if b == nil {
			return
		}
		out := make([]T, n)
		for i := range out {
			out[i] = get(b[size*i:])
		}
		*p = out
	case modeSize, modeMax:
		c.size += size * n
	}
}

// Seq064KB016M is a SEQ0_64K[B0_16M]; decoded elements alias the input.
func (c *Codec) Seq064KB016M(name string, p *[][]byte) {
	if c.mode == modeString {
		c.label(name)
		total := 0
		for _, b := range *p {
			total += len(b)
		}
		fmt.Fprintf(c.sb, "[%d items, %d bytes]", len(*p), total)
		return
	}
	n, ok := c.seqCount(name, len(*p), 2, 65535, 3)
	if !ok {
		return
	}
	switch c.mode {
	case modeEncode:
		for i := range *p {
			c.bytes(name, &(*p)[i], 3, MaxPayload)
		}
	case modeDecode:
		out := make([][]byte, n)
		for i := range out {
			c.bytes(name, &out[i], 3, MaxPayload)
			if c.err != nil {
				return
			}
		}
		*p = out
	case modeSize:
		for _, b := range *p {
			c.size += 3 + len(b)
		}
	case modeMax:
		c.unbounded = true
	}
}

// ---- fields appended to a message after its first release ----

// TrailingU32 is a U32 that older peers omit. It is always encoded; on decode
// *present reports whether the peer sent it.
func (c *Codec) TrailingU32(name string, p *uint32, present *bool) {
	if c.mode == modeDecode {
		if c.remaining() == 0 {
			*p, *present = 0, false
			return
		}
		*present = true
	}
	c.U32(name, p)
}

// TrailingU16 is the U16 analogue of TrailingU32.
func (c *Codec) TrailingU16(name string, p *uint16, present *bool) {
	if c.mode == modeDecode {
		if c.remaining() == 0 {
			*p, *present = 0, false
			return
		}
		*present = true
	}
	c.U16(name, p)
}

// Rest is every byte after the declared fields (TLVs): kept on decode
// (aliasing the input), written verbatim on encode.
func (c *Codec) Rest(name string, p *[]byte) {
	switch c.mode {
	case modeEncode:
		c.buf = append(c.buf, *p...)
	case modeDecode:
		if c.err != nil {
			return
		}
		if c.remaining() > 0 {
			*p = c.buf[c.off:len(c.buf):len(c.buf)]
		} else {
			*p = nil
		}
		c.off = len(c.buf)
	case modeSize:
		c.size += len(*p)
	case modeString:
		if len(*p) > 0 {
			c.label(name)
			writeHex(c.sb, *p)
		}
	}
}

const maxHexInLog = 64

func writeHex(sb *strings.Builder, b []byte) {
	if len(b) <= maxHexInLog {
		sb.WriteString(hex.EncodeToString(b))
		return
	}
	sb.WriteString(hex.EncodeToString(b[:maxHexInLog]))
	fmt.Fprintf(sb, "…(%d bytes)", len(b))
}
