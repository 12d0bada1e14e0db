package node

import (
	"github.com/sv2kit/sv2kit/internal/config"

	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults for Config's zero values.
const (
	DefaultTimeout         = 30 * time.Second
	DefaultLongPollTimeout = 10 * time.Minute
	DefaultMaxConcurrent   = 4
)

// Config says how to reach a node's JSON-RPC interface. The zero value of every
// field but URL is usable.
type Config struct {
	// URL of the RPC server, e.g. "http://127.0.0.1:8332". "https://" turns
	// TLS on (for a node behind a TLS proxy); anything else is plain HTTP,
	// which is what Bitcoin Core and Knots speak.
	URL string

	// User and Password are rpcuser/rpcpassword (or an rpcauth entry).
	// Leave both empty to use CookieFile.
	User     string
	Password string

	// CookieFile is the node's cookie file, Bitcoin Core's default
	// authentication: <datadir>/.cookie on mainnet, <datadir>/<network>/.cookie
	// otherwise. It is read on every new connection lane, so a node restart
	// that rewrites it is followed without restarting us.
	CookieFile string

	// Network is the chain the node must be on: "main", "test", "testnet4",
	// "signet" or "regtest" (btcd's "mainnet", "testnet3" and "simnet" are
	// accepted too). Empty skips the check in CheckNetwork.
	Network string

	// Timeout bounds every call but long-polls (default 30 s).
	Timeout time.Duration

	// LongPollTimeout bounds a getblocktemplate long-poll (default 10 min);
	// the caller simply polls again when it expires.
	LongPollTimeout time.Duration

	// MaxConcurrent is the number of calls in flight at once (default 4).
	// rpcclient serialises the calls of one client, so each slot is its own
	// rpcclient.Client; a long-poll holds one slot while it waits.
	MaxConcurrent int

	// Logger receives diagnostics; nil discards them.
	Logger hclog.Logger
}

// Validate checks the configuration without contacting the node. Errors are
// *config.Error; Key is the field name in lower case with dashes ("url",
// "cookie-file", ...), which a caller nesting the node config under a section
// may prefix.
func (c Config) Validate() error {
	if strings.TrimSpace(c.URL) == "" {
		return config.Invalid("url", "not set",
			`set it to the node's RPC address, e.g. "http://127.0.0.1:8332" (mainnet), 18443 (regtest), 38332 (signet), 48332 (testnet4)`)
	}
	if _, _, err := parseNodeURL(c.URL); err != nil {
		return config.Invalid("url", err.Error(),
			`use the form "http://host:port", e.g. "http://127.0.0.1:8332"`)
	}
	cookie := c.CookieFile != ""
	userpass := c.User != "" || c.Password != ""
	switch {
	case cookie && userpass:
		return config.Invalid("cookie-file", "set together with user/password",
			"use either the cookie file (Bitcoin Core's default) or rpcuser/rpcpassword, not both")
	case !cookie && !userpass:
		return config.Invalid("cookie-file", "no authentication configured",
			"set cookie-file to the node's <datadir>/.cookie (<datadir>/<network>/.cookie off mainnet), or set user and password to the node's rpcuser/rpcpassword")
	case userpass && c.User == "":
		return config.Invalid("user", "password set without a user",
			"set user to the node's rpcuser")
	case userpass && c.Password == "":
		return config.Invalid("password", "user set without a password",
			"set password to the node's rpcpassword")
	}
	if c.Network != "" {
		if _, ok := normalizeChain(c.Network); !ok {
			return config.Invalid("network", fmt.Sprintf("unknown network %q", c.Network),
				`use one of "main", "test", "testnet4", "signet", "regtest"`)
		}
	}
	if c.Timeout < 0 {
		return config.Invalid("timeout", fmt.Sprintf("negative (%v)", c.Timeout),
			"use a positive duration such as 30s, or leave it unset")
	}
	if c.LongPollTimeout < 0 {
		return config.Invalid("long-poll-timeout", fmt.Sprintf("negative (%v)", c.LongPollTimeout),
			"use a positive duration such as 10m, or leave it unset")
	}
	if c.MaxConcurrent < 0 {
		return config.Invalid("max-concurrent", fmt.Sprintf("negative (%d)", c.MaxConcurrent),
			"use a small positive number such as 4, or leave it unset")
	}
	return nil
}

// withDefaults returns c with zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.LongPollTimeout == 0 {
		c.LongPollTimeout = DefaultLongPollTimeout
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.Network != "" {
		c.Network, _ = normalizeChain(c.Network)
	}
	return c
}

// parseNodeURL returns the host:port (plus any path) rpcclient wants and
// whether TLS is on.
func parseNodeURL(raw string) (hostPath string, useTLS bool, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", false, fmt.Errorf("cannot parse %q: %v", raw, err)
	}
	switch u.Scheme {
	case "http":
	case "https":
		useTLS = true
	case "":
		return "", false, fmt.Errorf("%q has no scheme", raw)
	default:
		return "", false, fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	if u.User != nil {
		return "", false, fmt.Errorf("credentials in the URL are not supported")
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" || port == "" {
		return "", false, fmt.Errorf("%q needs a host and a port", raw)
	}
	return u.Host + strings.TrimSuffix(u.Path, "/"), useTLS, nil
}

// normalizeChain maps the chain names Core, Knots and btcd use to Core's
// (the "chain" field of getblockchaininfo).
func normalizeChain(name string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "main", "mainnet", "bitcoin":
		return "main", true
	case "test", "testnet", "testnet3":
		return "test", true
	case "testnet4":
		return "testnet4", true
	case "signet":
		return "signet", true
	case "regtest":
		return "regtest", true
	case "simnet":
		return "simnet", true
	}
	return "", false
}
