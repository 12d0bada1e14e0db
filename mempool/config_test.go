package mempool

import (
	"github.com/sv2kit/sv2kit/internal/config"

	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	ok := Config{ZMQSequence: "tcp://127.0.0.1:28336", ZMQRawTx: "tcp://127.0.0.1:28333", PollInterval: time.Second,
		MaxBytes: 64 << 20, FetchBatch: 100, FetchConcurrency: 4, FetchDelay: time.Millisecond,
		ResyncInterval: time.Minute, RetryMax: time.Second}
	if err := ok.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, c := range []struct {
		key string
		mod func(*Config)
	}{
		{"mempool.zmq-rawtx", func(c *Config) { c.ZMQSequence = "" }},
		{"mempool.zmq-sequence", func(c *Config) { c.ZMQSequence = "127.0.0.1:28336" }},
		{"mempool.zmq-sequence", func(c *Config) { c.ZMQSequence = "tcp://0.0.0.0:28336" }},
		{"mempool.poll-interval", func(c *Config) { c.PollInterval = -time.Second }},
		{"mempool.poll-interval", func(c *Config) { c.PollInterval = time.Microsecond }},
		{"mempool.max-bytes", func(c *Config) { c.MaxBytes = -1 }},
		{"mempool.max-bytes", func(c *Config) { c.MaxBytes = 1000 }},
		{"mempool.fetch-batch", func(c *Config) { c.FetchBatch = 20000 }},
		{"mempool.fetch-concurrency", func(c *Config) { c.FetchConcurrency = -2 }},
		{"mempool.fetch-delay", func(c *Config) { c.FetchDelay = -1 }},
		{"mempool.resync-interval", func(c *Config) { c.ResyncInterval = time.Millisecond }},
		{"mempool.retry-max", func(c *Config) { c.RetryMax = -time.Second }},
	} {
		cfg := ok
		c.mod(&cfg)
		err := cfg.Validate()
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != c.key || ce.Fix == "" || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%s: %v", c.key, err)
		}
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("%s: New accepted it", c.key)
		}
	}
	d := Config{}.withDefaults()
	if d.PollInterval != DefaultPollInterval || d.MaxBytes != DefaultMaxBytes || d.FetchBatch != DefaultFetchBatch ||
		d.FetchConcurrency != DefaultFetchConcurrency || d.Logger == nil {
		t.Fatalf("defaults %+v", d)
	}
}
