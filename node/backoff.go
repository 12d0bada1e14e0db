package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Backoff computes waits that grow exponentially from Initial to Max, with
// random jitter so that many clients of one node do not retry in lockstep.
// The zero value uses the defaults below. A Backoff is not safe for
// concurrent use; each retry loop has its own.
type Backoff struct {
	Initial    time.Duration // first wait (default 250 ms)
	Max        time.Duration // cap (default 30 s)
	Multiplier float64       // growth per attempt (default 2)
	// Jitter is the fraction of each wait that is random: the wait is drawn
	// uniformly from [d·(1−Jitter), d]. Default 0.5; negative means none.
	Jitter float64
	// Rand returns a number in [0,1); nil uses math/rand/v2. Tests set it.
	Rand func() float64

	attempt int
}

const (
	defaultBackoffInitial = 250 * time.Millisecond
	defaultBackoffMax     = 30 * time.Second
)

// Next returns the wait before the next attempt and advances the attempt count.
func (b *Backoff) Next() time.Duration {
	initial, maxWait, mult, jitter := b.Initial, b.Max, b.Multiplier, b.Jitter
	if initial <= 0 {
		initial = defaultBackoffInitial
	}
	if maxWait <= 0 {
		maxWait = defaultBackoffMax
	}
	if maxWait < initial {
		maxWait = initial
	}
	if mult < 1 {
		mult = 2
	}
	switch {
	case jitter == 0:
		jitter = 0.5
	case jitter < 0:
		jitter = 0
	case jitter > 1:
		jitter = 1
	}
	d := float64(initial)
	for i := 0; i < b.attempt && d < float64(maxWait); i++ {
		d *= mult
	}
	if d > float64(maxWait) {
		d = float64(maxWait)
	}
	b.attempt++
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	d -= d * jitter * r()
	return time.Duration(d)
}

// Attempt returns how many waits Next has handed out since the last Reset.
func (b *Backoff) Attempt() int { return b.attempt }

// Reset starts over from Initial, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Sleep waits d or until ctx is done, and returns ctx.Err() in that case.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// permanentError stops Retry.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that Retry returns it at once instead of retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// Retry calls op until it succeeds, returns a Permanent error, or ctx is done,
// waiting b.Next() between attempts. Before each wait it calls notify (if not
// nil) with the error, the attempt number (1-based) and the wait, so the
// caller can log it (with Hint(err)). It returns nil on success, the
// unwrapped permanent error, or ctx's error joined with the last error.
func Retry(ctx context.Context, b *Backoff, op func(context.Context) error, notify func(err error, attempt int, wait time.Duration)) error {
	if b == nil {
		b = &Backoff{}
	}
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil {
			b.Reset()
			return nil
		}
		var pe *permanentError
		if errors.As(err, &pe) {
			return pe.err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
		wait := b.Next()
		if notify != nil {
			notify(err, attempt, wait)
		}
		if Sleep(ctx, wait) != nil {
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
	}
}
