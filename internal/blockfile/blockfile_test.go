package blockfile

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteHex(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "blocks") // created on demand
	raw := []byte{0x01, 0x02, 0xff}
	path, err := WriteHex(dir, 432, "00ab", raw)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "432-00ab.hex" {
		t.Fatalf("path %s", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := hex.DecodeString(string(bytes.TrimSpace(data)))
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("file holds %q", data)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}

func TestWriteReplacesWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.json")
	if err := Write(path, []byte("a much longer first version"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != "short" {
		t.Fatalf("file holds %q", data)
	}
}

func TestWriteUnwritableDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A regular file where the directory should be: the error names it.
	if err := Write(filepath.Join(file, "x.hex"), []byte("x"), 0o600); err == nil {
		t.Fatal("write under a regular file succeeded")
	}
}

// A JDS receives the same block from the JDC and from the pool at once:
// every concurrent write succeeds and the file is always whole.
func TestConcurrentWritersSamePath(t *testing.T) {
	dir := t.TempDir()
	raw := bytes.Repeat([]byte{0xab}, 100_000)
	want := hex.EncodeToString(raw) + "\n"
	errs := make(chan error, 32)
	for i := 0; i < cap(errs); i++ {
		go func() {
			_, err := WriteHex(dir, 1, "ff", raw)
			errs <- err
		}()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent write: %v", err)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "1-ff.hex"))
	if err != nil || string(data) != want {
		t.Fatalf("file is not whole: %d bytes, err %v", len(data), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}
