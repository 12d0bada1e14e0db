package tpserver

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"

	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/provider"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/templates"
	"github.com/sv2kit/sv2kit/tpclient"
)

// Environment of the client process the fan-out benchmark starts: its
// clients live in another process so the server's memory per client is
// measured alone.
const (
	envBenchAddr    = "TPBENCH_ADDR"
	envBenchKey     = "TPBENCH_KEY"
	envBenchClients = "TPBENCH_CLIENTS"
)

// TestBenchClients is not a test: it is the client process of
// BenchmarkNewTipFanout (it skips unless started by it). It connects the
// clients, drains what they receive, prints "ready", and exits when its
// stdin closes.
func TestBenchClients(t *testing.T) {
	addr := os.Getenv(envBenchAddr)
	if addr == "" {
		t.Skip("client process of BenchmarkNewTipFanout")
	}
	key, err := noise.ParseAuthorityPublicKey(os.Getenv(envBenchKey))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(os.Getenv(envBenchClients))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	clients := make([]*tpclient.Client, n)
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := tpclient.Dial(ctx, tpclient.Config{Addr: addr, AuthorityPubKey: &key, MaxAdditionalSize: uint32(100 * (i % 4))})
			if err != nil {
				t.Error(err)
				return
			}
			clients[i] = c
			go func() {
				for range c.Events() {
				}
			}()
		}()
	}
	wg.Wait()
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range clients {
		if c != nil {
			_ = c.Close()
		}
	}
}

func heapAndStacks() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// BenchmarkNewTipFanout measures the new-block path of the running
// server: a tip notice (parent and time known) into the event loop →
// fast-path SetNewPrevHash written (Noise-encrypted, into the kernel) to
// every one of 1000 clients connected over loopback TCP from another
// process. It reports p50/p99 of that fan-out and the server's memory per
// connected client (heap + goroutine stacks, after GC).
func BenchmarkNewTipFanout(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, clients int) {
	durs := make(chan time.Duration, 1)
	var (
		qmu    sync.Mutex
		queued []time.Duration
	)
	tp := startTP(b, nil, func(c *Config) {
		c.Provider.MaxClients = clients
		c.MaxClientsPerIP = -1
		c.Logger = nil
		c.tipWritten = func(d time.Duration) { durs <- d }
		c.tipQueued = func(d time.Duration) { qmu.Lock(); queued = append(queued, d); qmu.Unlock() }
	})
	ch := newFakeChain()
	src, ci := ch.source(2000, 300)
	tp.s.templates <- templateEvent{src: src, chain: ci}
	time.Sleep(100 * time.Millisecond)
	before := heapAndStacks()

	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchClients$", "-test.count=1")
	cmd.Env = append(os.Environ(), envBenchAddr+"="+tp.s.Addr().String(),
		envBenchKey+"="+noise.EncodeAuthorityPublicKey(tp.key), envBenchClients+"="+strconv.Itoa(clients))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
			} else {
				fmt.Fprintln(os.Stderr, "clients:", sc.Text())
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			b.Fatal("client process failed")
		}
	case <-time.After(2 * time.Minute):
		b.Fatal("clients not connected within 2 minutes")
	}
	waitUntilTB(b, 30*time.Second, func() bool {
		return tp.metric(b, "tp_clients_ready") == float64(clients)
	})
	time.Sleep(200 * time.Millisecond) // initial templates flushed
	after := heapAndStacks()

	var all []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		notice := ch.mine()
		tp.s.tips <- tipEvent{notice: notice, at: time.Now()}
		select {
		case d := <-durs:
			all = append(all, d)
		case <-time.After(10 * time.Second):
			b.Fatal("fan-out did not complete")
		}
		// The node's template for the new tip: full template plus the next
		// empty one to every client, so the next tip takes the fast path.
		src, ci := ch.source(2000, 300)
		tp.s.templates <- templateEvent{src: src, chain: ci}
		time.Sleep(20 * time.Millisecond) // the template's frames written before the next tip
	}
	b.StopTimer()
	if tp.metric(b, "tp_clients") != float64(clients) {
		b.Fatalf("clients dropped during the benchmark: %v left", tp.metric(b, "tp_clients"))
	}
	b.ReportMetric(float64(after-before)/float64(clients), "B/client")
	slices.Sort(all)
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(all[len(all)-1].Microseconds()), "max-µs")
	// Queued: notice → every SetNewPrevHash encoded and in its writer's
	// queue (what tp controls; the rest is encryption and the kernel).
	waitUntilTB(b, 5*time.Second, func() bool { qmu.Lock(); defer qmu.Unlock(); return len(queued) >= b.N })
	qmu.Lock()
	q := slices.Clone(queued[len(queued)-b.N:])
	qmu.Unlock()
	slices.Sort(q)
	b.ReportMetric(float64(q[len(q)/2].Microseconds()), "queued-p50-µs")
	b.ReportMetric(float64(q[len(q)*99/100].Microseconds()), "queued-p99-µs")
}

func waitUntilTB(b testing.TB, d time.Duration, ok func() bool) {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			b.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nodeTemplate4000 is a getblocktemplate result with 4000 transactions
// (about 1 MB, typical sizes), some with parents in the template.
func nodeTemplate4000(prev chainhash.Hash, height int64) *node.BlockTemplate {
	t := &node.BlockTemplate{
		Version: 0x20000000, PreviousBlockHash: prev, Height: height, Bits: 0x1703a30c,
		Target: templates.TargetToBig(templates.TargetFromBits(0x1703a30c)), CurTime: time.Now().Unix(),
		MinTime: time.Now().Unix() - 3000, CoinbaseValue: 312_500_000, SigOpLimit: 80000, WeightLimit: 4_000_000,
	}
	for i := 0; i < 4000; i++ {
		tx := node.TemplateTx{Data: make([]byte, 250), Fee: int64(500 + i), SigOps: 4, Weight: 900}
		_, _ = rand.Read(tx.TxID[:])
		_, _ = rand.Read(tx.WTxID[:])
		if i%10 == 9 {
			tx.Depends = []int{i} // spends the previous one (1-based index)
		}
		t.CoinbaseValue += tx.Fee
		t.Transactions = append(t.Transactions, tx)
	}
	wtx := make([]node.TemplateTx, len(t.Transactions))
	copy(wtx, t.Transactions)
	t.DefaultWitnessCommitment = node.WitnessCommitmentScript(wtx)
	return t
}

// BenchmarkFullTemplate4000 measures what follows getblocktemplate's
// answer on a new tip with 4000 transactions: conversion to the core's
// source, the core's build for 4 reservation groups of 1000 clients
// (merkle paths, witness commitments, messages), and the encoding of every
// frame to send (each shared message encoded once, as the event loop does).
func BenchmarkFullTemplate4000(b *testing.B) {
	core, err := provider.New(provider.Config{MaxClients: 1000})
	if err != nil {
		b.Fatal(err)
	}
	ch := newFakeChain()
	src, ci := ch.source(10, 300)
	now := time.Now()
	core.NodeTemplate(src, ci, now)
	for i := 1; i <= 1000; i++ {
		id := provider.ClientID(i)
		core.ClientConnected(id, now)
		core.ClientMessage(id, &messages.SetupConnection{Protocol: 2, MinVersion: 2, MaxVersion: 2}, now)
		core.ClientMessage(id, &messages.CoinbaseOutputConstraints{CoinbaseOutputMaxAdditionalSize: uint32(100 * (i % 4))}, now)
	}
	var enc encoder
	enc.init()
	// Two sibling tips, alternated: every template is a tip change, built
	// for every group (the same work as the next block's template).
	var tpls [2]*node.BlockTemplate
	var infos [2]provider.ChainInfo
	for k := range tpls {
		sib := *ch
		sib.times = slices.Clone(ch.times)
		sib.mine()
		tpls[k] = nodeTemplate4000(sib.tip, sib.height+1)
		_, infos[k] = sib.source(0, 0)
	}
	var durs []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tpl, info := tpls[i%2], infos[i%2]
		start := time.Now()
		s, err := ConvertTemplate(tpl)
		if err != nil {
			b.Fatal(err)
		}
		a := core.NodeTemplate(s, info, time.Now())
		frames := 0
		for _, o := range a.Send {
			if _, err := enc.frame(o.Msg); err != nil {
				b.Fatal(err)
			}
			frames++
		}
		durs = append(durs, time.Since(start))
		if frames < 1000 {
			b.Fatalf("%d frames", frames)
		}
	}
	b.StopTimer()
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(durs[len(durs)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkNewTipQueue1000 is the part of the new-block path tp controls,
// without sockets: a tip notice → the core's fast path → one encoding of
// SetNewPrevHash → a frame in each of 1000 clients' writer queues. (The
// writers then encrypt and write; BenchmarkNewTipFanout measures it all.)
func BenchmarkNewTipQueue1000(b *testing.B) {
	const clients = 1000
	s := &Server{m: newMetrics(nil), log: nil}
	var err error
	if s.core, err = provider.New(provider.Config{MaxClients: clients, HalvingInterval: 150, NoRetargeting: true}); err != nil {
		b.Fatal(err)
	}
	s.cfg = Config{}.withDefaults()
	s.log = s.cfg.Logger
	s.fetchReq = make(chan struct{}, 1)
	st := &loopState{clients: make(map[provider.ClientID]*clientConn), closing: make(map[provider.ClientID]*clientConn)}
	st.enc.init()
	ch := newFakeChain()
	full, ci := ch.source(2000, 300)
	now := time.Now()
	s.core.NodeTemplate(full, ci, now)
	conns := make([]*clientConn, clients)
	for i := range conns {
		id := provider.ClientID(i + 1)
		c := &clientConn{id: id, queue: make(chan outFrame, DefaultSendQueue), stop: make(chan struct{})}
		conns[i] = c
		st.clients[id] = c
		s.core.ClientConnected(id, now)
		s.core.ClientMessage(id, &messages.SetupConnection{Protocol: 2, MinVersion: 2, MaxVersion: 2}, now)
		s.core.ClientMessage(id, &messages.CoinbaseOutputConstraints{CoinbaseOutputMaxAdditionalSize: uint32(100 * (i % 4))}, now)
	}
	drain := func() {
		for _, c := range conns {
			for len(c.queue) > 0 {
				<-c.queue
			}
		}
	}
	var durs []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		drain()
		notice := ch.mine()
		start := time.Now()
		a := s.core.NewTip(notice, start)
		fan := s.newFanout(start, "fast")
		s.apply(st, a, fan)
		durs = append(durs, time.Since(start))
		if len(a.Send) != clients {
			b.Fatalf("%d SetNewPrevHash", len(a.Send))
		}
		src := *full
		src.Height, src.PrevHash = ch.height+1, ch.tip
		_, ci := ch.source(0, 0)
		s.apply(st, s.core.NodeTemplate(&src, ci, time.Now()), nil)
	}
	b.StopTimer()
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(durs[len(durs)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkHeaderRPCBtcd is the one node call on the new-tip path before
// the fast path can run: getblockheader of the new block (its parent and
// time), against a real btcd on loopback.
func BenchmarkHeaderRPCBtcd(b *testing.B) {
	n := regtest.Start(b, regtest.Options{})
	c, err := node.NewClient(node.Config{URL: "http://" + n.RPCAddr(), User: n.RPCUser(), Password: n.RPCPass(), Network: "regtest"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	best, err := c.GetBestBlockHash(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var durs []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := c.GetBlockHeader(ctx, best); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(durs[len(durs)*99/100].Microseconds()), "p99-µs")
}
