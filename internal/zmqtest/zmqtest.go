// Package zmqtest is a real libzmq publisher that sends what Bitcoin Core
// sends, for tests of code that subscribes to a node's ZMQ notifications
// (btcd has no ZMQ). Frames: [topic, body, 4-byte LE sequence number], one
// counter per topic; hashes in RPC display order, as Core publishes them.
package zmqtest

import (
	"encoding/binary"
	"testing"

	zmq "github.com/pebbe/zmq4"
)

// Topics Bitcoin Core publishes.
const (
	TopicHashBlock = "hashblock"
	TopicSequence  = "sequence"
	TopicRawTx     = "rawtx"
)

// CorePub is a PUB socket bound on loopback. Not safe for concurrent use.
type CorePub struct {
	t        testing.TB
	zctx     *zmq.Context
	sock     *zmq.Socket
	endpoint string
	// Seq is the next message sequence number per topic; tests change it to
	// make gaps or resets.
	Seq map[string]uint32
	// MempoolSeq is Core's mempool sequence, carried by 'A' and 'R'.
	MempoolSeq uint64
}

// New binds a publisher on endpoint ("" for a free loopback port) and
// closes it when the test ends.
func New(t testing.TB, endpoint string) *CorePub {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	sock, err := zctx.NewSocket(zmq.PUB)
	if err != nil {
		t.Fatal(err)
	}
	if err := sock.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if endpoint == "" {
		endpoint = "tcp://127.0.0.1:*"
	}
	if err := sock.Bind(endpoint); err != nil {
		t.Fatalf("bind %s: %v", endpoint, err)
	}
	ep, err := sock.GetLastEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	p := &CorePub{t: t, zctx: zctx, sock: sock, endpoint: ep, Seq: map[string]uint32{}, MempoolSeq: 1000}
	t.Cleanup(p.Close)
	return p
}

// Endpoint is the bound address, for the subscriber's configuration.
func (p *CorePub) Endpoint() string { return p.endpoint }

// Close unbinds the publisher (a node going away); safe to call twice.
func (p *CorePub) Close() {
	if p.sock != nil {
		p.sock.Close()
		p.zctx.Term()
		p.sock = nil
	}
}

// Send publishes body on topic with the topic's next sequence number.
func (p *CorePub) Send(topic string, body []byte) {
	p.t.Helper()
	n := p.Seq[topic]
	p.Seq[topic] = n + 1
	p.Raw([]byte(topic), body, binary.LittleEndian.AppendUint32(nil, n))
}

// Raw publishes arbitrary frames (for malformed messages).
func (p *CorePub) Raw(frames ...[]byte) {
	p.t.Helper()
	parts := make([]any, len(frames))
	for i, f := range frames {
		parts[i] = f
	}
	if _, err := p.sock.SendMessage(parts...); err != nil {
		p.t.Fatalf("publish: %v", err)
	}
}

// HashBlock publishes a hashblock for h (internal byte order).
func (p *CorePub) HashBlock(h [32]byte) { p.Send(TopicHashBlock, DisplayBytes(h)) }

// Sequence publishes a sequence message: label 'C'/'D' for blocks, 'A'/'R'
// for transactions (which carry the next mempool sequence number).
func (p *CorePub) Sequence(h [32]byte, label byte) {
	p.t.Helper()
	body := append(DisplayBytes(h), label)
	if label == 'A' || label == 'R' {
		p.MempoolSeq++
		body = binary.LittleEndian.AppendUint64(body, p.MempoolSeq)
	}
	p.Send(TopicSequence, body)
}

// RawTx publishes a serialized transaction.
func (p *CorePub) RawTx(raw []byte) { p.Send(TopicRawTx, raw) }

// DisplayBytes is a hash as Core publishes it: reversed (RPC display order).
func DisplayBytes(h [32]byte) []byte {
	b := make([]byte, 32)
	for i := range 32 {
		b[i] = h[31-i]
	}
	return b
}
