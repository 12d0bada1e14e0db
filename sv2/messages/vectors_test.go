package messages

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"

	"github.com/sv2kit/sv2kit/sv2/codec"
)

// Known-answer vectors. Unless noted, source: sv2-tp (github.com/Sjors/sv2-tp,
// now stratum-mining/sv2-tp) src/test/sv2_messages_tests.cpp, payload bytes
// only; also quoted in DIGEST §3 and §4.1.
type vector struct {
	source string
	ext    uint16
	typ    uint8
	// payload is hex; spaces are for reading only.
	payload string
	want    codec.Message
}

func prevHashVector() (h [32]byte) {
	copy(h[:], mustHex("e59a2ef8d4826b89fe637f3b5322c0f167fd2d3dc88ec568a7c2c8ffd8eb8873"))
	return h
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

var vectors = []vector{
	{
		source: "sv2-tp Sv2SetupConnection_test (82-byte payload)",
		typ:    TypeSetupConnection,
		payload: "02 0200 0200 01000000 07 302e302e302e30 6121 07 4269746d61696e 08 5339692031332e35" +
			" 1c 62726169696e732d6f732d323031382d30392d32322d312d68617368 10 736f6d652d6465766963652d75756964",
		want: &SetupConnection{Protocol: 2, MinVersion: 2, MaxVersion: 2, Flags: 1, EndpointHost: "0.0.0.0", EndpointPort: 8545,
			Vendor: "Bitmain", HardwareVersion: "S9i 13.5", Firmware: "braiins-os-2018-09-22-1-hash", DeviceID: "some-device-uuid"},
	},
	{
		source:  "sv2-tp Sv2SetupConnectionSuccess_test",
		typ:     TypeSetupConnectionSuccess,
		payload: "0200 03000000",
		want:    &SetupConnectionSuccess{UsedVersion: 2, Flags: 3},
	},
	{
		source:  "sv2-tp Sv2SetupConnectionError_test",
		typ:     TypeSetupConnectionError,
		payload: "00000000 19 70726f746f636f6c2d76657273696f6e2d6d69736d61746368",
		want:    &SetupConnectionError{Flags: 0, ErrorCode: "protocol-version-mismatch"},
	},
	{
		source: "sv2-tp Sv2NewTemplate_test",
		typ:    TypeNewTemplate,
		payload: "0100000000000000 00 00000030 02000000 04 03012100 ffffffff 0040075af0750700 01000000" +
			" 0c00 0100000000000000036a012a dbc80d00 01 1a6240823de4c8d6aaf826851bdf2b0e8d5acf7c31e8578cff4c394b5a32bd4e",
		want: &NewTemplate{TemplateID: 1, FutureTemplate: false, Version: 0x30000000, CoinbaseTxVersion: 2,
			CoinbasePrefix: []byte{0x03, 0x01, 0x21, 0x00}, CoinbaseTxInputSequence: 0xffffffff,
			CoinbaseTxValueRemaining: 2_100_000_000_000_000, // MAX_MONEY
			CoinbaseTxOutputsCount:   1,
			// One output: value 1, script OP_RETURN 42 (no count prefix).
			CoinbaseTxOutputs:  mustHex("0100000000000000 03 6a012a"),
			CoinbaseTxLocktime: 903387,
			MerklePath:         [][32]byte{[32]byte(mustHex("1a6240823de4c8d6aaf826851bdf2b0e8d5acf7c31e8578cff4c394b5a32bd4e"))}},
	},
	{
		source: "sv2-tp Sv2NewTemplate_MultipleOutputs_test",
		typ:    TypeNewTemplate,
		payload: "0100000000000000 00 00000030 02000000 04 03012100 ffffffff 0040075af0750700 03000000" +
			" 2100 6400000000000000026a51 c800000000000000026a52 2c01000000000000026a53 dbc80d00" +
			" 01 1a6240823de4c8d6aaf826851bdf2b0e8d5acf7c31e8578cff4c394b5a32bd4e",
		want: &NewTemplate{TemplateID: 1, Version: 0x30000000, CoinbaseTxVersion: 2,
			CoinbasePrefix: []byte{0x03, 0x01, 0x21, 0x00}, CoinbaseTxInputSequence: 0xffffffff,
			CoinbaseTxValueRemaining: 2_100_000_000_000_000, CoinbaseTxOutputsCount: 3,
			CoinbaseTxOutputs:  mustHex("6400000000000000026a51 c800000000000000026a52 2c01000000000000026a53"),
			CoinbaseTxLocktime: 903387,
			MerklePath:         [][32]byte{[32]byte(mustHex("1a6240823de4c8d6aaf826851bdf2b0e8d5acf7c31e8578cff4c394b5a32bd4e"))}},
	},
	{
		source: "sv2-tp Sv2SetNewPrevHash_test",
		typ:    TypeSetNewPrevHash,
		payload: "0200000000000000 e59a2ef8d4826b89fe637f3b5322c0f167fd2d3dc88ec568a7c2c8ffd8eb8873 973c0e63 ffff7f03" +
			" ffff7f0000000000000000000000000000000000000000000000000000000000",
		want: &SetNewPrevHash{TemplateID: 2, PrevHash: prevHashVector(), HeaderTimestamp: 1661877399, NBits: 0x037fffff,
			Target: [32]byte(mustHex("ffff7f0000000000000000000000000000000000000000000000000000000000"))},
	},
	{
		source:  "DIGEST §1.3: worker-identity TLV in rust's little-endian form after the declared fields",
		typ:     TypeSubmitSharesExtended,
		ext:     codec.ChannelBit,
		payload: "08000000 02000000 0b000000 efbeadde 01f15365 08000020 04 01020304 0200010500616c696365",
		want: &SubmitSharesExtended{ChannelID: 8, SequenceNumber: 2, JobID: 11, Nonce: 0xdeadbeef, NTime: 0x6553f101,
			Version: 0x20000008, Extranonce: []byte{1, 2, 3, 4}, TLVs: tlvWorker},
	},
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.source, func(t *testing.T) {
			payload := mustHex(v.payload)
			h := codec.Header{ExtensionType: v.ext, MsgType: v.typ, Length: uint32(len(payload))}
			got, err := Decode(h, payload, codec.Options{})
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(v.want)) {
				t.Fatalf("decoded\n %#v\nwant\n %#v", got, v.want)
			}
			// Re-encoding the decoded value and the expected value both give
			// the vector's bytes.
			for _, m := range []codec.Message{got, v.want} {
				frame, err := codec.AppendFrame(nil, m, codec.Options{})
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(frame[codec.HeaderSize:], payload) {
					t.Errorf("re-encoded\n %x\nwant\n %x", frame[codec.HeaderSize:], payload)
				}
				wantHdr := h
				wantHdr.ExtensionType = m.ExtensionType()
				var hb [codec.HeaderSize]byte
				wantHdr.Put(hb[:])
				if !bytes.Equal(frame[:codec.HeaderSize], hb[:]) {
					t.Errorf("header %x, want %x", frame[:codec.HeaderSize], hb)
				}
			}
		})
	}
}

// TestVectorHeaders checks whole-frame headers against sv2-tp's
// Sv2NetHeader_* tests and DIGEST §1.1.
func TestVectorHeaders(t *testing.T) {
	setup, _ := Decode(codec.Header{}, mustHex(vectors[0].payload), codec.Options{})
	tests := []struct {
		source string
		m      codec.Message
		header string
	}{
		{"sv2-tp Sv2NetHeader_SetupConnection_test", setup, "000000520000"},
		{"DIGEST §1.1 SetupConnection.Success", &SetupConnectionSuccess{UsedVersion: 2, Flags: 3}, "000001060000"},
	}
	for _, tc := range tests {
		frame, err := codec.AppendFrame(nil, tc.m, codec.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(frame[:codec.HeaderSize]); got != tc.header {
			t.Errorf("%s: header %s, want %s", tc.source, got, tc.header)
		}
	}
	// Zero-length headers from sv2-tp's Sv2NetHeader_NewTemplate_test and
	// Sv2NetHeader_SetNewPrevHash_test name the TDP messages.
	for hx, want := range map[string]string{"000071000000": "NewTemplate", "000072000000": "SetNewPrevHash"} {
		h, err := codec.ParseHeader(mustHex(hx))
		if err != nil {
			t.Fatal(err)
		}
		if h.Length != 0 || Name(h.ExtensionType, h.MsgType) != want {
			t.Errorf("%s: %v %s", hx, h, Name(h.ExtensionType, h.MsgType))
		}
		if m, _ := New(h.Extension(), h.MsgType); typeName(m) != want {
			t.Errorf("%s decodes as %T", hx, m)
		}
	}
}
