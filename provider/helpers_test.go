package provider

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

const regtestBits = 0x207fffff

var t0 = time.Unix(1_700_000_000, 0)

// testChain is a fake chain that produces node templates and tip notices.
type testChain struct {
	rng    *rand.ChaCha8
	height int64 // tip height
	tip    [32]byte
	times  []uint32 // tip first
	bits   uint32
}

func newTestChain(seed byte, height int64) *testChain {
	var s [32]byte
	s[0] = seed
	ch := &testChain{rng: rand.NewChaCha8(s), height: height, bits: regtestBits}
	ch.rng.Read(ch.tip[:])
	for i := int64(0); i < min(11, height+1); i++ {
		ch.times = append(ch.times, uint32(t0.Unix())-uint32(600*i))
	}
	return ch
}

func (ch *testChain) info() ChainInfo {
	return ChainInfo{TipHash: ch.tip, TipHeight: ch.height, TipTime: ch.times[0], RecentTimes: append([]uint32(nil), ch.times...)}
}

// mine appends a block at time ts and returns its notice.
func (ch *testChain) mine(ts uint32) TipNotice {
	prev := ch.tip
	ch.rng.Read(ch.tip[:])
	ch.height++
	ch.times = append([]uint32{ts}, ch.times...)
	if len(ch.times) > 11 {
		ch.times = ch.times[:11]
	}
	return TipNotice{Hash: ch.tip, PrevHash: &prev, Time: ts}
}

func (ch *testChain) mtp() uint32 {
	s := append([]uint32(nil), ch.times...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

// txSpec describes one template transaction for source.
type txSpec struct {
	fee     int64
	weight  int64 // 0: the real weight
	witness bool
	parent  int // index of the tx it spends, -1 for none
}

// source builds a node template on the chain's tip with real transactions.
func (ch *testChain) source(specs []txSpec) *templates.Source {
	src := &templates.Source{
		Height:   ch.height + 1,
		PrevHash: ch.tip,
		Version:  0x20000000,
		Bits:     ch.bits,
		Target:   templates.TargetFromBits(ch.bits),
		CurTime:  max(uint32(t0.Unix()), ch.mtp()+1),
		MinTime:  ch.mtp() + 1,
	}
	var fees int64
	hasWitness := false
	for i, s := range specs {
		tx := wire.NewMsgTx(2)
		var prev chainhash.Hash
		if s.parent >= 0 {
			prev = chainhash.Hash(src.Txs[s.parent].TxID)
		} else {
			ch.rng.Read(prev[:])
		}
		in := wire.NewTxIn(wire.NewOutPoint(&prev, 0), nil, nil)
		if s.witness {
			sig := make([]byte, 72)
			ch.rng.Read(sig)
			in.Witness = wire.TxWitness{sig, bytes.Repeat([]byte{2}, 33)}
			hasWitness = true
		} else {
			in.SignatureScript = []byte{0x51, byte(i), byte(i >> 8)}
		}
		tx.AddTxIn(in)
		tx.AddTxOut(wire.NewTxOut(1000, []byte{0x51}))
		var buf bytes.Buffer
		if err := tx.Serialize(&buf); err != nil {
			panic(err)
		}
		w := s.weight
		if w == 0 {
			w = blockchain.GetTransactionWeight(btcutil.NewTx(tx))
		}
		var deps []int
		if s.parent >= 0 {
			deps = []int{s.parent}
		}
		src.Txs = append(src.Txs, templates.Tx{
			Data: buf.Bytes(), TxID: tx.TxHash(), WTxID: tx.WitnessHash(),
			Fee: s.fee, SigOps: 4, Weight: w, Depends: deps,
		})
		fees += s.fee
	}
	src.CoinbaseValue = templates.Subsidy(src.Height, 150) + fees
	if hasWitness {
		w := make([][32]byte, len(src.Txs))
		for i := range src.Txs {
			w[i] = src.Txs[i].WTxID
		}
		src.WitnessCommitment = templates.WitnessCommitmentScript(templates.WitnessCommitment(w))
	}
	return src
}

// someTxs is a small mix: segwit and legacy, one child.
func someTxs() []txSpec {
	return []txSpec{
		{fee: 5000, witness: true, parent: -1},
		{fee: 3000, parent: -1},
		{fee: 7000, witness: true, parent: 0},
		{fee: 1000, witness: true, parent: -1},
	}
}

func regtestConfig() Config {
	return Config{HalvingInterval: 150, NoRetargeting: true, Interval: 10 * time.Second}
}

func newCore(t testing.TB, cfg Config) *Core {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func setupMsg() *messages.SetupConnection {
	return &messages.SetupConnection{Protocol: 2, MinVersion: 2, MaxVersion: 2, Vendor: "test"}
}

func constraintsMsg(size uint32, sigops uint16) *messages.CoinbaseOutputConstraints {
	return &messages.CoinbaseOutputConstraints{CoinbaseOutputMaxAdditionalSize: size, CoinbaseOutputMaxAdditionalSigops: sigops, HasMaxAdditionalSigops: true}
}

// connect connects and sets up a client and sends its constraints,
// returning the actions of the constraints message.
func connect(t testing.TB, c *Core, id ClientID, size uint32, now time.Time) Actions {
	t.Helper()
	if a := c.ClientConnected(id, now); len(a.Close) != 0 {
		t.Fatalf("connect %d: %+v", id, a.Close)
	}
	a := c.ClientMessage(id, setupMsg(), now)
	if len(a.Send) != 1 || len(a.Close) != 0 {
		t.Fatalf("setup %d: %+v", id, a)
	}
	if _, ok := a.Send[0].Msg.(*messages.SetupConnectionSuccess); !ok {
		t.Fatalf("setup %d: got %s", id, a.Send[0].Msg.MessageName())
	}
	a = c.ClientMessage(id, constraintsMsg(size, 10), now)
	if len(a.Close) != 0 {
		t.Fatalf("constraints %d: closed: %+v", id, a.Close)
	}
	return a
}

// sentTo returns the messages for one client, in order.
func sentTo(a Actions, id ClientID) []codec.Message {
	var out []codec.Message
	for _, o := range a.Send {
		if o.Client == id {
			out = append(out, o.Msg)
		}
	}
	return out
}

func names(ms []codec.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.MessageName()
		if nt, ok := m.(*messages.NewTemplate); ok && nt.FutureTemplate {
			out[i] += "(future)"
		}
	}
	return out
}

func expectNames(t testing.TB, got []codec.Message, want ...string) {
	t.Helper()
	g := names(got)
	if len(g) != len(want) {
		t.Fatalf("messages %v, want %v", g, want)
	}
	for i := range g {
		if g[i] != want[i] {
			t.Fatalf("messages %v, want %v", g, want)
		}
	}
}

// initial checks the initial triple: future NewTemplate, SetNewPrevHash
// naming it, empty future NewTemplate; it returns them.
func initial(t testing.TB, ms []codec.Message) (*messages.NewTemplate, *messages.SetNewPrevHash, *messages.NewTemplate) {
	t.Helper()
	expectNames(t, ms, "NewTemplate(future)", "SetNewPrevHash", "NewTemplate(future)")
	nt, snph, empty := ms[0].(*messages.NewTemplate), ms[1].(*messages.SetNewPrevHash), ms[2].(*messages.NewTemplate)
	if snph.TemplateID != nt.TemplateID {
		t.Fatalf("SetNewPrevHash names %d, template is %d", snph.TemplateID, nt.TemplateID)
	}
	if empty.TemplateID <= nt.TemplateID {
		t.Fatalf("empty template id %d not after %d", empty.TemplateID, nt.TemplateID)
	}
	if len(empty.MerklePath) != 0 || empty.CoinbaseTxOutputsCount != 0 {
		t.Fatalf("empty template has transactions: %+v", empty)
	}
	return nt, snph, empty
}

func hasClose(a Actions, id ClientID) (string, bool) {
	for _, cl := range a.Close {
		if cl.Client == id {
			return cl.Reason, true
		}
	}
	return "", false
}
