package node

import (
	"encoding/binary"
	"fmt"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

// ZMQ topics this package subscribes to (Bitcoin Core doc/zmq.md).
const (
	TopicHashBlock = "hashblock"
	TopicSequence  = "sequence"
	TopicRawTx     = "rawtx"
)

// Event is something the node published over ZMQ: BlockConnected,
// BlockDisconnected, TxAdded, TxRemoved, RawTx, or Gap.
type Event interface{ zmqEvent() }

// BlockConnected: a new tip (topic hashblock) or a block connected to the
// best chain (topic sequence, label 'C'; during a reorg one per block).
type BlockConnected struct {
	Hash  chainhash.Hash // internal byte order
	Topic string         // TopicHashBlock or TopicSequence
}

// BlockDisconnected: a block left the best chain (sequence 'D').
type BlockDisconnected struct {
	Hash chainhash.Hash
}

// TxAdded: a transaction entered the mempool (sequence 'A').
type TxAdded struct {
	TxID       chainhash.Hash
	MempoolSeq uint64
}

// TxRemoved: a transaction left the mempool for a reason other than block
// inclusion (sequence 'R'): replaced, expired, evicted, conflicted.
type TxRemoved struct {
	TxID       chainhash.Hash
	MempoolSeq uint64
}

// RawTx: a transaction, when it enters the mempool and again when it is
// mined (topic rawtx). Tx is the consensus serialization with witness.
type RawTx struct {
	Tx []byte
}

// Gap: messages of a topic may have been lost: its sequence number skipped
// or went backwards (Expected, Got), or the connection to the publisher
// dropped and came back (Reconnect; the node may have restarted). The caller
// must resync everything it derives from that topic.
type Gap struct {
	Topic     string
	Endpoint  string
	Expected  uint32
	Got       uint32
	Reconnect bool
}

func (BlockConnected) zmqEvent()    {}
func (BlockDisconnected) zmqEvent() {}
func (TxAdded) zmqEvent()           {}
func (TxRemoved) zmqEvent()         {}
func (RawTx) zmqEvent()             {}
func (Gap) zmqEvent()               {}

// splitFrames checks Bitcoin Core's envelope: three frames, topic, body and a
// 4-byte little-endian sequence number.
func splitFrames(frames [][]byte) (topic string, body []byte, seq uint32, err error) {
	if len(frames) != 3 {
		return "", nil, 0, fmt.Errorf("%d frames, want 3 (topic, body, sequence)", len(frames))
	}
	if len(frames[2]) != 4 {
		return "", nil, 0, fmt.Errorf("topic %q: sequence frame of %d bytes, want 4", frames[0], len(frames[2]))
	}
	return string(frames[0]), frames[1], binary.LittleEndian.Uint32(frames[2]), nil
}

// hashFromZMQ converts a 32-byte hash as Core publishes it (RPC display
// order: Core reverses uint256's bytes before sending) to internal order.
func hashFromZMQ(b []byte) chainhash.Hash {
	var h chainhash.Hash
	for i := range 32 {
		h[i] = b[31-i]
	}
	return h
}

// parseBody decodes a message body of a known topic.
func parseBody(topic string, body []byte) (Event, error) {
	switch topic {
	case TopicHashBlock:
		if len(body) != 32 {
			return nil, fmt.Errorf("hashblock body of %d bytes, want 32", len(body))
		}
		return BlockConnected{Hash: hashFromZMQ(body), Topic: TopicHashBlock}, nil
	case TopicSequence:
		// <32-byte hash><label>[<8-byte LE mempool sequence> for A and R]
		if len(body) < 33 {
			return nil, fmt.Errorf("sequence body of %d bytes, want 33 or 41", len(body))
		}
		h := hashFromZMQ(body[:32])
		label := body[32]
		switch label {
		case 'C', 'D':
			if len(body) != 33 {
				return nil, fmt.Errorf("sequence %q body of %d bytes, want 33", label, len(body))
			}
			if label == 'C' {
				return BlockConnected{Hash: h, Topic: TopicSequence}, nil
			}
			return BlockDisconnected{Hash: h}, nil
		case 'A', 'R':
			if len(body) != 41 {
				return nil, fmt.Errorf("sequence %q body of %d bytes, want 41", label, len(body))
			}
			ms := binary.LittleEndian.Uint64(body[33:])
			if label == 'A' {
				return TxAdded{TxID: h, MempoolSeq: ms}, nil
			}
			return TxRemoved{TxID: h, MempoolSeq: ms}, nil
		default:
			return nil, fmt.Errorf("sequence label %q unknown", label)
		}
	case TopicRawTx:
		if len(body) == 0 {
			return nil, fmt.Errorf("empty rawtx body")
		}
		return RawTx{Tx: body}, nil
	}
	return nil, fmt.Errorf("topic %q not subscribed", topic)
}

// seqTracker checks each (endpoint, topic) sequence number. Core numbers each
// notifier's messages from 0 at start, +1 per message, wrapping at 2^32.
type seqTracker struct {
	last map[seqKey]uint32
}

type seqKey struct{ endpoint, topic string }

func newSeqTracker() *seqTracker { return &seqTracker{last: make(map[seqKey]uint32)} }

// reset forgets the baseline of a key: its next number is a new baseline.
func (t *seqTracker) reset(endpoint, topic string) { delete(t.last, seqKey{endpoint, topic}) }

// observe records seq and reports a gap when it is not the successor of the
// previous one. The first number seen on a key is the baseline.
func (t *seqTracker) observe(endpoint, topic string, seq uint32) (gap bool, expected uint32) {
	k := seqKey{endpoint, topic}
	last, seen := t.last[k]
	t.last[k] = seq
	if !seen {
		return false, 0
	}
	expected = last + 1 // wraps at 2^32 like Core's counter
	return seq != expected, expected
}
