package declare

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/mempool"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// BenchmarkDeclare4000 is the JDS's own work on a 4,000-transaction
// DeclareMiningJob whose transactions are all in the mirror: token,
// coinbase, duplicate and double-spend checks, lookups, parsing for weight
// and sigops, merkle path, block assembly and the bookkeeping of the
// accepted job. The node's proposal check is BenchmarkNodeProposal.
func BenchmarkDeclare4000(b *testing.B) {
	b.Run("warm", func(b *testing.B) { benchDeclare4000(b, true) })
	b.Run("cold", func(b *testing.B) { benchDeclare4000(b, false) })
}

// benchDeclare4000: warm, the transactions were declared before (by any
// connection) and the core remembers their txids, weights and sigops;
// cold, every declaration hashes every transaction.
func benchDeclare4000(b *testing.B, warm bool) {
	store := mempool.NewStore(0)
	var txs []*wire.MsgTx
	for i := uint64(0); i < 4000; i++ {
		tx := synthTx(i, true)
		var buf bytes.Buffer
		_ = tx.Serialize(&buf)
		if _, err := store.Add(buf.Bytes()); err != nil {
			b.Fatal(err)
		}
		txs = append(txs, tx)
	}
	c := offlineCore(b, store, func(p *Policy) { p.TokenRate, p.TokenBurst = 1e9, 1e6 })
	if !warm {
		c.cache.max = 0
	}
	now := time.Unix(1_700_000_000, 0)
	c.Connect(1, true, now)
	m := offlineJob(b, txs, templates.Subsidy(testTip.Height+1, 150), nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok, err := c.Allocate(1, &messages.AllocateMiningJobToken{UserIdentifier: "u"}, now)
		if err != nil {
			b.Fatal(err)
		}
		m.MiningJobToken = tok.MiningJobToken
		st := c.Declare(1, m, now)
		if st.Proposal == nil {
			b.Fatalf("%+v", st.Reply)
		}
		if ok, bad := c.ProposalDone(st.Proposal, "", nil, now); ok == nil {
			b.Fatalf("%+v", bad)
		}
	}
}

// BenchmarkValidateCustomJob is one pool API check of a custom job on a
// declared 4,000-transaction job.
func BenchmarkValidateCustomJob(b *testing.B) {
	store := mempool.NewStore(0)
	var txs []*wire.MsgTx
	for i := uint64(0); i < 4000; i++ {
		tx := synthTx(i, true)
		var buf bytes.Buffer
		_ = tx.Serialize(&buf)
		_, _ = store.Add(buf.Bytes())
		txs = append(txs, tx)
	}
	c := offlineCore(b, store, nil)
	now := time.Unix(1_700_000_000, 0)
	c.Connect(1, true, now)
	m := offlineJob(b, txs, templates.Subsidy(testTip.Height+1, 150), nil)
	tok, _ := c.Allocate(1, &messages.AllocateMiningJobToken{UserIdentifier: "u"}, now)
	m.MiningJobToken = tok.MiningJobToken
	st := c.Declare(1, m, now)
	ok, _ := c.ProposalDone(st.Proposal, "", nil, now)
	cb, _ := parseDeclaredCoinbase(m.CoinbaseTxPrefix, m.CoinbaseTxSuffix)
	var txids [][32]byte
	for _, tx := range txs {
		txids = append(txids, tx.TxHash())
	}
	cj := &messages.SetCustomMiningJob{MiningJobToken: ok.NewMiningJobToken, Version: m.Version, PrevHash: testTip.TipHash,
		MinNTime: testTip.MinTime, NBits: testTip.Bits, CoinbaseTxVersion: 2, CoinbasePrefix: cb.scriptPrefix,
		CoinbaseTxInputNSequence: cb.sequence, CoinbaseTxOutputs: cb.outputVector, MerklePath: templates.MerklePath(txids)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if v := c.ValidateCustomJob("u", cj, now); !v.OK {
			b.Fatalf("%+v", v)
		}
	}
}

// BenchmarkNodeProposal measures the node's getblocktemplate proposal
// check (btcd regtest) of a declared block of real signed transactions,
// and the whole declaration over Noise, as a JDC sees it.
func BenchmarkNodeProposal(b *testing.B) {
	for _, n := range []int{1000, 4000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			e := newEnv(b)
			txs, err := e.w.SendMany(e.ctx, n)
			if err != nil {
				b.Fatal(err)
			}
			e.waitMirror(txs...)
			j := e.startJDS(nil)
			e.waitTip(j)
			job := e.buildJob(txs, jobOpts{})
			c := dialJDP(b, j, messages.FlagDeclareTxData)
			// The proposal alone.
			p := proposalFor(b, j, job)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				reason, err := e.c.ProposeBlock(e.ctx, p)
				if err != nil || reason != "" {
					b.Fatalf("proposal: %q %v", reason, err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/proposal")
			b.StopTimer()
			// One whole declaration over Noise, for the log.
			t0 := time.Now()
			ok, bad, _ := c.declare(c.allocate("u").MiningJobToken, job)
			if ok == nil {
				b.Fatalf("%s", codeOf(bad))
			}
			b.Logf("%d txs: whole declaration over Noise %v", n, time.Since(t0))
		})
	}
}

// proposalFor assembles the block a declaration of job gives.
func proposalFor(b *testing.B, j *jds, job *testJob) []byte {
	c := j.s.core
	c.Connect(1<<40, true, time.Now())
	tok, err := c.Allocate(1<<40, &messages.AllocateMiningJobToken{}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	st := c.Declare(1<<40, &messages.DeclareMiningJob{RequestID: 1, MiningJobToken: tok.MiningJobToken, Version: job.version,
		CoinbaseTxPrefix: job.prefix, CoinbaseTxSuffix: job.suffix, WtxidList: job.wtxids}, time.Now())
	if st.Proposal == nil {
		b.Fatalf("%+v %+v", st.Reply, st.Missing)
	}
	return st.Proposal.Block
}

// BenchmarkConnections holds 1,000 JDC connections over real TCP and Noise,
// each with SetupConnection done and two tokens allocated, and reports the
// heap they take (both ends: the test's clients live in this process too).
func BenchmarkConnections(b *testing.B) {
	e := newEnv(b)
	j := e.startJDS(func(c *Config) { c.MaxConnsPerIP = 5000; c.MaxHandshakes = 64 })
	e.waitTip(j)
	const n = 1000
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		conns := make([]*jdp, 0, n)
		for k := 0; k < n; k++ {
			c := dialJDP(b, j, messages.FlagDeclareTxData)
			c.allocate("u")
			c.allocate("u")
			conns = append(conns, c)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		per := float64(after.HeapInuse-before.HeapInuse) / n
		b.ReportMetric(per, "heap-bytes/conn")
		b.ReportMetric(float64(after.StackInuse-before.StackInuse)/n, "stack-bytes/conn")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/conn")
		if st := j.s.core.Stats(); st.TokensLive != 2*n {
			b.Fatalf("live tokens %d", st.TokensLive)
		}
		for _, c := range conns {
			c.c.Close()
		}
	}
}
