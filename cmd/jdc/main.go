// Command jdc is sv2kit's Job Declarator Client: it takes block templates
// from a Template Provider (tp or sv2-tp), declares them to a pool's JDS,
// mines them on the pool as custom jobs through its own devices, fails over
// along an ordered list of pool+JDS pairs (and to solo mining when none is
// left) and returns to the first healthy pair. See docs/jdc.md.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sv2kit/sv2kit/internal/chains"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/internal/config"
	"github.com/sv2kit/sv2kit/internal/logging"
	"github.com/sv2kit/sv2kit/internal/metrics"
	"github.com/sv2kit/sv2kit/jdc"
	"github.com/sv2kit/sv2kit/jdc/daemon"
	"github.com/sv2kit/sv2kit/jdc/devices"
	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// envPrefix prefixes every environment variable (JDC_TP_ADDR, ...).
const envPrefix = "JDC"

// DefaultDevicesListen is SRI's JDC downstream port (DIGEST §8.1).
const DefaultDevicesListen = "127.0.0.1:34265"

// UpstreamConfig is one [[upstreams]] entry: a pool and its JDS.
type UpstreamConfig struct {
	Pool             string `toml:"pool" help:"pool Mining Protocol address host:port"`
	PoolKey          string `toml:"pool-authority-public-key" help:"pool's authority public key (base58); empty: not checked"`
	PoolPlaintext    bool   `toml:"pool-plaintext" help:"talk to the pool without Noise (local test pools only)"`
	JDS              string `toml:"jds" help:"JDS address host:port"`
	JDSKey           string `toml:"jds-authority-public-key" help:"JDS's authority public key (base58); empty: the pool's key"`
	UserIdentity     string `toml:"user-identity" help:"your account at the pool (channel user_identity and JDS user_identifier)"`
	DeclareTxIDs     bool   `toml:"declare-txids" help:"put txids instead of wtxids in DeclareMiningJob (2025 SRI JDS)"`
	PushSolution2025 bool   `toml:"push-solution-2025" help:"PushSolution in the 2025 SRI field order"`
}

// Config is jdc's whole configuration: TOML file keys, flags (-section.key)
// and environment variables (JDC_SECTION_KEY) all come from it.
type Config struct {
	Network string `toml:"network" help:"Bitcoin network: main, testnet4, test (testnet3), signet or regtest; picks the address format of solo.address"`
	Mode    string `toml:"mode" help:"full-template (declare every job's transactions to the JDS), coinbase-only (the pool sees only the coinbase) or solo (no pool)"`
	DataDir string `toml:"datadir" help:"directory for the devices' authority key and found blocks (default ~/.sv2kit/jdc/<network>)"`

	TP struct {
		Addr      string `toml:"addr" help:"Template Provider address host:port (tp, or sv2-tp: 8336 mainnet, 18447 regtest)"`
		Key       string `toml:"authority-public-key" help:"tp's authority public key (base58, printed by tp at start); empty: not checked (logged)"`
		Plaintext bool   `toml:"plaintext" help:"talk to tp without Noise (test setups only: sv2kit's tp and sv2-tp always use Noise)"`
	} `toml:"tp"`

	Upstreams []UpstreamConfig `toml:"upstreams" help:"ordered pool+JDS pairs, [[upstreams]] tables in the file (first = preferred)"`

	Solo struct {
		Address string `toml:"address" help:"payout address for solo mode and the solo fallback (or addr(<address>))"`
		Script  string `toml:"script" help:"payout output script in hex, instead of solo.address (or raw(<hex>))"`
	} `toml:"solo"`

	Coinbase struct {
		Tag string `toml:"tag" help:"bytes pushed into the coinbase scriptSig after the height (\"-\" for none)"`
	} `toml:"coinbase"`

	Devices struct {
		Listen          string        `toml:"listen" help:"Mining Protocol address devices connect to"`
		Plaintext       bool          `toml:"plaintext" help:"serve devices without Noise (trusted local network only)"`
		AuthoritySecret string        `toml:"authority-secret-key" help:"authority secret key devices pin (base58); empty: <datadir>/authority_secret_key, created on first start"`
		CertValidity    time.Duration `toml:"cert-validity" help:"validity of the certificates the authority key signs"`
		MaxConnections  int           `toml:"max-connections" help:"device connections at most"`
		SharesPerMinute float64       `toml:"shares-per-minute" help:"share rate vardiff keeps each channel near"`
		MinDifficulty   float64       `toml:"min-difficulty" help:"lowest share difficulty a channel gets (fractions allowed on test networks)"`
		ExtranonceSize  int           `toml:"extranonce-size" help:"extranonce bytes extended channels (proxies) roll themselves"`
		SendQueue       int           `toml:"send-queue" help:"messages queued per device before it is dropped as too slow"`
	} `toml:"devices"`

	Failover struct {
		ReturnAfter      time.Duration `toml:"return-after" help:"how long a pair that failed must stay healthy before jdc returns to it"`
		ProbeInterval    time.Duration `toml:"probe-interval" help:"a standby pair (warm, or failed and probed) gets a custom job on every new tip, and for template updates at most once per this long"`
		StartGrace       time.Duration `toml:"start-grace" help:"at start, how long to wait for a higher pair to connect before taking a lower one (devices mine solo meanwhile, if configured; 0: no wait)"`
		TokenTimeout     time.Duration `toml:"token-timeout" help:"JDS slow: no token within this long fails the pair"`
		DeclareTimeout   time.Duration `toml:"declare-timeout" help:"JDS slow: no DeclareMiningJob answer within this long fails the pair"`
		CustomJobTimeout time.Duration `toml:"custom-job-timeout" help:"pool slow: no SetCustomMiningJob answer within this long fails the pair"`
		TokenMaxAge      time.Duration `toml:"token-max-age" help:"a spare token older than this is not used (JDSes expire unused tokens)"`
		ShareRejectLimit int           `toml:"share-reject-limit" help:"shares of acknowledged jobs the pool may reject in a row (stale ones do not count) before the pair fails"`
		MaxPendingShares int           `toml:"max-pending-shares" help:"shares kept per job while its custom job waits for the pool (optimistic mining)"`
	} `toml:"failover"`

	Node struct {
		URL        string `toml:"url" help:"your node's JSON-RPC URL: found blocks are also submitted there (empty: off)"`
		CookieFile string `toml:"cookie-file" help:"node cookie file (default ~/.bitcoin[/<network dir>]/.cookie when user/password are unset)"`
		User       string `toml:"user" help:"rpcuser (instead of the cookie file)"`
		Password   string `toml:"password" help:"rpcpassword"`
	} `toml:"node"`

	Limits struct {
		Timeout      time.Duration `toml:"timeout" help:"bound on each connection setup and each request to tp"`
		ReconnectMin time.Duration `toml:"reconnect-min" help:"first wait before reconnecting a lost tp, pool or JDS"`
		ReconnectMax time.Duration `toml:"reconnect-max" help:"longest wait between reconnection attempts"`
	} `toml:"limits"`

	Metrics struct {
		Listen string `toml:"listen" help:"Prometheus /metrics address, e.g. 127.0.0.1:9265 (empty: off)"`
	} `toml:"metrics"`

	Log logging.Config `toml:"log"`
}

func defaults() *Config {
	c := &Config{Network: "main", Mode: "full-template"}
	c.Coinbase.Tag = jdc.DefaultTag
	c.Devices.Listen = DefaultDevicesListen
	c.Devices.CertValidity = noise.DefaultCertValidity
	c.Devices.MaxConnections = devices.DefaultMaxConns
	c.Devices.SharesPerMinute = devices.DefaultSharesPerMinute
	c.Devices.MinDifficulty = devices.DefaultMinDifficulty
	c.Devices.ExtranonceSize = devices.DefaultExtranonceSize
	c.Devices.SendQueue = devices.DefaultSendQueue
	c.Failover.ReturnAfter = jdc.DefaultReturnAfter
	c.Failover.StartGrace = jdc.DefaultStartGrace
	c.Failover.ProbeInterval = jdc.DefaultProbeInterval
	c.Failover.TokenTimeout = jdc.DefaultTokenTimeout
	c.Failover.DeclareTimeout = jdc.DefaultDeclareTimeout
	c.Failover.CustomJobTimeout = jdc.DefaultCustomJobTimeout
	c.Failover.TokenMaxAge = jdc.DefaultTokenMaxAge
	c.Failover.ShareRejectLimit = jdc.DefaultShareRejectLimit
	c.Failover.MaxPendingShares = jdc.DefaultMaxPendingShares
	c.Limits.Timeout = daemon.DefaultTimeout
	c.Limits.ReconnectMin = daemon.DefaultReconnectMin
	c.Limits.ReconnectMax = daemon.DefaultReconnectMax
	c.Log = logging.Defaults()
	return c
}

// defaultCookie is where Bitcoin Core writes its cookie for network: the
// data directory, or its network subdirectory off mainnet.
func defaultCookie(home string, nw chains.Network) string {
	return filepath.Join(home, ".bitcoin", nw.CoreDir, ".cookie")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "jdc:", err)
		os.Exit(1)
	}
}

// run is jdc: load the configuration, start, serve until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := defaults()
	if err := config.Load(cfg, "jdc", envPrefix, "", args, stderr); err != nil {
		return err
	}
	log, err := logging.New("jdc", cfg.Log, stderr)
	if err != nil {
		return err
	}
	a, err := setup(cfg, log)
	if err != nil {
		return err
	}
	defer a.close()
	if a.pub != "" {
		fmt.Fprintf(stdout, "jdc: devices on %s, authority public key (devices pin it): %s\n", a.d.DevicesAddr(), a.pub)
	} else {
		fmt.Fprintf(stdout, "jdc: devices on %s (plaintext)\n", a.d.DevicesAddr())
	}
	log.Info("Job Declarator Client starting", "network", cfg.Network, "mode", cfg.Mode, "tp", cfg.TP.Addr,
		"upstreams", len(cfg.Upstreams), "devices", a.d.DevicesAddr(), "solo_fallback", a.solo != nil, "datadir", cfg.DataDir)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	n := 1
	go func() { errs <- a.d.Run(ctx) }()
	if a.metrics != nil {
		n++
		log.Info("metrics on /metrics", "addr", a.metrics.Addr().String())
		go func() { errs <- a.metrics.Run(ctx, log.Named("metrics")) }()
	}
	var all []error
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil && ctx.Err() == nil {
			log.Error("stopped", "error", err)
			all = append(all, err)
		}
		cancel()
	}
	log.Info("Job Declarator Client stopped")
	return errors.Join(all...)
}

type app struct {
	d       *daemon.Daemon
	node    *node.Client
	metrics *metrics.Server
	pub     string
	solo    []byte
}

func (a *app) close() {
	if a.node != nil {
		a.node.Close()
	}
}

// setup checks the configuration and builds jdc; every error names the key
// at fault and the fix.
func setup(cfg *Config, log hclog.Logger) (*app, error) {
	nw, err := chains.Lookup(cfg.Network)
	if err != nil {
		return nil, err
	}
	params := nw.Params
	mode, err := jdc.ParseMode(cfg.Mode)
	if err != nil {
		return nil, config.Invalid("mode", err.Error(), "use full-template, coinbase-only or solo")
	}
	if cfg.DataDir == "" {
		home, _ := os.UserHomeDir()
		if home == "" {
			return nil, config.Invalid("datadir", "not set and no home directory", "set datadir")
		}
		cfg.DataDir = filepath.Join(home, ".sv2kit", "jdc", cfg.Network)
	}
	if cfg.TP.Addr == "" {
		return nil, config.Invalid("tp.addr", "not set", "set it to your Template Provider's host:port, e.g. 127.0.0.1:8336")
	}
	if _, _, err := net.SplitHostPort(cfg.TP.Addr); err != nil {
		return nil, config.Invalid("tp.addr", err.Error(), "use host:port")
	}
	tpKey, err := optKey("tp.authority-public-key", cfg.TP.Key)
	if err != nil {
		return nil, err
	}
	solo, err := soloScript(cfg, params)
	if err != nil {
		return nil, err
	}
	a := &app{solo: solo}

	var ups []daemon.Upstream
	switch {
	case mode == jdc.SoloMode && len(cfg.Upstreams) > 0:
		return nil, config.Invalid("upstreams", "solo mode uses no pool", "remove the [[upstreams]] tables or choose full-template or coinbase-only")
	case mode == jdc.SoloMode && solo == nil:
		return nil, config.Invalid("solo.address", "solo mode needs a payout", "set solo.address (or solo.script)")
	case mode != jdc.SoloMode && len(cfg.Upstreams) == 0:
		return nil, config.Invalid("upstreams", "no pool+JDS pair", "add an [[upstreams]] table with pool, jds, their authority keys and user-identity, or use mode = \"solo\"")
	}
	for i, u := range cfg.Upstreams {
		key := func(k string) string { return fmt.Sprintf("upstreams[%d].%s", i, k) }
		for _, x := range []struct{ k, v string }{{"pool", u.Pool}, {"jds", u.JDS}} {
			if x.v == "" {
				return nil, config.Invalid(key(x.k), "not set", "set host:port")
			}
			if _, _, err := net.SplitHostPort(x.v); err != nil {
				return nil, config.Invalid(key(x.k), err.Error(), "use host:port")
			}
		}
		if u.UserIdentity == "" {
			return nil, config.Invalid(key("user-identity"), "not set", "set your account name at the pool")
		}
		pk, err := optKey(key("pool-authority-public-key"), u.PoolKey)
		if err != nil {
			return nil, err
		}
		jk, err := optKey(key("jds-authority-public-key"), u.JDSKey)
		if err != nil {
			return nil, err
		}
		if jk == nil {
			jk = pk // SRI configures one key per pair
		}
		ups = append(ups, daemon.Upstream{PoolAddr: u.Pool, PoolAuthorityKey: pk, PoolPlaintext: u.PoolPlaintext,
			JDSAddr: u.JDS, JDSAuthorityKey: jk, UserIdentity: u.UserIdentity,
			DeclareTxIDs: u.DeclareTxIDs, PushSolution2025: u.PushSolution2025})
	}
	for _, c := range []struct {
		key string
		v   float64
	}{
		{"failover.return-after", float64(cfg.Failover.ReturnAfter)}, {"failover.probe-interval", float64(cfg.Failover.ProbeInterval)},
		{"failover.token-timeout", float64(cfg.Failover.TokenTimeout)},
		{"failover.declare-timeout", float64(cfg.Failover.DeclareTimeout)}, {"failover.custom-job-timeout", float64(cfg.Failover.CustomJobTimeout)},
		{"failover.share-reject-limit", float64(cfg.Failover.ShareRejectLimit)}, {"failover.token-max-age", float64(cfg.Failover.TokenMaxAge)}, {"failover.max-pending-shares", float64(cfg.Failover.MaxPendingShares)},
		{"devices.max-connections", float64(cfg.Devices.MaxConnections)}, {"devices.shares-per-minute", cfg.Devices.SharesPerMinute},
		{"devices.min-difficulty", cfg.Devices.MinDifficulty}, {"devices.extranonce-size", float64(cfg.Devices.ExtranonceSize)},
		{"devices.send-queue", float64(cfg.Devices.SendQueue)}, {"devices.cert-validity", float64(cfg.Devices.CertValidity)},
		{"limits.timeout", float64(cfg.Limits.Timeout)}, {"limits.reconnect-min", float64(cfg.Limits.ReconnectMin)},
		{"limits.reconnect-max", float64(cfg.Limits.ReconnectMax)},
	} {
		// Zero would silently mean "default" inside the packages.
		if c.v <= 0 {
			return nil, config.Invalid(c.key, "must be positive", "set a positive value or remove the key for the default")
		}
	}
	startGrace := cfg.Failover.StartGrace
	switch {
	case startGrace < 0:
		return nil, config.Invalid("failover.start-grace", "negative", "use 0s (no wait) or e.g. 3s")
	case startGrace == 0:
		startGrace = -1 // the core's zero is its default
	}
	if cfg.Devices.ExtranonceSize+2 > 16 {
		return nil, config.Invalid("devices.extranonce-size", fmt.Sprintf("%d leaves too little of a pool's extranonce for channel ids", cfg.Devices.ExtranonceSize),
			"use at most 14 (8 or less is typical)")
	}
	if _, _, err := net.SplitHostPort(cfg.Devices.Listen); err != nil {
		return nil, config.Invalid("devices.listen", err.Error(), "use host:port, e.g. "+DefaultDevicesListen)
	}
	dcfg := devices.Config{Listen: cfg.Devices.Listen, Plaintext: cfg.Devices.Plaintext, CertValidity: cfg.Devices.CertValidity,
		MaxConns: cfg.Devices.MaxConnections, SharesPerMinute: cfg.Devices.SharesPerMinute, MinDifficulty: cfg.Devices.MinDifficulty,
		ExtranonceSize: cfg.Devices.ExtranonceSize, SendQueue: cfg.Devices.SendQueue, Logger: log.Named("devices")}
	// Only a valid configuration creates the data directory or warns.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, config.Invalid("datadir", err.Error(), "choose a directory this user can create and write")
	}
	if tpKey == nil && !cfg.TP.Plaintext {
		log.Warn("tp.authority-public-key is not set: tp's identity is not checked")
	}
	if !cfg.Devices.Plaintext {
		k, err := deviceKey(cfg, log)
		if err != nil {
			return nil, err
		}
		dcfg.AuthorityKey = k
		a.pub = noise.EncodeAuthorityPublicKey(noise.PublicKey(k))
	}
	if cfg.Node.URL != "" {
		if cfg.Node.CookieFile == "" && cfg.Node.User == "" && cfg.Node.Password == "" {
			// As tp and jds: Bitcoin Core's cookie for the network.
			home, _ := os.UserHomeDir()
			if home == "" {
				return nil, config.Invalid("node.cookie-file", "not set and no home directory", "set node.cookie-file or node.user and node.password")
			}
			cfg.Node.CookieFile = defaultCookie(home, nw)
		}
		ncfg := node.Config{URL: cfg.Node.URL, User: cfg.Node.User, Password: cfg.Node.Password, CookieFile: cfg.Node.CookieFile,
			Network: nw.Name, Logger: log.Named("node")}
		if err := ncfg.Validate(); err != nil {
			return nil, prefixKey("node.", err)
		}
		if a.node, err = node.NewClient(ncfg); err != nil {
			return nil, prefixKey("node.", err)
		}
	}
	reg := metrics.NewRegistry()
	tag := cfg.Coinbase.Tag
	if tag == "" {
		tag = "-"
	}
	dc := daemon.Config{
		Core: jdc.Config{Mode: mode, SoloScript: solo, Tag: tag,
			ReturnAfter: cfg.Failover.ReturnAfter, StartGrace: startGrace, ProbeInterval: cfg.Failover.ProbeInterval, TokenTimeout: cfg.Failover.TokenTimeout,
			DeclareTimeout: cfg.Failover.DeclareTimeout, CustomJobTimeout: cfg.Failover.CustomJobTimeout,
			TokenMaxAge: cfg.Failover.TokenMaxAge, ShareRejectLimit: cfg.Failover.ShareRejectLimit, MaxPendingShares: cfg.Failover.MaxPendingShares},
		TPAddr: cfg.TP.Addr, TPAuthorityKey: tpKey, TPPlaintext: cfg.TP.Plaintext,
		Upstreams: ups, Devices: dcfg, Node: a.node, BlocksDir: filepath.Join(cfg.DataDir, "blocks"),
		Timeout: cfg.Limits.Timeout, ReconnectMin: cfg.Limits.ReconnectMin, ReconnectMax: cfg.Limits.ReconnectMax,
		Logger: log, Registerer: reg,
	}
	if dc.Core.SoloScript == nil {
		log.Warn("no solo.address: when no pool+JDS pair is usable the devices keep their last work (no solo fallback)")
	}
	d, err := daemon.New(dc)
	if err != nil {
		a.close()
		if strings.Contains(err.Error(), "address already in use") || strings.Contains(err.Error(), "listen") {
			return nil, config.Invalid("devices.listen", err.Error(), "choose a free host:port")
		}
		if strings.Contains(err.Error(), "tag") {
			return nil, config.Invalid("coinbase.tag", err.Error(), "use at most 40 bytes")
		}
		return nil, err
	}
	a.d = d
	if a.metrics, err = metrics.Listen(cfg.Metrics.Listen, reg); err != nil {
		a.close()
		return nil, config.Invalid("metrics.listen", err.Error(), "choose a free host:port or leave it empty")
	}
	return a, nil
}

func optKey(key, s string) (*[32]byte, error) {
	if s == "" {
		return nil, nil
	}
	k, err := noise.ParseAuthorityPublicKey(s)
	if err != nil {
		return nil, config.Invalid(key, err.Error(), "paste the base58 authority public key the server prints at start")
	}
	return &k, nil
}

// soloScript reads solo.address / solo.script, also in the output
// descriptor forms addr(...) and raw(...).
func soloScript(cfg *Config, params *chaincfg.Params) ([]byte, error) {
	addr, script := strings.TrimSpace(cfg.Solo.Address), strings.TrimSpace(cfg.Solo.Script)
	if strings.HasPrefix(addr, "raw(") && strings.HasSuffix(addr, ")") {
		addr, script = "", addr[4:len(addr)-1]
	}
	if strings.HasPrefix(addr, "addr(") && strings.HasSuffix(addr, ")") {
		addr = addr[5 : len(addr)-1]
	}
	if strings.HasPrefix(script, "raw(") && strings.HasSuffix(script, ")") {
		script = script[4 : len(script)-1]
	}
	switch {
	case addr != "" && script != "":
		return nil, config.Invalid("solo.script", "both solo.address and solo.script are set", "keep one")
	case script != "":
		b, err := hex.DecodeString(script)
		if err != nil || len(b) == 0 || len(b) > 10_000 {
			return nil, config.Invalid("solo.script", "not a hex output script", "use the hex scriptPubKey, e.g. 0014<20-byte key hash>")
		}
		return b, nil
	case addr != "":
		a, err := btcutil.DecodeAddress(addr, params)
		if err != nil || !a.IsForNet(params) {
			if err == nil {
				err = fmt.Errorf("not an address of %s", cfg.Network)
			}
			return nil, config.Invalid("solo.address", err.Error(), "use an address of the configured network")
		}
		b, err := txscript.PayToAddrScript(a)
		if err != nil {
			return nil, config.Invalid("solo.address", err.Error(), "use a standard address type")
		}
		return b, nil
	}
	return nil, nil
}

func deviceKey(cfg *Config, log hclog.Logger) (*btcec.PrivateKey, error) {
	if cfg.Devices.AuthoritySecret != "" {
		k, err := noise.ParseSecretKey(cfg.Devices.AuthoritySecret)
		if err != nil {
			return nil, config.Invalid("devices.authority-secret-key", err.Error(), "use the base58 secret key from sv2-keygen, or leave it empty for a key file")
		}
		return k, nil
	}
	path := filepath.Join(cfg.DataDir, "authority_secret_key")
	k, created, err := noise.LoadOrCreateKeyFile(path, nil)
	if err != nil {
		// Not "remove it": a new key would make every device's pinned key wrong.
		return nil, config.Invalid("devices.authority-secret-key", err.Error(),
			"fix the key file (mode 0600, base58), or set devices.authority-secret-key; a new key file means re-pinning every device")
	}
	if created {
		log.Info("created the devices' authority key", "file", path)
	}
	return k, nil
}

// prefixKey puts a section prefix on a config.Error's key.
func prefixKey(prefix string, err error) error {
	var ce *config.Error
	if errors.As(err, &ce) && ce.Key != "" && !strings.HasPrefix(ce.Key, prefix) {
		c := *ce
		c.Key = prefix + c.Key
		return &c
	}
	return err
}
