// Package noise implements the Stratum V2 secure channel:
// Noise_NX_Secp256k1+EllSwift_ChaChaPoly_SHA256 (DIGEST §2), the responder
// certificate (SIGNATURE_NOISE_MESSAGE), the encrypted frame transport, key
// strings and key files.
//
// The shape follows crypto/tls: Client and Server wrap a net.Conn, Dial and
// Listen do the same for new connections, and a Config with documented zero
// values carries everything else. The handshake is the stock Noise NX pattern
// from flynn/noise with a custom DH function; the two roles are plain
// functions over an io.ReadWriter (runInitiator, runResponder) so that tests
// can inject every key and reproduce a transcript byte for byte.
package noise

import (
	"errors"
	"fmt"
	"io"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ellswift"
	"github.com/flynn/noise"
)

// Sizes on the wire (DIGEST §2.4, §2.5, §2.7).
const (
	// ProtocolName is the Noise protocol name hashed into the initial state.
	ProtocolName = "Noise_NX_Secp256k1+EllSwift_ChaChaPoly_SHA256"
	// EllSwiftSize is the size of an ElligatorSwift-encoded public key.
	EllSwiftSize = 64
	// Act1Size is the initiator's handshake message: its ephemeral key.
	Act1Size = EllSwiftSize
	// Act2Size is the responder's handshake message: ephemeral key (64),
	// encrypted static key (64+16) and encrypted certificate (74+16).
	Act2Size = EllSwiftSize + EllSwiftSize + MACSize + CertificateSize + MACSize
	// MACSize is the Poly1305 tag size.
	MACSize = 16
	// MaxChunk is the largest plaintext carried by one transport message
	// (65 535 bytes of ciphertext).
	MaxChunk = 65535 - MACSize
	// EncryptedHeaderSize is the size of an encrypted frame header.
	EncryptedHeaderSize = 6 + MACSize
)

// CiphertextLen returns the number of payload bytes on the wire for a
// plaintext payload of n bytes: each chunk of at most MaxChunk bytes carries
// its own MAC, and an empty payload has no chunk at all.
func CiphertextLen(n int) int {
	return n + MACSize*((n+MaxChunk-1)/MaxChunk)
}

// keypair is a secp256k1 secret key together with the 64-byte
// ElligatorSwift encoding of its public key. Encodings are randomized, so the
// encoding sent on the wire must be kept and reused for the ECDH hash.
type keypair struct {
	priv *btcec.PrivateKey
	ell  [EllSwiftSize]byte
	x    [32]byte // x-only public key
}

// dhKey lays the pair out the way flynn/noise carries it: Private is
// sk(32)‖ell(64) because our DH needs its own encoding, Public is ell(64).
func (k *keypair) dhKey() noise.DHKey {
	priv := make([]byte, 32+EllSwiftSize)
	k.priv.Key.PutBytesUnchecked(priv[:32])
	copy(priv[32:], k.ell[:])
	return noise.DHKey{Private: priv, Public: priv[32:]}
}

// generatePrivateKey draws a secret scalar in [1, n-1] from r.
func generatePrivateKey(r io.Reader) (*btcec.PrivateKey, error) {
	var b [32]byte
	for range 128 {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("noise: read randomness for a key: %w", err)
		}
		var s btcec.ModNScalar
		if overflow := s.SetBytes(&b); overflow == 0 && !s.IsZero() {
			return btcec.PrivKeyFromScalar(&s), nil
		}
	}
	return nil, errors.New("noise: randomness source keeps yielding invalid scalars")
}

// newKeypair encodes priv's public key with ElligatorSwift, drawing the
// encoding's randomness from r (BIP324 XElligatorSwift: a random u and a
// random case until the inverse map succeeds). btcec's own encoder reads
// crypto/rand directly; this one takes r so tests get fixed encodings.
func newKeypair(priv *btcec.PrivateKey, r io.Reader) (keypair, error) {
	var p btcec.JacobianPoint
	btcec.ScalarBaseMultNonConst(&priv.Key, &p)
	p.ToAffine()
	x := p.X
	x.Normalize()
	var buf [33]byte
	for range 1024 {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return keypair{}, fmt.Errorf("noise: read randomness for an ElligatorSwift encoding: %w", err)
		}
		var u btcec.FieldVal
		u.SetByteSlice(buf[:32])
		u.Normalize()
		// u = 0 and t = 0 are remapped by the decoder; never emit them.
		if u.IsZero() {
			continue
		}
		t := ellswift.XSwiftECInv(&u, &x, int(buf[32]&7))
		if t == nil || t.IsZero() {
			continue
		}
		kp := keypair{priv: priv, x: *x.Bytes()}
		u.PutBytesUnchecked(kp.ell[:32])
		t.PutBytesUnchecked(kp.ell[32:])
		return kp, nil
	}
	return keypair{}, errors.New("noise: no ElligatorSwift encoding found (broken randomness source?)")
}

// generateKeypair draws a fresh secret key and its encoding from r.
func generateKeypair(r io.Reader) (keypair, error) {
	priv, err := generatePrivateKey(r)
	if err != nil {
		return keypair{}, err
	}
	return newKeypair(priv, r)
}

// decodeEllSwift maps a 64-byte ElligatorSwift encoding to the x coordinate
// of its point (BIP324 XSwiftEC). Every 64-byte input decodes to a point on
// the curve.
func decodeEllSwift(ell []byte) ([32]byte, error) {
	if len(ell) != EllSwiftSize {
		return [32]byte{}, fmt.Errorf("noise: ElligatorSwift encoding has %d bytes, want %d", len(ell), EllSwiftSize)
	}
	var u, t btcec.FieldVal
	u.SetByteSlice(ell[:32])
	u.Normalize()
	t.SetByteSlice(ell[32:])
	t.Normalize()
	x, err := ellswift.XSwiftEC(&u, &t)
	if err != nil {
		return [32]byte{}, fmt.Errorf("noise: decode ElligatorSwift: %w", err)
	}
	return *x.Bytes(), nil
}

// errDH marks failures of the DH function (as opposed to a bad MAC).
var errDH = errors.New("noise: ElligatorSwift ECDH failed")

// ellDH is the DH function Secp256k1+EllSwift for flynn/noise (DIGEST §2.9).
// The BIP324 ECDH hashes both encodings in initiator-first order, so the
// role is part of the value; one instance serves one handshake. flynn uses
// DHLen only to cut public keys out of messages, hence 64.
type ellDH struct {
	initiator bool
	// ephemeral, when set, is returned by the first GenerateKeypair call
	// instead of a fresh key (tests reproduce transcripts with it).
	ephemeral *keypair
}

func (d *ellDH) DHName() string { return "Secp256k1+EllSwift" }
func (d *ellDH) DHLen() int     { return EllSwiftSize }

func (d *ellDH) GenerateKeypair(r io.Reader) (noise.DHKey, error) {
	if d.ephemeral != nil {
		kp := d.ephemeral
		d.ephemeral = nil
		return kp.dhKey(), nil
	}
	kp, err := generateKeypair(r)
	if err != nil {
		return noise.DHKey{}, err
	}
	return kp.dhKey(), nil
}

// DH computes BIP324 v2_ecdh with ell_A = the initiator's encoding and
// ell_B = the responder's, whichever side we are.
func (d *ellDH) DH(priv, pub []byte) ([]byte, error) {
	if len(priv) != 32+EllSwiftSize || len(pub) != EllSwiftSize {
		return nil, fmt.Errorf("%w: key sizes %d/%d", errDH, len(priv), len(pub))
	}
	var s btcec.ModNScalar
	if overflow := s.SetByteSlice(priv[:32]); overflow || s.IsZero() {
		return nil, fmt.Errorf("%w: invalid secret key", errDH)
	}
	var ours, theirs [EllSwiftSize]byte
	copy(ours[:], priv[32:])
	copy(theirs[:], pub)
	h, err := ellswift.V2Ecdh(btcec.PrivKeyFromScalar(&s), theirs, ours, d.initiator)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errDH, err)
	}
	return h[:], nil
}

// newHandshakeState starts an NX handshake for one role.
func newHandshakeState(initiator bool, r io.Reader, ephemeral *keypair, static *keypair) (*noise.HandshakeState, error) {
	cfg := noise.Config{
		CipherSuite: noise.NewCipherSuite(&ellDH{initiator: initiator, ephemeral: ephemeral}, noise.CipherChaChaPoly, noise.HashSHA256),
		Random:      r,
		Pattern:     noise.HandshakeNX,
		Initiator:   initiator,
	}
	if static != nil {
		cfg.StaticKeypair = static.dhKey()
	}
	hs, err := noise.NewHandshakeState(cfg)
	if err != nil {
		return nil, fmt.Errorf("noise: start handshake: %w", err)
	}
	return hs, nil
}

// handshakeResult is what a completed handshake yields.
type handshakeResult struct {
	send, recv *cipherState
	// serverStatic is the responder's static key as sent (64-byte encoding)
	// and as x-only key (what the certificate signs).
	serverStatic  [EllSwiftSize]byte
	serverStaticX [32]byte
	cert          Certificate
	// authorityVerified: the initiator checked the certificate against a
	// pinned authority key (false on the responder side and with
	// InsecureSkipVerify).
	authorityVerified bool
	// handshakeHash is the final h, usable as channel binding.
	handshakeHash [32]byte
}

// initiatorParams are the initiator's inputs.
type initiatorParams struct {
	rand io.Reader
	// ephemeral overrides the ephemeral key (tests); nil draws one from rand.
	ephemeral *keypair
	// verify checks the certificate against the responder's x-only static
	// key; nil skips the check (InsecureSkipVerify).
	verify func(cert Certificate, staticX [32]byte) error
}

// runInitiator performs the initiator's side: send act 1 (64 bytes), read
// exactly act 2 (234 bytes), check the certificate. It never reads more than
// Act2Size bytes from rw.
func runInitiator(rw io.ReadWriter, p initiatorParams) (*handshakeResult, error) {
	hs, err := newHandshakeState(true, p.rand, p.ephemeral, nil)
	if err != nil {
		return nil, err
	}
	var buf [Act2Size]byte
	act1, _, _, err := hs.WriteMessage(buf[:0], nil)
	if err != nil {
		return nil, fmt.Errorf("noise: build act 1: %w", err)
	}
	if len(act1) != Act1Size {
		return nil, fmt.Errorf("noise: act 1 has %d bytes, want %d", len(act1), Act1Size)
	}
	if _, err := rw.Write(act1); err != nil {
		return nil, fmt.Errorf("noise: send act 1: %w", err)
	}
	if n, err := io.ReadFull(rw, buf[:]); err != nil {
		return nil, fmt.Errorf("noise: read act 2 (%d of %d bytes): %w", n, Act2Size, err)
	}
	payload, cs1, cs2, err := hs.ReadMessage(nil, buf[:])
	if err != nil {
		if errors.Is(err, errDH) {
			return nil, fmt.Errorf("noise: act 2: %w", err)
		}
		return nil, fmt.Errorf("noise: act 2: %w: %w", ErrDecrypt, err)
	}
	if cs1 == nil || cs2 == nil {
		return nil, errors.New("noise: handshake did not complete after act 2")
	}
	res := &handshakeResult{}
	copy(res.serverStatic[:], hs.PeerStatic())
	if res.serverStaticX, err = decodeEllSwift(res.serverStatic[:]); err != nil {
		return nil, err
	}
	if res.cert, err = ParseCertificate(payload); err != nil {
		return nil, fmt.Errorf("noise: act 2: %w", err)
	}
	if p.verify != nil {
		if err := p.verify(res.cert, res.serverStaticX); err != nil {
			return nil, err
		}
		res.authorityVerified = true
	}
	copy(res.handshakeHash[:], hs.ChannelBinding())
	// Initiator sends with c1 and receives with c2 (DIGEST §2.7).
	res.send, res.recv = newCipherState(cs1), newCipherState(cs2)
	return res, nil
}

// responderParams are the responder's inputs.
type responderParams struct {
	rand io.Reader
	// ephemeral overrides the ephemeral key (tests); nil draws one from rand.
	ephemeral *keypair
	// identity returns the static key and its signed certificate. It is
	// called only after a whole act 1 arrived, so a silent peer costs no EC
	// work.
	identity func() (keypair, Certificate, error)
}

// runResponder performs the responder's side: read exactly act 1 (64 bytes),
// send act 2 (234 bytes). It never reads more than Act1Size bytes from rw.
func runResponder(rw io.ReadWriter, p responderParams) (*handshakeResult, error) {
	var in [Act1Size]byte
	if n, err := io.ReadFull(rw, in[:]); err != nil {
		return nil, fmt.Errorf("noise: read act 1 (%d of %d bytes): %w", n, Act1Size, err)
	}
	static, cert, err := p.identity()
	if err != nil {
		return nil, err
	}
	hs, err := newHandshakeState(false, p.rand, p.ephemeral, &static)
	if err != nil {
		return nil, err
	}
	if _, _, _, err := hs.ReadMessage(nil, in[:]); err != nil {
		return nil, fmt.Errorf("noise: act 1: %w", err)
	}
	var out [Act2Size]byte
	certBytes := cert.Marshal()
	act2, cs1, cs2, err := hs.WriteMessage(out[:0], certBytes[:])
	if err != nil {
		return nil, fmt.Errorf("noise: build act 2: %w", err)
	}
	if len(act2) != Act2Size || cs1 == nil || cs2 == nil {
		return nil, fmt.Errorf("noise: act 2 has %d bytes, want %d", len(act2), Act2Size)
	}
	if _, err := rw.Write(act2); err != nil {
		return nil, fmt.Errorf("noise: send act 2: %w", err)
	}
	res := &handshakeResult{serverStatic: static.ell, cert: cert}
	res.serverStaticX = static.x
	copy(res.handshakeHash[:], hs.ChannelBinding())
	// Responder sends with c2 and receives with c1.
	res.send, res.recv = newCipherState(cs2), newCipherState(cs1)
	return res, nil
}
