package noise

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/flynn/noise"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/sv2kit/sv2kit/sv2/codec"
)

// Defaults applied to zero Config fields.
const (
	DefaultCertValidity     = time.Hour
	DefaultCertBackdate     = 60 * time.Second
	DefaultClockSkew        = 10 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMaxHandshakes    = 128
)

// Config configures a Conn or a Listener. The zero value of each field
// selects the documented default. A Config must not be modified after it was
// passed to Client, Server, Dial or Listen; it may be shared by many
// connections.
type Config struct {
	// AuthorityKey signs the responder's certificates. Required for a Noise
	// responder.
	AuthorityKey *btcec.PrivateKey
	// StaticKey is the responder's static key. nil: a fresh static key per
	// connection, with a certificate signed per connection (as SRI does).
	// Otherwise the certificate is reused until half its validity has passed.
	StaticKey *btcec.PrivateKey
	// CertValidity sets not_valid_after = now + CertValidity. Default 1h.
	CertValidity time.Duration
	// CertBackdate sets valid_from = now − CertBackdate, so an initiator
	// whose clock runs slow still accepts the certificate. Default 60s;
	// negative means none.
	CertBackdate time.Duration

	// AuthorityPubKey is the x-only authority key the initiator pins; the
	// responder's certificate must be signed by it. Required for an
	// initiator unless InsecureSkipVerify is set.
	AuthorityPubKey *[32]byte
	// InsecureSkipVerify accepts any certificate (as SRI does when no key is
	// configured). The link is then encrypted but not authenticated; a
	// warning is logged on each connection.
	InsecureSkipVerify bool
	// ClockSkew is the allowance on both ends of the certificate's validity
	// window. Default 10s; negative means none.
	ClockSkew time.Duration

	// Plaintext turns Noise off: frames go as header and payload, with no
	// handshake. Only for links between local devices (DIGEST §1.4).
	Plaintext bool
	// HandshakeTimeout bounds the whole handshake. Default 10s.
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds a Listener's accepted connections that are not yet
	// returned by Accept (handshaking or completed and waiting). Connections
	// beyond it are closed at once, before any EC work. Default 128.
	MaxHandshakes int
	// MaxPayload returns the largest payload accepted for a received frame
	// with the given header. It runs after the header is decrypted and before
	// the payload is allocated. Default: codec.MaxPayload for every header.
	MaxPayload func(codec.Header) int
	// Logger receives connection-level events. Default: discard.
	Logger hclog.Logger
	// Rand is the randomness for keys and encodings. Default crypto/rand.
	// It must be safe for concurrent use when a Listener uses it.
	Rand io.Reader
	// Now returns the current time for certificates. Default time.Now.
	Now func() time.Time
}

// resolved returns a copy of c (nil allowed) with defaults filled in.
func (c *Config) resolved() *Config {
	var r Config
	if c != nil {
		r = *c
	}
	if r.CertValidity <= 0 {
		r.CertValidity = DefaultCertValidity
	}
	if r.CertBackdate == 0 {
		r.CertBackdate = DefaultCertBackdate
	} else if r.CertBackdate < 0 {
		r.CertBackdate = 0
	}
	if r.ClockSkew == 0 {
		r.ClockSkew = DefaultClockSkew
	} else if r.ClockSkew < 0 {
		r.ClockSkew = 0
	}
	if r.HandshakeTimeout <= 0 {
		r.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if r.MaxHandshakes <= 0 {
		r.MaxHandshakes = DefaultMaxHandshakes
	}
	if r.MaxPayload == nil {
		r.MaxPayload = func(codec.Header) int { return codec.MaxPayload }
	}
	if r.Logger == nil {
		r.Logger = hclog.NewNullLogger()
	}
	if r.Rand == nil {
		r.Rand = rand.Reader
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	return &r
}

// cipherState is one direction of the transport. It is Noise's CipherState
// (ChaCha20-Poly1305, nonce = 4 zero bytes ‖ n as U64 LE, empty associated
// data) built from the key flynn/noise's Split produced; flynn's own
// CipherState allocates a nonce per message, this one does not.
type cipherState struct {
	aead  cipher.AEAD
	n     uint64
	nonce [chacha20poly1305.NonceSize]byte
}

func newCipherState(cs *noise.CipherState) *cipherState {
	k := cs.UnsafeKey()
	aead, err := chacha20poly1305.New(k[:])
	if err != nil {
		panic(err) // unreachable: the key has the right size
	}
	return &cipherState{aead: aead, n: cs.Nonce()}
}

// seal appends the encryption of p to dst. Like flynn/noise it refuses nonce
// 2^64−1 (reserved by Noise) instead of wrapping.
func (s *cipherState) seal(dst, p []byte) ([]byte, error) {
	if s.n > noise.MaxNonce {
		return dst, ErrNonceExhausted
	}
	binary.LittleEndian.PutUint64(s.nonce[4:], s.n)
	s.n++
	return s.aead.Seal(dst, s.nonce[:], p, nil), nil
}

// open appends the decryption of c to dst (dst may be c[:0]).
func (s *cipherState) open(dst, c []byte) ([]byte, error) {
	if s.n > noise.MaxNonce {
		return nil, ErrNonceExhausted
	}
	binary.LittleEndian.PutUint64(s.nonce[4:], s.n)
	out, err := s.aead.Open(dst, s.nonce[:], c, nil)
	if err != nil {
		return nil, ErrDecrypt
	}
	s.n++
	return out, nil
}

// State describes a connection, for logs and policy.
type State struct {
	HandshakeComplete bool
	Plaintext         bool
	// Initiator: this side dialed (Client).
	Initiator bool
	// ServerStatic is the responder's x-only static key (ours on the
	// responder side) and Certificate the certificate it presented.
	ServerStatic [32]byte
	Certificate  Certificate
	// AuthorityVerified: the certificate was checked against a pinned
	// authority key (initiator side only).
	AuthorityVerified bool
	// HandshakeHash is the final Noise handshake hash (channel binding).
	HandshakeHash [32]byte
}

// Conn is an SV2 connection: whole frames in, whole frames out, encrypted
// with Noise unless Config.Plaintext is set.
//
// One goroutine may read (ReadFrame) while another writes (WriteFrame,
// WriteMessage): the two directions have separate cipher states. Writers are
// serialised by a mutex, readers by another. Deadlines and Close may be used
// from any goroutine.
type Conn struct {
	conn   net.Conn
	cfg    *Config
	client bool
	ident  *identitySource // responder only

	hsMu   sync.Mutex
	hsDone atomic.Bool
	hsErr  error
	state  State // written once under hsMu before hsDone is set

	rmu  sync.Mutex
	recv *cipherState
	rhdr [EncryptedHeaderSize]byte
	rerr error // sticky: the stream position is lost

	wmu  sync.Mutex
	send *cipherState
	whdr [codec.HeaderSize]byte
	wbuf []byte // reused frame buffer
	wmsg []byte // reused message encoding buffer
	werr error  // sticky: a partial frame may have been written
}

// maxRetainedBuffer: write buffers above this size are dropped after use, so
// one large frame does not pin memory for the life of the connection.
const maxRetainedBuffer = 256 << 10

// Client returns the initiator side of a connection over c. The handshake
// runs on first use, or explicitly with Handshake.
func Client(c net.Conn, cfg *Config) *Conn {
	return &Conn{conn: c, cfg: cfg.resolved(), client: true}
}

// Server returns the responder side of a connection over c. The handshake
// runs on first use, or explicitly with Handshake.
func Server(c net.Conn, cfg *Config) *Conn {
	r := cfg.resolved()
	return &Conn{conn: c, cfg: r, ident: newIdentitySource(r)}
}

// Dial connects to addr and completes the handshake as initiator.
func Dial(ctx context.Context, network, addr string, cfg *Config) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("noise: dial %s: %w", addr, err)
	}
	c := Client(nc, cfg)
	if err := c.Handshake(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// Handshake runs the handshake if it has not run yet, bounded by
// Config.HandshakeTimeout and ctx. A failed handshake closes the connection
// without sending anything; the error is kept and returned by every later
// call. In plaintext mode it does nothing.
func (c *Conn) Handshake(ctx context.Context) error {
	if c.hsDone.Load() {
		return c.hsErr
	}
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.hsDone.Load() {
		return c.hsErr
	}
	c.hsErr = c.handshake(ctx)
	c.hsDone.Store(true)
	return c.hsErr
}

func (c *Conn) handshake(ctx context.Context) error {
	c.state.Plaintext = c.cfg.Plaintext
	c.state.Initiator = c.client
	if c.cfg.Plaintext {
		c.state.HandshakeComplete = true
		return nil
	}
	fail := func(err error) error {
		c.conn.Close()
		return fmt.Errorf("noise handshake with %s: %w", c.conn.RemoteAddr(), err)
	}
	var verify func(Certificate, [32]byte) error
	if c.client {
		switch {
		case c.cfg.AuthorityPubKey != nil:
			auth := *c.cfg.AuthorityPubKey
			verify = func(cert Certificate, x [32]byte) error {
				return cert.Verify(auth, x, c.cfg.Now(), c.cfg.ClockSkew)
			}
		case c.cfg.InsecureSkipVerify:
			c.cfg.Logger.Warn("noise: certificate not verified (InsecureSkipVerify): the peer is not authenticated",
				"remote", c.conn.RemoteAddr().String())
		default:
			return fail(ErrUnpinnedAuthority)
		}
	} else if c.cfg.AuthorityKey == nil {
		return fail(ErrNoAuthorityKey)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}

	deadline := time.Now().Add(c.cfg.HandshakeTimeout)
	ctxDeadline := false // the context's deadline is the one that applies
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline, ctxDeadline = d, true
	}
	if err := c.conn.SetDeadline(deadline); err != nil {
		return fail(err)
	}
	// Cancellation interrupts blocked I/O by moving the deadline to the past.
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })

	var res *handshakeResult
	var err error
	if c.client {
		res, err = runInitiator(c.conn, initiatorParams{rand: c.cfg.Rand, verify: verify})
	} else {
		res, err = runResponder(c.conn, responderParams{rand: c.cfg.Rand, identity: c.ident.get})
	}
	if !stop() && err == nil {
		// ctx ended at the very end; its callback may still be moving the
		// deadline, so the connection cannot be trusted to be usable.
		err = context.Cause(ctx)
	}
	if err != nil {
		return fail(classifyHandshakeError(ctx, ctxDeadline, err))
	}
	if err := c.conn.SetDeadline(time.Time{}); err != nil {
		return fail(err)
	}
	c.install(res)
	return nil
}

// install takes the cipher states and facts of a completed handshake.
func (c *Conn) install(res *handshakeResult) {
	c.recv, c.send = res.recv, res.send
	c.state.HandshakeComplete = true
	c.state.ServerStatic = res.serverStaticX
	c.state.Certificate = res.cert
	c.state.AuthorityVerified = res.authorityVerified
	c.state.HandshakeHash = res.handshakeHash
}

// classifyHandshakeError maps I/O failures to the package's typed errors.
// ctxDeadline: the I/O deadline was the context's (the net deadline may
// fire before the context's own timer does).
func classifyHandshakeError(ctx context.Context, ctxDeadline bool, err error) error {
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	switch {
	case errors.Is(ctx.Err(), context.Canceled) && !errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: %w", context.Cause(ctx), err)
	case timeout && ctxDeadline && !errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %w: %w", ErrHandshakeTimeout, context.DeadlineExceeded, err)
	case timeout:
		return fmt.Errorf("%w: %w", ErrHandshakeTimeout, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.ErrClosedPipe):
		return fmt.Errorf("%w: %w", ErrHandshakeTruncated, err)
	}
	return err
}

// ReadFrame reads one whole frame. The payload is freshly allocated for each
// frame, so callers may keep or alias it. Payloads larger than
// Config.MaxPayload(header) are refused before anything is allocated
// (*FrameTooLargeError). A bad MAC or an oversized frame closes the
// connection. A timeout before the first byte of a frame leaves the
// connection usable; any other error is returned again by later calls. io.EOF
// means the peer closed the connection between frames.
func (c *Conn) ReadFrame() (codec.Header, []byte, error) {
	if err := c.Handshake(context.Background()); err != nil {
		return codec.Header{}, nil, err
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return codec.Header{}, nil, c.rerr
	}
	h, p, err := c.readFrame()
	if err != nil {
		return codec.Header{}, nil, err
	}
	return h, p, nil
}

func (c *Conn) readFrame() (codec.Header, []byte, error) {
	hdr := c.rhdr[:]
	if c.recv == nil {
		hdr = c.rhdr[:codec.HeaderSize]
	}
	if n, err := io.ReadFull(c.conn, hdr); err != nil {
		if n == 0 {
			var ne net.Error
			if errors.Is(err, io.EOF) || errors.As(err, &ne) && ne.Timeout() {
				return codec.Header{}, nil, err // clean: between frames
			}
		}
		return codec.Header{}, nil, c.readFailed(fmt.Errorf("noise: read frame header (%d of %d bytes): %w", n, len(hdr), err), false)
	}
	if c.recv != nil {
		var err error
		if hdr, err = c.recv.open(hdr[:0], hdr); err != nil {
			return codec.Header{}, nil, c.readFailed(fmt.Errorf("frame header: %w", err), true)
		}
	}
	h, err := codec.ParseHeader(hdr)
	if err != nil {
		return codec.Header{}, nil, c.readFailed(err, true)
	}
	l := int(h.Length)
	if limit := c.cfg.MaxPayload(h); l > limit {
		return codec.Header{}, nil, c.readFailed(&FrameTooLargeError{Header: h, Limit: limit}, true)
	}
	if c.recv == nil {
		p := make([]byte, l)
		if n, err := io.ReadFull(c.conn, p); err != nil {
			return codec.Header{}, nil, c.readFailed(fmt.Errorf("noise: read payload (%d of %d bytes): %w", n, l, midFrame(err)), false)
		}
		return h, p, nil
	}
	if l == 0 {
		return h, []byte{}, nil
	}
	// Each chunk is read to where its plaintext belongs and decrypted in
	// place; its MAC spills into the next chunk's room, so the payload
	// buffer needs only MACSize bytes of slack. Frames up to upfrontPayload
	// get their exact buffer at once; larger ones grow it as chunks arrive,
	// so a peer announcing a 16 MB frame must send it before we hold it.
	buf := make([]byte, 0, min(l, upfrontPayload)+MACSize)
	for off := 0; off < l; {
		n := min(l-off, MaxChunk)
		if need := off + n + MACSize; need > cap(buf) {
			buf = slices.Grow(buf[:off], min(max(2*cap(buf), need), l+MACSize)-off)
		}
		buf = buf[:off+n+MACSize]
		ct := buf[off : off+n+MACSize]
		if got, err := io.ReadFull(c.conn, ct); err != nil {
			return codec.Header{}, nil, c.readFailed(fmt.Errorf("noise: read payload chunk at %d (%d of %d bytes): %w", off, got, len(ct), midFrame(err)), false)
		}
		if _, err := c.recv.open(ct[:0], ct); err != nil {
			return codec.Header{}, nil, c.readFailed(fmt.Errorf("payload chunk at %d: %w", off, err), true)
		}
		off += n
	}
	return h, buf[:l:l], nil
}

// upfrontPayload is the largest payload buffer allocated from the header
// alone, before its bytes arrive.
const upfrontPayload = 1 << 20

// midFrame reports EOF inside a frame as io.ErrUnexpectedEOF.
func midFrame(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readFailed records a read error that leaves the stream unusable; with
// closeConn the connection is closed too (bad MAC, oversized frame: the peer
// is broken or hostile).
func (c *Conn) readFailed(err error, closeConn bool) error {
	c.rerr = err
	if closeConn {
		c.conn.Close()
	}
	return err
}

// WriteFrame writes one frame. h.Length is set to len(payload).
func (c *Conn) WriteFrame(h codec.Header, payload []byte) error {
	if err := c.Handshake(context.Background()); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeFrame(h, payload)
}

// WriteMessage encodes m and writes it as one frame.
func (c *Conn) WriteMessage(m codec.Message, opts codec.Options) error {
	if err := c.Handshake(context.Background()); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	p, err := codec.Append(c.wmsg[:0], m, opts)
	if err != nil {
		return err
	}
	err = c.writeFrame(codec.Header{ExtensionType: m.ExtensionType(), MsgType: m.MsgType()}, p)
	if cap(p) <= maxRetainedBuffer {
		c.wmsg = p[:0]
	} else {
		c.wmsg = nil
	}
	return err
}

func (c *Conn) writeFrame(h codec.Header, payload []byte) error {
	if c.werr != nil {
		return c.werr
	}
	l := len(payload)
	if l > codec.MaxPayload {
		return fmt.Errorf("%w: payload of %d bytes exceeds the U24 frame length", ErrFrameTooLarge, l)
	}
	h.Length = uint32(l)
	var buf []byte
	if c.send == nil {
		buf = slices.Grow(c.wbuf[:0], codec.HeaderSize+l)
		buf = h.Append(buf)
		buf = append(buf, payload...)
	} else {
		buf = slices.Grow(c.wbuf[:0], EncryptedHeaderSize+CiphertextLen(l))
		h.Put(c.whdr[:])
		var err error
		if buf, err = c.send.seal(buf, c.whdr[:]); err != nil {
			c.werr = err
			return err
		}
		for off := 0; off < l; {
			n := min(l-off, MaxChunk)
			if buf, err = c.send.seal(buf, payload[off:off+n]); err != nil {
				c.werr = err
				return err
			}
			off += n
		}
	}
	_, err := c.conn.Write(buf)
	if cap(buf) <= maxRetainedBuffer {
		c.wbuf = buf[:0]
	} else {
		c.wbuf = nil
	}
	if err != nil {
		c.werr = fmt.Errorf("noise: write frame: %w", err)
		return c.werr
	}
	return nil
}

// ConnectionState returns what the handshake established.
func (c *Conn) ConnectionState() State {
	if !c.hsDone.Load() {
		return State{Plaintext: c.cfg.Plaintext, Initiator: c.client}
	}
	return c.state
}

// AuthorityVerified reports whether the peer's certificate was verified
// against a pinned authority key (initiator side).
func (c *Conn) AuthorityVerified() bool { return c.ConnectionState().AuthorityVerified }

// PeerStatic returns the responder's x-only static key once the handshake
// completed (on the responder side, its own).
func (c *Conn) PeerStatic() ([32]byte, bool) {
	s := c.ConnectionState()
	return s.ServerStatic, s.HandshakeComplete && !s.Plaintext
}

// NetConn returns the underlying connection. Reading or writing it directly
// corrupts the stream.
func (c *Conn) NetConn() net.Conn { return c.conn }

// Close closes the underlying connection.
func (c *Conn) Close() error { return c.conn.Close() }

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the read and write deadlines of the underlying connection.
// During the handshake the handshake deadline applies instead.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the read deadline of the underlying connection.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline of the underlying connection. A
// write that times out leaves a partial frame behind: later writes fail.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// identitySource hands a responder its static key and certificate.
type identitySource struct {
	cfg *Config
	mu  sync.Mutex
	cur *identity // cached, only with a persistent StaticKey
}

type identity struct {
	kp      keypair
	cert    Certificate
	issued  time.Time
	renewAt time.Time
}

func newIdentitySource(cfg *Config) *identitySource { return &identitySource{cfg: cfg} }

func (s *identitySource) get() (keypair, Certificate, error) {
	if s.cfg.AuthorityKey == nil {
		return keypair{}, Certificate{}, ErrNoAuthorityKey
	}
	if s.cfg.StaticKey == nil {
		id, err := s.mint(nil)
		if err != nil {
			return keypair{}, Certificate{}, err
		}
		return id.kp, id.cert, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	if s.cur == nil || !now.Before(s.cur.renewAt) || now.Before(s.cur.issued) {
		id, err := s.mint(s.cfg.StaticKey)
		if err != nil {
			return keypair{}, Certificate{}, err
		}
		s.cur = id
	}
	return s.cur.kp, s.cur.cert, nil
}

// mint encodes a static key (fresh when priv is nil) and signs its
// certificate for [now − CertBackdate, now + CertValidity].
func (s *identitySource) mint(priv *btcec.PrivateKey) (*identity, error) {
	var kp keypair
	var err error
	if priv == nil {
		kp, err = generateKeypair(s.cfg.Rand)
	} else {
		kp, err = newKeypair(priv, s.cfg.Rand)
	}
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	cert, err := SignCertificate(s.cfg.AuthorityKey, kp.x,
		unixClamp(now.Add(-s.cfg.CertBackdate)), unixClamp(now.Add(s.cfg.CertValidity)))
	if err != nil {
		return nil, err
	}
	return &identity{kp: kp, cert: cert, issued: now, renewAt: now.Add(s.cfg.CertValidity / 2)}, nil
}
