package noise

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/sv2/codec"
)

// testAuthority is a fixed authority key pair for the tests.
func testAuthority(t testing.TB) (*btcec.PrivateKey, *[32]byte) {
	t.Helper()
	k, err := GenerateKey(newDetReader("test authority"))
	if err != nil {
		t.Fatal(err)
	}
	pub := PublicKey(k)
	return k, &pub
}

func serverConfig(t testing.TB) *Config {
	k, _ := testAuthority(t)
	return &Config{AuthorityKey: k}
}

func clientConfig(t testing.TB) *Config {
	_, pub := testAuthority(t)
	return &Config{AuthorityPubKey: pub}
}

func listen(t testing.TB, cfg *Config) *Listener {
	t.Helper()
	l, err := Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// echo serves every accepted connection by echoing frames until EOF.
func echo(t testing.TB, l *Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					h, p, err := c.ReadFrame()
					if err != nil {
						return
					}
					if err := c.WriteFrame(h, p); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// countingConn counts bytes written.
type countingConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func dialCounting(t *testing.T, addr string, cfg *Config) (*Conn, *countingConn) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: nc}
	c := Client(cc, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, cc
}

func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i>>8)
	}
	return p
}

func TestRoundTripTCP(t *testing.T) {
	l := listen(t, serverConfig(t))
	echo(t, l)
	c, cc := dialCounting(t, l.Addr().String(), clientConfig(t))
	if !c.AuthorityVerified() {
		t.Error("authority not verified")
	}
	if st, ok := c.PeerStatic(); !ok || st == ([32]byte{}) {
		t.Error("no peer static key")
	}
	for _, n := range []int{0, 64, 65519, 65520, 70000, 1 << 20} {
		p := pattern(n)
		h := codec.Header{ExtensionType: 0x8001, MsgType: 0x42}
		before := cc.n.Load()
		if err := c.WriteFrame(h, p); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if got, want := cc.n.Load()-before, int64(EncryptedHeaderSize+CiphertextLen(n)); got != want {
			t.Errorf("%d bytes: %d bytes on the wire, want %d", n, got, want)
		}
		gh, gp, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if gh.ExtensionType != h.ExtensionType || gh.MsgType != h.MsgType || int(gh.Length) != n || !bytes.Equal(gp, p) {
			t.Errorf("%d bytes: echo differs (header %v, %d bytes)", n, gh, len(gp))
		}
	}
	// ct_len at the chunk boundaries.
	for n, want := range map[int]int{0: 0, 1: 17, 65519: 65535, 65520: 65552, 131038: 131070, 131039: 131087} {
		if got := CiphertextLen(n); got != want {
			t.Errorf("CiphertextLen(%d) = %d, want %d", n, got, want)
		}
	}
}

// TestConcurrentReadWrite: one goroutine writes while another reads.
func TestConcurrentReadWrite(t *testing.T) {
	l := listen(t, serverConfig(t))
	echo(t, l)
	c, _ := dialCounting(t, l.Addr().String(), clientConfig(t))
	const frames = 200
	errc := make(chan error, 1)
	go func() {
		for i := range frames {
			if err := c.WriteFrame(codec.Header{MsgType: byte(i)}, pattern(i*37)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := range frames {
		h, p, err := c.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if h.MsgType != byte(i) || !bytes.Equal(p, pattern(i*37)) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func dialErr(t *testing.T, addr string, cfg *Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, "tcp", addr, cfg)
	if err == nil {
		c.Close()
	}
	return err
}

func TestCertificateRejections(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name   string
		server func(*Config)
		client func(*Config)
		want   error
	}{
		{"wrong authority", nil, func(c *Config) {
			other, _ := GenerateKey(newDetReader("other authority"))
			pub := PublicKey(other)
			c.AuthorityPubKey = &pub
		}, ErrCertSignature},
		{"expired", func(c *Config) { c.Now = func() time.Time { return now.Add(-2 * time.Hour) } }, nil, ErrCertExpired},
		{"expired beyond skew", func(c *Config) {
			c.Now = func() time.Time { return now.Add(-time.Hour - 12*time.Second) }
		}, nil, ErrCertExpired},
		{"not yet valid", func(c *Config) { c.Now = func() time.Time { return now.Add(2 * time.Hour) } }, nil, ErrCertNotYetValid},
		{"not yet valid beyond skew", func(c *Config) {
			c.CertBackdate = -1 // valid_from = now + 1s ... plus the offset below
			c.Now = func() time.Time { return now.Add(12 * time.Second) }
		}, nil, ErrCertNotYetValid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			scfg := serverConfig(t)
			if tc.server != nil {
				tc.server(scfg)
			}
			ccfg := clientConfig(t)
			if tc.client != nil {
				tc.client(ccfg)
			}
			l := listen(t, scfg)
			echo(t, l)
			err := dialErr(t, l.Addr().String(), ccfg)
			if !errors.Is(err, ErrBadCertificate) || !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// Within the skew: accepted.
	t.Run("within skew", func(t *testing.T) {
		scfg := serverConfig(t)
		scfg.CertBackdate = -1
		scfg.Now = func() time.Time { return now.Add(5 * time.Second) }
		l := listen(t, scfg)
		echo(t, l)
		if err := dialErr(t, l.Addr().String(), clientConfig(t)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestCertificateVerify(t *testing.T) {
	auth, pub := testAuthority(t)
	static, _ := generateKeypair(newDetReader("static"))
	c, err := SignCertificate(auth, static.x, 1000, 2000)
	if err != nil {
		t.Fatal(err)
	}
	at := func(s int64) time.Time { return time.Unix(s, 0) }
	for _, tc := range []struct {
		now  int64
		skew time.Duration
		want error
	}{
		{1000, 0, nil}, {2000, 0, nil}, {999, 0, ErrCertNotYetValid}, {2001, 0, ErrCertExpired},
		{990, 10 * time.Second, nil}, {989, 10 * time.Second, ErrCertNotYetValid},
		{2010, 10 * time.Second, nil}, {2011, 10 * time.Second, ErrCertExpired},
	} {
		err := c.Verify(*pub, static.x, at(tc.now), tc.skew)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("now %d skew %s: %v, want %v", tc.now, tc.skew, err, tc.want)
		}
	}
	// Another static key: the signature must not verify.
	other, _ := generateKeypair(newDetReader("other static"))
	if err := c.Verify(*pub, other.x, at(1500), 0); !errors.Is(err, ErrCertSignature) {
		t.Errorf("other static key: %v", err)
	}
	bad := c
	bad.Version = 1
	if err := bad.Verify(*pub, static.x, at(1500), 0); !errors.Is(err, ErrCertVersion) {
		t.Errorf("version 1: %v", err)
	}
	// Round trip through the wire form.
	b := c.Marshal()
	c2, err := ParseCertificate(b[:])
	if err != nil || c2 != c {
		t.Errorf("parse(marshal) = %v, %v", c2, err)
	}
	if _, err := ParseCertificate(b[:73]); !errors.Is(err, ErrBadCertificate) {
		t.Errorf("short certificate: %v", err)
	}
}

// TestCertificateVersionOverWire: a responder presenting a correctly signed
// version-1 certificate is refused.
func TestCertificateVersionOverWire(t *testing.T) {
	auth, pub := testAuthority(t)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		runResponder(b, responderParams{rand: newDetReader("r"), identity: func() (keypair, Certificate, error) {
			kp, err := generateKeypair(newDetReader("s"))
			if err != nil {
				return keypair{}, Certificate{}, err
			}
			now := unixClamp(time.Now())
			c := Certificate{Version: 1, ValidFrom: now - 60, NotValidAfter: now + 3600}
			d := c.Digest(kp.x)
			sig, err := schnorr.Sign(auth, d[:])
			if err != nil {
				return keypair{}, Certificate{}, err
			}
			copy(c.Signature[:], sig.Serialize())
			return kp, c, nil
		}})
	}()
	c := Client(a, &Config{AuthorityPubKey: pub})
	err := c.Handshake(context.Background())
	if !errors.Is(err, ErrBadCertificate) || !errors.Is(err, ErrCertVersion) {
		t.Fatalf("got %v", err)
	}
}

func TestInsecureSkipVerify(t *testing.T) {
	l := listen(t, serverConfig(t))
	echo(t, l)
	if err := dialErr(t, l.Addr().String(), &Config{}); !errors.Is(err, ErrUnpinnedAuthority) {
		t.Errorf("no key, no opt-out: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, "tcp", l.Addr().String(), &Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.AuthorityVerified() {
		t.Error("AuthorityVerified with InsecureSkipVerify")
	}
	if err := c.WriteFrame(codec.Header{MsgType: 1}, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := c.ReadFrame(); err != nil || string(p) != "hi" {
		t.Fatalf("%q %v", p, err)
	}
}

func TestResponderConfigErrors(t *testing.T) {
	if _, err := Listen("tcp", "127.0.0.1:0", &Config{}); !errors.Is(err, ErrNoAuthorityKey) {
		t.Errorf("Listen without authority key: %v", err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if err := Server(b, nil).Handshake(context.Background()); !errors.Is(err, ErrNoAuthorityKey) {
		t.Errorf("Server without authority key: %v", err)
	}
}

// rawListener accepts plain TCP connections for tests that misbehave.
func rawListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestTruncatedHandshake(t *testing.T) {
	t.Run("client sends 30 bytes", func(t *testing.T) {
		ln := rawListener(t)
		go func() {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return
			}
			c.Write(make([]byte, 30))
			c.Close()
		}()
		nc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		cfg := serverConfig(t)
		cfg.HandshakeTimeout = 5 * time.Second
		start := time.Now()
		err = Server(nc, cfg).Handshake(context.Background())
		if !errors.Is(err, ErrHandshakeTruncated) {
			t.Fatalf("got %v", err)
		}
		if time.Since(start) > 2*time.Second {
			t.Error("took too long: did it wait for the timeout?")
		}
	})
	t.Run("server sends 100 bytes", func(t *testing.T) {
		ln := rawListener(t)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.ReadFull(c, make([]byte, Act1Size))
			c.Write(make([]byte, 100))
			c.Close()
		}()
		cfg := clientConfig(t)
		cfg.HandshakeTimeout = 5 * time.Second
		start := time.Now()
		err := dialErr(t, ln.Addr().String(), cfg)
		if !errors.Is(err, ErrHandshakeTruncated) {
			t.Fatalf("got %v", err)
		}
		if time.Since(start) > 2*time.Second {
			t.Error("took too long")
		}
	})
	t.Run("garbage act 2", func(t *testing.T) {
		ln := rawListener(t)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			io.ReadFull(c, make([]byte, Act1Size))
			c.Write(pattern(Act2Size))
			io.Copy(io.Discard, c)
		}()
		err := dialErr(t, ln.Addr().String(), clientConfig(t))
		if !errors.Is(err, ErrDecrypt) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestHandshakeTimeout(t *testing.T) {
	cfg := serverConfig(t)
	cfg.HandshakeTimeout = 500 * time.Millisecond
	l := listen(t, cfg)
	echo(t, l)

	// A client that connects and says nothing is dropped after the timeout.
	silent, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	start := time.Now()
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ne net.Error
	if n, err := silent.Read(make([]byte, 1)); err == nil || n != 0 || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("silent client read %d bytes, %v; want it closed", n, err)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 4*time.Second {
		t.Errorf("dropped after %s, want about 500ms", d)
	}
	// Meanwhile and afterwards the listener serves others.
	if err := dialErr(t, l.Addr().String(), clientConfig(t)); err != nil {
		t.Fatal(err)
	}

	// The same on a bare Server connection, with the typed error.
	ln := rawListener(t)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			time.Sleep(2 * time.Second)
			c.Close()
		}
	}()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if err := Server(nc, cfg).Handshake(context.Background()); !errors.Is(err, ErrHandshakeTimeout) {
		t.Fatalf("got %v", err)
	}

	// A client whose server never answers: the context deadline applies.
	ln2 := rawListener(t)
	go func() {
		c, err := ln2.Accept()
		if err == nil {
			time.Sleep(2 * time.Second)
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err = Dial(ctx, "tcp", ln2.Addr().String(), clientConfig(t))
	if !errors.Is(err, ErrHandshakeTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}

func TestHandshakeCancel(t *testing.T) {
	ln := rawListener(t)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			time.Sleep(2 * time.Second)
			c.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := Dial(ctx, "tcp", ln.Addr().String(), clientConfig(t))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > time.Second {
		t.Error("cancellation did not interrupt the handshake")
	}
}

// TestMaxHandshakes: with a cap of N, the N+1th concurrent stalled handshake
// is closed at once, and slots free up when handshakes end.
func TestMaxHandshakes(t *testing.T) {
	cfg := serverConfig(t)
	cfg.MaxHandshakes = 2
	cfg.HandshakeTimeout = 10 * time.Second
	l := listen(t, cfg)
	echo(t, l)

	var stalled []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, c)
	}
	extra, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	start := time.Now()
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ne net.Error
	if n, err := extra.Read(make([]byte, 1)); n != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("extra connection: %d bytes, %v; want it closed", n, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("extra connection closed after %s, want at once", d)
	}
	for _, c := range stalled {
		c.Close()
	}
	// The stalled ones fail as truncated and release their slots.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := dialErr(t, l.Addr().String(), clientConfig(t))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slots never freed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestListenerCloseStopsGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	cfg := serverConfig(t)
	l, err := Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Some handshakes in flight, one completed but not accepted.
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := Dial(context.Background(), "tcp", l.Addr().String(), clientConfig(t))
		if err == nil {
			conns = append(conns, c.NetConn())
		}
	}()
	<-done
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPlaintext(t *testing.T) {
	l := listen(t, &Config{Plaintext: true})
	echo(t, l)
	c, cc := dialCounting(t, l.Addr().String(), &Config{Plaintext: true})
	if st := c.ConnectionState(); !st.Plaintext || !st.HandshakeComplete {
		t.Errorf("state %+v", st)
	}
	for _, n := range []int{0, 5, 70000} {
		before := cc.n.Load()
		if err := c.WriteFrame(codec.Header{MsgType: 9}, pattern(n)); err != nil {
			t.Fatal(err)
		}
		if got := cc.n.Load() - before; got != int64(codec.HeaderSize+n) {
			t.Errorf("%d bytes on the wire, want %d", got, codec.HeaderSize+n)
		}
		h, p, err := c.ReadFrame()
		if err != nil || h.MsgType != 9 || !bytes.Equal(p, pattern(n)) {
			t.Fatalf("%v %d %v", h, len(p), err)
		}
	}
}

func TestPersistentStaticKey(t *testing.T) {
	scfg := serverConfig(t)
	static, _ := GenerateKey(newDetReader("persistent static"))
	scfg.StaticKey = static
	l := listen(t, scfg)
	echo(t, l)
	var states []State
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := Dial(ctx, "tcp", l.Addr().String(), clientConfig(t))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, c.ConnectionState())
		c.Close()
	}
	if states[0].ServerStatic != PublicKey(static) || states[1].ServerStatic != PublicKey(static) {
		t.Error("static key is not the configured one")
	}
	if states[0].Certificate != states[1].Certificate {
		t.Error("certificate not reused for a persistent static key")
	}
	if states[0].HandshakeHash == states[1].HandshakeHash {
		t.Error("two sessions share a handshake hash")
	}

	// Without StaticKey every connection gets a fresh one.
	l2 := listen(t, serverConfig(t))
	echo(t, l2)
	var keys [][32]byte
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := Dial(ctx, "tcp", l2.Addr().String(), clientConfig(t))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		k, _ := c.PeerStatic()
		keys = append(keys, k)
		c.Close()
	}
	if keys[0] == keys[1] {
		t.Error("fresh static key per connection expected")
	}
}

// ---- in-memory transport tests ----

// pipeConn is a net.Conn over an in-memory byte stream: reads come from in,
// writes go to out. It records Close.
type pipeConn struct {
	in     *bytes.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	closed atomic.Bool
}

func newPipeConn(in []byte) *pipeConn { return &pipeConn{in: bytes.NewReader(in)} }

func (c *pipeConn) Read(p []byte) (int, error) { return c.in.Read(p) }
func (c *pipeConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}
func (c *pipeConn) Close() error                     { c.closed.Store(true); return nil }
func (c *pipeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *pipeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *pipeConn) SetDeadline(time.Time) error      { return nil }
func (c *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *pipeConn) SetWriteDeadline(time.Time) error { return nil }

// sessionKeys runs a handshake in memory and returns both results.
func sessionKeys(t testing.TB) (ini, resp *handshakeResult) {
	t.Helper()
	auth, pub := testAuthority(t)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	type r struct {
		res *handshakeResult
		err error
	}
	ch := make(chan r, 1)
	go func() {
		res, err := runResponder(b, responderParams{rand: newDetReader("sk r"), identity: func() (keypair, Certificate, error) {
			kp, err := generateKeypair(newDetReader("sk s"))
			if err != nil {
				return kp, Certificate{}, err
			}
			c, err := SignCertificate(auth, kp.x, 0, 0xffffffff)
			return kp, c, err
		}})
		ch <- r{res, err}
	}()
	ini, err := runInitiator(a, initiatorParams{rand: newDetReader("sk i"), verify: func(c Certificate, x [32]byte) error {
		return c.Verify(*pub, x, time.Now(), 0)
	}})
	if err != nil {
		t.Fatal(err)
	}
	rr := <-ch
	if rr.err != nil {
		t.Fatal(rr.err)
	}
	return ini, rr.res
}

// cloneResult copies the cipher states so one handshake serves many tests.
func cloneResult(r *handshakeResult) *handshakeResult {
	c := *r
	s, v := *r.send, *r.recv
	c.send, c.recv = &s, &v
	return &c
}

// sealFrames returns the wire bytes of frames sent by the initiator.
func sealFrames(t testing.TB, ini *handshakeResult, frames ...[]byte) []byte {
	t.Helper()
	w := newPipeConn(nil)
	c := establishedConn(w, nil, true, cloneResult(ini))
	for i, p := range frames {
		if err := c.WriteFrame(codec.Header{MsgType: byte(i)}, p); err != nil {
			t.Fatal(err)
		}
	}
	return w.out.Bytes()
}

func TestFlippedBit(t *testing.T) {
	ini, resp := sessionKeys(t)
	wire := sealFrames(t, ini, pattern(100))
	for _, pos := range []int{0, 21, 22, 50, len(wire) - 1} {
		bad := append([]byte{}, wire...)
		bad[pos] ^= 0x10
		pc := newPipeConn(bad)
		c := establishedConn(pc, nil, false, cloneResult(resp))
		_, _, err := c.ReadFrame()
		if !errors.Is(err, ErrDecrypt) {
			t.Errorf("bit flipped at %d: %v", pos, err)
		}
		if !pc.closed.Load() {
			t.Errorf("bit flipped at %d: connection not closed", pos)
		}
		if _, _, err2 := c.ReadFrame(); !errors.Is(err2, ErrDecrypt) {
			t.Errorf("bit flipped at %d: error not sticky: %v", pos, err2)
		}
	}
	// Unmodified: fine, then EOF.
	c := establishedConn(newPipeConn(wire), nil, false, cloneResult(resp))
	if _, p, err := c.ReadFrame(); err != nil || !bytes.Equal(p, pattern(100)) {
		t.Fatalf("%v", err)
	}
	if _, _, err := c.ReadFrame(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

// A peer that announces a frame the limit allows but sends only its header
// must not make us hold the announced size.
func TestAnnouncedFrameNotAllocatedUpfront(t *testing.T) {
	ini, resp := sessionKeys(t)
	wire := sealFrames(t, ini, make([]byte, codec.MaxPayload))[:EncryptedHeaderSize+100]
	c := establishedConn(newPipeConn(wire), nil, false, cloneResult(resp))
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	_, _, err := c.ReadFrame()
	runtime.ReadMemStats(&ms1)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v", err)
	}
	if d := ms1.TotalAlloc - ms0.TotalAlloc; d > 2<<20 {
		t.Errorf("allocated %d bytes for a 16 MB frame of which 100 bytes arrived", d)
	}
}

func TestFrameTooLarge(t *testing.T) {
	ini, resp := sessionKeys(t)
	// Only the header is sent: the reader must refuse from the header alone.
	wire := sealFrames(t, ini, make([]byte, codec.MaxPayload))[:EncryptedHeaderSize]
	cfg := &Config{MaxPayload: func(h codec.Header) int { return 1000 }}
	pc := newPipeConn(wire)
	c := establishedConn(pc, cfg, false, cloneResult(resp))
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	_, _, err := c.ReadFrame()
	runtime.ReadMemStats(&ms1)
	var fe *FrameTooLargeError
	if !errors.Is(err, ErrFrameTooLarge) || !errors.As(err, &fe) || fe.Header.Length != codec.MaxPayload || fe.Limit != 1000 {
		t.Fatalf("got %v", err)
	}
	if d := ms1.TotalAlloc - ms0.TotalAlloc; d > 64<<10 {
		t.Errorf("allocated %d bytes for a refused frame", d)
	}
	if !pc.closed.Load() {
		t.Error("connection not closed")
	}

	// Over TCP, with a per-type limit.
	scfg := serverConfig(t)
	scfg.MaxPayload = func(h codec.Header) int {
		if h.MsgType == 7 {
			return 10
		}
		return codec.MaxPayload
	}
	l := listen(t, scfg)
	got := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		if _, _, err := c.ReadFrame(); err != nil {
			got <- err
			return
		}
		_, _, err = c.ReadFrame()
		got <- err
	}()
	cc, _ := dialCounting(t, l.Addr().String(), clientConfig(t))
	cc.WriteFrame(codec.Header{MsgType: 8}, make([]byte, 11))
	cc.WriteFrame(codec.Header{MsgType: 7}, make([]byte, 11))
	if err := <-got; !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v", err)
	}

	// Writing more than a U24 can describe is refused, nothing sent.
	w := newPipeConn(nil)
	wc := establishedConn(w, nil, true, cloneResult(ini))
	if err := wc.WriteFrame(codec.Header{}, make([]byte, codec.MaxPayload+1)); !errors.Is(err, ErrFrameTooLarge) || w.out.Len() != 0 {
		t.Errorf("oversized write: %v, %d bytes sent", err, w.out.Len())
	}
}

func TestTruncatedFrame(t *testing.T) {
	ini, resp := sessionKeys(t)
	wire := sealFrames(t, ini, pattern(70000))
	for _, n := range []int{10, 22, 100, 65535 + 22, len(wire) - 1} {
		c := establishedConn(newPipeConn(wire[:n]), nil, false, cloneResult(resp))
		if _, _, err := c.ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut at %d: %v", n, err)
		}
	}
}

func TestNonceExhaustion(t *testing.T) {
	ini, resp := sessionKeys(t)
	r := cloneResult(ini)
	r.send.n = ^uint64(0) - 1 // 2^64−2: the last usable nonce
	w := newPipeConn(nil)
	c := establishedConn(w, nil, true, r)
	// The header takes the last nonce; the payload chunk would need 2^64−1.
	if err := c.WriteFrame(codec.Header{}, []byte{1}); !errors.Is(err, ErrNonceExhausted) {
		t.Fatalf("got %v", err)
	}
	if err := c.WriteFrame(codec.Header{}, nil); !errors.Is(err, ErrNonceExhausted) {
		t.Fatalf("not sticky: %v", err)
	}
	rr := cloneResult(resp)
	rr.recv.n = ^uint64(0)
	rc := establishedConn(newPipeConn(make([]byte, 100)), nil, false, rr)
	if _, _, err := rc.ReadFrame(); !errors.Is(err, ErrNonceExhausted) {
		t.Fatalf("read: %v", err)
	}
}

type testMsg struct{ v uint32 }

func (m *testMsg) MsgType() uint8        { return 0x99 }
func (m *testMsg) ExtensionType() uint16 { return 0 }
func (m *testMsg) MessageName() string   { return "TestMsg" }
func (m *testMsg) Fields(c *codec.Codec) { c.U32("v", &m.v) }

func TestWriteMessage(t *testing.T) {
	ini, resp := sessionKeys(t)
	w := newPipeConn(nil)
	c := establishedConn(w, nil, true, cloneResult(ini))
	if err := c.WriteMessage(&testMsg{v: 0xdeadbeef}, codec.Options{}); err != nil {
		t.Fatal(err)
	}
	rc := establishedConn(newPipeConn(w.out.Bytes()), nil, false, cloneResult(resp))
	h, p, err := rc.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	var got testMsg
	if err := codec.Decode(p, &got, codec.Options{}); err != nil {
		t.Fatal(err)
	}
	if h != (codec.Header{MsgType: 0x99, Length: 4}) || got.v != 0xdeadbeef {
		t.Errorf("got %v %x", h, p)
	}
}

// TestReadFrameAllocs: a read allocates the payload buffer and nothing else;
// a write allocates nothing once its buffer has grown.
func TestReadFrameAllocs(t *testing.T) {
	ini, resp := sessionKeys(t)
	wire := sealFrames(t, ini, pattern(64))
	rs := cloneResult(resp)
	pc := newPipeConn(nil)
	rc := establishedConn(pc, nil, false, rs)
	allocs := testing.AllocsPerRun(100, func() {
		pc.in.Reset(wire)
		rs.recv.n = resp.recv.n
		if _, _, err := rc.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("ReadFrame: %.1f allocations, want 1 (the payload)", allocs)
	}
	w := newPipeConn(nil)
	wc := establishedConn(w, nil, true, cloneResult(ini))
	p := pattern(64)
	wc.WriteFrame(codec.Header{}, p)
	allocs = testing.AllocsPerRun(100, func() {
		w.out.Reset()
		if err := wc.WriteFrame(codec.Header{}, p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("WriteFrame: %.1f allocations, want 0", allocs)
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestListenerLogs: refused connections and failed handshakes are logged
// with the remote address and the reason.
func TestListenerLogs(t *testing.T) {
	var logs syncBuffer
	cfg := serverConfig(t)
	cfg.MaxHandshakes = 1
	cfg.HandshakeTimeout = 300 * time.Millisecond
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug})
	l := listen(t, cfg)
	first, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	waitFor(t, "refusal log", func() bool {
		return strings.Contains(logs.String(), "connection refused") && strings.Contains(logs.String(), second.LocalAddr().String())
	})
	if !strings.Contains(logs.String(), "too many handshakes") {
		t.Errorf("refusal reason missing:\n%s", logs.String())
	}
	waitFor(t, "timeout log", func() bool {
		s := logs.String()
		return strings.Contains(s, "handshake failed") && strings.Contains(s, "timed out") && strings.Contains(s, first.LocalAddr().String())
	})
}

// TestImplicitHandshake: Client and Server handshake on first use.
func TestImplicitHandshake(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	cc, sc := Client(a, clientConfig(t)), Server(b, serverConfig(t))
	errc := make(chan error, 1)
	go func() { errc <- cc.WriteFrame(codec.Header{MsgType: 3}, []byte("x")) }()
	h, p, err := sc.ReadFrame()
	if err != nil || h.MsgType != 3 || string(p) != "x" {
		t.Fatalf("%v %q %v", h, p, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	cs, ss := cc.ConnectionState(), sc.ConnectionState()
	if !cs.HandshakeComplete || !cs.Initiator || !cs.AuthorityVerified || ss.Initiator || ss.AuthorityVerified {
		t.Errorf("states %+v %+v", cs, ss)
	}
	if cs.ServerStatic != ss.ServerStatic || cs.HandshakeHash != ss.HandshakeHash || cs.Certificate != ss.Certificate {
		t.Error("the two sides disagree about the session")
	}
}

// TestReadTimeoutBetweenFrames: a read deadline that fires before a frame
// starts leaves the connection usable.
func TestReadTimeoutBetweenFrames(t *testing.T) {
	l := listen(t, serverConfig(t))
	echo(t, l)
	c, _ := dialCounting(t, l.Addr().String(), clientConfig(t))
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var ne net.Error
	if _, _, err := c.ReadFrame(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("got %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	if err := c.WriteFrame(codec.Header{}, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := c.ReadFrame(); err != nil || string(p) != "after" {
		t.Fatalf("%q %v", p, err)
	}
}
