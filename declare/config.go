package declare

import (
	"fmt"
	"math"
	"time"

	"github.com/sv2kit/sv2kit/internal/config"
	"github.com/sv2kit/sv2kit/templates"
)

// Defaults for zero Policy fields.
const (
	DefaultTokenLifetime      = 10 * time.Minute
	DefaultMaxTokensPerConn   = 16
	DefaultTokenBurst         = 20
	DefaultTokenRate          = 5.0 // tokens per second, refilled
	DefaultMaxJobsPerConn     = 8
	DefaultMaxJobs            = 4096
	DefaultMaxJobBytes        = 256 << 20
	DefaultMaxPendingPerConn  = 2
	DefaultMaxMissingTxs      = 65535
	DefaultMaxMissingBytes    = 4_000_000
	DefaultPayoutMinShare     = 1.0
	DefaultHalvingInterval    = 210_000
	RegtestHalvingInterval    = 150
	DefaultMaxBlockWeight     = templates.MaxBlockWeight
	DefaultMaxBlockSigOpsCost = templates.MaxBlockSigOpsCost
	DefaultMissingTimeout     = 60 * time.Second
)

// Policy is what the JDS enforces on tokens and declared jobs. Zero fields
// take the defaults above (Normalize).
type Policy struct {
	// PayoutScript is the pool's payout output script: the first output of
	// every AllocateMiningJobToken.Success, and the output a declared
	// coinbase must fund.
	PayoutScript []byte
	// PayoutMinShare is the share of the block reward (subsidy plus the
	// fees of the declared transactions the mirror knows the fee of) the
	// payout output must receive, in (0, 1]. Default 1: all of it.
	PayoutMinShare float64
	// HalvingInterval is the subsidy halving interval of the chain
	// (210,000; 150 on regtest).
	HalvingInterval int64

	// AllowFullTemplate and AllowCoinbaseOnly say which JDP modes a
	// client may set up (full-template: SetupConnection flag
	// DECLARE_TX_DATA). At least one must be true.
	AllowFullTemplate bool
	AllowCoinbaseOnly bool

	// TokenLifetime bounds how long an allocated token may wait for its
	// declaration (or, coinbase-only, be used for custom jobs), and how
	// long a declared job's token stays valid for the pool.
	TokenLifetime time.Duration
	// MaxTokensPerConn bounds the unused tokens a connection holds; a new
	// allocation beyond it drops the oldest.
	MaxTokensPerConn int
	// TokenBurst and TokenRate rate-limit AllocateMiningJobToken per
	// connection (token bucket: TokenBurst at once, TokenRate per second
	// after that). A client over the limit is disconnected.
	TokenBurst int
	TokenRate  float64

	// MaxJobsPerConn bounds the declared jobs kept per connection (the
	// newest stay); MaxJobs bounds them over all connections.
	MaxJobsPerConn int
	MaxJobs        int
	// MaxJobBytes bounds the bytes of transactions kept jobs hold beyond
	// the mempool mirror: those JDCs provided with
	// ProvideMissingTransactions.Success, a copy per job. Beyond it the
	// oldest jobs are dropped (the newest is always kept).
	MaxJobBytes int
	// MaxPendingPerConn bounds the declarations of a connection that wait
	// for ProvideMissingTransactions.Success.
	MaxPendingPerConn int
	// MaxMissingTxs and MaxMissingBytes bound one ProvideMissingTransactions
	// round: how many transactions it asks for and how many bytes the
	// answer may carry.
	MaxMissingTxs   int
	MaxMissingBytes int
	// MissingTimeout bounds the wait for ProvideMissingTransactions.Success;
	// a declaration still waiting after it is answered missing-txs.
	MissingTimeout time.Duration

	// MaxBlockWeight and MaxBlockSigOpsCost bound the declared block
	// (consensus values by default; a pool may set less).
	MaxBlockWeight     int64
	MaxBlockSigOpsCost int64

	// RequireSameUser makes the pool API refuse a custom job whose channel
	// user identity differs from the user_identifier the token was
	// allocated to.
	RequireSameUser bool
}

// Normalize fills zero fields with defaults.
func (p *Policy) Normalize() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if p.PayoutMinShare == 0 {
		p.PayoutMinShare = DefaultPayoutMinShare
	}
	if p.HalvingInterval == 0 {
		p.HalvingInterval = DefaultHalvingInterval
	}
	if p.TokenLifetime == 0 {
		p.TokenLifetime = DefaultTokenLifetime
	}
	def(&p.MaxTokensPerConn, DefaultMaxTokensPerConn)
	def(&p.TokenBurst, DefaultTokenBurst)
	if p.TokenRate == 0 {
		p.TokenRate = DefaultTokenRate
	}
	def(&p.MaxJobsPerConn, DefaultMaxJobsPerConn)
	def(&p.MaxJobs, DefaultMaxJobs)
	def(&p.MaxJobBytes, DefaultMaxJobBytes)
	def(&p.MaxPendingPerConn, DefaultMaxPendingPerConn)
	def(&p.MaxMissingTxs, DefaultMaxMissingTxs)
	def(&p.MaxMissingBytes, DefaultMaxMissingBytes)
	if p.MissingTimeout == 0 {
		p.MissingTimeout = DefaultMissingTimeout
	}
	if p.MaxBlockWeight == 0 {
		p.MaxBlockWeight = DefaultMaxBlockWeight
	}
	if p.MaxBlockSigOpsCost == 0 {
		p.MaxBlockSigOpsCost = DefaultMaxBlockSigOpsCost
	}
}

// Validate checks a normalized policy. Keys in errors are the jds config
// keys.
func (p *Policy) Validate() error {
	switch {
	case len(p.PayoutScript) == 0:
		return config.Invalid("pool.payout-address", "no pool payout output configured", "set pool.payout-address (or pool.payout-script, hex)")
	case len(p.PayoutScript) > 10_000:
		return config.Invalid("pool.payout-script", "script longer than 10,000 bytes", "use a standard output script")
	case !(p.PayoutMinShare > 0 && p.PayoutMinShare <= 1): // NaN too: it would pass every comparison
		return config.Invalid("pool.payout-min-share", fmt.Sprintf("%v is not in (0, 1]", p.PayoutMinShare), "use e.g. 1 (the whole reward) or 0.98")
	case !p.AllowFullTemplate && !p.AllowCoinbaseOnly:
		return config.Invalid("jds.full-template", "neither full-template nor coinbase-only mode is allowed", "set jds.full-template or jds.coinbase-only to true")
	case p.TokenLifetime < time.Second:
		return config.Invalid("jds.token-lifetime", "shorter than 1s", "use e.g. 10m")
	case p.MaxTokensPerConn < 1 || p.MaxTokensPerConn > 1024:
		return config.Invalid("limits.tokens-per-connection", "must be 1..1024", "use e.g. 16")
	case p.TokenBurst < 1:
		return config.Invalid("limits.token-burst", "must be at least 1", "use e.g. 20")
	case !(p.TokenRate > 0) || math.IsInf(p.TokenRate, 1):
		return config.Invalid("limits.token-rate", fmt.Sprintf("%v is not a positive finite rate", p.TokenRate), "use e.g. 5 (tokens per second)")
	case p.MaxJobsPerConn < 1 || p.MaxJobs < p.MaxJobsPerConn:
		return config.Invalid("limits.jobs-per-connection", "must be at least 1 and at most limits.jobs", "use e.g. 8 and 4096")
	case p.MaxJobBytes < 1:
		return config.Invalid("limits.job-bytes", "must be positive", "use e.g. 268435456 (256 MiB)")
	case p.MaxPendingPerConn < 1:
		return config.Invalid("limits.pending-per-connection", "must be at least 1", "use e.g. 2")
	case p.MaxMissingTxs < 1 || p.MaxMissingTxs > 65535:
		return config.Invalid("limits.missing-txs", "must be 1..65535 (the message's list bound)", "use 65535")
	case p.MissingTimeout < time.Second:
		return config.Invalid("limits.missing-timeout", "shorter than 1s", "use e.g. 60s")
	case p.MaxMissingBytes < 1000:
		return config.Invalid("limits.missing-bytes", "must be at least 1000", "use 4000000 (a block's worth)")
	case p.MaxBlockWeight < 4000 || p.MaxBlockWeight > templates.MaxBlockWeight:
		return config.Invalid("limits.block-weight", "must be 4000..4000000", "use 4000000")
	case p.MaxBlockSigOpsCost < 1 || p.MaxBlockSigOpsCost > templates.MaxBlockSigOpsCost:
		return config.Invalid("limits.block-sigops", "must be 1..80000", "use 80000")
	}
	return nil
}
