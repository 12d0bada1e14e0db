package jdc

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

func poolCfg(mode Mode, pairs int) Config {
	return Config{Mode: mode, Pairs: pairs, SoloScript: soloScript, ReturnAfter: 30 * time.Second}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"solo without script", Config{Mode: SoloMode}, "payout script"},
		{"solo with pairs", Config{Mode: SoloMode, SoloScript: soloScript, Pairs: 1}, "no pool"},
		{"pool without pairs", Config{Mode: FullTemplate}, "at least one"},
		{"huge solo extranonce", Config{Mode: SoloMode, SoloScript: soloScript, SoloExtranonceSize: 33}, "above"},
		{"long tag", Config{Mode: SoloMode, SoloScript: soloScript, Tag: strings.Repeat("x", 41)}, "tag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// Optimistic mining, full-template mode: devices get pair work the moment a
// token arrives; shares found before SetCustomMiningJob.Success are kept and
// sent with the pool's job id, extranonce as the pool channel expects.
func TestFullTemplatePipeline(t *testing.T) {
	f := newFixture(t, poolCfg(FullTemplate, 2))
	id := f.newTip(3)
	if f.c.Active() != Solo {
		t.Fatalf("active %s before any pair, want solo", SourceName(f.c.Active()))
	}
	a := f.connect(0)
	if f.c.Active() != 0 || len(a.Switches) != 1 || a.Switches[0].Reason != "pair-ready" {
		t.Fatalf("active %s switches %+v", SourceName(f.c.Active()), a.Switches)
	}
	w := f.devWork[f.devActive]
	ch := testChannel(0)
	if !bytes.HasSuffix(w.CoinbasePrefix, ch.ExtranoncePrefix) || w.ExtranonceSpace != ch.ExtranonceSize {
		t.Fatalf("work does not honour the pool extranonce: space %d", w.ExtranonceSpace)
	}
	if f.devTarget != ch.Target {
		t.Fatal("devices did not get the pool's target")
	}
	if len(a.Declares) != 0 {
		t.Fatal("declared before the transaction data arrived")
	}
	// Shares before the job is acknowledged are buffered.
	s1 := f.share(false)
	b := f.apply(f.c.DeviceShare(f.now, s1))
	if len(b.Pool) != 0 || b.Shares[0].Outcome != "buffered" {
		t.Fatalf("share not buffered: %+v", b)
	}
	a = f.txData(id)
	d := declareOf(a, 0)
	if d == nil || len(d.WTxIDs) != 3 || !bytes.Equal(d.Token, []byte("tok-0-0")) {
		t.Fatalf("declare %+v", d)
	}
	if d.WTxIDs[0] != f.txs[id].WTxIDs[0] || !bytes.Equal(d.ExcessData, f.txs[id].Excess) {
		t.Fatal("declare carries wrong wtxids or excess data")
	}
	a = f.apply(f.c.Declared(f.now, 0, d.Req, []byte("new-token"), nil))
	m := customJobOf(a, 0)
	if m == nil || !bytes.Equal(m.MiningJobToken, []byte("new-token")) || m.ChannelID != ch.ID {
		t.Fatalf("custom job %+v", m)
	}
	if m.PrevHash != f.tip || m.NBits != 0x207fffff {
		t.Fatal("custom job does not carry the tip")
	}
	a = f.apply(f.c.PoolMessage(f.now, 0, &messages.SetCustomMiningJobSuccess{ChannelID: ch.ID, RequestID: m.RequestID, JobID: 77}))
	sh := sharesOf(a, 0)
	if len(sh) != 1 || sh[0].JobID != 77 || sh[0].ChannelID != ch.ID || !bytes.Equal(sh[0].Extranonce, s1.Extranonce) {
		t.Fatalf("buffered share not flushed right: %+v", sh)
	}
	// Later shares go straight up with increasing sequence numbers.
	a = f.apply(f.c.DeviceShare(f.now, f.share(false)))
	if sh2 := sharesOf(a, 0); len(sh2) != 1 || sh2[0].SequenceNumber != sh[0].SequenceNumber+1 {
		t.Fatalf("share %+v", sh2)
	}
	if st := f.c.States(); st[0].State != "healthy" {
		t.Fatalf("pair 0 %+v", st[0])
	}
}

// The pool rebuilds the coinbase from SetCustomMiningJob as
// coinbase_prefix ‖ its extranonce prefix ‖ extranonce (DIGEST §6.3): that
// must be byte for byte what the devices hash and what the JDS was told.
func TestCoinbaseLayoutMatchesPoolAndJDS(t *testing.T) {
	f := newFixture(t, poolCfg(FullTemplate, 1))
	id := f.newTip(2)
	f.connect(0)
	a := f.txData(id)
	d := declareOf(a, 0)
	a = f.apply(f.c.Declared(f.now, 0, d.Req, []byte("x"), nil))
	m := customJobOf(a, 0)
	w := f.devWork[f.devActive]
	ch := testChannel(0)
	dev := bytes.Repeat([]byte{9}, w.ExtranonceSpace)
	full := append(append([]byte(nil), ch.ExtranoncePrefix...), dev...)

	// What the devices hash.
	devCB := append(append(append([]byte(nil), w.CoinbasePrefix...), dev...), w.CoinbaseSuffix...)
	// What the pool rebuilds.
	outs, err := templates.ParseOutputVector(m.CoinbaseTxOutputs)
	if err != nil {
		t.Fatal(err)
	}
	if outs[0].Value != 5_000_002_000 || !bytes.Equal(outs[0].PkScript, poolScript(0)) {
		t.Fatalf("pool payout %+v", outs[0])
	}
	if !templates.IsWitnessCommitment(outs[len(outs)-1].PkScript) {
		t.Fatal("template outputs are not last")
	}
	pc := templates.Coinbase{
		Version: m.CoinbaseTxVersion, ScriptSigPrefix: append(append([]byte(nil), m.CoinbasePrefix...), ch.ExtranoncePrefix...),
		ExtranonceSize: ch.ExtranonceSize, Sequence: m.CoinbaseTxInputNSequence,
		Outputs: templates.SerializeOutputs(outs), OutputCount: len(outs), LockTime: m.CoinbaseTxLocktime, Witness: true,
	}
	if got := pc.Bytes(dev, false); !bytes.Equal(got, devCB) {
		t.Fatalf("pool coinbase\n%x\ndevice coinbase\n%x", got, devCB)
	}
	// What the JDS rebuilds (witness form).
	jdsCB := append(append(append([]byte(nil), d.CoinbasePrefix...), full...), d.CoinbaseSuffix...)
	var tx wire.MsgTx
	if err := tx.Deserialize(bytes.NewReader(jdsCB)); err != nil {
		t.Fatalf("declared coinbase does not parse: %v", err)
	}
	if txid := tx.TxHash(); txid != templates.DoubleSHA256(devCB) {
		t.Fatal("declared coinbase txid differs from the devices'")
	}
	if len(tx.TxIn[0].SignatureScript) > 100 || !bytes.HasPrefix(tx.TxIn[0].SignatureScript, templates.HeightScript(int64(200+id))) {
		t.Fatalf("scriptSig %x", tx.TxIn[0].SignatureScript)
	}
}

// Coinbase-only: no declaration, the token goes straight into
// SetCustomMiningJob, and nothing carrying transaction data leaves jdc.
func TestCoinbaseOnly(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 1))
	id := f.newTip(3)
	a := f.connect(0)
	a2 := f.txData(id)
	for _, x := range f.all {
		if len(x.Declares) != 0 {
			t.Fatal("coinbase-only mode declared a job")
		}
	}
	_ = a2
	m := customJobOf(a, 0)
	if m == nil || !bytes.Equal(m.MiningJobToken, []byte("tok-0-0")) {
		t.Fatalf("custom job %+v", m)
	}
	for _, x := range f.all {
		for _, s := range x.Pool {
			switch s.Msg.(type) {
			case *messages.SetCustomMiningJob, *messages.SubmitSharesExtended:
			default:
				t.Fatalf("unexpected message to the pool: %T", s.Msg)
			}
		}
	}
	// A block: no PushSolution in coinbase-only mode.
	f.acceptJob(0, a)
	b := f.apply(f.c.DeviceShare(f.now, f.share(true)))
	if len(b.Blocks) != 1 || b.Blocks[0].Push != nil || b.Blocks[0].Solution == nil {
		t.Fatalf("block %+v", b.Blocks)
	}
}

// Solo mode pays the configured script the whole value, and a block is
// rebuilt completely: the raw block parses, its merkle root and witness
// commitment hold, and SubmitSolution carries the witness coinbase.
func TestSoloBlock(t *testing.T) {
	f := newFixture(t, Config{Mode: SoloMode, SoloScript: soloScript})
	id := f.newTip(4)
	if f.c.Active() != Solo {
		t.Fatal("solo mode not active")
	}
	f.txData(id)
	if f.devTarget != templates.TargetFromBits(0x207fffff) {
		t.Fatal("solo upstream target is not the block target")
	}
	s := f.share(true)
	a := f.apply(f.c.DeviceShare(f.now, s))
	if len(a.Blocks) != 1 {
		t.Fatalf("blocks %+v", a)
	}
	b := a.Blocks[0]
	if b.Push != nil || b.Raw == nil || len(a.Pool) != 0 {
		t.Fatalf("solo block %+v", b)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(b.Raw)); err != nil {
		t.Fatal(err)
	}
	if blk.BlockHash() != b.Hash || len(blk.Transactions) != 5 {
		t.Fatalf("block hash/tx count wrong")
	}
	cb := blk.Transactions[0]
	if cb.TxOut[0].Value != 5_000_004_000 || !bytes.Equal(cb.TxOut[0].PkScript, soloScript) {
		t.Fatalf("solo payout %+v", cb.TxOut[0])
	}
	var leaves [][32]byte
	var wleaves [][32]byte
	for i, tx := range blk.Transactions {
		leaves = append(leaves, tx.TxHash())
		if i > 0 {
			wleaves = append(wleaves, tx.WitnessHash())
		}
	}
	if templates.MerkleRootOf(leaves) != blk.Header.MerkleRoot {
		t.Fatal("merkle root mismatch")
	}
	wantCommit := templates.WitnessCommitmentScript(templates.WitnessCommitment(wleaves))
	if !bytes.Equal(cb.TxOut[len(cb.TxOut)-1].PkScript, wantCommit) {
		t.Fatal("witness commitment mismatch")
	}
	if !bytes.Equal(b.Solution.CoinbaseTx[4:6], []byte{0, 1}) || b.Solution.TemplateID != id {
		t.Fatal("SubmitSolution must carry the witness coinbase of the template")
	}
}

func TestFullTemplateBlockPushesSolution(t *testing.T) {
	f := newFixture(t, poolCfg(FullTemplate, 1))
	id := f.newTip(1)
	f.connect(0)
	a := f.txData(id)
	f.acceptJob(0, a)
	s := f.share(true)
	b := f.apply(f.c.DeviceShare(f.now, s))
	if len(b.Blocks) != 1 || b.Blocks[0].Push == nil {
		t.Fatalf("%+v", b.Blocks)
	}
	p := b.Blocks[0].Push
	want := append(append([]byte(nil), testChannel(0).ExtranoncePrefix...), s.Extranonce...)
	if !bytes.Equal(p.Extranonce, want) || p.PrevHash != f.tip || p.Nonce != s.Nonce {
		t.Fatalf("push %+v", p)
	}
	if len(sharesOf(b, 0)) != 1 {
		t.Fatal("a block share must also go to the pool")
	}
}

// Every failover trigger the spec names moves the devices to the next pair
// in the same step, with the trigger as the reason.
func TestFailoverTriggers(t *testing.T) {
	type env struct {
		f  *fixture
		a0 Actions // the actions that started pair 0's job for the tip
	}
	for _, tc := range []struct {
		name      string
		mode      Mode
		ack       bool // acknowledge pair 0's job before the trigger
		trigger   func(e *env) Actions
		reason    string
		wantReset bool
	}{
		{name: "jds slow: no token", mode: FullTemplate, trigger: func(e *env) Actions {
			// The spare token was used; the refill never comes and the next
			// template needs one.
			e.f.refill(1)
			m := e.f.newTemplate(false, 1)
			e.f.txData(m.TemplateID)
			e.f.refill(1)
			return e.f.advance(DefaultTokenTimeout)
		}, reason: "jds-timeout: no token", wantReset: true},
		{name: "jds slow: no declare answer", mode: FullTemplate, trigger: func(e *env) Actions {
			return e.f.advance(DefaultDeclareTimeout)
		}, reason: "jds-timeout: no DeclareMiningJob answer", wantReset: true},
		{name: "DeclareMiningJob.Error", mode: FullTemplate, trigger: func(e *env) Actions {
			d := declareOf(e.a0, 0)
			return e.f.apply(e.f.c.Declared(e.f.now, 0, d.Req, nil, &DeclareError{Code: "invalid-job"}))
		}, reason: "declare-error: invalid-job"},
		{name: "JDS connection lost while declaring", mode: FullTemplate, trigger: func(e *env) Actions {
			d := declareOf(e.a0, 0)
			return e.f.apply(e.f.c.Declared(e.f.now, 0, d.Req, nil, errors.New("connection reset")))
		}, reason: "jds-declare: connection reset", wantReset: true},
		{name: "SetCustomMiningJob.Error", mode: CoinbaseOnly, trigger: func(e *env) Actions {
			m := customJobOf(e.a0, 0)
			return e.f.apply(e.f.c.PoolMessage(e.f.now, 0, &messages.SetCustomMiningJobError{ChannelID: m.ChannelID, RequestID: m.RequestID, ErrorCode: "invalid-mining-job-token"}))
		}, reason: "custom-job-rejected: invalid-mining-job-token"},
		{name: "pool slow: no SetCustomMiningJob answer", mode: CoinbaseOnly, trigger: func(e *env) Actions {
			return e.f.advance(DefaultCustomJobTimeout)
		}, reason: "pool-timeout: no SetCustomMiningJob answer", wantReset: true},
		{name: "pool rejects shares of an acknowledged job", mode: CoinbaseOnly, ack: true, trigger: func(e *env) Actions {
			var a Actions
			for i := 0; i < DefaultShareRejectLimit; i++ {
				a = e.f.apply(e.f.c.PoolMessage(e.f.now, 0, &messages.SubmitSharesError{ChannelID: 10, SequenceNumber: uint32(i), ErrorCode: "invalid-job-id"}))
			}
			return a
		}, reason: "shares-rejected: invalid-job-id"},
		{name: "pool connection lost", mode: FullTemplate, ack: true, trigger: func(e *env) Actions {
			return e.f.apply(e.f.c.PoolDown(e.f.now, 0, "EOF"))
		}, reason: "pool-lost: EOF"},
		{name: "JDS connection lost", mode: FullTemplate, ack: true, trigger: func(e *env) Actions {
			return e.f.apply(e.f.c.JDSDown(e.f.now, 0, "EOF"))
		}, reason: "jds-lost: EOF"},
		{name: "pool closes the channel", mode: CoinbaseOnly, ack: true, trigger: func(e *env) Actions {
			return e.f.apply(e.f.c.PoolMessage(e.f.now, 0, &messages.CloseChannel{ChannelID: 10, ReasonCode: "bye"}))
		}, reason: "channel-closed: bye", wantReset: true},
		{name: "JDS fails a token request", mode: CoinbaseOnly, trigger: func(e *env) Actions {
			// The refill request made when the first token was used.
			var req uint32
			for _, x := range e.f.all {
				for _, r := range x.Tokens {
					if r.Pair == 0 {
						req = r.Req
					}
				}
			}
			return e.f.apply(e.f.c.Token(e.f.now, 0, req, nil, errors.New("rate limited")))
		}, reason: "jds-token: rate limited", wantReset: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, poolCfg(tc.mode, 2))
			id := f.newTip(2)
			f.txData(id)
			a0 := f.connect(0)
			a1 := f.connect(1)
			if f.c.Active() != 0 {
				t.Fatalf("active %s", SourceName(f.c.Active()))
			}
			f.acceptJob(1, a1) // pair 1 is warm
			if tc.ack {
				f.acceptJob(0, a0)
			}
			a := tc.trigger(&env{f: f, a0: a0})
			if f.c.Active() != 1 {
				t.Fatalf("active %s after trigger, want pair-1 (states %+v)", SourceName(f.c.Active()), f.c.States())
			}
			if len(a.Switches) != 1 || a.Switches[0].From != 0 || a.Switches[0].To != 1 || a.Switches[0].Reason != tc.reason {
				t.Fatalf("switches %+v, want reason %q", a.Switches, tc.reason)
			}
			hasWork := false
			for _, op := range a.Devices {
				if op.Work != nil || op.PrevHash != nil {
					hasWork = true
				}
			}
			if !hasWork {
				t.Fatal("devices got no new work in the step that switched")
			}
			if got := len(a.Resets) == 1; got != tc.wantReset {
				t.Fatalf("resets %+v, want reset %v", a.Resets, tc.wantReset)
			}
			st := f.c.States()[0]
			if st.State != "failed" && st.State != "probing" || st.Reason != tc.reason {
				t.Fatalf("pair 0 state %+v", st)
			}
			// Pair 1 is warm: a share goes straight up with its job id (or
			// waits for the job of a template that arrived since).
			b := f.apply(f.c.DeviceShare(f.now, f.share(false)))
			if len(sharesOf(b, 1)) != 1 && b.Shares[0].Outcome != "buffered" {
				t.Fatalf("share on pair 1 not sent: %+v", b)
			}
		})
	}
}

func TestStaleAndDuplicateSharesDoNotTrigger(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 2))
	f.newTip(0)
	a := f.connect(0)
	f.acceptJob(0, a)
	for i := 0; i < 10; i++ {
		code := "stale-share"
		if i%2 == 1 {
			code = "duplicate-share"
		}
		f.apply(f.c.PoolMessage(f.now, 0, &messages.SubmitSharesError{ChannelID: 10, ErrorCode: code}))
	}
	// Rejections interleaved with acceptances never reach the limit.
	for i := 0; i < 10; i++ {
		f.apply(f.c.PoolMessage(f.now, 0, &messages.SubmitSharesError{ChannelID: 10, ErrorCode: "difficulty-too-low"}))
		f.apply(f.c.PoolMessage(f.now, 0, &messages.SubmitSharesSuccess{ChannelID: 10, NewSubmitsAcceptedCount: 1}))
	}
	if f.c.Active() != 0 {
		t.Fatalf("switched away: %+v", f.c.States())
	}
}

// With every pair gone the devices mine solo; without a solo payout they
// keep their last work and the core says so.
func TestSoloFallbackAndNone(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 2))
	f.newTip(0)
	f.connect(0)
	f.connect(1)
	f.apply(f.c.PoolDown(f.now, 0, "EOF"))
	a := f.apply(f.c.PoolDown(f.now, 1, "EOF"))
	if f.c.Active() != Solo || len(a.Switches) != 1 || a.Switches[0].To != Solo {
		t.Fatalf("active %s switches %+v", SourceName(f.c.Active()), a.Switches)
	}
	w := f.devWork[f.devActive]
	if !bytes.Contains(w.CoinbaseSuffix, soloScript) || w.ExtranonceSpace != DefaultSoloExtranonceSize {
		t.Fatal("solo work does not pay the solo script")
	}

	cfg := poolCfg(CoinbaseOnly, 1)
	cfg.SoloScript = nil
	g := newFixture(t, cfg)
	g.newTip(0)
	g.connect(0)
	a = g.apply(g.c.PoolDown(g.now, 0, "EOF"))
	if g.c.Active() != None || len(a.Switches) != 1 {
		t.Fatalf("active %s", SourceName(g.c.Active()))
	}
}

// A pair that failed is probed on every new template; it is used again only
// after its custom jobs were acknowledged for ReturnAfter, and then jdc
// returns to it (the highest healthy pair) in one step.
func TestReturnAfterStable(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 3))
	f.newTip(0)
	f.connect(0)
	f.connect(1)
	f.connect(2)
	// Pair 0's job is rejected: to pair 1.
	var m *messages.SetCustomMiningJob
	for _, x := range f.all {
		if j := customJobOf(x, 0); j != nil {
			m = j
		}
	}
	f.apply(f.c.PoolMessage(f.now, 0, &messages.SetCustomMiningJobError{ChannelID: 10, RequestID: m.RequestID, ErrorCode: "invalid-job"}))
	if f.c.Active() != 1 {
		t.Fatal("did not move to pair 1")
	}
	// Pair 1 loses its pool too: to pair 2.
	f.apply(f.c.PoolDown(f.now, 1, "reset"))
	if f.c.Active() != 2 {
		t.Fatal("did not move to pair 2")
	}
	// A new tip: pair 0 is probed with a custom job and accepts it.
	f.advance(5 * time.Second)
	f.newTip(0)
	f.acceptJob(0, f.refill(0))
	f.acceptJob(2, f.refill(2))
	if st := f.c.States()[0]; st.State != "healthy" {
		t.Fatalf("pair 0 %+v", st)
	}
	// Not before ReturnAfter.
	if a := f.advance(29 * time.Second); len(a.Switches) != 0 || f.c.Active() != 2 {
		t.Fatalf("returned too early: %+v", a.Switches)
	}
	a := f.advance(time.Second)
	if f.c.Active() != 0 || len(a.Switches) != 1 || a.Switches[0].Reason != "return" {
		t.Fatalf("active %s switches %+v", SourceName(f.c.Active()), a.Switches)
	}
	// Pair 0's job is already acknowledged: shares go up at once.
	b := f.apply(f.c.DeviceShare(f.now, f.share(false)))
	if len(sharesOf(b, 0)) != 1 {
		t.Fatalf("share after return not sent: %+v", b)
	}
	// A failure during the stability window restarts it.
	f.apply(f.c.PoolDown(f.now, 0, "again"))
	if f.c.Active() != 2 {
		t.Fatalf("active %s", SourceName(f.c.Active()))
	}
}

func TestReturnFromSolo(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 1))
	f.newTip(0)
	f.connect(0)
	f.apply(f.c.PoolDown(f.now, 0, "EOF"))
	if f.c.Active() != Solo {
		t.Fatal("not solo")
	}
	f.apply(f.c.PoolUp(f.now, 0, testChannel(0)))
	a := f.refill(0)
	if f.c.Active() != Solo {
		t.Fatal("returned before the pair proved itself")
	}
	f.acceptJob(0, a)
	f.advance(30 * time.Second)
	if f.c.Active() != 0 {
		t.Fatalf("did not return from solo: %+v", f.c.States())
	}
}

// A new tip is one SetPrevHash for the active source: its work for the
// future template was sent ahead.
func TestTipChangeIsOneSetPrevHash(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 1))
	f.newTip(1)
	f.connect(0)
	m := f.template(true, 0)
	a := f.apply(f.c.NewTemplate(f.now, m))
	if len(a.Devices) != 1 || a.Devices[0].Work == nil || !a.Devices[0].Work.Future {
		t.Fatalf("future work not sent ahead: %+v", a.Devices)
	}
	f.tip[0]++
	a = f.apply(f.c.SetNewPrevHash(f.now, &messages.SetNewPrevHash{TemplateID: m.TemplateID, PrevHash: f.tip, NBits: 0x207fffff}))
	if len(a.Devices) != 1 || a.Devices[0].PrevHash == nil {
		t.Fatalf("tip change: %+v", a.Devices)
	}
	// Fee update on the same tip: non-future work.
	a = f.apply(f.c.NewTemplate(f.now, f.template(false, 2)))
	if len(a.Devices) != 1 || a.Devices[0].Work == nil || a.Devices[0].Work.Future {
		t.Fatalf("fee update: %+v", a.Devices)
	}
}

func TestShareMapping(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 1))
	f.newTip(0)
	a := f.connect(0)
	// Bounded buffer before the job is acknowledged.
	for i := 0; i < DefaultMaxPendingShares+5; i++ {
		s := f.share(false)
		s.Nonce = uint32(i)
		f.apply(f.c.DeviceShare(f.now, s))
	}
	f.acceptJob(0, a)
	last := f.all[len(f.all)-1]
	sh := sharesOf(last, 0)
	if len(sh) != DefaultMaxPendingShares || sh[0].Nonce != 5 {
		t.Fatalf("flushed %d shares, first nonce %d", len(sh), sh[0].Nonce)
	}
	// Wrong extranonce size and unknown work are dropped.
	s := f.share(false)
	s.Extranonce = s.Extranonce[1:]
	if b := f.apply(f.c.DeviceShare(f.now, s)); len(b.Pool) != 0 || b.Shares[0].Reason != "bad-extranonce-size" {
		t.Fatalf("%+v", b)
	}
	s = f.share(false)
	s.WorkID = 9999
	if b := f.apply(f.c.DeviceShare(f.now, s)); len(b.Pool) != 0 || b.Shares[0].Reason != "unknown-work" {
		t.Fatalf("%+v", b)
	}
	// A share of the previous tip after a new one is not sent.
	old := f.share(false)
	f.newTip(0)
	if b := f.apply(f.c.DeviceShare(f.now, old)); len(b.Pool) != 0 {
		t.Fatalf("stale share sent: %+v", b)
	}
}

func TestSetExtranoncePrefixAndTarget(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 1))
	f.newTip(0)
	a := f.connect(0)
	f.acceptJob(0, a)
	old := f.devActive
	a = f.apply(f.c.PoolMessage(f.now, 0, &messages.SetExtranoncePrefix{ChannelID: 10, ExtranoncePrefix: []byte{1, 2}}))
	if f.devActive == old || !bytes.HasSuffix(f.devWork[f.devActive].CoinbasePrefix, []byte{1, 2}) {
		t.Fatal("devices not re-issued work with the new prefix")
	}
	f.serveTokens(a)
	var tg [32]byte
	tg[30] = 1
	a = f.apply(f.c.PoolMessage(f.now, 0, &messages.SetTarget{ChannelID: 10, MaximumTarget: tg}))
	if f.devTarget != tg {
		t.Fatal("target not passed on")
	}
}

func TestConstraintsFollowPoolOutputs(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 1))
	if f.c.Constraints().Size != DefaultReserveSize {
		t.Fatalf("%+v", f.c.Constraints())
	}
	f.apply(f.c.PoolUp(f.now, 0, testChannel(0)))
	a := f.apply(f.c.JDSUp(f.now, 0))
	big := &messages.AllocateMiningJobTokenSuccess{MiningJobToken: []byte("t"), CoinbaseTxOutputs: templates.SerializeOutputVector([]templates.TxOutput{
		{PkScript: bytes.Repeat([]byte{0x6a}, 300)},
	})}
	b := f.apply(f.c.Token(f.now, 0, findToken(t, a, 0), big, nil))
	if b.Constraints == nil || b.Constraints.Size != 8+3+300 {
		t.Fatalf("%+v", b.Constraints)
	}
}

func TestTemplateProviderReset(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 1))
	f.newTip(0)
	f.connect(0)
	f.apply(f.c.TemplateProviderReset(f.now))
	f.tmplN = 0 // the new tp session starts its ids again
	f.newTip(1)
	if f.c.cur.msg.TemplateID != 1 {
		t.Fatal("new session template not current")
	}
}

func TestMaxTemplatesBound(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 1))
	f.newTip(0)
	for i := 0; i < 100; i++ {
		f.newTemplate(true, 0)
	}
	if len(f.c.templates) > DefaultMaxTemplates {
		t.Fatalf("%d templates kept", len(f.c.templates))
	}
}

// A pool channel whose extranonce the devices cannot share fails the pair.
func TestPoolExtranonceTooSmall(t *testing.T) {
	cfg := poolCfg(CoinbaseOnly, 1)
	cfg.MinExtranonceSpace = 6
	f := newFixture(t, cfg)
	ch := testChannel(0)
	ch.ExtranonceSize = 4
	a := f.apply(f.c.PoolUp(f.now, 0, ch))
	if len(a.Resets) != 1 || !strings.Contains(f.c.States()[0].Reason, "extranonce unusable") {
		t.Fatalf("%+v %+v", a.Resets, f.c.States())
	}
}

func TestDifficultyTooLowDoesNotTrigger(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 1))
	f.newTip(0)
	f.acceptJob(0, f.connect(0))
	for i := 0; i < 10; i++ {
		f.apply(f.c.PoolMessage(f.now, 0, &messages.SubmitSharesError{ChannelID: 10, ErrorCode: "difficulty-too-low"}))
	}
	if f.c.Active() != 0 {
		t.Fatal("switched on difficulty-too-low")
	}
}

// A template whose outputs do not parse is refused (logged); no pair fails
// for it and the devices keep their work.
func TestBadTemplateOutputs(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 1))
	f.newTip(0)
	f.acceptJob(0, f.connect(0))
	before := f.devActive
	m := f.template(false, 0)
	m.CoinbaseTxOutputs = append(m.CoinbaseTxOutputs, 0x00)
	a := f.apply(f.c.NewTemplate(f.now, m))
	if len(a.Logs) == 0 || f.c.Active() != 0 || f.c.States()[0].State != "healthy" || f.devActive != before {
		t.Fatalf("%+v %+v", a, f.c.States())
	}
}

// A late Success for a job superseded by a fee update maps that job's
// in-flight shares; an old work's shares then go up with the old job id.
func TestLateSuccessOfSupersededJob(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 1))
	f.newTip(0)
	a := f.connect(0)
	old := customJobOf(a, 0)
	oldShare := f.share(false)
	f.newTemplate(false, 1) // fee update: a new job, the old one superseded
	f.refill(0)
	a = f.apply(f.c.PoolMessage(f.now, 0, &messages.SetCustomMiningJobSuccess{ChannelID: 10, RequestID: old.RequestID, JobID: 41}))
	if len(a.Switches) != 0 {
		t.Fatal("late success switched")
	}
	b := f.apply(f.c.DeviceShare(f.now, oldShare))
	if sh := sharesOf(b, 0); len(sh) != 1 || sh[0].JobID != 41 {
		t.Fatalf("old share %+v", b)
	}
}

// An old spare token is not used: a fresh one is asked for first.
func TestOldSpareTokenDropped(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 1))
	f.newTip(0)
	f.acceptJob(0, f.connect(0))
	f.refill(0) // the spare for the next template
	f.advance(DefaultTokenMaxAge + time.Second)
	a := f.newTemplate(false, 0)
	_ = a
	last := f.all[len(f.all)-1]
	if customJobOf(last, 0) != nil || len(last.Tokens) != 1 {
		t.Fatalf("old spare used: %+v", last)
	}
	b := f.refill(0)
	if m := customJobOf(b, 0); m == nil || !strings.HasPrefix(string(m.MiningJobToken), "tok-0-") {
		t.Fatalf("%+v", b)
	}
}

// stale-chain-tip is a race with the pool's node: the job is redone with a
// fresh token; only repeated answers fail the pair.
func TestStaleChainTipRetried(t *testing.T) {
	for _, mode := range []Mode{CoinbaseOnly, FullTemplate} {
		t.Run(mode.String(), func(t *testing.T) {
			f := newFixture(t, poolCfg(mode, 2))
			id := f.newTip(0)
			f.txData(id)
			a := f.connect(0)
			f.acceptJob(1, f.connect(1))
			reject := func(a Actions) Actions {
				if d := declareOf(a, 0); d != nil {
					return f.apply(f.c.Declared(f.now, 0, d.Req, nil, &DeclareError{Code: "stale-chain-tip"}))
				}
				m := customJobOf(a, 0)
				if m == nil {
					t.Fatalf("no job to reject: %+v", a)
				}
				return f.apply(f.c.PoolMessage(f.now, 0, &messages.SetCustomMiningJobError{ChannelID: 10, RequestID: m.RequestID, ErrorCode: "stale-chain-tip"}))
			}
			for i := 0; i < maxStaleRetries; i++ {
				reject(a)
				if f.c.Active() != 0 {
					t.Fatalf("try %d: switched", i)
				}
				f.advance(staleRetryDelay)
				a = f.refill(0)
			}
			reject(a)
			if f.c.Active() != 1 || !strings.Contains(f.c.States()[0].Reason, "stale-chain-tip") {
				t.Fatalf("active %s states %+v", SourceName(f.c.Active()), f.c.States())
			}
		})
	}
}

// At start the devices wait (on solo work) for the first pair instead of
// taking whichever pair connected first; past StartGrace a lower pair is
// taken. Without solo work to wait on, a lower pair is taken at once.
func TestStartGracePrefersFirstPair(t *testing.T) {
	t.Run("first pair within the grace", func(t *testing.T) {
		f := newFixture(t, poolCfg(CoinbaseOnly, 2))
		f.newTip(0)
		f.connect(1)
		if f.c.Active() != Solo {
			t.Fatalf("took %s during the start grace", SourceName(f.c.Active()))
		}
		f.advance(DefaultStartGrace / 2)
		f.connect(0)
		f.advance(DefaultStartGrace)
		var sw []Switch
		for _, a := range f.all {
			sw = append(sw, a.Switches...)
		}
		if f.c.Active() != 0 || len(sw) != 1 || sw[0].From != Solo || sw[0].Reason != "pair-ready" {
			t.Fatalf("active %s switches %+v, want one solo → pair-0", SourceName(f.c.Active()), sw)
		}
	})
	t.Run("lower pair after the grace", func(t *testing.T) {
		f := newFixture(t, poolCfg(CoinbaseOnly, 2))
		f.newTip(0)
		f.connect(1)
		f.advance(DefaultStartGrace - time.Millisecond)
		if f.c.Active() != Solo {
			t.Fatal("grace ended early")
		}
		f.advance(time.Millisecond)
		if f.c.Active() != 1 {
			t.Fatalf("active %s after the grace", SourceName(f.c.Active()))
		}
		// The first pair still takes over when it connects.
		f.connect(0)
		if f.c.Active() != 0 {
			t.Fatalf("active %s", SourceName(f.c.Active()))
		}
	})
	t.Run("the grace runs from start, not from the first pair", func(t *testing.T) {
		f := newFixture(t, poolCfg(CoinbaseOnly, 2))
		f.apply(f.c.Tick(f.now)) // the shell ticks from its start
		f.advance(DefaultStartGrace)
		f.newTip(0)
		f.connect(1)
		if f.c.Active() != 1 {
			t.Fatalf("active %s after the grace", SourceName(f.c.Active()))
		}
	})
	t.Run("a failed higher pair is not waited for", func(t *testing.T) {
		f := newFixture(t, poolCfg(CoinbaseOnly, 2))
		f.newTip(0)
		f.apply(f.c.PoolUp(f.now, 0, Channel{ID: 1, ExtranonceSize: 0})) // unusable: fails
		f.connect(1)
		if f.c.Active() != 1 {
			t.Fatalf("active %s", SourceName(f.c.Active()))
		}
	})
	t.Run("no solo: a lower pair at once", func(t *testing.T) {
		cfg := poolCfg(CoinbaseOnly, 2)
		cfg.SoloScript = nil
		f := newFixture(t, cfg)
		f.newTip(0)
		f.connect(1)
		if f.c.Active() != 1 {
			t.Fatalf("devices left without work: active %s", SourceName(f.c.Active()))
		}
	})
	t.Run("grace off", func(t *testing.T) {
		cfg := poolCfg(CoinbaseOnly, 2)
		cfg.StartGrace = -1
		f := newFixture(t, cfg)
		f.newTip(0)
		f.connect(1)
		if f.c.Active() != 1 {
			t.Fatalf("active %s", SourceName(f.c.Active()))
		}
	})
}

// tp refusing a template's transaction data: the core asks again, a newer
// template supersedes the wait, and a wait that outlasts the declaration
// deadline fails the pair (its devices' shares would never reach the pool).
func TestTxDataRefused(t *testing.T) {
	t.Run("asked again, then the pair fails", func(t *testing.T) {
		f := newFixture(t, poolCfg(FullTemplate, 1))
		id := f.newTip(2)
		f.connect(0)
		if f.c.Active() != 0 {
			t.Fatal("pair 0 not active")
		}
		f.apply(f.c.TxDataFailed(f.now, id, errors.New("template-id-not-found")))
		a := f.advance(txDataRetry)
		if len(a.TxData) != 1 || a.TxData[0] != id {
			t.Fatalf("not asked again: %v", a.TxData)
		}
		if a := f.advance(txDataRetry); len(a.TxData) != 0 {
			t.Fatal("asked again while a request is in flight")
		}
		f.apply(f.c.TxDataFailed(f.now, id, errors.New("template-id-not-found")))
		a = f.advance(DefaultDeclareTimeout)
		if f.c.Active() != Solo || len(a.Switches) != 1 || !strings.HasPrefix(a.Switches[0].Reason, "tp-tx-data") {
			t.Fatalf("active %s switches %+v", SourceName(f.c.Active()), a.Switches)
		}
		if len(a.Resets) != 0 {
			t.Fatal("tp's fault must not reset the pair's connections")
		}
	})
	t.Run("a newer template supersedes the wait", func(t *testing.T) {
		f := newFixture(t, poolCfg(FullTemplate, 1))
		id := f.newTip(2)
		f.connect(0)
		f.apply(f.c.TxDataFailed(f.now, id, errors.New("refused")))
		f.advance(DefaultDeclareTimeout / 2)
		m := f.newTemplate(false, 1)
		f.refill(0)
		a := f.txData(m.TemplateID)
		if declareOf(a, 0) == nil {
			t.Fatalf("newer template not declared: %+v", a)
		}
		f.advance(DefaultDeclareTimeout / 2)
		if f.c.Active() != 0 {
			t.Fatalf("pair failed: %+v", f.c.States())
		}
	})
}

// A pool or JDS that stops answering is caught even when templates come
// faster than the timeout: each template supersedes the unanswered job, but
// the clock runs from the oldest unanswered request.
func TestSilentPeerCaughtUnderFastTemplates(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    Mode
		timeout time.Duration
		reason  string
	}{
		{"pool", CoinbaseOnly, DefaultCustomJobTimeout, "pool-timeout: no SetCustomMiningJob answer"},
		{"jds", FullTemplate, DefaultDeclareTimeout, "jds-timeout: no DeclareMiningJob answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, poolCfg(tc.mode, 2))
			id := f.newTip(0)
			f.txData(id)
			f.acceptJob(0, f.connect(0))
			f.acceptJob(1, f.connect(1))
			for i := 0; time.Duration(i)*time.Second <= tc.timeout+time.Second && f.c.Active() == 0; i++ {
				f.advance(time.Second)
				from := len(f.all)
				m := f.newTemplate(false, 0)
				f.txData(m.TemplateID)
				// Pair 1 answers everything; pair 0 only gives tokens.
				f.refill(0)
				f.refill(1)
				f.answerAll(1, from)
			}
			if f.c.Active() != 1 || f.c.States()[0].Reason != tc.reason {
				t.Fatalf("active %s, pair 0 %+v", SourceName(f.c.Active()), f.c.States()[0])
			}
		})
	}
}

// Standby pairs (warm, or failed and probed) get a job on every tip but at
// most one per ProbeInterval for template updates on the same tip; a switch
// to a standby starts its job for the devices' template at once.
func TestProbeInterval(t *testing.T) {
	f := newFixture(t, poolCfg(CoinbaseOnly, 2))
	f.newTip(0)
	f.acceptJob(0, f.connect(0))
	f.acceptJob(1, f.connect(1))
	customs := func(from int) (n [2]int) {
		for _, a := range f.all[from:] {
			for _, s := range a.Pool {
				if _, ok := s.Msg.(*messages.SetCustomMiningJob); ok {
					n[s.Pair]++
				}
			}
		}
		return n
	}
	updates := func(n int) int {
		from := len(f.all)
		for i := 0; i < n; i++ {
			f.advance(time.Second)
			f.newTemplate(false, 0)
			f.refill(0)
			f.refill(1)
			f.answerAll(0, len(f.all)-3)
			f.answerAll(1, len(f.all)-3)
		}
		return from
	}
	from := updates(5)
	if n := customs(from); n[0] != 5 || n[1] != 0 {
		t.Fatalf("custom jobs per pair %v over 5 updates, want [5 0]", n)
	}
	// Pair 0's next job is rejected: pair 1 takes over with a job for the
	// devices' template in the same step.
	from = len(f.all)
	f.advance(time.Second)
	f.newTemplate(false, 0)
	f.refill(0)
	var m *messages.SetCustomMiningJob
	for _, a := range f.all[from:] {
		if j := customJobOf(a, 0); j != nil {
			m = j
		}
	}
	a := f.apply(f.c.PoolMessage(f.now, 0, &messages.SetCustomMiningJobError{ChannelID: 10, RequestID: m.RequestID, ErrorCode: "invalid-job"}))
	if f.c.Active() != 1 {
		t.Fatal("no switch to pair 1")
	}
	j := customJobOf(a, 1)
	if j == nil {
		a = f.refill(1)
		j = customJobOf(a, 1)
	}
	if j == nil || f.c.pairs[1].job.tmpl != f.c.cur {
		t.Fatalf("pair 1 has no job for the devices' template: %+v", a)
	}
	f.answerAll(1, from)
	// Pair 0 is probed once per ProbeInterval, not per template.
	from = updates(int(DefaultProbeInterval/time.Second) + 2)
	if n := customs(from); n[0] < 1 || n[0] > 2 || n[1] != int(DefaultProbeInterval/time.Second)+2 {
		t.Fatalf("custom jobs per pair %v", n)
	}
	// A new tip reaches every pair.
	from = len(f.all)
	f.newTip(0)
	f.refill(0)
	f.refill(1)
	if n := customs(from); n[0] != 1 || n[1] != 1 {
		t.Fatalf("custom jobs per pair on a tip %v", n)
	}
}

// Solo: the current template's data is asked for again a few times after a
// refusal (a found block needs it for the node), then no more.
func TestTxDataRetriedForBlocks(t *testing.T) {
	f := newFixture(t, Config{Mode: SoloMode, SoloScript: soloScript})
	id := f.newTip(1)
	asked := 0
	for i := 0; i < 2*maxIdleTxDataRetries; i++ {
		f.apply(f.c.TxDataFailed(f.now, id, errors.New("refused")))
		asked += len(f.advance(txDataRetry).TxData)
	}
	if asked != maxIdleTxDataRetries {
		t.Fatalf("asked again %d times, want %d", asked, maxIdleTxDataRetries)
	}
	f.txData(id)
	if a := f.apply(f.c.DeviceShare(f.now, f.share(true))); len(a.Blocks) != 1 || a.Blocks[0].Raw == nil {
		t.Fatal("block not assembled once the data came")
	}
}
