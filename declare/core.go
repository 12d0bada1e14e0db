package declare

import (
	"container/list"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/mempool"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// Chain is what the core knows of the node's chain: the tip and what the
// next block must carry.
type Chain struct {
	TipHash [32]byte // internal byte order
	Height  int64    // height of the tip
	Bits    uint32   // nBits of the next block
	MinTime uint32   // smallest timestamp the next block may have
}

// TxSource finds declared transactions by wtxid, with their fees when
// known; *mempool.Store implements it.
type TxSource interface {
	LookupWTxIDsFees(wtxids [][32]byte) (found [][]byte, fees []int64, missing []int)
}

// txidLookup is the optional lookup by txid (for 2025 JDCs that declare
// txids); *mempool.Store implements it.
type txidLookup interface {
	ByTxID(txid chainhash.Hash) ([]byte, bool)
}

// Core is the JDS's decision core: tokens, declarations, declared jobs and
// the checks the pool API makes. It does no IO and keeps no clock (callers
// pass now); the node's proposal check happens between Declare/Provide and
// ProposalDone, outside the core. It is safe for concurrent use: the heavy
// part of a declaration (parsing, hashing, assembling) runs without its
// lock.
type Core struct {
	policy    Policy
	txs       TxSource
	secret    [32]byte
	payoutVec []byte

	cache txCache

	mu        sync.Mutex
	counter   uint64
	chain     Chain
	prevTip   [32]byte
	haveChain bool
	conns     map[uint64]*connState
	tokens    map[string]*token
	jobs      *list.List // of *Job, oldest first
	jobBytes  int        // provided transaction bytes the kept jobs hold
	stats     CoreStats
}

// CoreStats are the core's counters and gauges.
type CoreStats struct {
	TokensAllocated uint64
	TokensLive      int // allocated, unused, unexpired
	JobsLive        int
	Declared        uint64
	Rejected        uint64
}

type connState struct {
	id           uint64
	fullTemplate bool
	unused       *list.List // of *token, oldest first
	used         [64]string // recently spent tokens, to say "reused"
	usedPos      int
	bucket       float64
	bucketAt     time.Time
	pending      map[uint32]*pending
	jobs         []*Job // newest last
}

type token struct {
	value        string
	conn         uint64
	user         string
	fullTemplate bool
	expires      time.Time
	job          *Job          // non-nil: a declared job's token
	elem         *list.Element // in connState.unused
}

// Job is a declared job the JDS accepted.
type Job struct {
	Token     []byte
	Conn      uint64
	User      string
	RequestID uint32
	Version   uint32
	PrevHash  [32]byte
	Height    int64
	Bits      uint32
	MinTime   uint32
	Declared  time.Time
	Expires   time.Time // for custom-job validation; blocks are rebuilt while the job is kept

	cb         *declaredCoinbase
	txs        [][]byte
	txids      [][32]byte
	merklePath [][32]byte
	elem       *list.Element
	ownBytes   int // provided transactions: copies only this job holds
}

// Txs is the number of non-coinbase transactions.
func (j *Job) Txs() int { return len(j.txs) }

// pending is a declaration between its checks and its answer.
type pending struct {
	conn     uint64
	m        *messages.DeclareMiningJob
	user     string
	chain    Chain
	now      time.Time
	cb       *declaredCoinbase
	found    [][]byte
	fees     []int64
	provided []bool
	exact    []bool // found in the mirror by its wtxid: the cache may vouch for it
	missing  []int
}

// Proposal is a declared block waiting for the node's check
// (getblocktemplate proposal); give the node's answer to ProposalDone.
type Proposal struct {
	Conn      uint64
	RequestID uint32
	Block     []byte
	Txs       int
	job       *Job
	tip       [32]byte
}

// Step is what to do after a declaration event: send Reply (an Error or
// ProvideMissingTransactions), or check Proposal with the node. Code is the
// error code of a rejection, for metrics.
type Step struct {
	Reply    *messages.DeclareMiningJobError
	Missing  *messages.ProvideMissingTransactions
	Proposal *Proposal
}

// NewCore returns a core. secret keys the token MAC: tokens are a counter
// and a MAC, so they cannot be guessed or forged.
func NewCore(p Policy, txs TxSource, secret [32]byte) (*Core, error) {
	p.Normalize()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &Core{
		policy:    p,
		txs:       txs,
		secret:    secret,
		payoutVec: templates.SerializeOutputVector([]templates.TxOutput{{Value: 0, PkScript: p.PayoutScript}}),
		conns:     make(map[uint64]*connState),
		tokens:    make(map[string]*token),
		jobs:      list.New(),
		cache:     txCache{max: DefaultTxCache},
	}, nil
}

// Policy returns the normalized policy.
func (c *Core) Policy() Policy { return c.policy }

// SetChain records a new tip. Jobs declared on blocks other than this tip
// and the one before are dropped: their blocks can no longer win.
func (c *Core) SetChain(ch Chain) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.haveChain && ch.TipHash != c.chain.TipHash {
		c.prevTip = c.chain.TipHash
	}
	c.chain, c.haveChain = ch, true
	for e := c.jobs.Front(); e != nil; {
		next := e.Next()
		j := e.Value.(*Job)
		if j.PrevHash != ch.TipHash && j.PrevHash != c.prevTip {
			c.dropJobLocked(j)
		}
		e = next
	}
}

// Chain returns the current chain state.
func (c *Core) Chain() (Chain, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.chain, c.haveChain
}

// Connect registers a connection that completed SetupConnection.
func (c *Core) Connect(id uint64, fullTemplate bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conns[id] = &connState{id: id, fullTemplate: fullTemplate, unused: list.New(),
		bucket: float64(c.policy.TokenBurst), bucketAt: now, pending: make(map[uint32]*pending)}
}

// Disconnect forgets a connection's unused tokens and pending
// declarations. Its declared jobs stay (the pool may still mine them).
func (c *Core) Disconnect(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := c.conns[id]
	if cs == nil {
		return
	}
	for e := cs.unused.Front(); e != nil; e = e.Next() {
		delete(c.tokens, e.Value.(*token).value)
	}
	delete(c.conns, id)
}

// ErrRateLimited: a connection asked for tokens faster than the policy
// allows; the shell disconnects it.
var ErrRateLimited = fmt.Errorf("AllocateMiningJobToken rate limit exceeded")

// Allocate answers AllocateMiningJobToken.
func (c *Core) Allocate(id uint64, m *messages.AllocateMiningJobToken, now time.Time) (*messages.AllocateMiningJobTokenSuccess, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := c.conns[id]
	if cs == nil {
		return nil, fmt.Errorf("connection %d not set up", id)
	}
	cs.bucket = min(float64(c.policy.TokenBurst), cs.bucket+now.Sub(cs.bucketAt).Seconds()*c.policy.TokenRate)
	cs.bucketAt = now
	if cs.bucket < 1 {
		return nil, fmt.Errorf("%w (burst %d, %.3g per second)", ErrRateLimited, c.policy.TokenBurst, c.policy.TokenRate)
	}
	cs.bucket--
	t := &token{value: string(c.mintLocked('a')), conn: id, user: m.UserIdentifier, fullTemplate: cs.fullTemplate,
		expires: now.Add(c.policy.TokenLifetime)}
	c.tokens[t.value] = t
	t.elem = cs.unused.PushBack(t)
	for cs.unused.Len() > c.policy.MaxTokensPerConn {
		old := cs.unused.Remove(cs.unused.Front()).(*token)
		delete(c.tokens, old.value)
	}
	c.stats.TokensAllocated++
	return &messages.AllocateMiningJobTokenSuccess{RequestID: m.RequestID, MiningJobToken: []byte(t.value),
		CoinbaseTxOutputs: c.payoutVec}, nil
}

// mintLocked makes a token: a kind byte, a counter and a 16-byte MAC.
func (c *Core) mintLocked(kind byte) []byte {
	c.counter++
	b := make([]byte, 9, 25)
	b[0] = kind
	binary.LittleEndian.PutUint64(b[1:], c.counter)
	mac := hmac.New(sha256.New, c.secret[:])
	mac.Write(b)
	return mac.Sum(b)[:25]
}

func declErr(req uint32, code, format string, args ...any) Step {
	return Step{Reply: &messages.DeclareMiningJobError{RequestID: req, ErrorCode: code, ErrorDetails: []byte(fmt.Sprintf(format, args...))}}
}

// Declare handles DeclareMiningJob: it answers an error, asks for missing
// transactions, or hands out the block for the node's check.
func (c *Core) Declare(id uint64, m *messages.DeclareMiningJob, now time.Time) Step {
	p, st := c.beginDeclare(id, m, now)
	if p == nil {
		return c.count(st)
	}
	if st := p.checkCoinbase(&c.policy); st.Reply != nil {
		return c.count(st)
	}
	if i, j, dup := duplicateWTxID(m.WtxidList); dup {
		return c.count(declErr(m.RequestID, CodeDuplicateTx, "wtxid %s appears at positions %d and %d of wtxid_list", displayHex(m.WtxidList[i]), i, j))
	}
	p.found, p.fees, p.missing = c.txs.LookupWTxIDsFees(m.WtxidList)
	p.exact = make([]bool, len(p.found))
	for i, raw := range p.found {
		p.exact[i] = raw != nil
	}
	if tl, ok := c.txs.(txidLookup); ok && len(p.missing) > 0 {
		// SRI's 2025 JDCs put txids in this list (DIGEST §7.2): a miss by
		// wtxid may be a hit by txid. The node's check of the block's
		// witness commitment keeps this safe.
		still := p.missing[:0]
		for _, i := range p.missing {
			if raw, ok := tl.ByTxID(chainhash.Hash(m.WtxidList[i])); ok {
				p.found[i] = raw
			} else {
				still = append(still, i)
			}
		}
		p.missing = still
	}
	if len(p.missing) > 0 {
		if len(p.missing) > c.policy.MaxMissingTxs {
			return c.count(declErr(m.RequestID, CodeTooManyMissing, "%d of %d transactions are unknown to this JDS; it asks for at most %d per declaration", len(p.missing), len(m.WtxidList), c.policy.MaxMissingTxs))
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		cs := c.conns[id]
		if cs == nil {
			return Step{}
		}
		cs.pending[m.RequestID] = p
		pos := make([]uint16, len(p.missing))
		for i, v := range p.missing {
			pos[i] = uint16(v)
		}
		return Step{Missing: &messages.ProvideMissingTransactions{RequestID: m.RequestID, UnknownTxPositionList: pos}}
	}
	return c.count(c.complete(p))
}

func (c *Core) count(st Step) Step {
	if st.Reply != nil {
		c.mu.Lock()
		c.stats.Rejected++
		c.mu.Unlock()
	}
	return st
}

// beginDeclare checks the connection, the pending bound and the token, and
// spends the token.
func (c *Core) beginDeclare(id uint64, m *messages.DeclareMiningJob, now time.Time) (*pending, Step) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := c.conns[id]
	switch {
	case cs == nil:
		return nil, declErr(m.RequestID, CodeInternal, "connection not set up")
	case !cs.fullTemplate:
		return nil, declErr(m.RequestID, CodeNotAllowed, "DeclareMiningJob needs full-template mode: set SetupConnection flag DECLARE_TX_DATA (bit 0)")
	case len(cs.pending) >= c.policy.MaxPendingPerConn:
		return nil, declErr(m.RequestID, CodeTooManyPending, "%d declarations already wait for ProvideMissingTransactions.Success on this connection", len(cs.pending))
	case cs.pending[m.RequestID] != nil:
		return nil, declErr(m.RequestID, CodeTooManyPending, "request_id %d already names a declaration waiting for its missing transactions", m.RequestID)
	case !c.haveChain:
		return nil, declErr(m.RequestID, CodeInternal, "this JDS does not know the chain tip yet (node not reachable); retry shortly")
	}
	key := string(m.MiningJobToken)
	t := c.tokens[key]
	if t == nil || t.conn != id {
		for _, u := range cs.used {
			if u != "" && u == key {
				return nil, declErr(m.RequestID, CodeInvalidToken, "token %x was already used for a declaration; each token declares one job", m.MiningJobToken)
			}
		}
		if t != nil {
			return nil, declErr(m.RequestID, CodeInvalidToken, "token %x was allocated on another connection", m.MiningJobToken)
		}
		return nil, declErr(m.RequestID, CodeInvalidToken, "token %x is unknown (never allocated here, expired, or dropped beyond %d unused tokens per connection)", m.MiningJobToken, c.policy.MaxTokensPerConn)
	}
	if t.job != nil {
		return nil, declErr(m.RequestID, CodeInvalidToken, "token %x is a declared job's token (DeclareMiningJob.Success); declare with a token from AllocateMiningJobToken", m.MiningJobToken)
	}
	// Spent now, whatever the outcome: a token declares one job.
	cs.unused.Remove(t.elem)
	delete(c.tokens, key)
	cs.used[cs.usedPos] = key
	cs.usedPos = (cs.usedPos + 1) % len(cs.used)
	if now.After(t.expires) {
		return nil, declErr(m.RequestID, CodeInvalidToken, "token %x expired at %s (lifetime %s)", m.MiningJobToken, t.expires.UTC().Format(time.RFC3339), c.policy.TokenLifetime)
	}
	return &pending{conn: id, m: m, user: t.user, chain: c.chain, now: now}, Step{}
}

// checkCoinbase checks the declared coinbase against the chain snapshot
// and the policy (the payout amount needs the fees and is checked later).
func (p *pending) checkCoinbase(pol *Policy) Step {
	m := p.m
	cb, e := parseDeclaredCoinbase(m.CoinbaseTxPrefix, m.CoinbaseTxSuffix)
	if e != nil {
		return declErr(m.RequestID, e.code, "%s", e.details)
	}
	want := p.chain.Height + 1
	switch {
	case cb.height < want:
		return declErr(m.RequestID, CodeStaleChainTip, "coinbase height %d builds on an older block: this JDS's chain tip is %s at height %d, so the next block is %d", cb.height, displayHex(p.chain.TipHash), p.chain.Height, want)
	case cb.height > want:
		return declErr(m.RequestID, CodeStaleChainTip, "coinbase height %d is ahead of this JDS's node (tip %s at height %d); the pool's node has not seen your chain tip yet", cb.height, displayHex(p.chain.TipHash), p.chain.Height)
	}
	if payoutIndex(cb.outputs, pol.PayoutScript) < 0 {
		return declErr(m.RequestID, CodePayoutMissing, "no coinbase output pays the pool's payout script %x (outputs: %s)", pol.PayoutScript, describeOutputs(cb.outputs))
	}
	p.cb = cb
	return Step{}
}

func payoutIndex(outs []templates.TxOutput, script []byte) int {
	for i, o := range outs {
		if string(o.PkScript) == string(script) {
			return i
		}
	}
	return -1
}

func outputsTotal(outs []templates.TxOutput) int64 {
	var t int64
	for _, o := range outs {
		t += o.Value
	}
	return t
}

func describeOutputs(outs []templates.TxOutput) string {
	s := ""
	for i, o := range outs {
		if i > 0 {
			s += ", "
		}
		if i == 8 {
			return s + fmt.Sprintf("… %d more", len(outs)-i)
		}
		sc := hex.EncodeToString(o.PkScript)
		if len(sc) > 80 {
			sc = sc[:80] + "…"
		}
		s += fmt.Sprintf("#%d %d sat to %s", i, o.Value, sc)
	}
	return s
}

func duplicateWTxID(list [][32]byte) (int, int, bool) {
	seen := make(map[[32]byte]int, len(list))
	for j, w := range list {
		if i, ok := seen[w]; ok {
			return i, j, true
		}
		seen[w] = j
	}
	return 0, 0, false
}

// Provide handles ProvideMissingTransactions.Success. ok is false when no
// declaration waits for that request_id (the shell logs and ignores it).
func (c *Core) Provide(id uint64, m *messages.ProvideMissingTransactionsSuccess, now time.Time) (Step, bool) {
	c.mu.Lock()
	cs := c.conns[id]
	var p *pending
	if cs != nil {
		p = cs.pending[m.RequestID]
		delete(cs.pending, m.RequestID)
	}
	tip, have := c.chain.TipHash, c.haveChain
	c.mu.Unlock()
	if p == nil {
		return Step{}, false
	}
	req := m.RequestID
	if len(m.TransactionList) != len(p.missing) {
		return c.count(declErr(req, CodeMissingTxs, "asked for %d transactions, got %d", len(p.missing), len(m.TransactionList))), true
	}
	total := 0
	for _, tx := range m.TransactionList {
		total += len(tx)
	}
	if total > c.policy.MaxMissingBytes {
		return c.count(declErr(req, CodeTooManyMissing, "provided transactions take %d bytes; the limit is %d", total, c.policy.MaxMissingBytes)), true
	}
	p.provided = make([]bool, len(p.found))
	for k, pos := range p.missing {
		raw := m.TransactionList[k]
		ti, err := mempool.ScanTx(raw, mempool.ScanOptions{WTxID: true})
		want := p.m.WtxidList[pos]
		if err != nil {
			return c.count(declErr(req, CodeInvalidTx, "transaction provided for position %d (declared wtxid %s): %v", pos, displayHex(want), err)), true
		}
		if ti.WTxID != want && ti.TxID != want { // txid: a 2025 JDC
			return c.count(declErr(req, CodeMissingTxs, "transaction provided for position %d has wtxid %s; the declaration lists %s there", pos, displayHex(ti.WTxID), displayHex(want))), true
		}
		// A copy: the message's buffer is not ours to keep.
		p.found[pos] = append([]byte(nil), raw...)
		p.provided[pos] = true
	}
	if !have || tip != p.chain.TipHash {
		return c.count(declErr(req, CodeStaleChainTip, "the chain tip moved from %s to %s while the missing transactions were fetched", displayHex(p.chain.TipHash), displayHex(tip))), true
	}
	p.now = now
	return c.count(c.complete(p)), true
}

// Cancel drops a declaration waiting for its missing transactions and
// counts it rejected; false when none waits under that request_id.
func (c *Core) Cancel(id uint64, req uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := c.conns[id]
	if cs == nil || cs.pending[req] == nil {
		return false
	}
	delete(cs.pending, req)
	c.stats.Rejected++
	return true
}

// complete runs the block-wide checks and assembles the block for the
// node's check.
func (c *Core) complete(p *pending) Step {
	m, pol, cb := p.m, &c.policy, p.cb
	req := m.RequestID
	n := len(p.found)
	txids := make([][32]byte, n)
	spent := make(map[wire.OutPoint]int, n*2)
	var weight, sigops, knownFees int64
	knownN := 0
	weight = 4*(80+int64(wire.VarIntSerializeSize(uint64(n+1)))) + cb.weight
	sigops = cb.sigops
	var dsErr *Step
	i := 0
	spend := func(op wire.OutPoint) {
		if dsErr != nil {
			return
		}
		if j, ok := spent[op]; ok {
			st := declErr(req, CodeDoubleSpend, "transaction %d (wtxid %s) spends %s:%d, which transaction %d (wtxid %s) spends too",
				i, displayHex(m.WtxidList[i]), displayHex(op.Hash), op.Index, j, displayHex(m.WtxidList[j]))
			dsErr = &st
			return
		}
		spent[op] = i
	}
	facts := c.cache.get(m.WtxidList, p.exact)
	var learned []cachedTx
	for i = 0; i < n; i++ {
		raw := p.found[i]
		var ti txFacts
		if f := facts[i]; f != nil {
			// Known from an earlier declaration: only the inputs are read.
			ti = *f
			if _, err := mempool.WalkInputs(raw, spend); err != nil {
				return declErr(req, CodeInvalidTx, "transaction %d (wtxid %s): %v", i, displayHex(m.WtxidList[i]), err)
			}
		} else {
			t, err := mempool.ScanTx(raw, mempool.ScanOptions{SigOps: true, Spend: spend})
			if err != nil {
				return declErr(req, CodeInvalidTx, "transaction %d (wtxid %s): %v", i, displayHex(m.WtxidList[i]), err)
			}
			ti = txFacts{txid: t.TxID, weight: int64(t.Weight), sigops: 4 * int64(t.SigOps)}
			if p.exact != nil && p.exact[i] && c.cache.max > 0 {
				if learned == nil {
					learned = make([]cachedTx, 0, n-i)
				}
				learned = append(learned, cachedTx{wtxid: m.WtxidList[i], txFacts: ti})
			}
		}
		if dsErr != nil {
			return *dsErr
		}
		txids[i] = ti.txid
		weight += ti.weight
		sigops += ti.sigops
		if p.fees != nil && p.fees[i] >= 0 && (p.provided == nil || !p.provided[i]) {
			knownFees += p.fees[i]
			knownN++
		}
	}
	c.cache.put(learned)
	if weight > pol.MaxBlockWeight {
		return declErr(req, CodeBlockWeight, "the block weighs %d weight units (coinbase %d, %d transactions); the limit is %d", weight, cb.weight, n, pol.MaxBlockWeight)
	}
	if sigops > pol.MaxBlockSigOpsCost {
		return declErr(req, CodeBlockSigOps, "the block's legacy sigop cost is %d; the limit is %d", sigops, pol.MaxBlockSigOpsCost)
	}
	subsidy := templates.Subsidy(cb.height, pol.HalvingInterval)
	required := int64(pol.PayoutMinShare * float64(subsidy+knownFees))
	paid := cb.outputs[payoutIndex(cb.outputs, pol.PayoutScript)].Value
	if paid < required {
		return declErr(req, CodePayoutUnderpaid, "the pool payout output pays %d sat; the pool requires at least %d (%g × (subsidy %d + fees %d of the %d transactions whose fee the JDS knows))",
			paid, required, pol.PayoutMinShare, subsidy, knownFees, knownN)
	}
	// Whatever the fees, other outputs may not take more than the
	// policy leaves them of what the coinbase pays out.
	if total := outputsTotal(cb.outputs); paid < int64(pol.PayoutMinShare*float64(total)) {
		return declErr(req, CodePayoutUnderpaid, "the pool payout output pays %d of the coinbase's %d sat; the pool requires at least %g of it",
			paid, total, pol.PayoutMinShare)
	}
	path := templates.MerklePath(txids)
	raw, cbTxid := cb.coinbase(make([]byte, cb.extranonceLen))
	h := templates.Header{Version: m.Version, PrevHash: p.chain.TipHash, MerkleRoot: templates.MerkleRoot(cbTxid, path),
		Time: max(p.chain.MinTime, uint32(p.now.Unix())), Bits: p.chain.Bits}
	job := &Job{Conn: p.conn, User: p.user, RequestID: req, Version: m.Version, PrevHash: p.chain.TipHash,
		Height: cb.height, Bits: p.chain.Bits, MinTime: p.chain.MinTime, cb: cb, txs: p.found, txids: txids, merklePath: path}
	for i, own := range p.provided {
		if own {
			job.ownBytes += len(p.found[i])
		}
	}
	return Step{Proposal: &Proposal{Conn: p.conn, RequestID: req, Block: templates.AssembleBlock(&h, raw, p.found), Txs: n, job: job, tip: p.chain.TipHash}}
}

// ProposalDone takes the node's answer to a Proposal (reason "" = valid;
// err = no answer) and gives the reply: DeclareMiningJob.Success with a new
// token, or an Error.
func (c *Core) ProposalDone(p *Proposal, reason string, err error, now time.Time) (*messages.DeclareMiningJobSuccess, *messages.DeclareMiningJobError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fail := func(code, format string, args ...any) (*messages.DeclareMiningJobSuccess, *messages.DeclareMiningJobError) {
		c.stats.Rejected++
		return nil, &messages.DeclareMiningJobError{RequestID: p.RequestID, ErrorCode: code, ErrorDetails: []byte(fmt.Sprintf(format, args...))}
	}
	switch {
	case err != nil:
		return fail(CodeInternal, "the JDS could not have its node check the block: %v", err)
	case c.chain.TipHash != p.tip:
		return fail(CodeStaleChainTip, "the chain tip moved from %s to %s while the job was checked", displayHex(p.tip), displayHex(c.chain.TipHash))
	case reason == "bad-prevblk" || reason == "inconclusive-not-best-prevblk":
		return fail(CodeStaleChainTip, "the node no longer builds on %s (%s)", displayHex(p.tip), reason)
	case reason != "":
		return fail(CodeInvalidJob, "the node's block check (getblocktemplate proposal) rejected the block: %s", reason)
	}
	cs := c.conns[p.Conn]
	if cs == nil {
		return nil, nil // gone meanwhile
	}
	j := p.job
	j.Token = c.mintLocked('j')
	j.Declared, j.Expires = now, now.Add(c.policy.TokenLifetime)
	c.tokens[string(j.Token)] = &token{value: string(j.Token), conn: p.Conn, user: j.User, fullTemplate: true, expires: j.Expires, job: j}
	j.elem = c.jobs.PushBack(j)
	c.jobBytes += j.ownBytes
	cs.jobs = append(cs.jobs, j)
	if len(cs.jobs) > c.policy.MaxJobsPerConn {
		c.dropJobLocked(cs.jobs[0])
	}
	if c.jobs.Len() > c.policy.MaxJobs {
		c.dropJobLocked(c.jobs.Front().Value.(*Job))
	}
	for c.jobBytes > c.policy.MaxJobBytes && c.jobs.Len() > 1 {
		c.dropJobLocked(c.jobs.Front().Value.(*Job))
	}
	c.stats.Declared++
	return &messages.DeclareMiningJobSuccess{RequestID: p.RequestID, NewMiningJobToken: j.Token}, nil
}

func (c *Core) dropJobLocked(j *Job) {
	if j.elem == nil {
		return
	}
	c.jobs.Remove(j.elem)
	j.elem = nil
	c.jobBytes -= j.ownBytes
	delete(c.tokens, string(j.Token))
	if cs := c.conns[j.Conn]; cs != nil {
		for i, x := range cs.jobs {
			if x == j {
				cs.jobs = append(cs.jobs[:i], cs.jobs[i+1:]...)
				break
			}
		}
	}
}

// Expired is a declaration whose missing transactions did not come in
// time, and the error to send on its connection.
type Expired struct {
	Conn  uint64
	Reply *messages.DeclareMiningJobError
}

// Sweep drops expired unused tokens and answers declarations that waited
// too long for their missing transactions. Declared jobs stay until a tip
// change or the count bounds drop them.
func (c *Core) Sweep(now time.Time) []Expired {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Expired
	for _, cs := range c.conns {
		for req, p := range cs.pending {
			if now.Sub(p.now) > c.policy.MissingTimeout {
				delete(cs.pending, req)
				c.stats.Rejected++
				out = append(out, Expired{Conn: cs.id, Reply: &messages.DeclareMiningJobError{RequestID: req, ErrorCode: CodeMissingTxs,
					ErrorDetails: []byte(fmt.Sprintf("the %d missing transactions were not provided within %s", len(p.missing), c.policy.MissingTimeout))}})
			}
		}
		for e := cs.unused.Front(); e != nil; {
			next := e.Next()
			if t := e.Value.(*token); now.After(t.expires) {
				cs.unused.Remove(e)
				delete(c.tokens, t.value)
			}
			e = next
		}
	}
	return out
}

// Stats returns the counters.
func (c *Core) Stats() CoreStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	for _, cs := range c.conns {
		s.TokensLive += cs.unused.Len()
	}
	s.JobsLive = c.jobs.Len()
	return s
}

// displayHex is a hash in the byte order RPC and explorers show.
func displayHex(h [32]byte) string { return chainhash.Hash(h).String() }
