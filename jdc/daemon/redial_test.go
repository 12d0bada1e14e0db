package daemon

import (
	"testing"
	"time"
)

// A peer that stays down is warned about once, again when the error
// changes, and again every repeatWarnEvery; the attempts between are debug.
func TestRepeatLimiter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	var r repeatLimiter
	for i, tc := range []struct {
		at   time.Duration
		msg  string
		warn bool
	}{
		{0, "connection refused", true},
		{time.Second, "connection refused", false},
		{time.Minute, "connection refused", false},
		{2 * time.Minute, "i/o timeout", true},
		{3 * time.Minute, "i/o timeout", false},
		{2*time.Minute + repeatWarnEvery, "i/o timeout", true},
		// Only the port differs: the same failure.
		{2*time.Minute + repeatWarnEvery + time.Second, "read tcp 127.0.0.1:53066->127.0.0.1:18999: reset", true},
		{2*time.Minute + repeatWarnEvery + 2*time.Second, "read tcp 127.0.0.1:53078->127.0.0.1:18999: reset", false},
	} {
		n, warn := r.note(t0.Add(tc.at), tc.msg)
		if warn != tc.warn || n != i+1 {
			t.Fatalf("failure %d (%s at %v): warn %v n %d, want warn %v n %d", i, tc.msg, tc.at, warn, n, tc.warn, i+1)
		}
	}
	r = repeatLimiter{} // a successful connection starts over
	if _, warn := r.note(t0.Add(time.Hour), "i/o timeout"); !warn {
		t.Fatal("first failure after a connection must warn")
	}
}
