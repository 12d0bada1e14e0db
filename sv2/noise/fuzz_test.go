package noise

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/sv2/codec"
)

// fuzzRW feeds in to the reader side and discards writes, counting both.
type fuzzRW struct {
	in      *bytes.Reader
	read    int
	written int
}

func (f *fuzzRW) Read(p []byte) (int, error) {
	n, err := f.in.Read(p)
	f.read += n
	return n, err
}

func (f *fuzzRW) Write(p []byte) (int, error) { f.written += len(p); return len(p), nil }

// fuzzFixture holds keys computed once for all fuzz iterations.
type fuzzFixture struct {
	eI, eR, sR keypair
	cert       Certificate
	authX      [32]byte
	act1, act2 []byte
	ini, resp  *handshakeResult
}

var (
	fixtureOnce sync.Once
	fixture     fuzzFixture
)

func getFixture(t testing.TB) *fuzzFixture {
	fixtureOnce.Do(func() {
		k := loadTranscriptKeys(t)
		f := &fixture
		f.eI, f.eR, f.sR = k.eI, k.eR, k.sR
		f.authX = PublicKey(k.auth)
		var err error
		if f.cert, err = SignCertificate(k.auth, k.sR.x, tNow-60, tNow+3600); err != nil {
			t.Fatal(err)
		}
		ref := computeReference(t)
		f.act1, f.act2 = ref.act1, ref.act2
		f.ini, f.resp = sessionKeys(t)
	})
	return &fixture
}

func FuzzResponderAct1(f *testing.F) {
	fx := getFixture(f)
	f.Add(fx.act1)
	f.Add(fx.act1[:30])
	f.Add(append(append([]byte{}, fx.act1...), 1, 2, 3))
	f.Add(make([]byte, 64))
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		rw := &fuzzRW{in: bytes.NewReader(data)}
		eR := fx.eR
		res, err := runResponder(rw, responderParams{rand: newDetReader("fuzz"), ephemeral: &eR,
			identity: func() (keypair, Certificate, error) { return fx.sR, fx.cert, nil }})
		if rw.read > Act1Size {
			t.Fatalf("read %d bytes, more than act 1", rw.read)
		}
		if len(data) < Act1Size {
			if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				t.Fatalf("short act 1 (%d bytes): %v", len(data), err)
			}
			return
		}
		// Every 64-byte string is a valid ElligatorSwift encoding.
		if err != nil || res == nil || rw.written != Act2Size {
			t.Fatalf("full act 1: %v, wrote %d", err, rw.written)
		}
	})
}

func FuzzInitiatorAct2(f *testing.F) {
	fx := getFixture(f)
	f.Add(fx.act2)
	f.Add(fx.act2[:100])
	for _, pos := range []int{0, 64, 100, 150, 233} {
		b := append([]byte{}, fx.act2...)
		b[pos] ^= 1
		f.Add(b)
	}
	f.Add(make([]byte, Act2Size))
	now := time.Unix(tNow, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		rw := &fuzzRW{in: bytes.NewReader(data)}
		eI := fx.eI
		res, err := runInitiator(rw, initiatorParams{rand: newDetReader("fuzz"), ephemeral: &eI,
			verify: func(c Certificate, x [32]byte) error { return c.Verify(fx.authX, x, now, DefaultClockSkew) }})
		if rw.read > Act2Size {
			t.Fatalf("read %d bytes, more than act 2", rw.read)
		}
		if rw.written != Act1Size {
			t.Fatalf("wrote %d bytes", rw.written)
		}
		valid := len(data) >= Act2Size && bytes.Equal(data[:Act2Size], fx.act2)
		if valid != (err == nil) {
			t.Fatalf("valid=%v err=%v", valid, err)
		}
		if err == nil && (!res.authorityVerified || res.serverStaticX != fx.sR.x) {
			t.Fatal("accepted without verification")
		}
	})
}

func FuzzParseCertificate(f *testing.F) {
	fx := getFixture(f)
	b := fx.cert.Marshal()
	f.Add(b[:])
	f.Add(b[:73])
	f.Add(make([]byte, CertificateSize))
	now := time.Unix(tNow, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCertificate(data)
		if err != nil {
			if len(data) == CertificateSize {
				t.Fatalf("74 bytes refused: %v", err)
			}
			return
		}
		if m := c.Marshal(); !bytes.Equal(m[:], data) {
			t.Fatal("marshal(parse(b)) != b")
		}
		err = c.Verify(fx.authX, fx.sR.x, now, DefaultClockSkew)
		if (err == nil) != bytes.Equal(data, b[:]) {
			t.Fatalf("verify: %v", err)
		}
	})
}

func FuzzTransportRead(f *testing.F) {
	fx := getFixture(f)
	// Small frames only: the fuzzing engine slows down badly on inputs of
	// tens of kilobytes, and multi-chunk frames are covered by unit tests.
	valid := sealFrames(f, fx.ini, nil, pattern(64), pattern(300))
	f.Add(valid)
	f.Add(valid[:22])
	f.Add(valid[:40])
	flipped := append([]byte{}, valid...)
	flipped[30] ^= 0x80
	f.Add(flipped)
	f.Add(bytes.Repeat([]byte{0xff}, 100))
	cfg := &Config{MaxPayload: func(codec.Header) int { return 1 << 20 }}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := establishedConn(newPipeConn(data), cfg, false, cloneResult(fx.resp))
		total := 0
		for range 16 {
			h, p, err := c.ReadFrame()
			if err != nil {
				return
			}
			if int(h.Length) != len(p) {
				t.Fatalf("header says %d, payload has %d", h.Length, len(p))
			}
			total += EncryptedHeaderSize + CiphertextLen(len(p))
			if total > len(data) {
				t.Fatal("returned more than was sent")
			}
		}
	})
}

func FuzzParseAuthorityPublicKey(f *testing.F) {
	f.Add("9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72")
	f.Add("9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh")
	f.Add("2di19GHYQnAZJmEpoUeP7C3Eg9TCcksHr23rZCC83dvUiZgiDL")
	f.Add("")
	f.Add("1111111111111111111111111111111111111111111111111")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseAuthorityPublicKey(s)
		if err != nil {
			if !errors.Is(err, ErrKeyFormat) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if enc := EncodeAuthorityPublicKey(k); enc != strings.TrimSpace(s) {
			t.Fatalf("accepted %q, canonical form %q", s, enc)
		}
	})
}

func FuzzParseSecretKey(f *testing.F) {
	f.Add("mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n")
	f.Add("9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseSecretKey(s)
		if err != nil {
			if !errors.Is(err, ErrKeyFormat) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if enc := EncodeSecretKey(k); enc != strings.TrimSpace(s) {
			t.Fatalf("accepted %q, canonical form %q", s, enc)
		}
	})
}
