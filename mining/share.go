package mining

import (
	"encoding/binary"
	"time"

	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// SubmitShares.Error codes (DIGEST §6.5–6.6). The version codes are rust
// HEAD's; ntime uses "invalid-timestamp" (rust answers "invalid-share").
const (
	CodeInvalidJobID          = "invalid-job-id"
	CodeStaleShare            = "stale-share"
	CodeBadExtranonceSize     = "bad-extranonce-size"
	CodeInvalidTimestamp      = "invalid-timestamp"
	CodeInvalidVersionBits    = "invalid-non-rollable-version-bit"
	CodeVersionRollingDenied  = "version-rolling-not-allowed"
	CodeDifficultyTooLow      = "difficulty-too-low"
	CodeDuplicateShare        = "duplicate-share"
	CodeInvalidShareChannelID = CodeInvalidChannelID
)

// Status is the outcome of a share.
type Status uint8

// Share outcomes.
const (
	// Rejected: Result.Code says why.
	Rejected Status = iota
	// Accepted: the hash meets the channel target.
	Accepted
	// BlockFound: the hash meets the network target (whether or not it meets
	// the channel target). Build the block with Result.Block.
	BlockFound
)

func (s Status) String() string {
	switch s {
	case Accepted:
		return "accepted"
	case BlockFound:
		return "block"
	}
	return "rejected"
}

// Result is the outcome of validating one share.
type Result struct {
	Status Status
	// Code is the SV2 error code when Rejected.
	Code    string
	Channel *Channel
	// Job is the job the share was on (nil for invalid-channel-id and
	// invalid-job-id).
	Job *Job
	// Header is the rebuilt header and Hash its hash (internal byte order),
	// set once the share got that far (always for Accepted and BlockFound).
	Header templates.Header
	Hash   [32]byte
	// Difficulty is what an accepted share counts for (the difficulty of the
	// target it met).
	Difficulty float64
}

// OK reports Accepted or BlockFound.
func (r *Result) OK() bool { return r.Status != Rejected }

// SubmitStandard validates a SubmitSharesStandard received at now. It does
// not allocate.
func (s *Session) SubmitStandard(m *messages.SubmitSharesStandard, now time.Time) Result {
	return s.submit(m.ChannelID, m.JobID, m.Nonce, m.NTime, m.Version, nil, false, now)
}

// SubmitExtended validates a SubmitSharesExtended received at now (TLVs
// ignored). It does not allocate.
func (s *Session) SubmitExtended(m *messages.SubmitSharesExtended, now time.Time) Result {
	return s.submit(m.ChannelID, m.JobID, m.Nonce, m.NTime, m.Version, m.Extranonce, true, now)
}

func (s *Session) submit(chID, jobID, nonce, ntime, version uint32, ext []byte, extended bool, now time.Time) Result {
	c := s.channels[chID]
	if c == nil {
		return Result{Code: CodeInvalidChannelID}
	}
	r := Result{Channel: c}
	if extended != (c.kind == Extended) {
		// A standard share on an extended channel or the reverse names a
		// channel that cannot take it.
		return c.reject(r, CodeInvalidChannelID)
	}
	j := c.activeJob(jobID)
	if j == nil {
		if c.isStale(jobID) {
			return c.reject(r, CodeStaleShare)
		}
		return c.reject(r, CodeInvalidJobID)
	}
	r.Job = j
	if extended && len(ext) != j.ExtranonceSize {
		return c.reject(r, CodeBadExtranonceSize)
	}
	tip := j.Tip
	if ntime < tip.MinNTime {
		return c.reject(r, CodeInvalidTimestamp)
	}
	limit := int64(tip.MinNTime) + int64(now.Sub(tip.Since)/time.Second)
	if u := now.Unix(); u > limit {
		limit = u
	}
	if int64(ntime) > limit+int64(s.cfg.MaxNTimeAhead/time.Second) {
		return c.reject(r, CodeInvalidTimestamp)
	}
	if j.VersionRolling {
		if (version^j.Template.Version)&^s.cfg.VersionMask != 0 {
			return c.reject(r, CodeInvalidVersionBits)
		}
	} else if version != j.Template.Version {
		return c.reject(r, CodeVersionRollingDenied)
	}
	r.Header = templates.Header{Version: version, PrevHash: tip.PrevHash, Time: ntime, Bits: tip.NBits, Nonce: nonce}
	if extended {
		r.Header.MerkleRoot = c.extendedRoot(j, ext)
	} else {
		s.ensureRoot(j)
		r.Header.MerkleRoot = j.MerkleRoot
	}
	r.Hash = r.Header.Hash()
	block := templates.MeetsTarget(&r.Hash, &tip.Target)
	// Shares on a job issued before a retarget count at the easier target.
	target, diff := &c.target, c.targetDiff
	if CompareTargets(&j.Target, target) > 0 {
		target, diff = &j.Target, DifficultyFromTarget(j.Target)
	}
	if !block && !templates.MeetsTarget(&r.Hash, target) {
		return c.reject(r, CodeDifficultyTooLow)
	}
	if !c.dups.add(binary.LittleEndian.Uint64(r.Hash[:8])) {
		return c.reject(r, CodeDuplicateShare)
	}
	r.Status, r.Difficulty = Accepted, diff
	if block {
		r.Status = BlockFound
		c.stats.Blocks++
	}
	c.stats.Accepted++
	c.stats.DifficultySum += diff
	c.vd.OnShare()
	return r
}

func (c *Channel) reject(r Result, code string) Result {
	c.stats.Rejected++
	r.Status, r.Code = Rejected, code
	return r
}

// dupSet remembers share hashes (their first 8 bytes) in two generations of
// an open-addressing table: when the current one holds its window, it
// becomes the previous one and the oldest generation is forgotten. Bounded,
// and allocation-free once grown.
type dupSet struct {
	window    int
	cur, prev []uint64
	n         int
	// dirty defers the clearing of a reset to the next add, keeping a
	// new tip O(1) per channel whatever the tables' size.
	dirty bool
}

func (d *dupSet) init(window int) {
	d.window = window
}

func (d *dupSet) reset() { d.dirty = true }

func tableHas(t []uint64, k uint64) bool {
	if len(t) == 0 {
		return false
	}
	mask := uint64(len(t) - 1)
	for i := k & mask; ; i = (i + 1) & mask {
		switch t[i] {
		case k:
			return true
		case 0:
			return false
		}
	}
}

func tablePut(t []uint64, k uint64) {
	mask := uint64(len(t) - 1)
	for i := k & mask; ; i = (i + 1) & mask {
		if t[i] == 0 {
			t[i] = k
			return
		}
	}
}

// add records k and reports false when it was already there.
func (d *dupSet) add(k uint64) bool {
	if k == 0 {
		k = 1 // 0 marks an empty slot
	}
	if d.dirty {
		clear(d.cur)
		clear(d.prev)
		d.n, d.dirty = 0, false
	}
	if tableHas(d.cur, k) || tableHas(d.prev, k) {
		return false
	}
	if d.n >= d.window {
		d.cur, d.prev = d.prev, d.cur
		clear(d.cur)
		d.n = 0
	}
	// Keep the table at most half full; grow (rehash) up to 2×window slots.
	if 2*(d.n+1) > len(d.cur) {
		size := 16
		for size < 2*(d.n+1) {
			size *= 2
		}
		nt := make([]uint64, size)
		for _, v := range d.cur {
			if v != 0 {
				tablePut(nt, v)
			}
		}
		d.cur = nt
	}
	tablePut(d.cur, k)
	d.n++
	return true
}

// Error is the SubmitShares.Error for a rejected share with sequence number seq.
func (r *Result) Error(channelID, seq uint32) *messages.SubmitSharesError {
	return &messages.SubmitSharesError{ChannelID: channelID, SequenceNumber: seq, ErrorCode: r.Code}
}

// Upstream turns an accepted share (with its extranonce ext, nil on standard
// channels) into the SubmitSharesExtended a JDC or proxy sends on its
// upstream extended channel: the full extranonce minus the upstream
// channel's prefix (upstreamPrefixLen bytes) is the upstream extranonce, and
// jobID is the upstream's job id for r.Job.Template. Check first that r.Hash
// meets the upstream channel's target (MeetsTarget). Nil when r has no job.
func (r *Result) Upstream(ext []byte, upstreamPrefixLen int, channelID, seq, jobID uint32) *messages.SubmitSharesExtended {
	if r.Job == nil {
		return nil // not a share on a known job
	}
	full := r.Job.FullExtranonce(make([]byte, 0, MaxExtranonceSize), ext)
	if upstreamPrefixLen > len(full) {
		upstreamPrefixLen = len(full)
	}
	return &messages.SubmitSharesExtended{
		ChannelID:      channelID,
		SequenceNumber: seq,
		JobID:          jobID,
		Nonce:          r.Header.Nonce,
		NTime:          r.Header.Time,
		Version:        r.Header.Version,
		Extranonce:     full[upstreamPrefixLen:],
	}
}
