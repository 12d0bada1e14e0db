// Package cpuminer is a Stratum V2 mining device that hashes on the CPU, for
// tests and the demo: it opens one standard channel (header-only mining),
// takes NewMiningJob + SetNewPrevHash (future jobs included), grinds nonces,
// rolls nTime and the BIP323 version bits within bounds, and submits
// SubmitSharesStandard. It follows SetTarget, SetGroupChannel, CloseChannel
// and Reconnect, and reconnects with backoff until its context ends. A hash
// rate cap makes it usable on regtest, where about every other hash is a
// block.
package cpuminer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/templates"
)

// Defaults for zero Config fields.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultReconnectMin = 250 * time.Millisecond
	DefaultReconnectMax = 5 * time.Second
	DefaultSendQueue    = 64
	DefaultVendor       = "sv2kit-cpuminer"
)

// Config configures a Miner. The zero value of each field except Addr
// selects the documented default.
type Config struct {
	// Addr is the Mining Protocol server, host:port.
	Addr string
	// AuthorityPubKey pins the server's authority key. nil accepts any
	// certificate (encrypted, not authenticated; a warning is logged).
	AuthorityPubKey *[32]byte
	// Plaintext turns Noise off (servers that serve local devices in the clear).
	Plaintext bool
	// UserIdentity goes in OpenStandardMiningChannel.user_identity.
	UserIdentity string
	// Workers is the number of hashing goroutines. Default 1.
	Workers int
	// HashRate caps the total hashes per second over all workers (it may be
	// below 1). 0 means no cap.
	HashRate float64
	// NominalHashRate is reported to the server. Default: HashRate when
	// capped, else 1 MH/s per worker.
	NominalHashRate float32
	// Timeout bounds dialing, the handshake, SetupConnection, opening the
	// channel and each write. Default 10s.
	Timeout time.Duration
	// ReconnectMin and ReconnectMax bound the backoff between connection
	// attempts. Defaults 250ms and 5s.
	ReconnectMin, ReconnectMax time.Duration
	// SendQueue bounds shares waiting to be written; a server that does not
	// read them is disconnected. Default 64.
	SendQueue int
	// Vendor and DeviceID go in SetupConnection.
	Vendor, DeviceID string
	// Logger receives connection events. Default: discard.
	Logger hclog.Logger
}

// Stats is a snapshot of a Miner's counters (totals since New).
type Stats struct {
	Connected bool
	Addr      string // the server it is (or last was) connected to
	ChannelID uint32
	Sessions  uint64 // connections that opened a channel
	Jobs      uint64 // jobs activated (mined on)
	Hashes    uint64
	Submitted uint64
	Accepted  uint64 // per SubmitShares.Success new_submits_accepted_count
	Rejected  uint64
	// RejectReasons counts SubmitShares.Error by error code.
	RejectReasons map[string]uint64
	// Blocks counts headers found that met the network target (submitted
	// as shares; whether they became blocks is up to the server).
	Blocks uint64
	// Dropped counts shares lost because the connection was not keeping up
	// or had gone.
	Dropped   uint64
	LastError string
}

// Miner is one CPU mining device. Create it with New and run it with Run.
type Miner struct {
	cfg Config
	log hclog.Logger
	g   *grinder

	sessionSeq atomic.Uint64
	connected  atomic.Bool
	sessions   atomic.Uint64
	jobs       atomic.Uint64
	submitted  atomic.Uint64
	accepted   atomic.Uint64
	rejected   atomic.Uint64
	dropped    atomic.Uint64

	mu      sync.Mutex
	reasons map[string]uint64
	lastErr string
	addr    string
	channel uint32
}

// New checks cfg and returns a Miner that is not yet connected.
func New(cfg Config) (*Miner, error) {
	if cfg.Addr == "" {
		return nil, errors.New("cpuminer: no server address")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.HashRate < 0 {
		return nil, fmt.Errorf("cpuminer: negative hash rate %v", cfg.HashRate)
	}
	if cfg.NominalHashRate <= 0 {
		if cfg.HashRate > 0 {
			cfg.NominalHashRate = float32(cfg.HashRate)
		} else {
			cfg.NominalHashRate = float32(cfg.Workers) * 1e6
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = DefaultReconnectMin
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = DefaultReconnectMax
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = DefaultSendQueue
	}
	if cfg.Vendor == "" {
		cfg.Vendor = DefaultVendor
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Miner{
		cfg:     cfg,
		log:     log,
		g:       newGrinder(cfg.Workers, cfg.HashRate, cfg.SendQueue),
		reasons: map[string]uint64{},
		addr:    cfg.Addr,
	}, nil
}

// Stats returns a snapshot of the counters.
func (m *Miner) Stats() Stats {
	m.mu.Lock()
	reasons := make(map[string]uint64, len(m.reasons))
	for k, v := range m.reasons {
		reasons[k] = v
	}
	s := Stats{LastError: m.lastErr, Addr: m.addr, ChannelID: m.channel, RejectReasons: reasons}
	m.mu.Unlock()
	s.Connected = m.connected.Load()
	s.Sessions = m.sessions.Load()
	s.Jobs = m.jobs.Load()
	s.Hashes = m.g.hashes.Load()
	s.Submitted = m.submitted.Load()
	s.Accepted = m.accepted.Load()
	s.Rejected = m.rejected.Load()
	s.Blocks = m.g.blocks.Load()
	s.Dropped = m.dropped.Load() + m.g.dropped.Load()
	return s
}

// Run mines until ctx ends, connecting and reconnecting to the server. It
// returns nil when ctx ends.
func (m *Miner) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for i := 0; i < m.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.g.run(ctx)
		}()
	}
	addr := m.cfg.Addr
	bo := node.Backoff{Initial: m.cfg.ReconnectMin, Max: m.cfg.ReconnectMax}
	for {
		m.mu.Lock()
		m.addr = addr
		m.mu.Unlock()
		redirect, established, err := m.session(ctx, addr)
		m.g.set(nil) // the work died with the connection
		if ctx.Err() != nil {
			return nil
		}
		if established {
			bo.Reset()
		}
		if err != nil {
			m.mu.Lock()
			m.lastErr = err.Error()
			m.mu.Unlock()
		}
		if redirect != "" {
			m.log.Info("server asked to reconnect", "from", addr, "to", redirect)
			addr = redirect
			continue
		}
		wait := bo.Next()
		m.log.Warn("disconnected; reconnecting", "addr", addr, "error", err, "in", wait)
		if node.Sleep(ctx, wait) != nil {
			return nil
		}
	}
}

func (m *Miner) dial(ctx context.Context, addr string) (*noise.Conn, error) {
	cfg := &noise.Config{
		Plaintext:       m.cfg.Plaintext,
		AuthorityPubKey: m.cfg.AuthorityPubKey,
		MaxPayload:      messages.MaxPayload,
		Logger:          m.log,
	}
	if cfg.AuthorityPubKey == nil {
		cfg.InsecureSkipVerify = true
	}
	if m.cfg.Plaintext {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		return noise.Client(nc, cfg), nil
	}
	return noise.Dial(ctx, "tcp", addr, cfg)
}

// session runs one connection. It returns a new address when the server
// sent Reconnect, and established once a channel was open.
func (m *Miner) session(ctx context.Context, addr string) (redirect string, established bool, err error) {
	dctx, dcancel := context.WithTimeout(ctx, m.cfg.Timeout)
	conn, err := m.dial(dctx, addr)
	dcancel()
	if err != nil {
		return "", false, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	st, err := m.open(conn, addr)
	if err != nil {
		return "", false, err
	}
	m.sessions.Add(1)
	m.connected.Store(true)
	defer m.connected.Store(false)
	m.mu.Lock()
	m.channel = st.channel
	m.mu.Unlock()
	m.log.Info("channel open", "addr", addr, "channel", st.channel, "group", st.group,
		"fixed_version", st.fixedVersion)

	// Deferred in reverse: close the conn (unblocks the reader), cancel
	// (unblocks the writer), then wait for both.
	var wg sync.WaitGroup
	defer wg.Wait()
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer conn.Close()
	in := make(chan codec.Message, 32)
	out := make(chan codec.Message, m.cfg.SendQueue)
	wg.Add(2)
	go func() {
		defer wg.Done()
		m.reader(sctx, cancel, conn, in)
	}()
	go func() {
		defer wg.Done()
		m.writer(sctx, cancel, conn, out)
	}()

	var seq uint32
	for {
		select {
		case <-sctx.Done():
			return "", true, context.Cause(sctx)
		case f := <-m.g.found:
			if f.w.session != st.id {
				m.dropped.Add(1) // found on a previous connection's job
				continue
			}
			if !f.block && !templates.MeetsTarget(&f.hash, f.w.target.Load()) {
				continue // found before a SetTarget that tightened the target
			}
			seq++
			share := &messages.SubmitSharesStandard{ChannelID: f.w.channelID, SequenceNumber: seq,
				JobID: f.w.jobID, Nonce: f.nonce, NTime: f.ntime, Version: f.version}
			select {
			case out <- share:
				m.submitted.Add(1)
				if f.block {
					m.log.Info("found a block-level share", "job", f.w.jobID, "hash", hashString(f.hash))
				}
			default:
				// Shares come faster than they can be written; a server
				// that stops reading is caught by the write deadline.
				m.dropped.Add(1)
			}
		case msg := <-in:
			redirect, err := m.handle(st, msg, addr)
			if err != nil || redirect != "" {
				return redirect, true, err
			}
		}
	}
}

// channelState is one connection's view of its channel and jobs; only the
// session goroutine touches it.
type channelState struct {
	id           uint64
	channel      uint32
	group        uint32
	fixedVersion bool
	target       [32]byte
	prefix       []byte
	jobs         map[uint32]*job
	order        []uint32 // job ids, oldest first, to bound jobs
	prev         *prevHash
}

type job struct {
	id       uint32
	version  uint32
	rolling  bool
	merkle   [32]byte
	minNTime *uint32
	segments *atomic.Uint64
}

type prevHash struct {
	hash     [32]byte
	minNTime uint32
	nbits    uint32
}

// maxJobs bounds the jobs kept per channel (future and active).
const maxJobs = 64

// open sends SetupConnection and OpenStandardMiningChannel and waits for
// their answers, within Timeout.
func (m *Miner) open(conn *noise.Conn, addr string) (*channelState, error) {
	conn.SetDeadline(time.Now().Add(m.cfg.Timeout))
	defer conn.SetDeadline(time.Time{})
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.ParseUint(portStr, 10, 16)
	setup := &messages.SetupConnection{
		Protocol: messages.ProtocolMining, MinVersion: 2, MaxVersion: 2,
		Flags:        messages.FlagRequiresStandardJobs | messages.FlagRequiresVersionRolling,
		EndpointHost: host, EndpointPort: uint16(port),
		Vendor: m.cfg.Vendor, HardwareVersion: "cpu", Firmware: "sv2kit", DeviceID: m.cfg.DeviceID,
	}
	if err := conn.WriteMessage(setup, codec.Options{}); err != nil {
		return nil, fmt.Errorf("send SetupConnection: %w", err)
	}
	st := &channelState{id: m.sessionSeq.Add(1), jobs: map[uint32]*job{}}
	msg, err := readKnown(conn)
	if err != nil {
		return nil, fmt.Errorf("read SetupConnection answer: %w", err)
	}
	switch r := msg.(type) {
	case *messages.SetupConnectionSuccess:
		st.fixedVersion = r.Flags&messages.FlagRequiresFixedVersion != 0
	case *messages.SetupConnectionError:
		return nil, fmt.Errorf("SetupConnection refused: %q (flags 0x%x)", r.ErrorCode, r.Flags)
	default:
		return nil, fmt.Errorf("expected SetupConnection.Success, got %s", msg.MessageName())
	}
	var maxTarget [32]byte
	for i := range maxTarget {
		maxTarget[i] = 0xff
	}
	const reqID = 1
	openMsg := &messages.OpenStandardMiningChannel{RequestID: reqID, UserIdentity: m.cfg.UserIdentity,
		NominalHashRate: m.cfg.NominalHashRate, MaxTarget: maxTarget}
	if err := conn.WriteMessage(openMsg, codec.Options{}); err != nil {
		return nil, fmt.Errorf("send OpenStandardMiningChannel: %w", err)
	}
	for {
		msg, err := readKnown(conn)
		if err != nil {
			return nil, fmt.Errorf("read OpenStandardMiningChannel answer: %w", err)
		}
		switch r := msg.(type) {
		case *messages.OpenStandardMiningChannelSuccess:
			if r.RequestID != reqID {
				continue
			}
			st.channel, st.group, st.target = r.ChannelID, r.GroupChannelID, r.Target
			st.prefix = append([]byte(nil), r.ExtranoncePrefix...)
			return st, nil
		case *messages.OpenMiningChannelError:
			return nil, fmt.Errorf("channel refused: %q", r.ErrorCode)
		default:
			m.log.Debug("ignored before the channel opened", "message", msg.MessageName())
		}
	}
}

// readKnown reads the next message, skipping frames of unknown extensions
// and message types.
func readKnown(conn *noise.Conn) (codec.Message, error) {
	for {
		msg, _, err := messages.Read(conn, codec.Options{})
		if errors.Is(err, messages.ErrUnknownExtension) || errors.Is(err, messages.ErrUnknownMessage) {
			continue
		}
		return msg, err
	}
}

func (m *Miner) reader(ctx context.Context, cancel context.CancelCauseFunc, conn *noise.Conn, in chan<- codec.Message) {
	for {
		msg, err := readKnown(conn)
		if err != nil {
			cancel(fmt.Errorf("read: %w", err))
			return
		}
		select {
		case in <- msg:
		case <-ctx.Done():
			return
		}
	}
}

func (m *Miner) writer(ctx context.Context, cancel context.CancelCauseFunc, conn *noise.Conn, out <-chan codec.Message) {
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-out:
			conn.SetWriteDeadline(time.Now().Add(m.cfg.Timeout))
			if err := conn.WriteMessage(msg, codec.Options{}); err != nil {
				cancel(fmt.Errorf("write %s: %w", msg.MessageName(), err))
				return
			}
		}
	}
}

// mine reports whether a channel id addresses this channel (or its group).
func (st *channelState) mine(id uint32) bool {
	return id == st.channel || (st.group != 0 && id == st.group)
}

// handle applies one server message. It returns an address for Reconnect
// and an error for anything that ends the connection.
func (m *Miner) handle(st *channelState, msg codec.Message, addr string) (string, error) {
	switch r := msg.(type) {
	case *messages.NewMiningJob:
		if !st.mine(r.ChannelID) {
			return "", nil
		}
		m.addJob(st, &job{id: r.JobID, version: r.Version, rolling: true, merkle: r.MerkleRoot, minNTime: r.MinNTime})
	case *messages.NewExtendedMiningJob:
		if !st.mine(r.ChannelID) {
			return "", nil
		}
		// A job for the group: the channel's prefix is the whole extranonce.
		cb := make([]byte, 0, len(r.CoinbaseTxPrefix)+len(st.prefix)+len(r.CoinbaseTxSuffix))
		cb = append(append(append(cb, r.CoinbaseTxPrefix...), st.prefix...), r.CoinbaseTxSuffix...)
		root := templates.MerkleRoot(templates.DoubleSHA256(cb), r.MerklePath)
		m.addJob(st, &job{id: r.JobID, version: r.Version, rolling: r.VersionRollingAllowed, merkle: root, minNTime: r.MinNTime})
	case *messages.MiningSetNewPrevHash:
		if !st.mine(r.ChannelID) {
			return "", nil
		}
		st.prev = &prevHash{hash: r.PrevHash, minNTime: r.MinNTime, nbits: r.NBits}
		j, ok := st.jobs[r.JobID]
		// Only the referenced job stays valid on the new tip.
		st.jobs = map[uint32]*job{}
		st.order = st.order[:0]
		if !ok {
			m.log.Warn("SetNewPrevHash for an unknown job; idle until the next job", "job", r.JobID)
			m.g.set(nil)
			return "", nil
		}
		st.jobs[j.id] = j
		st.order = append(st.order, j.id)
		m.activate(st, j, r.MinNTime)
	case *messages.SetTarget:
		if !st.mine(r.ChannelID) {
			return "", nil
		}
		st.target = r.MaximumTarget
		// A tighter target applies to the running job too, so no share is
		// sent that the server would call too easy; a looser one waits for
		// the next job.
		if w := m.g.cur.Load(); !w.idle() && w.session == st.id {
			t := easier(r.MaximumTarget, w.netTarget)
			if cur := w.target.Load(); templates.MeetsTarget(&t, cur) {
				w.target.Store(&t)
			}
		}
	case *messages.SetExtranoncePrefix:
		if r.ChannelID == st.channel {
			st.prefix = append([]byte(nil), r.ExtranoncePrefix...)
		}
	case *messages.SetGroupChannel:
		for _, id := range r.ChannelIDs {
			if id == st.channel {
				st.group = r.GroupChannelID
			}
		}
	case *messages.SubmitSharesSuccess:
		m.accepted.Add(uint64(r.NewSubmitsAcceptedCount))
	case *messages.SubmitSharesError:
		m.rejected.Add(1)
		m.mu.Lock()
		if len(m.reasons) < 64 || m.reasons[r.ErrorCode] > 0 {
			m.reasons[r.ErrorCode]++
		} else {
			m.reasons["other"]++
		}
		m.mu.Unlock()
		m.log.Debug("share rejected", "seq", r.SequenceNumber, "code", r.ErrorCode)
	case *messages.CloseChannel:
		if st.mine(r.ChannelID) {
			return "", fmt.Errorf("server closed the channel: %q", r.ReasonCode)
		}
	case *messages.Reconnect:
		host, port, _ := net.SplitHostPort(addr)
		if r.NewHost != "" {
			host = r.NewHost
		}
		if r.NewPort != 0 {
			port = strconv.Itoa(int(r.NewPort))
		}
		return net.JoinHostPort(host, port), nil
	default:
		m.log.Debug("ignored message", "message", msg.MessageName())
	}
	return "", nil
}

func (m *Miner) addJob(st *channelState, j *job) {
	j.segments = new(atomic.Uint64)
	// A random start in the version-roll space, so a job re-sent under a new
	// id does not retrace the same headers.
	j.segments.Store(rand.Uint64() & (1<<32 - 1))
	if _, reused := st.jobs[j.id]; !reused {
		st.order = append(st.order, j.id)
	}
	st.jobs[j.id] = j
	for len(st.order) > maxJobs {
		delete(st.jobs, st.order[0])
		st.order = st.order[1:]
	}
	if j.minNTime != nil && st.prev != nil {
		m.activate(st, j, *j.minNTime)
	}
}

func (m *Miner) activate(st *channelState, j *job, minNTime uint32) {
	w := &work{
		session: st.id, channelID: st.channel, jobID: j.id, version: j.version,
		prevHash: st.prev.hash, merkle: j.merkle, nbits: st.prev.nbits, minNTime: minNTime,
		received: time.Now(), netTarget: templates.TargetFromBits(st.prev.nbits),
		segments: j.segments, done: make(chan struct{}),
	}
	if j.rolling && !st.fixedVersion {
		w.mask = VersionRollingMask
	}
	// Scan at the easier of the channel and network targets: a hash that
	// solves a block is always worth sending, even when the channel's
	// target is harder (regtest, testnet minimum-difficulty blocks).
	t := easier(st.target, w.netTarget)
	w.target.Store(&t)
	m.jobs.Add(1)
	m.g.set(w)
}

// easier returns the easier (numerically larger) of two targets.
func easier(a, b [32]byte) [32]byte {
	if templates.MeetsTarget(&a, &b) {
		return b
	}
	return a
}

// hashString is a block hash in display (reversed) byte order.
func hashString(h [32]byte) string {
	const hexdigits = "0123456789abcdef"
	b := make([]byte, 64)
	for i := 0; i < 32; i++ {
		v := h[31-i]
		b[2*i], b[2*i+1] = hexdigits[v>>4], hexdigits[v&15]
	}
	return string(b)
}
