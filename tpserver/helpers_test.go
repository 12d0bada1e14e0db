package tpserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/provider"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/templates"
	"github.com/sv2kit/sv2kit/tpclient"
)

// logBuf collects a server's log lines for assertions; the test prints
// them when it fails.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuf) waitFor(t *testing.T, substr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(l.String(), substr) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("log never said %q", substr)
}

type testTP struct {
	s    *Server
	key  [32]byte
	logs *logBuf
	reg  *prometheus.Registry
	dir  string
}

// startTP runs a Template Provider for a test; mod adjusts its config.
func startTP(t testing.TB, nc *node.Client, mod func(*Config)) *testTP {
	t.Helper()
	auth, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuf{}
	reg := prometheus.NewRegistry()
	cfg := Config{
		Listen:       "127.0.0.1:0",
		AuthorityKey: auth,
		Provider: provider.Config{
			HalvingInterval: 150, NoRetargeting: true, Interval: time.Second,
		},
		Node:            nc,
		TipPollInterval: time.Second,
		NodeBackoff:     node.Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond},
		DataDir:         t.TempDir(),
		Registry:        reg,
		Logger:          hclog.New(&hclog.LoggerOptions{Name: "tp", Level: hclog.Debug, Output: logs}),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop within 10s")
		}
		if t.Failed() {
			t.Logf("tp log:\n%s", logs.String())
		}
	})
	return &testTP{s: s, key: noise.PublicKey(auth), logs: logs, reg: reg, dir: cfg.DataDir}
}

func (tp *testTP) dial(t *testing.T, size uint32) *tpclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tpclient.Dial(ctx, tpclient.Config{
		Addr: tp.s.Addr().String(), AuthorityPubKey: &tp.key, MaxAdditionalSize: size, MaxAdditionalSigops: 10,
	})
	if err != nil {
		t.Fatalf("dial tp: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// metric reads a counter, gauge or histogram count of the registry.
func (tp *testTP) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := tp.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func describe(m codec.Message) string {
	switch m := m.(type) {
	case *messages.NewTemplate:
		if m.FutureTemplate {
			return fmt.Sprintf("NewTemplate(%d,future)", m.TemplateID)
		}
		return fmt.Sprintf("NewTemplate(%d)", m.TemplateID)
	case *messages.SetNewPrevHash:
		return fmt.Sprintf("SetNewPrevHash(%d)", m.TemplateID)
	case nil:
		return "nil"
	}
	return m.MessageName()
}

// next returns the client's next event or fails after d.
func next(t *testing.T, c *tpclient.Client, d time.Duration) codec.Message {
	t.Helper()
	select {
	case m, ok := <-c.Events():
		if !ok {
			t.Fatalf("connection ended: %v", c.Err())
		}
		return m
	case <-time.After(d):
		t.Fatalf("no message within %v", d)
	}
	return nil
}

func nextTemplate(t *testing.T, c *tpclient.Client, future bool) *messages.NewTemplate {
	t.Helper()
	m := next(t, c, 20*time.Second)
	nt, ok := m.(*messages.NewTemplate)
	if !ok || nt.FutureTemplate != future {
		t.Fatalf("got %s, want NewTemplate(future=%v)", describe(m), future)
	}
	return nt
}

func nextPrevHash(t *testing.T, c *tpclient.Client) *messages.SetNewPrevHash {
	t.Helper()
	m := next(t, c, 20*time.Second)
	p, ok := m.(*messages.SetNewPrevHash)
	if !ok {
		t.Fatalf("got %s, want SetNewPrevHash", describe(m))
	}
	return p
}

// waitPrevHash skips messages until a SetNewPrevHash on prev arrives; it
// returns the templates seen before it (by id) and the message.
func waitPrevHash(t *testing.T, c *tpclient.Client, prev [32]byte, d time.Duration) (map[uint64]*messages.NewTemplate, *messages.SetNewPrevHash) {
	t.Helper()
	seen := map[uint64]*messages.NewTemplate{}
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no SetNewPrevHash on %x within %v", prev, d)
		}
		m := next(t, c, left)
		switch m := m.(type) {
		case *messages.NewTemplate:
			seen[m.TemplateID] = m
		case *messages.SetNewPrevHash:
			if m.PrevHash == prev {
				return seen, m
			}
		}
	}
}

// initial reads the triple a client gets after setup.
func initial(t *testing.T, c *tpclient.Client) (nt *messages.NewTemplate, snph *messages.SetNewPrevHash, empty *messages.NewTemplate) {
	t.Helper()
	nt = nextTemplate(t, c, true)
	snph = nextPrevHash(t, c)
	if snph.TemplateID != nt.TemplateID {
		t.Fatalf("SetNewPrevHash names %d, template is %d", snph.TemplateID, nt.TemplateID)
	}
	empty = nextTemplate(t, c, true)
	if empty.TemplateID <= nt.TemplateID || len(empty.MerklePath) != 0 {
		t.Fatalf("empty future template %d after %d with %d merkle siblings", empty.TemplateID, nt.TemplateID, len(empty.MerklePath))
	}
	return nt, snph, empty
}

// solve builds a coinbase for nt paying payScript and grinds a nonce that
// meets the target of snph (instant on regtest).
func solve(t *testing.T, nt *messages.NewTemplate, snph *messages.SetNewPrevHash, payScript []byte, extranonce uint64) (*messages.SubmitSolution, [32]byte) {
	t.Helper()
	cb := templates.Coinbase{
		Version:         nt.CoinbaseTxVersion,
		ScriptSigPrefix: nt.CoinbasePrefix,
		ExtranonceSize:  8,
		Sequence:        nt.CoinbaseTxInputSequence,
		Outputs: append(templates.SerializeOutputs([]templates.TxOutput{{Value: int64(nt.CoinbaseTxValueRemaining), PkScript: payScript}}),
			nt.CoinbaseTxOutputs...),
		OutputCount: 1 + int(nt.CoinbaseTxOutputsCount),
		LockTime:    nt.CoinbaseTxLocktime,
		Witness:     nt.CoinbaseTxOutputsCount > 0,
	}
	en := binary.LittleEndian.AppendUint64(nil, extranonce)
	raw := cb.Bytes(en, true)
	txid := templates.DoubleSHA256(cb.Bytes(en, false))
	h := templates.Header{
		Version:    nt.Version,
		PrevHash:   snph.PrevHash,
		MerkleRoot: templates.MerkleRoot(txid, nt.MerklePath),
		Time:       snph.HeaderTimestamp,
		Bits:       snph.NBits,
	}
	target := templates.TargetFromBits(snph.NBits)
	for h.Nonce = 0; h.Nonce < 1<<20; h.Nonce++ {
		hash := h.Hash()
		if templates.MeetsTarget(&hash, &target) {
			return &messages.SubmitSolution{TemplateID: nt.TemplateID, Version: h.Version, HeaderTimestamp: h.Time,
				HeaderNonce: h.Nonce, CoinbaseTx: raw}, hash
		}
	}
	t.Fatal("no nonce found")
	return nil, [32]byte{}
}

func nodeClient(t *testing.T, n *regtest.Node) *node.Client {
	t.Helper()
	c, err := node.NewClient(node.Config{
		URL: "http://" + n.RPCAddr(), User: n.RPCUser(), Password: n.RPCPass(), Network: "regtest",
		Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isTxDataErr(err error, code string) bool {
	var te *tpclient.TxDataError
	return errors.As(err, &te) && te.Code == code
}
