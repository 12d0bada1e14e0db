package chains

import (
	"errors"
	"strings"
	"testing"

	"github.com/sv2kit/sv2kit/internal/config"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		name    string
		tpPort  int
		halving int64
		hrp     string
	}{
		{"main", 8336, 210_000, "bc"},
		{"testnet4", 48336, 210_000, "tb"},
		{"test", 18336, 210_000, "tb"},
		{"signet", 38336, 210_000, "tb"},
		{"regtest", 18447, 150, "bcrt"},
	}
	for _, tc := range tests {
		n, err := Lookup(tc.name)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n.TPPort != tc.tpPort || n.HalvingInterval != tc.halving || n.Params.Bech32HRPSegwit != tc.hrp {
			t.Errorf("%s: got port %d halving %d hrp %s", tc.name, n.TPPort, n.HalvingInterval, n.Params.Bech32HRPSegwit)
		}
	}
	if len(Names()) != len(tests) {
		t.Errorf("Names() = %v", Names())
	}
}

func TestLookupUnknownNamesKey(t *testing.T) {
	_, err := Lookup("mainnet")
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Key != "network" || !strings.Contains(err.Error(), "regtest") {
		t.Fatalf("err = %v, want a config error on key network listing the names", err)
	}
}
