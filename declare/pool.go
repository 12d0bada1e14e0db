package declare

import (
	"bytes"
	"fmt"
	"time"

	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// versionMask is BIP323's general-purpose version bits, which miners may
// roll; the rest of a custom job's version must be the declared one.
const versionMask = 0x1fffffe0

// maxFutureNTime is how far ahead of now a custom job's min_ntime may be
// (consensus: two hours).
const maxFutureNTime = 2 * time.Hour

func reject(code, format string, args ...any) Verdict {
	return Verdict{Code: code, Details: fmt.Sprintf(format, args...)}
}

// ValidateCustomJob checks a SetCustomMiningJob against the job declared
// behind its token (full-template), or against the pool's coinbase rules
// (coinbase-only token): the same checks SRI's pool makes (prev hash,
// nBits, version, coinbase, merkle path) and the payout output.
func (c *Core) ValidateCustomJob(userIdentity string, m *messages.SetCustomMiningJob, now time.Time) Verdict {
	c.mu.Lock()
	t := c.tokens[string(m.MiningJobToken)]
	var tok token
	if t != nil {
		tok = *t
	}
	chain, have := c.chain, c.haveChain
	c.mu.Unlock()
	switch {
	case t == nil:
		return reject(CodeInvalidToken, "token %x is unknown to this JDS (never issued, expired, spent on a declaration, or its job was dropped after a new block)", m.MiningJobToken)
	case now.After(tok.expires):
		return reject(CodeInvalidToken, "token %x expired at %s", m.MiningJobToken, tok.expires.UTC().Format(time.RFC3339))
	case c.policy.RequireSameUser && tok.user != userIdentity:
		return reject(CodeUserMismatch, "the token was allocated to user_identifier %q, the channel belongs to %q", tok.user, userIdentity)
	case tok.job == nil && tok.fullTemplate:
		// Said whatever the JDS knows of the chain: it is about the token.
		return reject(CodeJobNotYetValidated, "token %x was allocated on a full-template connection and no job was declared with it; SetCustomMiningJob must carry DeclareMiningJob.Success's new_mining_job_token", m.MiningJobToken)
	case !have:
		return reject(CodeInternal, "this JDS does not know the chain tip yet")
	}
	if tok.job == nil {
		return c.validateCoinbaseOnly(m, chain, now)
	}
	j := tok.job
	if m.PrevHash != j.PrevHash {
		return reject(CodeStaleChainTip, "prev_hash %s is not the block the job was declared on (%s)", displayHex(m.PrevHash), displayHex(j.PrevHash))
	}
	if j.PrevHash != chain.TipHash {
		return reject(CodeStaleChainTip, "the job builds on %s; the chain tip is now %s", displayHex(j.PrevHash), displayHex(chain.TipHash))
	}
	if m.NBits != j.Bits {
		return reject(CodeInvalidNBits, "nbits %08x; the next block needs %08x", m.NBits, j.Bits)
	}
	if m.Version&^versionMask != j.Version&^versionMask {
		return reject(CodeInvalidVersion, "version %08x differs from the declared %08x outside the BIP323 bits %08x", m.Version, j.Version, uint32(versionMask))
	}
	if m.MinNTime < j.MinTime {
		return reject(CodeInvalidMinNTime, "min_ntime %d is below the next block's minimum time %d", m.MinNTime, j.MinTime)
	}
	if lim := now.Add(maxFutureNTime).Unix(); int64(m.MinNTime) > lim {
		return reject(CodeInvalidMinNTime, "min_ntime %d is more than 2 hours ahead", m.MinNTime)
	}
	cb := j.cb
	if m.CoinbaseTxVersion != cb.version {
		return reject(CodeInvalidCoinbaseTxVersion, "coinbase_tx_version %d; declared %d", m.CoinbaseTxVersion, cb.version)
	}
	if !bytes.Equal(m.CoinbasePrefix, cb.scriptPrefix) || len(cb.scriptSuffix) != 0 {
		if len(cb.scriptSuffix) != 0 {
			return reject(CodeInvalidCoinbasePrefix, "the declared scriptSig continues %d bytes after the extranonce; a pool builds scriptSig = coinbase_prefix ‖ extranonce", len(cb.scriptSuffix))
		}
		return reject(CodeInvalidCoinbasePrefix, "coinbase_prefix %x; the declared scriptSig starts %x before the extranonce", m.CoinbasePrefix, cb.scriptPrefix)
	}
	if m.CoinbaseTxInputNSequence != cb.sequence {
		return reject(CodeInvalidCoinbaseTxSequence, "coinbase_tx_input_n_sequence %08x; declared %08x", m.CoinbaseTxInputNSequence, cb.sequence)
	}
	if m.CoinbaseTxLocktime != cb.lockTime {
		return reject(CodeInvalidCoinbaseTxLocktime, "coinbase_tx_locktime %d; declared %d", m.CoinbaseTxLocktime, cb.lockTime)
	}
	if !bytes.Equal(m.CoinbaseTxOutputs, cb.outputVector) {
		outs, err := templates.ParseOutputVector(m.CoinbaseTxOutputs)
		if err != nil {
			return reject(CodeInvalidCoinbaseTxOutputs, "coinbase_tx_outputs do not parse: %v", err)
		}
		return reject(CodeInvalidCoinbaseTxOutputs, "coinbase_tx_outputs differ from the declared coinbase: got %s; declared %s", describeOutputs(outs), describeOutputs(cb.outputs))
	}
	if len(m.MerklePath) != len(j.merklePath) {
		return reject(CodeInvalidMerklePath, "merkle_path has %d nodes; the declared %d transactions give %d", len(m.MerklePath), len(j.txs), len(j.merklePath))
	}
	for i := range m.MerklePath {
		if m.MerklePath[i] != j.merklePath[i] {
			return reject(CodeInvalidMerklePath, "merkle_path node %d is %x; the declared transactions give %x", i, m.MerklePath[i], j.merklePath[i])
		}
	}
	return Verdict{OK: true}
}

// validateCoinbaseOnly checks a custom job whose transactions were never
// declared: chain fields, BIP34 height and the payout output (at least its
// share of the subsidy; the fees are not known).
func (c *Core) validateCoinbaseOnly(m *messages.SetCustomMiningJob, chain Chain, now time.Time) Verdict {
	if m.PrevHash != chain.TipHash {
		return reject(CodeStaleChainTip, "prev_hash %s is not the chain tip %s", displayHex(m.PrevHash), displayHex(chain.TipHash))
	}
	if m.NBits != chain.Bits {
		return reject(CodeInvalidNBits, "nbits %08x; the next block needs %08x", m.NBits, chain.Bits)
	}
	if m.MinNTime < chain.MinTime || int64(m.MinNTime) > now.Add(maxFutureNTime).Unix() {
		return reject(CodeInvalidMinNTime, "min_ntime %d is outside [%d, now + 2h]", m.MinNTime, chain.MinTime)
	}
	h, _, ok := templates.ParseHeightScript(m.CoinbasePrefix)
	if !ok || h != chain.Height+1 {
		return reject(CodeInvalidCoinbasePrefix, "coinbase_prefix %x does not start with the BIP34 height %d", m.CoinbasePrefix, chain.Height+1)
	}
	outs, err := templates.ParseOutputVector(m.CoinbaseTxOutputs)
	if err != nil {
		return reject(CodeInvalidCoinbaseTxOutputs, "coinbase_tx_outputs do not parse: %v", err)
	}
	i := payoutIndex(outs, c.policy.PayoutScript)
	if i < 0 {
		return reject(CodePayoutMissing, "no output pays the pool's payout script %x (outputs: %s)", c.policy.PayoutScript, describeOutputs(outs))
	}
	subsidy := templates.Subsidy(h, c.policy.HalvingInterval)
	if req := int64(c.policy.PayoutMinShare * float64(subsidy)); outs[i].Value < req {
		return reject(CodePayoutUnderpaid, "the payout output pays %d sat; at least %d required (%g × subsidy %d)", outs[i].Value, req, c.policy.PayoutMinShare, subsidy)
	}
	if total := outputsTotal(outs); outs[i].Value < int64(c.policy.PayoutMinShare*float64(total)) {
		return reject(CodePayoutUnderpaid, "the payout output pays %d of the coinbase's %d sat; at least %g of it required", outs[i].Value, total, c.policy.PayoutMinShare)
	}
	return Verdict{OK: true}
}

// FoundBlock is a block rebuilt from a declared job and a solution.
type FoundBlock struct {
	Hash     [32]byte // internal byte order
	Height   int64
	Raw      []byte
	Conn     uint64
	Swapped  bool // the PushSolution's nonce and ntime were in the 2025 order
	Declared time.Time
}

// HashString is the block hash as RPC and explorers show it.
func (b *FoundBlock) HashString() string { return displayHex(b.Hash) }

// buildBlock rebuilds a job's block for an extranonce and header fields and
// reports whether it meets the target.
func (j *Job) buildBlock(extranonce []byte, version, ntime, nonce uint32) (*FoundBlock, bool) {
	raw, txid := j.cb.coinbase(extranonce)
	h := templates.Header{Version: version, PrevHash: j.PrevHash, MerkleRoot: templates.MerkleRoot(txid, j.merklePath),
		Time: ntime, Bits: j.Bits, Nonce: nonce}
	hash := h.Hash()
	target := templates.TargetFromBits(j.Bits)
	if !templates.MeetsTarget(&hash, &target) {
		return &FoundBlock{Hash: hash}, false
	}
	return &FoundBlock{Hash: hash, Height: j.Height, Raw: templates.AssembleBlock(&h, raw, j.txs), Conn: j.Conn, Declared: j.Declared}, true
}

// plausibleTime reports whether ntime can be this job's block time now:
// not before the chain allows, not more than two hours ahead of now (the
// node's limit).
func (j *Job) plausibleTime(ntime uint32, now time.Time) bool {
	return ntime >= j.MinTime && int64(ntime) <= now.Add(maxFutureNTime).Unix()
}

// BlockFromShare rebuilds the block of a block-solving share a pool hands
// over. Errors are *BlockError.
func (c *Core) BlockFromShare(s BlockShare) (*FoundBlock, error) {
	c.mu.Lock()
	t := c.tokens[string(s.MiningJobToken)]
	var j *Job
	fullTemplate := false
	if t != nil {
		j, fullTemplate = t.job, t.fullTemplate
	}
	c.mu.Unlock()
	switch {
	case t == nil:
		return nil, &BlockError{Code: CodeInvalidToken, Details: fmt.Sprintf("token %x names no job this JDS keeps", s.MiningJobToken)}
	case j == nil && !fullTemplate:
		return nil, &BlockError{Code: CodeNoTransactions, Details: "a coinbase-only token: the JDS never saw the job's transactions and cannot rebuild its block"}
	case j == nil:
		return nil, &BlockError{Code: CodeJobNotYetValidated, Details: "an allocation token with no declared job"}
	case len(s.Extranonce) != j.cb.extranonceLen:
		return nil, &BlockError{Code: CodeBadExtranonceSize, Details: fmt.Sprintf("extranonce is %d bytes; the declared coinbase has room for %d", len(s.Extranonce), j.cb.extranonceLen)}
	}
	b, ok := j.buildBlock(s.Extranonce, s.Version, s.NTime, s.Nonce)
	if !ok {
		return nil, &BlockError{Code: CodeNotABlock, Details: fmt.Sprintf("header hash %s does not meet the target of nbits %08x", displayHex(b.Hash), j.Bits)}
	}
	return b, nil
}

// PushSolution rebuilds the block of a PushSolution from the connection's
// declared jobs, newest first. The 2025 SRI field order (ntime before
// nonce) cannot be told apart on the wire, so both orders are tried; only
// the right one meets the target.
func (c *Core) PushSolution(id uint64, m *messages.PushSolution, now time.Time) (*FoundBlock, error) {
	c.mu.Lock()
	var jobs []*Job
	if cs := c.conns[id]; cs != nil {
		jobs = append(jobs, cs.jobs...)
	}
	c.mu.Unlock()
	if len(jobs) == 0 {
		return nil, fmt.Errorf("no declared job on this connection")
	}
	tried := 0
	for i := len(jobs) - 1; i >= 0; i-- {
		j := jobs[i]
		if j.PrevHash != m.PrevHash || len(m.Extranonce) != j.cb.extranonceLen {
			continue
		}
		tried++
		// On an easy target (regtest) both orders may hash below it: an
		// order only counts when its ntime is a plausible block time.
		if j.plausibleTime(m.NTime, now) {
			if b, ok := j.buildBlock(m.Extranonce, m.Version, m.NTime, m.Nonce); ok {
				return b, nil
			}
		}
		if j.plausibleTime(m.Nonce, now) {
			if b, ok := j.buildBlock(m.Extranonce, m.Version, m.Nonce, m.NTime); ok {
				b.Swapped = true
				return b, nil
			}
		}
	}
	if tried == 0 {
		return nil, fmt.Errorf("no declared job builds on %s with a %d-byte extranonce (%d jobs kept)", displayHex(m.PrevHash), len(m.Extranonce), len(jobs))
	}
	return nil, fmt.Errorf("the solution meets the target of none of the %d matching declared jobs (both nonce/ntime orders tried)", tried)
}
