package noise

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil/base58"
)

// authorityKeyVersion is the U16 LE version prefixed to an authority public
// key before base58check encoding (SRI key-utils, DIGEST §8.2).
const authorityKeyVersion = 1

// base58Check encodes payload ‖ first 4 bytes of SHA256(SHA256(payload)).
// btcutil's CheckEncode takes a one-byte version, which fits neither SV2 key
// format, so the checksum is computed here.
func base58Check(payload []byte) string {
	b := make([]byte, 0, len(payload)+4)
	b = append(b, payload...)
	sum := checksum(payload)
	return base58.Encode(append(b, sum[:]...))
}

func checksum(payload []byte) [4]byte {
	h1 := sha256.Sum256(payload)
	h2 := sha256.Sum256(h1[:])
	return [4]byte(h2[:4])
}

// base58CheckDecode returns the payload of a base58check string whose payload
// must be want bytes long.
func base58CheckDecode(s string, want int, what string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%w: empty %s", ErrKeyFormat, what)
	}
	raw := base58.Decode(s)
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: %s is not base58", ErrKeyFormat, what)
	}
	if len(raw) != want+4 {
		return nil, fmt.Errorf("%w: %s decodes to %d bytes, want %d (%d-byte payload and 4-byte checksum)",
			ErrKeyFormat, what, len(raw), want+4, want)
	}
	payload, sum := raw[:want], raw[want:]
	if c := checksum(payload); !bytes.Equal(c[:], sum) {
		return nil, fmt.Errorf("%w: %s has a bad checksum", ErrKeyFormat, what)
	}
	return payload, nil
}

// EncodeAuthorityPublicKey returns the SRI string form of an x-only authority
// key: base58check(01 00 ‖ key).
func EncodeAuthorityPublicKey(key [32]byte) string {
	var p [34]byte
	binary.LittleEndian.PutUint16(p[:], authorityKeyVersion)
	copy(p[2:], key[:])
	return base58Check(p[:])
}

// ParseAuthorityPublicKey decodes the SRI string form of an authority key,
// rejecting a wrong length (including SRI's old 32-byte format), checksum or
// version, and a key that is not an x coordinate on the curve.
func ParseAuthorityPublicKey(s string) ([32]byte, error) {
	p, err := base58CheckDecode(s, 34, "authority public key")
	if err != nil {
		return [32]byte{}, err
	}
	if v := binary.LittleEndian.Uint16(p); v != authorityKeyVersion {
		return [32]byte{}, fmt.Errorf("%w: authority public key version %d, want %d", ErrKeyFormat, v, authorityKeyVersion)
	}
	key := [32]byte(p[2:])
	if _, err := schnorr.ParsePubKey(key[:]); err != nil {
		return [32]byte{}, fmt.Errorf("%w: authority public key is not a curve point: %w", ErrKeyFormat, err)
	}
	return key, nil
}

// EncodeSecretKey returns the SRI string form of a secret key:
// base58check of its 32 bytes, no version.
func EncodeSecretKey(key *btcec.PrivateKey) string {
	return base58Check(key.Serialize())
}

// ParseSecretKey decodes the SRI string form of a secret key.
func ParseSecretKey(s string) (*btcec.PrivateKey, error) {
	p, err := base58CheckDecode(s, 32, "secret key")
	if err != nil {
		return nil, err
	}
	var k btcec.ModNScalar
	if overflow := k.SetByteSlice(p); overflow || k.IsZero() {
		return nil, fmt.Errorf("%w: secret key is not in [1, n-1]", ErrKeyFormat)
	}
	return btcec.PrivKeyFromScalar(&k), nil
}

// PublicKey returns the x-only (BIP340) public key of a secret key, the form
// authority keys are pinned in.
func PublicKey(key *btcec.PrivateKey) [32]byte {
	return [32]byte(schnorr.SerializePubKey(key.PubKey()))
}

// CheckKeyPair reports whether secret derives the x-only public key pub, as
// SRI checks a configured authority_secret_key/authority_public_key pair.
func CheckKeyPair(secret *btcec.PrivateKey, pub [32]byte) error {
	if got := PublicKey(secret); got != pub {
		return fmt.Errorf("%w: the secret key's public key is %s, configured %s", ErrKeyMismatch,
			EncodeAuthorityPublicKey(got), EncodeAuthorityPublicKey(pub))
	}
	return nil
}

// GenerateKey returns a new secret key drawn from r (crypto/rand if nil).
func GenerateKey(r io.Reader) (*btcec.PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	return generatePrivateKey(r)
}

// ReadKeyFile reads a secret key file (the base58check string, surrounding
// whitespace ignored). A file that group or others may read or write is
// refused: it holds a secret.
func ReadKeyFile(path string) (*btcec.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("noise: open key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("noise: key file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("noise: key file %s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, group and others must have no access; run: chmod 600 %s",
			ErrKeyFilePermissions, path, fi.Mode().Perm(), path)
	}
	// A key string is ~50 bytes; never read an arbitrarily large file.
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("noise: read key file %s: %w", path, err)
	}
	k, err := ParseSecretKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// LoadOrCreateKeyFile reads the secret key at path, or, when the file does
// not exist, generates a key from r (crypto/rand if nil) and writes it with
// mode 0600. created reports which happened.
func LoadOrCreateKeyFile(path string, r io.Reader) (key *btcec.PrivateKey, created bool, err error) {
	key, err = ReadKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, false, err
	}
	key, err = GenerateKey(r)
	if err != nil {
		return nil, false, err
	}
	if err := WriteKeyFile(path, key); err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// WriteKeyFile writes key to a new file at path with mode 0600. It refuses to
// overwrite an existing file.
func WriteKeyFile(path string, key *btcec.PrivateKey) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("noise: create key file: %w", err)
	}
	_, err = f.WriteString(EncodeSecretKey(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("noise: write key file %s: %w", path, err)
	}
	return nil
}
