package config

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type testCfg struct {
	Listen string `toml:"listen" help:"address to serve on"`
	Node   struct {
		URL     string        `toml:"rpc-url" help:"node RPC URL"`
		Timeout time.Duration `toml:"timeout" help:"RPC timeout"`
		Retries int           `toml:"retries" help:"retries"`
	} `toml:"node"`
	Debug bool     `toml:"debug" help:"debug"`
	Peers []string `toml:"peers" help:"peers"`
	Pairs []struct {
		A string `toml:"a"`
	} `toml:"pairs" help:"[[pairs]] tables, <first> preferred"`
}

func defaults() *testCfg {
	c := &testCfg{Listen: "127.0.0.1:1"}
	c.Node.Timeout = 30 * time.Second
	c.Node.Retries = 3
	return c
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "x.toml")
	os.WriteFile(file, []byte("listen = \"file:1\"\ndebug = true\n[node]\nrpc-url = \"http://file\"\ntimeout = \"5s\"\nretries = 7\n"), 0o600)
	t.Setenv("XT_NODE_RPC_URL", "http://env")
	t.Setenv("XT_NODE_RETRIES", "9")
	c := defaults()
	if err := Load(c, "x", "XT", "", []string{"-config", file, "-node.retries", "11", "-peers", "a, b"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "file:1" || !c.Debug || c.Node.URL != "http://env" || c.Node.Timeout != 5*time.Second || c.Node.Retries != 11 {
		t.Fatalf("%+v", c)
	}
	if strings.Join(c.Peers, "|") != "a|b" {
		t.Fatalf("peers %q", c.Peers)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "x.toml")
	os.WriteFile(file, []byte("[node]\nrpc-ulr = \"x\"\n"), 0o600)
	err := Load(defaults(), "x", "XT", "", []string{"-config", file}, io.Discard)
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "node.rpc-ulr" {
		t.Fatalf("unknown key: %v", err)
	}
	err = Load(defaults(), "x", "XT", "", []string{"-node.timeout", "5"}, io.Discard)
	if !errors.As(err, &ce) || ce.Key != "node.timeout" || !strings.Contains(err.Error(), "duration") {
		t.Fatalf("bad duration: %v", err)
	}
	t.Setenv("XT_NODE_RETRIES", "many")
	err = Load(defaults(), "x", "XT", "", nil, io.Discard)
	if !errors.As(err, &ce) || ce.Key != "node.retries" || !strings.Contains(err.Error(), "XT_NODE_RETRIES") {
		t.Fatalf("bad env: %v", err)
	}
	os.Unsetenv("XT_NODE_RETRIES")
	if err := Load(defaults(), "x", "XT", "", []string{"-config", filepath.Join(dir, "missing.toml")}, io.Discard); err == nil {
		t.Fatal("an explicit missing file must fail")
	}
	if err := Load(defaults(), "x", "XT", filepath.Join(dir, "missing.toml"), nil, io.Discard); err != nil {
		t.Fatalf("a missing default file is fine: %v", err)
	}
}

func TestHelpListsEveryKey(t *testing.T) {
	var sb strings.Builder
	err := Load(defaults(), "x", "XT", "", []string{"-help"}, &sb)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	for _, k := range Keys(defaults(), "XT") {
		if !strings.Contains(sb.String(), "-"+k.Path) || (!k.FileOnly && !strings.Contains(sb.String(), k.Env)) {
			t.Errorf("help lacks %s", k.Path)
		}
	}
	if md := Markdown(defaults(), "XT"); !strings.Contains(md, "`node.rpc-url`") {
		t.Fatal(md)
	}
}

// A list of tables has no flag or environment form: help and the docs
// table say so instead of advertising -pairs and XT_PAIRS, and using them
// says to use the file.
func TestFileOnlyKey(t *testing.T) {
	var sb strings.Builder
	if err := Load(defaults(), "x", "XT", "", []string{"-help"}, &sb); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	if strings.Contains(sb.String(), "XT_PAIRS") || !strings.Contains(sb.String(), "file only") {
		t.Errorf("help for a file-only key:\n%s", sb.String())
	}
	md := Markdown(defaults(), "XT")
	for _, want := range []string{
		"| `pairs` | (file only) | (file only) | (none) | [[pairs]] tables, &lt;first&gt; preferred |\n",
		"| `node.rpc-url` | `-node.rpc-url` | `XT_NODE_RPC_URL` | (empty) | node RPC URL |\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	var ce *Error
	if err := Load(defaults(), "x", "XT", "", []string{"-pairs", "a"}, io.Discard); !errors.As(err, &ce) || ce.Key != "pairs" || !strings.Contains(err.Error(), "use the file") {
		t.Errorf("flag on a file-only key: %v", err)
	}
	t.Setenv("XT_PAIRS", "a")
	if err := Load(defaults(), "x", "XT", "", nil, io.Discard); !errors.As(err, &ce) || ce.Key != "pairs" {
		t.Errorf("environment on a file-only key: %v", err)
	}
}

// -config naming the default file explicitly must exist, like any other
// explicit path (only the implicit default may be missing).
func TestExplicitDefaultFileMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "x.toml")
	if err := Load(defaults(), "x", "XT", missing, []string{"-config", missing}, io.Discard); err == nil {
		t.Fatal("an explicit -config equal to the default file name must fail when missing")
	}
	if err := Load(defaults(), "x", "XT", missing, nil, io.Discard); err != nil {
		t.Fatalf("the implicit default file may be missing: %v", err)
	}
}

// A value of the wrong type in the file names the key and the fix; a
// [table] where a list of [[tables]] belongs says to double the brackets.
func TestFileTypeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, key, fix string
	}{
		{"quoted number", "[node]\nretries = \"many\"\n", "node.retries", "without quotes"},
		{"table for a list of tables", "[pairs]\na = \"x\"\n", "pairs", "[[pairs]]"},
		{"bare number for a duration", "[node]\ntimeout = 120\n", "node.timeout", `"10s"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "x.toml")
			if err := os.WriteFile(file, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			err := Load(defaults(), "x", "XT", "", []string{"-config", file}, io.Discard)
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(ce.Fix, tc.fix) || !strings.Contains(err.Error(), file) {
				t.Fatalf("got %v", err)
			}
		})
	}
}
