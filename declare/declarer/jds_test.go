package declarer

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/declare"
	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/mempool"
	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/templates"
)

// jdsEnv is sv2kit's real JDS (package declare) in front of a real btcd in
// regtest, with a mempool store the test fills.
type jdsEnv struct {
	n      *regtest.Node
	rpc    *node.Client
	store  *mempool.Store
	pub    [32]byte
	addr   string
	payout []byte
}

func startJDS(t testing.TB, ctx context.Context, n *regtest.Node, mod func(*declare.Config)) *jdsEnv {
	t.Helper()
	rpc, err := node.NewClient(node.Config{URL: "http://" + n.RPCAddr(), User: n.RPCUser(), Password: n.RPCPass(),
		Network: "regtest", Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rpc.Close)
	auth, err := noise.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	payout := append([]byte{0x00, 0x14}, bytes.Repeat([]byte{0xab}, 20)...) // P2WPKH
	store := mempool.NewStore(0)
	cfg := declare.Config{
		AuthorityKey: auth,
		Policy: declare.Policy{PayoutScript: payout, HalvingInterval: declare.RegtestHalvingInterval,
			AllowFullTemplate: true},
		Node: rpc, Txs: store, BlockDir: t.TempDir(), TipPollInterval: 200 * time.Millisecond,
		Logger: testLogger(t).Named("jds"),
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := declare.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("JDS Serve: %v", err)
		}
	})
	select {
	case <-srv.Ready():
	case <-ctx.Done():
		t.Fatal("JDS not ready")
	}
	return &jdsEnv{n: n, rpc: rpc, store: store, pub: noise.PublicKey(auth), addr: ln.Addr().String(), payout: payout}
}

// template asks the node for a block template and turns it into what a TP
// sends: NewTemplate and RequestTransactionData.Success.
func (e *jdsEnv) template(t testing.TB, ctx context.Context, id uint64, reserve int) (*templates.Template, *messages.NewTemplate, *messages.RequestTransactionDataSuccess) {
	t.Helper()
	gbt, err := e.rpc.GetBlockTemplate(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	src := &templates.Source{Height: gbt.Height, PrevHash: gbt.PreviousBlockHash, Version: uint32(gbt.Version),
		Bits: gbt.Bits, Target: gbt.TargetLE(), CurTime: uint32(gbt.CurTime), MinTime: uint32(gbt.MinTime),
		CoinbaseValue: gbt.CoinbaseValue, WitnessCommitment: gbt.DefaultWitnessCommitment}
	for i, tx := range gbt.Transactions {
		var deps []int
		for _, d := range tx.Depends {
			deps = append(deps, d-1)
		}
		_ = i
		src.Txs = append(src.Txs, templates.Tx{Data: tx.Data, TxID: tx.TxID, WTxID: tx.WTxID, Fee: tx.Fee,
			SigOps: tx.SigOps, Weight: tx.Weight, Depends: deps})
	}
	tmpl, err := templates.Build(src, templates.Reservation{OutputBytes: uint32(reserve)})
	if err != nil {
		t.Fatal(err)
	}
	nt := &messages.NewTemplate{TemplateID: id, Version: tmpl.Version, CoinbaseTxVersion: tmpl.CoinbaseVersion,
		CoinbasePrefix: tmpl.CoinbasePrefix, CoinbaseTxInputSequence: tmpl.CoinbaseSequence,
		CoinbaseTxValueRemaining: uint64(tmpl.ValueRemaining), CoinbaseTxOutputsCount: tmpl.OutputCount,
		CoinbaseTxOutputs: tmpl.Outputs, CoinbaseTxLocktime: tmpl.CoinbaseLockTime, MerklePath: tmpl.MerklePath}
	data := &messages.RequestTransactionDataSuccess{TemplateID: id, ExcessData: make([]byte, 32)}
	for _, tx := range tmpl.Txs {
		data.TransactionList = append(data.TransactionList, tx.Data)
	}
	return tmpl, nt, data
}

// coinbase lays out a coinbase the way a JDC would: the template's BIP34
// prefix, a push of the 8-byte extranonce, the pool's outputs (the payout
// funded with pay) and the template's outputs last.
func coinbase(t testing.TB, tmpl *templates.Template, tok *messages.AllocateMiningJobTokenSuccess, pay int64, extra ...templates.TxOutput) *templates.Coinbase {
	t.Helper()
	outs, err := templates.ParseOutputVector(tok.CoinbaseTxOutputs)
	if err != nil || len(outs) == 0 {
		t.Fatalf("token outputs: %v", err)
	}
	outs[0].Value = pay
	outs = append(outs, extra...)
	return &templates.Coinbase{
		Version:         tmpl.CoinbaseVersion,
		ScriptSigPrefix: append(append([]byte{}, tmpl.CoinbasePrefix...), 8),
		ExtranonceSize:  8,
		Sequence:        tmpl.CoinbaseSequence,
		Outputs:         append(templates.SerializeOutputs(outs), tmpl.Outputs...),
		OutputCount:     len(outs) + int(tmpl.OutputCount),
		LockTime:        tmpl.CoinbaseLockTime,
		Witness:         tmpl.HasWitnessCommitment(),
	}
}

// TestAgainstJDS runs the declarer against sv2kit's JDS and a real btcd
// with real signed transactions: a good job, a reused token, an underpaid
// pool, transactions the JDS lacks provided on request, and a CPU-mined
// block pushed with PushSolution and accepted by the node.
func TestAgainstJDS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := regtest.Start(t, regtest.Options{})
	w := n.Wallet()
	if err := w.Fund(ctx, 6); err != nil {
		t.Fatal(err)
	}
	// btcd's template picks up mempool changes only on a new tip (or after
	// 60 s): every transaction goes out before anyone (the JDS's tip
	// watcher included) asks for a template on this tip.
	sent, err := w.SendMany(ctx, 6, 2, 5, 11)
	if err != nil {
		t.Fatal(err)
	}
	e := startJDS(t, ctx, n, nil)
	for _, tx := range sent {
		var b bytes.Buffer
		tx.Serialize(&b)
		if _, err := e.store.Add(b.Bytes()); err != nil {
			t.Fatal(err)
		}
	}

	d, err := Dial(ctx, Config{Addr: e.addr, AuthorityPubKey: &e.pub, UserIdentifier: "farm1", FullTemplate: true,
		Logger: testLogger(t).Named("declarer")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	tok, err := d.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	poolOuts := len(tok.CoinbaseTxOutputs)
	tmpl, nt, data := e.template(t, ctx, 1, poolOuts)
	if len(tmpl.Txs) != len(sent) {
		t.Fatalf("template has %d transactions, sent %d", len(tmpl.Txs), len(sent))
	}
	// The JDS's mirror knows the fees (from the node); the pool output must
	// then carry them too.
	fees := map[chainhash.Hash]int64{}
	for _, tx := range tmpl.Txs {
		fees[tx.TxID] = tx.Fee
	}
	if n := e.store.SetFees(fees); n != len(fees) {
		t.Fatalf("fees set for %d of %d transactions", n, len(fees))
	}
	declareWith := func(tok *messages.AllocateMiningJobTokenSuccess, cb *templates.Coinbase) (*messages.DeclareMiningJobSuccess, error) {
		prefix, suffix := cb.Parts(true)
		job, err := NewJob(tok.MiningJobToken, nt, data, prefix, suffix)
		if err != nil {
			t.Fatal(err)
		}
		return d.Declare(ctx, job)
	}

	t.Run("coinbase-only refused", func(t *testing.T) {
		_, err := Dial(ctx, Config{Addr: e.addr, AuthorityPubKey: &e.pub, UserIdentifier: "farm1"})
		var se *SetupError
		if !errors.As(err, &se) {
			t.Fatalf("err = %v, want *SetupError", err)
		}
		t.Logf("refused: %v", err)
	})
	t.Run("good job", func(t *testing.T) {
		ok, err := declareWith(tok, coinbase(t, tmpl, tok, tmpl.ValueRemaining))
		if err != nil {
			t.Fatal(err)
		}
		if len(ok.NewMiningJobToken) == 0 {
			t.Error("no new token")
		}
		if st := d.Stats(); st.Accepted != 1 || st.MissingRounds != 0 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("reused token", func(t *testing.T) {
		_, err := declareWith(tok, coinbase(t, tmpl, tok, tmpl.ValueRemaining))
		var de *DeclareError
		if !errors.As(err, &de) || de.Code != declare.CodeInvalidToken {
			t.Fatalf("err = %v, want %s", err, declare.CodeInvalidToken)
		}
		t.Logf("rejected: %v", err)
	})
	t.Run("pool underpaid", func(t *testing.T) {
		tok, err := d.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cb := coinbase(t, tmpl, tok, tmpl.ValueRemaining-100_000, templates.TxOutput{Value: 100_000, PkScript: w.PkScript()})
		_, err = declareWith(tok, cb)
		var de *DeclareError
		if !errors.As(err, &de) || de.Code != declare.CodePayoutUnderpaid {
			t.Fatalf("err = %v, want %s", err, declare.CodePayoutUnderpaid)
		}
		t.Logf("rejected: %v", err)
	})

	// The JDS's mirror lacks two of the transactions: it asks for them.
	var last *templates.Coinbase
	t.Run("missing transactions provided", func(t *testing.T) {
		for _, tx := range sent[1:3] {
			if !e.store.Remove(tx.TxHash()) {
				t.Fatalf("%s not in the store", tx.TxHash())
			}
		}
		tok, err := d.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before := d.Stats()
		last = coinbase(t, tmpl, tok, tmpl.ValueRemaining)
		if _, err := declareWith(tok, last); err != nil {
			t.Fatal(err)
		}
		st := d.Stats()
		if st.MissingRounds-before.MissingRounds != 1 || st.MissingTxs-before.MissingTxs != 2 {
			t.Errorf("stats %+v", st)
		}
	})
	if last == nil {
		t.Fatal("no declared job to mine on")
	}

	t.Run("push solution", func(t *testing.T) {
		extranonce := []byte{1, 2, 3, 4, 5, 6, 7, 8}
		txid := templates.DoubleSHA256(last.Bytes(extranonce, false))
		h := templates.Header{Version: tmpl.Version, PrevHash: tmpl.PrevHash, MerkleRoot: templates.MerkleRoot(txid, tmpl.MerklePath),
			Time: tmpl.Timestamp, Bits: tmpl.Bits}
		target := templates.TargetFromBits(tmpl.Bits)
		for ; ; h.Nonce++ {
			hash := h.Hash()
			if templates.MeetsTarget(&hash, &target) {
				break
			}
		}
		want := chainhash.Hash(h.Hash())
		err := d.PushSolution(ctx, &messages.PushSolution{Extranonce: extranonce, PrevHash: h.PrevHash, Nonce: h.Nonce,
			NTime: h.Time, NBits: h.Bits, Version: h.Version})
		if err != nil {
			t.Fatal(err)
		}
		for {
			best, err := e.rpc.GetBestBlockHash(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if best == want {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("block %s not accepted; tip %s", want, best)
			case <-time.After(50 * time.Millisecond):
			}
		}
		blk, err := e.rpc.GetBlock(ctx, want)
		if err != nil {
			t.Fatal(err)
		}
		if len(blk.Transactions) != 1+len(sent) {
			t.Errorf("block has %d transactions", len(blk.Transactions))
		}
		in := map[chainhash.Hash]bool{}
		for _, tx := range blk.Transactions {
			in[tx.TxHash()] = true
		}
		for _, tx := range sent {
			if !in[tx.TxHash()] {
				t.Errorf("%s not in the block", tx.TxHash())
			}
		}
		if blk.Transactions[0].TxOut[0].Value != tmpl.ValueRemaining || !bytes.Equal(blk.Transactions[0].TxOut[0].PkScript, e.payout) {
			t.Errorf("coinbase pays %d to %x", blk.Transactions[0].TxOut[0].Value, blk.Transactions[0].TxOut[0].PkScript)
		}
	})
}

// BenchmarkDeclare4000RealJDS declares a 4,000-transaction job (real signed
// transactions) to sv2kit's JDS in front of a real btcd, end to end: token,
// DeclareMiningJob, the JDS's checks, the node's proposal check (btcd
// validates the whole block), DeclareMiningJob.Success. "AllMissing": the
// JDS's mirror is empty and every transaction is uploaded first.
func BenchmarkDeclare4000RealJDS(b *testing.B) {
	for _, known := range []bool{true, false} {
		name := "AllKnown"
		if !known {
			name = "AllMissing"
		}
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			n := regtest.Start(b, regtest.Options{})
			sent, err := n.Wallet().SendMany(ctx, 4000, 2, 5, 11)
			if err != nil {
				b.Fatal(err)
			}
			e := startJDS(b, ctx, n, func(c *declare.Config) {
				c.Logger = hclog.NewNullLogger()
				c.Policy.TokenBurst, c.Policy.TokenRate = 1<<20, 1<<20 // the benchmark allocates fast
			})
			if known {
				for _, tx := range sent {
					var buf bytes.Buffer
					tx.Serialize(&buf)
					if _, err := e.store.Add(buf.Bytes()); err != nil {
						b.Fatal(err)
					}
				}
			}
			d, err := Dial(ctx, Config{Addr: e.addr, AuthorityPubKey: &e.pub, UserIdentifier: "bench", FullTemplate: true,
				Timeout: time.Minute, Logger: hclog.NewNullLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			tok, err := d.Token(ctx)
			if err != nil {
				b.Fatal(err)
			}
			tmpl, nt, data := e.template(b, ctx, 1, len(tok.CoinbaseTxOutputs))
			if len(tmpl.Txs) != len(sent) {
				b.Fatalf("template has %d of %d transactions", len(tmpl.Txs), len(sent))
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i > 0 {
					if tok, err = d.Token(ctx); err != nil {
						b.Fatal(err)
					}
				}
				prefix, suffix := coinbase(b, tmpl, tok, tmpl.ValueRemaining).Parts(true)
				job, err := NewJob(tok.MiningJobToken, nt, data, prefix, suffix)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := d.Declare(ctx, job); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			st := d.Stats()
			b.ReportMetric(float64(st.MissingTxs)/float64(b.N), "missing/op")
		})
	}
}
