package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/declare"
	"github.com/sv2kit/sv2kit/internal/config"
	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/mempool"
	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// TestBadConfig: a bad value stops jds at start with an error naming the key.
func TestBadConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "jds.toml")
	if err := os.WriteFile(file, []byte("[pool]\npayout-adress = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"-datadir", dir, "-node.user", "u", "-node.password", "p", "-jds.listen", "127.0.0.1:0", "-api.listen", "127.0.0.1:0",
		"-network", "regtest"}
	payout := []string{"-pool.payout-script", "0014" + strings.Repeat("ab", 20)}
	tests := []struct {
		name string
		args []string
		key  string
	}{
		{"no payout", nil, "pool.payout-address"},
		{"bad address", []string{"-pool.payout-address", "bc1qnotanaddress"}, "pool.payout-address"},
		{"mainnet address on regtest", []string{"-pool.payout-address", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"}, "pool.payout-address"},
		{"both address and script", append([]string{"-pool.payout-address", "bcrt1qar0srrr7xfkvy5l643lydnw9re59gtzzu5ptd7"}, payout...), "pool.payout-script"},
		{"bad script", []string{"-pool.payout-script", "zz"}, "pool.payout-script"},
		{"share above 1", append([]string{"-pool.payout-min-share", "1.5"}, payout...), "pool.payout-min-share"},
		{"no mode", append([]string{"-jds.full-template=false", "-jds.coinbase-only=false"}, payout...), "jds.full-template"},
		{"remote API", append([]string{"-api.listen", "0.0.0.0:34266"}, payout...), "api.listen"},
		{"listen not host:port", append([]string{"-jds.listen", "34264"}, payout...), "jds.listen"},
		{"zero connections", append([]string{"-limits.max-connections", "0"}, payout...), "limits.max-connections"},
		{"block weight too high", append([]string{"-limits.block-weight", "5000000"}, payout...), "limits.block-weight"},
		{"bad authority key", append([]string{"-keys.authority-secret-key", "nope"}, payout...), "keys.authority-secret-key"},
		{"unknown network", append([]string{"-network", "mainnet4"}, payout...), "network"},
		{"bad node url", append([]string{"-node.url", "127.0.0.1:8332"}, payout...), "node.url"},
		{"rawtx without sequence", append([]string{"-node.zmq-rawtx", "tcp://127.0.0.1:28333"}, payout...), "node.zmq-rawtx"},
		{"misspelt key in file", []string{"-config", file}, "pool.payout-adress"},
		// NaN passes every "x <= 0" and "x > 1" check; these would turn off
		// the payout check and the token rate limit.
		{"payout share NaN", append([]string{"-pool.payout-min-share", "NaN"}, payout...), "pool.payout-min-share"},
		{"token rate NaN", append([]string{"-limits.token-rate", "NaN"}, payout...), "limits.token-rate"},
		{"token rate infinite", append([]string{"-limits.token-rate", "+Inf"}, payout...), "limits.token-rate"},
		// Zero or negative durations the packages would silently replace.
		{"negative cert validity", append([]string{"-keys.cert-validity", "-5s"}, payout...), "keys.cert-validity"},
		{"zero tip poll", append([]string{"-node.tip-poll-interval", "0"}, payout...), "node.tip-poll-interval"},
		{"negative tip poll", append([]string{"-node.tip-poll-interval", "-1s"}, payout...), "node.tip-poll-interval"},
		{"zero mempool poll", append([]string{"-mempool.poll-interval", "0"}, payout...), "mempool.poll-interval"},
		{"zero node timeout", append([]string{"-node.timeout", "0"}, payout...), "node.timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			// A configuration accepted by mistake would serve until ctx ends.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err := run(ctx, append(append([]string{}, base...), tc.args...), &out, &errOut)
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

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// TestRunRegtest starts jds against a real btcd, prints the authority key,
// serves a JDC over Noise and the pool API, and stops cleanly.
func TestRunRegtest(t *testing.T) {
	n := regtest.Start(t, regtest.Options{})
	dir := t.TempDir()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-network", "regtest", "-datadir", dir, "-node.url", "http://" + n.RPCAddr(),
			"-node.user", n.RPCUser(), "-node.password", n.RPCPass(), "-jds.listen", "127.0.0.1:0", "-api.listen", "127.0.0.1:0",
			"-metrics.listen", "127.0.0.1:0", "-pool.payout-address", n.Wallet().Address().String(), "-node.tip-poll-interval", "200ms"},
			pw, &errOut)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var jdpAddr, pubStr, apiURL string
	for (jdpAddr == "" || apiURL == "") && sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "jds: JDP on "); ok {
			f := strings.Fields(rest)
			jdpAddr = strings.TrimSuffix(f[0], ",")
			pubStr = f[len(f)-1]
		}
		if rest, ok := strings.CutPrefix(line, "jds: pool API on "); ok {
			apiURL = rest
		}
	}
	go io.Copy(io.Discard, pr)
	if jdpAddr == "" || apiURL == "" {
		t.Fatalf("jds did not print its addresses; log:\n%s", errOut.b.String())
	}
	pub, err := noise.ParseAuthorityPublicKey(pubStr)
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	c, err := noise.Dial(dctx, "tcp", jdpAddr, &noise.Config{AuthorityPubKey: &pub})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.WriteMessage(&messages.SetupConnection{Protocol: 1, MinVersion: 2, MaxVersion: 2, Flags: 1}, codec.Options{}); err != nil {
		t.Fatal(err)
	}
	if m, _, err := messages.Read(c, codec.Options{}); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(*messages.SetupConnectionSuccess); !ok {
		t.Fatalf("%#v", m)
	}
	if err := c.WriteMessage(&messages.AllocateMiningJobToken{UserIdentifier: "u", RequestID: 7}, codec.Options{}); err != nil {
		t.Fatal(err)
	}
	m, _, err := messages.Read(c, codec.Options{})
	tok, ok := m.(*messages.AllocateMiningJobTokenSuccess)
	if err != nil || !ok || !bytes.HasSuffix(tok.CoinbaseTxOutputs, n.Wallet().PkScript()) {
		t.Fatalf("%#v %v", m, err)
	}
	// The pool API answers (a full-template token with no declared job).
	v, err := declare.NewHTTPClient(apiURL).ValidateCustomJob(ctx, "u", &messages.SetCustomMiningJob{MiningJobToken: tok.MiningJobToken})
	if err != nil || v.Code != declare.CodeJobNotYetValidated {
		t.Fatalf("%+v %v", v, err)
	}
	// The metrics say so.
	errOut.mu.Lock()
	logs := errOut.b.String()
	errOut.mu.Unlock()
	_, rest, _ := strings.Cut(logs, "metrics on /metrics: addr=")
	metricsAddr, _, _ := strings.Cut(rest, "\n")
	want := []string{"jds_tokens_allocated_total 1", `jds_custom_job_validations_total{reason="job-not-yet-validated",result="rejected"} 1`,
		"jds_connections 1", "jds_mempool_in_sync 1"}
	var missing []string
	for try := 0; try < 50; try++ { // the mirror's first sync may still run
		resp, err := http.Get("http://" + strings.TrimSpace(metricsAddr) + "/metrics")
		if err != nil {
			t.Fatalf("metrics (%q): %v", metricsAddr, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = missing[:0]
		for _, w := range want {
			if !strings.Contains(string(body), w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("metrics lack %q", missing)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("jds did not stop")
	}
}

// TestDocsListEveryKey: docs/jds.md names every configuration key, flag
// and environment variable.
func TestDocsListEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/jds.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range config.Keys(defaults(), envPrefix) {
		for _, s := range []string{"`" + k.Path + "`", "`-" + k.Path + "`", "`" + k.Env + "`"} {
			if !bytes.Contains(doc, []byte(s)) {
				t.Errorf("docs/jds.md does not mention %s", s)
			}
		}
	}
	// The reference table is the generated one, row for row and nothing
	// else: flag, environment variable, default and meaning as the code
	// has them, no stale rows left behind.
	want := strings.Split(strings.TrimRight(config.Markdown(defaults(), envPrefix), "\n"), "\n")
	got := docTable(string(doc), want[0])
	if len(got) == 0 {
		t.Fatalf("docs/jds.md has no table starting %q", want[0])
	}
	for i := 0; i < len(want) || i < len(got); i++ {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			t.Errorf("docs/jds.md config table row %d:\n got: %s\nwant: %s", i+1, g, w)
		}
	}
}

// docTable returns the lines of the Markdown table in doc whose first line
// is header.
func docTable(doc, header string) []string {
	var rows []string
	for _, line := range strings.Split(doc, "\n") {
		switch {
		case len(rows) == 0 && line == header:
			rows = append(rows, line)
		case len(rows) > 0 && strings.HasPrefix(line, "|"):
			rows = append(rows, line)
		case len(rows) > 0:
			return rows
		}
	}
	return rows
}

// TestDocsListMirrorMetrics: docs/jds.md names every mempool mirror metric
// jds exports (the declare package's own test covers the JDS's).
func TestDocsListMirrorMetrics(t *testing.T) {
	doc, err := os.ReadFile("../../docs/jds.md")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := node.NewClient(node.Config{URL: "http://127.0.0.1:1", User: "u", Password: "p", Network: "regtest"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	m, err := mempool.New(mempool.Config{}, nc)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	registerMirrorMetrics(reg, m)
	families, err := reg.Gather()
	if err != nil || len(families) == 0 {
		t.Fatalf("%d families, %v", len(families), err)
	}
	for _, f := range families {
		if !bytes.Contains(doc, []byte("`"+f.GetName()+"`")) {
			t.Errorf("docs/jds.md does not list `%s`", f.GetName())
		}
	}
}

// TestDocsJSONExamples: every JSON answer shown in docs/jds.md is what the
// pool API's types encode, field for field and in order.
func TestDocsJSONExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/jds.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	in := false
	for _, line := range strings.Split(string(doc), "\n") {
		switch {
		case line == "```json":
			in = true
			continue
		case strings.HasPrefix(line, "```"):
			in = false
		}
		if !in || strings.TrimSpace(line) == "" {
			continue
		}
		var v any
		switch {
		case strings.HasPrefix(line, `{"ok":`):
			v = &declare.Verdict{}
		case strings.HasPrefix(line, `{"hash":`):
			v = &declare.BlockResult{}
		case strings.HasPrefix(line, `{"error":`):
			v = &declare.ErrorResponse{}
		default:
			t.Errorf("docs/jds.md: JSON example of no known answer: %s", line)
			continue
		}
		d := json.NewDecoder(strings.NewReader(line))
		d.DisallowUnknownFields()
		if err := d.Decode(v); err != nil {
			t.Errorf("docs/jds.md: %s: %v", line, err)
			continue
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != line {
			t.Errorf("docs/jds.md example\n %s\nbut jds answers\n %s", line, out)
		}
		n++
	}
	if n < 3 {
		t.Errorf("only %d JSON examples checked", n)
	}
}

// TestDocsRequestExamples: the curl bodies in docs/jds.md use exactly the
// field names the API decodes (it refuses unknown fields); the values are
// placeholders and are not checked.
func TestDocsRequestExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/jds.md")
	if err != nil {
		t.Fatal(err)
	}
	keysOf := func(v any) map[string][]string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return jsonKeys(t, b)
	}
	want := map[string]map[string][]string{
		declare.PathValidate: keysOf(declare.ValidateRequest{}),
		declare.PathBlocks:   keysOf(declare.BlockRequest{}),
	}
	rest := string(doc)
	n := 0
	for {
		i := strings.Index(rest, "curl -s http://127.0.0.1:34266")
		if i < 0 {
			break
		}
		rest = rest[i:]
		line, _, _ := strings.Cut(rest, "\n")
		start := strings.Index(rest, "-d '")
		end := strings.Index(rest, "}'")
		if start < 0 || end < start {
			t.Fatalf("docs/jds.md: no body after %s", line)
		}
		body := rest[start+4 : end+1]
		rest = rest[end:]
		var path string
		for p := range want {
			if strings.Contains(line, p+" ") {
				path = p
			}
		}
		if path == "" {
			t.Errorf("docs/jds.md: curl to an unknown path: %s", line)
			continue
		}
		got := jsonKeys(t, []byte(body))
		for obj, keys := range want[path] {
			if strings.Join(got[obj], ",") != strings.Join(keys, ",") {
				t.Errorf("docs/jds.md %s body, object %q: keys %v, want %v", path, obj, got[obj], keys)
			}
		}
		if len(got) != len(want[path]) {
			t.Errorf("docs/jds.md %s body: objects %v, want %v", path, got, want[path])
		}
		n++
	}
	if n != 2 {
		t.Errorf("%d curl examples checked, want 2", n)
	}
}

// jsonKeys returns the sorted keys of a JSON object and of the objects in
// it, by key ("" for the top level).
func jsonKeys(t *testing.T, b []byte) map[string][]string {
	t.Helper()
	var top map[string]any
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	out := map[string][]string{}
	var walk func(name string, m map[string]any)
	walk = func(name string, m map[string]any) {
		for k, v := range m {
			out[name] = append(out[name], k)
			if sub, ok := v.(map[string]any); ok {
				walk(k, sub)
			}
		}
		slices.Sort(out[name])
	}
	walk("", top)
	return out
}
