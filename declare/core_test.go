package declare

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/mempool"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// synthTx is a made-up P2WPKH-shaped transaction; seed makes it unique.
func synthTx(seed uint64, witness bool) *wire.MsgTx {
	tx := wire.NewMsgTx(2)
	var h chainhash.Hash
	binary.LittleEndian.PutUint64(h[:], seed)
	h[31] = 0xee
	in := wire.NewTxIn(&wire.OutPoint{Hash: h, Index: uint32(seed % 3)}, nil, nil)
	if witness {
		sig := make([]byte, 72)
		binary.LittleEndian.PutUint64(sig, seed)
		in.Witness = wire.TxWitness{sig, make([]byte, 33)}
	} else {
		in.SignatureScript = append([]byte{0x48}, make([]byte, 72)...)
	}
	tx.AddTxIn(in)
	for k := 0; k < 2; k++ {
		pk := append([]byte{0x00, 0x14}, make([]byte, 20)...)
		binary.LittleEndian.PutUint64(pk[2:], seed+uint64(k))
		tx.AddTxOut(wire.NewTxOut(int64(1000+k), pk))
	}
	return tx
}

var testTip = Chain{TipHash: [32]byte{0xaa, 0xbb}, Height: 999, Bits: 0x207fffff, MinTime: 1_700_000_000}

// offlineJob builds a declaration of txs (all in store) on testTip.
func offlineJob(t testing.TB, txs []*wire.MsgTx, payout int64, scriptSuffix []byte) *messages.DeclareMiningJob {
	var wtxids [][32]byte
	for _, tx := range txs {
		wtxids = append(wtxids, tx.WitnessHash())
	}
	outs := []templates.TxOutput{{Value: payout, PkScript: poolScript},
		{Value: 0, PkScript: templates.WitnessCommitmentScript(templates.WitnessCommitment(wtxids))}}
	cb := templates.Coinbase{Version: 2, ScriptSigPrefix: append(templates.HeightScript(testTip.Height+1), 0x08), ExtranonceSize: 8,
		ScriptSigSuffix: scriptSuffix, Sequence: 0xffffffff, Outputs: templates.SerializeOutputs(outs), OutputCount: 2, Witness: true}
	p, s := cb.Parts(true)
	return &messages.DeclareMiningJob{RequestID: 1, Version: 0x20000000, CoinbaseTxPrefix: p, CoinbaseTxSuffix: s, WtxidList: wtxids}
}

func offlineCore(t testing.TB, store TxSource, mut func(*Policy)) *Core {
	p := Policy{PayoutScript: poolScript, AllowFullTemplate: true, AllowCoinbaseOnly: true, HalvingInterval: 150}
	if mut != nil {
		mut(&p)
	}
	c, err := NewCore(p, store, [32]byte{7})
	if err != nil {
		t.Fatal(err)
	}
	c.SetChain(testTip)
	return c
}

func TestCoinbaseLayouts(t *testing.T) {
	txs := []*wire.MsgTx{synthTx(1, true)}
	for _, suffix := range [][]byte{nil, {0x01, 0x42}, []byte("/a pool tag/")} {
		m := offlineJob(t, txs, 100, suffix)
		cb, e := parseDeclaredCoinbase(m.CoinbaseTxPrefix, m.CoinbaseTxSuffix)
		if e != nil {
			t.Fatalf("suffix %x: %s", suffix, e.details)
		}
		if cb.extranonceLen != 8 || !bytes.Equal(cb.scriptSuffix, suffix) || cb.height != testTip.Height+1 || len(cb.outputs) != 2 || !cb.witness {
			t.Fatalf("suffix %x: %+v", suffix, cb)
		}
		// The rebuilt coinbase is one transaction btcd reads, with our txid.
		raw, txid := cb.coinbase(bytes.Repeat([]byte{3}, 8))
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(raw)); err != nil || tx.TxHash() != txid {
			t.Fatalf("rebuilt coinbase: %v", err)
		}
	}
	bad := []struct {
		name           string
		prefix, suffix []byte
		code           string
	}{
		{"empty", nil, nil, CodeInvalidCoinbaseTx},
		{"two inputs", append([]byte{2, 0, 0, 0, 2}, make([]byte, 40)...), nil, CodeInvalidCoinbaseTxInput},
		{"real prevout", append(append([]byte{2, 0, 0, 0, 1}, bytes.Repeat([]byte{1}, 32)...), 0, 0, 0, 0, 4), nil, CodeInvalidCoinbaseTxInput},
	}
	for _, tc := range bad {
		if _, e := parseDeclaredCoinbase(tc.prefix, tc.suffix); e == nil || e.code != tc.code {
			t.Errorf("%s: %+v", tc.name, e)
		}
	}
}

func TestTokens(t *testing.T) {
	c := offlineCore(t, mempool.NewStore(0), func(p *Policy) { p.TokenBurst, p.TokenRate, p.MaxTokensPerConn = 3, 1, 2 })
	now := time.Unix(1_700_000_000, 0)
	c.Connect(1, true, now)
	var toks [][]byte
	for i := 0; i < 3; i++ {
		r, err := c.Allocate(1, &messages.AllocateMiningJobToken{UserIdentifier: "u", RequestID: uint32(i)}, now)
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, r.MiningJobToken)
	}
	if _, err := c.Allocate(1, &messages.AllocateMiningJobToken{}, now); err == nil {
		t.Fatal("burst exceeded without error")
	}
	if _, err := c.Allocate(1, &messages.AllocateMiningJobToken{}, now.Add(1500*time.Millisecond)); err != nil {
		t.Fatalf("refilled: %v", err)
	}
	if st := c.Stats(); st.TokensLive != 2 {
		t.Fatalf("live tokens %d, want the bound 2", st.TokensLive)
	}
	// The oldest were dropped beyond the bound.
	st := c.Declare(1, &messages.DeclareMiningJob{RequestID: 9, MiningJobToken: toks[0]}, now)
	if st.Reply == nil || st.Reply.ErrorCode != CodeInvalidToken || !strings.Contains(string(st.Reply.ErrorDetails), "unknown") {
		t.Fatalf("%+v", st.Reply)
	}
	// Another connection cannot use a token.
	c.Connect(2, true, now)
	st = c.Declare(2, &messages.DeclareMiningJob{RequestID: 9, MiningJobToken: toks[2]}, now)
	if st.Reply == nil || !strings.Contains(string(st.Reply.ErrorDetails), "another connection") {
		t.Fatalf("%+v", st.Reply)
	}
	c.Sweep(now.Add(time.Hour))
	if st := c.Stats(); st.TokensLive != 0 {
		t.Fatalf("after the sweep: %d", st.TokensLive)
	}
	c.Disconnect(1)
	c.Disconnect(2)
}

func TestDeclareOffline(t *testing.T) {
	store := mempool.NewStore(0)
	var txs []*wire.MsgTx
	for i := uint64(0); i < 50; i++ {
		tx := synthTx(i, i%5 != 0)
		var b bytes.Buffer
		_ = tx.Serialize(&b)
		if _, err := store.Add(b.Bytes()); err != nil {
			t.Fatal(err)
		}
		txs = append(txs, tx)
	}
	c := offlineCore(t, store, nil)
	now := time.Unix(1_700_000_000, 0)
	c.Connect(1, true, now)
	tok, _ := c.Allocate(1, &messages.AllocateMiningJobToken{UserIdentifier: "u"}, now)
	m := offlineJob(t, txs, templates.Subsidy(testTip.Height+1, 150), nil)
	m.MiningJobToken = tok.MiningJobToken
	st := c.Declare(1, m, now)
	if st.Proposal == nil {
		t.Fatalf("%+v", st.Reply)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(st.Proposal.Block)); err != nil || len(blk.Transactions) != 51 {
		t.Fatalf("proposal block: %v", err)
	}
	if got := blk.Header.MerkleRoot; got != chainhash.Hash(templates.MerkleRootOf(txidsOf(&blk))) {
		t.Fatal("merkle root")
	}
	// A tip change while the node checked: stale.
	c.SetChain(Chain{TipHash: [32]byte{1}, Height: testTip.Height + 1, Bits: testTip.Bits})
	if _, bad := c.ProposalDone(st.Proposal, "", nil, now); bad == nil || bad.ErrorCode != CodeStaleChainTip {
		t.Fatalf("%+v", bad)
	}
	c.SetChain(testTip)
	// Node reasons map to codes.
	for reason, code := range map[string]string{"bad-prevblk": CodeStaleChainTip, "bad-txns-inputs-missingorspent": CodeInvalidJob} {
		tok, _ := c.Allocate(1, &messages.AllocateMiningJobToken{}, now)
		m.MiningJobToken = tok.MiningJobToken
		st := c.Declare(1, m, now)
		if _, bad := c.ProposalDone(st.Proposal, reason, nil, now); bad == nil || bad.ErrorCode != code {
			t.Fatalf("%s: %+v", reason, bad)
		}
	}
	// Accepted: a job behind a new token that the pool API can check,
	// including a scriptSig that continues after the extranonce.
	tok, _ = c.Allocate(1, &messages.AllocateMiningJobToken{UserIdentifier: "u"}, now)
	m2 := offlineJob(t, txs, templates.Subsidy(testTip.Height+1, 150), []byte{0x01, 0x42})
	m2.MiningJobToken = tok.MiningJobToken
	st = c.Declare(1, m2, now)
	ok, bad := c.ProposalDone(st.Proposal, "", nil, now)
	if ok == nil {
		t.Fatalf("%+v", bad)
	}
	v := c.ValidateCustomJob("u", &messages.SetCustomMiningJob{MiningJobToken: ok.NewMiningJobToken, PrevHash: testTip.TipHash,
		NBits: testTip.Bits, Version: 0x20000000, MinNTime: testTip.MinTime, CoinbaseTxVersion: 2}, now)
	if v.Code != CodeInvalidCoinbasePrefix || !strings.Contains(v.Details, "continues") {
		t.Fatalf("%+v", v)
	}
	if st := c.Stats(); st.JobsLive != 1 || st.Declared != 1 {
		t.Fatalf("%+v", st)
	}
	// A new tip two blocks on drops the job.
	c.SetChain(Chain{TipHash: [32]byte{5}, Height: 1000})
	c.SetChain(Chain{TipHash: [32]byte{6}, Height: 1001})
	if st := c.Stats(); st.JobsLive != 0 {
		t.Fatalf("jobs after two tips: %d", st.JobsLive)
	}
}

func txidsOf(b *wire.MsgBlock) [][32]byte {
	var out [][32]byte
	for _, tx := range b.Transactions {
		out = append(out, tx.TxHash())
	}
	return out
}

// TestPayoutShareOfOutputs: with the default share of 1, no other output
// may take value, whatever fees the JDS knows.
func TestPayoutShareOfOutputs(t *testing.T) {
	c := offlineCore(t, mempool.NewStore(0), nil)
	now := time.Unix(1_700_000_000, 0)
	c.Connect(1, true, now)
	subsidy := templates.Subsidy(testTip.Height+1, 150)
	for _, tc := range []struct {
		other int64
		ok    bool
	}{{0, true}, {1000, false}} {
		outs := []templates.TxOutput{{Value: subsidy, PkScript: poolScript}, {Value: tc.other, PkScript: []byte{0x51}}}
		cb := templates.Coinbase{Version: 2, ScriptSigPrefix: append(templates.HeightScript(testTip.Height+1), 0x08), ExtranonceSize: 8,
			Sequence: 0xffffffff, Outputs: templates.SerializeOutputs(outs), OutputCount: 2}
		p, s := cb.Parts(false)
		tok, _ := c.Allocate(1, &messages.AllocateMiningJobToken{}, now)
		st := c.Declare(1, &messages.DeclareMiningJob{MiningJobToken: tok.MiningJobToken, CoinbaseTxPrefix: p, CoinbaseTxSuffix: s}, now)
		if tc.ok != (st.Proposal != nil) {
			t.Fatalf("other output %d: %+v", tc.other, st.Reply)
		}
		if !tc.ok && (st.Reply.ErrorCode != CodePayoutUnderpaid || !strings.Contains(string(st.Reply.ErrorDetails), "of the coinbase's")) {
			t.Fatalf("%s", st.Reply.ErrorDetails)
		}
	}
}

// TestTxidDeclarations: a 2025 JDC's list of txids finds the mirror's
// segwit transactions too.
func TestTxidDeclarations(t *testing.T) {
	store := mempool.NewStore(0)
	var txs []*wire.MsgTx
	for i := uint64(0); i < 10; i++ {
		tx := synthTx(100+i, true)
		var b bytes.Buffer
		_ = tx.Serialize(&b)
		_, _ = store.Add(b.Bytes())
		txs = append(txs, tx)
	}
	c := offlineCore(t, store, nil)
	now := time.Unix(1_700_000_000, 0)
	c.Connect(1, true, now)
	tok, _ := c.Allocate(1, &messages.AllocateMiningJobToken{}, now)
	m := offlineJob(t, txs, templates.Subsidy(testTip.Height+1, 150), nil)
	m.MiningJobToken = tok.MiningJobToken
	for i, tx := range txs {
		m.WtxidList[i] = tx.TxHash()
	}
	if st := c.Declare(1, m, now); st.Proposal == nil {
		t.Fatalf("%+v %+v", st.Reply, st.Missing)
	}
}

// TestMissingTimeout: a declaration whose missing transactions never come
// is answered missing-txs by the sweep.
func TestMissingTimeout(t *testing.T) {
	c := offlineCore(t, mempool.NewStore(0), func(p *Policy) { p.MissingTimeout = 5 * time.Second })
	now := time.Unix(1_700_000_000, 0)
	c.Connect(1, true, now)
	tok, _ := c.Allocate(1, &messages.AllocateMiningJobToken{}, now)
	m := offlineJob(t, []*wire.MsgTx{synthTx(1, true)}, templates.Subsidy(testTip.Height+1, 150), nil)
	m.MiningJobToken, m.RequestID = tok.MiningJobToken, 42
	if st := c.Declare(1, m, now); st.Missing == nil || len(st.Missing.UnknownTxPositionList) != 1 {
		t.Fatalf("%+v", st)
	}
	if x := c.Sweep(now.Add(time.Second)); len(x) != 0 {
		t.Fatalf("early: %+v", x)
	}
	x := c.Sweep(now.Add(6 * time.Second))
	if len(x) != 1 || x[0].Conn != 1 || x[0].Reply.RequestID != 42 || x[0].Reply.ErrorCode != CodeMissingTxs {
		t.Fatalf("%+v", x)
	}
	if _, ok := c.Provide(1, &messages.ProvideMissingTransactionsSuccess{RequestID: 42}, now); ok {
		t.Fatal("a swept declaration still took its transactions")
	}
}

// TestTxCache: a declaration of remembered transactions assembles the same
// block as a fresh one, and the cache stays within its bound.
func TestTxCache(t *testing.T) {
	store := mempool.NewStore(0)
	var txs []*wire.MsgTx
	for i := uint64(0); i < 30; i++ {
		tx := synthTx(300+i, i%3 != 0)
		var b bytes.Buffer
		_ = tx.Serialize(&b)
		_, _ = store.Add(b.Bytes())
		txs = append(txs, tx)
	}
	now := time.Unix(1_700_000_000, 0)
	var blocks [][]byte
	var prev *Core
	for _, max := range []int{0, DefaultTxCache, DefaultTxCache} { // fresh, learning, remembered
		c := offlineCore(t, store, nil)
		c.cache.max = max
		if len(blocks) == 2 {
			c = prev // the core that learned them
		}
		c.Connect(1, true, now)
		tok, _ := c.Allocate(1, &messages.AllocateMiningJobToken{}, now)
		m := offlineJob(t, txs, templates.Subsidy(testTip.Height+1, 150), nil)
		m.MiningJobToken = tok.MiningJobToken
		st := c.Declare(1, m, now)
		if st.Proposal == nil {
			t.Fatalf("%+v", st.Reply)
		}
		blocks = append(blocks, st.Proposal.Block)
		prev = c
	}
	if !bytes.Equal(blocks[0], blocks[1]) || !bytes.Equal(blocks[1], blocks[2]) {
		t.Fatal("blocks differ with the cache")
	}
	if n := len(prev.cache.cur) + len(prev.cache.old); n != 30 {
		t.Fatalf("%d cached", n)
	}
	small := txCache{max: 4}
	for i := 0; i < 10; i++ {
		small.put([]cachedTx{{wtxid: [32]byte{byte(i)}}})
	}
	if n := len(small.cur) + len(small.old); n > 4 {
		t.Fatalf("%d cached over a bound of 4", n)
	}
	if got := small.get([][32]byte{{9}, {0}}, []bool{true, true}); got[0] == nil || got[1] != nil {
		t.Fatalf("%v", got)
	}
}

// TestPolicyRefusesNaN: NaN passes "x <= 0" and "x > 1"; a NaN payout
// share would turn the payout check off (int64(NaN × reward) is the most
// negative int64 on amd64) and a NaN token rate the rate limit.
func TestPolicyRefusesNaN(t *testing.T) {
	for name, mut := range map[string]func(*Policy){
		"payout share NaN": func(p *Policy) { p.PayoutMinShare = math.NaN() },
		"token rate NaN":   func(p *Policy) { p.TokenRate = math.NaN() },
		"token rate +Inf":  func(p *Policy) { p.TokenRate = math.Inf(1) },
	} {
		p := Policy{PayoutScript: poolScript, AllowFullTemplate: true}
		mut(&p)
		if _, err := NewCore(p, mempool.NewStore(0), [32]byte{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestTokenVerdictBeforeTip: what is wrong with a token is said even before
// the JDS knows the chain tip (jds answers the pool API from its start).
func TestTokenVerdictBeforeTip(t *testing.T) {
	c, err := NewCore(Policy{PayoutScript: poolScript, AllowFullTemplate: true}, mempool.NewStore(0), [32]byte{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	c.Connect(1, true, now)
	tok, err := c.Allocate(1, &messages.AllocateMiningJobToken{UserIdentifier: "u"}, now)
	if err != nil {
		t.Fatal(err)
	}
	v := c.ValidateCustomJob("u", &messages.SetCustomMiningJob{MiningJobToken: tok.MiningJobToken}, now)
	if v.Code != CodeJobNotYetValidated {
		t.Fatalf("%+v", v)
	}
}

// TestPushSolutionLateBlock: a block found more than two hours after its
// job was declared (a long gap between blocks on the same tip) is rebuilt;
// the time bound is the node's "now + 2 h", not the declaration's.
func TestPushSolutionLateBlock(t *testing.T) {
	c := offlineCore(t, mempool.NewStore(0), nil)
	now := time.Unix(1_700_000_000, 0)
	c.Connect(1, true, now)
	tok, _ := c.Allocate(1, &messages.AllocateMiningJobToken{UserIdentifier: "u"}, now)
	m := offlineJob(t, nil, templates.Subsidy(testTip.Height+1, 150), nil)
	m.MiningJobToken = tok.MiningJobToken
	st := c.Declare(1, m, now)
	if st.Proposal == nil {
		t.Fatalf("%+v", st.Reply)
	}
	if ok, bad := c.ProposalDone(st.Proposal, "", nil, now); ok == nil {
		t.Fatalf("%+v", bad)
	}
	later := now.Add(3 * time.Hour)
	en := make([]byte, 8)
	j := st.Proposal.job
	for nonce := uint32(0); ; nonce++ {
		b, ok := j.buildBlock(en, m.Version, uint32(later.Unix()), nonce)
		if !ok {
			continue
		}
		got, err := c.PushSolution(1, &messages.PushSolution{Extranonce: en, PrevHash: testTip.TipHash, Nonce: nonce,
			NTime: uint32(later.Unix()), NBits: testTip.Bits, Version: m.Version}, later)
		if err != nil || got.Hash != b.Hash || got.Swapped {
			t.Fatalf("%+v %v", got, err)
		}
		// Too far ahead of now for the node: not a block to submit.
		if _, err := c.PushSolution(1, &messages.PushSolution{Extranonce: en, PrevHash: testTip.TipHash, Nonce: nonce,
			NTime: uint32(later.Unix()), NBits: testTip.Bits, Version: m.Version}, now); err == nil {
			t.Fatal("a block 3 h ahead of now was rebuilt")
		}
		return
	}
}

// TestJobBytesBounded: transactions a JDC provided (ProvideMissingTransactions)
// are copies each kept job holds until it is dropped; their total over all
// kept jobs is bounded (the oldest jobs go first), whatever the job counts
// allow.
func TestJobBytesBounded(t *testing.T) {
	var txs []*wire.MsgTx
	var raws [][]byte
	size := 0
	for i := uint64(0); i < 10; i++ {
		tx := synthTx(100+i, true)
		var b bytes.Buffer
		_ = tx.Serialize(&b)
		txs, raws = append(txs, tx), append(raws, b.Bytes())
		size += b.Len()
	}
	// Room for the provided transactions of two jobs, not three.
	c := offlineCore(t, mempool.NewStore(0), func(p *Policy) { p.MaxJobBytes = 2*size + size/2 })
	now := time.Unix(1_700_000_000, 0)
	c.Connect(1, true, now)
	var tokens [][]byte
	for k := 0; k < 4; k++ {
		tok, _ := c.Allocate(1, &messages.AllocateMiningJobToken{UserIdentifier: "u"}, now)
		m := offlineJob(t, txs, templates.Subsidy(testTip.Height+1, 150), nil)
		m.RequestID, m.MiningJobToken = uint32(k+1), tok.MiningJobToken
		st := c.Declare(1, m, now)
		if st.Missing == nil || len(st.Missing.UnknownTxPositionList) != len(txs) {
			t.Fatalf("%+v", st)
		}
		st, _ = c.Provide(1, &messages.ProvideMissingTransactionsSuccess{RequestID: m.RequestID, TransactionList: raws}, now)
		if st.Proposal == nil {
			t.Fatalf("%+v", st.Reply)
		}
		ok, bad := c.ProposalDone(st.Proposal, "", nil, now)
		if ok == nil {
			t.Fatalf("%+v", bad)
		}
		tokens = append(tokens, ok.NewMiningJobToken)
	}
	if n := c.Stats().JobsLive; n != 2 {
		t.Fatalf("%d jobs kept, want the 2 whose provided transactions fit", n)
	}
	if v := c.ValidateCustomJob("u", &messages.SetCustomMiningJob{MiningJobToken: tokens[0]}, now); v.Code != CodeInvalidToken {
		t.Fatalf("oldest job: %+v", v)
	}
}
