package testpool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/declare"
	"github.com/sv2kit/sv2kit/mining"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/templates"
)

const (
	regtestBits = 0x207fffff // about every other hash is a block
	hardBits    = 0x1703255b // no test share is ever a block
)

// fakeAPI is a PoolAPI that records its calls and answers as told.
type fakeAPI struct {
	mu       sync.Mutex
	verdict  declare.Verdict
	err      error
	jobs     []validateCall
	blocks   []blockCall
	blockErr error
}

type validateCall struct {
	user string
	job  messages.SetCustomMiningJob
}

type blockCall struct {
	user  string
	share declare.BlockShare
}

func newFakeAPI() *fakeAPI { return &fakeAPI{verdict: declare.Verdict{OK: true}} }

func (f *fakeAPI) ValidateCustomJob(ctx context.Context, user string, job *messages.SetCustomMiningJob) (declare.Verdict, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs = append(f.jobs, validateCall{user, *job})
	return f.verdict, f.err
}

func (f *fakeAPI) SubmitBlockShare(ctx context.Context, user string, share declare.BlockShare) (declare.BlockResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blocks = append(f.blocks, blockCall{user, share})
	if f.blockErr != nil {
		return declare.BlockResult{}, f.blockErr
	}
	return declare.BlockResult{Hash: "h", Accepted: true}, nil
}

func (f *fakeAPI) set(v declare.Verdict, err error) {
	f.mu.Lock()
	f.verdict, f.err = v, err
	f.mu.Unlock()
}

func (f *fakeAPI) blockCalls() []blockCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]blockCall(nil), f.blocks...)
}

type testPool struct {
	*Pool
	pub  [32]byte
	key  *btcec.PrivateKey
	api  *fakeAPI
	done chan error
}

func startPool(t testing.TB, cfg Config) *testPool {
	t.Helper()
	if cfg.AuthorityKey == nil && !cfg.Plaintext {
		key, err := btcec.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		cfg.AuthorityKey = key
	}
	api, _ := cfg.API.(*fakeAPI)
	if cfg.API == nil {
		api = newFakeAPI()
		cfg.API = api
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tp := &testPool{Pool: p, key: cfg.AuthorityKey, api: api, done: make(chan error, 1)}
	if cfg.AuthorityKey != nil {
		tp.pub = noise.PublicKey(cfg.AuthorityKey)
	}
	go func() { tp.done <- p.Run(context.Background()) }()
	t.Cleanup(func() {
		p.Close()
		if err := <-tp.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return tp
}

// client is a minimal JDC-side Mining Protocol client for the tests.
type client struct {
	t testing.TB
	c *noise.Conn
}

func dialPool(t testing.TB, p *testPool) *client {
	t.Helper()
	cfg := &noise.Config{AuthorityPubKey: &p.pub, MaxPayload: messages.MaxPayload, Plaintext: p.cfg.Plaintext}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := noise.Dial(ctx, "tcp", p.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c}
}

func (c *client) send(m codec.Message) {
	c.t.Helper()
	if err := c.c.WriteMessage(m, codec.Options{}); err != nil {
		c.t.Fatalf("send %s: %v", m.MessageName(), err)
	}
}

func (c *client) recv() codec.Message {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, _, err := messages.Read(c.c, codec.Options{})
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return m
}

func recvAs[T codec.Message](c *client) T {
	c.t.Helper()
	m := c.recv()
	v, ok := m.(T)
	if !ok {
		c.t.Fatalf("got %s: %s", m.MessageName(), codec.String(m))
	}
	return v
}

func (c *client) setup(flags uint32) codec.Message {
	c.send(&messages.SetupConnection{Protocol: messages.ProtocolMining, MinVersion: 2, MaxVersion: 2,
		Flags: flags, EndpointHost: "127.0.0.1", Vendor: "test-jdc"})
	return c.recv()
}

func (c *client) openExtended(user string, minSize uint16) *messages.OpenExtendedMiningChannelSuccess {
	c.t.Helper()
	c.send(&messages.OpenExtendedMiningChannel{RequestID: 9, UserIdentity: user, NominalHashRate: 1000,
		MaxTarget: mining.MaxTarget, MinExtranonceSize: minSize})
	return recvAs[*messages.OpenExtendedMiningChannelSuccess](c)
}

// customJob builds a SetCustomMiningJob the way a JDC does, for the channel.
func customJob(t testing.TB, ch *messages.OpenExtendedMiningChannelSuccess, reqID uint32, bits uint32, prev byte) (*messages.SetCustomMiningJob, *mining.JobTemplate) {
	t.Helper()
	nt := &messages.NewTemplate{TemplateID: uint64(reqID), Version: 0x20000000, CoinbaseTxVersion: 2,
		CoinbasePrefix: templates.HeightScript(500), CoinbaseTxInputSequence: 0xfffffffe,
		CoinbaseTxValueRemaining: 5_000_000_000, CoinbaseTxLocktime: 499,
		MerklePath: [][32]byte{{1}, {2}}}
	payout := []templates.TxOutput{{Value: 5_000_000_000, PkScript: append([]byte{0x00, 0x14}, bytes.Repeat([]byte{0xab}, 20)...)}}
	jt, err := mining.NewJobTemplate(nt, mining.CoinbaseConfig{Outputs: payout, Tag: []byte("/jdc/"),
		ExtranonceSize: len(ch.ExtranoncePrefix) + int(ch.ExtranonceSize)})
	if err != nil {
		t.Fatal(err)
	}
	tip := &mining.ChainTip{PrevHash: [32]byte{prev}, MinNTime: uint32(time.Now().Unix()) - 10, NBits: bits}
	return jt.SetCustomMiningJob(ch.ChannelID, reqID, []byte("token-"+string(rune('a'+reqID))), tip), jt
}

// grind finds a share on job that meets target (want=true) or does not.
func grind(t *testing.T, ch *messages.OpenExtendedMiningChannelSuccess, jt *mining.JobTemplate,
	m *messages.SetCustomMiningJob, jobID uint32, target [32]byte, want bool, ext []byte) *messages.SubmitSharesExtended {
	t.Helper()
	full := append(append([]byte(nil), ch.ExtranoncePrefix...), ext...)
	h := templates.Header{Version: m.Version, PrevHash: m.PrevHash, MerkleRoot: jt.MerkleRoot(full),
		Time: m.MinNTime + 1, Bits: m.NBits}
	for n := uint32(0); n < 1<<24; n++ {
		h.Nonce = n
		hash := h.Hash()
		if templates.MeetsTarget(&hash, &target) == want {
			return &messages.SubmitSharesExtended{ChannelID: ch.ChannelID, SequenceNumber: n, JobID: jobID,
				Nonce: n, NTime: h.Time, Version: h.Version, Extranonce: ext}
		}
	}
	t.Fatal("no share found")
	return nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCustomJobsSharesAndBlocks(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	p := startPool(t, Config{BlocksDir: dir, Registerer: reg})
	c := dialPool(t, p)
	if s, ok := c.setup(messages.FlagRequiresWorkSelection | messages.FlagRequiresVersionRolling).(*messages.SetupConnectionSuccess); !ok ||
		s.Flags != messages.FlagRequiresExtendedChannels || s.UsedVersion != 2 {
		t.Fatalf("setup answer %v", s)
	}
	ch := c.openExtended("alice.jdc", 8)
	if len(ch.ExtranoncePrefix) != DefaultChannelIDBytes || ch.ExtranonceSize != DefaultExtranonceSize {
		t.Fatalf("extranonce layout %d+%d", len(ch.ExtranoncePrefix), ch.ExtranonceSize)
	}

	// A custom job is checked with the JDS under the channel's identity.
	job, jt := customJob(t, ch, 1, hardBits, 1)
	c.send(job)
	ok := recvAs[*messages.SetCustomMiningJobSuccess](c)
	if ok.RequestID != 1 || ok.ChannelID != ch.ChannelID {
		t.Fatalf("success %+v", ok)
	}
	if len(p.api.jobs) != 1 || p.api.jobs[0].user != "alice.jdc" || !bytes.Equal(p.api.jobs[0].job.MiningJobToken, job.MiningJobToken) {
		t.Fatalf("validate calls %+v", p.api.jobs)
	}

	ext := bytes.Repeat([]byte{7}, DefaultExtranonceSize)
	share := grind(t, ch, jt, job, ok.JobID, ch.Target, true, ext)
	c.send(share)
	if r := recvAs[*messages.SubmitSharesSuccess](c); r.LastSequenceNumber != share.SequenceNumber || r.NewSubmitsAcceptedCount != 1 {
		t.Fatalf("share answer %+v", r)
	}
	// The same share again is a duplicate; a share below target too easy.
	c.send(share)
	if r := recvAs[*messages.SubmitSharesError](c); r.ErrorCode != mining.CodeDuplicateShare {
		t.Fatalf("duplicate answered %q", r.ErrorCode)
	}
	c.send(grind(t, ch, jt, job, ok.JobID, ch.Target, false, ext))
	if r := recvAs[*messages.SubmitSharesError](c); r.ErrorCode != mining.CodeDifficultyTooLow {
		t.Fatalf("easy share answered %q", r.ErrorCode)
	}
	bad := *share
	bad.Extranonce = ext[:4]
	c.send(&bad)
	if r := recvAs[*messages.SubmitSharesError](c); r.ErrorCode != mining.CodeBadExtranonceSize {
		t.Fatalf("short extranonce answered %q", r.ErrorCode)
	}
	bad = *share
	bad.JobID = 999
	c.send(&bad)
	if r := recvAs[*messages.SubmitSharesError](c); r.ErrorCode != mining.CodeInvalidJobID {
		t.Fatalf("unknown job answered %q", r.ErrorCode)
	}

	// A custom job on a new tip at regtest difficulty: a share is a block,
	// handed to the JDS with its token and full extranonce.
	job2, jt2 := customJob(t, ch, 2, regtestBits, 2)
	c.send(job2)
	ok2 := recvAs[*messages.SetCustomMiningJobSuccess](c)
	c.send(share) // job 1 went stale with the new tip
	if r := recvAs[*messages.SubmitSharesError](c); r.ErrorCode != mining.CodeStaleShare {
		t.Fatalf("share on the old tip answered %q", r.ErrorCode)
	}
	blockShare := grind(t, ch, jt2, job2, ok2.JobID, ch.Target, true, ext)
	c.send(blockShare)
	recvAs[*messages.SubmitSharesSuccess](c)
	waitFor(t, "block hand-over", func() bool { return len(p.api.blockCalls()) == 1 })
	b := p.api.blockCalls()[0]
	full := append(append([]byte(nil), ch.ExtranoncePrefix...), ext...)
	if b.user != "alice.jdc" || !bytes.Equal(b.share.MiningJobToken, job2.MiningJobToken) ||
		!bytes.Equal(b.share.Extranonce, full) || b.share.Nonce != blockShare.Nonce ||
		b.share.NTime != blockShare.NTime || b.share.Version != blockShare.Version {
		t.Fatalf("block share %+v", b)
	}
	waitFor(t, "block counted", func() bool { return p.Stats().BlocksAccepted == 1 })
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 1 {
		t.Fatalf("block files %v", files)
	}
	data, _ := os.ReadFile(files[0])
	if !strings.Contains(string(data), "alice.jdc") {
		t.Fatalf("block file %s", data)
	}

	st := p.Stats()
	u := st.Users["alice.jdc"]
	if st.Connections != 1 || st.Channels != 1 || st.CustomJobsAccepted != 2 || st.SharesAccepted != 2 ||
		st.BlocksFound != 1 || u.SharesAccepted != 2 || u.BlocksFound != 1 || u.CustomJobsAccepted != 2 ||
		u.SharesRejected[mining.CodeDuplicateShare] != 1 || st.SharesRejected[mining.CodeStaleShare] != 1 ||
		st.SharesRejected[mining.CodeInvalidJobID] != 1 || st.SharesRejected[mining.CodeBadExtranonceSize] != 1 {
		t.Fatalf("stats %+v", st)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				got[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				got[key] = m.GetGauge().GetValue()
			}
		}
	}
	for key, want := range map[string]float64{
		"sv2pool_shares_total,code=,result=accepted":                2,
		"sv2pool_shares_total,code=duplicate-share,result=rejected": 1,
		"sv2pool_blocks_found_total":                                1,
		"sv2pool_blocks_submitted_total,result=accepted":            1,
		"sv2pool_channels":                                          1,
		"sv2pool_connections":                                       1,
		"sv2pool_custom_jobs_total,code=,result=accepted":           2,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
}

func TestCustomJobRefusals(t *testing.T) {
	api := newFakeAPI()
	p := startPool(t, Config{API: api})
	c := dialPool(t, p)
	c.setup(messages.FlagRequiresWorkSelection)
	ch := c.openExtended("bob", 0)

	for _, tc := range []struct {
		name    string
		verdict declare.Verdict
		err     error
		knob    bool
		channel uint32
		want    string
	}{
		{name: "jds says no", verdict: declare.Verdict{Code: "invalid-mining-job-token", Details: "unknown"}, want: "invalid-mining-job-token"},
		{name: "jds says no without code", verdict: declare.Verdict{}, want: CodeInvalidCustomJob},
		{name: "jds unreachable", err: errors.New("connection refused"), want: CodeJDSUnavailable},
		{name: "knob", verdict: declare.Verdict{OK: true}, knob: true, want: CodeRejectedByPolicy},
		{name: "unknown channel", verdict: declare.Verdict{OK: true}, channel: 77, want: mining.CodeInvalidChannelID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api.set(tc.verdict, tc.err)
			p.SetRejectCustomJobs(tc.knob)
			defer p.SetRejectCustomJobs(false)
			job, _ := customJob(t, ch, 3, hardBits, 1)
			if tc.channel != 0 {
				job.ChannelID = tc.channel
			}
			c.send(job)
			r := recvAs[*messages.SetCustomMiningJobError](c)
			if r.ErrorCode != tc.want || r.RequestID != 3 {
				t.Fatalf("got %+v, want %s", r, tc.want)
			}
		})
	}
	api.set(declare.Verdict{OK: true}, nil)
	job, _ := customJob(t, ch, 4, hardBits, 1)
	c.send(job)
	recvAs[*messages.SetCustomMiningJobSuccess](c)
	if st := p.Stats(); st.CustomJobsAccepted != 1 || st.CustomJobsRejected[CodeJDSUnavailable] != 1 ||
		st.Users["bob"].CustomJobsRejected[CodeRejectedByPolicy] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRejectSharesKnob(t *testing.T) {
	p := startPool(t, Config{RejectShares: true})
	c := dialPool(t, p)
	c.setup(messages.FlagRequiresWorkSelection)
	ch := c.openExtended("carol", 0)
	job, jt := customJob(t, ch, 1, regtestBits, 1)
	c.send(job)
	ok := recvAs[*messages.SetCustomMiningJobSuccess](c)
	ext := make([]byte, ch.ExtranonceSize)
	share := grind(t, ch, jt, job, ok.JobID, ch.Target, true, ext)
	c.send(share)
	if r := recvAs[*messages.SubmitSharesError](c); r.ErrorCode != CodeRejectedByPolicy {
		t.Fatalf("got %q", r.ErrorCode)
	}
	p.SetRejectShares(false)
	ext[0] = 1
	c.send(grind(t, ch, jt, job, ok.JobID, ch.Target, true, ext))
	recvAs[*messages.SubmitSharesSuccess](c)
	if len(p.api.blockCalls()) > 1 {
		t.Fatal("a rejected share was handed over as a block")
	}
}

func TestSetupAndChannelRefusals(t *testing.T) {
	p := startPool(t, Config{})
	for _, tc := range []struct {
		name  string
		setup *messages.SetupConnection
		code  string
		flags uint32
	}{
		{"no work selection", &messages.SetupConnection{Protocol: 0, MinVersion: 2, MaxVersion: 2}, CodeWorkSelectionRequired, 0},
		{"standard jobs", &messages.SetupConnection{Protocol: 0, MinVersion: 2, MaxVersion: 2,
			Flags: messages.FlagRequiresWorkSelection | messages.FlagRequiresStandardJobs}, CodeUnsupportedFlags, messages.FlagRequiresStandardJobs},
		{"job declaration protocol", &messages.SetupConnection{Protocol: 1, MinVersion: 2, MaxVersion: 2}, CodeUnsupportedProtocol, 0},
		{"version 3 only", &messages.SetupConnection{Protocol: 0, MinVersion: 3, MaxVersion: 3,
			Flags: messages.FlagRequiresWorkSelection}, CodeVersionMismatch, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialPool(t, p)
			c.send(tc.setup)
			r := recvAs[*messages.SetupConnectionError](c)
			if r.ErrorCode != tc.code || r.Flags != tc.flags {
				t.Fatalf("got %+v", r)
			}
		})
	}
	c := dialPool(t, p)
	c.setup(messages.FlagRequiresWorkSelection)
	c.send(&messages.OpenStandardMiningChannel{RequestID: 5, UserIdentity: "x", NominalHashRate: 1, MaxTarget: mining.MaxTarget})
	if r := recvAs[*messages.OpenMiningChannelError](c); r.ErrorCode != CodeStandardNotSupported || r.RequestID != 5 {
		t.Fatalf("got %+v", r)
	}
	c.send(&messages.OpenExtendedMiningChannel{RequestID: 6, UserIdentity: "x", NominalHashRate: 1,
		MaxTarget: mining.MaxTarget, MinExtranonceSize: 31})
	if r := recvAs[*messages.OpenMiningChannelError](c); r.ErrorCode != mining.CodeMinExtranonceSizeTooLarge {
		t.Fatalf("got %+v", r)
	}
}

func TestRestartOnSameAddress(t *testing.T) {
	key, _ := btcec.NewPrivateKey()
	p := startPool(t, Config{AuthorityKey: key})
	addr := p.Addr().String()
	c := dialPool(t, p)
	c.setup(messages.FlagRequiresWorkSelection)
	c.openExtended("dave", 0)
	waitFor(t, "channel counted", func() bool { return p.Stats().Channels == 1 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// The client sees the connection end.
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := messages.Read(c.c, codec.Options{}); err == nil {
		t.Fatal("connection still open after Close")
	}
	p2 := startPool(t, Config{AuthorityKey: key, Listen: addr})
	if p2.Addr().String() != addr {
		t.Fatalf("restarted on %s, want %s", p2.Addr(), addr)
	}
	c2 := dialPool(t, p2)
	c2.setup(messages.FlagRequiresWorkSelection)
	c2.openExtended("dave", 0)
}

func TestPlaintext(t *testing.T) {
	p := startPool(t, Config{Plaintext: true})
	c := dialPool(t, p)
	if _, ok := c.setup(messages.FlagRequiresWorkSelection).(*messages.SetupConnectionSuccess); !ok {
		t.Fatal("plaintext setup failed")
	}
}

func TestNewChecksConfig(t *testing.T) {
	key, _ := btcec.NewPrivateKey()
	for _, cfg := range []Config{
		{AuthorityKey: key},
		{API: newFakeAPI()},
		{API: newFakeAPI(), AuthorityKey: key, ExtranonceSize: 30, ChannelIDBytes: 4},
	} {
		if p, err := New(cfg); err == nil {
			p.Close()
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

func TestDisplayHash(t *testing.T) {
	var h [32]byte
	binary.LittleEndian.PutUint16(h[:], 0xbeef)
	if s := displayHash(h); !strings.HasSuffix(s, "beef") || len(s) != 64 {
		t.Fatal(s)
	}
}

// TestBlockRefusedByJDS: a block the JDS cannot rebuild (coinbase-only job)
// is handed over once, not retried, and counted as refused.
func TestBlockRefusedByJDS(t *testing.T) {
	api := newFakeAPI()
	api.blockErr = &declare.BlockError{Code: "coinbase-only-job", Details: "cannot rebuild"}
	p := startPool(t, Config{API: api})
	c := dialPool(t, p)
	c.setup(messages.FlagRequiresWorkSelection)
	ch := c.openExtended("erin", 0)
	job, jt := customJob(t, ch, 1, regtestBits, 1)
	c.send(job)
	ok := recvAs[*messages.SetCustomMiningJobSuccess](c)
	c.send(grind(t, ch, jt, job, ok.JobID, ch.Target, true, make([]byte, ch.ExtranonceSize)))
	recvAs[*messages.SubmitSharesSuccess](c)
	waitFor(t, "the refusal counted", func() bool { return p.Stats().BlocksRefused == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := len(api.blockCalls()); n != 1 {
		t.Fatalf("%d hand-overs, want 1", n)
	}
	if st := p.Stats(); st.BlocksFailed != 0 || !st.Blocks[0].Refused || st.BlocksFound != 1 {
		t.Fatalf("stats %+v", st)
	}
}
