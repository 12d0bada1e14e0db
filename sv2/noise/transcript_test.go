package noise

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/sv2kit/sv2kit/sv2/codec"
)

// Transcript inputs. The keys and encodings were drawn once from
// newDetReader("transcript …") with generateKeypair and are fixed here, so
// the transcript does not depend on the encoder.
const (
	tEphI    = "67774e14353e2d73cd179ba0ad03bb430a91bbb2c80eba8a986c1430bba4dd6b"
	tEphIEll = "3a2e56ead1852e405e935c045274a22d6dbdd4e8b37a225c9bab1218627b8f101d328853cb8fad5054c4c0a5fa29b5d4ce91b1531e14d9d21aa82f8f58114c1d"
	tEphR    = "64dd43e3a822ce14276bd3a8a665abc2a9b8de2abd64a4f3da4b218368e0e370"
	tEphREll = "75b5513c2df2be3a706c8c21b1300a49321bd9c84d9c715bbbc78a0e521a1b5841640654932bc0df8c77b48b09343a72b317357fc30cfa784a99f4f78c672335"
	tStatR   = "092f4479a61c91b77f914075d7aaa3130dbaae0223ac87db84750e38e4856de9"
	tStatEll = "7a86219e44535c23109c07ecb9414f0b501b677f2f1549f3a3a47ad451892a4a6f3a9fd2ff748899c20cebeef387eecaf844b952d528cd5b45d2cfd5983dd3d5"
	tAuth    = "98f6a93dd51868c490922ada1ee6419d116b30de27460b575576dc3cb28cab22"
	tNow     = 1754000000 // 2025-07-31T22:13:20Z
)

// Golden outputs of the transcript: they pin the bytes so that neither the
// package nor the reference below can change them unnoticed.
const (
	goldenAct2 = "75b5513c2df2be3a706c8c21b1300a49321bd9c84d9c715bbbc78a0e521a1b5841640654932bc0df8c77b48b09343a72b317357fc30cfa784a99f4f78c672335" +
		"9e77fdcbadf89a46f49e1d96e0b8e6346a8034a9531f16fdf0c19664e194ac2074f1d339ef6fb142f28f8504e62c13a806cb13c756aea10b765c2f5072c603f1d5d83e1748ab29422d0b15e901048bde" +
		"288b1a53cc670f9b0fcf788684d7ef10fefb8db41a7fe53389be5a66d3cbcb8dbd774dda2bd41477a4b7c90ee4504caf5b890cb8680d83f2d27aac33e25e46137eb52865297d561d7d3621a5a534ceb2da5d9c9713eeba7742db"
	goldenFrameI2R = "35f4fb2fd77225d1e205b5f14f68547c1a453be5bb0b" +
		"0c64cbc21ea0d17dc599f917de84b6b29bd1e5ed8274c251b3f2010f53e082cf4cb60dd2bcee33af833a233e3d45c7d0a366230545688bf55fbb1f67e66a4fa7ea3a"
	goldenFrameR2I = "7155836045a38a95924267bcf2adaac60ceb093c4201" +
		"b3ff8dc67da3202da210fa241868eda9fb0b7c81cdf8"
)

// The first transport frames of the transcript.
var (
	tFrameI2RHeader  = codec.Header{MsgType: 0x00}
	tFrameI2RPayload = []byte("sv2kit transcript: initiator to responder, frame 1")
	tFrameR2IHeader  = codec.Header{MsgType: 0x01}
	tFrameR2IPayload = []byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x00}
)

// ---- an independent reference: Noise by hand (DIGEST §2.3–§2.7) ----

type refSymmetric struct {
	h, ck, k [32]byte
	hasK     bool
	n        uint64
}

func (s *refSymmetric) mixHash(d []byte) {
	s.h = sha256.Sum256(append(append([]byte{}, s.h[:]...), d...))
}

func refHMAC(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

// refHKDF is Noise's HKDF with two outputs.
func refHKDF(ck, ikm []byte) (o1, o2 [32]byte) {
	tk := refHMAC(ck, ikm)
	copy(o1[:], refHMAC(tk, []byte{0x01}))
	copy(o2[:], refHMAC(tk, append(append([]byte{}, o1[:]...), 0x02)))
	return o1, o2
}

func (s *refSymmetric) mixKey(ikm []byte) {
	s.ck, s.k = refHKDF(s.ck[:], ikm)
	s.hasK, s.n = true, 0
}

func refSeal(k [32]byte, n uint64, ad, p []byte) []byte {
	a, err := chacha20poly1305.New(k[:])
	if err != nil {
		panic(err)
	}
	var nonce [12]byte
	binary.LittleEndian.PutUint64(nonce[4:], n)
	return a.Seal(nil, nonce[:], p, ad)
}

func (s *refSymmetric) encryptAndHash(p []byte) []byte {
	c := append([]byte{}, p...)
	if s.hasK {
		c = refSeal(s.k, s.n, s.h[:], p)
		s.n++
	}
	s.mixHash(c)
	return c
}

// refECDH computes BIP324's v2_ecdh from both secrets, without ElligatorSwift
// decoding: x = x((a·b)·G).
func refECDH(a, b *btcec.PrivateKey, ellA, ellB []byte) [32]byte {
	var prod btcec.ModNScalar
	prod.Mul2(&a.Key, &b.Key)
	var p btcec.JacobianPoint
	btcec.ScalarBaseMultNonConst(&prod, &p)
	p.ToAffine()
	tag := sha256.Sum256([]byte("bip324_ellswift_xonly_ecdh"))
	var m []byte
	m = append(m, tag[:]...)
	m = append(m, tag[:]...)
	m = append(m, ellA...)
	m = append(m, ellB...)
	m = append(m, p.X.Bytes()[:]...)
	return sha256.Sum256(m)
}

func refTaggedHash(tag string, parts ...[]byte) [32]byte {
	th := sha256.Sum256([]byte(tag))
	h := sha256.New()
	h.Write(th[:])
	h.Write(th[:])
	for _, p := range parts {
		h.Write(p)
	}
	return [32]byte(h.Sum(nil))
}

// refBIP340Sign is BIP340's signing algorithm with aux = 32 zero bytes.
func refBIP340Sign(sk *btcec.PrivateKey, msg [32]byte) [64]byte {
	var p btcec.JacobianPoint
	d := sk.Key
	btcec.ScalarBaseMultNonConst(&d, &p)
	p.ToAffine()
	if p.Y.IsOdd() {
		d.Negate()
	}
	px := p.X.Bytes()
	db := d.Bytes()
	aux := refTaggedHash("BIP0340/aux", make([]byte, 32))
	var t [32]byte
	for i := range t {
		t[i] = db[i] ^ aux[i]
	}
	rnd := refTaggedHash("BIP0340/nonce", t[:], px[:], msg[:])
	var k btcec.ModNScalar
	k.SetBytes(&rnd)
	var r btcec.JacobianPoint
	btcec.ScalarBaseMultNonConst(&k, &r)
	r.ToAffine()
	if r.Y.IsOdd() {
		k.Negate()
	}
	rx := r.X.Bytes()
	eh := refTaggedHash("BIP0340/challenge", rx[:], px[:], msg[:])
	var e btcec.ModNScalar
	e.SetBytes(&eh)
	s := new(btcec.ModNScalar).Mul2(&e, &d).Add(&k)
	var sig [64]byte
	copy(sig[:32], rx[:])
	sb := s.Bytes()
	copy(sig[32:], sb[:])
	return sig
}

type refTranscript struct {
	h0, hAct1, hAfterE, hAfterS, hFinal [32]byte
	ckAfterEE, ckAfterES, ckFinal       [32]byte
	ee, es                              [32]byte
	cert                                [CertificateSize]byte
	act1, act2                          []byte
	k1, k2                              [32]byte
	frameI2R, frameR2I                  []byte
}

func refFrame(k [32]byte, h codec.Header, payload []byte) []byte {
	h.Length = uint32(len(payload))
	var hb [6]byte
	h.Put(hb[:])
	out := refSeal(k, 0, nil, hb[:])
	n := uint64(1)
	for off := 0; off < len(payload); off += MaxChunk {
		end := min(off+MaxChunk, len(payload))
		out = append(out, refSeal(k, n, nil, payload[off:end])...)
		n++
	}
	return out
}

func computeReference(t testing.TB) refTranscript {
	eI, _ := btcec.PrivKeyFromBytes(unhex(t, tEphI))
	eR, _ := btcec.PrivKeyFromBytes(unhex(t, tEphR))
	sR, _ := btcec.PrivKeyFromBytes(unhex(t, tStatR))
	auth, _ := btcec.PrivKeyFromBytes(unhex(t, tAuth))
	ellEI, ellER, ellSR := unhex(t, tEphIEll), unhex(t, tEphREll), unhex(t, tStatEll)

	var r refTranscript
	var s refSymmetric
	s.h = sha256.Sum256([]byte(ProtocolName)) // name > 32 bytes: hashed
	s.ck = s.h
	s.mixHash(nil) // empty prologue
	r.h0 = s.h

	// Act 1: -> e, then EncryptAndHash of the empty payload (no key yet).
	s.mixHash(ellEI)
	s.encryptAndHash(nil)
	r.act1 = append([]byte{}, ellEI...)
	r.hAct1 = s.h

	// Act 2: <- e, ee, s, es, payload.
	s.mixHash(ellER)
	r.hAfterE = s.h
	r.ee = refECDH(eI, eR, ellEI, ellER)
	s.mixKey(r.ee[:])
	r.ckAfterEE = s.ck
	cs := s.encryptAndHash(ellSR)
	r.hAfterS = s.h
	r.es = refECDH(eI, sR, ellEI, ellSR)
	s.mixKey(r.es[:])
	r.ckAfterES = s.ck

	// The certificate: digest over LE fields and the static x-only key.
	var sp btcec.JacobianPoint
	btcec.ScalarBaseMultNonConst(&sR.Key, &sp)
	sp.ToAffine()
	var pre []byte
	pre = binary.LittleEndian.AppendUint16(pre, 0)
	pre = binary.LittleEndian.AppendUint32(pre, tNow-60)
	pre = binary.LittleEndian.AppendUint32(pre, tNow+3600)
	pre = append(pre, sp.X.Bytes()[:]...)
	sig := refBIP340Sign(auth, sha256.Sum256(pre))
	copy(r.cert[:], pre[:10])
	copy(r.cert[10:], sig[:])
	cc := s.encryptAndHash(r.cert[:])
	r.hFinal = s.h
	r.ckFinal = s.ck
	r.act2 = append(append(append([]byte{}, ellER...), cs...), cc...)

	r.k1, r.k2 = refHKDF(s.ck[:], nil)
	r.frameI2R = refFrame(r.k1, tFrameI2RHeader, tFrameI2RPayload)
	r.frameR2I = refFrame(r.k2, tFrameR2IHeader, tFrameR2IPayload)
	return r
}

type transcriptKeys struct {
	eI, eR, sR keypair
	auth       *btcec.PrivateKey
}

func loadTranscriptKeys(t testing.TB) transcriptKeys {
	load := func(sk, ell string) keypair {
		priv, _ := btcec.PrivKeyFromBytes(unhex(t, sk))
		kp := keypair{priv: priv, ell: unhex64(t, ell), x: xOnly(priv)}
		// Input check: the encoding belongs to the key.
		if x, err := decodeEllSwift(kp.ell[:]); err != nil || x != kp.x {
			t.Fatalf("encoding %s does not decode to the key's x", ell)
		}
		return kp
	}
	auth, _ := btcec.PrivKeyFromBytes(unhex(t, tAuth))
	return transcriptKeys{load(tEphI, tEphIEll), load(tEphR, tEphREll), load(tStatR, tStatEll), auth}
}

func eqHex(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got  %x\n want %x", what, got, want)
	}
}

// TestTranscriptSteps drives flynn/noise step by step with our DH and checks
// every value it exposes against the hand-written reference.
func TestTranscriptSteps(t *testing.T) {
	ref := computeReference(t)
	k := loadTranscriptKeys(t)

	_, h0 := protocolConstants()
	eqHex(t, "h0", ref.h0[:], h0[:])

	// Both ECDH values, from each side.
	for _, c := range []struct {
		name      string
		initiator bool
		ours      keypair
		theirs    [64]byte
		want      [32]byte
	}{
		{"ee (initiator)", true, k.eI, k.eR.ell, ref.ee},
		{"ee (responder)", false, k.eR, k.eI.ell, ref.ee},
		{"es (initiator)", true, k.eI, k.sR.ell, ref.es},
		{"es (responder)", false, k.sR, k.eI.ell, ref.es},
	} {
		out, err := (&ellDH{initiator: c.initiator}).DH(c.ours.dhKey().Private, c.theirs[:])
		if err != nil {
			t.Fatal(err)
		}
		eqHex(t, c.name, out, c.want[:])
	}

	cert, err := SignCertificate(k.auth, k.sR.x, tNow-60, tNow+3600)
	if err != nil {
		t.Fatal(err)
	}
	cb := cert.Marshal()
	eqHex(t, "certificate (BIP340, zero aux)", cb[:], ref.cert[:])

	hsI, err := newHandshakeState(true, nil, &k.eI, nil)
	if err != nil {
		t.Fatal(err)
	}
	hsR, err := newHandshakeState(false, nil, &k.eR, &k.sR)
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "h0 (flynn)", hsI.ChannelBinding(), ref.h0[:])

	act1, _, _, err := hsI.WriteMessage(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "act 1", act1, ref.act1)
	eqHex(t, "h after act 1 (initiator)", hsI.ChannelBinding(), ref.hAct1[:])
	if _, _, _, err := hsR.ReadMessage(nil, act1); err != nil {
		t.Fatal(err)
	}
	eqHex(t, "h after act 1 (responder)", hsR.ChannelBinding(), ref.hAct1[:])

	act2, rc1, rc2, err := hsR.WriteMessage(nil, cb[:])
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "act 2", act2, ref.act2)
	eqHex(t, "final h (responder)", hsR.ChannelBinding(), ref.hFinal[:])
	payload, ic1, ic2, err := hsI.ReadMessage(nil, act2)
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "certificate received", payload, ref.cert[:])
	eqHex(t, "final h (initiator)", hsI.ChannelBinding(), ref.hFinal[:])
	eqHex(t, "rs", hsI.PeerStatic(), k.sR.ell[:])
	// The split keys are HKDF(ck_final, ""): equal keys mean equal ck.
	for _, c := range []struct {
		name string
		got  [32]byte
		want [32]byte
	}{
		{"k1 (initiator)", ic1.UnsafeKey(), ref.k1},
		{"k2 (initiator)", ic2.UnsafeKey(), ref.k2},
		{"k1 (responder)", rc1.UnsafeKey(), ref.k1},
		{"k2 (responder)", rc2.UnsafeKey(), ref.k2},
	} {
		eqHex(t, c.name, c.got[:], c.want[:])
	}
	// The reference's intermediate chaining keys, for the record: ck after
	// ee and es feed the keys that encrypt s and the certificate, which the
	// act-2 comparison above checks.
	if ref.ckAfterEE == ref.ckAfterES || ref.ckAfterES != ref.ckFinal {
		t.Error("reference chaining keys inconsistent")
	}
}

// recordingConn records everything written to it.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	out bytes.Buffer
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.out.Write(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *recordingConn) take() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := append([]byte{}, c.out.Bytes()...)
	c.out.Reset()
	return b
}

// TestTranscriptRoles runs the two role functions and the Conn transport
// with the transcript inputs over an in-memory connection and compares the
// bytes on the wire with the reference and the golden vectors.
func TestTranscriptRoles(t *testing.T) {
	ref := computeReference(t)
	k := loadTranscriptKeys(t)
	now := time.Unix(tNow, 0)
	authX := PublicKey(k.auth)

	a, b := net.Pipe()
	ca, cb := &recordingConn{Conn: a}, &recordingConn{Conn: b}
	defer ca.Close()
	defer cb.Close()

	type result struct {
		res *handshakeResult
		err error
	}
	rch := make(chan result, 1)
	go func() {
		res, err := runResponder(cb, responderParams{
			rand:      newDetReader("unused"),
			ephemeral: &k.eR,
			identity: func() (keypair, Certificate, error) {
				cert, err := SignCertificate(k.auth, k.sR.x, tNow-60, tNow+3600)
				return k.sR, cert, err
			},
		})
		rch <- result{res, err}
	}()
	ires, err := runInitiator(ca, initiatorParams{
		rand:      newDetReader("unused"),
		ephemeral: &k.eI,
		verify: func(c Certificate, x [32]byte) error {
			return c.Verify(authX, x, now, DefaultClockSkew)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := <-rch
	if r.err != nil {
		t.Fatal(r.err)
	}
	eqHex(t, "act 1 on the wire", ca.take(), ref.act1)
	act2 := cb.take()
	eqHex(t, "act 2 on the wire", act2, ref.act2)
	if !ires.authorityVerified || ires.serverStaticX != k.sR.x || ires.handshakeHash != ref.hFinal || r.res.handshakeHash != ref.hFinal {
		t.Errorf("handshake results: verified %v static %x hash %x/%x", ires.authorityVerified, ires.serverStaticX, ires.handshakeHash, r.res.handshakeHash)
	}

	ic := establishedConn(ca, nil, true, ires)
	rc := establishedConn(cb, nil, false, r.res)
	errc := make(chan error, 1)
	go func() { errc <- ic.WriteFrame(tFrameI2RHeader, tFrameI2RPayload) }()
	h, p, err := rc.ReadFrame()
	if err != nil || <-errc != nil {
		t.Fatal(err)
	}
	if h.MsgType != tFrameI2RHeader.MsgType || !bytes.Equal(p, tFrameI2RPayload) {
		t.Errorf("responder read %v %q", h, p)
	}
	frameI2R := ca.take()
	eqHex(t, "first initiator frame", frameI2R, ref.frameI2R)

	go func() { errc <- rc.WriteFrame(tFrameR2IHeader, tFrameR2IPayload) }()
	h, p, err = ic.ReadFrame()
	if err != nil || <-errc != nil {
		t.Fatal(err)
	}
	if h.MsgType != tFrameR2IHeader.MsgType || !bytes.Equal(p, tFrameR2IPayload) {
		t.Errorf("initiator read %v %x", h, p)
	}
	frameR2I := cb.take()
	eqHex(t, "first responder frame", frameR2I, ref.frameR2I)

	for _, g := range []struct {
		name, golden string
		got          []byte
	}{
		{"act 2", goldenAct2, act2},
		{"frame initiator→responder", goldenFrameI2R, frameI2R},
		{"frame responder→initiator", goldenFrameR2I, frameR2I},
	} {
		if hex.EncodeToString(g.got) != g.golden {
			t.Errorf("%s differs from the golden vector:\n got    %x\n golden %s", g.name, g.got, g.golden)
		}
	}
}
