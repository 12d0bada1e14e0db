package templates

import (
	"bytes"
	"testing"

	"github.com/btcsuite/btcd/wire"
)

// wireOutputs is the reference: btcd's own output reader.
func wireOutputs(raw []byte, count int) ([]TxOutput, bool) {
	r := bytes.NewReader(raw)
	var outs []TxOutput
	for i := 0; i < count; i++ {
		var to wire.TxOut
		if err := wire.ReadTxOut(r, 0, wire.TxVersion, &to); err != nil {
			return nil, false
		}
		outs = append(outs, TxOutput{Value: to.Value, PkScript: to.PkScript})
	}
	return outs, r.Len() == 0
}

func TestParseOutputsTable(t *testing.T) {
	p2wpkh := append([]byte{0x00, 0x14}, make([]byte, 20)...)
	big := make([]byte, 300) // script length needs a 0xfd CompactSize
	tests := []struct {
		name  string
		raw   []byte
		count int
		ok    bool
	}{
		{"one", SerializeOutputs([]TxOutput{{Value: 5, PkScript: p2wpkh}}), 1, true},
		{"two with a 300-byte script", SerializeOutputs([]TxOutput{{Value: 1, PkScript: big}, {Value: 2}}), 2, true},
		{"empty script", SerializeOutputs([]TxOutput{{Value: 7}}), 1, true},
		{"truncated script", SerializeOutputs([]TxOutput{{Value: 5, PkScript: p2wpkh}})[:20], 1, false},
		{"non-canonical length", append(make([]byte, 8), 0xfd, 0x01, 0x00, 0xaa), 1, false},
		{"trailing byte", append(SerializeOutputs([]TxOutput{{Value: 5}}), 0), 1, false},
		{"zero outputs, empty", nil, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseOutputs(tc.raw, tc.count)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			want, wok := wireOutputs(tc.raw, tc.count)
			if wok != tc.ok {
				t.Fatalf("btcd disagrees with the table: ok=%v", wok)
			}
			if tc.ok && !outputsEqual(got, want) {
				t.Fatalf("got %v, btcd %v", got, want)
			}
		})
	}
}

func outputsEqual(a, b []TxOutput) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Value != b[i].Value || !bytes.Equal(a[i].PkScript, b[i].PkScript) {
			return false
		}
	}
	return true
}

func FuzzParseOutputs(f *testing.F) {
	f.Add(SerializeOutputs([]TxOutput{{Value: 5, PkScript: []byte{0x51}}, {Value: 0, PkScript: make([]byte, 300)}}), 2)
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0xfd, 0x01, 0x00, 0xaa}, 1)
	f.Fuzz(func(t *testing.T, raw []byte, count int) {
		if count > 64 {
			count %= 64
		}
		got, err := ParseOutputs(raw, count)
		if count < 0 || count > len(raw)/9 {
			if err == nil {
				t.Fatal("impossible count accepted")
			}
			return
		}
		want, ok := wireOutputs(raw, count)
		if (err == nil) != ok {
			t.Fatalf("ours err=%v, btcd ok=%v", err, ok)
		}
		if ok && !outputsEqual(got, want) {
			t.Fatalf("ours %v, btcd %v", got, want)
		}
	})
}

func BenchmarkParseOutputs(b *testing.B) {
	raw := SerializeOutputs([]TxOutput{{Value: 5, PkScript: make([]byte, 22)}, {Value: 0, PkScript: make([]byte, 38)}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseOutputs(raw, 2); err != nil {
			b.Fatal(err)
		}
	}
}
