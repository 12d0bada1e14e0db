package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/internal/chains"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/internal/config"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"-help"}, &out, &out)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "-failover.return-after") {
		t.Fatalf("err %v, usage:\n%s", err, out.String())
	}
}

// Bad configuration stops at start and names the key.
func TestConfigErrors(t *testing.T) {
	key, err := noise.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := noise.EncodeAuthorityPublicKey(noise.PublicKey(key))
	dir := t.TempDir()
	base := []string{"-network", "regtest", "-datadir", dir, "-devices.listen", "127.0.0.1:0", "-devices.plaintext=true"}
	upstream := func(extra string) string {
		p := filepath.Join(t.TempDir(), "jdc.toml")
		s := `
[tp]
addr = "127.0.0.1:1"
[[upstreams]]
pool = "127.0.0.1:2"
pool-authority-public-key = "` + pub + `"
jds = "127.0.0.1:3"
user-identity = "farm"
` + extra
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noUser := filepath.Join(t.TempDir(), "nouser.toml")
	if err := os.WriteFile(noUser, []byte("[tp]\naddr = \"127.0.0.1:1\"\n[[upstreams]]\npool = \"127.0.0.1:2\"\njds = \"127.0.0.1:3\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		key  string
	}{
		{"network", []string{"-network", "moon"}, "network"},
		{"mode", []string{"-tp.addr", "127.0.0.1:1", "-mode", "fast"}, "mode"},
		{"no tp", nil, "tp.addr"},
		{"tp key", []string{"-tp.addr", "127.0.0.1:1", "-tp.authority-public-key", "nope"}, "tp.authority-public-key"},
		{"no upstreams", []string{"-tp.addr", "127.0.0.1:1"}, "upstreams"},
		{"solo without address", []string{"-tp.addr", "127.0.0.1:1", "-mode", "solo"}, "solo.address"},
		{"solo bad address", []string{"-tp.addr", "127.0.0.1:1", "-mode", "solo", "-solo.address", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"}, "solo.address"},
		{"solo both", []string{"-tp.addr", "127.0.0.1:1", "-mode", "solo", "-solo.script", "51", "-solo.address", "x"}, "solo.script"},
		{"solo with upstreams", []string{"-config", upstream(""), "-mode", "solo", "-solo.script", "51"}, "upstreams"},
		{"upstream user", []string{"-config", noUser}, "upstreams[0].user-identity"},
		{"zero timeout", []string{"-config", upstream(""), "-failover.return-after", "0s"}, "failover.return-after"},
		{"negative start grace", []string{"-config", upstream(""), "-failover.start-grace", "-1s"}, "failover.start-grace"},
		{"metrics", []string{"-config", upstream(""), "-metrics.listen", "nope"}, "metrics.listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			args := append(append([]string(nil), base...), tc.args...)
			err := run(context.Background(), args, &out, &out)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("err %v (%T), want a config error", err, err)
			}
			if ce.Key != tc.key {
				t.Fatalf("key %q, want %q (%v)", ce.Key, tc.key, err)
			}
			if ce.Fix == "" && ce.Source == "" {
				t.Fatalf("no fix: %v", err)
			}
			// The error is the only output: no warning about a key that
			// is fine (tp.authority-public-key) ahead of it. (metrics.listen
			// is found bad only when bound, after every check.)
			if tc.key != "metrics.listen" && strings.Contains(out.String(), "not checked") {
				t.Fatalf("warning before the configuration error:\n%s", out.String())
			}
		})
	}
	// A configuration that does not start creates no data directory.
	fresh := filepath.Join(t.TempDir(), "jdc-data")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-network", "regtest", "-datadir", fresh}, &out, &out); err == nil {
		t.Fatal("no tp.addr: want an error")
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Fatalf("datadir created by a configuration that does not start (%v)", err)
	}
}

// A good file sets up every part; solo addresses parse for the network.
func TestSetup(t *testing.T) {
	key, _ := noise.GenerateKey(nil)
	pub := noise.EncodeAuthorityPublicKey(noise.PublicKey(key))
	p := filepath.Join(t.TempDir(), "jdc.toml")
	cfgText := `network = "regtest"
mode = "coinbase-only"
datadir = "` + t.TempDir() + `"
[tp]
addr = "127.0.0.1:1"
authority-public-key = "` + pub + `"
[[upstreams]]
pool = "127.0.0.1:2"
pool-authority-public-key = "` + pub + `"
jds = "127.0.0.1:3"
user-identity = "farm"
[[upstreams]]
pool = "127.0.0.1:4"
jds = "127.0.0.1:5"
jds-authority-public-key = "` + pub + `"
user-identity = "farm"
declare-txids = true
[solo]
address = "addr(bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080)"
[devices]
listen = "127.0.0.1:0"
`
	if err := os.WriteFile(p, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := defaults()
	if err := config.Load(cfg, "jdc", envPrefix, "", []string{"-config", p}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Upstreams) != 2 || !cfg.Upstreams[1].DeclareTxIDs {
		t.Fatalf("upstreams %+v", cfg.Upstreams)
	}
	a, err := setup(cfg, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	if len(a.solo) != 22 || a.pub == "" {
		t.Fatalf("solo %x pub %q", a.solo, a.pub)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "authority_secret_key")); err != nil {
		t.Fatal("devices key file not created")
	}
}

// docs/jdc.md documents every key, including the [[upstreams]] ones.
func TestDocsListEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/jdc.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range config.Keys(defaults(), envPrefix) {
		if !strings.Contains(string(doc), "`"+k.Path+"`") {
			t.Errorf("docs/jdc.md does not mention key %s", k.Path)
		}
	}
	// The reference table is the generated one, row for row: flag,
	// environment variable, default and meaning as the code has them.
	for _, row := range strings.Split(config.Markdown(defaults(), envPrefix), "\n") {
		if strings.HasPrefix(row, "| `") && !strings.Contains(string(doc), row+"\n") {
			t.Errorf("docs/jdc.md lacks the row (or has it out of date):\n%s", row)
		}
	}
	for _, k := range []string{"pool", "pool-authority-public-key", "pool-plaintext", "jds", "jds-authority-public-key",
		"user-identity", "declare-txids", "push-solution-2025"} {
		if !strings.Contains(string(doc), "`"+k+"`") {
			t.Errorf("docs/jdc.md does not mention upstream key %s", k)
		}
	}
}

// jdc starts without its peers (it keeps redialling) and stops cleanly.
func TestRunStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-network", "regtest", "-mode", "solo", "-solo.script", "51", "-datadir", t.TempDir(),
			"-tp.addr", "127.0.0.1:1", "-devices.listen", "127.0.0.1:0", "-metrics.listen", "127.0.0.1:0",
			"-limits.reconnect-min", "10ms"}, &out, &out)
	}()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("jdc did not stop")
	}
	if !strings.Contains(out.String(), "authority public key (devices pin it)") {
		t.Fatalf("output:\n%s", out.String())
	}
}

// node.url without credentials uses Bitcoin Core's cookie for the network,
// as tp and jds do, instead of refusing to start.
func TestDefaultCookie(t *testing.T) {
	for _, tc := range []struct{ network, want string }{
		{"main", "/h/.bitcoin/.cookie"},
		{"testnet4", "/h/.bitcoin/testnet4/.cookie"},
		{"test", "/h/.bitcoin/testnet3/.cookie"},
		{"signet", "/h/.bitcoin/signet/.cookie"},
		{"regtest", "/h/.bitcoin/regtest/.cookie"},
	} {
		nw, err := chains.Lookup(tc.network)
		if err != nil {
			t.Fatal(err)
		}
		if got := defaultCookie("/h", nw); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.network, got, tc.want)
		}
	}
	t.Setenv("HOME", t.TempDir())
	args := []string{"-network", "regtest", "-mode", "solo", "-solo.script", "51", "-tp.addr", "127.0.0.1:1",
		"-datadir", t.TempDir(), "-devices.listen", "127.0.0.1:0", "-devices.plaintext=true", "-node.url", "http://127.0.0.1:1"}
	cfg := defaults()
	if err := config.Load(cfg, "jdc", envPrefix, "", args, io.Discard); err != nil {
		t.Fatal(err)
	}
	a, err := setup(cfg, hclog.NewNullLogger())
	if err != nil {
		t.Fatalf("node.url without credentials: %v", err)
	}
	a.close()
	if want := filepath.Join(os.Getenv("HOME"), ".bitcoin", "regtest", ".cookie"); cfg.Node.CookieFile != want {
		t.Fatalf("cookie %q, want %q", cfg.Node.CookieFile, want)
	}
}
