package noise

import (
	"crypto/sha256"
	"encoding/binary"
	"net"
	"sync"

	"github.com/btcsuite/btcd/btcec/v2"
)

// detReader is a deterministic randomness stream: SHA256(seed ‖ counter)
// blocks. Tests use it to get reproducible keys and encodings. It is safe for
// concurrent use.
type detReader struct {
	mu   sync.Mutex
	seed []byte
	ctr  uint64
	buf  []byte
}

func newDetReader(seed string) *detReader { return &detReader{seed: []byte(seed)} }

func (r *detReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for n < len(p) {
		if len(r.buf) == 0 {
			var c [8]byte
			binary.LittleEndian.PutUint64(c[:], r.ctr)
			r.ctr++
			h := sha256.Sum256(append(append([]byte{}, r.seed...), c[:]...))
			r.buf = h[:]
		}
		k := copy(p[n:], r.buf)
		r.buf = r.buf[k:]
		n += k
	}
	return n, nil
}

// establishedConn returns a Conn over nc whose handshake already produced res.
func establishedConn(nc net.Conn, cfg *Config, client bool, res *handshakeResult) *Conn {
	c := &Conn{conn: nc, cfg: cfg.resolved(), client: client}
	c.state.Initiator = client
	c.install(res)
	c.hsDone.Store(true)
	return c
}

// xOnly returns the BIP340 x-only public key of priv.
func xOnly(priv *btcec.PrivateKey) [32]byte {
	var p btcec.JacobianPoint
	btcec.ScalarBaseMultNonConst(&priv.Key, &p)
	p.ToAffine()
	return *p.X.Bytes()
}

// protocolConstants returns ck0 and h0 as Noise defines them for our
// protocol name.
func protocolConstants() (ck0, h0 [32]byte) {
	ck0 = sha256.Sum256([]byte(ProtocolName))
	h0 = sha256.Sum256(ck0[:])
	return ck0, h0
}
