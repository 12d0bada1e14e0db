package noise

import (
	"errors"
	"fmt"

	"github.com/sv2kit/sv2kit/sv2/codec"
)

// Errors returned by the handshake, the transport and the key helpers. They
// are wrapped with context; test for them with errors.Is.
var (
	// ErrHandshakeTimeout: the handshake did not complete within
	// Config.HandshakeTimeout (or the context's deadline).
	ErrHandshakeTimeout = errors.New("noise: handshake timed out")
	// ErrHandshakeTruncated: the peer closed the connection before a whole
	// handshake message arrived.
	ErrHandshakeTruncated = errors.New("noise: handshake truncated")
	// ErrBadCertificate: the responder's certificate was refused. The error
	// also wraps one of ErrCertVersion, ErrCertExpired, ErrCertNotYetValid or
	// ErrCertSignature.
	ErrBadCertificate = errors.New("noise: bad certificate")
	// ErrCertVersion: the certificate version is not 0.
	ErrCertVersion = errors.New("unsupported certificate version")
	// ErrCertExpired: now is after not_valid_after (plus the allowed skew).
	ErrCertExpired = errors.New("certificate expired")
	// ErrCertNotYetValid: now is before valid_from (minus the allowed skew).
	ErrCertNotYetValid = errors.New("certificate not yet valid")
	// ErrCertSignature: the signature does not verify against the pinned
	// authority key.
	ErrCertSignature = errors.New("certificate signature does not verify")
	// ErrDecrypt: a handshake or transport message failed authentication
	// (bad MAC). The connection is closed: the stream cannot be resynchronised.
	ErrDecrypt = errors.New("noise: message authentication failed")
	// ErrFrameTooLarge: a received frame header announces a payload larger
	// than Config.MaxPayload allows, or a frame to send is larger than a U24
	// length can describe. Received: the error is a *FrameTooLargeError.
	ErrFrameTooLarge = errors.New("noise: frame too large")
	// ErrNonceExhausted: 2^64-1 messages were sent or received in one
	// direction; the session must be replaced (SV2 defines no rekey).
	ErrNonceExhausted = errors.New("noise: nonce exhausted")
	// ErrUnpinnedAuthority: an initiator has neither AuthorityPubKey nor
	// InsecureSkipVerify set. A configuration error.
	ErrUnpinnedAuthority = errors.New("noise: no authority public key pinned (set AuthorityPubKey, or InsecureSkipVerify to opt out)")
	// ErrNoAuthorityKey: a Noise responder has no AuthorityKey to sign
	// certificates with. A configuration error.
	ErrNoAuthorityKey = errors.New("noise: responder needs an authority secret key to sign certificates")
	// ErrTooManyHandshakes: the listener already runs Config.MaxHandshakes
	// handshakes; the new connection was closed without any work done.
	ErrTooManyHandshakes = errors.New("noise: too many handshakes in flight")
	// ErrKeyFormat: a key string or key file has the wrong encoding.
	ErrKeyFormat = errors.New("noise: malformed key")
	// ErrKeyMismatch: a secret authority key does not derive the public
	// authority key it is configured with.
	ErrKeyMismatch = errors.New("noise: authority secret key does not match the authority public key")
	// ErrKeyFilePermissions: a key file is readable or writable by group or
	// others.
	ErrKeyFilePermissions = errors.New("noise: key file permissions too open")
)

// FrameTooLargeError reports a received frame whose header announces more
// payload than allowed. Nothing was allocated for it.
type FrameTooLargeError struct {
	Header codec.Header
	Limit  int
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("noise: frame too large: %v, limit %d bytes", e.Header, e.Limit)
}

// Is makes errors.Is(err, ErrFrameTooLarge) true.
func (e *FrameTooLargeError) Is(target error) bool { return target == ErrFrameTooLarge }
