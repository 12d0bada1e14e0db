// Package blockfile writes found blocks to disk so they survive a crash:
// every role writes a block here before it submits it anywhere.
package blockfile

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Write stores data at path through a temporary file and a rename, syncing
// the file and then its directory, so after Write returns the file is
// whole and survives a power loss; a crash part-way leaves at most a
// "<name>.*.tmp" file, never a truncated block. Concurrent writers of the
// same path are safe: the last rename wins, and every version is whole.
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	// A temporary name of its own: two roles may write the same block at
	// once (a JDS gets it from the JDC and from the pool), and each rename
	// must install a whole file.
	f, err := os.CreateTemp(dir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("create a temporary file in %s: %w", dir, err)
	}
	tmp := f.Name()
	cherr := f.Chmod(perm)
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(cherr, werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	serr = d.Sync()
	d.Close()
	if serr != nil {
		return fmt.Errorf("sync directory %s: %w", dir, serr)
	}
	return nil
}

// WriteHex stores a serialized block as <dir>/<height>-<hash>.hex, in hex
// with a newline: the form `bitcoin-cli submitblock "$(cat FILE)"` takes.
// It returns the file's path.
func WriteHex(dir string, height int64, hash string, raw []byte) (string, error) {
	path := filepath.Join(dir, fmt.Sprintf("%d-%s.hex", height, hash))
	data := make([]byte, hex.EncodedLen(len(raw))+1)
	hex.Encode(data, raw)
	data[len(data)-1] = '\n'
	return path, Write(path, data, 0o600)
}
