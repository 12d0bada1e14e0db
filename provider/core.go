package provider

import (
	"fmt"
	"slices"
	"time"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// tdpVersion is the only SV2 protocol version.
const tdpVersion = 2

// Setup error codes (spec §3.6, what sv2-tp and SRI send).
const (
	ErrUnsupportedProtocol = "unsupported-protocol"
	ErrProtocolVersion     = "protocol-version-mismatch"
	ErrTemplateIDNotFound  = "template-id-not-found"
	ErrStaleTemplateID     = "stale-template-id"
	ErrTxDataRateLimited   = "rate-limited"
)

type clientState uint8

const (
	awaitingSetup       clientState = iota // connected, no SetupConnection yet
	awaitingConstraints                    // SetupConnection.Success sent
	ready                                  // CoinbaseOutputConstraints received
)

// client is the per-connection state; kept small (see BenchmarkClientMemory).
type client struct {
	id    ClientID
	state clientState
	// onFast: the fast path activated this client's empty template (so the
	// node's template for that tip is sent as a non-future template).
	onFast bool
	gidx   int32 // index in group.clients
	group  *group
	// empty is the empty future template this client holds for the next
	// height (nil when none was sent).
	empty  *entry
	tokens float64
	refill int64 // unix nanoseconds of the last token refill
}

// group is the set of clients sharing one coinbase reservation: templates
// are built per group, not per client.
type group struct {
	res     templates.Reservation
	clients []*client
	// current is the template the group's clients are working on (a full
	// template, or the fast path's activated empty template).
	current  *entry
	lastSent time.Time
	lastFees int64
	// pending is a fee-improved template held back by Config.Interval.
	pending *templates.Template
}

// entry is an issued template with the prev hash, bits and timestamp of the
// SetNewPrevHash that makes (or made) it minable.
type entry struct {
	id        uint64
	t         *templates.Template
	activated bool // prev/bits/target/timestamp known
	prev      [32]byte
	bits      uint32
	target    [32]byte
	timestamp uint32
	// Messages built on first use and shared by every recipient.
	nt     [2]*messages.NewTemplate // [0] future=false, [1] future=true
	snph   *messages.SetNewPrevHash
	txData *messages.RequestTransactionDataSuccess
}

func (e *entry) newTemplate(future bool) *messages.NewTemplate {
	i := 0
	if future {
		i = 1
	}
	if e.nt[i] == nil {
		t := e.t
		e.nt[i] = &messages.NewTemplate{
			TemplateID:               e.id,
			FutureTemplate:           future,
			Version:                  t.Version,
			CoinbaseTxVersion:        t.CoinbaseVersion,
			CoinbasePrefix:           t.CoinbasePrefix,
			CoinbaseTxInputSequence:  t.CoinbaseSequence,
			CoinbaseTxValueRemaining: uint64(t.ValueRemaining),
			CoinbaseTxOutputsCount:   t.OutputCount,
			CoinbaseTxOutputs:        t.Outputs,
			CoinbaseTxLocktime:       t.CoinbaseLockTime,
			MerklePath:               t.MerklePath,
		}
	}
	return e.nt[i]
}

func (e *entry) setNewPrevHash() *messages.SetNewPrevHash {
	if e.snph == nil {
		e.snph = &messages.SetNewPrevHash{
			TemplateID:      e.id,
			PrevHash:        e.prev,
			HeaderTimestamp: e.timestamp,
			NBits:           e.bits,
			Target:          e.target,
		}
	}
	return e.snph
}

// fastTip records a tip announced by the fast path (SetNewPrevHash without
// waiting for the node) until the node's template for it arrives.
type fastTip struct {
	hash    [32]byte
	parent  [32]byte
	entries []*entry // the activated empty templates, latest last
}

func (f *fastTip) latest() *entry { return f.entries[len(f.entries)-1] }

type builtPair struct {
	t *templates.Template
	e *entry
}

// Core is the Template Provider's decision core: events in, Actions out. It
// has no network, no goroutines and no clock (time is passed in); it is not
// safe for concurrent use — the shell calls it from one goroutine.
type Core struct {
	cfg Config

	clients map[ClientID]*client
	groups  []*group // creation order, for deterministic output
	byRes   map[templates.Reservation]*group

	// Chain state. src is the latest node template; src.PrevHash == tip
	// unless fast != nil.
	src     *templates.Source
	srcFees int64
	srcFull *templates.Template // src built with no transaction dropped, once per src
	built   []builtPair         // templates of src already issued, to share ids
	haveTip bool
	tip     [32]byte
	prevTip [32]byte
	height  int64 // height of the block mined on tip
	// recent holds the timestamps of tip and its ancestors, newest first
	// (at most 11); nil when unknown.
	recent       []uint32
	fast         *fastTip
	staleAnswers int

	entries   map[uint64]*entry
	lastID    uint64
	curIDs    []uint64 // entries of tip, oldest first
	prevIDs   []uint64 // entries of prevTip, pruned at prevUntil
	prevUntil time.Time
	// empties are the not yet activated empty templates for height+1, as
	// sent to clients, latest last. There is usually one; a client that
	// joins after a newer full template was issued gets a newer one so the
	// ids it receives increase.
	empties []*entry

	mempoolDirty   bool
	lastFetch      time.Time
	minDiffFetched bool // the min-difficulty fetch for this tip was requested

	found    [16][32]byte // recently found block hashes (no double submission)
	foundPos int

	stats Stats
}

// Stats is a snapshot for metrics.
type Stats struct {
	Clients      int
	ReadyClients int
	Groups       int
	Templates    int // templates cached for RequestTransactionData/SubmitSolution
	HaveTip      bool
	TipHash      [32]byte
	TipHeight    int64
	// SourceFees is the total fee of the latest node template.
	SourceFees int64
	// SourceTxs is the transaction count of the latest node template.
	SourceTxs   int
	LastID      uint64
	TipChanges  uint64
	FastPaths   uint64
	FeeUpdates  uint64
	BlocksFound uint64
}

// New returns a core for cfg (zero fields take their defaults).
func New(cfg Config) (*Core, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Core{
		cfg:     cfg.WithDefaults(),
		clients: make(map[ClientID]*client),
		byRes:   make(map[templates.Reservation]*group),
		entries: make(map[uint64]*entry),
	}, nil
}

// Config returns the configuration in use (defaults applied).
func (c *Core) Config() Config { return c.cfg }

// ClientConnected registers a connection whose handshake completed.
func (c *Core) ClientConnected(id ClientID, now time.Time) Actions {
	var a Actions
	if _, dup := c.clients[id]; dup {
		a.log(LevelError, "client id connected twice; ignoring the second", "client", id)
		return a
	}
	if len(c.clients) >= c.cfg.MaxClients {
		a.Close = append(a.Close, Closing{Client: id, Reason: fmt.Sprintf("too many clients (max %d)", c.cfg.MaxClients)})
		return a
	}
	c.clients[id] = &client{id: id, tokens: float64(c.cfg.TxDataBurst), refill: now.UnixNano()}
	return a
}

// ClientGone forgets a connection.
func (c *Core) ClientGone(id ClientID) {
	if cl, ok := c.clients[id]; ok {
		c.leaveGroup(cl)
		delete(c.clients, id)
	}
}

// ClientMessage handles one decoded message from a client.
func (c *Core) ClientMessage(id ClientID, m codec.Message, now time.Time) Actions {
	var a Actions
	cl := c.clients[id]
	if cl == nil {
		a.log(LevelDebug, "message from unknown client ignored", "client", id, "msg", msgName(m))
		return a
	}
	if sc, ok := m.(*messages.SetupConnection); ok {
		if cl.state != awaitingSetup {
			c.closeClient(&a, cl, "SetupConnection sent twice")
			return a
		}
		c.setup(&a, cl, sc)
		return a
	}
	if cl.state == awaitingSetup {
		c.closeClient(&a, cl, msgName(m)+" before SetupConnection")
		return a
	}
	switch m := m.(type) {
	case *messages.CoinbaseOutputConstraints:
		c.constraints(&a, cl, m, now)
	case *messages.RequestTransactionData:
		if cl.state != ready {
			c.closeClient(&a, cl, "RequestTransactionData before CoinbaseOutputConstraints")
			return a
		}
		c.requestTxData(&a, cl, m, now)
	case *messages.SubmitSolution:
		if cl.state != ready {
			c.closeClient(&a, cl, "SubmitSolution before CoinbaseOutputConstraints")
			return a
		}
		c.submitSolution(&a, cl, m, now)
	default:
		c.closeClient(&a, cl, "unexpected "+msgName(m)+" from a Template Distribution client")
	}
	return a
}

func msgName(m codec.Message) string {
	if m == nil {
		return "nil message"
	}
	return m.MessageName()
}

func (c *Core) closeClient(a *Actions, cl *client, reason string) {
	a.Close = append(a.Close, Closing{Client: cl.id, Reason: reason})
	c.leaveGroup(cl)
	delete(c.clients, cl.id)
}

// setup answers SetupConnection. Flags: TDP defines none; like sv2-tp we
// ignore whatever a client requests and answer flags 0, which every client
// accepts (refusing unknown bits would break clients that set bits meant for
// other subprotocols).
func (c *Core) setup(a *Actions, cl *client, m *messages.SetupConnection) {
	fail := func(code, reason string) {
		a.send(cl.id, &messages.SetupConnectionError{ErrorCode: code})
		c.closeClient(a, cl, reason)
	}
	if m.Protocol != messages.ProtocolTemplateDistribution {
		fail(ErrUnsupportedProtocol, fmt.Sprintf("SetupConnection for protocol %d; this is a Template Provider (protocol 2)", m.Protocol))
		return
	}
	if m.MinVersion > tdpVersion || m.MaxVersion < tdpVersion {
		fail(ErrProtocolVersion, fmt.Sprintf("SetupConnection versions %d..%d exclude version 2", m.MinVersion, m.MaxVersion))
		return
	}
	if m.Flags != 0 {
		a.log(LevelDebug, "ignoring SetupConnection flags (none defined for TDP)", "client", cl.id, "flags", fmt.Sprintf("0x%08x", m.Flags))
	}
	cl.state = awaitingConstraints
	a.send(cl.id, &messages.SetupConnectionSuccess{UsedVersion: tdpVersion, Flags: 0})
	a.log(LevelInfo, "client set up", "client", cl.id, "vendor", m.Vendor, "firmware", m.Firmware, "device", m.DeviceID)
}

// constraints handles CoinbaseOutputConstraints (first or re-sent).
func (c *Core) constraints(a *Actions, cl *client, m *messages.CoinbaseOutputConstraints, now time.Time) {
	r := templates.Reservation{OutputBytes: m.CoinbaseOutputMaxAdditionalSize, SigOps: m.CoinbaseOutputMaxAdditionalSigops}
	if r.OutputBytes > MaxCoinbaseOutputSize {
		c.closeClient(a, cl, fmt.Sprintf("CoinbaseOutputConstraints size %d exceeds %d", r.OutputBytes, MaxCoinbaseOutputSize))
		return
	}
	if _, _, err := templates.Fit(nil, r); err != nil {
		c.closeClient(a, cl, "CoinbaseOutputConstraints: "+err.Error())
		return
	}
	if cl.state == ready && !c.takeToken(cl, now) {
		// Each distinct reservation may cost a template build.
		c.closeClient(a, cl, "CoinbaseOutputConstraints re-sent too often")
		return
	}
	g := c.byRes[r]
	if g == nil || g != cl.group {
		if g == nil && len(c.groups) >= c.cfg.MaxGroups {
			c.closeClient(a, cl, fmt.Sprintf("too many distinct coinbase reservations (max %d)", c.cfg.MaxGroups))
			return
		}
		c.leaveGroup(cl)
		if g == nil {
			g = &group{res: r}
			c.groups = append(c.groups, g)
			c.byRes[r] = g
		}
		cl.group = g
		cl.gidx = int32(len(g.clients))
		g.clients = append(g.clients, cl)
	}
	cl.state = ready
	if c.src == nil {
		a.log(LevelDebug, "client waits for the first node template", "client", cl.id)
		return
	}
	if g.current == nil {
		if !c.startGroup(a, g, now) {
			return
		}
	}
	c.sendCurrent(a, g, cl)
}

// startGroup gives a group created after the tip was known its first
// template; on failure its clients are closed.
func (c *Core) startGroup(a *Actions, g *group, now time.Time) bool {
	if c.fast != nil {
		g.current = c.fast.latest()
		g.lastSent, g.lastFees = now, 0
		return true
	}
	t, err := c.buildFor(g.res)
	if err != nil {
		c.failGroup(a, g, err)
		return false
	}
	g.current = c.entryFor(t)
	g.lastSent, g.lastFees, g.pending = now, t.Fees, nil
	return true
}

// sendCurrent sends one client its group's template as a future template
// with the SetNewPrevHash activating it, then the empty future template
// for the next height (none after a fast path: the node's template comes
// first).
func (c *Core) sendCurrent(a *Actions, g *group, cl *client) {
	cur := g.current
	a.send(cl.id, cur.newTemplate(true))
	a.send(cl.id, cur.setNewPrevHash())
	cl.empty, cl.onFast = nil, false
	if c.fast != nil {
		cl.onFast = true
		return
	}
	if !c.bitsKnowable(c.height + 1) {
		return
	}
	if n := len(c.empties); n == 0 || c.empties[n-1].id < cur.id {
		c.empties = append(c.empties, c.newEntry(c.emptyFor(c.height+1, c.src.Version)))
	}
	cl.empty = c.empties[len(c.empties)-1]
	a.send(cl.id, cl.empty.newTemplate(true))
}

func (c *Core) failGroup(a *Actions, g *group, err error) {
	reason := "cannot build a template for CoinbaseOutputConstraints: " + err.Error()
	a.log(LevelError, "template build failed", "reservation_bytes", g.res.OutputBytes, "reservation_sigops", g.res.SigOps, "error", err)
	for len(g.clients) > 0 {
		c.closeClient(a, g.clients[len(g.clients)-1], reason)
	}
	c.removeGroup(g)
}

func (c *Core) leaveGroup(cl *client) {
	g := cl.group
	if g == nil {
		return
	}
	last := len(g.clients) - 1
	moved := g.clients[last]
	g.clients[cl.gidx] = moved
	moved.gidx = cl.gidx
	g.clients[last] = nil
	g.clients = g.clients[:last]
	cl.group = nil
	if len(g.clients) == 0 {
		c.removeGroup(g)
	}
}

func (c *Core) removeGroup(g *group) {
	delete(c.byRes, g.res)
	for i, x := range c.groups {
		if x == g {
			c.groups = slices.Delete(c.groups, i, i+1)
			break
		}
	}
}

// buildFor builds the template of the current source for a reservation.
// Reservations that need no transaction dropped share one template.
func (c *Core) buildFor(r templates.Reservation) (*templates.Template, error) {
	kept, dropped, err := templates.Fit(c.src.Txs, r)
	if err != nil {
		return nil, err
	}
	if len(kept) == len(c.src.Txs) {
		if c.srcFull == nil {
			if c.srcFull, err = templates.BuildFitted(c.src, kept, 0); err != nil {
				return nil, err
			}
		}
		return c.srcFull, nil
	}
	return templates.BuildFitted(c.src, kept, dropped)
}

// entryFor issues (or reuses, when already issued for this source) the
// entry of a full template of the current source.
func (c *Core) entryFor(t *templates.Template) *entry {
	for _, b := range c.built {
		if b.t == t && c.entries[b.e.id] == b.e {
			return b.e
		}
	}
	target := c.src.Target
	if target == ([32]byte{}) {
		target = templates.TargetFromBits(t.Bits)
	}
	e := c.newEntry(t)
	e.activated, e.prev, e.bits, e.target, e.timestamp = true, t.PrevHash, t.Bits, target, t.Timestamp
	c.built = append(c.built, builtPair{t, e})
	c.addCurrent(e)
	return e
}

func (c *Core) newEntry(t *templates.Template) *entry {
	c.lastID++
	e := &entry{id: c.lastID, t: t}
	c.entries[e.id] = e
	return e
}

// addCurrent records an entry of the current tip and prunes the oldest
// ones beyond the cap (never a template a group still works on).
func (c *Core) addCurrent(e *entry) {
	c.curIDs = append(c.curIDs, e.id)
	limit := MaxTemplatesPerGroup * max(1, len(c.groups))
	for len(c.curIDs) > limit {
		i := 0
		for ; i < len(c.curIDs); i++ {
			if !c.live(c.curIDs[i]) {
				break
			}
		}
		if i == len(c.curIDs) {
			return
		}
		delete(c.entries, c.curIDs[i])
		c.curIDs = slices.Delete(c.curIDs, i, i+1)
	}
}

func (c *Core) live(id uint64) bool {
	if c.fast != nil {
		for _, e := range c.fast.entries {
			if e.id == id {
				return true
			}
		}
	}
	for _, g := range c.groups {
		if g.current != nil && g.current.id == id {
			return true
		}
	}
	return false
}

// Snapshot reports counters and sizes for metrics.
func (c *Core) Snapshot() Stats {
	s := c.stats
	s.Clients = len(c.clients)
	for _, g := range c.groups {
		s.ReadyClients += len(g.clients)
	}
	s.Groups = len(c.groups)
	s.Templates = len(c.entries)
	s.HaveTip = c.haveTip
	s.TipHash = c.tip
	s.TipHeight = c.height - 1
	s.SourceFees = c.srcFees
	if c.src != nil {
		s.SourceTxs = len(c.src.Txs)
	}
	s.LastID = c.lastID
	return s
}
