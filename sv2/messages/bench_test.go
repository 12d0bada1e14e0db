package messages

import (
	"testing"

	"github.com/sv2kit/sv2kit/sv2/codec"
)

// Encoding into a reused buffer and decoding into a reused value must not
// allocate for fixed-size messages: they are the per-share hot path.

type benchCase struct {
	name string
	m    codec.Message
	// fresh returns the value to decode into (reused across iterations).
	fresh func() codec.Message
}

func fixedBenchCases() []benchCase {
	return []benchCase{
		{"SubmitSharesStandard", &SubmitSharesStandard{ChannelID: 1, SequenceNumber: 2, JobID: 3, Nonce: 4, NTime: 5, Version: 6},
			func() codec.Message { return new(SubmitSharesStandard) }},
		{"SubmitSharesExtended", &SubmitSharesExtended{ChannelID: 1, SequenceNumber: 2, JobID: 3, Nonce: 4, NTime: 5, Version: 6, Extranonce: bytesOf(8, 1)},
			func() codec.Message { return new(SubmitSharesExtended) }},
		{"MiningSetNewPrevHash", &MiningSetNewPrevHash{ChannelID: 1, JobID: 2, PrevHash: h32(3), MinNTime: 4, NBits: 5},
			func() codec.Message { return new(MiningSetNewPrevHash) }},
		{"SetNewPrevHash", &SetNewPrevHash{TemplateID: 1, PrevHash: h32(2), HeaderTimestamp: 3, NBits: 4, Target: h32(5)},
			func() codec.Message { return new(SetNewPrevHash) }},
		{"SubmitSharesSuccess", &SubmitSharesSuccess{ChannelID: 1, LastSequenceNumber: 2, NewSubmitsAcceptedCount: 3, NewSharesSum: 4},
			func() codec.Message { return new(SubmitSharesSuccess) }},
	}
}

func largeBenchCases() []benchCase {
	wtxids := make([][32]byte, 4000)
	for i := range wtxids {
		wtxids[i] = h32(byte(i))
	}
	return []benchCase{
		{"NewTemplate", &NewTemplate{TemplateID: 1, Version: 0x20000000, CoinbaseTxVersion: 2, CoinbasePrefix: bytesOf(4, 1),
			CoinbaseTxInputSequence: 0xfffffffe, CoinbaseTxValueRemaining: 312500000, CoinbaseTxOutputsCount: 1,
			CoinbaseTxOutputs: bytesOf(47, 2), CoinbaseTxLocktime: 903386, MerklePath: wtxids[:12]}, // 12 levels: ~4000 txs
			func() codec.Message { return new(NewTemplate) }},
		{"DeclareMiningJob/4000wtxids", &DeclareMiningJob{RequestID: 1, MiningJobToken: bytesOf(4, 3), Version: 0x20000000,
			CoinbaseTxPrefix: bytesOf(50, 4), CoinbaseTxSuffix: bytesOf(120, 5), WtxidList: wtxids, ExcessData: make32(0)},
			func() codec.Message { return new(DeclareMiningJob) }},
	}
}

func benchEncode(b *testing.B, cases []benchCase) {
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, codec.Size(bc.m))
			b.ReportAllocs()
			b.SetBytes(int64(codec.Size(bc.m)))
			for b.Loop() {
				var err error
				buf, err = codec.Append(buf[:0], bc.m, codec.Options{})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchDecode(b *testing.B, cases []benchCase) {
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			payload, err := codec.Append(nil, bc.m, codec.Options{})
			if err != nil {
				b.Fatal(err)
			}
			m := bc.fresh()
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if err := codec.Decode(payload, m, codec.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeFixed(b *testing.B) { benchEncode(b, fixedBenchCases()) }
func BenchmarkDecodeFixed(b *testing.B) { benchDecode(b, fixedBenchCases()) }
func BenchmarkEncodeLarge(b *testing.B) { benchEncode(b, largeBenchCases()) }
func BenchmarkDecodeLarge(b *testing.B) { benchDecode(b, largeBenchCases()) }

// TestFixedSizeNoAllocs turns the benchmarks' zero-allocation claim into a
// test, so a regression fails `go test` and not only a benchmark reading.
func TestFixedSizeNoAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation allocates")
	}
	for _, bc := range fixedBenchCases() {
		buf := make([]byte, 0, 256)
		payload, _ := codec.Append(nil, bc.m, codec.Options{})
		m := bc.fresh()
		enc := testing.AllocsPerRun(100, func() { buf, _ = codec.Append(buf[:0], bc.m, codec.Options{}) })
		dec := testing.AllocsPerRun(100, func() { _ = codec.Decode(payload, m, codec.Options{}) })
		if enc != 0 || dec != 0 {
			t.Errorf("%s: %v allocs per encode, %v per decode", bc.name, enc, dec)
		}
	}
}
