package node

import (
	"context"
	"testing"
	"time"
)

func TestIsDuplicateBlock(t *testing.T) {
	for _, tc := range []struct {
		result string
		want   bool
	}{
		{"", false},
		{"duplicate", true},
		{"rejected: already have block 0000abcd", true},
		{"high-hash", false},
		{"bad-txnmrklroot", false},
	} {
		if got := IsDuplicateBlock(tc.result); got != tc.want {
			t.Errorf("IsDuplicateBlock(%q) = %v", tc.result, got)
		}
	}
}

// The node warming up (-28) is retried; the node's answer then ends it.
func TestSubmitBlockRetrying(t *testing.T) {
	s := newCoreServer(t)
	c := mustClient(t, Config{URL: s.url(), User: "alice", Password: "secret"})
	s.setFail(-28, "Loading block index...")
	retries := make(chan int, 16)
	done := make(chan struct{})
	var result string
	var err error
	go func() {
		defer close(done)
		result, err = SubmitBlockRetrying(context.Background(), c, []byte{0x01}, func(_ error, attempt int, _ time.Duration) {
			retries <- attempt
		})
	}()
	<-retries // at least one retry while warming up
	s.setFail(0, "")
	<-done
	if err != nil || result != "" {
		t.Fatalf("result %q, err %v after the node came back; want accepted", result, err)
	}
	if n := s.methodCalls("submitblock"); n < 2 {
		t.Fatalf("submitblock called %d times, want a retry", n)
	}
}

// An RPC error that is not about reaching the node (e.g. a decode failure)
// is final at once.
func TestSubmitBlockRetryingPermanent(t *testing.T) {
	s := newCoreServer(t)
	c := mustClient(t, Config{URL: s.url(), User: "alice", Password: "secret"})
	s.setFail(-22, "Block decode failed")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := SubmitBlockRetrying(ctx, c, []byte{0x01}, func(err error, _ int, _ time.Duration) {
		t.Errorf("retried a permanent error: %v", err)
	})
	if err == nil || ctx.Err() != nil {
		t.Fatalf("err = %v, want the node's decode error at once", err)
	}
}
