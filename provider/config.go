package provider

import (
	"github.com/sv2kit/sv2kit/internal/config"

	"errors"
	"fmt"
	"time"
)

// Defaults applied by New to the zero fields of a Config.
const (
	DefaultFeeDelta         = 1000
	DefaultInterval         = 10 * time.Second
	MinInterval             = time.Second
	DefaultHalvingInterval  = 210_000
	DefaultRetargetInterval = 2016
	DefaultPrevTipRetention = 10 * time.Second
	DefaultTxDataRate       = 10
	DefaultTxDataBurst      = 20
	DefaultMaxClients       = 1000
	DefaultMaxGroups        = 64
	// MaxTemplatesPerGroup caps the templates of the current tip kept for
	// RequestTransactionData and SubmitSolution, per reservation group
	// (fee updates beyond it prune the oldest).
	MaxTemplatesPerGroup = 64
	// MaxCoinbaseOutputSize is the largest coinbase_output_max_additional_size
	// accepted (sv2-tp disconnects above it too).
	MaxCoinbaseOutputSize = 4_000_000
)

// Config holds the Template Provider core's settings. The zero value of
// every field means its default.
type Config struct {
	// FeeDelta (sats): a new non-future template is sent to a group when its
	// template's fees rose by at least this much over the last one sent.
	// Default 1000.
	FeeDelta int64
	// Interval is the minimum time between fee-update templates to a group
	// (default 10s, minimum 1s). It also spaces mempool-driven fetches.
	Interval time.Duration
	// HalvingInterval is the subsidy halving interval: 210000 (150 on regtest).
	HalvingInterval int64
	// NoRetargeting is set on regtest: nBits never changes.
	NoRetargeting bool
	// RetargetInterval is the difficulty adjustment period (2016).
	RetargetInterval int64
	// MinDifficultyBlocks is set on testnet3/testnet4, where the nBits of the
	// next block depends on its timestamp: no fast path there.
	MinDifficultyBlocks bool
	// PrevTipRetention is how long templates of the previous tip stay
	// available for RequestTransactionData and SubmitSolution (default 10s).
	PrevTipRetention time.Duration
	// TxDataRate and TxDataBurst are the per-client token bucket for
	// RequestTransactionData (defaults 10/s, burst 20).
	TxDataRate  float64
	TxDataBurst int
	// MaxClients bounds connected clients (default 1000).
	MaxClients int
	// MaxGroups bounds the distinct coinbase reservations served at once
	// (default 64): templates are built once per group, so this bounds the
	// work per node template.
	MaxGroups int
}

func cfgErr(key, format string, args ...any) error {
	return &config.Error{Key: key, Err: fmt.Errorf(format, args...)}
}

// WithDefaults returns cfg with every zero field set to its default.
func (cfg Config) WithDefaults() Config {
	if cfg.FeeDelta == 0 {
		cfg.FeeDelta = DefaultFeeDelta
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.HalvingInterval == 0 {
		cfg.HalvingInterval = DefaultHalvingInterval
	}
	if cfg.RetargetInterval == 0 {
		cfg.RetargetInterval = DefaultRetargetInterval
	}
	if cfg.PrevTipRetention == 0 {
		cfg.PrevTipRetention = DefaultPrevTipRetention
	}
	if cfg.TxDataRate == 0 {
		cfg.TxDataRate = DefaultTxDataRate
	}
	if cfg.TxDataBurst == 0 {
		cfg.TxDataBurst = DefaultTxDataBurst
	}
	if cfg.MaxClients == 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	if cfg.MaxGroups == 0 {
		cfg.MaxGroups = DefaultMaxGroups
	}
	return cfg
}

// Validate checks cfg after defaults are applied; errors are *config.Error
// naming the configuration key.
func (cfg Config) Validate() error {
	c := cfg.WithDefaults()
	var errs []error
	if c.FeeDelta < 0 {
		errs = append(errs, cfgErr("templates.fee-delta", "%d sats is negative", c.FeeDelta))
	}
	if c.Interval < MinInterval {
		errs = append(errs, cfgErr("templates.interval", "%v is below the minimum of %v", c.Interval, MinInterval))
	}
	if c.HalvingInterval < 1 {
		errs = append(errs, cfgErr("chain.halving-interval", "%d must be positive", c.HalvingInterval))
	}
	if c.RetargetInterval < 1 {
		errs = append(errs, cfgErr("chain.retarget-interval", "%d must be positive", c.RetargetInterval))
	}
	if c.PrevTipRetention < 0 {
		errs = append(errs, cfgErr("templates.prev-tip-retention", "%v is negative", c.PrevTipRetention))
	}
	if c.TxDataRate < 0 {
		errs = append(errs, cfgErr("server.tx-data-rate", "%v is negative", c.TxDataRate))
	}
	if c.TxDataBurst < 1 {
		errs = append(errs, cfgErr("server.tx-data-burst", "%d must be at least 1", c.TxDataBurst))
	}
	if c.MaxClients < 1 {
		errs = append(errs, cfgErr("server.max-clients", "%d must be at least 1", c.MaxClients))
	}
	if c.MaxGroups < 1 {
		errs = append(errs, cfgErr("server.max-reservations", "%d must be at least 1", c.MaxGroups))
	}
	return errors.Join(errs...)
}
