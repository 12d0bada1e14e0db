package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/internal/config"
	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/templates"
	"github.com/sv2kit/sv2kit/tpclient"
)

// TestBadConfig: a bad value stops tp at start with an error naming the key.
func TestBadConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tp.toml")
	if err := os.WriteFile(file, []byte("[templates]\nfee-detla = 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short.toml")
	if err := os.WriteFile(short, []byte("network = \"regtest\"\n[templates]\ninterval = \"500ms\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"-datadir", dir, "-node.user", "u", "-node.password", "p", "-server.listen", "127.0.0.1:0"}
	tests := []struct {
		name string
		args []string
		key  string
	}{
		{"unknown network", []string{"-network", "mainnet4"}, "network"},
		{"interval below 1s", []string{"-templates.interval", "100ms"}, "templates.interval"},
		{"interval not a duration", []string{"-templates.interval", "ten"}, "templates.interval"},
		{"negative fee delta", []string{"-templates.fee-delta", "-5"}, "templates.fee-delta"},
		{"bad node url", []string{"-node.url", "127.0.0.1:8332"}, "node.url"},
		{"cookie and password", []string{"-node.cookie-file", "/x/.cookie"}, "node.cookie-file"},
		{"zmq bind address", []string{"-node.zmq-hashblock", "tcp://0.0.0.0:28332"}, "node.zmq-hashblock"},
		{"bad authority key", []string{"-keys.authority-secret-key", "nope"}, "keys.authority-secret-key"},
		{"listen not host:port", []string{"-server.listen", "8336"}, "server.listen"},
		{"max clients zero", []string{"-server.max-clients", "0"}, "server.max-clients"},
		{"metrics address", []string{"-metrics.listen", "nohost"}, "metrics.listen"},
		{"mismatched public key", []string{"-keys.authority-secret-key", "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n",
			"-keys.authority-public-key", "9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh"}, "keys.authority-public-key"},
		{"misspelt key in file", []string{"-config", file}, "templates.fee-detla"},
		{"short interval in file", []string{"-config", short}, "templates.interval"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), append(append([]string{}, base...), tc.args...), &out, &errOut)
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Fatalf("error %v, want one naming %q", err, tc.key)
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("message %q does not name the key", err)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"-help"}, &out, &errOut)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-help: %v", err)
	}
	for _, k := range config.Keys(defaults(), envPrefix) {
		if !strings.Contains(errOut.String(), "-"+k.Path) || !strings.Contains(errOut.String(), k.Env) {
			t.Errorf("help lacks %s / %s", k.Path, k.Env)
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStartWithoutNode: tp starts with the node down (a closed port),
// creates its keys (0600), prints the authority key, accepts a client
// (which waits for a template) and stops on cancel.
func TestStartWithoutNode(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TP_NODE_URL", "http://127.0.0.1:1")
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := &syncBuf{}, &syncBuf{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-network", "regtest", "-datadir", dir, "-node.user", "u", "-node.password", "p",
			"-server.listen", "127.0.0.1:0", "-log.level", "debug"}, out, errOut)
	}()
	var line string
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(line, "authority public key") {
		if time.Now().After(deadline) {
			t.Fatalf("no start line; stderr:\n%s", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
		line = out.String()
	}
	fields := strings.Fields(line)
	pub, err := noise.ParseAuthorityPublicKey(fields[len(fields)-1])
	if err != nil {
		t.Fatalf("printed key: %v (%q)", err, line)
	}
	for _, f := range []string{"authority_secret_key", "static_secret_key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("key file %s: %v %v", f, err, st)
		}
	}
	addr := strings.TrimSuffix(fields[3], ",")
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	c, err := tpclient.Dial(dctx, tpclient.Config{Addr: addr, AuthorityPubKey: &pub})
	dcancel()
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(errOut.String(), "clients stay connected") {
		if time.Now().After(deadline) {
			t.Fatalf("no node-down hint; stderr:\n%s", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c.Err() != nil {
		t.Fatal(c.Err())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tp did not stop")
	}
}

// TestConfigDocumented: every key, flag and environment variable is in docs/tp.md.
func TestConfigDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/tp.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range config.Keys(defaults(), envPrefix) {
		for _, s := range []string{"`" + k.Path + "`", "`-" + k.Path + "`", "`" + k.Env + "`"} {
			if !strings.Contains(string(doc), s) {
				t.Errorf("docs/tp.md lacks %s", s)
			}
		}
	}
}

// TestRunRegtest: the daemon as configured by flags serves templates from
// a real btcd (regtest chain rules, long-poll) and serves metrics.
func TestRunRegtest(t *testing.T) {
	n := regtest.Start(t, regtest.Options{})
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := &syncBuf{}, &syncBuf{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-network", "regtest", "-datadir", dir, "-node.url", "http://" + n.RPCAddr(),
			"-node.user", n.RPCUser(), "-node.password", n.RPCPass(), "-server.listen", "127.0.0.1:0",
			"-metrics.listen", "127.0.0.1:0", "-log.format", "json"}, out, errOut)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "authority public key") {
		if time.Now().After(deadline) {
			t.Fatalf("no start line; stderr:\n%s", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	fields := strings.Fields(out.String())
	pub, err := noise.ParseAuthorityPublicKey(fields[len(fields)-1])
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	c, err := tpclient.Dial(dctx, tpclient.Config{Addr: strings.TrimSuffix(fields[3], ","), AuthorityPubKey: &pub, MaxAdditionalSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case m := <-c.Events():
		nt, ok := m.(*messages.NewTemplate)
		if !ok || !nt.FutureTemplate {
			t.Fatalf("first message %v", m)
		}
		h, _ := n.Height(ctx)
		// Regtest halves every 150 blocks: the subsidy at h+1.
		if want := uint64(templates.Subsidy(int64(h)+1, 150)); nt.CoinbaseTxValueRemaining != want {
			t.Fatalf("value remaining %d, want the regtest subsidy %d", nt.CoinbaseTxValueRemaining, want)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no template; stderr:\n%s", errOut.String())
	}
	if !strings.Contains(errOut.String(), `"@message":"metrics on /metrics"`) {
		t.Fatalf("no metrics line in the JSON log:\n%s", errOut.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tp did not stop")
	}
}
