package declare

import (
	"context"

	"github.com/sv2kit/sv2kit/sv2/messages"
)

// Verdict is the JDS's answer on a custom job a pool received
// (SetCustomMiningJob). OK means the job is the one declared behind its
// token; otherwise Code is an SRI-style error code the pool can send back
// in SetCustomMiningJob.Error (e.g. "invalid-mining-job-token",
// "stale-chain-tip", "invalid-merkle-path") and Details says which field
// and why, for the pool's log.
type Verdict struct {
	OK      bool   `json:"ok"`
	Code    string `json:"code,omitempty"`
	Details string `json:"details,omitempty"`
}

// BlockShare is a share on a custom job that meets the network target, as
// a pool sees it: the job's token (SetCustomMiningJob.mining_job_token),
// the header fields the miner rolled and the full extranonce (the pool's
// extranonce prefix for the channel followed by the downstream part from
// SubmitSharesExtended).
type BlockShare struct {
	MiningJobToken []byte `json:"mining_job_token"`
	Version        uint32 `json:"version"`
	NTime          uint32 `json:"ntime"`
	Nonce          uint32 `json:"nonce"`
	Extranonce     []byte `json:"extranonce"`
}

// BlockResult says what became of a block handed over with
// SubmitBlockShare: its hash (display byte order, as block explorers show
// it), whether the node accepted it, and the node's answer as it gave it.
// Accepted is true for "" and for a duplicate (node.IsDuplicateBlock:
// Bitcoin Core's "duplicate", btcd's "rejected: already have block …");
// any other Result is the node's reject reason.
type BlockResult struct {
	Hash     string `json:"hash"`
	Accepted bool   `json:"accepted"`
	Result   string `json:"result"`
}

// PoolAPI is what a pool needs from the JDS. The embedded *Server
// implements it in process; NewHTTPClient implements it over the HTTP/JSON
// API (docs/jds.md).
type PoolAPI interface {
	// ValidateCustomJob checks a SetCustomMiningJob the pool received on
	// a channel of userIdentity against the job declared behind its token.
	// An error means the check could not be made (JDS unreachable); a
	// rejected job is a Verdict with OK false.
	ValidateCustomJob(ctx context.Context, userIdentity string, job *messages.SetCustomMiningJob) (Verdict, error)
	// SubmitBlockShare rebuilds the block of a block-solving share on a
	// custom job, writes it to disk and submits it to the JDS's node.
	SubmitBlockShare(ctx context.Context, userIdentity string, share BlockShare) (BlockResult, error)
}
