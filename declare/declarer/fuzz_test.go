package declarer

import (
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// offline returns a Declarer with no loops running, over one end of a pipe,
// with one declaration of n transactions pending as request 1 and one token
// allocation pending as request 2.
func offline(t testing.TB, n int) (*Declarer, *pending) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	cfg := Config{FullTemplate: true, Logger: hclog.NewNullLogger()}.withDefaults()
	d := &Declarer{
		cfg: cfg, log: cfg.Logger,
		conn:      noise.Client(a, &noise.Config{Plaintext: true}),
		out:       make(chan outFrame, cfg.QueueSize),
		done:      make(chan struct{}),
		allocs:    map[uint32]time.Time{2: {}},
		tokenWake: make(chan struct{}),
		declares:  make(map[uint32]*pending),
		nextID:    2,
	}
	job := testJob([]byte{1}, n)
	p := &pending{job: &job, reply: make(chan result, 1)}
	d.declares[1] = p
	return d, p
}

// FuzzHandle feeds arbitrary JDS frames to the dispatch: it must never
// panic, answer only with the job's own transactions at valid positions,
// and hold nothing unbounded.
func FuzzHandle(f *testing.F) {
	seed := func(m codec.Message) {
		b, err := codec.Append(nil, m, codec.Options{})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.MsgType(), b)
	}
	seed(&messages.ProvideMissingTransactions{RequestID: 1, UnknownTxPositionList: []uint16{0, 4, 2}})
	seed(&messages.ProvideMissingTransactions{RequestID: 1, UnknownTxPositionList: []uint16{5}})
	seed(&messages.ProvideMissingTransactions{RequestID: 1, UnknownTxPositionList: []uint16{1, 1}})
	seed(&messages.DeclareMiningJobSuccess{RequestID: 1, NewMiningJobToken: []byte("t")})
	seed(&messages.DeclareMiningJobError{RequestID: 1, ErrorCode: "invalid-job", ErrorDetails: []byte("x")})
	seed(&messages.AllocateMiningJobTokenSuccess{RequestID: 2, MiningJobToken: []byte{1}})
	seed(&messages.Reconnect{NewHost: "h"})
	f.Fuzz(func(t *testing.T, msgType uint8, payload []byte) {
		const n = 5
		d, p := offline(t, n)
		m, err := messages.Decode(codec.Header{MsgType: msgType, Length: uint32(len(payload))}, payload, d.opts)
		if err != nil {
			return
		}
		herr := d.handle(m)
		select {
		case fr := <-d.out:
			pm, ok := fr.msg.(*messages.ProvideMissingTransactionsSuccess)
			req := m.(*messages.ProvideMissingTransactions)
			if !ok || herr != nil || len(pm.TransactionList) != len(req.UnknownTxPositionList) {
				t.Fatalf("sent %s for %s (err %v)", codec.String(fr.msg), codec.String(m), herr)
			}
			for k, pos := range req.UnknownTxPositionList {
				if int(pos) >= n || string(pm.TransactionList[k]) != string(p.job.Txs[pos]) {
					t.Fatalf("answered position %d with the wrong transaction", pos)
				}
			}
		default:
		}
		if len(d.spare) > 1 || len(d.allocs) > 1 {
			t.Fatalf("holds %d spare tokens, %d allocations", len(d.spare), len(d.allocs))
		}
	})
}
