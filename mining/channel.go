package mining

import (
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"math"
	"slices"
	"time"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
)

// Open*MiningChannel.Error and UpdateChannel.Error codes (DIGEST §6.6).
const (
	CodeInvalidNominalHashrate    = "invalid-nominal-hashrate"
	CodeMaxTargetOutOfRange       = "max-target-out-of-range"
	CodeMinExtranonceSizeTooLarge = "min-extranonce-size-too-large"
	CodeInvalidChannelID          = "invalid-channel-id"
	// CodeTooManyChannels and CodeExtranonceExhausted are ours: the session
	// or the extranonce space is full.
	CodeTooManyChannels     = "too-many-channels"
	CodeExtranonceExhausted = "extranonce-space-exhausted"
)

// Errors of the job methods.
var (
	ErrNoTip              = errors.New("no chain tip yet: an active job needs a SetNewPrevHash first")
	ErrUnknownTemplate    = errors.New("SetNewPrevHash names a template this session has no future job for")
	ErrExtranonceMismatch = errors.New("job template's extranonce size differs from the channels' layout")
)

// Config holds the per-session (per-connection) channel settings. Zero values
// take the defaults.
type Config struct {
	Vardiff VardiffConfig
	// EasiestTarget is the easiest target a channel is ever given (zero =
	// MaxTarget). A pool sets it to its minimum difficulty.
	EasiestTarget [32]byte
	// VersionMask is the rollable version bits (default BIP323VersionMask).
	VersionMask uint32
	// NoVersionRolling sends extended jobs with version_rolling_allowed=false
	// (shares must then carry the job's exact version).
	NoVersionRolling bool
	// MaxNTimeAhead is how far a share's nTime may be beyond both the tip's
	// min_ntime plus the time since the tip and the current time (default
	// 2 h, the consensus future-block limit).
	MaxNTimeAhead time.Duration
	// MaxJobs bounds the active jobs kept per channel on one tip (default 8);
	// older ones become stale.
	MaxJobs int
	// MaxFutureJobs bounds the future jobs kept (default 4).
	MaxFutureJobs int
	// StaleJobs is how many recently invalidated job ids are remembered to
	// answer stale-share instead of invalid-job-id (default 64).
	StaleJobs int
	// DuplicateWindow is how many accepted shares per channel are remembered
	// for duplicate detection on the current tip (default 1024; between one
	// and two windows are held, in at most 32 bytes per share of window:
	// 32 KiB per channel at the default, grown only as shares arrive).
	DuplicateWindow int
	// MaxChannels bounds the channels of one session (default 1024).
	MaxChannels int
	// StandardJobs means the client set REQUIRES_STANDARD_JOBS: standard
	// channels get NewMiningJob each; otherwise their group gets one
	// NewExtendedMiningJob (and one SetNewPrevHash).
	StandardJobs bool
}

func (c Config) withDefaults() Config {
	c.Vardiff = c.Vardiff.withDefaults()
	if c.EasiestTarget == ([32]byte{}) {
		c.EasiestTarget = MaxTarget
	}
	if c.VersionMask == 0 {
		c.VersionMask = BIP323VersionMask
	}
	if c.MaxNTimeAhead <= 0 {
		c.MaxNTimeAhead = 2 * time.Hour
	}
	if c.MaxJobs <= 0 {
		c.MaxJobs = 8
	}
	if c.MaxFutureJobs <= 0 {
		c.MaxFutureJobs = 4
	}
	if c.StaleJobs <= 0 {
		c.StaleJobs = 64
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = 1024
	}
	if c.MaxChannels <= 0 {
		c.MaxChannels = 1024
	}
	return c
}

// Kind is a channel's type.
type Kind uint8

// Channel kinds.
const (
	Standard Kind = iota + 1
	Extended
)

func (k Kind) String() string {
	switch k {
	case Standard:
		return "standard"
	case Extended:
		return "extended"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Stats counts a channel's shares.
type Stats struct {
	Accepted, Rejected, Blocks uint64
	// DifficultySum is the sum of the difficulty of accepted shares (the
	// unit of SubmitShares.Success.new_shares_sum).
	DifficultySum float64
}

// Channel is one standard or extended channel.
type Channel struct {
	id           uint32
	kind         Kind
	userIdentity string
	s            *Session
	scope        *scope
	en           Extranonce
	prefix       []byte
	size         int
	maxTarget    [32]byte // the client's
	target       [32]byte
	targetDiff   float64
	vd           *Vardiff
	tip          *ChainTip
	jobs         []*Job // active on tip, oldest first
	future       []*Job
	stale        []uint32 // ring of invalidated job ids
	staleNext    int
	dups         dupSet
	stats        Stats
	roots        [rootCacheSize]rootEntry
}

// rootCacheSize entries of recent (job, extranonce) → merkle root per
// extended channel: a device rolls nonce, nTime and version bits far more
// often than its extranonce, so most shares skip the coinbase and merkle
// path hashing.
const rootCacheSize = 8

type rootEntry struct {
	job  *Job
	n    int
	ext  [MaxExtranonceSize]byte
	root [32]byte
}

// extendedRoot is the merkle root of a share on extended job j.
func (c *Channel) extendedRoot(j *Job, ext []byte) [32]byte {
	var h uint32
	for _, b := range ext {
		h = h*31 + uint32(b)
	}
	e := &c.roots[h%rootCacheSize]
	if e.job == j && e.n == len(ext) && string(e.ext[:e.n]) == string(ext) {
		return e.root
	}
	root := c.s.merkleRoot(j.Template, j.ExtranoncePrefix, ext)
	e.job, e.n, e.root = j, copy(e.ext[:], ext), root
	return root
}

// ID is the channel_id.
func (c *Channel) ID() uint32 { return c.id }

// Kind is standard or extended.
func (c *Channel) Kind() Kind { return c.kind }

// UserIdentity is the user_identity the channel was opened with.
func (c *Channel) UserIdentity() string { return c.userIdentity }

// GroupID is the group channel id of a standard channel (every standard
// channel of a session is in its one group), 0 for extended channels.
func (c *Channel) GroupID() uint32 {
	if c.scope.group {
		return c.scope.id
	}
	return 0
}

// Target is the channel's current target.
func (c *Channel) Target() [32]byte { return c.target }

// HashRate is vardiff's estimate of the device's hash rate (hashes/s).
func (c *Channel) HashRate() float64 { return c.vd.HashRate() }

// ExtranoncePrefix is the channel's current extranonce_prefix (shared; do
// not modify). Jobs keep the prefix they were issued with.
func (c *Channel) ExtranoncePrefix() []byte { return c.prefix }

// ExtranonceSize is the extranonce_size of an extended channel (0 for standard).
func (c *Channel) ExtranonceSize() int { return c.size }

// Stats returns the share counters.
func (c *Channel) Stats() Stats { return c.stats }

// Tip is the chain tip the channel's active jobs build on (nil before one).
func (c *Channel) Tip() *ChainTip { return c.tip }

// Jobs returns the active jobs, oldest first (shared; do not modify).
func (c *Channel) Jobs() []*Job { return c.jobs }

// Job finds an active or future job by id.
func (c *Channel) Job(id uint32) *Job {
	if j := c.activeJob(id); j != nil {
		return j
	}
	for _, j := range c.future {
		if j.ID == id {
			return j
		}
	}
	return nil
}

func (c *Channel) activeJob(id uint32) *Job {
	for i := len(c.jobs) - 1; i >= 0; i-- {
		if c.jobs[i].ID == id {
			return c.jobs[i]
		}
	}
	return nil
}

func (c *Channel) isStale(id uint32) bool {
	return slices.Contains(c.stale, id)
}

func (c *Channel) markStale(id uint32) {
	if len(c.stale) < c.s.cfg.StaleJobs {
		c.stale = append(c.stale, id)
		return
	}
	c.stale[c.staleNext] = id
	c.staleNext = (c.staleNext + 1) % len(c.stale)
}

// SetTarget sets the channel's target (clamped to its maximum and the
// session's easiest target) and returns the message to send. Shares on jobs
// issued before are accepted at the easier of the old and new target.
// Vardiff continues from the new target.
func (c *Channel) SetTarget(t [32]byte) *messages.SetTarget {
	c.setTarget(t)
	c.vd.SetTarget(c.target)
	return &messages.SetTarget{ChannelID: c.id, MaximumTarget: c.target}
}

func (c *Channel) setTarget(t [32]byte) {
	t = HarderTarget(t, c.s.cfg.EasiestTarget)
	// Never harder than the network: a device reports only hashes that meet
	// its channel target, so a harder one would keep blocks from us (regtest,
	// testnet minimum-difficulty blocks). This goes before the easiest-target
	// floor, since every such share is a block; the device's own maximum
	// target still comes first, as the spec requires.
	if c.s.tip != nil {
		t = EasierTarget(t, c.s.tip.Target)
	}
	c.target = HarderTarget(t, c.maxTarget)
	c.targetDiff = DifficultyFromTarget(c.target)
}

// retarget re-applies the channel's vardiff target under the current tip
// and reports whether the channel target changed.
func (c *Channel) retarget() bool {
	old := c.target
	c.setTarget(c.vd.Target())
	return c.target != old
}

// newJob records a job for this channel.
func (c *Channel) newJob(id uint32, jt *JobTemplate, tip *ChainTip) *Job {
	j := c.s.arena.job()
	*j = Job{
		ID:               id,
		ChannelID:        c.id,
		Template:         jt,
		Tip:              tip,
		Target:           c.target,
		VersionRolling:   c.kind == Standard || !c.s.cfg.NoVersionRolling,
		ExtranoncePrefix: c.prefix,
		ExtranonceSize:   c.size,
		rootPending:      c.kind == Standard,
	}
	if tip == nil {
		c.future = append(c.future, j)
		if len(c.future) > c.s.cfg.MaxFutureJobs {
			c.markStale(c.future[0].ID)
			c.future = slices.Delete(c.future, 0, 1)
		}
		return j
	}
	c.addActive(j)
	return j
}

func (c *Channel) addActive(j *Job) {
	c.jobs = append(c.jobs, j)
	if len(c.jobs) > c.s.cfg.MaxJobs {
		c.markStale(c.jobs[0].ID)
		c.jobs[0] = nil
		c.jobs = slices.Delete(c.jobs, 0, 1)
	}
}

// activate moves to a new tip with future job id as the only active job.
// It reports false when the channel has no such future job.
func (c *Channel) activate(id uint32, tip *ChainTip) bool {
	var act *Job
	for _, j := range c.future {
		if j.ID == id {
			act = j
		} else {
			c.markStale(j.ID)
		}
	}
	c.future = c.future[:0]
	c.newTip(tip)
	if act == nil {
		return false
	}
	act.Tip = tip
	c.jobs = append(c.jobs, act)
	return true
}

// newTip invalidates every active job.
func (c *Channel) newTip(tip *ChainTip) {
	for i, j := range c.jobs {
		c.markStale(j.ID)
		c.jobs[i] = nil
	}
	c.jobs = c.jobs[:0]
	c.tip = tip
	c.dups.reset()
	// The merkle-root cache needs no clearing: entries are keyed by job, and
	// the old jobs are gone.
}

// AddCustomJob records a job from SetCustomMiningJob on an extended channel
// (pool side, DIGEST §6.2): it is active at once on tip; a tip with another
// prev hash than the channel's makes every older job stale. The caller has
// checked the job (token, outputs) and answers with
// SetCustomMiningJob.Success{job_id: job.ID}.
func (c *Channel) AddCustomJob(jt *JobTemplate, tip ChainTip) (*Job, error) {
	if c.kind != Extended {
		return nil, errors.New("custom jobs need an extended channel")
	}
	if jt.ExtranonceSize() != len(c.prefix)+c.size {
		return nil, fmt.Errorf("%w: custom job has %d bytes, channel %d+%d", ErrExtranonceMismatch, jt.ExtranonceSize(), len(c.prefix), c.size)
	}
	if c.tip == nil || c.tip.PrevHash != tip.PrevHash {
		t := normalizeTip(tip)
		c.newTip(&t)
	}
	id := c.scope.nextID()
	j := c.newJob(id, jt, c.tip)
	j.Custom = true
	return j, nil
}

// scope issues job ids: a group of standard channels shares one, an
// extended channel has its own.
type scope struct {
	id      uint32
	group   bool
	members []*Channel
	nextJob uint32
	cur     scopeJob
	futures []scopeJob
}

type scopeJob struct {
	id uint32
	jt *JobTemplate
}

func (g *scope) nextID() uint32 {
	g.nextJob++
	return g.nextJob
}

// Session is the channels of one connection (server side: jdc's device
// server, the test pool), with the job state they share. Not safe for
// concurrent use.
type Session struct {
	cfg      Config
	alloc    *ExtranonceAllocator
	channels map[uint32]*Channel
	order    []*Channel // by id, for deterministic fan-out
	scopes   []*scope   // by id
	group    *scope     // the standard channels' group, created on first use
	lastID   uint32
	tip      *ChainTip
	cur      *JobTemplate
	futures  []*JobTemplate
	arena    arena

	// hashing scratch for share validation (no allocation per share)
	h   hash.Hash
	hu  encoding.BinaryUnmarshaler
	sum []byte
}

// NewSession creates the channel set of one connection. alloc gives each
// channel its extranonce prefix and may be shared by many sessions.
func NewSession(cfg Config, alloc *ExtranonceAllocator) *Session {
	h := sha256.New()
	return &Session{
		cfg:      cfg.withDefaults(),
		alloc:    alloc,
		channels: make(map[uint32]*Channel),
		h:        h,
		hu:       h.(encoding.BinaryUnmarshaler),
		sum:      make([]byte, 0, sha256.Size),
	}
}

// Config returns the session's configuration with defaults filled in.
func (s *Session) Config() Config { return s.cfg }

// Channel returns an open channel by id, or nil.
func (s *Session) Channel(id uint32) *Channel { return s.channels[id] }

// Channels returns the open channels ordered by id (shared; do not modify).
func (s *Session) Channels() []*Channel { return s.order }

// Tip is the session's current chain tip (nil before the first).
func (s *Session) Tip() *ChainTip { return s.tip }

// Current is the job template of the current active work (nil before one).
func (s *Session) Current() *JobTemplate { return s.cur }

func (s *Session) newID() uint32 {
	for {
		s.lastID++
		if s.lastID == 0 {
			continue
		}
		if _, used := s.channels[s.lastID]; used {
			continue
		}
		if s.group != nil && s.group.id == s.lastID {
			continue
		}
		return s.lastID
	}
}

func openError(req uint32, code string) []codec.Message {
	return []codec.Message{&messages.OpenMiningChannelError{RequestID: req, ErrorCode: code}}
}

func validHashRate(h float32) bool {
	f := float64(h)
	return !math.IsNaN(f) && !math.IsInf(f, 0) && f >= 0
}

// open validates and creates a channel; code is set on refusal.
func (s *Session) open(kind Kind, user string, hr float32, maxTarget [32]byte, minExt int, now time.Time) (*Channel, string) {
	if len(s.channels) >= s.cfg.MaxChannels {
		return nil, CodeTooManyChannels
	}
	if !validHashRate(hr) {
		return nil, CodeInvalidNominalHashrate
	}
	if maxTarget == ([32]byte{}) {
		return nil, CodeMaxTargetOutOfRange
	}
	if kind == Extended && minExt > s.alloc.DownstreamSize() {
		return nil, CodeMinExtranonceSizeTooLarge
	}
	en, err := s.alloc.Allocate(kind == Standard)
	if err != nil {
		return nil, CodeExtranonceExhausted
	}
	c := &Channel{id: s.newID(), kind: kind, userIdentity: user, s: s, en: en, maxTarget: maxTarget}
	c.prefix, c.size = s.alloc.Prefix(en)
	c.vd = NewVardiff(s.cfg.Vardiff, float64(hr), HarderTarget(maxTarget, s.cfg.EasiestTarget), now)
	c.setTarget(c.vd.Target())
	c.dups.init(s.cfg.DuplicateWindow)
	if kind == Standard {
		if s.group == nil {
			s.group = &scope{id: s.newID(), group: true}
			s.scopes = append(s.scopes, s.group)
		}
		c.scope = s.group
	} else {
		c.scope = &scope{id: c.id}
		s.scopes = append(s.scopes, c.scope)
	}
	c.scope.members = append(c.scope.members, c)
	s.channels[c.id] = c
	s.order = append(s.order, c)
	s.arena.n = len(s.order)
	slices.SortFunc(s.scopes, func(a, b *scope) int { return cmpU32(a.id, b.id) })
	return c, ""
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// OpenStandard handles OpenStandardMiningChannel. It returns the channel (nil
// when refused) and the messages to send: the Success (or
// OpenMiningChannel.Error), then the current work as a future job activated
// by a SetNewPrevHash, then any pending future jobs.
func (s *Session) OpenStandard(req *messages.OpenStandardMiningChannel, now time.Time) (*Channel, []codec.Message) {
	c, code := s.open(Standard, req.UserIdentity, req.NominalHashRate, req.MaxTarget, 0, now)
	if c == nil {
		return nil, openError(req.RequestID, code)
	}
	out := []codec.Message{&messages.OpenStandardMiningChannelSuccess{
		RequestID:        req.RequestID,
		ChannelID:        c.id,
		Target:           c.target,
		ExtranoncePrefix: c.prefix,
		GroupChannelID:   c.scope.id,
	}}
	return c, s.initialJobs(c, out)
}

// OpenExtended handles OpenExtendedMiningChannel, like OpenStandard.
func (s *Session) OpenExtended(req *messages.OpenExtendedMiningChannel, now time.Time) (*Channel, []codec.Message) {
	c, code := s.open(Extended, req.UserIdentity, req.NominalHashRate, req.MaxTarget, int(req.MinExtranonceSize), now)
	if c == nil {
		return nil, openError(req.RequestID, code)
	}
	out := []codec.Message{&messages.OpenExtendedMiningChannelSuccess{
		RequestID:         req.RequestID,
		ChannelID:         c.id,
		Target:            c.target,
		ExtranonceSize:    uint16(c.size),
		ExtranoncePrefix:  c.prefix,
		HasGroupChannelID: true,
	}}
	return c, s.initialJobs(c, out)
}

// initialJobs gives a new channel the current work and pending futures,
// reusing its scope's job ids so later group-wide messages apply to it.
func (s *Session) initialJobs(c *Channel, out []codec.Message) []codec.Message {
	g := c.scope
	if s.cur != nil && s.tip != nil && s.fits(s.cur) {
		if g.cur.jt != s.cur {
			g.cur = scopeJob{id: g.nextID(), jt: s.cur}
		}
		j := c.newJob(g.cur.id, s.cur, nil)
		out = append(out, c.jobMessage(j, c.id))
		c.activate(j.ID, s.tip)
		out = append(out, s.prevHashMessage(c.id, j.ID, s.tip))
	}
	// Forget group futures the session no longer has (the group may have
	// been empty when they were dropped).
	g.futures = slices.DeleteFunc(g.futures, func(f scopeJob) bool { return !slices.Contains(s.futures, f.jt) })
	for _, jt := range s.futures {
		if !s.fits(jt) {
			continue
		}
		id := uint32(0)
		for _, f := range g.futures {
			if f.jt == jt {
				id = f.id
			}
		}
		if id == 0 {
			id = g.nextID()
			g.futures = append(g.futures, scopeJob{id: id, jt: jt})
		}
		out = append(out, c.jobMessage(c.newJob(id, jt, nil), c.id))
	}
	return out
}

func (s *Session) fits(jt *JobTemplate) bool {
	return jt.ExtranonceSize() == s.alloc.FullSize()
}

// jobMessage is the job message for j sent to channel or group id to.
func (c *Channel) jobMessage(j *Job, to uint32) codec.Message {
	var mt *uint32
	if j.Tip != nil {
		mt = &j.Tip.MinNTime // shared and never modified
	}
	if c.kind == Standard && to == c.id {
		c.s.ensureRoot(j)
		m := c.s.arena.std()
		*m = messages.NewMiningJob{ChannelID: to, JobID: j.ID, MinNTime: mt, Version: j.Template.Version, MerkleRoot: j.MerkleRoot}
		return m
	}
	p, sfx := j.Template.CoinbaseParts(false)
	m := c.s.arena.ext()
	*m = messages.NewExtendedMiningJob{
		ChannelID:             to,
		JobID:                 j.ID,
		MinNTime:              mt,
		Version:               j.Template.Version,
		VersionRollingAllowed: j.VersionRolling,
		MerklePath:            j.Template.MerklePath,
		CoinbaseTxPrefix:      p,
		CoinbaseTxSuffix:      sfx,
	}
	return m
}

func (s *Session) prevHashMessage(to, jobID uint32, tip *ChainTip) *messages.MiningSetNewPrevHash {
	m := s.arena.snph()
	*m = messages.MiningSetNewPrevHash{ChannelID: to, JobID: jobID, PrevHash: tip.PrevHash, MinNTime: tip.MinNTime, NBits: tip.NBits}
	return m
}

// ensureRoot computes a standard job's merkle root. Jobs sent to a group as
// one extended job need it only when a share arrives, which keeps the root
// computation (a merkle path fold per channel) off the new-tip path.
func (s *Session) ensureRoot(j *Job) {
	if j.rootPending {
		j.MerkleRoot = s.merkleRoot(j.Template, j.ExtranoncePrefix, nil)
		j.rootPending = false
	}
}

// arena hands out jobs and messages from chunks sized for the session, so a
// fan-out to many channels makes a few allocations instead of one per
// channel. Slots are never reused; a chunk is freed when nothing points
// into it.
type arena struct {
	n     int
	jobs  []Job
	exts  []messages.NewExtendedMiningJob
	stds  []messages.NewMiningJob
	snphs []messages.MiningSetNewPrevHash
}

func grab[T any](a *arena, chunk *[]T) *T {
	if len(*chunk) == cap(*chunk) {
		*chunk = make([]T, 0, max(16, a.n))
	}
	*chunk = (*chunk)[:len(*chunk)+1]
	return &(*chunk)[len(*chunk)-1]
}

func (a *arena) job() *Job                            { return grab(a, &a.jobs) }
func (a *arena) ext() *messages.NewExtendedMiningJob  { return grab(a, &a.exts) }
func (a *arena) std() *messages.NewMiningJob          { return grab(a, &a.stds) }
func (a *arena) snph() *messages.MiningSetNewPrevHash { return grab(a, &a.snphs) }

func normalizeTip(t ChainTip) ChainTip {
	t.Target = t.NetworkTarget()
	return t
}

// NewTemplate turns a job template into work on every channel and returns
// the messages: a future job (min_ntime None) when jt.Future, else a job
// active on the current tip. A group of standard channels gets one
// NewExtendedMiningJob unless Config.StandardJobs. jt must be built for the
// allocator's full extranonce size.
func (s *Session) NewTemplate(jt *JobTemplate) ([]codec.Message, error) {
	out, err := s.AppendNewTemplate(make([]codec.Message, 0, len(s.order)), jt)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AppendNewTemplate is NewTemplate appending the messages to dst, so a
// fan-out over many sessions can use one buffer.
func (s *Session) AppendNewTemplate(dst []codec.Message, jt *JobTemplate) ([]codec.Message, error) {
	if !s.fits(jt) {
		return dst, fmt.Errorf("%w: template %d has %d bytes, layout %d", ErrExtranonceMismatch, jt.ID, jt.ExtranonceSize(), s.alloc.FullSize())
	}
	var tip *ChainTip
	if jt.Future {
		s.futures = append(s.futures, jt)
		if len(s.futures) > s.cfg.MaxFutureJobs {
			s.futures = slices.Delete(s.futures, 0, 1)
		}
	} else {
		if s.tip == nil {
			return dst, ErrNoTip
		}
		tip = s.tip
		s.cur = jt
	}
	out := dst
	for _, g := range s.scopes {
		if len(g.members) == 0 {
			continue
		}
		id := g.nextID()
		if jt.Future {
			g.futures = append(g.futures, scopeJob{id: id, jt: jt})
			if len(g.futures) > s.cfg.MaxFutureJobs {
				g.futures = slices.Delete(g.futures, 0, 1)
			}
		} else {
			g.cur = scopeJob{id: id, jt: jt}
		}
		perMember := !g.group || s.cfg.StandardJobs
		for i, c := range g.members {
			j := c.newJob(id, jt, tip)
			if perMember {
				out = append(out, c.jobMessage(j, c.id))
			} else if i == 0 {
				out = append(out, c.jobMessage(j, g.id))
			}
		}
	}
	return out, nil
}

// NewPrevHash activates the future template templateID on tip for every
// channel (TDP SetNewPrevHash → Mining SetNewPrevHash) and returns one
// SetNewPrevHash per channel (per group unless Config.StandardJobs). Every
// other job becomes stale. ErrUnknownTemplate leaves the session unchanged:
// send the template with NewTemplate first.
func (s *Session) NewPrevHash(templateID uint64, tip ChainTip) ([]codec.Message, error) {
	t := normalizeTip(tip)
	out, err := s.AppendNewPrevHash(make([]codec.Message, 0, len(s.order)), templateID, &t)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AppendNewPrevHash is NewPrevHash appending the messages to dst and keeping
// tip itself rather than a copy, so many sessions can share one ChainTip and
// one buffer. tip must not be modified afterwards; a tip whose Target is
// zero is copied (with the target from NBits) instead.
func (s *Session) AppendNewPrevHash(dst []codec.Message, templateID uint64, tip *ChainTip) ([]codec.Message, error) {
	var jt *JobTemplate
	for _, f := range s.futures {
		if f.ID == templateID {
			jt = f
		}
	}
	if jt == nil {
		return dst, fmt.Errorf("%w (template %d)", ErrUnknownTemplate, templateID)
	}
	if tip.Target == ([32]byte{}) {
		t := normalizeTip(*tip)
		tip = &t
	}
	s.tip = tip
	s.cur = jt
	s.futures = s.futures[:0]
	out := dst
	// A network target easier than a channel's (or harder again after a
	// testnet minimum-difficulty block) moves that channel's target first.
	for _, c := range s.order {
		if c.retarget() {
			out = append(out, &messages.SetTarget{ChannelID: c.id, MaximumTarget: c.target})
		}
	}
	for _, g := range s.scopes {
		if len(g.members) == 0 {
			continue
		}
		id := uint32(0)
		for _, f := range g.futures {
			if f.jt == jt {
				id = f.id
			}
		}
		g.futures = g.futures[:0]
		perMember := !g.group || s.cfg.StandardJobs
		if id == 0 {
			// Members never got this template (it did not fit their layout
			// when sent): issue it now as a future job, then activate.
			id = g.nextID()
			for i, c := range g.members {
				j := c.newJob(id, jt, nil)
				if perMember {
					out = append(out, c.jobMessage(j, c.id))
				} else if i == 0 {
					out = append(out, c.jobMessage(j, g.id))
				}
			}
		}
		g.cur = scopeJob{id: id, jt: jt}
		for _, c := range g.members {
			c.activate(id, s.tip)
			if perMember {
				out = append(out, s.prevHashMessage(c.id, id, s.tip))
			}
		}
		if !perMember {
			out = append(out, s.prevHashMessage(g.id, id, s.tip))
		}
	}
	return out, nil
}

// Close closes a channel, or every member of a group id, releasing their
// extranonce prefixes. It returns the closed channel ids (none for an
// unknown id).
func (s *Session) Close(id uint32) []uint32 {
	if s.group != nil && id == s.group.id {
		var ids []uint32
		for _, c := range slices.Clone(s.group.members) {
			ids = append(ids, s.closeOne(c)...)
		}
		return ids
	}
	c := s.channels[id]
	if c == nil {
		return nil
	}
	return s.closeOne(c)
}

func (s *Session) closeOne(c *Channel) []uint32 {
	s.alloc.Release(c.en)
	delete(s.channels, c.id)
	s.order = slices.DeleteFunc(s.order, func(x *Channel) bool { return x == c })
	g := c.scope
	g.members = slices.DeleteFunc(g.members, func(x *Channel) bool { return x == c })
	if !g.group {
		s.scopes = slices.DeleteFunc(s.scopes, func(x *scope) bool { return x == g })
	}
	return []uint32{c.id}
}

// CloseAll closes every channel (connection gone).
func (s *Session) CloseAll() {
	for _, c := range slices.Clone(s.order) {
		s.closeOne(c)
	}
}

// UpdateChannel handles UpdateChannel: a new nominal hash rate restarts
// vardiff from it, and a lower maximum target is honoured. It returns a
// SetTarget when the target changed, or UpdateChannel.Error.
func (s *Session) UpdateChannel(m *messages.UpdateChannel, now time.Time) []codec.Message {
	c := s.channels[m.ChannelID]
	if c == nil {
		return []codec.Message{&messages.UpdateChannelError{ChannelID: m.ChannelID, ErrorCode: CodeInvalidChannelID}}
	}
	if !validHashRate(m.NominalHashRate) {
		return []codec.Message{&messages.UpdateChannelError{ChannelID: m.ChannelID, ErrorCode: CodeInvalidNominalHashrate}}
	}
	if m.MaximumTarget == ([32]byte{}) {
		return []codec.Message{&messages.UpdateChannelError{ChannelID: m.ChannelID, ErrorCode: CodeMaxTargetOutOfRange}}
	}
	old := c.target
	c.maxTarget = m.MaximumTarget
	c.vd.SetMax(HarderTarget(c.maxTarget, s.cfg.EasiestTarget))
	c.vd.SetHashRate(float64(m.NominalHashRate), now)
	c.setTarget(c.vd.Target())
	if c.target == old {
		return nil
	}
	return []codec.Message{&messages.SetTarget{ChannelID: c.id, MaximumTarget: c.target}}
}

// Tick runs vardiff on every channel and returns a SetTarget for each channel
// whose target changed. Call it every few seconds.
func (s *Session) Tick(now time.Time) []codec.Message {
	var out []codec.Message
	for _, c := range s.order {
		if c.vd.Update(now) {
			old := c.target
			c.setTarget(c.vd.Target())
			if c.target != old {
				out = append(out, &messages.SetTarget{ChannelID: c.id, MaximumTarget: c.target})
			}
		}
	}
	return out
}

// Reprefix gives every channel its prefix under the allocator's current
// layout (after ExtranonceAllocator.Rebase) and returns a SetExtranoncePrefix
// for each that changed. Jobs issued before keep their old prefix; send new
// jobs built for the new full size afterwards.
func (s *Session) Reprefix() []codec.Message {
	var out []codec.Message
	for _, c := range s.order {
		p, size := s.alloc.Prefix(c.en)
		if size != c.size {
			// Cannot happen: Rebase keeps the downstream size.
			continue
		}
		if string(p) != string(c.prefix) {
			c.prefix = p
			out = append(out, &messages.SetExtranoncePrefix{ChannelID: c.id, ExtranoncePrefix: p})
		}
	}
	return out
}

// merkleRoot computes the merkle root for jt with extranonce prefix ‖ ext,
// without allocating.
func (s *Session) merkleRoot(jt *JobTemplate, prefix, ext []byte) [32]byte {
	_ = s.hu.UnmarshalBinary(jt.mid) // cannot fail: produced by MarshalBinary
	s.h.Write(jt.tail)
	s.h.Write(prefix)
	s.h.Write(ext)
	s.h.Write(jt.sSuffix)
	s.sum = s.h.Sum(s.sum[:0])
	var buf [64]byte
	root := sha256.Sum256(s.sum)
	for i := range jt.MerklePath {
		copy(buf[:32], root[:])
		copy(buf[32:], jt.MerklePath[i][:])
		root = sha256.Sum256(buf[:])
		root = sha256.Sum256(root[:])
	}
	return root
}
