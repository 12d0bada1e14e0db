package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sv2kit/sv2kit/sv2/noise"
)

var line = regexp.MustCompile(`^(authority_public_key|authority_secret_key) = "([1-9A-HJ-NP-Za-km-z]+)"$`)

func TestPrint(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(nil, &out, &errb); err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("unexpected line %q", l)
		}
		vals[m[1]] = m[2]
	}
	pub, err := noise.ParseAuthorityPublicKey(vals["authority_public_key"])
	if err != nil {
		t.Fatal(err)
	}
	sec, err := noise.ParseSecretKey(vals["authority_secret_key"])
	if err != nil {
		t.Fatal(err)
	}
	if err := noise.CheckKeyPair(sec, pub); err != nil {
		t.Fatal(err)
	}
}

func TestOutFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	var out, errb bytes.Buffer
	if err := run([]string{"-out", path}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "secret") {
		t.Errorf("secret printed with -out: %q", out.String())
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%v %v", fi, err)
	}
	sec, err := noise.ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := line.FindStringSubmatch(strings.TrimSpace(out.String()))
	if m == nil {
		t.Fatalf("output %q", out.String())
	}
	pub, _ := noise.ParseAuthorityPublicKey(m[2])
	if err := noise.CheckKeyPair(sec, pub); err != nil {
		t.Fatal(err)
	}
	// Never overwrites.
	if err := run([]string{"-out", path}, &out, &errb); err == nil {
		t.Error("overwrote the key file")
	}
	if err := run([]string{"extra"}, &out, &errb); err == nil {
		t.Error("accepted a positional argument")
	}
}
