// Command sv2-cpuminer runs CPU mining devices (internal/cpuminer) against a
// Stratum V2 Mining Protocol server, typically jdc's device port. Each
// device is its own connection with one standard channel. For tests and the
// demo: on regtest about every other hash is a block, so hash-rate caps the
// rate at which blocks are found.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/internal/config"
	"github.com/sv2kit/sv2kit/internal/cpuminer"
	"github.com/sv2kit/sv2kit/internal/logging"
	"github.com/sv2kit/sv2kit/internal/metrics"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// Config is sv2-cpuminer's configuration (TOML file, SV2CPUMINER_* environment, flags).
type Config struct {
	Miner struct {
		Addr               string        `toml:"addr" help:"Mining Protocol server to mine on (host:port), e.g. jdc's device port"`
		AuthorityPublicKey string        `toml:"authority-public-key" help:"the server's Noise authority public key; empty: not verified (a warning is logged)"`
		Plaintext          bool          `toml:"plaintext" help:"connect without Noise (servers that serve local devices in the clear)"`
		User               string        `toml:"user" help:"user identity of the channels; device i (from 1) uses <user>.<i>"`
		Devices            int           `toml:"devices" help:"number of devices (connections) to run"`
		Workers            int           `toml:"workers" help:"hashing goroutines per device"`
		HashRate           float64       `toml:"hash-rate" help:"hash-rate cap per device in hashes per second (may be below 1); 0: no cap"`
		Timeout            time.Duration `toml:"timeout" help:"bound on connecting, setup and each write"`
	} `toml:"miner"`
	Metrics struct {
		Listen string `toml:"listen" help:"address to serve Prometheus /metrics on; empty: off"`
	} `toml:"metrics"`
	Log logging.Config `toml:"log"`
}

// Defaults returns the configuration before file, environment and flags.
func Defaults() *Config {
	c := &Config{}
	c.Miner.Addr = "127.0.0.1:34265"
	c.Miner.User = "cpuminer"
	c.Miner.Devices = 1
	c.Miner.Workers = 1
	c.Miner.Timeout = cpuminer.DefaultTimeout
	c.Log = logging.Defaults()
	return c
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "sv2-cpuminer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := Defaults()
	if err := config.Load(cfg, "sv2-cpuminer", "SV2CPUMINER", "sv2-cpuminer.toml", args, stderr); err != nil {
		return err
	}
	log, err := logging.New("sv2-cpuminer", cfg.Log, stderr)
	if err != nil {
		return err
	}
	var pub *[32]byte
	if cfg.Miner.AuthorityPublicKey != "" {
		k, err := noise.ParseAuthorityPublicKey(cfg.Miner.AuthorityPublicKey)
		if err != nil {
			return &config.Error{Key: "miner.authority-public-key", Err: err, Fix: "use the server's authority_public_key string"}
		}
		pub = &k
	}
	if cfg.Miner.Devices < 1 || cfg.Miner.Devices > 1000 {
		return config.Invalid("miner.devices", "must be 1..1000", "use e.g. 3")
	}
	if cfg.Miner.HashRate < 0 {
		return config.Invalid("miner.hash-rate", "negative", "use 0 (no cap) or a positive rate")
	}
	miners := make([]*cpuminer.Miner, cfg.Miner.Devices)
	for i := range miners {
		user := cfg.Miner.User
		if cfg.Miner.Devices > 1 {
			user += "." + strconv.Itoa(i+1)
		}
		m, err := cpuminer.New(cpuminer.Config{
			Addr: cfg.Miner.Addr, AuthorityPubKey: pub, Plaintext: cfg.Miner.Plaintext, UserIdentity: user,
			Workers: cfg.Miner.Workers, HashRate: cfg.Miner.HashRate, Timeout: cfg.Miner.Timeout,
			DeviceID: "cpu-" + strconv.Itoa(i+1), Logger: log.Named(user),
		})
		if err != nil {
			return &config.Error{Key: "miner.addr", Err: err}
		}
		miners[i] = m
	}
	reg := metrics.NewRegistry()
	registerStats(reg, miners)
	ms, err := metrics.Listen(cfg.Metrics.Listen, reg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ms != nil {
		log.Info("metrics", "addr", ms.Addr().String())
		go ms.Run(ctx, log)
	}
	log.Info("mining", "addr", cfg.Miner.Addr, "devices", cfg.Miner.Devices, "hash_rate", cfg.Miner.HashRate)
	var wg sync.WaitGroup
	for _, m := range miners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Run(ctx)
		}()
	}
	go report(ctx, miners, log)
	wg.Wait()
	return nil
}

// report logs the totals every 30 seconds.
func report(ctx context.Context, miners []*cpuminer.Miner, log hclog.Logger) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s := total(miners)
			log.Info("totals", "connected", s.connected, "hashes", s.Hashes, "submitted", s.Submitted,
				"accepted", s.Accepted, "rejected", s.Rejected, "blocks", s.Blocks)
		}
	}
}

type totals struct {
	cpuminer.Stats
	connected int
}

func total(miners []*cpuminer.Miner) totals {
	var t totals
	for _, m := range miners {
		s := m.Stats()
		if s.Connected {
			t.connected++
		}
		t.Hashes += s.Hashes
		t.Submitted += s.Submitted
		t.Accepted += s.Accepted
		t.Rejected += s.Rejected
		t.Blocks += s.Blocks
		t.Dropped += s.Dropped
	}
	return t
}

// registerStats exposes the devices' totals as Prometheus series read at
// scrape time.
func registerStats(reg *prometheus.Registry, miners []*cpuminer.Miner) {
	counter := func(name, help string, f func(totals) uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(total(miners))) }))
	}
	counter("sv2cpuminer_hashes_total", "Hashes computed.", func(t totals) uint64 { return t.Hashes })
	counter("sv2cpuminer_shares_submitted_total", "Shares submitted.", func(t totals) uint64 { return t.Submitted })
	counter("sv2cpuminer_shares_accepted_total", "Shares the server accepted.", func(t totals) uint64 { return t.Accepted })
	counter("sv2cpuminer_shares_rejected_total", "Shares the server rejected.", func(t totals) uint64 { return t.Rejected })
	counter("sv2cpuminer_blocks_found_total", "Shares that met the network target.", func(t totals) uint64 { return t.Blocks })
	counter("sv2cpuminer_shares_dropped_total", "Shares lost to a slow or lost connection.", func(t totals) uint64 { return t.Dropped })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sv2cpuminer_devices_connected",
		Help: "Devices with an open channel."}, func() float64 { return float64(total(miners).connected) }))
}
