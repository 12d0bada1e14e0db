package declare

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/sv2/messages"
)

// heldNode is the real node whose proposal check does not answer until
// release is closed, whatever the caller's deadline, as a node stuck on
// other work would.
type heldNode struct {
	NodeRPC
	calls   atomic.Int32
	release chan struct{}
}

func (h *heldNode) ProposeBlock(_ context.Context, raw []byte) (string, error) {
	h.calls.Add(1)
	<-h.release
	return h.NodeRPC.ProposeBlock(context.Background(), raw)
}

// TestConcurrentChecksBounded: with ConcurrentChecks 1, a second
// declaration waits for the first one's check (it would assemble and hold
// its own block meanwhile); after ProposalTimeout it is refused as busy
// without spending its token, and the same token declares fine later.
func TestConcurrentChecksBounded(t *testing.T) {
	e := newEnv(t)
	held := &heldNode{release: make(chan struct{})}
	j := e.startJDS(func(c *Config) {
		held.NodeRPC = c.Node
		c.Node = held
		c.ConcurrentChecks = 1
		c.ProposalTimeout = 2 * time.Second
	})
	e.waitTip(j)
	a, b := dialJDP(t, j, messages.FlagDeclareTxData), dialJDP(t, j, messages.FlagDeclareTxData)
	job := e.buildJob(nil, jobOpts{})
	ta, tb := a.allocate("alice"), b.allocate("bob")
	a.send(&messages.DeclareMiningJob{RequestID: 1, MiningJobToken: ta.MiningJobToken, Version: job.version,
		CoinbaseTxPrefix: job.prefix, CoinbaseTxSuffix: job.suffix})
	for held.calls.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	b.send(&messages.DeclareMiningJob{RequestID: 2, MiningJobToken: tb.MiningJobToken, Version: job.version,
		CoinbaseTxPrefix: job.prefix, CoinbaseTxSuffix: job.suffix})
	bad, ok := b.read().(*messages.DeclareMiningJobError)
	if !ok || bad.ErrorCode != CodeInternal || !strings.Contains(string(bad.ErrorDetails), "busy") {
		t.Fatalf("%#v", bad)
	}
	if n := held.calls.Load(); n != 1 {
		t.Fatalf("%d proposal checks ran at once, want 1", n)
	}
	close(held.release)
	if m, ok := a.read().(*messages.DeclareMiningJobSuccess); !ok {
		t.Fatalf("first declaration: %#v", m)
	}
	if ok, bad, _ := b.declare(tb.MiningJobToken, job); ok == nil {
		t.Fatalf("the refused declaration's token: %s", codeOf(bad))
	}
}
