package noise

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ellswift"

	"github.com/sv2kit/sv2kit/sv2/codec"
)

// BenchmarkHandshake runs complete handshakes in memory: both roles' CPU,
// including the per-connection static key and certificate the responder
// mints and the certificate check the initiator does.
func BenchmarkHandshake(b *testing.B) { benchHandshake(b, nil) }

// BenchmarkHandshakePersistentStatic: the responder has a Config.StaticKey,
// so its certificate is cached and no static key is generated or signed.
func BenchmarkHandshakePersistentStatic(b *testing.B) {
	k, err := GenerateKey(newDetReader("bench static"))
	if err != nil {
		b.Fatal(err)
	}
	benchHandshake(b, k)
}

func benchHandshake(b *testing.B, static *btcec.PrivateKey) {
	auth, pub := testAuthority(b)
	scfg := (&Config{AuthorityKey: auth, StaticKey: static}).resolved()
	ident := newIdentitySource(scfg)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		x, y := net.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := runResponder(y, responderParams{rand: scfg.Rand, identity: ident.get})
			done <- err
		}()
		_, err := runInitiator(x, initiatorParams{rand: scfg.Rand, verify: func(c Certificate, k [32]byte) error {
			return c.Verify(*pub, k, now, DefaultClockSkew)
		}})
		if err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		x.Close()
		y.Close()
	}
}

// BenchmarkHandshakeParts shows where handshake time goes.
func BenchmarkHandshakeParts(b *testing.B) {
	auth, pub := testAuthority(b)
	r := newDetReader("bench")
	kp, _ := generateKeypair(r)
	peer, _ := generateKeypair(r)
	cert, _ := SignCertificate(auth, kp.x, 0, 0xffffffff)
	b.Run("keygen+encode", func(b *testing.B) {
		for b.Loop() {
			if _, err := generateKeypair(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ecdh", func(b *testing.B) {
		for b.Loop() {
			if _, err := ellswift.V2Ecdh(kp.priv, peer.ell, kp.ell, true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			decodeEllSwift(peer.ell[:])
		}
	})
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			SignCertificate(auth, kp.x, 0, 0xffffffff)
		}
	})
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if err := cert.Verify(*pub, kp.x, time.Unix(1, 0), 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// loopConn is a net.Conn whose writes are read back by its reads.
type loopConn struct {
	pipeConn
	buf bytes.Buffer
}

func (c *loopConn) Read(p []byte) (int, error)  { return c.buf.Read(p) }
func (c *loopConn) Write(p []byte) (int, error) { return c.buf.Write(p) }

func BenchmarkFrameRoundTrip64(b *testing.B) {
	ini, resp := sessionKeys(b)
	lc := &loopConn{}
	w := establishedConn(lc, nil, true, cloneResult(ini))
	r := establishedConn(lc, nil, false, cloneResult(resp))
	p := pattern(64)
	h := codec.Header{MsgType: 0x15}
	b.ReportAllocs()
	b.SetBytes(64)
	for b.Loop() {
		if err := w.WriteFrame(h, p); err != nil {
			b.Fatal(err)
		}
		if _, _, err := r.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
}

const size64K = 64 << 10

func BenchmarkSeal64K(b *testing.B) {
	ini, _ := sessionKeys(b)
	c := establishedConn(&discardConn{}, nil, true, cloneResult(ini))
	p := pattern(size64K)
	b.ReportAllocs()
	b.SetBytes(size64K)
	for b.Loop() {
		if err := c.WriteFrame(codec.Header{}, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen64K(b *testing.B) {
	ini, resp := sessionKeys(b)
	wire := sealFrames(b, ini, pattern(size64K))
	rs := cloneResult(resp)
	pc := newPipeConn(nil)
	c := establishedConn(pc, nil, false, rs)
	n0 := resp.recv.n
	b.ReportAllocs()
	b.SetBytes(size64K)
	for b.Loop() {
		pc.in.Reset(wire)
		rs.recv.n = n0 // the same frame again: rewind the nonce
		if _, _, err := c.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
}

type discardConn struct{ pipeConn }

func (*discardConn) Write(p []byte) (int, error) { return len(p), nil }
func (*discardConn) Read(p []byte) (int, error)  { return 0, io.EOF }
