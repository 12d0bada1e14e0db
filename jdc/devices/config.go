package devices

import (
	"errors"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/mining"
)

// Defaults applied to zero Config fields.
const (
	DefaultMaxConns           = 4096
	DefaultMaxChannelsPerConn = 1024
	DefaultSetupTimeout       = 10 * time.Second
	DefaultOpenTimeout        = 60 * time.Second
	DefaultWriteTimeout       = 10 * time.Second
	DefaultSendQueue          = 256
	DefaultShareQueue         = 1024
	DefaultSharesPerMinute    = 6
	DefaultMinDifficulty      = 1
	DefaultMaxWorks           = 16
	DefaultExtranonceSize     = 4
	DefaultVardiffWindow      = time.Minute
)

// Config configures a Server. The zero value of each field selects the
// documented default; Listen and (unless Plaintext) AuthorityKey are required.
type Config struct {
	// Listen is the TCP address devices connect to, e.g. "0.0.0.0:34255".
	Listen string
	// Plaintext turns Noise off. Only for devices on a trusted local
	// network: shares and jobs travel unauthenticated.
	Plaintext bool
	// AuthorityKey signs the certificates of the Noise responder; devices
	// pin its public key. Required unless Plaintext.
	AuthorityKey *btcec.PrivateKey
	// StaticKey is the responder's static key; nil means a fresh one per
	// connection (each with its own certificate).
	StaticKey *btcec.PrivateKey
	// CertValidity is the lifetime of the certificates. Default 1h.
	CertValidity time.Duration

	// MaxConns bounds the connected devices (after the handshake).
	// Connections beyond it are closed at once. Default 4096.
	MaxConns int
	// MaxHandshakes bounds connections accepted but not yet set up (Noise
	// handshakes in flight); more are closed at once, before any work is
	// done for them. Default 128.
	MaxHandshakes int
	// MaxConnsPerIP bounds the connections from one IP address (0: no
	// limit — devices behind NAT share one address).
	MaxConnsPerIP int
	// MaxChannelsPerConn bounds the channels one connection may open (a
	// proxy opens one per device behind it). Default 1024.
	MaxChannelsPerConn int
	// SetupTimeout bounds the Noise handshake and, separately, the wait for
	// SetupConnection after it. Default 10s.
	SetupTimeout time.Duration
	// OpenTimeout closes a connection that has no open channel for this
	// long (after setup, or after its last channel closed). Default 60s.
	OpenTimeout time.Duration
	// WriteTimeout bounds one write to a device; a device that does not
	// read for this long is dropped. Default 10s.
	WriteTimeout time.Duration
	// SendQueue bounds the messages (batches) waiting for one connection's
	// writer; a device that lets it fill is dropped. Default 256.
	SendQueue int
	// ShareQueue is the capacity of the Shares channel. Default 1024.
	ShareQueue int
	// MaxWorks bounds the works (jobs per channel) remembered at once.
	// Default 16.
	MaxWorks int

	// SharesPerMinute is the share rate vardiff aims at per channel.
	// Default 6.
	SharesPerMinute float64
	// MinDifficulty is the lowest share difficulty a channel is given
	// (difficulty 1 = target 0x00000000ffff0000…). May be fractional for
	// test networks. Default 1.
	MinDifficulty float64
	// VardiffWindow is the shortest time vardiff counts shares before it
	// retargets a channel (sooner for a device far too fast). Default 1m.
	VardiffWindow time.Duration
	// ExtranonceSize is the extranonce_size extended channels get (the bytes
	// a device or proxy rolls itself); a channel asking for more is refused
	// with min-extranonce-size-too-large. Work.ExtranonceSpace must leave at
	// least one byte beyond it for channel ids (MinExtranonceSpace). Default 4.
	ExtranonceSize int
	// PerChannelJobs sends every job and SetNewPrevHash to each channel
	// instead of once to the connection's group channel (for clients that
	// do not understand group channels without setting
	// REQUIRES_STANDARD_JOBS).
	PerChannelJobs bool

	// Logger receives connection and channel events. Default: discard.
	Logger hclog.Logger
	// Registerer receives the server's metrics. Default: none registered.
	Registerer prometheus.Registerer

	// now is the clock (tests).
	now func() time.Time
}

func (c Config) resolved() (Config, error) {
	if c.Listen == "" {
		return c, errors.New("devices: Config.Listen is required")
	}
	if !c.Plaintext && c.AuthorityKey == nil {
		return c, errors.New("devices: Config.AuthorityKey is required unless Plaintext is set")
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxChannelsPerConn <= 0 {
		c.MaxChannelsPerConn = DefaultMaxChannelsPerConn
	}
	if c.SetupTimeout <= 0 {
		c.SetupTimeout = DefaultSetupTimeout
	}
	if c.OpenTimeout <= 0 {
		c.OpenTimeout = DefaultOpenTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.SendQueue <= 0 {
		c.SendQueue = DefaultSendQueue
	}
	if c.ShareQueue <= 0 {
		c.ShareQueue = DefaultShareQueue
	}
	if c.MaxWorks <= 0 {
		c.MaxWorks = DefaultMaxWorks
	}
	if c.SharesPerMinute <= 0 {
		c.SharesPerMinute = DefaultSharesPerMinute
	}
	if c.MinDifficulty <= 0 {
		c.MinDifficulty = DefaultMinDifficulty
	}
	if c.VardiffWindow <= 0 {
		c.VardiffWindow = DefaultVardiffWindow
	}
	if c.ExtranonceSize <= 0 {
		c.ExtranonceSize = DefaultExtranonceSize
	}
	if c.ExtranonceSize > mining.MaxExtranonceSize-2 {
		return c, fmt.Errorf("devices: Config.ExtranonceSize %d leaves no room for channel ids in a %d-byte extranonce", c.ExtranonceSize, mining.MaxExtranonceSize)
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// MinExtranonceSpace is the smallest Work.ExtranonceSpace the server can
// split for cfg: the extended channels' ExtranonceSize plus 2 bytes of
// channel ids (65,536 channels). jdc asks its pool for at least this much.
func MinExtranonceSpace(cfg Config) int {
	n := cfg.ExtranonceSize
	if n <= 0 {
		n = DefaultExtranonceSize
	}
	return n + 2
}
