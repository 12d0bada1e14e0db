package jdc

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// Channel is the pool's extended channel of a pair, as opened.
type Channel struct {
	ID               uint32
	Target           [32]byte
	ExtranoncePrefix []byte
	ExtranonceSize   int
}

// TxData is a template's transactions from tp (RequestTransactionData).
type TxData struct {
	Txs    [][]byte // witness serialization, block order
	TxIDs  [][32]byte
	WTxIDs [][32]byte
	Excess []byte
}

// DeclareError is a JDS's DeclareMiningJob.Error, passed to Core.Declared.
type DeclareError struct {
	Code    string
	Details string
}

func (e *DeclareError) Error() string { return "DeclareMiningJob.Error " + e.Code }

// template is one TDP template with what jdc knows about it.
type template struct {
	msg  *messages.NewTemplate
	prev *messages.SetNewPrevHash // the tip it builds on, once known
	txs  *TxData
	// txAsked: a RequestTransactionData is in flight; txRetryAt: when to
	// ask again after tp refused or failed.
	txAsked   bool
	txRetryAt time.Time
	txRetries int
	// work maps a source (pair index or Solo) to its work id.
	work map[int]uint64
	// sent marks the work ids already sent to devices: a work id is sent
	// once (a later switch back mints a fresh id for the same coinbase).
	sent map[uint64]bool
}

// work is what a device share on a work id refers to.
type work struct {
	id     uint64
	source int
	tmpl   *template
	cb     *builtCoinbase
}

// Job pipeline stages of a pair for the current template.
type stage uint8

const (
	stageNeedToken stage = iota
	stageNeedTxData
	stageDeclaring
	stageCustom
	stageAcked
	stageRetry // waiting to redo a job the JDS or pool called stale
)

func (s stage) String() string {
	return [...]string{"need-token", "need-tx-data", "declaring", "custom-job", "acked", "retry"}[s]
}

// A pool or JDS whose node has not seen the tip jdc's tp announced yet
// answers stale-chain-tip; that is a race (jdc's own miners often find the
// block), not a broken pair: the job is redone with a fresh token a few
// times before it counts as a failure.
const (
	codeStaleChainTip = "stale-chain-tip"
	maxStaleRetries   = 5
	staleRetryDelay   = 500 * time.Millisecond
)

type job struct {
	tmpl     *template
	workID   uint64
	stage    stage
	req      uint32
	deadline time.Time
	token    []byte
	declared bool
	retries  int
	pending  []Share
}

type pair struct {
	idx    int
	poolUp bool
	jdsUp  bool
	ch     Channel
	// outputs are the pool's coinbase outputs from the last token.
	outputs    []templates.TxOutput
	rawOutputs []byte
	spare      []byte
	spareAt    time.Time
	tokenReq   uint32
	// tokenAt, declareAt and customAt are when the JDS or the pool was last
	// waited on without an answer: the oldest unanswered request, moved on
	// by any answer. A job superseded by a newer template must not restart
	// the clock, or a peer that stopped answering is never caught while
	// templates come faster than the timeout.
	tokenAt, declareAt, customAt time.Time
	// jobAt is when the last job was started (ProbeInterval).
	jobAt time.Time

	job   *job
	acked map[uint64]uint32 // work id → pool job id (current tip only)
	// sent maps the request ids of custom jobs sent on the current tip to
	// their work, so a late Success for a superseded job still maps its
	// in-flight shares (bounded by maxSentJobs).
	sent map[uint32]uint64
	seq  uint32
	// rejects counts consecutive rejected shares of acknowledged jobs.
	rejects int

	failed       bool
	everFailed   bool
	failReason   string
	failedAt     time.Time
	healthy      bool // a custom job was acknowledged since connecting
	healthySince time.Time
}

func (p *pair) connected() bool { return p.poolUp && p.jdsUp && p.outputs != nil }

// maxSentJobs bounds a pair's custom jobs remembered per tip.
const maxSentJobs = 64

// Core is jdc's decision core. It is not safe for concurrent use: the shell
// calls it from one goroutine.
type Core struct {
	cfg   Config
	pairs []*pair

	templates map[uint64]*template
	cur       *template                // the template devices mine now
	prev      *messages.SetNewPrevHash // the current tip
	works     map[uint64]*work
	nextWork  uint64
	nextReq   uint32

	active      int
	constraints Constraints
	// graceEnd ends the start grace (Config.StartGrace); set by the first
	// source decision.
	graceEnd time.Time
}

// New returns a core with the defaults applied to cfg's zero fields.
func New(cfg Config) (*Core, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Core{
		cfg:       cfg,
		templates: make(map[uint64]*template),
		works:     make(map[uint64]*work),
		active:    None,
	}
	for i := 0; i < cfg.Pairs; i++ {
		c.pairs = append(c.pairs, &pair{idx: i, acked: make(map[uint64]uint32), sent: make(map[uint32]uint64)})
	}
	if cfg.SoloScript != nil && (cfg.Mode == SoloMode || cfg.Pairs > 0) {
		c.active = Solo
	}
	c.constraints = Constraints{Size: cfg.ReserveSize, SigOps: 0}
	if cfg.SoloScript != nil {
		s, ops := outputsConstraints([]templates.TxOutput{{PkScript: cfg.SoloScript}})
		c.constraints = maxConstraints(c.constraints, Constraints{s, ops})
	}
	return c, nil
}

// Config returns the configuration in force (defaults applied).
func (c *Core) Config() Config { return c.cfg }

// Constraints is the CoinbaseOutputConstraints to announce to tp now.
func (c *Core) Constraints() Constraints { return c.constraints }

// Active is the source the devices mine for: a pair index, Solo or None.
func (c *Core) Active() int { return c.active }

// PairState is a pair's state for status and metrics.
type PairState struct {
	State  string // connecting, declaring, healthy, failed, probing
	Reason string // the last failure
	Since  time.Time
}

// States returns every pair's state, in failover order.
func (c *Core) States() []PairState {
	out := make([]PairState, len(c.pairs))
	for i, p := range c.pairs {
		s := PairState{Reason: p.failReason}
		switch {
		case p.failed && p.connected():
			s.State, s.Since = "probing", p.failedAt
		case p.failed:
			s.State, s.Since = "failed", p.failedAt
		case !p.connected():
			s.State = "connecting"
		case p.healthy:
			s.State, s.Since = "healthy", p.healthySince
		default:
			s.State = "declaring"
		}
		out[i] = s
	}
	return out
}

// StateNames lists every value PairState.State takes (for metrics).
var StateNames = []string{"connecting", "declaring", "healthy", "failed", "probing"}

func (c *Core) req() uint32 {
	c.nextReq++
	if c.nextReq == 0 {
		c.nextReq = 1
	}
	return c.nextReq
}

func (c *Core) pair(i int) *pair {
	if i < 0 || i >= len(c.pairs) {
		return nil
	}
	return c.pairs[i]
}

// ---------------------------------------------------------------- templates

// TemplateProviderReset is called when the TDP connection was re-established:
// template ids of a new tp session may repeat, so the templates are
// forgotten. Devices keep their work until the new templates arrive.
func (c *Core) TemplateProviderReset(now time.Time) Actions {
	var a Actions
	for id := range c.templates {
		delete(c.templates, id)
	}
	a.log(LevelInfo, "template provider session reset; waiting for new templates")
	return a
}

// NewTemplate handles a TDP NewTemplate.
func (c *Core) NewTemplate(now time.Time, m *messages.NewTemplate) Actions {
	var a Actions
	if _, err := scanOutputs(m); err != nil {
		// No coinbase can be built on it: keep mining what we have.
		a.log(LevelError, "template from tp refused", "template", m.TemplateID, "error", err)
		return a
	}
	if old, ok := c.templates[m.TemplateID]; ok && old != c.cur {
		delete(c.templates, m.TemplateID)
	}
	t := &template{msg: m, work: make(map[int]uint64), sent: make(map[uint64]bool)}
	c.templates[m.TemplateID] = t
	c.pruneTemplates()
	a.TxData = append(a.TxData, m.TemplateID)
	t.txAsked = true
	if m.FutureTemplate {
		// Ready work ahead of the tip: a tip change is then one SetPrevHash.
		if w := c.workFor(&a, c.active, t); w != nil {
			c.sendWork(&a, w, true)
		}
		return a
	}
	if c.prev == nil {
		a.log(LevelWarn, "non-future template before any SetNewPrevHash; waiting for a tip", "template", m.TemplateID)
		return a
	}
	t.prev = c.prev
	c.activate(now, &a, t, false)
	return a
}

// SetNewPrevHash handles a TDP SetNewPrevHash.
func (c *Core) SetNewPrevHash(now time.Time, m *messages.SetNewPrevHash) Actions {
	var a Actions
	t := c.templates[m.TemplateID]
	if t == nil {
		a.log(LevelWarn, "SetNewPrevHash names an unknown template; ignored", "template", m.TemplateID)
		return a
	}
	c.prev = m
	t.prev = m
	// Everything else built on the old tip or on a future tip that lost.
	for id, o := range c.templates {
		if o != t {
			delete(c.templates, id)
		}
	}
	for id, w := range c.works {
		if w.tmpl != t {
			delete(c.works, id)
		}
	}
	for _, p := range c.pairs {
		clear(p.acked)
		clear(p.sent)
	}
	c.activate(now, &a, t, true)
	return a
}

// TxData hands over a template's transactions (RequestTransactionData).
func (c *Core) TxData(now time.Time, templateID uint64, d *TxData) Actions {
	var a Actions
	t := c.templates[templateID]
	if t == nil {
		return a
	}
	if len(d.TxIDs) != len(d.Txs) || len(d.WTxIDs) != len(d.Txs) {
		a.log(LevelError, "transaction data with mismatched id lists; ignored", "template", templateID)
		return a
	}
	t.txs, t.txAsked = d, false
	for _, p := range c.pairs {
		if p.job != nil && p.job.tmpl == t && p.job.stage == stageNeedTxData {
			c.advance(now, &a, p)
		}
	}
	return a
}

// TxDataFailed reports that tp refused or failed RequestTransactionData for
// a template. The core asks again every txDataRetry while a declaration
// waits for it; a declaration still waiting at its deadline fails its pair
// (tp-tx-data), unless a newer template supersedes it first.
func (c *Core) TxDataFailed(now time.Time, templateID uint64, err error) Actions {
	var a Actions
	t := c.templates[templateID]
	if t == nil || t.txs != nil {
		return a
	}
	t.txAsked, t.txRetryAt = false, now.Add(txDataRetry)
	if c.waitsForTxData(t) {
		a.log(LevelWarn, "no transaction data from tp; asking again", "template", templateID, "error", err, "in", txDataRetry)
	}
	return a
}

// txDataRetry paces RequestTransactionData retries for the current
// template.
const txDataRetry = time.Second

// maxIdleTxDataRetries bounds the retries for a template no declaration
// waits for (solo, coinbase-only, or a pair that has its job).
const maxIdleTxDataRetries = 5

func (c *Core) waitsForTxData(t *template) bool {
	for _, p := range c.pairs {
		if p.job != nil && p.job.tmpl == t && p.job.stage == stageNeedTxData {
			return true
		}
	}
	return false
}

func (c *Core) pruneTemplates() {
	if len(c.templates) <= c.cfg.MaxTemplates {
		return
	}
	ids := make([]uint64, 0, len(c.templates))
	for id := range c.templates {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		if len(c.templates) <= c.cfg.MaxTemplates {
			break
		}
		t := c.templates[id]
		if t == c.cur {
			continue
		}
		delete(c.templates, id)
		for wid, w := range c.works {
			if w.tmpl == t {
				delete(c.works, wid)
			}
		}
	}
}

// activate makes t the template devices mine and starts every connected
// pair's job pipeline for it. tip: t came with a SetNewPrevHash.
func (c *Core) activate(now time.Time, a *Actions, t *template, tip bool) {
	c.cur = t
	if w := c.workFor(a, c.active, t); w != nil {
		if tip {
			if !t.sent[w.id] {
				c.sendWork(a, w, true)
			}
			a.Devices = append(a.Devices, DeviceOp{PrevHash: &PrevHash{
				WorkID: w.id, PrevHash: t.prev.PrevHash, MinNTime: t.prev.HeaderTimestamp, NBits: t.prev.NBits,
			}})
			if c.active == Solo {
				tg := t.prev.Target
				a.Devices = append(a.Devices, DeviceOp{Target: &tg})
			}
		} else {
			c.sendWork(a, w, false)
		}
	}
	for _, p := range c.pairs {
		// Standby pairs (kept warm, or failed and probed) get a job on every
		// tip, but a template update on the same tip only once per
		// ProbeInterval: a pool sees no custom job per template from a
		// connection that sends no shares.
		if p.connected() && (tip || p.idx == c.active || now.Sub(p.jobAt) >= c.cfg.ProbeInterval) {
			c.startJob(now, a, p)
		}
	}
}

// workFor returns (building it once) src's work for t, or nil when src
// cannot have work (no tip source, pair not connected, bad layout).
func (c *Core) workFor(a *Actions, src int, t *template) *work {
	if id, ok := t.work[src]; ok {
		if w := c.works[id]; w != nil {
			return w
		}
	}
	var (
		b   *builtCoinbase
		err error
	)
	switch {
	case src == Solo:
		if c.cfg.SoloScript == nil {
			return nil
		}
		b, err = buildCoinbase(t.msg, c.cfg.Tag, []templates.TxOutput{{PkScript: c.cfg.SoloScript}}, nil, c.cfg.SoloExtranonceSize)
	case src >= 0 && src < len(c.pairs) && c.pairs[src].connected():
		p := c.pairs[src]
		b, err = buildCoinbase(t.msg, c.cfg.Tag, p.outputs, p.ch.ExtranoncePrefix, p.ch.ExtranonceSize)
	default:
		return nil
	}
	if err != nil {
		a.log(LevelError, "cannot build a coinbase", "source", SourceName(src), "template", t.msg.TemplateID, "error", err)
		return nil
	}
	c.nextWork++
	w := &work{id: c.nextWork, source: src, tmpl: t, cb: b}
	c.works[w.id] = w
	t.work[src] = w.id
	return w
}

// freshWork is workFor for a work that must be sent again (a switch back to
// a source): an id already sent gets a new id for the same coinbase, and
// the pair's job and acknowledged pool job follow it.
func (c *Core) freshWork(a *Actions, src int, t *template) *work {
	w := c.workFor(a, src, t)
	if w == nil || !t.sent[w.id] {
		return w
	}
	c.nextWork++
	w2 := &work{id: c.nextWork, source: src, tmpl: t, cb: w.cb}
	c.works[w2.id] = w2
	t.work[src] = w2.id
	if p := c.pair(src); p != nil {
		if id, ok := p.acked[w.id]; ok {
			p.acked[w2.id] = id
		}
		if p.job != nil && p.job.workID == w.id {
			p.job.workID = w2.id
		}
	}
	return w2
}

func (c *Core) worksOf(j *job) *work {
	if j == nil {
		return nil
	}
	return c.works[j.workID]
}

// forgetWork drops src's work for every template (the current one included,
// which a tp session reset leaves outside the map), so the next work is built
// anew; shares on the old work ids still map while the works exist.
func (c *Core) forgetWork(src int) {
	for _, t := range c.templates {
		delete(t.work, src)
	}
	if c.cur != nil {
		delete(c.cur.work, src)
	}
}

func (c *Core) sendWork(a *Actions, w *work, future bool) {
	prefix, suffix := w.cb.deviceParts()
	w.tmpl.sent[w.id] = true
	a.Devices = append(a.Devices, DeviceOp{Work: &Work{
		ID:              w.id,
		Future:          future,
		Version:         w.tmpl.msg.Version,
		CoinbasePrefix:  prefix,
		CoinbaseSuffix:  suffix,
		ExtranonceSpace: w.cb.deviceSpace,
		MerklePath:      w.tmpl.msg.MerklePath,
	}})
}

// ------------------------------------------------------------ job pipeline

// startJob begins a pair's pipeline for the current template, abandoning
// the previous one (shares buffered for it are dropped: that work is gone).
func (c *Core) startJob(now time.Time, a *Actions, p *pair) {
	t := c.cur
	if t == nil || t.prev == nil {
		return
	}
	if p.job != nil && len(p.job.pending) > 0 {
		a.share(p.idx, "dropped", "superseded", uint32(len(p.job.pending)))
	}
	p.job = nil
	w := c.workFor(a, p.idx, t)
	if w == nil {
		// The pair's layout was checked when it connected: a coinbase that
		// cannot be built is the template's fault (logged by workFor).
		return
	}
	p.job = &job{tmpl: t, workID: w.id, stage: stageNeedToken}
	p.jobAt = now
	c.advance(now, a, p)
}

func (c *Core) requestToken(now time.Time, a *Actions, p *pair) {
	if p.tokenReq != 0 || !p.jdsUp {
		return
	}
	p.tokenReq, p.tokenAt = c.req(), now
	a.Tokens = append(a.Tokens, TokenRequest{Pair: p.idx, Req: p.tokenReq})
}

func (c *Core) advance(now time.Time, a *Actions, p *pair) {
	j := p.job
	if j == nil || j.stage >= stageDeclaring {
		return
	}
	if j.token == nil {
		if p.spare != nil && now.Sub(p.spareAt) > c.cfg.TokenMaxAge {
			// JDSes expire tokens (sv2kit's after 10 minutes): a quiet chain
			// must not turn an old spare into a rejected custom job.
			p.spare = nil
		}
		if p.spare == nil {
			c.requestToken(now, a, p)
			if j.stage != stageNeedToken || j.deadline.IsZero() {
				j.stage, j.deadline = stageNeedToken, now.Add(c.cfg.TokenTimeout)
			}
			return
		}
		j.token, p.spare = p.spare, nil
		c.requestToken(now, a, p) // keep one spare ahead
	}
	w := c.works[j.workID]
	if w == nil {
		p.job = nil
		return
	}
	if c.cfg.Mode == FullTemplate {
		if j.tmpl.txs == nil {
			// tp's data counts against the declaration's deadline: a tp that
			// keeps refusing must not hold the pair's job forever.
			j.stage, j.deadline = stageNeedTxData, now.Add(c.cfg.DeclareTimeout)
			return
		}
		prefix, suffix := w.cb.cb.Parts(true)
		j.req = c.req()
		j.stage, j.deadline = stageDeclaring, now.Add(c.cfg.DeclareTimeout)
		if p.declareAt.IsZero() {
			p.declareAt = now
		}
		a.Declares = append(a.Declares, DeclareRequest{
			Pair: p.idx, Req: j.req, Token: j.token, Version: j.tmpl.msg.Version,
			CoinbasePrefix: prefix, CoinbaseSuffix: suffix,
			WTxIDs: j.tmpl.txs.WTxIDs, Txs: j.tmpl.txs.Txs, ExcessData: j.tmpl.txs.Excess,
		})
		return
	}
	c.sendCustomJob(now, a, p)
}

func (c *Core) sendCustomJob(now time.Time, a *Actions, p *pair) {
	j := p.job
	w := c.works[j.workID]
	t := j.tmpl
	j.req = c.req()
	j.stage, j.deadline = stageCustom, now.Add(c.cfg.CustomJobTimeout)
	if p.customAt.IsZero() {
		p.customAt = now
	}
	if len(p.sent) >= maxSentJobs {
		clear(p.sent)
	}
	p.sent[j.req] = j.workID
	a.Pool = append(a.Pool, PoolSend{Pair: p.idx, Msg: &messages.SetCustomMiningJob{
		ChannelID:                p.ch.ID,
		RequestID:                j.req,
		MiningJobToken:           j.token,
		Version:                  t.msg.Version,
		PrevHash:                 t.prev.PrevHash,
		MinNTime:                 t.prev.HeaderTimestamp,
		NBits:                    t.prev.NBits,
		CoinbaseTxVersion:        t.msg.CoinbaseTxVersion,
		CoinbasePrefix:           w.cb.scriptSigPrefix,
		CoinbaseTxInputNSequence: t.msg.CoinbaseTxInputSequence,
		CoinbaseTxOutputs:        w.cb.outputVector,
		CoinbaseTxLocktime:       t.msg.CoinbaseTxLocktime,
		MerklePath:               t.msg.MerklePath,
	}})
}

// Token hands over the answer to a TokenRequest (err: the JDS failed).
func (c *Core) Token(now time.Time, pairIdx int, req uint32, m *messages.AllocateMiningJobTokenSuccess, err error) Actions {
	var a Actions
	p := c.pair(pairIdx)
	if p == nil || p.tokenReq != req || req == 0 {
		return a
	}
	p.tokenReq, p.tokenAt = 0, time.Time{}
	if err == nil && m == nil {
		err = errors.New("no token")
	}
	if err != nil {
		c.fail(now, &a, p, "jds-token: "+err.Error(), true)
		return a
	}
	// Pools keep their outputs stable: parse them only when they change
	// (the wire parser allocates a large buffer per output).
	outs, perr := p.outputs, error(nil)
	if p.outputs == nil || !bytes.Equal(p.rawOutputs, m.CoinbaseTxOutputs) {
		outs, perr = templates.ParseOutputVector(m.CoinbaseTxOutputs)
	}
	if perr != nil || len(outs) == 0 {
		if perr == nil {
			perr = errors.New("no outputs")
		}
		c.fail(now, &a, p, "bad-token-outputs: "+perr.Error(), true)
		return a
	}
	wasConnected := p.connected()
	if p.outputs != nil && !sameOutputs(p.outputs, outs) {
		// The pool changed its outputs: coinbases built with the old ones are
		// still valid for the pool, but new work must use the new ones.
		c.forgetWork(p.idx)
	}
	p.outputs = outs
	p.rawOutputs = append(p.rawOutputs[:0], m.CoinbaseTxOutputs...)
	p.spare, p.spareAt = m.MiningJobToken, now
	size, ops := outputsConstraints(outs)
	if nc := maxConstraints(c.constraints, Constraints{size, ops}); nc != c.constraints {
		c.constraints = nc
		a.Constraints = &nc
	}
	if !wasConnected && p.connected() {
		c.startJob(now, &a, p)
	} else {
		c.advance(now, &a, p)
	}
	c.reselect(now, &a, "")
	return a
}

// Declared hands over the answer to a DeclareRequest: the new token, or an
// error (a *DeclareError for DeclareMiningJob.Error, anything else when the
// JDS connection failed or timed out).
func (c *Core) Declared(now time.Time, pairIdx int, req uint32, newToken []byte, err error) Actions {
	var a Actions
	p := c.pair(pairIdx)
	if p == nil {
		return a
	}
	var de *DeclareError
	if err == nil || errors.As(err, &de) {
		p.declareAt = answered(now, p, stageDeclaring, req)
	}
	if p.job == nil || p.job.stage != stageDeclaring || p.job.req != req {
		return a
	}
	if err != nil {
		if de != nil {
			if de.Code == codeStaleChainTip && c.retryStale(now, &a, p) {
				return a
			}
			c.fail(now, &a, p, "declare-error: "+de.Code, false)
		} else {
			c.fail(now, &a, p, "jds-declare: "+err.Error(), true)
		}
		return a
	}
	p.job.token = newToken
	p.job.declared = true
	c.sendCustomJob(now, &a, p)
	return a
}

// ------------------------------------------------------------ connections

// PoolUp reports a pair's pool connection set up with its extended channel
// open.
func (c *Core) PoolUp(now time.Time, pairIdx int, ch Channel) Actions {
	var a Actions
	p := c.pair(pairIdx)
	if p == nil {
		return a
	}
	if ch.ExtranonceSize < c.cfg.MinExtranonceSpace || len(ch.ExtranoncePrefix)+ch.ExtranonceSize > MaxExtranonce {
		c.fail(now, &a, p, fmt.Sprintf("pool extranonce unusable: prefix %d + %d bytes (need %d..%d rollable, %d in all)",
			len(ch.ExtranoncePrefix), ch.ExtranonceSize, c.cfg.MinExtranonceSpace, MaxExtranonce-len(ch.ExtranoncePrefix), MaxExtranonce), true)
		return a
	}
	p.poolUp = true
	p.ch = ch
	p.ch.ExtranoncePrefix = append([]byte(nil), ch.ExtranoncePrefix...)
	p.seq, p.rejects, p.healthy = 0, 0, false
	p.customAt = time.Time{}
	clear(p.acked)
	clear(p.sent)
	c.forgetWork(p.idx)
	if p.connected() {
		c.startJob(now, &a, p)
	}
	c.reselect(now, &a, "")
	return a
}

// PoolDown reports a pair's pool connection lost (the shell reconnects).
func (c *Core) PoolDown(now time.Time, pairIdx int, reason string) Actions {
	var a Actions
	p := c.pair(pairIdx)
	if p == nil || !p.poolUp {
		return a
	}
	p.poolUp = false
	c.fail(now, &a, p, "pool-lost: "+reason, false)
	return a
}

// JDSUp reports a pair's JDS connection set up; the core asks for a token.
func (c *Core) JDSUp(now time.Time, pairIdx int) Actions {
	var a Actions
	p := c.pair(pairIdx)
	if p == nil {
		return a
	}
	p.jdsUp = true
	p.tokenReq, p.tokenAt, p.declareAt = 0, time.Time{}, time.Time{}
	c.requestToken(now, &a, p)
	return a
}

// JDSDown reports a pair's JDS connection lost (the shell reconnects).
func (c *Core) JDSDown(now time.Time, pairIdx int, reason string) Actions {
	var a Actions
	p := c.pair(pairIdx)
	if p == nil || !p.jdsUp {
		return a
	}
	p.jdsUp = false
	p.outputs, p.spare, p.tokenReq = nil, nil, 0
	c.fail(now, &a, p, "jds-lost: "+reason, false)
	return a
}

// PoolMessage handles a message from a pair's pool after channel setup.
func (c *Core) PoolMessage(now time.Time, pairIdx int, m codec.Message) Actions {
	var a Actions
	p := c.pair(pairIdx)
	if p == nil || !p.poolUp {
		return a
	}
	switch m := m.(type) {
	case *messages.SetCustomMiningJobSuccess:
		p.customAt = answered(now, p, stageCustom, m.RequestID)
		j := p.job
		if j == nil || j.stage != stageCustom || j.req != m.RequestID {
			// A job superseded by a newer template of the same tip: its
			// shares still in flight can go up with this id.
			if wid, ok := p.sent[m.RequestID]; ok && c.works[wid] != nil {
				p.acked[wid] = m.JobID
			}
			return a
		}
		j.stage, j.deadline = stageAcked, time.Time{}
		p.acked[j.workID] = m.JobID
		if !p.healthy {
			p.healthy, p.healthySince = true, now
		}
		if p.failed {
			p.failed = false
			p.healthySince = now
			a.log(LevelInfo, "pair is healthy again", "pair", p.idx, "after", p.failReason)
		}
		if n := len(j.pending); n > 0 {
			for _, s := range j.pending {
				c.submit(&a, p, m.JobID, s)
			}
			a.Shares = append(a.Shares, ShareResult{Source: p.idx, Outcome: "sent", Reason: "flushed", Count: uint32(n)})
			j.pending = nil
		}
		c.reselect(now, &a, "")
	case *messages.SetCustomMiningJobError:
		p.customAt = answered(now, p, stageCustom, m.RequestID)
		if p.job == nil || p.job.req != m.RequestID || p.job.stage != stageCustom {
			return a
		}
		if m.ErrorCode == codeStaleChainTip && c.retryStale(now, &a, p) {
			return a
		}
		c.fail(now, &a, p, "custom-job-rejected: "+m.ErrorCode, false)
	case *messages.SubmitSharesSuccess:
		p.rejects = 0
		a.share(p.idx, "accepted", "", m.NewSubmitsAcceptedCount)
	case *messages.SubmitSharesError:
		a.share(p.idx, "rejected", m.ErrorCode, 1)
		switch m.ErrorCode {
		case "stale-share", "duplicate-share", "difficulty-too-low":
			// Races, not a broken pool: a tip change, a retransmission, or a
			// SetTarget that raised the difficulty while shares were in flight.
			return a
		}
		p.rejects++
		if p.rejects >= c.cfg.ShareRejectLimit {
			c.fail(now, &a, p, "shares-rejected: "+m.ErrorCode, false)
		}
	case *messages.SetTarget:
		if m.ChannelID != p.ch.ID {
			return a
		}
		p.ch.Target = m.MaximumTarget
		if c.active == p.idx {
			tg := m.MaximumTarget
			a.Devices = append(a.Devices, DeviceOp{Target: &tg})
		}
	case *messages.SetExtranoncePrefix:
		if m.ChannelID != p.ch.ID {
			return a
		}
		if len(m.ExtranoncePrefix)+p.ch.ExtranonceSize > MaxExtranonce {
			c.fail(now, &a, p, "pool extranonce prefix too long", true)
			return a
		}
		p.ch.ExtranoncePrefix = append([]byte(nil), m.ExtranoncePrefix...)
		c.forgetWork(p.idx)
		if p.connected() {
			c.startJob(now, &a, p)
			if c.active == p.idx && c.cur != nil {
				if w := c.freshWork(&a, p.idx, c.cur); w != nil {
					c.sendWork(&a, w, false)
				}
			}
		}
	case *messages.CloseChannel:
		if m.ChannelID != p.ch.ID {
			return a
		}
		p.poolUp = false
		c.fail(now, &a, p, "channel-closed: "+m.ReasonCode, true)
	}
	return a
}

// ------------------------------------------------------------ shares

// DeviceShare handles a share from the device server.
func (c *Core) DeviceShare(now time.Time, s Share) Actions {
	var a Actions
	w := c.works[s.WorkID]
	if w == nil {
		a.share(None, "dropped", "unknown-work", 1)
		return a
	}
	if len(s.Extranonce) != w.cb.deviceSpace {
		a.share(w.source, "dropped", "bad-extranonce-size", 1)
		return a
	}
	if s.Block {
		c.block(&a, w, s)
	}
	p := c.pair(w.source)
	if p == nil {
		return a // solo: only blocks matter
	}
	if !p.poolUp {
		a.share(p.idx, "dropped", "pool-down", 1)
		return a
	}
	if id, ok := p.acked[w.id]; ok {
		c.submit(&a, p, id, s)
		a.share(p.idx, "sent", "", 1)
		return a
	}
	j := p.job
	if jw := c.worksOf(j); jw == nil || jw.cb != w.cb {
		a.share(p.idx, "dropped", "no-pool-job", 1)
		return a
	}
	if len(j.pending) >= c.cfg.MaxPendingShares {
		j.pending = append(j.pending[:0], j.pending[1:]...)
		a.share(p.idx, "dropped", "pending-full", 1)
	}
	j.pending = append(j.pending, s)
	a.share(p.idx, "buffered", "", 1)
	return a
}

func (c *Core) submit(a *Actions, p *pair, jobID uint32, s Share) {
	p.seq++
	a.Pool = append(a.Pool, PoolSend{Pair: p.idx, Msg: &messages.SubmitSharesExtended{
		ChannelID:      p.ch.ID,
		SequenceNumber: p.seq,
		JobID:          jobID,
		Nonce:          s.Nonce,
		NTime:          s.NTime,
		Version:        s.Version,
		Extranonce:     append([]byte(nil), s.Extranonce...),
	}})
}

// block builds the found block and the messages that submit it.
func (c *Core) block(a *Actions, w *work, s Share) {
	t := w.tmpl
	if t.prev == nil {
		a.log(LevelError, "block share on work without a tip; cannot rebuild", "work", w.id)
		return
	}
	ex := w.cb.fullExtranonce(s.Extranonce)
	cbWit := w.cb.cb.Bytes(ex, true)
	cbTxid := templates.DoubleSHA256(w.cb.cb.Bytes(ex, false))
	h := templates.Header{
		Version: s.Version, PrevHash: t.prev.PrevHash,
		MerkleRoot: templates.MerkleRoot(cbTxid, t.msg.MerklePath),
		Time:       s.NTime, Bits: t.prev.NBits, Nonce: s.Nonce,
	}
	fb := FoundBlock{
		Source:     w.source,
		TemplateID: t.msg.TemplateID,
		Hash:       h.Hash(),
		Solution: &messages.SubmitSolution{
			TemplateID: t.msg.TemplateID, Version: s.Version, HeaderTimestamp: s.NTime,
			HeaderNonce: s.Nonce, CoinbaseTx: cbWit,
		},
	}
	if fb.Hash != s.Hash {
		a.log(LevelWarn, "block hash differs from the device server's", "ours", DisplayHash(fb.Hash), "theirs", DisplayHash(s.Hash))
	}
	if t.txs != nil {
		fb.Raw = templates.AssembleBlock(&h, cbWit, t.txs.Txs)
	}
	if p := c.pair(w.source); p != nil && c.cfg.Mode == FullTemplate && c.worksOf(p.job) != nil && c.worksOf(p.job).cb == w.cb && p.job.declared {
		fb.Push = &messages.PushSolution{
			Extranonce: ex, PrevHash: t.prev.PrevHash, Nonce: s.Nonce, NTime: s.NTime,
			NBits: t.prev.NBits, Version: s.Version,
		}
	}
	// No log line here: the shell logs the block once it is on disk.
	a.Blocks = append(a.Blocks, fb)
	a.share(w.source, "block", "", 1)
}

// ------------------------------------------------------------ failover

// Tick checks the deadlines of every pair's pending JDS and pool request and
// returns to a higher pair that has stayed healthy long enough.
func (c *Core) Tick(now time.Time) Actions {
	var a Actions
	// The current template's data is asked for again after a failure: a
	// declaration may wait for it, and without it a found block cannot be
	// assembled for the node (tp still rebuilds it). With no declaration
	// waiting, a few tries only.
	if t := c.cur; t != nil && t.txs == nil && !t.txAsked && !t.txRetryAt.IsZero() && !now.Before(t.txRetryAt) &&
		(c.waitsForTxData(t) || t.txRetries < maxIdleTxDataRetries) {
		a.TxData = append(a.TxData, t.msg.TemplateID)
		t.txAsked = true
		t.txRetries++
	}
	for _, p := range c.pairs {
		j := p.job
		if j == nil {
			continue
		}
		deadline := j.deadline
		switch {
		case j.stage == stageNeedToken && p.tokenReq != 0:
			deadline = earliest(deadline, p.tokenAt.Add(c.cfg.TokenTimeout))
		case j.stage == stageDeclaring && !p.declareAt.IsZero():
			deadline = earliest(deadline, p.declareAt.Add(c.cfg.DeclareTimeout))
		case j.stage == stageCustom && !p.customAt.IsZero():
			deadline = earliest(deadline, p.customAt.Add(c.cfg.CustomJobTimeout))
		}
		if deadline.IsZero() || now.Before(deadline) {
			continue
		}
		switch j.stage {
		case stageRetry:
			j.stage, j.deadline = stageNeedToken, time.Time{}
			c.advance(now, &a, p)
		case stageNeedToken:
			c.fail(now, &a, p, "jds-timeout: no token", true)
		case stageNeedTxData:
			c.fail(now, &a, p, "tp-tx-data: no transaction data for the template to declare", false)
		case stageDeclaring:
			c.fail(now, &a, p, "jds-timeout: no DeclareMiningJob answer", true)
		case stageCustom:
			c.fail(now, &a, p, "pool-timeout: no SetCustomMiningJob answer", true)
		}
	}
	c.reselect(now, &a, "")
	return a
}

// answered is the new "waiting since" of a pair after the answer to req
// from its JDS or pool: now when the current job still waits for another
// answer at stage, else nothing.
func answered(now time.Time, p *pair, st stage, req uint32) time.Time {
	if p.job != nil && p.job.stage == st && p.job.req != req {
		return now
	}
	return time.Time{}
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// retryStale schedules the pair's job again after a stale-chain-tip answer;
// false when it was retried enough.
func (c *Core) retryStale(now time.Time, a *Actions, p *pair) bool {
	j := p.job
	if j == nil || j.retries >= maxStaleRetries || j.tmpl != c.cur {
		return false
	}
	j.retries++
	j.stage, j.deadline = stageRetry, now.Add(staleRetryDelay)
	j.token, j.declared = nil, false
	a.log(LevelDebug, "stale-chain-tip: redoing the job shortly", "pair", p.idx, "try", j.retries)
	return true
}

// fail marks a pair failed (a failover trigger), dropping its job, and
// switches away when it fed the devices. reset: its connections are no
// longer trusted and the shell must reconnect them.
func (c *Core) fail(now time.Time, a *Actions, p *pair, reason string, reset bool) {
	if p.job != nil && len(p.job.pending) > 0 {
		a.share(p.idx, "dropped", "pair-failed", uint32(len(p.job.pending)))
	}
	p.job = nil
	p.declareAt, p.customAt = time.Time{}, time.Time{} // tokenAt goes with tokenReq
	p.failed, p.everFailed = true, true
	p.failReason, p.failedAt = reason, now
	p.healthy, p.healthySince = false, time.Time{}
	p.rejects = 0
	lvl := LevelWarn
	if c.active == p.idx {
		lvl = LevelError
	}
	a.log(lvl, "pair failed", "pair", p.idx, "reason", reason)
	if reset {
		p.poolUp, p.jdsUp = false, false
		p.outputs, p.spare, p.tokenReq = nil, nil, 0
		clear(p.acked)
		clear(p.sent)
		a.Resets = append(a.Resets, PairReset{Pair: p.idx, Reason: reason})
	}
	if c.active == p.idx {
		c.reselect(now, a, reason)
	}
}

// eligible: the pair may feed the devices. A pair that never failed may as
// soon as it is connected; one that failed only after its custom jobs were
// acknowledged again for ReturnAfter. The active pair stays while it has
// not failed.
func (c *Core) eligible(now time.Time, p *pair) bool {
	if !p.connected() || p.failed {
		return false
	}
	if p.idx == c.active || !p.everFailed {
		return true
	}
	return p.healthy && now.Sub(p.healthySince) >= c.cfg.ReturnAfter
}

// reselect moves the devices to the best source: the first eligible pair,
// else solo, else nothing. reason is the failure that caused it ("" when
// the check is routine).
func (c *Core) reselect(now time.Time, a *Actions, reason string) {
	if c.graceEnd.IsZero() {
		// The first decision is jdc's start (the shell ticks from then on).
		c.graceEnd = now.Add(c.cfg.StartGrace)
	}
	best := None
	if c.cfg.SoloScript != nil {
		best = Solo
	}
	for _, p := range c.pairs {
		if c.eligible(now, p) {
			best = p.idx
			break
		}
	}
	if best == c.active || c.holdForHigher(now, best) {
		return
	}
	if reason == "" {
		switch {
		case c.active < 0 && best >= 0 && !c.pairs[best].everFailed:
			reason = "pair-ready"
		case best >= 0:
			reason = "return"
		default:
			reason = "no-pair-usable"
		}
	}
	from := c.active
	c.active = best
	a.Switches = append(a.Switches, Switch{From: from, To: best, Reason: reason})
	lvl := LevelWarn
	if reason == "pair-ready" || reason == "return" {
		lvl = LevelInfo
	}
	a.log(lvl, "switching work source", "from", SourceName(from), "to", SourceName(best), "reason", reason)
	if best == None {
		a.log(LevelError, "no pair usable and no solo payout configured: devices keep their last work")
		return
	}
	// New work at once: devices must never mine on a source that failed.
	if c.cur != nil && c.cur.prev != nil {
		if p := c.pair(best); p != nil && (p.job == nil || p.job.tmpl != c.cur) {
			// A standby probed less often than templates come: its job
			// for the template the devices now mine starts here.
			c.startJob(now, a, p)
		}
		if w := c.freshWork(a, best, c.cur); w != nil {
			c.sendWork(a, w, true)
			a.Devices = append(a.Devices, DeviceOp{PrevHash: &PrevHash{
				WorkID: w.id, PrevHash: c.cur.prev.PrevHash, MinNTime: c.cur.prev.HeaderTimestamp, NBits: c.cur.prev.NBits,
			}})
		}
	}
	tg := c.targetOf(best)
	a.Devices = append(a.Devices, DeviceOp{Target: &tg})
}

// holdForHigher: during the start grace, keep the devices where they are
// instead of moving them to best while a higher pair may still connect. Only
// when that costs no valid work: they mine solo, or there is no tip yet.
func (c *Core) holdForHigher(now time.Time, best int) bool {
	if c.cfg.StartGrace < 0 || !now.Before(c.graceEnd) {
		return false
	}
	noTip := c.cur == nil || c.cur.prev == nil
	if c.active != Solo && !(c.active == None && noTip) {
		return false
	}
	for _, p := range c.pairs {
		if best >= 0 && p.idx >= best {
			break
		}
		if !p.connected() && !p.everFailed {
			return true
		}
	}
	return false
}

func (c *Core) targetOf(src int) [32]byte {
	if p := c.pair(src); p != nil {
		return p.ch.Target
	}
	if c.prev != nil {
		return c.prev.Target
	}
	return [32]byte{}
}

func maxConstraints(a, b Constraints) Constraints {
	if b.Size > a.Size {
		a.Size = b.Size
	}
	if b.SigOps > a.SigOps {
		a.SigOps = b.SigOps
	}
	return a
}

func sameOutputs(a, b []templates.TxOutput) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Value != b[i].Value || string(a[i].PkScript) != string(b[i].PkScript) {
			return false
		}
	}
	return true
}
