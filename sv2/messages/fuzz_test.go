package messages

import (
	"bytes"
	"errors"
	"testing"

	"github.com/sv2kit/sv2kit/sv2/codec"
)

// Fuzz targets. The seeds (every round-trip message and every vector) run as
// ordinary tests; `go test -fuzz FuzzDecode$` and friends search further.

// seeds returns (extension_type, msg_type, payload) for every round-trip
// case and every known-answer vector.
func seeds(tb testing.TB) []seed {
	var out []seed
	for _, tc := range roundTripCases() {
		m := tc.build()
		b, err := codec.Append(nil, m, codec.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, seed{m.ExtensionType(), m.MsgType(), b})
	}
	for _, v := range vectors {
		out = append(out, seed{v.ext, v.typ, mustHex(v.payload)})
	}
	return out
}

type seed struct {
	ext     uint16
	typ     uint8
	payload []byte
}

// checkDecode asserts that decoding never panics, fails only with the
// documented errors, and that whatever decodes re-encodes to a canonical
// form that decodes to the same message.
func checkDecode(t *testing.T, ext uint16, msgType uint8, payload []byte) {
	for _, opts := range []codec.Options{{}, {PushSolution2025: true}} {
		h := codec.Header{ExtensionType: ext, MsgType: msgType, Length: uint32(len(payload))}
		m, err := Decode(h, payload, opts)
		if err != nil {
			if m != nil {
				t.Fatalf("message returned with error %v", err)
			}
			if !errors.Is(err, ErrUnknownExtension) && !errors.Is(err, ErrUnknownMessage) &&
				!errors.Is(err, codec.ErrShort) && !errors.Is(err, codec.ErrInvalid) {
				t.Fatalf("undocumented error: %v", err)
			}
			continue
		}
		if s := codec.String(m); len(s) == 0 {
			t.Fatal("empty String()")
		}
		enc, err := codec.Append(nil, m, opts)
		if err != nil {
			t.Fatalf("re-encoding %s: %v", m.MessageName(), err)
		}
		if n := codec.Size(m); n != len(enc) {
			t.Fatalf("%s: Size %d, encoded %d", m.MessageName(), n, len(enc))
		}
		m2, err := Decode(h, enc, opts)
		if err != nil {
			t.Fatalf("decoding re-encoded %s %x: %v", m.MessageName(), enc, err)
		}
		enc2, err := codec.Append(nil, m2, opts)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("%s: encoding not canonical: %x then %x (%v)", m.MessageName(), enc, enc2, err)
		}
		// Trailing fields are always written, so the second decode reports
		// them present. (Seed testdata/fuzz/FuzzDecode/update_channel_nan_hashrate
		// carries a NaN, which sameMessage compares by bits.)
		if !sameMessage(markPresent(normalize(m)), normalize(m2)) {
			t.Fatalf("%s: round trip changed the message:\n %#v\n %#v", m.MessageName(), m, m2)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s.ext, s.typ, s.payload)
	}
	f.Fuzz(checkDecode)
}

// fuzzGroup runs checkDecode on messages of one subprotocol only: a msg_type
// outside it is mapped onto one of its messages, so no input is wasted on
// unknown types.
func fuzzGroup(f *testing.F, g group) {
	var members []codec.Message
	for _, e := range table {
		if e.group == g {
			members = append(members, e.new())
		}
	}
	for _, s := range seeds(f) {
		if e, err := lookup(s.ext, s.typ); err == nil && e.group == g {
			f.Add(s.typ, s.payload)
		}
	}
	f.Fuzz(func(t *testing.T, msgType uint8, payload []byte) {
		m := members[int(msgType)%len(members)]
		for _, c := range members {
			if c.MsgType() == msgType {
				m = c
				break
			}
		}
		checkDecode(t, m.ExtensionType(), m.MsgType(), payload)
	})
}

func FuzzDecodeCommon(f *testing.F)               { fuzzGroup(f, groupCommon) }
func FuzzDecodeTemplateDistribution(f *testing.F) { fuzzGroup(f, groupTemplateDistribution) }
func FuzzDecodeJobDeclaration(f *testing.F)       { fuzzGroup(f, groupJobDeclaration) }
func FuzzDecodeMining(f *testing.F)               { fuzzGroup(f, groupMining) }
func FuzzDecodeExtensions(f *testing.F)           { fuzzGroup(f, groupExtensions) }
