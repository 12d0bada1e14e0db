// Command tp is sv2kit's Template Provider: it builds Stratum V2 templates
// from any Bitcoin node's getblocktemplate (Bitcoin Core and Knots over
// JSON-RPC + ZMQ, btcd over JSON-RPC with long-poll) and serves them over
// the Template Distribution Protocol (Noise). See docs/tp.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sv2kit/sv2kit/internal/chains"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/internal/config"
	"github.com/sv2kit/sv2kit/internal/logging"
	"github.com/sv2kit/sv2kit/internal/metrics"
	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/provider"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/tpserver"
)

// envPrefix prefixes every environment variable (TP_NODE_URL, ...).
const envPrefix = "TP"

// Config is tp's whole configuration: TOML file keys, flags (-section.key)
// and environment variables (TP_SECTION_KEY) all come from it.
type Config struct {
	Network string `toml:"network" help:"Bitcoin network: main, testnet4, test (testnet3), signet or regtest; picks default ports and chain rules"`
	DataDir string `toml:"datadir" help:"directory for key files and found blocks (default ~/.sv2kit/tp/<network>)"`

	Node struct {
		URL          string        `toml:"url" help:"node JSON-RPC URL (default http://127.0.0.1:<RPC port of the network>: 8332, 48332, 18332, 38332, 18443)"`
		CookieFile   string        `toml:"cookie-file" help:"node cookie file (default ~/.bitcoin[/<network dir>]/.cookie when user/password are unset)"`
		User         string        `toml:"user" help:"rpcuser (instead of the cookie file)"`
		Password     string        `toml:"password" help:"rpcpassword"`
		ZMQHashBlock string        `toml:"zmq-hashblock" help:"node's zmqpubhashblock endpoint, e.g. tcp://127.0.0.1:28332 (empty: getblocktemplate long-poll)"`
		ZMQSequence  string        `toml:"zmq-sequence" help:"node's zmqpubsequence endpoint, e.g. tcp://127.0.0.1:28336 (empty: mempool polled every templates.interval)"`
		Timeout      time.Duration `toml:"timeout" help:"bound on each RPC call"`
		TipPoll      time.Duration `toml:"tip-poll-interval" help:"getbestblockhash safety poll (catches what ZMQ or long-poll missed)"`
	} `toml:"node"`

	Server struct {
		Listen           string        `toml:"listen" help:"TDP listen address (default 127.0.0.1:<sv2-tp port>: 8336 main, 48336 testnet4, 18336 test, 38336 signet, 18447 regtest)"`
		MaxClients       int           `toml:"max-clients" help:"maximum connected clients"`
		MaxClientsPerIP  int           `toml:"max-clients-per-ip" help:"maximum connections from one IP address (-1: no limit)"`
		HandshakeTimeout time.Duration `toml:"handshake-timeout" help:"bound on the Noise handshake"`
		SetupTimeout     time.Duration `toml:"setup-timeout" help:"bound from handshake to CoinbaseOutputConstraints"`
		SendQueue        int           `toml:"send-queue" help:"frames queued per client before it is dropped as too slow"`
		TxDataRate       float64       `toml:"tx-data-rate" help:"RequestTransactionData allowed per client per second"`
		TxDataBurst      int           `toml:"tx-data-burst" help:"RequestTransactionData burst per client"`
	} `toml:"server"`

	Keys struct {
		AuthoritySecretKey string        `toml:"authority-secret-key" help:"authority secret key (SRI base58 form); empty: <datadir>/authority_secret_key, created 0600 on first start"`
		AuthorityPublicKey string        `toml:"authority-public-key" help:"optional: the matching public key, checked against the secret key"`
		StaticSecretKey    string        `toml:"static-secret-key" help:"Noise static secret key; empty: <datadir>/static_secret_key, created 0600 on first start"`
		CertValidity       time.Duration `toml:"cert-validity" help:"validity of the certificates the authority key signs"`
	} `toml:"keys"`

	Templates struct {
		FeeDelta int64         `toml:"fee-delta" help:"send a new template when its fees rose by at least this many sats"`
		Interval time.Duration `toml:"interval" help:"minimum time between fee-update templates (at least 1s)"`
	} `toml:"templates"`

	Metrics struct {
		Listen string `toml:"listen" help:"Prometheus /metrics address, e.g. 127.0.0.1:9336 (empty: off)"`
	} `toml:"metrics"`

	Log logging.Config `toml:"log"`
}

func defaults() *Config {
	c := &Config{Network: "main"}
	c.Node.Timeout = 30 * time.Second
	c.Node.TipPoll = tpserver.DefaultTipPollInterval
	c.Server.MaxClients = provider.DefaultMaxClients
	c.Server.MaxClientsPerIP = tpserver.DefaultMaxClientsPerIP
	c.Server.HandshakeTimeout = tpserver.DefaultHandshakeTimeout
	c.Server.SetupTimeout = tpserver.DefaultSetupTimeout
	c.Server.SendQueue = tpserver.DefaultSendQueue
	c.Server.TxDataRate = provider.DefaultTxDataRate
	c.Server.TxDataBurst = provider.DefaultTxDataBurst
	c.Keys.CertValidity = noise.DefaultCertValidity
	c.Templates.FeeDelta = provider.DefaultFeeDelta
	c.Templates.Interval = provider.DefaultInterval
	c.Log = logging.Defaults()
	return c
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "tp:", err)
		os.Exit(1)
	}
}

// run is tp: load the configuration, start, serve until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := defaults()
	if err := config.Load(cfg, "tp", envPrefix, "", args, stderr); err != nil {
		return err
	}
	log, err := logging.New("tp", cfg.Log, stderr)
	if err != nil {
		return err
	}
	app, err := setup(cfg, log)
	if err != nil {
		return err
	}
	defer app.close()
	pub := noise.EncodeAuthorityPublicKey(noise.PublicKey(app.authority))
	fmt.Fprintf(stdout, "tp: TDP on %s, authority public key (clients: tp_authority_public_key): %s\n", app.server.Addr(), pub)
	log.Info("Template Provider starting", "network", cfg.Network, "listen", app.server.Addr().String(),
		"authority_public_key", pub, "node", app.node.URL(), "zmq_hashblock", cfg.Node.ZMQHashBlock,
		"zmq_sequence", cfg.Node.ZMQSequence, "datadir", cfg.DataDir)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	if app.metrics != nil {
		go func() { errc <- app.metrics.Run(ctx, log.Named("metrics")) }()
		log.Info("metrics on /metrics", "addr", app.metrics.Addr().String())
	} else {
		errc <- nil
	}
	err = app.server.Run(ctx)
	cancel()
	merr := <-errc
	log.Info("Template Provider stopped")
	return errors.Join(err, merr)
}

type app struct {
	server    *tpserver.Server
	node      *node.Client
	metrics   *metrics.Server
	authority *btcec.PrivateKey
}

func (a *app) close() { a.node.Close() }

// setup checks the configuration and builds everything; errors name the
// key at fault and the fix.
func setup(cfg *Config, log hclog.Logger) (*app, error) {
	nw, err := chains.Lookup(cfg.Network)
	if err != nil {
		return nil, err
	}
	home, _ := os.UserHomeDir()
	if cfg.DataDir == "" {
		if home == "" {
			return nil, config.Invalid("datadir", "not set and no home directory", "set datadir")
		}
		cfg.DataDir = filepath.Join(home, ".sv2kit", "tp", cfg.Network)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, config.Invalid("datadir", err.Error(), "choose a directory this user can create and write")
	}
	if cfg.Server.Listen == "" {
		cfg.Server.Listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(nw.TPPort))
	}
	if _, _, err := net.SplitHostPort(cfg.Server.Listen); err != nil {
		return nil, config.Invalid("server.listen", err.Error(), "use host:port, e.g. 127.0.0.1:8336 (0.0.0.0:8336 for every interface)")
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
	if cfg.Server.MaxClients < 1 {
		return nil, config.Invalid("server.max-clients", fmt.Sprintf("%d", cfg.Server.MaxClients), "set at least 1")
	}
	pcfg := provider.Config{
		FeeDelta:    cfg.Templates.FeeDelta,
		Interval:    cfg.Templates.Interval,
		MaxClients:  cfg.Server.MaxClients,
		TxDataRate:  cfg.Server.TxDataRate,
		TxDataBurst: cfg.Server.TxDataBurst,
	}
	if pcfg.FeeDelta == 0 {
		pcfg.FeeDelta = 1 // 0 would mean the default; "any rise" is what 0 asks for
	}
	pcfg.HalvingInterval = nw.HalvingInterval
	pcfg.NoRetargeting = nw.NoRetargeting
	pcfg.MinDifficultyBlocks = nw.MinDifficultyBlocks
	if err := pcfg.Validate(); err != nil {
		return nil, err
	}
	ncfg := node.Config{
		URL: cfg.Node.URL, User: cfg.Node.User, Password: cfg.Node.Password, CookieFile: cfg.Node.CookieFile,
		Network: nw.Name, Timeout: cfg.Node.Timeout, Logger: log.Named("node"),
	}
	if err := ncfg.Validate(); err != nil {
		return nil, prefixKey("node.", err)
	}
	zcfg := node.ZMQConfig{HashBlock: cfg.Node.ZMQHashBlock, Sequence: cfg.Node.ZMQSequence, Logger: log.Named("zmq")}
	if err := zcfg.Validate(); err != nil {
		return nil, prefixKey("node.", err)
	}
	authority, static, err := loadKeys(cfg, log)
	if err != nil {
		return nil, err
	}
	nc, err := node.NewClient(ncfg)
	if err != nil {
		return nil, prefixKey("node.", err)
	}
	reg := metrics.NewRegistry()
	srv, err := tpserver.New(tpserver.Config{
		Listen:           cfg.Server.Listen,
		AuthorityKey:     authority,
		StaticKey:        static,
		CertValidity:     cfg.Keys.CertValidity,
		MaxClientsPerIP:  cfg.Server.MaxClientsPerIP,
		HandshakeTimeout: cfg.Server.HandshakeTimeout,
		SetupTimeout:     cfg.Server.SetupTimeout,
		SendQueue:        cfg.Server.SendQueue,
		Provider:         pcfg,
		Node:             nc,
		ZMQ:              zcfg,
		TipPollInterval:  cfg.Node.TipPoll,
		DataDir:          cfg.DataDir,
		Registry:         reg,
		Logger:           log,
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	ms, err := metrics.Listen(cfg.Metrics.Listen, reg)
	if err != nil {
		_ = srv.Close()
		nc.Close()
		return nil, config.Invalid("metrics.listen", err.Error(), "choose a free host:port or leave it empty")
	}
	return &app{server: srv, node: nc, metrics: ms, authority: authority}, nil
}

// loadKeys returns the authority and static keys from the configuration or
// from key files in the data directory (created 0600 on first start).
func loadKeys(cfg *Config, log hclog.Logger) (authority, static *btcec.PrivateKey, err error) {
	if s := cfg.Keys.AuthoritySecretKey; s != "" {
		if authority, err = noise.ParseSecretKey(s); err != nil {
			return nil, nil, config.Invalid("keys.authority-secret-key", err.Error(), "use the base58 form sv2-keygen prints, or leave it empty to use a key file")
		}
	} else {
		path := filepath.Join(cfg.DataDir, "authority_secret_key")
		var created bool
		if authority, created, err = noise.LoadOrCreateKeyFile(path, nil); err != nil {
			return nil, nil, config.Invalid("keys.authority-secret-key", err.Error(), "fix the key file (mode 0600, base58) or set the key in the configuration")
		}
		if created {
			log.Info("new authority key created", "file", path)
		}
	}
	if s := cfg.Keys.AuthorityPublicKey; s != "" {
		pub, err := noise.ParseAuthorityPublicKey(s)
		if err != nil {
			return nil, nil, config.Invalid("keys.authority-public-key", err.Error(), "use the base58 form (starts with 9) or leave it empty")
		}
		if err := noise.CheckKeyPair(authority, pub); err != nil {
			return nil, nil, config.Invalid("keys.authority-public-key", err.Error(), "set the public key of keys.authority-secret-key, or leave it empty")
		}
	}
	if s := cfg.Keys.StaticSecretKey; s != "" {
		if static, err = noise.ParseSecretKey(s); err != nil {
			return nil, nil, config.Invalid("keys.static-secret-key", err.Error(), "use the base58 form sv2-keygen prints, or leave it empty to use a key file")
		}
	} else {
		path := filepath.Join(cfg.DataDir, "static_secret_key")
		if static, _, err = noise.LoadOrCreateKeyFile(path, nil); err != nil {
			return nil, nil, config.Invalid("keys.static-secret-key", err.Error(), "fix the key file (mode 0600, base58) or set the key in the configuration")
		}
	}
	return authority, static, nil
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
