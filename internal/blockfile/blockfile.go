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
// ".tmp" file, never a truncated block.
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
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
