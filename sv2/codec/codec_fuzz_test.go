package codec

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseHeader: any 6 bytes parse, and Put writes them back unchanged;
// fewer fail with ErrShort.
func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{0x00, 0x00, 0x00, 0x52, 0x00, 0x00}) // sv2-tp SetupConnection header (82-byte payload)
	f.Add([]byte{0x00, 0x80, 0x1b, 0x2d, 0x00, 0x00}) // channel bit set
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{0x00, 0x00, 0x71})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if len(b) < HeaderSize {
			if !errors.Is(err, ErrShort) {
				t.Fatalf("%d bytes: %v", len(b), err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Length > MaxPayload || h.Extension() != h.ExtensionType&ExtensionMask || h.ChannelMsg() != (b[1]&0x80 != 0) {
			t.Fatalf("inconsistent header %v from %x", h, b[:HeaderSize])
		}
		var out [HeaderSize]byte
		h.Put(out[:])
		if !bytes.Equal(out[:], b[:HeaderSize]) {
			t.Fatalf("Put %x, parsed from %x", out, b[:HeaderSize])
		}
		if got := h.Append(nil); !bytes.Equal(got, out[:]) {
			t.Fatalf("Append %x, Put %x", got, out)
		}
		_ = h.String()
	})
}
