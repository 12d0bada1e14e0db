package cpuminer

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/templates"
)

// regtestBits is regtest's proof-of-work limit: about every other hash meets it.
const regtestBits = 0x207fffff

// testBits is the tiny server's default network target: one hash in 65,536,
// harder than shareTarget, so shares are mostly not blocks (as on a real
// network) and SetTarget can tighten the channel target.
const testBits = 0x1f00ffff

// shareTarget is met by one hash in 256.
var shareTarget = func() [32]byte {
	var t [32]byte
	for i := 0; i < 31; i++ {
		t[i] = 0xff
	}
	return t
}()

// tinyServer is the smallest Mining Protocol server a device can mine on:
// one standard channel per connection, jobs pushed by the test, every share
// checked the way a pool checks it (DIGEST §6.6).
type tinyServer struct {
	t         *testing.T
	ln        net.Listener
	noiseLn   *noise.Listener
	plaintext bool

	mu      sync.Mutex
	conns   []*serverConn
	shares  []checkedShare
	arrived chan struct{}
	// setupFlags go in SetupConnection.Success (e.g. REQUIRES_FIXED_VERSION).
	setupFlags uint32
	// bits is the network target's nBits in SetNewPrevHash (testBits when 0).
	bits   uint32
	setups []*messages.SetupConnection
	opens  []*messages.OpenStandardMiningChannel
}

type checkedShare struct {
	conn  int
	share messages.SubmitSharesStandard
	err   string // "" when valid
	block bool
	// belowChannel: met the network target but not the channel's.
	belowChannel bool
}

type serverConn struct {
	c     *noise.Conn
	idx   int
	mu    sync.Mutex
	jobs  map[uint32][32]byte // job id → merkle root
	ver   map[uint32]uint32
	fixed map[uint32]bool // jobs that allow no version rolling
	prev  [32]byte
	minT  uint32
	nbits uint32
	// netBits is what newPrevHash announces.
	netBits uint32
	active  uint32
	target  [32]byte
	seen    map[[32]byte]bool
	// fixedAll: the server required a fixed version at setup.
	fixedAll bool
}

func newTinyServer(t *testing.T, plaintext bool, addr string, setupFlags ...uint32) (*tinyServer, *[32]byte) {
	t.Helper()
	s := &tinyServer{t: t, plaintext: plaintext, arrived: make(chan struct{}, 1024)}
	for _, f := range setupFlags {
		s.setupFlags |= f
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	key, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := noise.PublicKey(key)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	cfg := &noise.Config{AuthorityKey: key, MaxPayload: messages.MaxPayload, Plaintext: plaintext}
	go s.accept(cfg)
	t.Cleanup(s.close)
	return s, &pub
}

func (s *tinyServer) addr() string { return s.ln.Addr().String() }

func (s *tinyServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.c.Close()
	}
	s.mu.Unlock()
}

func (s *tinyServer) accept(cfg *noise.Config) {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		c := &serverConn{c: noise.Server(nc, cfg), jobs: map[uint32][32]byte{}, ver: map[uint32]uint32{}, fixed: map[uint32]bool{},
			target: shareTarget, seen: map[[32]byte]bool{}, netBits: testBits}
		s.mu.Lock()
		if s.bits != 0 {
			c.netBits = s.bits
		}
		c.idx = len(s.conns)
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		c.fixedAll = s.setupFlags&messages.FlagRequiresFixedVersion != 0
		go s.serve(c)
	}
}

func (s *tinyServer) serve(c *serverConn) {
	defer c.c.Close()
	for {
		msg, _, err := messages.Read(c.c, codec.Options{})
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *messages.SetupConnection:
			s.mu.Lock()
			s.setups = append(s.setups, m)
			s.mu.Unlock()
			c.send(&messages.SetupConnectionSuccess{UsedVersion: 2, Flags: s.setupFlags})
		case *messages.OpenStandardMiningChannel:
			s.mu.Lock()
			s.opens = append(s.opens, m)
			s.mu.Unlock()
			c.send(&messages.OpenStandardMiningChannelSuccess{RequestID: m.RequestID, ChannelID: 7,
				Target: shareTarget, ExtranoncePrefix: []byte{1, 2, 3, 4}, GroupChannelID: 100})
			// A future job activated by SetNewPrevHash, as a pool sends them.
			c.newJob(1, nil, 0x20000000)
			c.newPrevHash(1, [32]byte{0xaa}, uint32(time.Now().Unix()))
		case *messages.SubmitSharesStandard:
			errCode, block, below := c.check(m)
			s.mu.Lock()
			s.shares = append(s.shares, checkedShare{conn: c.idx, share: *m, err: errCode, block: block, belowChannel: below})
			s.mu.Unlock()
			if errCode == "" {
				c.send(&messages.SubmitSharesSuccess{ChannelID: m.ChannelID, LastSequenceNumber: m.SequenceNumber,
					NewSubmitsAcceptedCount: 1, NewSharesSum: 1})
			} else {
				c.send(&messages.SubmitSharesError{ChannelID: m.ChannelID, SequenceNumber: m.SequenceNumber, ErrorCode: errCode})
			}
			select {
			case s.arrived <- struct{}{}:
			default:
			}
		}
	}
}

func (c *serverConn) send(m codec.Message) {
	c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.c.WriteMessage(m, codec.Options{})
}

func (c *serverConn) newJob(id uint32, minNTime *uint32, version uint32) {
	root := templates.DoubleSHA256([]byte{byte(id), byte(id >> 8)})
	c.mu.Lock()
	c.jobs[id] = root
	c.ver[id] = version
	if minNTime != nil {
		c.active = id
	}
	c.mu.Unlock()
	c.send(&messages.NewMiningJob{ChannelID: 7, JobID: id, MinNTime: minNTime, Version: version, MerkleRoot: root})
}

// newExtendedJob sends a job to the group as NewExtendedMiningJob: the
// device's merkle root uses its channel prefix as the whole extranonce.
func (c *serverConn) newExtendedJob(id uint32, minNTime *uint32, version uint32, rolling bool) {
	prefix := []byte("cb-prefix-with-height")
	suffix := []byte("rest-of-coinbase")
	path := [][32]byte{{9}, {8}}
	cb := append(append(append([]byte(nil), prefix...), 1, 2, 3, 4), suffix...)
	root := templates.MerkleRoot(templates.DoubleSHA256(cb), path)
	c.mu.Lock()
	c.jobs[id] = root
	c.ver[id] = version
	c.fixed[id] = !rolling
	if minNTime != nil {
		c.active = id
	}
	c.mu.Unlock()
	c.send(&messages.NewExtendedMiningJob{ChannelID: 100, JobID: id, MinNTime: minNTime, Version: version,
		VersionRollingAllowed: rolling, MerklePath: path, CoinbaseTxPrefix: prefix, CoinbaseTxSuffix: suffix})
}

func (c *serverConn) newPrevHash(job uint32, prev [32]byte, minT uint32) {
	c.mu.Lock()
	c.prev, c.minT, c.nbits, c.active = prev, minT, c.netBits, job
	bits := c.netBits
	c.mu.Unlock()
	// Sent to the group, as a pool does for grouped standard channels.
	c.send(&messages.MiningSetNewPrevHash{ChannelID: 100, JobID: job, PrevHash: prev, MinNTime: minT, NBits: bits})
}

func (c *serverConn) setTarget(t [32]byte) {
	c.mu.Lock()
	c.target = t
	c.mu.Unlock()
	c.send(&messages.SetTarget{ChannelID: 7, MaximumTarget: t})
}

// check validates a share: job, ntime window, version mask, target, duplicates.
func (c *serverConn) check(m *messages.SubmitSharesStandard) (code string, block, belowChannel bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.ChannelID != 7 {
		return "invalid-channel-id", false, false
	}
	if m.JobID != c.active {
		return "stale-share", false, false
	}
	if m.NTime < c.minT || m.NTime > uint32(time.Now().Unix())+2 {
		return "invalid-share", false, false
	}
	if (c.fixed[m.JobID] || c.fixedAll) && m.Version != c.ver[m.JobID] {
		return "version-rolling-not-allowed", false, false
	}
	if m.Version&^VersionRollingMask != c.ver[m.JobID]&^VersionRollingMask {
		return "invalid-non-rollable-version-bit", false, false
	}
	h := templates.Header{Version: m.Version, PrevHash: c.prev, MerkleRoot: c.jobs[m.JobID],
		Time: m.NTime, Bits: c.nbits, Nonce: m.Nonce}
	hash := h.Hash()
	// A block is accepted whatever the channel target, as the mining core does.
	nt := templates.TargetFromBits(c.nbits)
	block = templates.MeetsTarget(&hash, &nt)
	below := !templates.MeetsTarget(&hash, &c.target)
	if !block && below {
		return "difficulty-too-low", false, below
	}
	if c.seen[hash] {
		return "duplicate-share", false, below
	}
	c.seen[hash] = true
	return "", block, below
}

func (s *tinyServer) conn(i int) *serverConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i >= len(s.conns) {
		return nil
	}
	return s.conns[i]
}

// waitShares waits until pred holds for the shares received so far.
func (s *tinyServer) waitShares(t *testing.T, what string, pred func([]checkedShare) bool) []checkedShare {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		cp := append([]checkedShare(nil), s.shares...)
		s.mu.Unlock()
		if pred(cp) {
			return cp
		}
		select {
		case <-s.arrived:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s; %d shares so far", what, len(cp))
		}
	}
}

func startMiner(t *testing.T, cfg Config) (*Miner, func()) {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return m, stop
}

func TestMinesValidShares(t *testing.T) {
	for _, tc := range []struct {
		name      string
		plaintext bool
		pin       bool
	}{
		{"noise pinned", false, true},
		{"noise unpinned", false, false},
		{"plaintext", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, pub := newTinyServer(t, tc.plaintext, "")
			cfg := Config{Addr: srv.addr(), Plaintext: tc.plaintext, UserIdentity: "alice.cpu1",
				Workers: 2, HashRate: 20000, DeviceID: "dev-1"}
			if tc.pin {
				cfg.AuthorityPubKey = pub
			}
			m, _ := startMiner(t, cfg)
			shares := srv.waitShares(t, "10 shares", func(s []checkedShare) bool { return len(s) >= 10 })
			for _, s := range shares {
				if s.err != "" {
					t.Errorf("share %+v rejected: %s", s.share, s.err)
				}
			}
			srv.mu.Lock()
			setup, open := srv.setups[0], srv.opens[0]
			srv.mu.Unlock()
			if setup.Protocol != messages.ProtocolMining || setup.Flags&messages.FlagRequiresStandardJobs == 0 ||
				setup.Flags&messages.FlagRequiresVersionRolling == 0 || setup.DeviceID != "dev-1" {
				t.Errorf("SetupConnection %+v", setup)
			}
			if open.UserIdentity != "alice.cpu1" || open.NominalHashRate != 20000 {
				t.Errorf("OpenStandardMiningChannel %+v", open)
			}
			waitFor(t, "accepted counted", func() bool { return m.Stats().Accepted >= 10 })
			st := m.Stats()
			if !st.Connected || st.ChannelID != 7 || st.Jobs != 1 || st.Hashes == 0 || st.Submitted < 10 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFollowsJobsTargetAndPrevHash(t *testing.T) {
	srv, pub := newTinyServer(t, false, "")
	m, _ := startMiner(t, Config{Addr: srv.addr(), AuthorityPubKey: pub, HashRate: 20000})
	srv.waitShares(t, "shares on job 1", func(s []checkedShare) bool { return len(s) >= 3 })
	c := srv.conn(0)

	// A job active at once (min_ntime set) replaces job 1 on the same tip.
	nt := uint32(time.Now().Unix())
	c.newJob(2, &nt, 0x20000000)
	srv.waitShares(t, "shares on job 2", func(s []checkedShare) bool { return countJob(s, 2) >= 3 })

	// A future job, then a new tip that activates it.
	c.newJob(3, nil, 0x20000004)
	c.newPrevHash(3, [32]byte{0xbb}, nt+1)
	srv.waitShares(t, "shares on job 3", func(s []checkedShare) bool { return countJob(s, 3) >= 3 })

	// A tighter target applies to the running job.
	var tight [32]byte // one hash in 1024
	for i := 0; i < 30; i++ {
		tight[i] = 0xff
	}
	tight[30] = 0x3f
	c.setTarget(tight)
	// Once the miner has applied it, every share it sends meets it.
	waitFor(t, "SetTarget applied", func() bool { return *m.g.cur.Load().target.Load() == tight })
	applied := uint32(m.Stats().Submitted)
	shares := srv.waitShares(t, "shares at the tighter target", func(s []checkedShare) bool {
		return len(s) > 0 && s[len(s)-1].share.SequenceNumber >= applied+3
	})
	for _, s := range shares {
		if s.share.SequenceNumber > applied && s.err != "" {
			t.Errorf("share %d rejected after SetTarget took effect: %s", s.share.SequenceNumber, s.err)
		}
	}
	for _, s := range shares {
		if s.share.JobID == 3 && s.share.Version&^VersionRollingMask != 0x20000004&^VersionRollingMask {
			t.Errorf("version %08x breaks the non-rollable bits", s.share.Version)
		}
	}
}

func countJob(s []checkedShare, job uint32) int {
	n := 0
	for _, x := range s {
		if x.share.JobID == job && x.err == "" {
			n++
		}
	}
	return n
}

func TestReconnects(t *testing.T) {
	srv, _ := newTinyServer(t, false, "")
	m, _ := startMiner(t, Config{Addr: srv.addr(), HashRate: 20000, ReconnectMin: 20 * time.Millisecond,
		ReconnectMax: 100 * time.Millisecond})
	srv.waitShares(t, "shares", func(s []checkedShare) bool { return len(s) >= 2 })

	// The server drops the connection: the miner comes back by itself.
	srv.conn(0).c.Close()
	srv.waitShares(t, "shares on a second connection", func(s []checkedShare) bool {
		return len(s) > 0 && s[len(s)-1].conn >= 1
	})

	// The server goes away and comes back on the same address.
	addr := srv.addr()
	srv.close()
	waitFor(t, "disconnected", func() bool { return !m.Stats().Connected })
	srv2, _ := newTinyServer(t, false, addr)
	srv2.waitShares(t, "shares on the restarted server", func(s []checkedShare) bool { return len(s) >= 2 })
	if st := m.Stats(); st.Sessions < 3 {
		t.Errorf("sessions %d, want ≥ 3", st.Sessions)
	}
}

func TestReconnectMessage(t *testing.T) {
	srv1, _ := newTinyServer(t, false, "")
	srv2, _ := newTinyServer(t, false, "")
	m, _ := startMiner(t, Config{Addr: srv1.addr(), HashRate: 20000})
	srv1.waitShares(t, "shares", func(s []checkedShare) bool { return len(s) >= 1 })
	_, port, _ := net.SplitHostPort(srv2.addr())
	var p uint16
	for _, ch := range port {
		p = p*10 + uint16(ch-'0')
	}
	srv1.conn(0).send(&messages.Reconnect{NewPort: p})
	srv2.waitShares(t, "shares after Reconnect", func(s []checkedShare) bool { return len(s) >= 2 })
	if m.Stats().Addr != srv2.addr() {
		t.Errorf("addr %s, want %s", m.Stats().Addr, srv2.addr())
	}
}

func TestRefusedSetupRetries(t *testing.T) {
	// A server that refuses the connection: the miner reports it and retries.
	key, _ := btcec.NewPrivateKey()
	ln, err := noise.Listen("tcp", "127.0.0.1:0", &noise.Config{AuthorityKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	attempts := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, _, err := messages.Read(c, codec.Options{}); err != nil {
					return
				}
				mu.Lock()
				attempts++
				mu.Unlock()
				c.WriteMessage(&messages.SetupConnectionError{Flags: messages.FlagRequiresStandardJobs,
					ErrorCode: "unsupported-feature-flags"}, codec.Options{})
			}()
		}
	}()
	m, _ := startMiner(t, Config{Addr: ln.Addr().String(), ReconnectMin: 10 * time.Millisecond,
		ReconnectMax: 20 * time.Millisecond})
	waitFor(t, "three attempts", func() bool { mu.Lock(); defer mu.Unlock(); return attempts >= 3 })
	if st := m.Stats(); st.Connected || st.Sessions != 0 || st.LastError == "" {
		t.Errorf("stats %+v", st)
	}
}

func TestNewChecksConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("no address accepted")
	}
	if _, err := New(Config{Addr: "x:1", HashRate: -1}); err == nil {
		t.Error("negative hash rate accepted")
	}
}

func TestDeposit(t *testing.T) {
	for _, tc := range []struct{ v, mask, want uint32 }{
		{0, VersionRollingMask, 0},
		{1, VersionRollingMask, 1 << 5},
		{3, 0b1010, 0b1010},
		{2, 0b1010, 0b1000},
		{1 << 24, VersionRollingMask, 0}, // beyond the mask's 24 bits
		{0xffffff, VersionRollingMask, VersionRollingMask},
	} {
		if got := deposit(tc.v, tc.mask); got != tc.want {
			t.Errorf("deposit(%x, %x) = %x, want %x", tc.v, tc.mask, got, tc.want)
		}
	}
}

func TestLimiterStopsOnStale(t *testing.T) {
	l := limiter{rate: 0.001}
	stale := make(chan struct{})
	if !l.wait(context.Background(), stale, 1) {
		t.Fatal("first batch should pass at once")
	}
	close(stale)
	if l.wait(context.Background(), stale, 1) {
		t.Fatal("wait should give up when the work goes stale")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if l.wait(ctx, make(chan struct{}), 1) {
		t.Fatal("wait should give up when ctx ends")
	}
}

// BenchmarkScan is the hash rate of one worker (double SHA-256 of a header).
func BenchmarkScan(b *testing.B) {
	var hdr [80]byte
	var zero [32]byte
	hits := 0
	b.ReportAllocs()
	b.ResetTimer()
	scan(&hdr, 0, uint32(b.N), &zero, func(uint32, *[32]byte) { hits++ })
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "MH/s")
}

// TestExtendedGroupJobsAndFixedVersion: jobs sent to the group as
// NewExtendedMiningJob are mined with the channel's prefix as extranonce,
// and no version bit is rolled when the job or the server forbids it.
func TestExtendedGroupJobsAndFixedVersion(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flags   uint32
		rolling bool
	}{
		{"rolling allowed", 0, true},
		{"job forbids rolling", 0, false},
		{"server requires a fixed version", messages.FlagRequiresFixedVersion, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := newTinyServer(t, false, "", tc.flags)
			startMiner(t, Config{Addr: srv.addr(), HashRate: 20000, Workers: 2})
			srv.waitShares(t, "shares on job 1", func(s []checkedShare) bool { return len(s) >= 1 })
			c := srv.conn(0)
			c.newExtendedJob(2, nil, 0x20000000, tc.rolling)
			c.newPrevHash(2, [32]byte{0xcc}, uint32(time.Now().Unix()))
			shares := srv.waitShares(t, "shares on the extended job", func(s []checkedShare) bool { return countJob(s, 2) >= 5 })
			versions := map[uint32]bool{}
			for _, s := range shares {
				if s.share.JobID != 2 {
					continue
				}
				if s.err != "" {
					t.Errorf("share rejected: %s", s.err)
				}
				versions[s.share.Version] = true
			}
			if rolled := len(versions) > 1 || !versions[0x20000000]; rolled != (tc.rolling && tc.flags == 0) {
				t.Errorf("versions %v; rolling expected %v", versions, tc.rolling && tc.flags == 0)
			}
		})
	}
}

func TestEasierTarget(t *testing.T) {
	hard, easy := [32]byte{31: 0x00, 30: 0x01}, [32]byte{31: 0x7f}
	for _, tc := range []struct{ a, b, want [32]byte }{
		{hard, easy, easy},
		{easy, hard, easy},
		{easy, easy, easy},
	} {
		if got := easier(tc.a, tc.b); got != tc.want {
			t.Errorf("easier(%x, %x) = %x", tc.a, tc.b, got)
		}
	}
}

// With a channel target harder than the network's (regtest), the device
// still sends every block-solving hash: none is kept from the pool.
func TestSendsBlocksHarderChannelTarget(t *testing.T) {
	srv, _ := newTinyServer(t, true, "")
	srv.mu.Lock()
	srv.bits = regtestBits // every other hash is a block; the channel wants 1 in 256
	srv.mu.Unlock()
	startMiner(t, Config{Addr: srv.addr(), Plaintext: true, UserIdentity: "alice.cpu1", Workers: 1, HashRate: 2000})
	shares := srv.waitShares(t, "20 shares", func(s []checkedShare) bool { return len(s) >= 20 })
	var hidden int
	for _, s := range shares {
		if s.err != "" || !s.block {
			t.Errorf("share %+v: error %q, block %v", s.share, s.err, s.block)
		}
		if s.belowChannel {
			hidden++
		}
	}
	// One hash in 256 meets the channel target and one in two the network's:
	// nearly every block would be hidden by the channel target alone.
	if hidden < len(shares)/2 {
		t.Fatalf("only %d of %d blocks missed the channel target; block-solving hashes are being held back", hidden, len(shares))
	}
}
