package declare

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// flakyNode is the node as publish sees it when the RPC connection fails:
// SubmitBlock answers the first fails calls with a transport error (or
// err), then "" (accepted). It records whether the block file was on disk
// at each call. Only SubmitBlock is used by publish.
type flakyNode struct {
	NodeRPC
	dir   string
	fails int
	err   error

	mu       sync.Mutex
	calls    int
	onDisk   []bool
	lastBody []byte
}

func (f *flakyNode) SubmitBlock(ctx context.Context, raw []byte) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	files, _ := filepath.Glob(filepath.Join(f.dir, "*.hex"))
	ok := false
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == hex.EncodeToString(raw) {
			ok = true
		}
	}
	f.onDisk = append(f.onDisk, ok)
	f.lastBody = raw
	if f.calls <= f.fails {
		if f.err != nil {
			return "", f.err
		}
		return "", &node.TransportError{URL: "http://127.0.0.1:1", Err: errors.New("connection refused")}
	}
	return "", nil
}

func publishServer(t *testing.T, n *flakyNode) *Server {
	t.Helper()
	key, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{AuthorityKey: key, Node: n, Txs: emptySource{}, BlockDir: n.dir,
		Policy:        Policy{PayoutScript: poolScript, AllowFullTemplate: true},
		SubmitTimeout: 10 * time.Second, Logger: testLogger(t, hclog.Warn)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type emptySource struct{}

func (emptySource) LookupWTxIDsFees(w [][32]byte) ([][]byte, []int64, []int) {
	missing := make([]int, len(w))
	for i := range missing {
		missing[i] = i
	}
	return make([][]byte, len(w)), make([]int64, len(w)), missing
}

// TestPublishWritesThenRetries: a found block is on disk (hex, as
// submitblock takes it) before the first submitblock, and a submitblock
// that does not reach the node is retried until it does; a node that
// answers with an RPC error is not asked again.
func TestPublishWritesThenRetries(t *testing.T) {
	b := &FoundBlock{Hash: [32]byte{1, 2, 3}, Height: 7, Raw: []byte{0xde, 0xad, 0xbe, 0xef}}
	t.Run("transport errors are retried", func(t *testing.T) {
		n := &flakyNode{dir: t.TempDir(), fails: 2}
		s := publishServer(t, n)
		res, err := s.publish(context.Background(), b, "push-solution")
		if err != nil || !res.Accepted {
			t.Fatalf("publish: %+v %v", res, err)
		}
		if n.calls != 3 {
			t.Fatalf("%d submitblock calls, want 3 (two failed to reach the node)", n.calls)
		}
		for i, ok := range n.onDisk {
			if !ok {
				t.Fatalf("call %d: the block was not on disk before submitblock", i+1)
			}
		}
		if left, _ := filepath.Glob(filepath.Join(n.dir, "*.tmp")); len(left) != 0 {
			t.Fatalf("temporary files left: %v", left)
		}
	})
	t.Run("an RPC error is final", func(t *testing.T) {
		n := &flakyNode{dir: t.TempDir(), fails: 5, err: &node.RPCError{Code: -22, Message: "Block decode failed"}}
		s := publishServer(t, n)
		if _, err := s.publish(context.Background(), b, "pool-api"); err == nil {
			t.Fatal("no error")
		}
		if n.calls != 1 {
			t.Fatalf("%d submitblock calls, want 1", n.calls)
		}
	})
	t.Run("the caller's cancellation does not stop the submission", func(t *testing.T) {
		n := &flakyNode{dir: t.TempDir(), fails: 1}
		s := publishServer(t, n)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if res, err := s.publish(ctx, b, "push-solution"); err != nil || !res.Accepted {
			t.Fatalf("publish: %+v %v", res, err)
		}
	})
}

// blockingNode answers submitblock only when release is closed (honouring
// the caller's deadline), as a node busy connecting other blocks might.
type blockingNode struct {
	NodeRPC
	once    sync.Once
	started chan struct{}
	release chan struct{}
	done    chan string // "accepted" or the error
}

func (b *blockingNode) SubmitBlock(ctx context.Context, raw []byte) (string, error) {
	b.once.Do(func() { close(b.started) })
	select {
	case <-b.release:
		b.done <- "accepted"
		return "", nil
	case <-ctx.Done():
		select {
		case b.done <- ctx.Err().Error():
		default:
		}
		return "", &node.TransportError{URL: "http://127.0.0.1:1", Timeout: true, Err: ctx.Err()}
	}
}

// TestAPIShutdownWaitsForBlocks: stopping the pool API lets a block
// hand-over that is being submitted finish (up to the submit timeout)
// instead of cutting it after the 5 s given to other requests.
func TestAPIShutdownWaitsForBlocks(t *testing.T) {
	t.Parallel()
	n := &blockingNode{started: make(chan struct{}), release: make(chan struct{}), done: make(chan string, 1)}
	key, _ := btcec.NewPrivateKey()
	s, err := New(Config{AuthorityKey: key, Node: n, Txs: emptySource{}, BlockDir: t.TempDir(),
		Policy:        Policy{PayoutScript: poolScript, AllowFullTemplate: true, HalvingInterval: 150},
		SubmitTimeout: 20 * time.Second, Logger: testLogger(t, hclog.Warn)})
	if err != nil {
		t.Fatal(err)
	}
	// A declared job without transactions, straight through the core.
	c := s.Core()
	c.SetChain(testTip)
	now := time.Unix(1_700_000_000, 0)
	c.Connect(1, true, now)
	tok, _ := c.Allocate(1, &messages.AllocateMiningJobToken{UserIdentifier: "u"}, now)
	m := offlineJob(t, nil, templates.Subsidy(testTip.Height+1, 150), nil)
	m.MiningJobToken = tok.MiningJobToken
	st := c.Declare(1, m, now)
	ok, _ := c.ProposalDone(st.Proposal, "", nil, now)
	share := BlockShare{MiningJobToken: ok.NewMiningJobToken, Version: m.Version, NTime: uint32(now.Unix()), Extranonce: make([]byte, 8)}
	for ; ; share.Nonce++ {
		if _, found := st.Proposal.job.buildBlock(share.Extranonce, share.Version, share.NTime, share.Nonce); found {
			break
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- s.ServeAPI(ctx, ln) }()
	go func() {
		_, _ = NewHTTPClient("http://"+ln.Addr().String()).SubmitBlockShare(context.Background(), "u", share)
	}()
	<-n.started
	cancel()
	// Longer than the 5 s other requests get, shorter than the submit timeout.
	time.AfterFunc(6*time.Second, func() { close(n.release) })
	select {
	case <-served:
	case <-time.After(30 * time.Second):
		t.Fatal("ServeAPI did not return")
	}
	select {
	case r := <-n.done:
		if r != "accepted" {
			t.Fatalf("the submission was cut at shutdown: %s", r)
		}
	default:
		t.Fatal("ServeAPI returned while the block was being submitted")
	}
}
