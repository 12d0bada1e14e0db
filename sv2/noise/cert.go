package noise

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
)

// CertificateSize is the size of SIGNATURE_NOISE_MESSAGE.
const CertificateSize = 2 + 4 + 4 + 64

// Certificate is SIGNATURE_NOISE_MESSAGE, the act-2 payload (DIGEST §2.5):
// an authority's BIP340 signature over the responder's static key and a
// validity window. The static key itself is not part of the message; it is
// the one the responder sent in act 2.
type Certificate struct {
	Version       uint16
	ValidFrom     uint32 // unix seconds
	NotValidAfter uint32 // unix seconds, inclusive
	Signature     [64]byte
}

// ParseCertificate decodes a 74-byte SIGNATURE_NOISE_MESSAGE. It checks the
// length only; Verify checks the contents.
func ParseCertificate(b []byte) (Certificate, error) {
	if len(b) != CertificateSize {
		return Certificate{}, fmt.Errorf("%w: certificate has %d bytes, want %d", ErrBadCertificate, len(b), CertificateSize)
	}
	var c Certificate
	c.Version = binary.LittleEndian.Uint16(b[0:])
	c.ValidFrom = binary.LittleEndian.Uint32(b[2:])
	c.NotValidAfter = binary.LittleEndian.Uint32(b[6:])
	copy(c.Signature[:], b[10:])
	return c, nil
}

// Marshal encodes the certificate as its 74 wire bytes.
func (c Certificate) Marshal() [CertificateSize]byte {
	var b [CertificateSize]byte
	binary.LittleEndian.PutUint16(b[0:], c.Version)
	binary.LittleEndian.PutUint32(b[2:], c.ValidFrom)
	binary.LittleEndian.PutUint32(b[6:], c.NotValidAfter)
	copy(b[10:], c.Signature[:])
	return b
}

// Digest is the 32-byte message the authority signs:
// SHA256(version ‖ valid_from ‖ not_valid_after ‖ static x-only key).
func (c Certificate) Digest(staticX [32]byte) [32]byte {
	var pre [2 + 4 + 4 + 32]byte
	binary.LittleEndian.PutUint16(pre[0:], c.Version)
	binary.LittleEndian.PutUint32(pre[2:], c.ValidFrom)
	binary.LittleEndian.PutUint32(pre[6:], c.NotValidAfter)
	copy(pre[10:], staticX[:])
	return sha256.Sum256(pre[:])
}

// SignCertificate returns a version-0 certificate for the static x-only key
// staticX, signed by authority. The auxiliary randomness is 32 zero bytes, as
// sv2-tp uses, so our signatures equal sv2-tp's byte for byte (DIGEST §10.5);
// BIP340 stays secure with fixed aux data because the nonce also hashes the
// key and the message.
func SignCertificate(authority *btcec.PrivateKey, staticX [32]byte, validFrom, notValidAfter uint32) (Certificate, error) {
	c := Certificate{Version: 0, ValidFrom: validFrom, NotValidAfter: notValidAfter}
	d := c.Digest(staticX)
	sig, err := schnorr.Sign(authority, d[:], schnorr.CustomNonce([32]byte{}))
	if err != nil {
		return Certificate{}, fmt.Errorf("noise: sign certificate: %w", err)
	}
	copy(c.Signature[:], sig.Serialize())
	return c, nil
}

// Verify checks the certificate as an initiator must (DIGEST §2.6): version
// 0, valid_from − skew ≤ now ≤ not_valid_after + skew, and a BIP340 signature
// by authority over staticX. Errors wrap ErrBadCertificate and the reason.
func (c Certificate) Verify(authority [32]byte, staticX [32]byte, now time.Time, skew time.Duration) error {
	if c.Version != 0 {
		return fmt.Errorf("%w: %w: version %d", ErrBadCertificate, ErrCertVersion, c.Version)
	}
	s := int64(max(skew, 0) / time.Second)
	t := now.Unix()
	if t+s < int64(c.ValidFrom) {
		return fmt.Errorf("%w: %w: valid from %s, now %s (skew %s)", ErrBadCertificate, ErrCertNotYetValid,
			unixString(c.ValidFrom), now.UTC().Format(time.RFC3339), skew)
	}
	if t-s > int64(c.NotValidAfter) {
		return fmt.Errorf("%w: %w: not valid after %s, now %s (skew %s)", ErrBadCertificate, ErrCertExpired,
			unixString(c.NotValidAfter), now.UTC().Format(time.RFC3339), skew)
	}
	pub, err := schnorr.ParsePubKey(authority[:])
	if err != nil {
		return fmt.Errorf("%w: %w: authority key: %w", ErrBadCertificate, ErrCertSignature, err)
	}
	sig, err := schnorr.ParseSignature(c.Signature[:])
	if err != nil {
		return fmt.Errorf("%w: %w: %w", ErrBadCertificate, ErrCertSignature, err)
	}
	d := c.Digest(staticX)
	if !sig.Verify(d[:], pub) {
		return fmt.Errorf("%w: %w (authority %s)", ErrBadCertificate, ErrCertSignature, EncodeAuthorityPublicKey(authority))
	}
	return nil
}

func unixString(s uint32) string {
	return time.Unix(int64(s), 0).UTC().Format(time.RFC3339)
}

// unixClamp converts t to unix seconds clamped to the U32 range.
func unixClamp(t time.Time) uint32 {
	s := t.Unix()
	switch {
	case s < 0:
		return 0
	case s > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(s)
}
