// Command sv2-pool runs the test pool (internal/testpool): a small Stratum V2
// pool that only mines miners' custom jobs, checked through a Job Declarator
// Server's pool API. It exists for the demo and for process-level tests; it
// is not a production pool.
//
// SIGUSR1 toggles rejecting every custom job and SIGUSR2 rejecting every
// share, to watch a jdc fail over.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/declare"
	"github.com/sv2kit/sv2kit/internal/config"
	"github.com/sv2kit/sv2kit/internal/logging"
	"github.com/sv2kit/sv2kit/internal/metrics"
	"github.com/sv2kit/sv2kit/internal/testpool"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// Config is sv2-pool's configuration (TOML file, SV2POOL_* environment, flags).
type Config struct {
	Pool struct {
		Listen             string  `toml:"listen" help:"address to serve the Mining Protocol on"`
		AuthorityKeyFile   string  `toml:"authority-key-file" help:"file with the Noise authority secret key; created (mode 0600) when missing"`
		AuthoritySecretKey string  `toml:"authority-secret-key" help:"the Noise authority secret key itself (SRI string format); wins over authority-key-file"`
		Plaintext          bool    `toml:"plaintext" help:"serve without Noise encryption (local tests only)"`
		ExtranonceSize     int     `toml:"extranonce-size" help:"extranonce bytes an extended channel rolls (and may subdivide)"`
		ChannelIDBytes     int     `toml:"channel-id-bytes" help:"bytes of the per-channel extranonce prefix (plus extranonce-size at most 32)"`
		SharesPerMinute    float64 `toml:"shares-per-minute" help:"vardiff aim per channel"`
		MinDifficulty      float64 `toml:"min-difficulty" help:"easiest share difficulty; 0 allows any target (regtest)"`
		MaxConnections     int     `toml:"max-connections" help:"most concurrent connections"`
		BlocksDir          string  `toml:"blocks-dir" help:"directory where block-solving shares are written (fsync) before hand-over; empty: not written"`
		RejectCustomJobs   bool    `toml:"reject-custom-jobs" help:"answer every SetCustomMiningJob with an error (failover tests; SIGUSR1 toggles)"`
		RejectShares       bool    `toml:"reject-shares" help:"answer every share with an error (failover tests; SIGUSR2 toggles)"`
	} `toml:"pool"`
	JDS struct {
		APIURL  string        `toml:"api-url" help:"base URL of the JDS pool API (e.g. http://127.0.0.1:34266)"`
		Timeout time.Duration `toml:"timeout" help:"bound on each pool API call"`
	} `toml:"jds"`
	Metrics struct {
		Listen string `toml:"listen" help:"address to serve Prometheus /metrics on; empty: off"`
	} `toml:"metrics"`
	Log logging.Config `toml:"log"`
}

// Defaults returns the configuration before file, environment and flags.
func Defaults() *Config {
	c := &Config{}
	c.Pool.Listen = "127.0.0.1:34255"
	c.Pool.AuthorityKeyFile = "sv2-pool-authority.key"
	c.Pool.ExtranonceSize = testpool.DefaultExtranonceSize
	c.Pool.ChannelIDBytes = testpool.DefaultChannelIDBytes
	c.Pool.SharesPerMinute = testpool.DefaultSharesPerMinute
	c.Pool.MaxConnections = testpool.DefaultMaxConns
	c.JDS.Timeout = testpool.DefaultAPITimeout
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
		fmt.Fprintln(os.Stderr, "sv2-pool:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := Defaults()
	if err := config.Load(cfg, "sv2-pool", "SV2POOL", "sv2-pool.toml", args, stderr); err != nil {
		return err
	}
	log, err := logging.New("sv2-pool", cfg.Log, stderr)
	if err != nil {
		return err
	}
	if cfg.JDS.APIURL == "" {
		return config.Invalid("jds.api-url", "no JDS pool API configured", "set jds.api-url to the jds pool API address, e.g. http://127.0.0.1:34266")
	}
	var key *btcec.PrivateKey
	if !cfg.Pool.Plaintext {
		key, err = loadKey(cfg, log)
		if err != nil {
			return err
		}
	}
	reg := metrics.NewRegistry()
	ms, err := metrics.Listen(cfg.Metrics.Listen, reg)
	if err != nil {
		return err
	}
	api := declare.NewHTTPClient(cfg.JDS.APIURL)
	p, err := testpool.New(testpool.Config{
		Listen: cfg.Pool.Listen, AuthorityKey: key, Plaintext: cfg.Pool.Plaintext, API: api,
		ExtranonceSize: cfg.Pool.ExtranonceSize, ChannelIDBytes: cfg.Pool.ChannelIDBytes,
		SharesPerMinute: cfg.Pool.SharesPerMinute, MinDifficulty: cfg.Pool.MinDifficulty,
		MaxConns: cfg.Pool.MaxConnections, APITimeout: cfg.JDS.Timeout, BlocksDir: cfg.Pool.BlocksDir,
		RejectCustomJobs: cfg.Pool.RejectCustomJobs, RejectShares: cfg.Pool.RejectShares,
		Logger: log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	if key != nil {
		log.Info("pool authority key", "authority_public_key", noise.EncodeAuthorityPublicKey(noise.PublicKey(key)))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ms != nil {
		log.Info("metrics", "addr", ms.Addr().String())
		go ms.Run(ctx, log)
	}
	go toggles(ctx, p, cfg.Pool.RejectCustomJobs, cfg.Pool.RejectShares, log)
	return p.Run(ctx)
}

// loadKey reads the authority key from the config string or key file.
func loadKey(cfg *Config, log hclog.Logger) (*btcec.PrivateKey, error) {
	if cfg.Pool.AuthoritySecretKey != "" {
		k, err := noise.ParseSecretKey(cfg.Pool.AuthoritySecretKey)
		if err != nil {
			return nil, &config.Error{Key: "pool.authority-secret-key", Err: err, Fix: "use a key printed by sv2-keygen"}
		}
		return k, nil
	}
	if cfg.Pool.AuthorityKeyFile == "" {
		return nil, config.Invalid("pool.authority-key-file", "no authority key configured", "set pool.authority-key-file or pool.authority-secret-key, or pool.plaintext")
	}
	k, created, err := noise.LoadOrCreateKeyFile(cfg.Pool.AuthorityKeyFile, nil)
	if err != nil {
		return nil, &config.Error{Key: "pool.authority-key-file", Err: err}
	}
	if created {
		log.Info("created a new authority key", "file", cfg.Pool.AuthorityKeyFile)
	}
	return k, nil
}

// toggles flips the failover knobs on SIGUSR1 (custom jobs) and SIGUSR2 (shares).
func toggles(ctx context.Context, p *testpool.Pool, jobs, shares bool, log hclog.Logger) {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sig)
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-sig:
			switch s {
			case syscall.SIGUSR1:
				jobs = !jobs
				p.SetRejectCustomJobs(jobs)
				log.Warn("reject-custom-jobs toggled", "on", jobs)
			case syscall.SIGUSR2:
				shares = !shares
				p.SetRejectShares(shares)
				log.Warn("reject-shares toggled", "on", shares)
			}
		}
	}
}
