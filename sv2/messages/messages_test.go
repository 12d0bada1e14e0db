package messages

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/sv2kit/sv2kit/sv2/codec"
)

// encodeFrame encodes m as a plaintext frame and parses its header back.
func encodeFrame(t testing.TB, m codec.Message, opts codec.Options) (codec.Header, []byte) {
	t.Helper()
	frame, err := codec.AppendFrame(nil, m, opts)
	if err != nil {
		t.Fatalf("AppendFrame(%s): %v", m.MessageName(), err)
	}
	h, err := codec.ParseHeader(frame)
	if err != nil {
		t.Fatalf("ParseHeader: %v", err)
	}
	return h, frame[codec.HeaderSize:]
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range roundTripCases() {
		t.Run(tc.name, func(t *testing.T) {
			for _, opts := range []codec.Options{{}, {PushSolution2025: true}} {
				m := tc.build()
				h, payload := encodeFrame(t, m, opts)
				if h.ExtensionType != m.ExtensionType() || h.MsgType != m.MsgType() || int(h.Length) != len(payload) {
					t.Fatalf("header %v does not describe %s with %d payload bytes", h, m.MessageName(), len(payload))
				}
				if n := codec.Size(m); n != len(payload) {
					t.Errorf("Size = %d, encoded %d bytes", n, len(payload))
				}
				got, err := Decode(h, payload, opts)
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				want := markPresent(normalize(tc.build()))
				if !sameMessage(normalize(got), want) {
					t.Errorf("round trip (%+v):\n got %#v\nwant %#v", opts, got, want)
				}
				s := codec.String(m)
				if !strings.Contains(s, m.MessageName()) {
					t.Errorf("String() = %q, lacks %q", s, m.MessageName())
				}
			}
		})
	}
}

// TestPopulatedCoversRegistry keeps the round-trip table complete: every
// registered message has exactly one populated instance, and no message is
// populated that the registry cannot decode.
func TestPopulatedCoversRegistry(t *testing.T) {
	seen := map[string]bool{}
	for _, b := range populated {
		n := typeName(b())
		if seen[n] {
			t.Errorf("%s populated twice", n)
		}
		seen[n] = true
		m := b()
		if _, ok := New(m.ExtensionType(), m.MsgType()); !ok {
			t.Errorf("%s is not registered", n)
		}
	}
	for _, m := range All() {
		if !seen[typeName(m)] {
			t.Errorf("%s has no populated round-trip case", typeName(m))
		}
	}
	if len(populated) != len(table) {
		t.Errorf("%d populated cases, %d registered messages", len(populated), len(table))
	}
}

// TestPopulatedIsNonZero checks the fixtures exercise every field: a zero
// field would let a field-order mistake go unnoticed.
func TestPopulatedIsNonZero(t *testing.T) {
	for _, b := range populated {
		v := reflect.ValueOf(b()).Elem()
		for i := range v.NumField() {
			f := v.Field(i)
			if f.IsZero() || (f.Kind() == reflect.Slice && f.Len() == 0) {
				t.Errorf("%s.%s is zero", v.Type().Name(), v.Type().Field(i).Name)
			}
		}
	}
}

// TestRegistry checks the table against the spec's message-type table
// (spec 08-Message-Types.md, extensions/0x0001): subprotocol ranges, the
// channel bit to send, and lookups.
func TestRegistry(t *testing.T) {
	// Messages sent with channel_msg=1 at spec HEAD.
	channelMsg := func(ext uint16, typ uint8) bool {
		return ext == 0 && (typ == TypeChannelEndpointChanged || (typ >= TypeNewMiningJob && typ <= TypeSetCustomMiningJobError))
	}
	for _, e := range table {
		m := e.new()
		ext, typ := m.ExtensionType()&codec.ExtensionMask, m.MsgType()
		if got, want := m.ExtensionType()&codec.ChannelBit != 0, channelMsg(ext, typ); got != want {
			t.Errorf("%s: channel bit %v, spec says %v", m.MessageName(), got, want)
		}
		var want group
		switch {
		case ext == ExtensionNegotiation:
			want = groupExtensions
		case typ < 0x10:
			want = groupCommon
		case typ < 0x50:
			want = groupMining
		case typ < 0x70:
			want = groupJobDeclaration
		default:
			want = groupTemplateDistribution
		}
		if e.group != want {
			t.Errorf("%s: group %d, want %d", m.MessageName(), e.group, want)
		}
		n, ok := New(m.ExtensionType(), typ)
		if !ok || reflect.TypeOf(n) != reflect.TypeOf(m) {
			t.Errorf("New(0x%04x, 0x%02x) = %T, %v", m.ExtensionType(), typ, n, ok)
		}
		if got := Name(m.ExtensionType(), typ); got != m.MessageName() {
			t.Errorf("Name = %q, want %q", got, m.MessageName())
		}
	}
	if _, ok := New(0, 0x1e); ok {
		t.Error("reserved 0x1e is registered")
	}
	if _, ok := New(2, 0); ok {
		t.Error("extension 2 has messages")
	}
	if got := Name(0x4000, 7); !strings.Contains(got, "0x4000") {
		t.Errorf("Name(unknown) = %q", got)
	}
	// The two SetNewPrevHash messages share a spec name but not a type.
	if reflect.TypeOf(mustNew(t, 0, TypeSetNewPrevHash)) == reflect.TypeOf(mustNew(t, 0, TypeMiningSetNewPrevHash)) {
		t.Error("TDP and Mining SetNewPrevHash share a Go type")
	}
}

func mustNew(t *testing.T, ext uint16, typ uint8) codec.Message {
	t.Helper()
	m, ok := New(ext, typ)
	if !ok {
		t.Fatalf("New(0x%04x, 0x%02x) failed", ext, typ)
	}
	return m
}

// TestTruncation decodes every prefix of every round-trip payload: shorter
// than the mandatory fields must fail with ErrShort, never panic.
func TestTruncation(t *testing.T) {
	for _, tc := range roundTripCases() {
		m := tc.build()
		h, payload := encodeFrame(t, m, codec.Options{})
		mandatory := len(payload) - optionalTail(m)
		for l := range len(payload) {
			p := append([]byte(nil), payload[:l]...) // exact capacity: reads past l would panic
			got, err := Decode(h, p, codec.Options{})
			switch {
			case l < mandatory:
				if !errors.Is(err, codec.ErrShort) {
					t.Errorf("%s: %d of %d bytes: err = %v, want ErrShort", tc.name, l, len(payload), err)
				}
			case l == mandatory:
				if err != nil {
					t.Errorf("%s: without its optional tail: %v", tc.name, err)
				}
			default:
				if err != nil && !errors.Is(err, codec.ErrShort) {
					t.Errorf("%s: %d of %d bytes: err = %v", tc.name, l, len(payload), err)
				}
			}
			if err != nil && got != nil {
				t.Errorf("%s: message returned with error", tc.name)
			}
		}
	}
}

// maxInstance builds the largest encoding of m's declared fields. Byte-field
// limits are found by probing the encoder, so the test does not repeat the
// declared maxima of registry.go. It reports false for messages whose fields
// are unbounded (B0_16M or a SEQ of them).
func maxInstance(t *testing.T, newMsg func() codec.Message) (codec.Message, bool) {
	t.Helper()
	m := newMsg()
	v := reflect.ValueOf(m).Elem()
	// tooLong reports whether field i cannot hold x.
	tooLong := func(i int, x any) bool {
		p := newMsg()
		reflect.ValueOf(p).Elem().Field(i).Set(reflect.ValueOf(x))
		_, err := codec.Append(nil, p, codec.Options{})
		return errors.Is(err, codec.ErrTooLong)
	}
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch x := f.Addr().Interface().(type) {
		case *bool:
			*x = true
		case *uint8:
			*x = math.MaxUint8
		case *uint16:
			*x = math.MaxUint16
		case *uint32:
			*x = math.MaxUint32
		case *uint64:
			*x = math.MaxUint64
		case *float32:
			*x = math.MaxFloat32
		case *[32]byte:
			*x = h32(0xff)
		case *string:
			*x = strings.Repeat("x", 255)
		case **uint32:
			*x = u32p(math.MaxUint32)
		case *[]uint16:
			*x = make([]uint16, math.MaxUint16)
		case *[]uint32:
			*x = make([]uint32, math.MaxUint16)
		case *[][32]byte:
			n := math.MaxUint16
			if tooLong(i, make([][32]byte, 256)) {
				n = 255
			}
			*x = make([][32]byte, n)
		case *[]byte:
			if name == "TLVs" {
				continue // trailing, covered by TrailingAllowance
			}
			n := -1
			for _, limit := range []int{32, 255, math.MaxUint16} {
				if tooLong(i, make([]byte, limit+1)) {
					n = limit
					break
				}
			}
			if n < 0 {
				return nil, false
			}
			*x = make([]byte, n)
		case *[][]byte:
			return nil, false
		default:
			t.Fatalf("%T.%s: no max rule for %s", m, name, f.Type())
		}
	}
	return m, true
}

func TestMaxPayload(t *testing.T) {
	for _, e := range table {
		m, bounded := maxInstance(t, e.new)
		zero := e.new()
		h := codec.Header{ExtensionType: zero.ExtensionType(), MsgType: zero.MsgType()}
		name := zero.MessageName()
		max, declBounded := codec.MaxSize(zero)
		if !bounded {
			if declBounded || MaxPayload(h) != codec.MaxPayload {
				t.Errorf("%s: derived max %d for a message with unbounded fields", name, max)
			}
			continue
		}
		payload, err := codec.Append(nil, m, codec.Options{})
		if err != nil {
			t.Fatalf("%s: encoding the max instance: %v", name, err)
		}
		if !declBounded || len(payload) != max {
			t.Errorf("%s: derived max %d, max instance encodes to %d bytes", name, max, len(payload))
		}
		if len(payload) > MaxPayload(h) {
			t.Errorf("%s: %d bytes exceed MaxPayload %d", name, len(payload), MaxPayload(h))
		}
		// A maximal TLV (or a newer peer's appended fields) must fit as well.
		if len(payload)+5+math.MaxUint16 > MaxPayload(h) {
			t.Errorf("%s: no room for a trailing TLV under MaxPayload %d", name, MaxPayload(h))
		}
		if _, err := Decode(h, payload, codec.Options{}); err != nil {
			t.Errorf("%s: decoding the max instance: %v", name, err)
		}
		// The channel bit does not change the bound.
		h.ExtensionType ^= codec.ChannelBit
		if len(payload) > MaxPayload(h) {
			t.Errorf("%s: channel bit flipped: MaxPayload %d", name, MaxPayload(h))
		}
	}
	if got := MaxPayload(codec.Header{ExtensionType: 0x0005, MsgType: 1}); got != codec.MaxPayload {
		t.Errorf("MaxPayload(unknown extension) = %d", got)
	}
	if got := MaxPayload(codec.Header{MsgType: 0x1e}); got != codec.MaxPayload {
		t.Errorf("MaxPayload(unknown type) = %d", got)
	}
	// Fixed-size messages get a tight bound (well below the 16 MiB frame limit).
	if got := MaxPayload(codec.Header{MsgType: TypeSubmitSharesStandard}); got != 24+TrailingAllowance {
		t.Errorf("MaxPayload(SubmitSharesStandard) = %d", got)
	}
}
