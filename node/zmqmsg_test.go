package node

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"github.com/sv2kit/sv2kit/internal/zmqtest"
)

// reversed returns h's bytes in RPC display order, as Core publishes them.

func seqBody(h [32]byte, label byte, mempoolSeq *uint64) []byte {
	b := append(zmqtest.DisplayBytes(h), label)
	if mempoolSeq != nil {
		b = binary.LittleEndian.AppendUint64(b, *mempoolSeq)
	}
	return b
}

func TestParseZMQMessages(t *testing.T) {
	h := hashN(5)
	// Core sends the hash in display order: its hex is the RPC string.
	if hex.EncodeToString(zmqtest.DisplayBytes(h)) != h.String() {
		t.Fatal("display order helper wrong")
	}
	ms := uint64(0x0102030405060708)
	cases := []struct {
		topic string
		body  []byte
		want  Event
	}{
		{TopicHashBlock, zmqtest.DisplayBytes(h), BlockConnected{Hash: h, Topic: TopicHashBlock}},
		{TopicSequence, seqBody(h, 'C', nil), BlockConnected{Hash: h, Topic: TopicSequence}},
		{TopicSequence, seqBody(h, 'D', nil), BlockDisconnected{Hash: h}},
		{TopicSequence, seqBody(h, 'A', &ms), TxAdded{TxID: h, MempoolSeq: ms}},
		{TopicSequence, seqBody(h, 'R', &ms), TxRemoved{TxID: h, MempoolSeq: ms}},
	}
	for _, c := range cases {
		topic, body, seq, err := splitFrames([][]byte{[]byte(c.topic), c.body, le32(77)})
		if err != nil || topic != c.topic || seq != 77 || !bytes.Equal(body, c.body) {
			t.Fatalf("split %s: %v", c.topic, err)
		}
		ev, err := parseBody(topic, body)
		if err != nil || ev != c.want {
			t.Errorf("%s %x: %v %#v", c.topic, c.body[len(c.body)-9:], err, ev)
		}
	}
	ev, err := parseBody(TopicRawTx, []byte{1, 2, 3})
	if err != nil || !bytes.Equal(ev.(RawTx).Tx, []byte{1, 2, 3}) {
		t.Errorf("rawtx: %v %v", ev, err)
	}

	for name, frames := range map[string][][]byte{
		"two frames":   {[]byte(TopicHashBlock), zmqtest.DisplayBytes(h)},
		"four frames":  {[]byte(TopicHashBlock), zmqtest.DisplayBytes(h), le32(1), {}},
		"short seq":    {[]byte(TopicHashBlock), zmqtest.DisplayBytes(h), {1, 0, 0}},
		"no frames":    {},
		"empty topics": {{}, {}, {}},
	} {
		if _, _, _, err := splitFrames(frames); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	for name, m := range map[string]struct {
		topic string
		body  []byte
	}{
		"31-byte hash":     {TopicHashBlock, zmqtest.DisplayBytes(h)[:31]},
		"33-byte hash":     {TopicHashBlock, append(zmqtest.DisplayBytes(h), 0)},
		"unknown label":    {TopicSequence, seqBody(h, 'X', nil)},
		"C with mempool#":  {TopicSequence, seqBody(h, 'C', &ms)},
		"A without seq":    {TopicSequence, seqBody(h, 'A', nil)},
		"short sequence":   {TopicSequence, zmqtest.DisplayBytes(h)},
		"empty rawtx":      {TopicRawTx, nil},
		"other topic":      {"hashtx", zmqtest.DisplayBytes(h)},
		"truncated R body": {TopicSequence, seqBody(h, 'R', &ms)[:40]},
	} {
		if ev, err := parseBody(m.topic, m.body); err == nil {
			t.Errorf("%s accepted: %#v", name, ev)
		}
	}
}

func TestSeqTracker(t *testing.T) {
	tr := newSeqTracker()
	steps := []struct {
		ep, topic string
		seq       uint32
		gap       bool
		expected  uint32
	}{
		{"a", TopicHashBlock, 5, false, 0}, // baseline
		{"a", TopicHashBlock, 6, false, 0},
		{"a", TopicSequence, 100, false, 0}, // its own counter
		{"b", TopicHashBlock, 0, false, 0},  // another endpoint, its own counter
		{"a", TopicHashBlock, 8, true, 7},   // skipped 7
		{"a", TopicHashBlock, 9, false, 0},
		{"a", TopicHashBlock, 0, true, 10}, // node restarted
		{"a", TopicHashBlock, 1, false, 0},
		{"a", TopicSequence, 101, false, 0},
		{"a", TopicSequence, 101, true, 102}, // repeated
		{"b", TopicHashBlock, 0xffffffff, true, 1},
		{"b", TopicHashBlock, 0, false, 0}, // wraps like Core's uint32
	}
	for i, s := range steps {
		gap, exp := tr.observe(s.ep, s.topic, s.seq)
		if gap != s.gap || (gap && exp != s.expected) {
			t.Errorf("step %d: gap=%v expected=%d, want %v %d", i, gap, exp, s.gap, s.expected)
		}
	}
}
