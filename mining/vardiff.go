package mining

import (
	"math"
	"time"
)

// VardiffConfig tunes a Vardiff. Zero values take the defaults.
type VardiffConfig struct {
	// SharesPerMinute is the share rate to keep each channel near (default 10).
	SharesPerMinute float64
	// InitialHashRate is assumed for a device announcing 0 (default 1 MH/s,
	// a CPU miner): starting at the easiest target would flood the server.
	InitialHashRate float64
	// Disabled keeps every channel at the target it was opened with (or
	// later given with Channel.SetTarget / UpdateChannel).
	Disabled bool
	// Window is the shortest time shares are counted before the target may
	// change (default 60 s). A device far faster than its target is
	// retargeted sooner.
	Window time.Duration
}

func (c VardiffConfig) withDefaults() VardiffConfig {
	if !(c.SharesPerMinute > 0) || math.IsInf(c.SharesPerMinute, 0) {
		c.SharesPerMinute = 10
	}
	if !(c.InitialHashRate > 0) || math.IsInf(c.InitialHashRate, 0) {
		c.InitialHashRate = 1e6
	}
	if c.Window <= 0 {
		c.Window = time.Minute
	}
	return c
}

// Vardiff is a per-channel difficulty controller: it counts accepted shares
// over a window and moves the target so the channel finds about
// SharesPerMinute shares, never easier than its maximum target.
type Vardiff struct {
	cfg      VardiffConfig
	hashRate float64
	target   [32]byte
	max      [32]byte
	start    time.Time
	shares   float64
	restart  bool // start a new window at the next Update
}

// NewVardiff starts a controller for a device announcing hashRate (hashes per
// second; 0 = unknown: InitialHashRate) whose target may not exceed max.
func NewVardiff(cfg VardiffConfig, hashRate float64, max [32]byte, now time.Time) *Vardiff {
	v := &Vardiff{cfg: cfg.withDefaults(), max: max, start: now}
	if !(hashRate > 0) || math.IsInf(hashRate, 0) {
		hashRate = v.cfg.InitialHashRate
	}
	v.setHashRate(hashRate)
	return v
}

func (v *Vardiff) setHashRate(h float64) {
	if !(h > 0) || math.IsInf(h, 0) {
		h = 0
	}
	v.hashRate = h
	t := TargetFromHashRate(h, v.cfg.SharesPerMinute)
	v.target = HarderTarget(t, v.max)
}

// Target is the target the channel should mine at.
func (v *Vardiff) Target() [32]byte { return v.target }

// HashRate is the current hash-rate estimate (hashes per second).
func (v *Vardiff) HashRate() float64 { return v.hashRate }

// SharesPerMinute is the configured share rate.
func (v *Vardiff) SharesPerMinute() float64 { return v.cfg.SharesPerMinute }

// OnShare counts one accepted share found at the current target.
func (v *Vardiff) OnShare() { v.shares++ }

// SetHashRate resets the estimate (UpdateChannel) and restarts the window.
// It reports whether the target changed. 0 (a proxy with nothing connected)
// means InitialHashRate, so returning devices do not flood the server.
func (v *Vardiff) SetHashRate(h float64, now time.Time) bool {
	old := v.target
	if !(h > 0) || math.IsInf(h, 0) {
		h = v.cfg.InitialHashRate
	}
	v.setHashRate(h)
	v.start, v.shares = now, 0
	return old != v.target
}

// SetMax changes the easiest allowed target, reporting whether the target
// changed.
func (v *Vardiff) SetMax(max [32]byte) bool {
	old := v.target
	v.max = max
	v.target = HarderTarget(v.target, max)
	return old != v.target
}

// SetTarget overrides the target (clamped to the maximum); the estimate
// becomes the hash rate that target implies and a new window starts at the
// next Update.
func (v *Vardiff) SetTarget(t [32]byte) {
	v.target = HarderTarget(t, v.max)
	v.hashRate = HashRateFromTarget(v.target, v.cfg.SharesPerMinute)
	v.shares, v.restart = 0, true
}

// Update looks at the shares counted since the window started and retargets
// when the rate is off, reporting whether the target changed. Call it
// periodically (every few seconds); it does nothing until a window has passed
// unless the device is far too fast.
func (v *Vardiff) Update(now time.Time) bool {
	if v.cfg.Disabled {
		return false
	}
	if v.restart {
		v.start, v.shares, v.restart = now, 0, false
		return false
	}
	elapsed := now.Sub(v.start)
	if elapsed <= 0 {
		return false
	}
	spm := v.cfg.SharesPerMinute
	expected := spm * elapsed.Minutes()
	perWindow := spm * v.cfg.Window.Minutes()
	if elapsed < v.cfg.Window {
		// Early only when clearly too fast: a burst of many windows' worth.
		if v.shares < math.Max(8, 4*perWindow) {
			return false
		}
	}
	ratio := v.shares / expected
	if v.shares == 0 {
		ratio = 0.25
	}
	// Within a factor of two the estimate is kept accumulating for up to four
	// windows: with few shares per window, Poisson noise alone is ±30%.
	if ratio >= 0.5 && ratio <= 2 && elapsed < 4*v.cfg.Window {
		return false
	}
	ratio = math.Min(math.Max(ratio, 1.0/16), 64)
	old := v.target
	if math.Abs(ratio-1) >= 0.1 {
		// Measure against the target actually mined (it may be clamped to
		// the maximum), not the previous estimate.
		v.setHashRate(HashRateFromTarget(v.target, spm) * ratio)
	}
	v.start, v.shares = now, 0
	return old != v.target
}
