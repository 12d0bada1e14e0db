package noise

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "authority_key")

	k1, created, err := LoadOrCreateKeyFile(path, newDetReader("key file"))
	if err != nil || !created {
		t.Fatalf("create: %v, created %v", err, created)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	k2, created, err := LoadOrCreateKeyFile(path, nil)
	if err != nil || created {
		t.Fatalf("load: %v, created %v", err, created)
	}
	if !k1.Key.Equals(&k2.Key) {
		t.Error("loaded key differs from the created one")
	}
	b, _ := os.ReadFile(path)
	if strings.TrimSpace(string(b)) != EncodeSecretKey(k1) {
		t.Errorf("file holds %q", b)
	}

	// Readable by others: refused, with the fix in the message.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = LoadOrCreateKeyFile(path, nil)
	if !errors.Is(err, ErrKeyFilePermissions) || !strings.Contains(err.Error(), "chmod 600 "+path) {
		t.Errorf("0644 file: %v", err)
	}
	if _, err := ReadKeyFile(path); !errors.Is(err, ErrKeyFilePermissions) {
		t.Errorf("ReadKeyFile 0644: %v", err)
	}

	// Bad contents.
	for name, content := range map[string]string{
		"empty":    "",
		"garbage":  "not a key at all",
		"pubkey":   "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72",
		"checksum": "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2m",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadOrCreateKeyFile(p, nil); !errors.Is(err, ErrKeyFormat) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// WriteKeyFile never overwrites.
	if err := WriteKeyFile(path, k1); err == nil {
		t.Error("WriteKeyFile overwrote an existing file")
	}
	// A directory is not a key file.
	if _, err := ReadKeyFile(dir); err == nil {
		t.Error("read a directory as a key file")
	}
}

func TestSecretKeyRoundTrip(t *testing.T) {
	r := newDetReader("secret round trip")
	for range 20 {
		k, err := GenerateKey(r)
		if err != nil {
			t.Fatal(err)
		}
		s := EncodeSecretKey(k)
		k2, err := ParseSecretKey(s)
		if err != nil || !k.Key.Equals(&k2.Key) {
			t.Fatalf("%s: %v", s, err)
		}
		pub := PublicKey(k)
		ps := EncodeAuthorityPublicKey(pub)
		pub2, err := ParseAuthorityPublicKey(ps)
		if err != nil || pub2 != pub {
			t.Fatalf("%s: %v", ps, err)
		}
	}
	// The zero scalar and n are not keys.
	for _, raw := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
	} {
		if _, err := ParseSecretKey(base58Check(unhex(t, raw))); !errors.Is(err, ErrKeyFormat) {
			t.Errorf("%s: %v", raw, err)
		}
	}
}
