package mining

import (
	"math"
	"math/big"

	"github.com/sv2kit/sv2kit/templates"
)

// Version-rolling masks (DIGEST §6.5). The spec switched from BIP320 to
// BIP323 on 2026-06-15; BIP320-era devices roll a subset of BIP323's bits.
const (
	BIP320VersionMask uint32 = 0x1fffe000
	BIP323VersionMask uint32 = 0x1fffffe0
)

// MaxTarget is the easiest possible target (every hash meets it).
var MaxTarget = [32]byte{
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
}

// Diff1Target is the difficulty-1 target (0x00000000ffff0000…, Bitcoin's
// "bdiff" definition), little-endian.
var Diff1Target = func() [32]byte {
	var t [32]byte
	t[26], t[27] = 0xff, 0xff
	return t
}()

var (
	two256   = new(big.Int).Lsh(big.NewInt(1), 256)
	maxU256  = new(big.Int).Sub(two256, big.NewInt(1))
	diff1Big = templates.TargetToBig(Diff1Target)
)

// CompareTargets compares two little-endian 256-bit values: -1 if a < b, 0 if
// equal, +1 if a > b. A smaller target is harder.
func CompareTargets(a, b *[32]byte) int {
	for i := 31; i >= 0; i-- {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// MeetsTarget reports whether hash (internal byte order, read as a
// little-endian integer) is at most target.
func MeetsTarget(hash, target *[32]byte) bool { return templates.MeetsTarget(hash, target) }

// HarderTarget returns the smaller (harder) of two targets.
func HarderTarget(a, b [32]byte) [32]byte {
	if CompareTargets(&a, &b) <= 0 {
		return a
	}
	return b
}

// EasierTarget returns the larger (easier) of two targets.
func EasierTarget(a, b [32]byte) [32]byte {
	if CompareTargets(&a, &b) >= 0 {
		return a
	}
	return b
}

// TargetToFloat converts a little-endian target to a float64 (for ratios and
// display; 53 bits of precision).
func TargetToFloat(t [32]byte) float64 {
	var f float64
	for i := 31; i >= 0; i-- {
		f = f*256 + float64(t[i])
	}
	return f
}

// DifficultyFromTarget is diff1 / target (pool "difficulty" of a share at that
// target). The zero target gives +Inf.
func DifficultyFromTarget(t [32]byte) float64 {
	f := TargetToFloat(t)
	if f == 0 {
		return math.Inf(1)
	}
	return TargetToFloat(Diff1Target) / f
}

// TargetFromDifficulty is diff1 / d, saturating to MaxTarget for d ≤ 0 or
// tiny d, and 1 (the hardest non-zero target) for huge d.
func TargetFromDifficulty(d float64) [32]byte {
	if !(d > 0) || math.IsNaN(d) {
		return MaxTarget
	}
	if math.IsInf(d, 1) {
		return templates.BigToTarget(big.NewInt(1))
	}
	q := new(big.Float).SetPrec(256).SetInt(diff1Big)
	q.Quo(q, new(big.Float).SetPrec(256).SetFloat64(d))
	v, _ := q.Int(nil)
	if v.Sign() <= 0 {
		v.SetInt64(1)
	}
	return templates.BigToTarget(v)
}

// TargetFromHashRate returns the target at which a device hashing at
// hashesPerSecond finds sharesPerMinute shares on average, with the rust
// formula (DIGEST §6.6): target = (2^256 − 1 − h·s) / (h·s + 1), h·s =
// hashrate · 60 / sharesPerMinute. Non-positive or non-finite inputs give
// MaxTarget.
func TargetFromHashRate(hashesPerSecond, sharesPerMinute float64) [32]byte {
	if !(hashesPerSecond > 0) || !(sharesPerMinute > 0) || math.IsInf(hashesPerSecond, 0) || math.IsInf(sharesPerMinute, 0) {
		return MaxTarget
	}
	hs := hashesPerSecond * 60 / sharesPerMinute
	if hs < 1 {
		return MaxTarget
	}
	hsBig, _ := new(big.Float).SetFloat64(math.Round(hs)).Int(nil)
	num := new(big.Int).Sub(maxU256, hsBig)
	if num.Sign() <= 0 {
		return templates.BigToTarget(big.NewInt(1))
	}
	den := new(big.Int).Add(hsBig, big.NewInt(1))
	v := num.Quo(num, den)
	if v.Sign() <= 0 {
		v.SetInt64(1)
	}
	return templates.BigToTarget(v)
}

// HashRateFromTarget is the inverse of TargetFromHashRate: the hash rate
// (hashes per second) that finds sharesPerMinute shares at target on average.
func HashRateFromTarget(t [32]byte, sharesPerMinute float64) float64 {
	return ExpectedHashes(t) * sharesPerMinute / 60
}

// ExpectedHashes is the average number of hashes per share at target:
// 2^256 / (target + 1).
func ExpectedHashes(t [32]byte) float64 {
	return math.Ldexp(1, 256) / (TargetToFloat(t) + 1)
}
