package jdc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

var t0 = time.Unix(1_700_000_000, 0)

var (
	soloScript = []byte{0x00, 0x14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
	poolScript = func(i int) []byte {
		s := []byte{0x00, 0x14}
		return append(s, bytes.Repeat([]byte{byte(0xa0 + i)}, 20)...)
	}
)

// fixture drives a core through events and keeps the clock.
type fixture struct {
	t     *testing.T
	c     *Core
	now   time.Time
	tmplN uint64
	tip   [32]byte
	// what the devices were last told
	devWork   map[uint64]*Work
	devActive uint64 // work id devices mine now (0: none)
	devTarget [32]byte
	// log of every action set
	all []Actions
	txs map[uint64]*TxData
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, c: c, now: t0, devWork: map[uint64]*Work{}, txs: map[uint64]*TxData{}}
}

// apply records what the devices were told and checks the invariant that
// devices always mine work of the active source once a tip is known.
func (f *fixture) apply(a Actions) Actions {
	f.t.Helper()
	for _, op := range a.Devices {
		switch {
		case op.Work != nil:
			if _, dup := f.devWork[op.Work.ID]; dup {
				for k := max(0, len(f.all)-4); k < len(f.all); k++ {
					f.t.Logf("prev actions %d: devices %+v logs %+v switches %+v", k, f.all[k].Devices, f.all[k].Logs, f.all[k].Switches)
				}
				f.t.Logf("now: %+v", a)
				f.t.Fatalf("work id %d sent twice", op.Work.ID)
			}
			f.devWork[op.Work.ID] = op.Work
			if !op.Work.Future {
				f.devActive = op.Work.ID
			}
		case op.PrevHash != nil:
			if f.devWork[op.PrevHash.WorkID] == nil {
				f.t.Fatalf("SetPrevHash names work %d never sent", op.PrevHash.WorkID)
			}
			f.devActive = op.PrevHash.WorkID
		case op.Target != nil:
			f.devTarget = *op.Target
		}
	}
	f.all = append(f.all, a)
	f.checkDevices()
	return a
}

// checkDevices: whenever a tip is known and a source is active, the work the
// devices mine belongs to that source and to the current template.
func (f *fixture) checkDevices() {
	f.t.Helper()
	c := f.c
	if c.cur == nil || c.cur.prev == nil || c.active == None {
		return
	}
	w := c.works[f.devActive]
	if w == nil {
		f.t.Fatalf("devices mine work %d the core forgot (active %s)", f.devActive, SourceName(c.active))
	}
	if w.source != c.active {
		f.t.Fatalf("devices mine %s work while %s is active", SourceName(w.source), SourceName(c.active))
	}
	if w.tmpl != c.cur {
		f.t.Fatalf("devices mine template %d, current is %d", w.tmpl.msg.TemplateID, c.cur.msg.TemplateID)
	}
}

func (f *fixture) advance(d time.Duration) Actions {
	f.now = f.now.Add(d)
	return f.apply(f.c.Tick(f.now))
}

// template makes a NewTemplate with n transactions and a witness commitment.
func (f *fixture) template(future bool, ntx int) *messages.NewTemplate {
	f.tmplN++
	id := f.tmplN
	d := &TxData{Excess: make([]byte, 32)}
	for i := 0; i < ntx; i++ {
		raw, txid, wtxid := testTx(id, i)
		d.Txs = append(d.Txs, raw)
		d.TxIDs = append(d.TxIDs, txid)
		d.WTxIDs = append(d.WTxIDs, wtxid)
	}
	f.txs[id] = d
	outs := templates.SerializeOutputs([]templates.TxOutput{{Value: 0, PkScript: templates.WitnessCommitmentScript(templates.WitnessCommitment(d.WTxIDs))}})
	return &messages.NewTemplate{
		TemplateID: id, FutureTemplate: future, Version: 0x20000000, CoinbaseTxVersion: 2,
		CoinbasePrefix: templates.HeightScript(int64(200 + id)), CoinbaseTxInputSequence: 0xfffffffe,
		CoinbaseTxValueRemaining: 5_000_000_000 + uint64(ntx)*1000, CoinbaseTxOutputsCount: 1,
		CoinbaseTxOutputs: outs, CoinbaseTxLocktime: uint32(199 + id),
		MerklePath: templates.MerklePath(d.TxIDs),
	}
}

func (f *fixture) newTemplate(future bool, ntx int) *messages.NewTemplate {
	m := f.template(future, ntx)
	f.apply(f.c.NewTemplate(f.now, m))
	return m
}

func (f *fixture) prevHash(id uint64) {
	f.tip[0]++
	f.apply(f.c.SetNewPrevHash(f.now, &messages.SetNewPrevHash{
		TemplateID: id, PrevHash: f.tip, HeaderTimestamp: uint32(f.now.Unix()), NBits: 0x207fffff,
		Target: templates.TargetFromBits(0x207fffff),
	}))
}

// newTip is what tp sends on a block: a future template and its SetNewPrevHash.
func (f *fixture) newTip(ntx int) uint64 {
	m := f.newTemplate(true, ntx)
	f.prevHash(m.TemplateID)
	return m.TemplateID
}

func (f *fixture) txData(id uint64) Actions {
	return f.apply(f.c.TxData(f.now, id, f.txs[id]))
}

func testChannel(i int) Channel {
	var tg [32]byte
	tg[31] = 0x7f
	for k := range tg[:31] {
		tg[k] = 0xff
	}
	return Channel{ID: uint32(10 + i), Target: tg, ExtranoncePrefix: []byte{byte(i), 0xee, 0xdd, 0xcc}, ExtranonceSize: 8}
}

func tokenMsg(i int, n int) *messages.AllocateMiningJobTokenSuccess {
	return &messages.AllocateMiningJobTokenSuccess{
		MiningJobToken:    []byte(fmt.Sprintf("tok-%d-%d", i, n)),
		CoinbaseTxOutputs: templates.SerializeOutputVector([]templates.TxOutput{{Value: 0, PkScript: poolScript(i)}}),
	}
}

// connect brings pair i up: pool channel, JDS, first token.
func (f *fixture) connect(i int) Actions {
	f.t.Helper()
	f.apply(f.c.PoolUp(f.now, i, testChannel(i)))
	a := f.apply(f.c.JDSUp(f.now, i))
	req := findToken(f.t, a, i)
	return f.apply(f.c.Token(f.now, i, req, tokenMsg(i, 0), nil))
}

func findToken(t *testing.T, a Actions, pairIdx int) uint32 {
	t.Helper()
	for _, r := range a.Tokens {
		if r.Pair == pairIdx {
			return r.Req
		}
	}
	t.Fatalf("no token request for pair %d in %+v", pairIdx, a.Tokens)
	return 0
}

// serveTokens answers every token request in a with a fresh token.
func (f *fixture) serveTokens(a Actions) {
	for _, r := range a.Tokens {
		b := f.apply(f.c.Token(f.now, r.Pair, r.Req, tokenMsg(r.Pair, int(r.Req)), nil))
		f.serveTokens(b)
	}
}

func declareOf(a Actions, pairIdx int) *DeclareRequest {
	for i := range a.Declares {
		if a.Declares[i].Pair == pairIdx {
			return &a.Declares[i]
		}
	}
	return nil
}

func customJobOf(a Actions, pairIdx int) *messages.SetCustomMiningJob {
	for _, s := range a.Pool {
		if m, ok := s.Msg.(*messages.SetCustomMiningJob); ok && s.Pair == pairIdx {
			return m
		}
	}
	return nil
}

func sharesOf(a Actions, pairIdx int) []*messages.SubmitSharesExtended {
	var out []*messages.SubmitSharesExtended
	for _, s := range a.Pool {
		if m, ok := s.Msg.(*messages.SubmitSharesExtended); ok && s.Pair == pairIdx {
			out = append(out, m)
		}
	}
	return out
}

// acceptJob drives pair i's pipeline for the current template to an
// acknowledged custom job and returns the pool job id.
func (f *fixture) acceptJob(i int, a Actions) uint32 {
	f.t.Helper()
	if d := declareOf(a, i); d != nil {
		a = f.apply(f.c.Declared(f.now, i, d.Req, []byte("declared"), nil))
	}
	m := customJobOf(a, i)
	if m == nil {
		f.t.Fatalf("pair %d sent no SetCustomMiningJob: %+v", i, a)
	}
	jobID := 100 + m.RequestID
	f.apply(f.c.PoolMessage(f.now, i, &messages.SetCustomMiningJobSuccess{ChannelID: m.ChannelID, RequestID: m.RequestID, JobID: jobID}))
	return jobID
}

func (f *fixture) share(block bool) Share {
	w := f.devWork[f.devActive]
	ex := make([]byte, w.ExtranonceSpace)
	ex[0] = 0x42
	return Share{WorkID: w.ID, Extranonce: ex, Version: 0x20000000, NTime: uint32(f.now.Unix()), Nonce: 7, Block: block}
}

func switchesOf(a Actions) []Switch { return a.Switches }

// testTx is a one-input one-output segwit transaction unique to (tmpl, i).
func testTx(tmpl uint64, i int) (raw []byte, txid, wtxid [32]byte) {
	tx := wire.NewMsgTx(2)
	var h chainhash.Hash
	binary.LittleEndian.PutUint64(h[:], tmpl)
	binary.LittleEndian.PutUint32(h[8:], uint32(i))
	in := wire.NewTxIn(wire.NewOutPoint(&h, 0), nil, [][]byte{bytes.Repeat([]byte{1}, 71), bytes.Repeat([]byte{2}, 33)})
	tx.AddTxIn(in)
	tx.AddTxOut(wire.NewTxOut(1000, []byte{0x51}))
	var b bytes.Buffer
	_ = tx.Serialize(&b)
	return b.Bytes(), tx.TxHash(), tx.WitnessHash()
}

// refill answers the latest token request made for pair i (earlier ones the
// core no longer waits for) and returns what that led to.
func (f *fixture) refill(i int) Actions {
	f.t.Helper()
	for k := len(f.all) - 1; k >= 0; k-- {
		for _, r := range f.all[k].Tokens {
			if r.Pair == i {
				return f.apply(f.c.Token(f.now, i, r.Req, tokenMsg(i, int(r.Req)), nil))
			}
		}
	}
	f.t.Fatalf("no token request for pair %d", i)
	return Actions{}
}

// answerAll answers pair i's latest declaration and custom job made since
// action set from, as a healthy JDS and pool would.
func (f *fixture) answerAll(i, from int) {
	f.t.Helper()
	for k := len(f.all) - 1; k >= from; k-- {
		if d := declareOf(f.all[k], i); d != nil {
			f.apply(f.c.Declared(f.now, i, d.Req, []byte("declared"), nil))
			break
		}
	}
	for k := len(f.all) - 1; k >= from; k-- {
		if m := customJobOf(f.all[k], i); m != nil {
			f.apply(f.c.PoolMessage(f.now, i, &messages.SetCustomMiningJobSuccess{ChannelID: m.ChannelID, RequestID: m.RequestID, JobID: 100 + m.RequestID}))
			return
		}
	}
}
