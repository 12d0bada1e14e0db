// Command jds is sv2kit's Job Declarator Server: a sidecar a pool runs
// beside its own Bitcoin node (JSON-RPC + ZMQ, or polling for btcd). It
// serves the Job Declaration Protocol (Noise) to miners' JDCs, checks their
// declared jobs against its mempool mirror and its node, and gives the pool
// an API to check custom jobs and hand over found blocks. See docs/jds.md.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/declare"
	"github.com/sv2kit/sv2kit/internal/chains"
	"github.com/sv2kit/sv2kit/internal/config"
	"github.com/sv2kit/sv2kit/internal/logging"
	"github.com/sv2kit/sv2kit/internal/metrics"
	"github.com/sv2kit/sv2kit/mempool"
	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// envPrefix prefixes every environment variable (JDS_NODE_URL, ...).
const envPrefix = "JDS"

// DefaultAPIListen is the pool API's default address (localhost only).
const DefaultAPIListen = "127.0.0.1:34266"

// Config is jds's whole configuration: TOML file keys, flags (-section.key)
// and environment variables (JDS_SECTION_KEY) all come from it.
type Config struct {
	Network string `toml:"network" help:"Bitcoin network: main, testnet4, test (testnet3), signet or regtest; picks the node's default port, the address format and the subsidy schedule"`
	DataDir string `toml:"datadir" help:"directory for the authority key file and found blocks (default ~/.sv2kit/jds/<network>)"`

	Node struct {
		URL          string        `toml:"url" help:"node JSON-RPC URL (default http://127.0.0.1:<RPC port of the network>: 8332, 48332, 18332, 38332, 18443)"`
		CookieFile   string        `toml:"cookie-file" help:"node cookie file (default ~/.bitcoin[/<network dir>]/.cookie when user/password are unset)"`
		User         string        `toml:"user" help:"rpcuser (instead of the cookie file)"`
		Password     string        `toml:"password" help:"rpcpassword"`
		ZMQHashBlock string        `toml:"zmq-hashblock" help:"node's zmqpubhashblock endpoint, e.g. tcp://127.0.0.1:28332 (empty: getblocktemplate long-poll for new tips)"`
		ZMQSequence  string        `toml:"zmq-sequence" help:"node's zmqpubsequence endpoint, e.g. tcp://127.0.0.1:28336 (empty: the mempool mirror polls)"`
		ZMQRawTx     string        `toml:"zmq-rawtx" help:"node's zmqpubrawtx endpoint (optional, with zmq-sequence): transactions arrive with their bytes"`
		Timeout      time.Duration `toml:"timeout" help:"bound on each RPC call"`
		TipPoll      time.Duration `toml:"tip-poll-interval" help:"getbestblockhash safety poll (catches what ZMQ or long-poll missed)"`
	} `toml:"node"`

	Mempool struct {
		MaxBytes     int64         `toml:"max-bytes" help:"memory bound of the mempool mirror in bytes (raw transactions plus per-entry overhead)"`
		PollInterval time.Duration `toml:"poll-interval" help:"how often the mirror lists the node's mempool when there is no ZMQ"`
	} `toml:"mempool"`

	JDS struct {
		Listen          string        `toml:"listen" help:"Job Declaration Protocol listen address (Noise); 0.0.0.0:34264 to serve miners on every interface"`
		FullTemplate    bool          `toml:"full-template" help:"allow full-template mode (JDCs declare their transactions; DECLARE_TX_DATA)"`
		CoinbaseOnly    bool          `toml:"coinbase-only" help:"allow coinbase-only mode (JDCs only get tokens; the pool sees the coinbase alone)"`
		TokenLifetime   time.Duration `toml:"token-lifetime" help:"how long a token stays valid: unused allocation tokens, and declared jobs' tokens for the pool's custom-job check"`
		RequireSameUser bool          `toml:"require-same-user" help:"pool API: refuse a custom job whose channel user identity differs from the token's user_identifier"`
	} `toml:"jds"`

	Pool struct {
		PayoutAddress  string  `toml:"payout-address" help:"the pool's payout address: the first coinbase output of every job"`
		PayoutScript   string  `toml:"payout-script" help:"the pool's payout output script in hex, instead of payout-address"`
		PayoutMinShare float64 `toml:"payout-min-share" help:"share of the block reward (subsidy + known fees) the payout output must receive, in (0, 1]"`
	} `toml:"pool"`

	Keys struct {
		AuthoritySecretKey string        `toml:"authority-secret-key" help:"the pool's authority secret key (SRI base58 form); empty: <datadir>/authority_secret_key, created 0600 on first start"`
		AuthorityPublicKey string        `toml:"authority-public-key" help:"optional: the matching public key, checked against the secret key"`
		CertValidity       time.Duration `toml:"cert-validity" help:"validity of the certificates the authority key signs"`
	} `toml:"keys"`

	Limits struct {
		MaxConnections       int           `toml:"max-connections" help:"maximum JDC connections"`
		MaxConnectionsPerIP  int           `toml:"max-connections-per-ip" help:"maximum JDC connections from one IP address"`
		HandshakeTimeout     time.Duration `toml:"handshake-timeout" help:"bound on the Noise handshake"`
		MaxHandshakes        int           `toml:"max-handshakes" help:"Noise handshakes in flight at once"`
		SetupTimeout         time.Duration `toml:"setup-timeout" help:"bound from handshake to SetupConnection"`
		SendQueue            int           `toml:"send-queue" help:"frames queued per connection before it is dropped as too slow"`
		TokensPerConnection  int           `toml:"tokens-per-connection" help:"unused tokens kept per connection (the oldest is dropped beyond)"`
		TokenRate            float64       `toml:"token-rate" help:"AllocateMiningJobToken per connection per second (a faster client is disconnected)"`
		TokenBurst           int           `toml:"token-burst" help:"AllocateMiningJobToken burst per connection"`
		JobsPerConnection    int           `toml:"jobs-per-connection" help:"declared jobs kept per connection (the newest)"`
		Jobs                 int           `toml:"jobs" help:"declared jobs kept over all connections"`
		JobBytes             int           `toml:"job-bytes" help:"bytes of transactions JDCs provided (ProvideMissingTransactions) that the kept jobs may hold in total; beyond it the oldest jobs are dropped"`
		PendingPerConnection int           `toml:"pending-per-connection" help:"declarations per connection waiting for missing transactions"`
		MissingTxs           int           `toml:"missing-txs" help:"most transactions one ProvideMissingTransactions asks for"`
		MissingBytes         int           `toml:"missing-bytes" help:"most bytes one ProvideMissingTransactions.Success may carry"`
		MissingTimeout       time.Duration `toml:"missing-timeout" help:"how long a declaration waits for its missing transactions before it is refused (missing-txs)"`
		BlockWeight          int64         `toml:"block-weight" help:"maximum weight of a declared block"`
		BlockSigOps          int64         `toml:"block-sigops" help:"maximum (legacy) sigop cost of a declared block"`
		ProposalTimeout      time.Duration `toml:"proposal-timeout" help:"bound on the node's getblocktemplate proposal check of a declared block"`
		ConcurrentChecks     int           `toml:"concurrent-checks" help:"declarations checked at once over all connections (each may hold a 4 MB block until the node answers); one that waits longer than proposal-timeout for a slot is refused as busy"`
	} `toml:"limits"`

	API struct {
		Listen      string `toml:"listen" help:"pool HTTP/JSON API address (empty: off)"`
		AllowRemote bool   `toml:"allow-remote" help:"allow api.listen on a non-loopback address (the API has no authentication: put it behind your own)"`
	} `toml:"api"`

	Metrics struct {
		Listen string `toml:"listen" help:"Prometheus /metrics address, e.g. 127.0.0.1:9264 (empty: off)"`
	} `toml:"metrics"`

	Log logging.Config `toml:"log"`
}

func defaults() *Config {
	c := &Config{Network: "main"}
	c.Node.Timeout = 30 * time.Second
	c.Node.TipPoll = declare.DefaultTipPoll
	c.Mempool.MaxBytes = mempool.DefaultMaxBytes
	c.Mempool.PollInterval = mempool.DefaultPollInterval
	c.JDS.Listen = declare.DefaultListen
	c.JDS.FullTemplate = true
	c.JDS.CoinbaseOnly = true
	c.JDS.TokenLifetime = declare.DefaultTokenLifetime
	c.JDS.RequireSameUser = true
	c.Pool.PayoutMinShare = declare.DefaultPayoutMinShare
	c.Keys.CertValidity = noise.DefaultCertValidity
	l := &c.Limits
	l.MaxConnections = declare.DefaultMaxConnections
	l.MaxConnectionsPerIP = declare.DefaultMaxConnsPerIP
	l.HandshakeTimeout = noise.DefaultHandshakeTimeout
	l.MaxHandshakes = noise.DefaultMaxHandshakes
	l.SetupTimeout = declare.DefaultSetupTimeout
	l.SendQueue = declare.DefaultWriteQueue
	l.TokensPerConnection = declare.DefaultMaxTokensPerConn
	l.TokenRate = declare.DefaultTokenRate
	l.TokenBurst = declare.DefaultTokenBurst
	l.JobsPerConnection = declare.DefaultMaxJobsPerConn
	l.Jobs = declare.DefaultMaxJobs
	l.JobBytes = declare.DefaultMaxJobBytes
	l.PendingPerConnection = declare.DefaultMaxPendingPerConn
	l.MissingTxs = declare.DefaultMaxMissingTxs
	l.MissingBytes = declare.DefaultMaxMissingBytes
	l.MissingTimeout = declare.DefaultMissingTimeout
	l.BlockWeight = declare.DefaultMaxBlockWeight
	l.BlockSigOps = declare.DefaultMaxBlockSigOpsCost
	l.ProposalTimeout = declare.DefaultProposalTimeout
	l.ConcurrentChecks = declare.DefaultConcurrentChecks
	c.API.Listen = DefaultAPIListen
	c.Log = logging.Defaults()
	return c
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "jds:", err)
		os.Exit(1)
	}
}

// run is jds: load the configuration, start, serve until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := defaults()
	if err := config.Load(cfg, "jds", envPrefix, "", args, stderr); err != nil {
		return err
	}
	log, err := logging.New("jds", cfg.Log, stderr)
	if err != nil {
		return err
	}
	a, err := setup(cfg, log)
	if err != nil {
		return err
	}
	defer a.close()
	pub := noise.EncodeAuthorityPublicKey(noise.PublicKey(a.authority))
	fmt.Fprintf(stdout, "jds: JDP on %s, authority public key (miners: authority_pubkey): %s\n", a.ln.Addr(), pub)
	if a.apiLn != nil {
		fmt.Fprintf(stdout, "jds: pool API on http://%s\n", a.apiLn.Addr())
	}
	log.Info("Job Declarator Server starting", "network", cfg.Network, "listen", a.ln.Addr().String(),
		"authority_public_key", pub, "node", a.node.URL(), "mempool", a.mirror.Mode(), "full_template", cfg.JDS.FullTemplate,
		"coinbase_only", cfg.JDS.CoinbaseOnly, "payout_script", hex.EncodeToString(a.payout), "datadir", cfg.DataDir)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		what string
		err  error
	}
	results := make(chan result, 4)
	n := 0
	start := func(what string, f func() error) {
		n++
		go func() { results <- result{what, f()} }()
	}
	start("mempool mirror", func() error {
		err := a.mirror.Run(ctx)
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	})
	start("JDP server", func() error { return a.server.Serve(ctx, a.ln) })
	if a.apiLn != nil {
		start("pool API", func() error { return a.server.ServeAPI(ctx, a.apiLn) })
	}
	if a.metrics != nil {
		log.Info("metrics on /metrics", "addr", a.metrics.Addr().String())
		start("metrics", func() error { return a.metrics.Run(ctx, log.Named("metrics")) })
	}
	var errs []error
	for i := 0; i < n; i++ {
		r := <-results
		if r.err != nil && ctx.Err() == nil {
			log.Error("stopped", "part", r.what, "error", r.err)
			errs = append(errs, fmt.Errorf("%s: %w", r.what, r.err))
		}
		cancel() // one part ending stops the others
	}
	log.Info("Job Declarator Server stopped")
	return errors.Join(errs...)
}

type app struct {
	server    *declare.Server
	mirror    *mempool.Mirror
	node      *node.Client
	ln        net.Listener
	apiLn     net.Listener
	metrics   *metrics.Server
	authority *btcec.PrivateKey
	payout    []byte
}

func (a *app) close() {
	a.node.Close()
	if a.ln != nil {
		a.ln.Close()
	}
	if a.apiLn != nil {
		a.apiLn.Close()
	}
}

// setup checks the configuration and builds everything; errors name the
// key at fault and the fix.
func setup(cfg *Config, log hclog.Logger) (_ *app, err error) {
	nw, err := chains.Lookup(cfg.Network)
	if err != nil {
		return nil, err
	}
	home, _ := os.UserHomeDir()
	if cfg.DataDir == "" {
		if home == "" {
			return nil, config.Invalid("datadir", "not set and no home directory", "set datadir")
		}
		cfg.DataDir = filepath.Join(home, ".sv2kit", "jds", cfg.Network)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, config.Invalid("datadir", err.Error(), "choose a directory this user can create and write")
	}
	if _, _, err := net.SplitHostPort(cfg.JDS.Listen); err != nil {
		return nil, config.Invalid("jds.listen", err.Error(), "use host:port, e.g. 0.0.0.0:34264")
	}
	if cfg.API.Listen != "" {
		host, _, err := net.SplitHostPort(cfg.API.Listen)
		if err != nil {
			return nil, config.Invalid("api.listen", err.Error(), "use host:port, e.g. "+DefaultAPIListen)
		}
		if !cfg.API.AllowRemote && !isLoopback(host) {
			return nil, config.Invalid("api.listen", fmt.Sprintf("%q is not a loopback address and the API has no authentication", host),
				"listen on 127.0.0.1 (or ::1), or set api.allow-remote = true behind your own access control")
		}
	}
	payout, err := payoutScript(cfg, nw)
	if err != nil {
		return nil, err
	}
	pol := declare.Policy{
		PayoutScript: payout, PayoutMinShare: cfg.Pool.PayoutMinShare, HalvingInterval: nw.HalvingInterval,
		AllowFullTemplate: cfg.JDS.FullTemplate, AllowCoinbaseOnly: cfg.JDS.CoinbaseOnly,
		TokenLifetime: cfg.JDS.TokenLifetime, RequireSameUser: cfg.JDS.RequireSameUser,
		MaxTokensPerConn: cfg.Limits.TokensPerConnection, TokenBurst: cfg.Limits.TokenBurst, TokenRate: cfg.Limits.TokenRate,
		MaxJobsPerConn: cfg.Limits.JobsPerConnection, MaxJobs: cfg.Limits.Jobs, MaxJobBytes: cfg.Limits.JobBytes, MaxPendingPerConn: cfg.Limits.PendingPerConnection,
		MaxMissingTxs: cfg.Limits.MissingTxs, MaxMissingBytes: cfg.Limits.MissingBytes, MissingTimeout: cfg.Limits.MissingTimeout,
		MaxBlockWeight: cfg.Limits.BlockWeight, MaxBlockSigOpsCost: cfg.Limits.BlockSigOps,
	}
	if !(pol.PayoutMinShare > 0 && pol.PayoutMinShare <= 1) {
		return nil, config.Invalid("pool.payout-min-share", fmt.Sprintf("%v is not in (0, 1]; 0 would accept a coinbase that pays the pool nothing", pol.PayoutMinShare),
			"use a value in (0, 1], e.g. 1")
	}
	for _, c := range []struct {
		key string
		v   float64
	}{
		{"limits.tokens-per-connection", float64(pol.MaxTokensPerConn)}, {"limits.token-rate", pol.TokenRate},
		{"limits.token-burst", float64(pol.TokenBurst)}, {"limits.jobs-per-connection", float64(pol.MaxJobsPerConn)},
		{"limits.jobs", float64(pol.MaxJobs)}, {"limits.job-bytes", float64(pol.MaxJobBytes)}, {"limits.pending-per-connection", float64(pol.MaxPendingPerConn)},
		{"limits.missing-txs", float64(pol.MaxMissingTxs)}, {"limits.missing-bytes", float64(pol.MaxMissingBytes)},
		{"limits.block-weight", float64(pol.MaxBlockWeight)}, {"limits.block-sigops", float64(pol.MaxBlockSigOpsCost)},
		{"jds.token-lifetime", float64(pol.TokenLifetime)}, {"limits.missing-timeout", float64(pol.MissingTimeout)},
		{"limits.max-connections", float64(cfg.Limits.MaxConnections)}, {"limits.max-connections-per-ip", float64(cfg.Limits.MaxConnectionsPerIP)},
		{"limits.setup-timeout", float64(cfg.Limits.SetupTimeout)}, {"limits.send-queue", float64(cfg.Limits.SendQueue)},
		{"limits.proposal-timeout", float64(cfg.Limits.ProposalTimeout)}, {"limits.handshake-timeout", float64(cfg.Limits.HandshakeTimeout)},
		{"limits.max-handshakes", float64(cfg.Limits.MaxHandshakes)}, {"limits.concurrent-checks", float64(cfg.Limits.ConcurrentChecks)},
		{"keys.cert-validity", float64(cfg.Keys.CertValidity)}, {"node.timeout", float64(cfg.Node.Timeout)},
		{"node.tip-poll-interval", float64(cfg.Node.TipPoll)}, {"mempool.poll-interval", float64(cfg.Mempool.PollInterval)},
	} {
		// Zero or less would silently mean "default" inside the packages
		// (and NaN would pass a "<= 0" test).
		if !(c.v > 0) || math.IsInf(c.v, 1) {
			return nil, config.Invalid(c.key, fmt.Sprintf("%v is not a positive finite value", cfgValue(c.key, c.v)),
				"set a positive value or remove the key for the default")
		}
	}
	pol.Normalize()
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	if cfg.Node.URL == "" {
		cfg.Node.URL = "http://127.0.0.1:" + strconv.Itoa(nw.RPCPort)
	}
	if cfg.Node.CookieFile == "" && cfg.Node.User == "" && cfg.Node.Password == "" {
		if home == "" {
			return nil, config.Invalid("node.cookie-file", "not set and no home directory", "set node.cookie-file or node.user and node.password")
		}
		cfg.Node.CookieFile = filepath.Join(home, ".bitcoin", nw.CoreDir, ".cookie")
	}
	ncfg := node.Config{URL: cfg.Node.URL, User: cfg.Node.User, Password: cfg.Node.Password, CookieFile: cfg.Node.CookieFile,
		Network: nw.Name, Timeout: cfg.Node.Timeout, Logger: log.Named("node")}
	if err := ncfg.Validate(); err != nil {
		return nil, prefixKey("node.", err)
	}
	zcfg := node.ZMQConfig{HashBlock: cfg.Node.ZMQHashBlock, Sequence: cfg.Node.ZMQSequence, RawTx: cfg.Node.ZMQRawTx, Logger: log.Named("zmq")}
	if err := zcfg.Validate(); err != nil {
		return nil, prefixKey("node.", err)
	}
	if cfg.Node.ZMQRawTx != "" && cfg.Node.ZMQSequence == "" {
		return nil, config.Invalid("node.zmq-rawtx", "rawtx needs the sequence topic", "set node.zmq-sequence too, or leave node.zmq-rawtx empty")
	}
	mcfg := mempool.Config{ZMQSequence: cfg.Node.ZMQSequence, ZMQRawTx: cfg.Node.ZMQRawTx, PollInterval: cfg.Mempool.PollInterval,
		MaxBytes: cfg.Mempool.MaxBytes, Logger: log.Named("mempool")}
	if err := mcfg.Validate(); err != nil {
		return nil, prefixKey("mempool.", err)
	}
	authority, err := loadKey(cfg, log)
	if err != nil {
		return nil, err
	}
	nc, err := node.NewClient(ncfg)
	if err != nil {
		return nil, prefixKey("node.", err)
	}
	a := &app{node: nc, authority: authority, payout: payout}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if a.mirror, err = mempool.New(mcfg, nc); err != nil {
		return nil, prefixKey("mempool.", err)
	}
	reg := metrics.NewRegistry()
	srv, err := declare.New(declare.Config{
		AuthorityKey: authority, CertValidity: cfg.Keys.CertValidity,
		HandshakeTimeout: cfg.Limits.HandshakeTimeout, MaxHandshakes: cfg.Limits.MaxHandshakes,
		Policy: pol, Node: nc, Txs: a.mirror.Store(),
		ZMQ:             node.ZMQConfig{HashBlock: cfg.Node.ZMQHashBlock, Sequence: cfg.Node.ZMQSequence},
		TipPollInterval: cfg.Node.TipPoll, BlockDir: filepath.Join(cfg.DataDir, "blocks"),
		MaxConnections: cfg.Limits.MaxConnections, MaxConnsPerIP: cfg.Limits.MaxConnectionsPerIP,
		SetupTimeout: cfg.Limits.SetupTimeout, WriteQueue: cfg.Limits.SendQueue, ProposalTimeout: cfg.Limits.ProposalTimeout,
		ConcurrentChecks: cfg.Limits.ConcurrentChecks,
		Logger:           log,
	})
	if err != nil {
		return nil, err
	}
	// Metrics need the core, which New builds: register them now.
	declareMetrics := declare.NewMetrics(reg, srv.Core())
	srv.SetMetrics(declareMetrics)
	registerMirrorMetrics(reg, a.mirror)
	a.server = srv
	if a.ln, err = net.Listen("tcp", cfg.JDS.Listen); err != nil {
		return nil, config.Invalid("jds.listen", err.Error(), "choose a free host:port")
	}
	if cfg.API.Listen != "" {
		if a.apiLn, err = net.Listen("tcp", cfg.API.Listen); err != nil {
			return nil, config.Invalid("api.listen", err.Error(), "choose a free host:port or leave it empty")
		}
	}
	if a.metrics, err = metrics.Listen(cfg.Metrics.Listen, reg); err != nil {
		return nil, config.Invalid("metrics.listen", err.Error(), "choose a free host:port or leave it empty")
	}
	return a, nil
}

// cfgValue shows a value of the positive-value check as the operator
// wrote it: durations as durations.
func cfgValue(key string, v float64) any {
	if strings.HasSuffix(key, "timeout") || strings.HasSuffix(key, "interval") || strings.HasSuffix(key, "validity") || strings.HasSuffix(key, "lifetime") {
		return time.Duration(v)
	}
	return v
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// payoutScript turns pool.payout-address or pool.payout-script into the
// output script.
func payoutScript(cfg *Config, nw chains.Network) ([]byte, error) {
	addr, script := strings.TrimSpace(cfg.Pool.PayoutAddress), strings.TrimSpace(cfg.Pool.PayoutScript)
	switch {
	case addr != "" && script != "":
		return nil, config.Invalid("pool.payout-script", "both pool.payout-address and pool.payout-script are set", "set only one of them")
	case addr != "":
		a, err := btcutil.DecodeAddress(addr, nw.Params)
		if err != nil {
			return nil, config.Invalid("pool.payout-address", err.Error(), "use an address of network "+cfg.Network)
		}
		if !a.IsForNet(nw.Params) {
			return nil, config.Invalid("pool.payout-address", "address of another network", "use an address of network "+cfg.Network)
		}
		s, err := txscript.PayToAddrScript(a)
		if err != nil {
			return nil, config.Invalid("pool.payout-address", err.Error(), "use a P2PKH, P2SH, P2WPKH, P2WSH or P2TR address")
		}
		return s, nil
	case script != "":
		s, err := hex.DecodeString(script)
		if err != nil || len(s) == 0 {
			return nil, config.Invalid("pool.payout-script", "not a hex script", "give the output script in hex, e.g. 0014<20-byte key hash>")
		}
		return s, nil
	}
	return nil, config.Invalid("pool.payout-address", "no pool payout output configured", "set pool.payout-address (or pool.payout-script, hex)")
}

// loadKey returns the authority key from the configuration or from the key
// file in the data directory (created 0600 on first start).
func loadKey(cfg *Config, log hclog.Logger) (*btcec.PrivateKey, error) {
	var authority *btcec.PrivateKey
	var err error
	if s := cfg.Keys.AuthoritySecretKey; s != "" {
		if authority, err = noise.ParseSecretKey(s); err != nil {
			return nil, config.Invalid("keys.authority-secret-key", err.Error(), "use the base58 form sv2-keygen prints, or leave it empty to use a key file")
		}
	} else {
		path := filepath.Join(cfg.DataDir, "authority_secret_key")
		var created bool
		if authority, created, err = noise.LoadOrCreateKeyFile(path, nil); err != nil {
			return nil, config.Invalid("keys.authority-secret-key", err.Error(), "fix the key file (mode 0600, base58) or set the key in the configuration")
		}
		if created {
			log.Info("new authority key created", "file", path)
		}
	}
	if s := cfg.Keys.AuthorityPublicKey; s != "" {
		pub, err := noise.ParseAuthorityPublicKey(s)
		if err != nil {
			return nil, config.Invalid("keys.authority-public-key", err.Error(), "use the base58 form (starts with 9) or leave it empty")
		}
		if err := noise.CheckKeyPair(authority, pub); err != nil {
			return nil, config.Invalid("keys.authority-public-key", err.Error(), "set the public key of keys.authority-secret-key, or leave it empty")
		}
	}
	return authority, nil
}

// registerMirrorMetrics exports the mempool mirror's counters, among them
// the lookups that missed: the rate at which declarations find a
// transaction missing.
func registerMirrorMetrics(reg *prometheus.Registry, m *mempool.Mirror) {
	gauge := func(name, help string, f func(mempool.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(m.Stats()) })
	}
	counter := func(name, help string, f func(mempool.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(m.Stats()) })
	}
	reg.MustRegister(
		gauge("jds_mempool_transactions", "Transactions in the mempool mirror.", func(s mempool.Stats) float64 { return float64(s.Count) }),
		gauge("jds_mempool_bytes", "Accounted bytes of the mempool mirror (raw plus overhead).", func(s mempool.Stats) float64 { return float64(s.Bytes) }),
		gauge("jds_mempool_in_sync", "1 when the mirror's last exchange with the node succeeded.", func(s mempool.Stats) float64 {
			if s.InSync {
				return 1
			}
			return 0
		}),
		counter("jds_mempool_lookup_hits_total", "Declared wtxids found in the mirror.", func(s mempool.Stats) float64 { return float64(s.LookupHits) }),
		counter("jds_mempool_lookup_misses_total", "Declared wtxids not in the mirror (asked for with ProvideMissingTransactions).", func(s mempool.Stats) float64 { return float64(s.LookupMisses) }),
		counter("jds_mempool_resyncs_total", "Full listings of the node's mempool diffed against the mirror.", func(s mempool.Stats) float64 { return float64(s.Resyncs) }),
		counter("jds_mempool_gaps_total", "ZMQ sequence gaps.", func(s mempool.Stats) float64 { return float64(s.Gaps) }),
		counter("jds_mempool_evictions_total", "Transactions dropped or not admitted because of mempool.max-bytes.", func(s mempool.Stats) float64 { return float64(s.Evictions) }),
	)
}

// prefixKey puts a section in front of the key of a *config.Error.
func prefixKey(prefix string, err error) error {
	var ce *config.Error
	if errors.As(err, &ce) && !strings.HasPrefix(ce.Key, prefix) {
		c := *ce
		c.Key = prefix + c.Key
		return &c
	}
	return err
}
