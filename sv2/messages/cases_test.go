package messages

import (
	"math"
	"reflect"

	"github.com/sv2kit/sv2kit/sv2/codec"
)

// Test fixtures shared by the round-trip, bounds, fuzz and benchmark tests.

func u32p(v uint32) *uint32 { return &v }

// h32 is a 32-byte value whose bytes count up from seed, so fields differ.
func h32(seed byte) (h [32]byte) {
	for i := range h {
		h[i] = seed + byte(i)
	}
	return h
}

func bytesOf(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)
	}
	return b
}

// tlvWorker is a worker-identity TLV (extension 0x0002, field type 0x01,
// length 5, "alice") in rust's little-endian encoding (DIGEST §1.3).
var tlvWorker = []byte{0x02, 0x00, 0x01, 0x05, 0x00, 'a', 'l', 'i', 'c', 'e'}

// populated lists one instance of every message with every field non-zero
// and every slice non-empty. Each entry builds a fresh value, so a test can
// build the expected message and the one it encodes independently.
// TestPopulatedCoversRegistry keeps it complete.
var populated = []func() codec.Message{
	// Common.
	func() codec.Message {
		return &SetupConnection{Protocol: ProtocolJobDeclaration, MinVersion: 2, MaxVersion: 3, Flags: FlagDeclareTxData,
			EndpointHost: "127.0.0.1", EndpointPort: 34264, Vendor: "sv2kit", HardwareVersion: "hw1", Firmware: "fw1", DeviceID: "dev-1"}
	},
	func() codec.Message { return &SetupConnectionSuccess{UsedVersion: 2, Flags: 3} },
	func() codec.Message { return &SetupConnectionError{Flags: 6, ErrorCode: "unsupported-feature-flags"} },
	func() codec.Message { return &ChannelEndpointChanged{ChannelID: 0x01020304} },
	func() codec.Message { return &Reconnect{NewHost: "pool.example", NewPort: 34254} },

	// Mining.
	func() codec.Message {
		return &OpenStandardMiningChannel{RequestID: 7, UserIdentity: "alice.worker1", NominalHashRate: 1.5e12, MaxTarget: h32(0x10)}
	},
	func() codec.Message {
		return &OpenStandardMiningChannelSuccess{RequestID: 7, ChannelID: 8, Target: h32(0x20), ExtranoncePrefix: bytesOf(4, 1), GroupChannelID: 9}
	},
	func() codec.Message { return &OpenMiningChannelError{RequestID: 7, ErrorCode: "unknown-user"} },
	func() codec.Message {
		return &OpenExtendedMiningChannel{RequestID: 7, UserIdentity: "alice", NominalHashRate: 100e12, MaxTarget: h32(0x30), MinExtranonceSize: 8}
	},
	func() codec.Message {
		return &OpenExtendedMiningChannelSuccess{RequestID: 7, ChannelID: 8, Target: h32(0x40), ExtranonceSize: 8,
			ExtranoncePrefix: bytesOf(8, 2), GroupChannelID: 1, HasGroupChannelID: true}
	},
	func() codec.Message {
		return &NewMiningJob{ChannelID: 8, JobID: 11, MinNTime: u32p(1700000000), Version: 0x20000000, MerkleRoot: h32(0x50)}
	},
	func() codec.Message {
		return &UpdateChannel{ChannelID: 8, NominalHashRate: 2.5, MaximumTarget: h32(0x60)}
	},
	func() codec.Message { return &UpdateChannelError{ChannelID: 8, ErrorCode: "invalid-channel-id"} },
	func() codec.Message { return &CloseChannel{ChannelID: 8, ReasonCode: "shutdown"} },
	func() codec.Message { return &SetExtranoncePrefix{ChannelID: 8, ExtranoncePrefix: bytesOf(32, 3)} },
	func() codec.Message {
		return &SubmitSharesStandard{ChannelID: 8, SequenceNumber: 1, JobID: 11, Nonce: 0xdeadbeef, NTime: 1700000001, Version: 0x20000004}
	},
	func() codec.Message {
		return &SubmitSharesExtended{ChannelID: 8, SequenceNumber: 2, JobID: 11, Nonce: 0xcafebabe, NTime: 1700000002,
			Version: 0x20000008, Extranonce: bytesOf(8, 4), TLVs: append([]byte(nil), tlvWorker...)}
	},
	func() codec.Message {
		return &SubmitSharesSuccess{ChannelID: 8, LastSequenceNumber: 2, NewSubmitsAcceptedCount: 2, NewSharesSum: 1 << 40}
	},
	func() codec.Message {
		return &SubmitSharesError{ChannelID: 8, SequenceNumber: 3, ErrorCode: "stale-share"}
	},
	func() codec.Message {
		return &NewExtendedMiningJob{ChannelID: 8, JobID: 12, MinNTime: u32p(1700000003), Version: 0x20000000, VersionRollingAllowed: true,
			MerklePath: [][32]byte{h32(0x70), h32(0x71)}, CoinbaseTxPrefix: bytesOf(42, 5), CoinbaseTxSuffix: bytesOf(60, 6)}
	},
	func() codec.Message {
		return &MiningSetNewPrevHash{ChannelID: 8, JobID: 12, PrevHash: h32(0x80), MinNTime: 1700000004, NBits: 0x1703a30c}
	},
	func() codec.Message { return &SetTarget{ChannelID: 8, MaximumTarget: h32(0x90)} },
	func() codec.Message {
		return &SetCustomMiningJob{ChannelID: 8, RequestID: 13, MiningJobToken: bytesOf(64, 7), Version: 0x20000000, PrevHash: h32(0xa0),
			MinNTime: 1700000005, NBits: 0x1703a30c, CoinbaseTxVersion: 2, CoinbasePrefix: bytesOf(12, 8), CoinbaseTxInputNSequence: 0xfffffffe,
			CoinbaseTxOutputs: bytesOf(44, 9), CoinbaseTxLocktime: 903387, MerklePath: [][32]byte{h32(0xa1)}}
	},
	func() codec.Message { return &SetCustomMiningJobSuccess{ChannelID: 8, RequestID: 13, JobID: 14} },
	func() codec.Message {
		return &SetCustomMiningJobError{ChannelID: 8, RequestID: 13, ErrorCode: "stale-chain-tip"}
	},
	func() codec.Message { return &SetGroupChannel{GroupChannelID: 1, ChannelIDs: []uint32{8, 9, 10}} },

	// Job Declaration.
	func() codec.Message { return &AllocateMiningJobToken{UserIdentifier: "jdc-1", RequestID: 21} },
	func() codec.Message {
		return &AllocateMiningJobTokenSuccess{RequestID: 21, MiningJobToken: bytesOf(4, 10), CoinbaseTxOutputs: bytesOf(32, 11)}
	},
	func() codec.Message {
		return &ProvideMissingTransactions{RequestID: 22, UnknownTxPositionList: []uint16{0, 5, 65535}}
	},
	func() codec.Message {
		return &ProvideMissingTransactionsSuccess{RequestID: 22, TransactionList: [][]byte{bytesOf(100, 12), bytesOf(1, 13), bytesOf(300, 14)}}
	},
	func() codec.Message {
		return &DeclareMiningJob{RequestID: 22, MiningJobToken: bytesOf(4, 15), Version: 0x20000000, CoinbaseTxPrefix: bytesOf(50, 16),
			CoinbaseTxSuffix: bytesOf(80, 17), WtxidList: [][32]byte{h32(0xb0), h32(0xb1), h32(0xb2)}, ExcessData: make32(0xc0)}
	},
	func() codec.Message {
		return &DeclareMiningJobSuccess{RequestID: 22, NewMiningJobToken: bytesOf(64, 18)}
	},
	func() codec.Message {
		return &DeclareMiningJobError{RequestID: 22, ErrorCode: "invalid-mining-job-token", ErrorDetails: bytesOf(3, 19)}
	},
	func() codec.Message {
		return &PushSolution{Extranonce: bytesOf(16, 20), PrevHash: h32(0xd0), Nonce: 0x11223344, NTime: 1700000006, NBits: 0x1703a30c, Version: 0x20000010}
	},

	// Template Distribution.
	func() codec.Message {
		return &CoinbaseOutputConstraints{CoinbaseOutputMaxAdditionalSize: 100, CoinbaseOutputMaxAdditionalSigops: 4, HasMaxAdditionalSigops: true}
	},
	func() codec.Message {
		return &NewTemplate{TemplateID: 1, FutureTemplate: true, Version: 0x20000000, CoinbaseTxVersion: 2, CoinbasePrefix: []byte{0x03, 0x01, 0x21, 0x00},
			CoinbaseTxInputSequence: 0xfffffffe, CoinbaseTxValueRemaining: 312500000, CoinbaseTxOutputsCount: 1,
			CoinbaseTxOutputs: bytesOf(47, 21), CoinbaseTxLocktime: 903386, MerklePath: [][32]byte{h32(0xe0), h32(0xe1), h32(0xe2)}}
	},
	func() codec.Message {
		return &SetNewPrevHash{TemplateID: 1, PrevHash: h32(0xf0), HeaderTimestamp: 1700000007, NBits: 0x1703a30c, Target: h32(0xf1)}
	},
	func() codec.Message { return &RequestTransactionData{TemplateID: 1} },
	func() codec.Message {
		return &RequestTransactionDataSuccess{TemplateID: 1, ExcessData: make32(0), TransactionList: [][]byte{bytesOf(200, 22), bytesOf(150, 23)}}
	},
	func() codec.Message {
		return &RequestTransactionDataError{TemplateID: 1, ErrorCode: "template-id-not-found"}
	},
	func() codec.Message {
		return &SubmitSolution{TemplateID: 1, Version: 0x20000000, HeaderTimestamp: 1700000008, HeaderNonce: 0x55667788, CoinbaseTx: bytesOf(120, 24)}
	},

	// Extensions Negotiation.
	func() codec.Message { return &RequestExtensions{RequestID: 1, RequestedExtensions: []uint16{0x0002}} },
	func() codec.Message {
		return &RequestExtensionsSuccess{RequestID: 1, SupportedExtensions: []uint16{0x0002}}
	},
	func() codec.Message {
		return &RequestExtensionsError{RequestID: 1, UnsupportedExtensions: []uint16{0x0003}, RequiredExtensions: []uint16{0x0002, 0x0004}}
	},
}

// make32 is a 32-byte slice filled with v (0 gives the witness reserved value).
func make32(v byte) []byte {
	b := make([]byte, 32)
	for i := range b {
		b[i] = v
	}
	return b
}

// rtCase is one round-trip case: a name and a builder of fresh values.
type rtCase struct {
	name  string
	build func() codec.Message
}

// roundTripCases is every populated message plus the zero value of every
// registered message.
func roundTripCases() []rtCase {
	var cs []rtCase
	for _, b := range populated {
		cs = append(cs, rtCase{"populated/" + typeName(b()), b})
	}
	for _, e := range table {
		cs = append(cs, rtCase{"zero/" + typeName(e.new()), e.new})
	}
	return cs
}

func typeName(m codec.Message) string { return reflect.TypeOf(m).Elem().Name() }

// normalize makes decoded and constructed values comparable: empty slices
// become nil (decoding yields empty non-nil slices for zero lengths).
func normalize(m codec.Message) codec.Message {
	normalizeValue(reflect.ValueOf(m).Elem())
	return m
}

func normalizeValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			normalizeValue(v.Field(i))
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.SetZero()
			return
		}
		if v.Type().Elem().Kind() == reflect.Slice {
			for i := range v.Len() {
				normalizeValue(v.Index(i))
			}
		}
	}
}

// markPresent sets the "field was on the wire" flags that decoding always
// reports true for a message this package encoded (it always writes the
// trailing fields).
func markPresent(m codec.Message) codec.Message {
	switch m := m.(type) {
	case *CoinbaseOutputConstraints:
		m.HasMaxAdditionalSigops = true
	case *OpenExtendedMiningChannelSuccess:
		m.HasGroupChannelID = true
	}
	return m
}

// optionalTail is how many trailing payload bytes of m's encoding a decoder
// accepts missing: fields appended to a message after its first release and
// TLVs.
func optionalTail(m codec.Message) int {
	switch m := m.(type) {
	case *CoinbaseOutputConstraints:
		return 2
	case *OpenExtendedMiningChannelSuccess:
		return 4
	case *SubmitSharesExtended:
		return len(m.TLVs)
	}
	return 0
}

// sameMessage is reflect.DeepEqual on normalized messages, except that F32
// fields compare by bit pattern: the wire carries NaNs, and NaN != NaN.
func sameMessage(a, b codec.Message) bool {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	if va.Type() != vb.Type() {
		return false
	}
	for i := range va.NumField() {
		fa, fb := va.Field(i), vb.Field(i)
		if fa.Kind() == reflect.Float32 {
			if math.Float32bits(float32(fa.Float())) != math.Float32bits(float32(fb.Float())) {
				return false
			}
			continue
		}
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			return false
		}
	}
	return true
}
