package mining

import (
	"math"
	"math/rand"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/sv2/messages"
)

// simulate runs a vardiff for a device of true hash rate h over d, ticking
// every 5 s. Shares arrive at the exact expected rate (deterministic: a
// fractional accumulator) unless rng is set (Poisson arrivals). It returns
// the share rate over the last 10 minutes and the number of retargets.
func simulate(v *Vardiff, h float64, start time.Time, d time.Duration, rng *rand.Rand) (spmTail float64, retargets int) {
	const tick = 5 * time.Second
	var acc float64
	tailShares := 0
	for now := start.Add(tick); now.Sub(start) <= d; now = now.Add(tick) {
		lambda := h * tick.Seconds() / ExpectedHashes(v.Target())
		n := 0
		if rng == nil {
			acc += lambda
			n = int(acc)
			acc -= float64(n)
		} else {
			n = poisson(rng, lambda)
		}
		v.shares += float64(n) // n × OnShare

		if now.Sub(start) > d-10*time.Minute {
			tailShares += n
		}
		if v.Update(now) {
			retargets++
		}
	}
	return float64(tailShares) / 10, retargets
}

func poisson(rng *rand.Rand, lambda float64) int {
	if lambda > 50 {
		return int(math.Max(0, math.Round(rng.NormFloat64()*math.Sqrt(lambda)+lambda)))
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

func TestVardiffConverges(t *testing.T) {
	const spm = 10
	tests := []struct {
		name      string
		announced float64
		actual    float64
	}{
		{"honest", 1e12, 1e12},
		{"unknown hash rate", 0, 5e9},
		{"overstated 100x", 1e14, 1e12},
		{"understated 1000x", 1e9, 1e12},
		{"cpu miner", 2e6, 3e6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVardiff(VardiffConfig{SharesPerMinute: spm}, tc.announced, MaxTarget, t0)
			rate, _ := simulate(v, tc.actual, t0, 30*time.Minute, nil)
			if rate < spm/2 || rate > spm*2 {
				t.Fatalf("share rate after 30 min %.2f/min, want about %d (target hash rate %.3g)", rate, spm, v.HashRate())
			}
			if math.Abs(v.HashRate()-tc.actual)/tc.actual > 0.5 {
				t.Fatalf("hash rate estimate %.3g, actual %.3g", v.HashRate(), tc.actual)
			}
		})
	}
}

func TestVardiffStableUnderNoise(t *testing.T) {
	const spm = 10
	rng := rand.New(rand.NewSource(1))
	v := NewVardiff(VardiffConfig{SharesPerMinute: spm}, 1e12, MaxTarget, t0)
	rate, retargets := simulate(v, 1e12, t0, 2*time.Hour, rng)
	if rate < spm*0.6 || rate > spm*1.6 {
		t.Fatalf("share rate %.2f/min", rate)
	}
	// An honest device with Poisson arrivals is retargeted rarely: at most
	// once per four windows, and only after a ≥10% error.
	if retargets > 30 {
		t.Fatalf("%d retargets in 2 h", retargets)
	}
}

func TestVardiffMaxAndReset(t *testing.T) {
	max := targetBits(40)
	v := NewVardiff(VardiffConfig{}, 1, max, t0) // 1 H/s wants a huge target
	if v.Target() != max {
		t.Fatal("target above max")
	}
	// Nothing before a window passes, without a burst.
	v.OnShare()
	if v.Update(t0.Add(30 * time.Second)) {
		t.Fatal("retarget inside the window")
	}
	// A burst retargets early.
	for i := 0; i < 100; i++ {
		v.OnShare()
	}
	if !v.Update(t0.Add(40 * time.Second)) {
		t.Fatal("burst not retargeted")
	}
	if CompareTargets(&max, &v.target) <= 0 {
		t.Fatal("burst did not make the target harder")
	}
	if !v.SetHashRate(1e15, t0) || v.HashRate() != 1e15 {
		t.Fatal("SetHashRate")
	}
	if v.SetMax(MaxTarget) {
		t.Fatal("easier max changed the target")
	}
	if !v.SetMax(targetBits(200)) || v.Target() != targetBits(200) {
		t.Fatal("harder max not applied")
	}
}

func TestSessionTickSendsSetTarget(t *testing.T) {
	s := NewSession(Config{Vardiff: VardiffConfig{SharesPerMinute: 6, Window: 30 * time.Second}}, mustAlloc(t, nil, 12, 8))
	c, _ := s.OpenExtended(&messages.OpenExtendedMiningChannel{NominalHashRate: 1e12, MaxTarget: MaxTarget}, t0)
	quiet, _ := s.OpenExtended(&messages.OpenExtendedMiningChannel{NominalHashRate: 1e12, MaxTarget: MaxTarget}, t0)
	_ = quiet
	// c finds 20× its expected shares; quiet finds none.
	for i := 0; i < 60; i++ {
		c.vd.OnShare()
	}
	out := s.Tick(t0.Add(31 * time.Second))
	if len(out) != 2 {
		t.Fatalf("%d SetTarget", len(out))
	}
	up := out[0].(*messages.SetTarget)
	down := out[1].(*messages.SetTarget)
	if up.ChannelID != c.ID() || up.MaximumTarget != c.Target() {
		t.Fatal("first SetTarget")
	}
	start := TargetFromHashRate(1e12, 6)
	if CompareTargets(&up.MaximumTarget, &start) >= 0 || CompareTargets(&down.MaximumTarget, &start) <= 0 {
		t.Fatal("targets moved the wrong way")
	}
	if len(s.Tick(t0.Add(32*time.Second))) != 0 {
		t.Fatal("retarget right after a retarget")
	}
}

func TestVardiffSetTargetAndDisabled(t *testing.T) {
	v := NewVardiff(VardiffConfig{}, 1e12, MaxTarget, t0)
	tg := TargetFromHashRate(5e12, 10)
	v.SetTarget(tg)
	if v.Target() != tg || math.Abs(v.HashRate()-5e12)/5e12 > 1e-6 {
		t.Fatalf("SetTarget: %v", v.HashRate())
	}
	// The next Update only starts the window; the device then finds shares
	// at the rate the new target implies and nothing changes.
	if v.Update(t0.Add(time.Hour)) {
		t.Fatal("retarget right after SetTarget")
	}
	if _, n := simulate(v, 5e12, t0.Add(time.Hour), 20*time.Minute, nil); n != 0 {
		t.Fatalf("%d retargets at the right rate", n)
	}

	off := NewVardiff(VardiffConfig{Disabled: true}, 1e12, MaxTarget, t0)
	for i := 0; i < 1000; i++ {
		off.OnShare()
	}
	if off.Update(t0.Add(time.Hour)) {
		t.Fatal("disabled vardiff retargeted")
	}
}
