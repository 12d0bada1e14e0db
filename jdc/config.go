package jdc

import (
	"errors"
	"fmt"
	"time"
)

// Mode is how jdc gets paid and what it tells the pool.
type Mode uint8

const (
	// FullTemplate declares every job to the pair's JDS with its
	// transaction ids (DECLARE_TX_DATA) before SetCustomMiningJob.
	FullTemplate Mode = iota
	// CoinbaseOnly sends SetCustomMiningJob with a fresh token and no
	// transaction data: nothing about the block's transactions leaves jdc.
	CoinbaseOnly
	// SoloMode mines for the configured payout script with no pool at all.
	SoloMode
)

func (m Mode) String() string {
	switch m {
	case FullTemplate:
		return "full-template"
	case CoinbaseOnly:
		return "coinbase-only"
	case SoloMode:
		return "solo"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode reads a mode name as the configuration spells it.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "full-template", "full":
		return FullTemplate, nil
	case "coinbase-only":
		return CoinbaseOnly, nil
	case "solo":
		return SoloMode, nil
	}
	return 0, fmt.Errorf("unknown mode %q (full-template, coinbase-only or solo)", s)
}

// Defaults applied by New to the zero fields of a Config.
const (
	DefaultReturnAfter        = 60 * time.Second
	DefaultStartGrace         = 3 * time.Second
	DefaultProbeInterval      = 10 * time.Second
	DefaultTokenTimeout       = 10 * time.Second
	DefaultDeclareTimeout     = 10 * time.Second
	DefaultCustomJobTimeout   = 10 * time.Second
	DefaultShareRejectLimit   = 3
	DefaultTokenMaxAge        = 4 * time.Minute
	DefaultMaxPendingShares   = 256
	DefaultMaxTemplates       = 16
	DefaultSoloExtranonceSize = 16
	DefaultReserveSize        = 256
	DefaultTag                = "/sv2kit/"
	// MaxExtranonce is the largest full extranonce (pool prefix + pool
	// extranonce_size) jdc accepts from a pool (rust's MAX_EXTRANONCE_LEN).
	MaxExtranonce = 32
)

// Config configures the core. The zero value of every duration and limit
// selects the default above.
type Config struct {
	Mode Mode
	// Pairs is the number of pool+JDS pairs, in failover order (index 0
	// first). Zero in solo mode.
	Pairs int
	// SoloScript is the output script paid in solo mode and in the solo
	// fallback when no pair is usable. nil: no solo fallback (devices keep
	// their last work and an error is logged).
	SoloScript []byte
	// Tag is pushed into the coinbase scriptSig after the height
	// ("/sv2kit/"); "-" for none.
	Tag string
	// SoloExtranonceSize is the extranonce space for devices in solo work.
	SoloExtranonceSize int
	// ReturnAfter is how long a pair that failed must stay healthy (its
	// custom jobs acknowledged, no trigger) before jdc returns to it.
	ReturnAfter time.Duration
	// StartGrace is how long, from the core's first source decision (jdc's
	// start), a pair that has not connected yet and never failed is waited
	// for before a lower pair is taken: operators expect the first pair,
	// not whichever connected first. Devices are never left idle for it:
	// they mine solo meanwhile when a solo payout is configured, and without
	// one (no work at all) a lower pair is taken at once and left when the
	// higher one is ready. Negative: no grace.
	StartGrace time.Duration
	// ProbeInterval bounds the jobs of a pair the devices do not mine for
	// (a warm standby, or a failed pair being probed): one per new tip, and
	// for template updates on the same tip at most one per ProbeInterval.
	ProbeInterval time.Duration
	// TokenTimeout, DeclareTimeout and CustomJobTimeout bound the waits on
	// the JDS (a token, a DeclareMiningJob answer) and on the pool (the
	// SetCustomMiningJob answer); past them the pair has failed.
	TokenTimeout     time.Duration
	DeclareTimeout   time.Duration
	CustomJobTimeout time.Duration
	// TokenMaxAge drops a spare token older than this instead of using it
	// (JDSes expire unused tokens).
	TokenMaxAge time.Duration
	// ShareRejectLimit is how many shares of acknowledged jobs the pool may
	// reject in a row (stale shares do not count) before the pair fails.
	ShareRejectLimit int
	// MaxPendingShares bounds the shares kept per job while waiting for
	// SetCustomMiningJob.Success (optimistic mining); older ones are
	// dropped first.
	MaxPendingShares int
	// MinExtranonceSpace is the least extranonce_size a pool channel must
	// give for the devices to share it (default 1).
	MinExtranonceSpace int
	// MaxTemplates bounds the templates (current and future) kept.
	MaxTemplates int
	// ReserveSize is the least coinbase output size announced to tp before
	// the pools' outputs are known (and kept as a floor after).
	ReserveSize uint32
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ReturnAfter, DefaultReturnAfter)
	def(&c.ProbeInterval, DefaultProbeInterval)
	if c.StartGrace == 0 {
		c.StartGrace = DefaultStartGrace
	}
	def(&c.TokenTimeout, DefaultTokenTimeout)
	def(&c.DeclareTimeout, DefaultDeclareTimeout)
	def(&c.CustomJobTimeout, DefaultCustomJobTimeout)
	def(&c.TokenMaxAge, DefaultTokenMaxAge)
	if c.ShareRejectLimit <= 0 {
		c.ShareRejectLimit = DefaultShareRejectLimit
	}
	if c.MaxPendingShares <= 0 {
		c.MaxPendingShares = DefaultMaxPendingShares
	}
	if c.MinExtranonceSpace <= 0 {
		c.MinExtranonceSpace = 1
	}
	if c.MaxTemplates <= 0 {
		c.MaxTemplates = DefaultMaxTemplates
	}
	if c.SoloExtranonceSize <= 0 {
		c.SoloExtranonceSize = DefaultSoloExtranonceSize
	}
	if c.ReserveSize == 0 {
		c.ReserveSize = DefaultReserveSize
	}
	switch c.Tag {
	case "":
		c.Tag = DefaultTag
	case "-":
		c.Tag = ""
	}
}

func (c *Config) validate() error {
	switch c.Mode {
	case SoloMode:
		if len(c.SoloScript) == 0 {
			return errors.New("solo mode needs a payout script")
		}
		if c.Pairs != 0 {
			return errors.New("solo mode takes no pool+JDS pairs")
		}
	case FullTemplate, CoinbaseOnly:
		if c.Pairs < 1 {
			return fmt.Errorf("%s mode needs at least one pool+JDS pair", c.Mode)
		}
	default:
		return fmt.Errorf("unknown mode %d", c.Mode)
	}
	if c.SoloExtranonceSize > MaxExtranonce {
		return fmt.Errorf("solo extranonce size %d is above %d", c.SoloExtranonceSize, MaxExtranonce)
	}
	if len(c.Tag) > 40 {
		return fmt.Errorf("coinbase tag is %d bytes; at most 40 fit the scriptSig", len(c.Tag))
	}
	return nil
}
