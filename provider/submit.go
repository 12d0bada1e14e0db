package provider

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// MaxCoinbaseTxSize bounds the coinbase of a SubmitSolution (the wire
// field is B0_64K; the bound protects callers feeding the core otherwise).
const MaxCoinbaseTxSize = 1_000_000

// versionRollingMask holds the BIP320/BIP323 general-purpose version bits a
// miner may change.
const versionRollingMask = 0x1fffffe0

// submitSolution checks a solution and turns it into a FoundBlock when it
// meets the proof-of-work target. Consensus is the node's business: beyond
// proof of work we only warn (and repair the coinbase witness, which the
// txid and so the proof of work do not cover).
func (c *Core) submitSolution(a *Actions, cl *client, m *messages.SubmitSolution, now time.Time) {
	e, stale := c.lookup(m.TemplateID, now)
	if e == nil {
		why := "unknown"
		if stale {
			why = "pruned"
		}
		a.log(LevelWarn, "SubmitSolution for a template no longer known; ignored", "client", cl.id, "template_id", m.TemplateID, "template", why)
		return
	}
	if !e.activated {
		a.log(LevelWarn, "SubmitSolution for a future template no SetNewPrevHash activated; ignored", "client", cl.id, "template_id", m.TemplateID)
		return
	}
	sol, err := checkSolution(e, m)
	if err != nil {
		a.log(LevelWarn, "SubmitSolution refused", "client", cl.id, "template_id", m.TemplateID, "error", err)
		return
	}
	if !sol.meetsTarget {
		a.log(LevelWarn, "SubmitSolution does not meet the block target; not submitted", "client", cl.id, "template_id", m.TemplateID,
			"hash", DisplayHash(sol.hash), "bits", fmt.Sprintf("%08x", e.bits))
		return
	}
	for _, w := range sol.warnings {
		a.log(LevelWarn, "block solution: "+w, "client", cl.id, "template_id", m.TemplateID, "hash", DisplayHash(sol.hash))
	}
	for _, h := range c.found {
		if h == sol.hash {
			a.log(LevelInfo, "block already submitted; duplicate solution ignored", "client", cl.id, "hash", DisplayHash(sol.hash))
			return
		}
	}
	c.found[c.foundPos] = sol.hash
	c.foundPos = (c.foundPos + 1) % len(c.found)
	txs := make([][]byte, len(e.t.Txs))
	for i := range e.t.Txs {
		txs[i] = e.t.Txs[i].Data
	}
	b := FoundBlock{
		TemplateID: e.id,
		Height:     e.t.Height,
		Hash:       sol.hash,
		Raw:        templates.AssembleBlock(&sol.header, sol.coinbase, txs),
		Stale:      !c.haveTip || e.prev != c.tip,
	}
	a.Blocks = append(a.Blocks, b)
	c.stats.BlocksFound++
	a.log(LevelInfo, "block found", "hash", DisplayHash(sol.hash), "height", b.Height, "template_id", e.id, "client", cl.id,
		"txs", len(txs)+1, "stale", b.Stale, "bytes", len(b.Raw))
}

type solution struct {
	header      templates.Header
	hash        [32]byte
	coinbase    []byte // serialized as it goes into the block
	meetsTarget bool
	warnings    []string
}

// checkSolution rebuilds the header of a solution on template e.
func checkSolution(e *entry, m *messages.SubmitSolution) (*solution, error) {
	t := e.t
	if len(m.CoinbaseTx) > MaxCoinbaseTxSize {
		return nil, fmt.Errorf("coinbase of %d bytes exceeds %d", len(m.CoinbaseTx), MaxCoinbaseTxSize)
	}
	if len(m.CoinbaseTx) == 0 {
		return nil, errors.New("empty coinbase")
	}
	var tx wire.MsgTx
	r := bytes.NewReader(m.CoinbaseTx)
	if err := tx.Deserialize(r); err != nil {
		return nil, fmt.Errorf("coinbase does not parse: %w", err)
	}
	s := &solution{}
	warn := func(format string, args ...any) { s.warnings = append(s.warnings, fmt.Sprintf(format, args...)) }
	if r.Len() != 0 {
		warn("%d bytes after the coinbase transaction dropped", r.Len())
	}
	if len(tx.TxIn) != 1 || tx.TxIn[0].PreviousOutPoint.Index != math.MaxUint32 || tx.TxIn[0].PreviousOutPoint.Hash != ([32]byte{}) {
		warn("coinbase_tx is not a coinbase transaction")
	} else {
		in := tx.TxIn[0]
		if !bytes.HasPrefix(in.SignatureScript, t.CoinbasePrefix) {
			warn("coinbase scriptSig %x does not start with the template's prefix %x", in.SignatureScript, t.CoinbasePrefix)
		}
		if n := len(in.SignatureScript); n < 2 || n > templates.MaxScriptSigSize {
			warn("coinbase scriptSig is %d bytes; consensus allows 2 to %d", n, templates.MaxScriptSigSize)
		}
		if in.Sequence != t.CoinbaseSequence {
			warn("coinbase sequence %08x, template %08x", in.Sequence, t.CoinbaseSequence)
		}
		// The witness is not covered by the txid: make it what the block
		// needs (the reserved value of zeros the commitment assumes, or
		// nothing when the block has no commitment).
		if t.HasWitnessCommitment() {
			if len(in.Witness) != 1 || !bytes.Equal(in.Witness[0], witnessReservedValue) {
				warn("coinbase witness replaced by the 32-byte zero reserved value the witness commitment needs")
				in.Witness = wire.TxWitness{make([]byte, 32)}
			}
		} else if len(in.Witness) != 0 {
			warn("coinbase witness removed: the block has no witness commitment")
			in.Witness = nil
		}
	}
	if uint32(tx.Version) != t.CoinbaseVersion {
		warn("coinbase version %d, template %d", tx.Version, t.CoinbaseVersion)
	}
	if tx.LockTime != t.CoinbaseLockTime {
		warn("coinbase locktime %d, template %d", tx.LockTime, t.CoinbaseLockTime)
	}
	var total int64
	for _, o := range tx.TxOut {
		total += o.Value
	}
	if total > t.ValueRemaining || total < 0 {
		warn("coinbase pays %d sats, template allows %d", total, t.ValueRemaining)
	}
	if n := int(t.OutputCount); n > 0 {
		var tail []byte
		if len(tx.TxOut) >= n {
			outs := make([]templates.TxOutput, n)
			for i, o := range tx.TxOut[len(tx.TxOut)-n:] {
				outs[i] = templates.TxOutput{Value: o.Value, PkScript: o.PkScript}
			}
			tail = templates.SerializeOutputs(outs)
		}
		if !bytes.Equal(tail, t.Outputs) {
			warn("coinbase does not end with the template's %d required outputs", n)
		}
	}
	if (m.Version^t.Version)&^versionRollingMask != 0 {
		warn("header version %08x differs from the template's %08x outside the BIP320 bits", m.Version, t.Version)
	}
	if m.HeaderTimestamp < e.timestamp {
		warn("header timestamp %d before the SetNewPrevHash timestamp %d", m.HeaderTimestamp, e.timestamp)
	}

	var buf bytes.Buffer
	buf.Grow(tx.SerializeSize())
	if err := tx.Serialize(&buf); err != nil {
		return nil, fmt.Errorf("coinbase does not serialize: %w", err)
	}
	s.coinbase = buf.Bytes()
	s.header = templates.Header{
		Version:    m.Version,
		PrevHash:   e.prev,
		MerkleRoot: templates.MerkleRoot(tx.TxHash(), t.MerklePath),
		Time:       m.HeaderTimestamp,
		Bits:       e.bits,
		Nonce:      m.HeaderNonce,
	}
	s.hash = s.header.Hash()
	target := templates.TargetFromBits(e.bits)
	s.meetsTarget = templates.MeetsTarget(&s.hash, &target)
	return s, nil
}
