package mining

import (
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"time"

	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// ChainTip is the prev hash jobs are mined on: from a TDP SetNewPrevHash, a
// Mining SetNewPrevHash, or a SetCustomMiningJob.
type ChainTip struct {
	PrevHash [32]byte
	// MinNTime is the lowest nTime a share may carry (TDP header_timestamp).
	MinNTime uint32
	NBits    uint32
	// Target is the network target; zero means "from NBits".
	Target [32]byte
	// Since is when the tip was received; it bounds how far share nTime may
	// have rolled.
	Since time.Time
}

// TipFromTDP converts a TDP SetNewPrevHash received at now.
func TipFromTDP(m *messages.SetNewPrevHash, now time.Time) ChainTip {
	return ChainTip{PrevHash: m.PrevHash, MinNTime: m.HeaderTimestamp, NBits: m.NBits, Target: m.Target, Since: now}
}

// NetworkTarget is Target, or the target NBits encodes when Target is zero.
func (t *ChainTip) NetworkTarget() [32]byte {
	if t.Target == ([32]byte{}) {
		return templates.TargetFromBits(t.NBits)
	}
	return t.Target
}

// CoinbaseConfig is what a role adds to a template's coinbase.
type CoinbaseConfig struct {
	// Outputs are the role's outputs, placed before the template's (TP)
	// outputs, pool payout first. Their values are used as given; see
	// PayRemaining to put the template's value into the first one.
	Outputs []templates.TxOutput
	// Tag, when not empty, is pushed after the template's coinbase prefix
	// (e.g. "/sv2kit/"), before the extranonce push.
	Tag []byte
	// ExtranonceSize is the full extranonce length (upstream prefix + rest,
	// ExtranonceAllocator.FullSize), 1–32 bytes, pushed as one item.
	ExtranonceSize int
}

// PayRemaining returns a copy of outs whose first output receives value minus
// the other outputs' values (the template's coinbase_tx_value_remaining goes
// to the payout output, DIGEST §5.3).
func PayRemaining(outs []templates.TxOutput, value uint64) ([]templates.TxOutput, error) {
	if len(outs) == 0 {
		return nil, errors.New("no payout output")
	}
	c := append([]templates.TxOutput(nil), outs...)
	var rest uint64
	for _, o := range c[1:] {
		if o.Value < 0 || rest+uint64(o.Value) < rest {
			return nil, fmt.Errorf("output value %d out of range", o.Value)
		}
		rest += uint64(o.Value)
	}
	if rest > value {
		return nil, fmt.Errorf("outputs pay %d, more than the %d available", rest, value)
	}
	c[0].Value = int64(value - rest)
	return c, nil
}

// JobTemplate is the part of a job shared by every channel: the coinbase with
// a gap for the full extranonce, the header version and the merkle path. It
// is immutable once built, so jobs on many channels point at one.
type JobTemplate struct {
	// ID names the source: the TDP template_id, or the caller's id for a
	// custom job. Future templates are activated by this id.
	ID     uint64
	Future bool
	// Version is the header version before rolling.
	Version uint32
	// Coinbase has ScriptSigPrefix ending with the push opcode of the
	// extranonce and ExtranonceSize = full extranonce length.
	Coinbase   templates.Coinbase
	MerklePath [][32]byte
	// ValueRemaining is the template's coinbase_tx_value_remaining (0 for
	// custom jobs).
	ValueRemaining uint64

	prefix, suffix     []byte // witness form when the block needs it
	sPrefix, sSuffix   []byte // BIP141-stripped: the txid form
	mid                []byte // sha256 state after sPrefix[:len(sPrefix)&^63]
	tail               []byte // sPrefix[len(sPrefix)&^63:]
	customCoinbaseOuts []byte // CompactSize-prefixed outputs (SetCustomMiningJob form)
}

// NewJobTemplate builds a job template from a TDP NewTemplate and what the
// role adds: scriptSig = template prefix ‖ push(tag) ‖ OP_PUSHBYTES_N ‖
// extranonce(N); outputs = cc.Outputs ‖ template outputs (TP outputs last,
// DIGEST §6.4). The coinbase carries the BIP141 witness when the template's
// outputs hold a witness commitment.
func NewJobTemplate(nt *messages.NewTemplate, cc CoinbaseConfig) (*JobTemplate, error) {
	if cc.ExtranonceSize < 1 || cc.ExtranonceSize > MaxExtranonceSize {
		return nil, fmt.Errorf("job template %d: extranonce size %d not in 1..%d", nt.TemplateID, cc.ExtranonceSize, MaxExtranonceSize)
	}
	tpOuts, err := templates.ParseOutputs(nt.CoinbaseTxOutputs, int(nt.CoinbaseTxOutputsCount))
	if err != nil {
		return nil, fmt.Errorf("job template %d: template outputs: %w", nt.TemplateID, err)
	}
	var sum uint64
	for _, o := range cc.Outputs {
		if o.Value < 0 || sum+uint64(o.Value) < sum {
			return nil, fmt.Errorf("job template %d: output value %d out of range", nt.TemplateID, o.Value)
		}
		sum += uint64(o.Value)
	}
	if sum > nt.CoinbaseTxValueRemaining {
		return nil, fmt.Errorf("job template %d: outputs pay %d sat, template has %d", nt.TemplateID, sum, nt.CoinbaseTxValueRemaining)
	}
	all := append(append([]templates.TxOutput(nil), cc.Outputs...), tpOuts...)
	script := append([]byte(nil), nt.CoinbasePrefix...)
	if len(cc.Tag) > 0 {
		if len(cc.Tag) > 75 {
			return nil, fmt.Errorf("job template %d: tag of %d bytes is longer than 75", nt.TemplateID, len(cc.Tag))
		}
		script = append(script, byte(len(cc.Tag)))
		script = append(script, cc.Tag...)
	}
	script = append(script, byte(cc.ExtranonceSize)) // OP_PUSHBYTES_N
	jt := &JobTemplate{
		ID:      nt.TemplateID,
		Future:  nt.FutureTemplate,
		Version: nt.Version,
		Coinbase: templates.Coinbase{
			Version:         nt.CoinbaseTxVersion,
			ScriptSigPrefix: script,
			ExtranonceSize:  cc.ExtranonceSize,
			Sequence:        nt.CoinbaseTxInputSequence,
			Outputs:         templates.SerializeOutputs(all),
			OutputCount:     len(all),
			LockTime:        nt.CoinbaseTxLocktime,
			Witness:         hasCommitment(all),
		},
		MerklePath:     append([][32]byte(nil), nt.MerklePath...),
		ValueRemaining: nt.CoinbaseTxValueRemaining,
	}
	jt.customCoinbaseOuts = templates.SerializeOutputVector(all)
	if err := jt.init(); err != nil {
		return nil, fmt.Errorf("job template %d: %w", nt.TemplateID, err)
	}
	return jt, nil
}

// JobTemplateFromCustomJob builds the job template a pool derives from a
// SetCustomMiningJob (DIGEST §6.3): scriptSig = coinbase_prefix ‖ the
// channel's extranonce prefix ‖ extranonce, so coinbase_prefix must already
// hold the push opcode; extranonceSize is the channel's full extranonce
// length (prefix + extranonce_size). id is any caller-chosen id.
func JobTemplateFromCustomJob(m *messages.SetCustomMiningJob, extranonceSize int, id uint64) (*JobTemplate, error) {
	if extranonceSize < 1 || extranonceSize > MaxExtranonceSize {
		return nil, fmt.Errorf("custom job: extranonce size %d not in 1..%d", extranonceSize, MaxExtranonceSize)
	}
	outs, err := templates.ParseOutputVector(m.CoinbaseTxOutputs)
	if err != nil {
		return nil, fmt.Errorf("custom job: %w", err)
	}
	jt := &JobTemplate{
		ID:      id,
		Version: m.Version,
		Coinbase: templates.Coinbase{
			Version:         m.CoinbaseTxVersion,
			ScriptSigPrefix: append([]byte(nil), m.CoinbasePrefix...),
			ExtranonceSize:  extranonceSize,
			Sequence:        m.CoinbaseTxInputNSequence,
			Outputs:         templates.SerializeOutputs(outs),
			OutputCount:     len(outs),
			LockTime:        m.CoinbaseTxLocktime,
			Witness:         hasCommitment(outs),
		},
		MerklePath:         append([][32]byte(nil), m.MerklePath...),
		customCoinbaseOuts: append([]byte(nil), m.CoinbaseTxOutputs...),
	}
	if err := jt.init(); err != nil {
		return nil, fmt.Errorf("custom job: %w", err)
	}
	return jt, nil
}

func hasCommitment(outs []templates.TxOutput) bool {
	for _, o := range outs {
		if templates.IsWitnessCommitment(o.PkScript) {
			return true
		}
	}
	return false
}

// init validates the coinbase and precomputes both serializations and the
// sha256 midstate of the stripped prefix's whole 64-byte blocks.
func (jt *JobTemplate) init() error {
	if err := jt.Coinbase.Validate(); err != nil {
		return err
	}
	jt.prefix, jt.suffix = jt.Coinbase.Parts(true)
	jt.sPrefix, jt.sSuffix = jt.Coinbase.Parts(false)
	n := len(jt.sPrefix) &^ 63
	h := sha256.New()
	h.Write(jt.sPrefix[:n])
	mid, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return fmt.Errorf("sha256 midstate: %w", err)
	}
	jt.mid = mid
	jt.tail = jt.sPrefix[n:]
	return nil
}

// Witness reports whether the coinbase carries BIP141 witness data (the block
// has a witness commitment).
func (jt *JobTemplate) Witness() bool { return jt.Coinbase.Witness }

// ExtranonceSize is the full extranonce length of this template's coinbase.
func (jt *JobTemplate) ExtranonceSize() int { return jt.Coinbase.ExtranonceSize }

// CoinbaseParts returns the serialized coinbase before and after the full
// extranonce: the witness form (DeclareMiningJob, block) when witness is true,
// the BIP141-stripped txid form (NewExtendedMiningJob) when false. The slices
// are shared: do not modify.
func (jt *JobTemplate) CoinbaseParts(witness bool) (prefix, suffix []byte) {
	if witness {
		return jt.prefix, jt.suffix
	}
	return jt.sPrefix, jt.sSuffix
}

// CoinbaseTx serializes the whole coinbase with a full extranonce.
func (jt *JobTemplate) CoinbaseTx(fullExtranonce []byte, witness bool) []byte {
	p, s := jt.CoinbaseParts(witness)
	out := make([]byte, 0, len(p)+len(fullExtranonce)+len(s))
	out = append(append(append(out, p...), fullExtranonce...), s...)
	return out
}

// MerkleRoot computes the header merkle root for a full extranonce.
func (jt *JobTemplate) MerkleRoot(fullExtranonce []byte) [32]byte {
	txid := templates.DoubleSHA256(jt.CoinbaseTx(fullExtranonce, false))
	return templates.MerkleRoot(txid, jt.MerklePath)
}

// CoinbaseOutputs returns the CompactSize-prefixed output vector
// (SetCustomMiningJob.coinbase_tx_outputs form). Shared: do not modify.
func (jt *JobTemplate) CoinbaseOutputs() []byte { return jt.customCoinbaseOuts }

// SetCustomMiningJob builds the custom job a JDC sends its pool for this
// template on tip (DIGEST §6.4, rust JobFactory::new_custom_job):
// coinbase_prefix is the scriptSig up to the extranonce (push opcode
// included), outputs the CompactSize-prefixed vector. The message shares the
// template's slices: do not modify them.
func (jt *JobTemplate) SetCustomMiningJob(channelID, requestID uint32, token []byte, tip *ChainTip) *messages.SetCustomMiningJob {
	return &messages.SetCustomMiningJob{
		ChannelID:                channelID,
		RequestID:                requestID,
		MiningJobToken:           token,
		Version:                  jt.Version,
		PrevHash:                 tip.PrevHash,
		MinNTime:                 tip.MinNTime,
		NBits:                    tip.NBits,
		CoinbaseTxVersion:        jt.Coinbase.Version,
		CoinbasePrefix:           jt.Coinbase.ScriptSigPrefix,
		CoinbaseTxInputNSequence: jt.Coinbase.Sequence,
		CoinbaseTxOutputs:        jt.customCoinbaseOuts,
		CoinbaseTxLocktime:       jt.Coinbase.LockTime,
		MerklePath:               jt.MerklePath,
	}
}

// Job is one job on one channel, as the device knows it.
type Job struct {
	// ID is the job_id on the channel (strictly increasing per channel or group).
	ID        uint32
	ChannelID uint32
	Template  *JobTemplate
	// Tip is nil while the job is a future job.
	Tip *ChainTip
	// Target is the channel target in force when the job was issued.
	Target [32]byte
	// VersionRolling is the job's version_rolling_allowed (always true on
	// standard channels).
	VersionRolling bool
	// ExtranoncePrefix is the channel's prefix when the job was issued; shares
	// on this job use it even after a SetExtranoncePrefix.
	ExtranoncePrefix []byte
	ExtranonceSize   int
	// MerkleRoot is the header merkle root of a standard channel's job
	// (prefix = whole extranonce). A job sent to a group as one extended job
	// gets it when the first share arrives.
	MerkleRoot [32]byte
	// Custom marks a job from SetCustomMiningJob.
	Custom bool

	rootPending bool
}

// Future reports whether the job waits for a SetNewPrevHash.
func (j *Job) Future() bool { return j.Tip == nil }

// FullExtranonce appends the job's extranonce prefix and ext (the share's
// rollable part) to dst: the bytes between the coinbase prefix and suffix.
func (j *Job) FullExtranonce(dst, ext []byte) []byte {
	return append(append(dst, j.ExtranoncePrefix...), ext...)
}
