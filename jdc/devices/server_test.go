package devices

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sv2kit/sv2kit/mining"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/templates"
)

// Test network parameters: shares are easy (about one hash in four meets
// the channel target), blocks are rare unless a test uses easyBits.
const (
	testMinDifficulty = 1e-9
	hardBits          = 0x1d00ffff // mainnet difficulty 1: no block by chance
	easyBits          = 0x207fffff // regtest: every other hash is a block
)

type testServer struct {
	s      *Server
	addr   string
	pub    *[32]byte // nil for plaintext
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	var pub *[32]byte
	if !cfg.Plaintext && cfg.AuthorityKey == nil {
		k, err := noise.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		p := noise.PublicKey(k)
		cfg.AuthorityKey, pub = k, &p
	}
	if cfg.MinDifficulty == 0 {
		cfg.MinDifficulty = testMinDifficulty
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "devices", Level: hclog.Warn, Output: testWriter{t}})
	}
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{s: s, addr: s.Addr().String(), pub: pub, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Run(ctx) }()
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) stop() {
	ts.cancel()
	<-ts.done
	ts.done <- nil // idempotent
}

func (ts *testServer) dial(t testing.TB, flags uint32) *testDevice {
	return dialDevice(t, ts.addr, devOpts{plaintext: ts.pub == nil, authority: ts.pub, flags: flags})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// testWork builds a work with a real coinbase (height push, tag, extranonce
// space, one output) and a two-node merkle path.
func testWork(id uint64, future bool, space int) Work {
	script := append(templates.HeightScript(int64(100+id)), 0x04, 't', 'e', 's', 't', byte(space))
	cb := templates.Coinbase{
		Version:         2,
		ScriptSigPrefix: script,
		ExtranonceSize:  space,
		Sequence:        0xffffffff,
		Outputs:         templates.SerializeOutputs([]templates.TxOutput{{Value: 50_0000_0000, PkScript: []byte{0x51}}}),
		OutputCount:     1,
		LockTime:        0,
	}
	p, s := cb.Parts(false)
	return Work{ID: id, Future: future, Version: 0x20000000, CoinbasePrefix: p, CoinbaseSuffix: s,
		ExtranonceSpace: space, MerklePath: [][32]byte{{1, 2, 3}, {4, 5, 6}}}
}

func prevHash(id uint64, bits uint32) PrevHash {
	return PrevHash{WorkID: id, PrevHash: [32]byte{byte(id), 0xaa}, MinNTime: uint32(time.Now().Unix()), NBits: bits}
}

// waitShare reads the next share jdc gets.
func waitShare(t testing.TB, s *Server) Share {
	t.Helper()
	select {
	case sh := <-s.Shares():
		return sh
	case <-time.After(10 * time.Second):
		t.Fatal("no share on Shares() within 10s")
	}
	return Share{}
}

func TestStandardChannelSharesOverNoiseAndPlaintext(t *testing.T) {
	for _, tc := range []struct {
		name      string
		plaintext bool
		flags     uint32
	}{
		{"noise/standard-jobs", false, messages.FlagRequiresStandardJobs},
		{"noise/group-jobs", false, 0},
		{"plaintext/standard-jobs", true, messages.FlagRequiresStandardJobs | messages.FlagRequiresVersionRolling},
		{"plaintext/group-jobs", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, Config{Plaintext: tc.plaintext})
			const space = 8
			ts.s.SetWork(testWork(1, true, space))
			ts.s.SetPrevHash(prevHash(1, hardBits))

			d := ts.dial(t, tc.flags)
			ok := d.openStandard(t, "worker.1", 1)
			if len(ok.ExtranoncePrefix) != space {
				t.Fatalf("standard channel prefix %x, want %d bytes", ok.ExtranoncePrefix, space)
			}
			// First a future job, then the SetNewPrevHash activating it.
			if tc.flags&messages.FlagRequiresStandardJobs != 0 {
				j := waitFor[*messages.NewMiningJob](t, d, nil)
				if j.MinNTime != nil || j.ChannelID != ok.ChannelID {
					t.Fatalf("first job %+v: want a future job on channel %d", j, ok.ChannelID)
				}
			}
			snph := waitFor[*messages.MiningSetNewPrevHash](t, d, nil)

			// Upstream target: every share goes up.
			ts.s.SetUpstreamTarget(mining.MaxTarget)
			sh := d.grind(t, ok.ChannelID, nil, false)
			seq := d.submit(sh, false)
			if code := d.result(t, ok.ChannelID, seq); code != "" {
				t.Fatalf("good share rejected: %s", code)
			}
			up := waitShare(t, ts.s)
			if up.WorkID != 1 || up.ChannelID != ok.ChannelID || up.Nonce != sh.nonce || up.Hash != sh.hash || up.Block {
				t.Fatalf("upstream share %+v does not match %+v", up, sh)
			}
			if string(up.Extranonce) != string(ok.ExtranoncePrefix) || up.UserIdentity != "worker.1" {
				t.Fatalf("upstream share extranonce %x user %q", up.Extranonce, up.UserIdentity)
			}
			if up.PrevHash != snph.PrevHash {
				t.Fatalf("share prev hash %x, want %x", up.PrevHash, snph.PrevHash)
			}
			// The coinbase jdc rebuilds from the work gives the same header.
			w := testWork(1, true, space)
			cb := append(append(append([]byte(nil), w.CoinbasePrefix...), up.Extranonce...), w.CoinbaseSuffix...)
			root := templates.MerkleRoot(templates.DoubleSHA256(cb), w.MerklePath)
			h := templates.Header{Version: up.Version, PrevHash: up.PrevHash, MerkleRoot: root, Time: up.NTime, Bits: up.NBits, Nonce: up.Nonce}
			if got := h.Hash(); got != up.Hash {
				t.Fatalf("rebuilt header hash %x, share says %x", got, up.Hash)
			}
			if got := metricValue(t, ts.s.m.accepted); got != 1 {
				t.Fatalf("accepted metric %v", got)
			}
		})
	}
}

// TestShareErrors sends one bad share of each kind on a standard and an
// extended channel and checks the SubmitShares.Error code.
func TestShareErrors(t *testing.T) {
	ts := startServer(t, Config{})
	const space = 8
	ts.s.SetWork(testWork(1, true, space))
	ts.s.SetPrevHash(prevHash(1, hardBits))
	d := ts.dial(t, 0)
	std := d.openStandard(t, "w.std", 1)
	waitFor[*messages.MiningSetNewPrevHash](t, d, func(m *messages.MiningSetNewPrevHash) bool { return m.ChannelID == std.ChannelID })
	ext := d.openExtended(t, "w.ext", 1, 4)
	waitFor[*messages.MiningSetNewPrevHash](t, d, func(m *messages.MiningSetNewPrevHash) bool { return m.ChannelID == ext.ChannelID })
	if ext.ExtranonceSize != 4 || len(ext.ExtranoncePrefix) != space-4 {
		t.Fatalf("extended channel: size %d prefix %x", ext.ExtranonceSize, ext.ExtranoncePrefix)
	}

	// A job that goes stale: the current job before the next tip.
	staleStd := d.grind(t, std.ChannelID, nil, false)
	staleExt := d.grind(t, ext.ChannelID, nil, false)
	ts.s.SetWork(testWork(2, true, space))
	ts.s.SetPrevHash(prevHash(2, hardBits))
	for seen := map[uint32]bool{}; !seen[ext.ChannelID] || !seen[std.GroupChannelID]; {
		seen[waitFor[*messages.MiningSetNewPrevHash](t, d, nil).ChannelID] = true
	}

	for _, tc := range []struct {
		name     string
		extended bool
		mutate   func(*share)
		below    bool
		want     string
	}{
		{"good/std", false, nil, false, ""},
		{"good/ext", true, nil, false, ""},
		{"unknown job/std", false, func(s *share) { s.job = 999 }, false, mining.CodeInvalidJobID},
		{"unknown job/ext", true, func(s *share) { s.job = 999 }, false, mining.CodeInvalidJobID},
		{"stale/std", false, func(s *share) { *s = staleStd }, false, mining.CodeStaleShare},
		{"stale/ext", true, func(s *share) { *s = staleExt }, false, mining.CodeStaleShare},
		{"low difficulty/std", false, nil, true, mining.CodeDifficultyTooLow},
		{"low difficulty/ext", true, nil, true, mining.CodeDifficultyTooLow},
		{"bad version bits/std", false, func(s *share) { s.version ^= 0x40000000 }, false, mining.CodeInvalidVersionBits},
		{"bad version bits/ext", true, func(s *share) { s.version ^= 0x00000001 }, false, mining.CodeInvalidVersionBits},
		{"ntime before min/std", false, func(s *share) { s.ntime -= 10 }, false, mining.CodeInvalidTimestamp},
		{"ntime far ahead/ext", true, func(s *share) { s.ntime += 3 * 3600 }, false, mining.CodeInvalidTimestamp},
		{"short extranonce/ext", true, func(s *share) { s.ext = s.ext[:3] }, false, mining.CodeBadExtranonceSize},
		{"long extranonce/ext", true, func(s *share) { s.ext = append(s.ext, 0) }, false, mining.CodeBadExtranonceSize},
		{"unknown channel/std", false, func(s *share) { s.channel = 777 }, false, mining.CodeInvalidChannelID},
		{"standard share on extended channel", false, func(s *share) { s.channel = ext.ChannelID }, false, mining.CodeInvalidChannelID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := std.ChannelID
			if tc.extended {
				ch = ext.ChannelID
			}
			sh := d.grind(t, ch, nil, tc.below)
			if tc.mutate != nil {
				tc.mutate(&sh)
			}
			seq := d.submit(sh, tc.extended)
			if got := d.result(t, sh.channel, seq); got != tc.want {
				t.Fatalf("share answered %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("duplicate", func(t *testing.T) {
		for _, extended := range []bool{false, true} {
			ch := std.ChannelID
			if extended {
				ch = ext.ChannelID
			}
			sh := d.grind(t, ch, nil, false)
			if got := d.result(t, ch, d.submit(sh, extended)); got != "" {
				t.Fatalf("first submission: %q", got)
			}
			if got := d.result(t, ch, d.submit(sh, extended)); got != mining.CodeDuplicateShare {
				t.Fatalf("second submission: %q, want %q", got, mining.CodeDuplicateShare)
			}
		}
	})
	if got := metricValue(t, ts.s.m.rejected.WithLabelValues(mining.CodeBadExtranonceSize)); got != 2 {
		t.Fatalf("rejected{bad-extranonce-size} = %v, want 2", got)
	}
}

// metricValue reads a counter or gauge.
func metricValue(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("not a counter or gauge")
	return 0
}

// docs/jdc-devices.md documents every metric the server registers.
func TestDocsListEveryMetric(t *testing.T) {
	doc, err := os.ReadFile("../../docs/jdc-devices.md")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// Vectors appear in Gather once they have a child.
	m.channels.WithLabelValues("x")
	m.setupFailed.WithLabelValues("x")
	m.dropped.WithLabelValues("x")
	m.opened.WithLabelValues("x")
	m.openFailed.WithLabelValues("x")
	m.rejected.WithLabelValues("x")
	m.hashrate.WithLabelValues("1", "2", "u")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 17 {
		t.Fatalf("%d metrics gathered, want 17", len(mfs))
	}
	for _, mf := range mfs {
		if !strings.Contains(string(doc), "`"+mf.GetName()+"`") {
			t.Errorf("docs/jdc-devices.md does not mention metric %s", mf.GetName())
		}
	}
}

func TestPerChannelJobs(t *testing.T) {
	ts := startServer(t, Config{Plaintext: true, PerChannelJobs: true})
	ts.s.SetWork(testWork(1, true, 8))
	ts.s.SetPrevHash(prevHash(1, hardBits))
	d := ts.dial(t, 0)
	a := d.openStandard(t, "a", 1)
	waitFor[*messages.MiningSetNewPrevHash](t, d, nil)
	b := d.openStandard(t, "b", 1)
	waitFor[*messages.MiningSetNewPrevHash](t, d, nil)
	ts.s.SetWork(testWork(2, true, 8))
	ts.s.SetPrevHash(prevHash(2, hardBits))
	seen := map[uint32]bool{}
	for len(seen) < 2 {
		p := waitFor[*messages.MiningSetNewPrevHash](t, d, nil)
		if p.ChannelID != a.ChannelID && p.ChannelID != b.ChannelID {
			t.Fatalf("SetNewPrevHash to %d, want each channel", p.ChannelID)
		}
		seen[p.ChannelID] = true
	}
	// Closing one channel leaves the other working.
	d.send(&messages.CloseChannel{ChannelID: a.ChannelID, ReasonCode: "done"})
	sh := d.grind(t, b.ChannelID, nil, false)
	if code := d.result(t, b.ChannelID, d.submit(sh, false)); code != "" {
		t.Fatalf("share on the remaining channel: %q", code)
	}
	sh = d.grind(t, a.ChannelID, nil, false)
	if code := d.result(t, a.ChannelID, d.submit(sh, false)); code != mining.CodeInvalidChannelID {
		t.Fatalf("share on the closed channel: %q", code)
	}
}

// TestBatchedShareAnswers sends bursts of shares in one write: the answers
// acknowledge them in batches, and an error keeps its place in the order.
func TestBatchedShareAnswers(t *testing.T) {
	ts := startServer(t, Config{})
	ts.s.SetWork(testWork(1, true, 8))
	ts.s.SetPrevHash(prevHash(1, hardBits))
	d := dialDevice(t, ts.addr, devOpts{authority: ts.pub, flags: messages.FlagRequiresStandardJobs, batch: true})
	ch := d.openStandard(t, "burst", 1)
	waitFor[*messages.MiningSetNewPrevHash](t, d, nil)
	const n = 20
	var shares []share
	for len(shares) < n {
		shares = append(shares, d.grind(t, ch.ChannelID, nil, false))
	}
	burst := func(bad int) {
		t.Helper()
		d.bc.hold()
		for i, sh := range shares {
			if i == bad {
				sh.job = 999
			}
			d.submit(sh, false)
		}
		if err := d.bc.flush(); err != nil {
			t.Fatal(err)
		}
	}
	// Fresh nonces for the second burst (the first ones are duplicates now).
	burst(-1)
	var answers, accepted uint32
	var last uint32
	for accepted < n {
		m := waitFor[*messages.SubmitSharesSuccess](t, d, nil)
		answers++
		accepted += m.NewSubmitsAcceptedCount
		last = m.LastSequenceNumber
	}
	if accepted != n || last != n || answers >= n {
		t.Fatalf("%d answers acknowledged %d shares up to %d; want fewer than %d answers for %d shares", answers, accepted, last, n, n)
	}
	for i := range shares {
		shares[i] = d.grind(t, ch.ChannelID, nil, false)
	}
	burst(7)
	// Success up to the share before the bad one, the error, then the rest.
	var order []string
	for accepted < 2*n-1 {
		switch m := d.next(t).(type) {
		case *messages.SubmitSharesSuccess:
			accepted += m.NewSubmitsAcceptedCount
			order = append(order, fmt.Sprintf("ok<=%d", m.LastSequenceNumber))
		case *messages.SubmitSharesError:
			if m.ErrorCode != mining.CodeInvalidJobID || m.SequenceNumber != n+8 {
				t.Fatalf("error %+v", m)
			}
			order = append(order, fmt.Sprintf("err%d", m.SequenceNumber))
		}
	}
	want := fmt.Sprintf("ok<=%d", n+7)
	if len(order) < 3 || order[0] != want || order[1] != fmt.Sprintf("err%d", n+8) || order[len(order)-1] != fmt.Sprintf("ok<=%d", 2*n) {
		t.Fatalf("answers %v", order)
	}
}
