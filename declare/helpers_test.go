package declare

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/mempool"
	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/templates"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(b, "\n"))
	return len(b), nil
}

func testLogger(t testing.TB, level hclog.Level) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Level: level, Output: testWriter{t}})
}

// poolScript is the test pool's payout script (P2WPKH of a fixed hash).
var poolScript = append([]byte{0x00, 0x14}, bytes.Repeat([]byte{0x5a}, 20)...)

// env is a btcd regtest node with a mempool mirror, shared by JDS servers.
type env struct {
	t      testing.TB
	n      *regtest.Node
	c      *node.Client
	w      *regtest.Wallet
	mirror *mempool.Mirror
	ctx    context.Context
}

func newEnv(t testing.TB) *env {
	t.Helper()
	n := regtest.Start(t, regtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	c, err := node.NewClient(node.Config{URL: "http://" + n.RPCAddr(), User: n.RPCUser(), Password: n.RPCPass(),
		Network: "regtest", Timeout: 20 * time.Second, Logger: testLogger(t, hclog.Error)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	m, err := mempool.New(mempool.Config{PollInterval: 100 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		Logger: testLogger(t, hclog.Warn)}, c)
	if err != nil {
		t.Fatal(err)
	}
	mctx, mcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(mctx) }()
	t.Cleanup(func() { mcancel(); <-done })
	select {
	case <-m.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("mirror did not sync")
	}
	return &env{t: t, n: n, c: c, w: n.Wallet(), mirror: m, ctx: ctx}
}

// hidingSource hides some wtxids from the mirror, as a lagging mirror would.
type hidingSource struct {
	TxSource
	mu     sync.Mutex
	hidden map[[32]byte]bool
}

func (h *hidingSource) hide(w [32]byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hidden[w] = true
}

func (h *hidingSource) LookupWTxIDsFees(wtxids [][32]byte) ([][]byte, []int64, []int) {
	found, fees, missing := h.TxSource.LookupWTxIDsFees(wtxids)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.hidden) == 0 {
		return found, fees, missing
	}
	missing = missing[:0:0]
	for i, w := range wtxids {
		if h.hidden[w] {
			found[i] = nil
		}
		if found[i] == nil {
			missing = append(missing, i)
		}
	}
	return found, fees, missing
}

// jds is a running Server.
type jds struct {
	s      *Server
	addr   string
	pub    [32]byte
	src    *hidingSource
	dir    string
	cancel context.CancelFunc
}

func (e *env) startJDS(mut func(*Config)) *jds {
	t := e.t
	t.Helper()
	key, err := noise.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	src := &hidingSource{TxSource: e.mirror.Store(), hidden: map[[32]byte]bool{}}
	cfg := Config{
		AuthorityKey: key,
		Policy: Policy{PayoutScript: poolScript, HalvingInterval: RegtestHalvingInterval,
			AllowFullTemplate: true, AllowCoinbaseOnly: true, RequireSameUser: true},
		Node: e.c, Txs: src, BlockDir: t.TempDir(), TipPollInterval: 200 * time.Millisecond,
		Logger: testLogger(t, hclog.Info),
	}
	if mut != nil {
		mut(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Serve did not stop")
		}
	})
	select {
	case <-s.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("JDS not ready")
	}
	return &jds{s: s, addr: ln.Addr().String(), pub: noise.PublicKey(key), src: src, dir: cfg.BlockDir, cancel: cancel}
}

// waitTip waits until the server's chain tip is the node's.
func (e *env) waitTip(j *jds) {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		best, err := e.c.GetBestBlockHash(e.ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		if ch, ok := j.s.Core().Chain(); ok && ch.TipHash == best {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatal("JDS did not follow the tip")
}

// jdp is a small test-side JDC: Noise initiator, SetupConnection, requests.
type jdp struct {
	t   testing.TB
	c   *noise.Conn
	txs map[[32]byte][]byte // what it answers ProvideMissingTransactions with
}

func dialJDP(t testing.TB, j *jds, flags uint32) *jdp {
	t.Helper()
	pub := j.pub
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := noise.Dial(ctx, "tcp", j.addr, &noise.Config{AuthorityPubKey: &pub})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := &jdp{t: t, c: c, txs: map[[32]byte][]byte{}}
	p.send(&messages.SetupConnection{Protocol: messages.ProtocolJobDeclaration, MinVersion: 2, MaxVersion: 2, Flags: flags,
		EndpointHost: "127.0.0.1", Vendor: "sv2kit-test"})
	m := p.read()
	if _, ok := m.(*messages.SetupConnectionSuccess); !ok {
		t.Fatalf("setup answered %#v", m)
	}
	return p
}

func (p *jdp) send(m codec.Message) {
	p.t.Helper()
	if err := p.c.WriteMessage(m, codec.Options{}); err != nil {
		p.t.Fatal(err)
	}
}

func (p *jdp) read() codec.Message {
	p.t.Helper()
	_ = p.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	m, _, err := messages.Read(p.c, codec.Options{})
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	return m
}

var reqID uint32

func (p *jdp) allocate(user string) *messages.AllocateMiningJobTokenSuccess {
	p.t.Helper()
	reqID++
	p.send(&messages.AllocateMiningJobToken{UserIdentifier: user, RequestID: reqID})
	r, ok := p.read().(*messages.AllocateMiningJobTokenSuccess)
	if !ok || r.RequestID != reqID {
		p.t.Fatalf("allocate: %#v", r)
	}
	return r
}

// declare sends a job and answers ProvideMissingTransactions from p.txs;
// it returns the new token or the error, and how many were asked for.
func (p *jdp) declare(token []byte, j *testJob) (*messages.DeclareMiningJobSuccess, *messages.DeclareMiningJobError, int) {
	p.t.Helper()
	reqID++
	req := reqID
	p.send(&messages.DeclareMiningJob{RequestID: req, MiningJobToken: token, Version: j.version,
		CoinbaseTxPrefix: j.prefix, CoinbaseTxSuffix: j.suffix, WtxidList: j.wtxids})
	asked := 0
	for {
		switch m := p.read().(type) {
		case *messages.DeclareMiningJobSuccess:
			return m, nil, asked
		case *messages.DeclareMiningJobError:
			return nil, m, asked
		case *messages.ProvideMissingTransactions:
			if m.RequestID != req {
				p.t.Fatalf("ProvideMissingTransactions for request %d, want %d", m.RequestID, req)
			}
			var list [][]byte
			for _, pos := range m.UnknownTxPositionList {
				list = append(list, j.txs[pos])
			}
			asked += len(list)
			p.send(&messages.ProvideMissingTransactionsSuccess{RequestID: req, TransactionList: list})
		default:
			p.t.Fatalf("unexpected %T", m)
		}
	}
}

// testJob is a declared job built the way a JDC builds one.
type testJob struct {
	version   uint32
	prevHash  [32]byte
	bits      uint32
	minTime   uint32
	height    int64
	cb        templates.Coinbase
	prefix    []byte
	suffix    []byte
	txs       [][]byte
	wtxids    [][32]byte
	txids     [][32]byte
	outputVec []byte
}

type jobOpts struct {
	heightDelta int64 // added to tip+1
	payout      int64 // added to the payout value
	noPayout    bool
	other       int64 // a second output paying someone else
}

func serialize(t testing.TB, tx *wire.MsgTx) []byte {
	var b bytes.Buffer
	if err := tx.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// buildJob makes a job on the node's tip holding txs (in order).
func (e *env) buildJob(txs []*wire.MsgTx, o jobOpts) *testJob {
	t := e.t
	t.Helper()
	tmpl, err := e.c.GetBlockTemplate(e.ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	fees, err := e.c.GetRawMempoolVerbose(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	j := &testJob{version: 0x20000000, prevHash: tmpl.PreviousBlockHash, bits: tmpl.Bits,
		minTime: uint32(max(tmpl.CurTime, tmpl.MinTime)), height: tmpl.Height + o.heightDelta}
	var total int64
	for _, tx := range txs {
		raw := serialize(t, tx)
		j.txs = append(j.txs, raw)
		j.txids = append(j.txids, tx.TxHash())
		j.wtxids = append(j.wtxids, tx.WitnessHash())
		total += fees[tx.TxHash()].Fee
	}
	value := templates.Subsidy(j.height, RegtestHalvingInterval) + total + o.payout - o.other
	var outs []templates.TxOutput
	script := poolScript
	if o.noPayout {
		script = e.w.PkScript()
	}
	outs = append(outs, templates.TxOutput{Value: value, PkScript: script})
	if o.other > 0 {
		outs = append(outs, templates.TxOutput{Value: o.other, PkScript: e.w.PkScript()})
	}
	outs = append(outs, templates.TxOutput{Value: 0, PkScript: templates.WitnessCommitmentScript(templates.WitnessCommitment(j.wtxids))})
	j.cb = templates.Coinbase{Version: 2, ScriptSigPrefix: append(templates.HeightScript(j.height), 0x08), ExtranonceSize: 8,
		Sequence: 0xffffffff, Outputs: templates.SerializeOutputs(outs), OutputCount: len(outs), Witness: true}
	j.prefix, j.suffix = j.cb.Parts(true)
	j.outputVec = templates.SerializeOutputVector(outs)
	return j
}

// mine finds a nonce for the job with an extranonce (regtest targets are
// met by every second hash).
func (j *testJob) mine(extranonce []byte) (templates.Header, [32]byte) {
	cbTx := j.cb.Bytes(extranonce, false)
	root := templates.MerkleRoot(templates.DoubleSHA256(cbTx), templates.MerklePath(j.txids))
	h := templates.Header{Version: j.version, PrevHash: j.prevHash, MerkleRoot: root, Time: j.minTime, Bits: j.bits}
	target := templates.TargetFromBits(j.bits)
	for n := uint32(0); ; n++ {
		h.Nonce = n
		hash := h.Hash()
		if templates.MeetsTarget(&hash, &target) {
			return h, hash
		}
	}
}

// customJob is the SetCustomMiningJob a JDC would send for j.
func (j *testJob) customJob(token []byte) *messages.SetCustomMiningJob {
	return &messages.SetCustomMiningJob{ChannelID: 1, RequestID: 1, MiningJobToken: token, Version: j.version,
		PrevHash: j.prevHash, MinNTime: j.minTime, NBits: j.bits, CoinbaseTxVersion: 2, CoinbasePrefix: j.cb.ScriptSigPrefix,
		CoinbaseTxInputNSequence: 0xffffffff, CoinbaseTxOutputs: j.outputVec, CoinbaseTxLocktime: 0,
		MerklePath: templates.MerklePath(j.txids)}
}

// waitMirror waits until the mirror holds txs.
func (e *env) waitMirror(txs ...*wire.MsgTx) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		all := true
		for _, tx := range txs {
			if !e.mirror.Store().Has(tx.TxHash()) {
				all = false
			}
		}
		if all {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatal("transactions did not reach the mirror")
}

// waitBest waits until the node's tip is hash.
func (e *env) waitBest(hash [32]byte) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		best, err := e.c.GetBestBlockHash(e.ctx)
		if err == nil && best == chainhash.Hash(hash) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("block did not become the tip")
}

// bogusSpend is a signed-looking segwit tx spending an output that does not
// exist.
func bogusSpend(t testing.TB, to []byte) *wire.MsgTx {
	tx := wire.NewMsgTx(2)
	in := wire.NewTxIn(&wire.OutPoint{Hash: chainhash.Hash{1, 2, 3, 4}, Index: 7}, nil, nil)
	key, _ := btcec.NewPrivateKey()
	in.Witness = wire.TxWitness{bytes.Repeat([]byte{0x30}, 71), key.PubKey().SerializeCompressed()}
	tx.AddTxIn(in)
	tx.AddTxOut(wire.NewTxOut(50_000, to))
	return tx
}

func codeOf(e *messages.DeclareMiningJobError) string {
	if e == nil {
		return "<success>"
	}
	return fmt.Sprintf("%s (%s)", e.ErrorCode, e.ErrorDetails)
}

var codecOpts = codec.Options{}

func dialRaw(t testing.TB, addr string, pub *[32]byte) *noise.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := noise.Dial(ctx, "tcp", addr, &noise.Config{AuthorityPubKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return c
}
