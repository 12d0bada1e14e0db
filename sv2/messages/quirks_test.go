package messages

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/sv2kit/sv2kit/sv2/codec"
)

// Interop quirks of DIGEST §1.1 and §7, and the bounds the decoder enforces.

func decodeAs[T codec.Message](t *testing.T, h codec.Header, payload []byte, opts codec.Options) T {
	t.Helper()
	m, err := Decode(h, payload, opts)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	v, ok := m.(T)
	if !ok {
		t.Fatalf("decoded %T", m)
	}
	return v
}

func encode(t *testing.T, m codec.Message, opts codec.Options) []byte {
	t.Helper()
	b, err := codec.Append(nil, m, opts)
	if err != nil {
		t.Fatalf("encode %s: %v", m.MessageName(), err)
	}
	return b
}

// 2025 SRI pools send OpenExtendedMiningChannel.Success without the
// trailing group_channel_id.
func TestOpenExtendedMiningChannelSuccessGroupID(t *testing.T) {
	h := codec.Header{MsgType: TypeOpenExtendedMiningChannelSuccess}
	m := &OpenExtendedMiningChannelSuccess{RequestID: 1, ChannelID: 2, Target: h32(3), ExtranonceSize: 8, ExtranoncePrefix: []byte{9, 9}, GroupChannelID: 0x55}
	full := encode(t, m, codec.Options{})
	if len(full) != 4+4+32+2+3+4 {
		t.Fatalf("encoded %d bytes", len(full))
	}
	got := decodeAs[*OpenExtendedMiningChannelSuccess](t, h, full, codec.Options{})
	if !got.HasGroupChannelID || got.GroupChannelID != 0x55 {
		t.Errorf("with the field: %+v", got)
	}
	old := full[:len(full)-4]
	got = decodeAs[*OpenExtendedMiningChannelSuccess](t, h, old, codec.Options{})
	if got.HasGroupChannelID || got.GroupChannelID != 0 || got.ChannelID != 2 || !bytes.Equal(got.ExtranoncePrefix, []byte{9, 9}) {
		t.Errorf("without the field: %+v", got)
	}
	// 1–3 stray bytes are a truncated field, not an absent one.
	if _, err := Decode(h, full[:len(full)-1], codec.Options{}); !errors.Is(err, codec.ErrShort) {
		t.Errorf("3 of 4 bytes: %v", err)
	}
}

// TLVs after SubmitSharesExtended's declared fields are kept and re-sent.
func TestSubmitSharesExtendedTLV(t *testing.T) {
	m := &SubmitSharesExtended{ChannelID: 1, SequenceNumber: 2, JobID: 3, Nonce: 4, NTime: 5, Version: 6, Extranonce: bytesOf(8, 1)}
	bare := encode(t, m, codec.Options{})
	payload := append(bytes.Clone(bare), tlvWorker...)
	h := codec.Header{ExtensionType: codec.ChannelBit, MsgType: TypeSubmitSharesExtended}
	got := decodeAs[*SubmitSharesExtended](t, h, payload, codec.Options{})
	if !bytes.Equal(got.TLVs, tlvWorker) {
		t.Fatalf("TLVs = %x, want %x", got.TLVs, tlvWorker)
	}
	// The TLV as DIGEST §1.3 lays it out: U16 LE extension, U8 type, U16 LE length, value.
	tlv := got.TLVs
	if ext := uint16(tlv[0]) | uint16(tlv[1])<<8; ext != ExtensionWorkerHashrateTracking || tlv[2] != TLVWorkerUserIdentity ||
		int(tlv[3])|int(tlv[4])<<8 != 5 || string(tlv[5:]) != "alice" {
		t.Errorf("TLV fields wrong: %x", tlv)
	}
	if re := encode(t, got, codec.Options{}); !bytes.Equal(re, payload) {
		t.Errorf("re-encoded %x, want %x", re, payload)
	}
	if s := codec.String(got); !strings.Contains(s, "tlvs=") {
		t.Errorf("String() hides the TLVs: %s", s)
	}
	// Without TLVs the field stays nil and nothing is appended.
	got = decodeAs[*SubmitSharesExtended](t, h, bare, codec.Options{})
	if got.TLVs != nil {
		t.Errorf("TLVs = %x, want nil", got.TLVs)
	}
}

// sv2-tp accepts the pre-2025 4-byte CoinbaseOutputConstraints and assumes
// 400 sigops; so do we.
func TestCoinbaseOutputConstraintsOldForm(t *testing.T) {
	h := codec.Header{MsgType: TypeCoinbaseOutputConstraints}
	got := decodeAs[*CoinbaseOutputConstraints](t, h, []byte{0xe8, 0x03, 0, 0}, codec.Options{})
	want := CoinbaseOutputConstraints{CoinbaseOutputMaxAdditionalSize: 1000, CoinbaseOutputMaxAdditionalSigops: 400}
	if *got != want {
		t.Errorf("4-byte form: %+v, want %+v", *got, want)
	}
	// We always send the 6-byte form.
	if b := encode(t, got, codec.Options{}); !bytes.Equal(b, []byte{0xe8, 0x03, 0, 0, 0x90, 0x01}) {
		t.Errorf("encoded %x", b)
	}
	got = decodeAs[*CoinbaseOutputConstraints](t, h, []byte{0xe8, 0x03, 0, 0, 0, 0}, codec.Options{})
	if !got.HasMaxAdditionalSigops || got.CoinbaseOutputMaxAdditionalSigops != 0 {
		t.Errorf("6-byte form with 0 sigops: %+v", *got)
	}
	if _, err := Decode(h, []byte{0xe8, 0x03, 0, 0, 0}, codec.Options{}); !errors.Is(err, codec.ErrShort) {
		t.Errorf("5 bytes: %v", err)
	}
}

// PushSolution's nonce and ntime swapped places between 2025 SRI and spec
// HEAD; the wire cannot tell, so Options choose.
func TestPushSolutionOrder(t *testing.T) {
	m := &PushSolution{Extranonce: []byte{0xee}, PrevHash: h32(1), Nonce: 0x11111111, NTime: 0x22222222, NBits: 0x33333333, Version: 0x44444444}
	head := encode(t, m, codec.Options{})
	old := encode(t, m, codec.Options{PushSolution2025: true})
	const at = 2 + 32 // after extranonce (1+1) and prev_hash
	if !bytes.Equal(head[at:at+8], []byte{0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22, 0x22}) {
		t.Errorf("HEAD order: %x", head[at:at+8])
	}
	if !bytes.Equal(old[at:at+8], []byte{0x22, 0x22, 0x22, 0x22, 0x11, 0x11, 0x11, 0x11}) {
		t.Errorf("2025 order: %x", old[at:at+8])
	}
	h := codec.Header{MsgType: TypePushSolution}
	// A 2025 payload read as HEAD has the two swapped, and vice versa.
	got := decodeAs[*PushSolution](t, h, old, codec.Options{})
	if got.Nonce != m.NTime || got.NTime != m.Nonce || got.NBits != m.NBits || got.Version != m.Version {
		t.Errorf("2025 payload under HEAD options: %+v", got)
	}
	got = decodeAs[*PushSolution](t, h, old, codec.Options{PushSolution2025: true})
	if got.Nonce != m.Nonce || got.NTime != m.NTime {
		t.Errorf("2025 payload under 2025 options: %+v", got)
	}
}

// Core messages decode by msg_type whatever the channel bit says
// (DIGEST §1.1): 2025 SRI sends SetCustomMiningJob without it and
// PushSolution with it.
func TestChannelBitIgnored(t *testing.T) {
	for _, b := range populated {
		m := b()
		if m.ExtensionType()&codec.ExtensionMask != ExtensionCore {
			continue
		}
		payload := encode(t, m, codec.Options{})
		for _, ext := range []uint16{0, codec.ChannelBit} {
			got, err := Decode(codec.Header{ExtensionType: ext, MsgType: m.MsgType()}, payload, codec.Options{})
			if err != nil {
				t.Errorf("%s with extension_type 0x%04x: %v", m.MessageName(), ext, err)
				continue
			}
			if typeName(got) != typeName(m) {
				t.Errorf("%s with extension_type 0x%04x decoded as %T", m.MessageName(), ext, got)
			}
		}
	}
	// Extension negotiation messages likewise, with or without the bit.
	payload := encode(t, &RequestExtensions{RequestID: 1, RequestedExtensions: []uint16{2}}, codec.Options{})
	for _, ext := range []uint16{0x0001, 0x8001} {
		if _, err := Decode(codec.Header{ExtensionType: ext, MsgType: TypeRequestExtensions}, payload, codec.Options{}); err != nil {
			t.Errorf("RequestExtensions with 0x%04x: %v", ext, err)
		}
	}
}

func TestUnknown(t *testing.T) {
	payload := []byte{1, 2, 3, 4}
	for _, ext := range []uint16{0x0002, 0x0003, 0x4000, 0x7fff, 0x8002, 0xffff} {
		m, err := Decode(codec.Header{ExtensionType: ext, MsgType: 0}, payload, codec.Options{})
		if !errors.Is(err, ErrUnknownExtension) || m != nil {
			t.Errorf("extension 0x%04x: %v, %v", ext, m, err)
		}
	}
	for _, tc := range []struct {
		ext uint16
		typ uint8
	}{{0, 0x05}, {0, 0x1e}, {0, 0x52}, {0, 0x53}, {0, 0x54}, {0, 0x77}, {0, 0xff}, {0x8000, 0x7f}, {1, 0x03}} {
		m, err := Decode(codec.Header{ExtensionType: tc.ext, MsgType: tc.typ}, payload, codec.Options{})
		if !errors.Is(err, ErrUnknownMessage) || errors.Is(err, ErrUnknownExtension) || m != nil {
			t.Errorf("ext 0x%04x type 0x%02x: %v, %v", tc.ext, tc.typ, m, err)
		}
	}
}

type frameSource struct {
	h       codec.Header
	payload []byte
	err     error
}

func (f *frameSource) ReadFrame() (codec.Header, []byte, error) { return f.h, f.payload, f.err }

func TestRead(t *testing.T) {
	payload := []byte{0x02, 0x00, 0x03, 0x00, 0x00, 0x00}
	h := codec.Header{MsgType: TypeSetupConnectionSuccess, Length: uint32(len(payload))}
	m, gotH, err := Read(&frameSource{h: h, payload: payload}, codec.Options{})
	if err != nil || gotH != h {
		t.Fatalf("Read: %v %v", gotH, err)
	}
	if s, ok := m.(*SetupConnectionSuccess); !ok || *s != (SetupConnectionSuccess{UsedVersion: 2, Flags: 3}) {
		t.Errorf("Read = %#v", m)
	}
	// Unknown extension: the header comes back with the error so the caller
	// can log and skip the frame.
	h = codec.Header{ExtensionType: 0x0002, MsgType: 0x00, Length: 4}
	m, gotH, err = Read(&frameSource{h: h, payload: make([]byte, 4)}, codec.Options{})
	if !errors.Is(err, ErrUnknownExtension) || m != nil || gotH != h {
		t.Errorf("unknown extension: %v %v %v", m, gotH, err)
	}
	ioErr := errors.New("connection reset")
	if _, _, err := Read(&frameSource{err: ioErr}, codec.Options{}); !errors.Is(err, ioErr) {
		t.Errorf("transport error: %v", err)
	}
}

// ---- bounds ----

func TestBoundsDecode(t *testing.T) {
	tests := []struct {
		name    string
		typ     uint8
		payload []byte
		want    error
	}{
		{"B0_32 length 33", TypeSetExtranoncePrefix, append([]byte{1, 0, 0, 0, 33}, make([]byte, 33)...), codec.ErrInvalid},
		{"OPTION count 2", TypeNewMiningJob, append([]byte{1, 0, 0, 0, 2, 0, 0, 0, 2}, make([]byte, 4+4+4+32)...), codec.ErrInvalid},
		{"STR0_255 longer than payload", TypeCloseChannel, []byte{1, 0, 0, 0, 10, 'a'}, codec.ErrShort},
		{"SEQ0_64K[B0_16M] of 65535 in 10 bytes", TypeProvideMissingTransactionsSuccess, []byte{1, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0}, codec.ErrShort},
		{"B0_16M element longer than payload", TypeRequestTransactionDataSuccess, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0}, codec.ErrShort},
		{"SEQ0_64K[U256] of 65535, nothing after", TypeDeclareMiningJob, []byte{1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, codec.ErrShort},
		{"SEQ0_255[U256] of 255, nothing after", TypeNewExtendedMiningJob, []byte{1, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0xff}, codec.ErrShort},
	}
	for _, tc := range tests {
		m, err := Decode(codec.Header{MsgType: tc.typ}, tc.payload, codec.Options{})
		if !errors.Is(err, tc.want) || m != nil {
			t.Errorf("%s: %v, %v; want %v", tc.name, m, err, tc.want)
		}
	}
}

// A count that claims far more elements than the payload holds is refused
// before anything is allocated for the elements.
func TestHugeCountDoesNotAllocate(t *testing.T) {
	payload := []byte{1, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0}
	h := codec.Header{MsgType: TypeProvideMissingTransactionsSuccess}
	const runs = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		if _, err := Decode(h, payload, codec.Options{}); err == nil {
			t.Fatal("decoded")
		}
	}
	runtime.ReadMemStats(&after)
	// 65535 slice headers would be 1.5 MiB per run; the message value and the
	// error text are a few hundred bytes.
	if perRun := (after.TotalAlloc - before.TotalAlloc) / runs; perRun > 4096 {
		t.Errorf("%d bytes allocated per failed decode", perRun)
	}
}

func TestBoundsEncode(t *testing.T) {
	tests := []struct {
		name string
		m    codec.Message
	}{
		{"STR0_255 of 256", &CloseChannel{ReasonCode: strings.Repeat("x", 256)}},
		{"B0_32 of 33", &SetExtranoncePrefix{ExtranoncePrefix: make([]byte, 33)}},
		{"B0_255 of 256", &DeclareMiningJobSuccess{NewMiningJobToken: make([]byte, 256)}},
		{"B0_64K of 65536", &SubmitSolution{CoinbaseTx: make([]byte, 65536)}},
		{"SEQ0_255 of 256", &NewTemplate{MerklePath: make([][32]byte, 256)}},
		{"SEQ0_64K of 65536", &SetGroupChannel{ChannelIDs: make([]uint32, 65536)}},
	}
	for _, tc := range tests {
		if _, err := codec.Append(nil, tc.m, codec.Options{}); !errors.Is(err, codec.ErrTooLong) {
			t.Errorf("%s: %v, want ErrTooLong", tc.name, err)
		}
		if _, err := codec.AppendFrame(nil, tc.m, codec.Options{}); !errors.Is(err, codec.ErrTooLong) {
			t.Errorf("%s: AppendFrame: %v, want ErrTooLong", tc.name, err)
		}
	}
	// The limits themselves encode.
	if _, err := codec.Append(nil, &CloseChannel{ReasonCode: strings.Repeat("x", 255)}, codec.Options{}); err != nil {
		t.Errorf("STR0_255 of 255: %v", err)
	}
}
