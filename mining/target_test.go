package mining

import (
	"math"
	"math/big"
	"testing"

	"github.com/sv2kit/sv2kit/templates"
)

func TestDifficultyTargetRoundTrip(t *testing.T) {
	if got := TargetFromDifficulty(1); got != Diff1Target {
		t.Fatalf("difficulty 1 target = %x", got)
	}
	if d := DifficultyFromTarget(Diff1Target); d != 1 {
		t.Fatalf("diff1 difficulty = %v", d)
	}
	for _, d := range []float64{0.001, 1, 2, 1000, 1e6, 123456.789, 1e12, 1e15} {
		got := DifficultyFromTarget(TargetFromDifficulty(d))
		if math.Abs(got-d)/d > 1e-9 {
			t.Errorf("difficulty %v round trips to %v", d, got)
		}
	}
	if TargetFromDifficulty(0) != MaxTarget || TargetFromDifficulty(-1) != MaxTarget || TargetFromDifficulty(math.NaN()) != MaxTarget {
		t.Error("non-positive difficulty should give MaxTarget")
	}
	if DifficultyFromTarget([32]byte{}) != math.Inf(1) {
		t.Error("zero target should be infinitely hard")
	}
	// Mainnet genesis nBits is difficulty 1.
	if d := DifficultyFromTarget(templates.TargetFromBits(0x1d00ffff)); d != 1 {
		t.Errorf("0x1d00ffff difficulty = %v", d)
	}
}

func TestTargetFromHashRate(t *testing.T) {
	tests := []struct {
		name     string
		hashRate float64
		spm      float64
	}{
		{"cpu 1 MH/s", 1e6, 10},
		{"s19 100 TH/s", 100e12, 6},
		{"1 EH/s", 1e18, 60},
		{"slow", 10, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := TargetFromHashRate(tc.hashRate, tc.spm)
			// (2^256-1-hs)/(hs+1) exactly
			hs := new(big.Int).SetUint64(uint64(math.Round(tc.hashRate * 60 / tc.spm)))
			want := new(big.Int).Sub(maxU256, hs)
			want.Quo(want, new(big.Int).Add(hs, big.NewInt(1)))
			if got := templates.TargetToBig(tg); got.Cmp(want) != 0 {
				t.Fatalf("target %x, want %x", got, want)
			}
			back := HashRateFromTarget(tg, tc.spm)
			// The rust formula is off by one hash per share: negligible
			// except for tiny rates.
			tol := 1e-6 + 2/(tc.hashRate*60/tc.spm)
			if math.Abs(back-tc.hashRate)/tc.hashRate > tol {
				t.Fatalf("hash rate round trip %v → %v", tc.hashRate, back)
			}
		})
	}
	for _, bad := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if TargetFromHashRate(bad, 10) != MaxTarget {
			t.Errorf("hash rate %v should give MaxTarget", bad)
		}
	}
}

func TestCompareTargets(t *testing.T) {
	a, b := targetBits(10), targetBits(20)
	if CompareTargets(&a, &b) != 1 || CompareTargets(&b, &a) != -1 || CompareTargets(&a, &a) != 0 {
		t.Fatal("compare")
	}
	if HarderTarget(a, b) != b || EasierTarget(a, b) != a {
		t.Fatal("harder/easier")
	}
	// Low byte decides when high bytes are equal.
	c := a
	c[0]--
	if CompareTargets(&c, &a) != -1 {
		t.Fatal("low byte compare")
	}
	h := [32]byte{31: 0x00, 30: 0x3f}
	if !MeetsTarget(&h, &a) || MeetsTarget(&a, &h) {
		t.Fatal("meets")
	}
}
