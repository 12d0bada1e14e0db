package mempool

import (
	"github.com/sv2kit/sv2kit/internal/config"

	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/node"
)

// Defaults for Config's zero values.
const (
	DefaultPollInterval     = 2 * time.Second
	DefaultMaxBytes         = 512 << 20
	DefaultFetchBatch       = 500
	DefaultFetchConcurrency = 2
	DefaultFetchDelay       = 100 * time.Millisecond
	DefaultResyncInterval   = 10 * time.Minute
	DefaultRetryMax         = 10 * time.Second

	// MinMaxBytes is the smallest bound Validate accepts.
	MinMaxBytes = 1 << 20
)

// Config says how the mirror follows the node. The zero value is usable: it
// polls every 2 s and holds at most 512 MiB.
type Config struct {
	// ZMQSequence is the node's zmqpubsequence endpoint (e.g.
	// "tcp://127.0.0.1:28336"). With it the mirror follows every mempool
	// addition and removal as it happens and resyncs on a lost message;
	// without it (btcd has no ZMQ) it polls.
	ZMQSequence string
	// ZMQRawTx is the node's zmqpubrawtx endpoint (optional, needs
	// ZMQSequence): announced transactions then arrive with their bytes
	// and are not fetched one batch later.
	ZMQRawTx string

	// PollInterval is how often the mirror lists the node's mempool when it
	// has no ZMQ (default 2 s). A transaction that reaches the node is
	// missing from the mirror for up to this long.
	PollInterval time.Duration

	// MaxBytes bounds the memory the mirror holds, in raw transaction bytes
	// plus a measured per-transaction overhead (see Cost); default 512 MiB,
	// at least 1 MiB. Bitcoin Core's default 300 MB mempool is about
	// 100–150 MiB here. When full, the lowest fee rates go first.
	MaxBytes int64

	// FetchBatch is how many transactions one getrawtransaction batch asks
	// for (default 500); FetchConcurrency how many batches are in flight at
	// once (default 2).
	FetchBatch       int
	FetchConcurrency int

	// FetchDelay is how long a transaction announced over ZMQ waits before
	// it is fetched with getrawtransaction, so that announcements batch up
	// and its rawtx message can come first (default 100 ms).
	FetchDelay time.Duration

	// ResyncInterval is how often, with ZMQ, the mirror also diffs a full
	// listing against what it holds, a safety net for messages lost without
	// a trace (default 10 min).
	ResyncInterval time.Duration

	// RetryMax caps the wait between attempts while the node is down or
	// refuses (default 10 s; waits start at 250 ms and double).
	RetryMax time.Duration

	// Logger receives the mirror's diagnostics; nil discards them.
	Logger hclog.Logger
}

// Validate checks the configuration without contacting the node.
func (c Config) Validate() error {
	if c.ZMQRawTx != "" && c.ZMQSequence == "" {
		return config.Invalid("mempool.zmq-rawtx", "set without mempool.zmq-sequence",
			"set mempool.zmq-sequence to the node's zmqpubsequence address too (rawtx alone does not say what leaves the mempool), or unset zmq-rawtx")
	}
	if err := (node.ZMQConfig{Sequence: c.ZMQSequence, RawTx: c.ZMQRawTx}).Validate(); err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return &config.Error{Key: "mempool." + ce.Key, Err: ce.Err, Fix: ce.Fix}
		}
		return err
	}
	durations := []struct {
		key  string
		d    time.Duration
		min  time.Duration
		hint string
	}{
		{"mempool.poll-interval", c.PollInterval, 10 * time.Millisecond, "2s"},
		{"mempool.fetch-delay", c.FetchDelay, 0, "100ms"},
		{"mempool.resync-interval", c.ResyncInterval, time.Second, "10m"},
		{"mempool.retry-max", c.RetryMax, 10 * time.Millisecond, "10s"},
	}
	for _, d := range durations {
		if d.d < 0 || (d.d > 0 && d.d < d.min) {
			return config.Invalid(d.key, fmt.Sprintf("%v is out of range", d.d),
				fmt.Sprintf("use a duration of at least %v, such as %s, or leave it unset for the default", d.min, d.hint))
		}
	}
	if c.MaxBytes < 0 || (c.MaxBytes > 0 && c.MaxBytes < MinMaxBytes) {
		return config.Invalid("mempool.max-bytes", fmt.Sprintf("%d bytes is out of range", c.MaxBytes),
			fmt.Sprintf("use at least %d (1 MiB); 536870912 (512 MiB, the default) holds a full default Bitcoin Core mempool", MinMaxBytes))
	}
	if c.FetchBatch < 0 || c.FetchBatch > 10000 {
		return config.Invalid("mempool.fetch-batch", fmt.Sprintf("%d is out of range", c.FetchBatch),
			"use 1 to 10000 transactions per batch, such as 500, or leave it unset")
	}
	if c.FetchConcurrency < 0 || c.FetchConcurrency > 64 {
		return config.Invalid("mempool.fetch-concurrency", fmt.Sprintf("%d is out of range", c.FetchConcurrency),
			"use 1 to 64 batches in flight, such as 2 (the node client's max-concurrent bounds it too), or leave it unset")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.FetchBatch == 0 {
		c.FetchBatch = DefaultFetchBatch
	}
	if c.FetchConcurrency == 0 {
		c.FetchConcurrency = DefaultFetchConcurrency
	}
	if c.FetchDelay == 0 {
		c.FetchDelay = DefaultFetchDelay
	}
	if c.ResyncInterval == 0 {
		c.ResyncInterval = DefaultResyncInterval
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return c
}
