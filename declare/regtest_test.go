package declare

import (
	"bytes"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/internal/zmqtest"
	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
)

// TestJDSRegtest drives a JDS over real TCP and Noise against a real btcd
// with real signed transactions: every declaration outcome, PushSolution,
// and the pool API over HTTP with a block hand-over.
func TestJDSRegtest(t *testing.T) {
	e := newEnv(t)
	if err := e.w.Fund(e.ctx, 40); err != nil {
		t.Fatal(err)
	}
	j := e.startJDS(nil)
	e.waitTip(j)

	send := func(n int) []*wire.MsgTx {
		t.Helper()
		var txs []*wire.MsgTx
		for i := 0; i < n; i++ {
			tx, err := e.w.Send(e.ctx, regtest.SendOpts{Outputs: 2})
			if err != nil {
				t.Fatal(err)
			}
			txs = append(txs, tx)
		}
		e.waitMirror(txs...)
		return txs
	}
	txs := send(3)
	c := dialJDP(t, j, messages.FlagDeclareTxData)

	var goodToken []byte
	var goodJob *testJob
	t.Run("good job accepted", func(t *testing.T) {
		tok := c.allocate("alice")
		if !bytes.Equal(tok.CoinbaseTxOutputs, append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(poolScript))}, poolScript...)) {
			t.Fatalf("coinbase_tx_outputs %x", tok.CoinbaseTxOutputs)
		}
		goodJob = e.buildJob(txs, jobOpts{})
		ok, bad, asked := c.declare(tok.MiningJobToken, goodJob)
		if ok == nil || asked != 0 {
			t.Fatalf("declaration: %s, asked for %d", codeOf(bad), asked)
		}
		goodToken = ok.NewMiningJobToken
		// The spent token cannot be used again.
		_, bad, _ = c.declare(tok.MiningJobToken, goodJob)
		if bad == nil || bad.ErrorCode != CodeInvalidToken || !strings.Contains(string(bad.ErrorDetails), "already used") {
			t.Fatalf("reused token: %s", codeOf(bad))
		}
	})

	reject := func(t *testing.T, job *testJob, code, detail string) {
		t.Helper()
		tok := c.allocate("alice")
		_, bad, _ := c.declare(tok.MiningJobToken, job)
		if bad == nil || bad.ErrorCode != code || !strings.Contains(string(bad.ErrorDetails), detail) {
			t.Fatalf("want %s containing %q, got %s", code, detail, codeOf(bad))
		}
		t.Logf("%s: %s", bad.ErrorCode, bad.ErrorDetails)
	}

	t.Run("unknown token", func(t *testing.T) {
		_, bad, _ := c.declare([]byte("no such token"), goodJob)
		if bad == nil || bad.ErrorCode != CodeInvalidToken {
			t.Fatalf("%s", codeOf(bad))
		}
	})
	t.Run("declared token cannot declare", func(t *testing.T) {
		_, bad, _ := c.declare(goodToken, goodJob)
		if bad == nil || bad.ErrorCode != CodeInvalidToken {
			t.Fatalf("%s", codeOf(bad))
		}
	})
	t.Run("missing transactions provided", func(t *testing.T) {
		more := send(2)
		j.src.hide(more[1].WitnessHash())
		job := e.buildJob(append(append([]*wire.MsgTx{}, txs...), more...), jobOpts{})
		tok := c.allocate("alice")
		ok, bad, asked := c.declare(tok.MiningJobToken, job)
		if ok == nil || asked != 1 {
			t.Fatalf("declaration: %s, asked for %d", codeOf(bad), asked)
		}
	})
	t.Run("provided transaction does not match", func(t *testing.T) {
		more := send(1)
		j.src.hide(more[0].WitnessHash())
		job := e.buildJob(more, jobOpts{})
		job.txs[0] = serialize(t, txs[0])
		reject(t, job, CodeMissingTxs, "has wtxid")
	})
	t.Run("pool output missing", func(t *testing.T) {
		reject(t, e.buildJob(txs, jobOpts{noPayout: true}), CodePayoutMissing, "payout script")
	})
	t.Run("pool output underpaid", func(t *testing.T) {
		reject(t, e.buildJob(txs, jobOpts{other: 5000}), CodePayoutUnderpaid, "requires at least")
	})
	t.Run("duplicates", func(t *testing.T) {
		reject(t, e.buildJob([]*wire.MsgTx{txs[0], txs[1], txs[0]}, jobOpts{}), CodeDuplicateTx, "positions 0 and 2")
	})
	t.Run("double spend", func(t *testing.T) {
		ds, err := e.w.DoubleSpend(e.ctx, txs[1])
		if err != nil {
			t.Fatal(err)
		}
		reject(t, e.buildJob([]*wire.MsgTx{txs[0], txs[1], ds}, jobOpts{}), CodeDoubleSpend, "which transaction 1")
	})
	t.Run("spend of an output that does not exist", func(t *testing.T) {
		reject(t, e.buildJob([]*wire.MsgTx{txs[0], bogusSpend(t, e.w.PkScript())}, jobOpts{}), CodeInvalidJob, "rejected the block")
	})
	t.Run("wrong height", func(t *testing.T) {
		reject(t, e.buildJob(txs, jobOpts{heightDelta: -1}), CodeStaleChainTip, "older block")
	})
	t.Run("coinbase-only connection cannot declare", func(t *testing.T) {
		co := dialJDP(t, j, 0)
		tok := co.allocate("bob")
		_, bad, _ := co.declare(tok.MiningJobToken, goodJob)
		if bad == nil || bad.ErrorCode != CodeNotAllowed {
			t.Fatalf("%s", codeOf(bad))
		}
		// The pool checks a coinbase-only custom job's coinbase and chain fields.
		cj := goodJob.customJob(co.allocate("bob").MiningJobToken)
		if v := j.s.core.ValidateCustomJob("bob", cj, time.Now()); !v.OK {
			t.Fatalf("coinbase-only custom job: %+v", v)
		}
		under := e.buildJob(txs, jobOpts{other: 500_000_000})
		if v := j.s.core.ValidateCustomJob("bob", under.customJob(cj.MiningJobToken), time.Now()); v.Code != CodePayoutUnderpaid {
			t.Fatalf("coinbase-only underpaid: %+v", v)
		}
	})

	// The pool API over HTTP, with the block hand-over.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	apiDone := make(chan error, 1)
	go func() { apiDone <- j.s.ServeAPI(e.ctx, ln) }()
	api := NewHTTPClient("http://" + ln.Addr().String())
	t.Run("pool API validates custom jobs", func(t *testing.T) {
		cj := goodJob.customJob(goodToken)
		v, err := api.ValidateCustomJob(e.ctx, "alice", cj)
		if err != nil || !v.OK {
			t.Fatalf("good custom job: %+v %v", v, err)
		}
		cases := []struct {
			name string
			mut  func(m *messages.SetCustomMiningJob)
			user string
			code string
		}{
			{"merkle path", func(m *messages.SetCustomMiningJob) { m.MerklePath[0][0] ^= 1 }, "alice", CodeInvalidMerklePath},
			{"prev hash", func(m *messages.SetCustomMiningJob) { m.PrevHash[0] ^= 1 }, "alice", CodeStaleChainTip},
			{"nbits", func(m *messages.SetCustomMiningJob) { m.NBits-- }, "alice", CodeInvalidNBits},
			{"version", func(m *messages.SetCustomMiningJob) { m.Version ^= 1 }, "alice", CodeInvalidVersion},
			{"outputs", func(m *messages.SetCustomMiningJob) {
				m.CoinbaseTxOutputs = goodJob.outputVec[:len(goodJob.outputVec)-1]
			}, "alice", CodeInvalidCoinbaseTxOutputs},
			{"prefix", func(m *messages.SetCustomMiningJob) { m.CoinbasePrefix = []byte{1, 2, 3} }, "alice", CodeInvalidCoinbasePrefix},
			{"sequence", func(m *messages.SetCustomMiningJob) { m.CoinbaseTxInputNSequence = 0 }, "alice", CodeInvalidCoinbaseTxSequence},
			{"locktime", func(m *messages.SetCustomMiningJob) { m.CoinbaseTxLocktime = 9 }, "alice", CodeInvalidCoinbaseTxLocktime},
			{"user", func(m *messages.SetCustomMiningJob) {}, "mallory", CodeUserMismatch},
			{"token", func(m *messages.SetCustomMiningJob) { m.MiningJobToken = []byte{1} }, "alice", CodeInvalidToken},
		}
		for _, tc := range cases {
			m := goodJob.customJob(goodToken)
			tc.mut(m)
			v, err := api.ValidateCustomJob(e.ctx, tc.user, m)
			if err != nil || v.OK || v.Code != tc.code {
				t.Errorf("%s: %+v %v", tc.name, v, err)
			}
		}
	})
	t.Run("pool API block hand-over", func(t *testing.T) {
		// Not a block: a share far above the target (found by trying).
		en := []byte{0xaa, 1, 2, 3, 4, 5, 6, 7}
		h, hash := goodJob.mine(en)
		_, err := api.SubmitBlockShare(e.ctx, "alice", BlockShare{MiningJobToken: goodToken, Version: h.Version, NTime: h.Time, Nonce: h.Nonce, Extranonce: en[:4]})
		var be *BlockError
		if !errors.As(err, &be) || be.Code != CodeBadExtranonceSize {
			t.Fatalf("short extranonce: %v", err)
		}
		res, err := api.SubmitBlockShare(e.ctx, "alice", BlockShare{MiningJobToken: goodToken, Version: h.Version, NTime: h.Time, Nonce: h.Nonce, Extranonce: en})
		if err != nil || !res.Accepted || res.Hash != displayHex(hash) {
			t.Fatalf("block hand-over: %+v %v", res, err)
		}
		if err := e.waitBest(hash); err != nil {
			t.Fatal(err)
		}
		files, _ := os.ReadDir(j.dir)
		if len(files) != 1 {
			t.Fatalf("%d block files", len(files))
		}
		// Handed over again: btcd's duplicate answer counts as accepted
		// and is passed on as btcd gave it (docs/jds.md says so).
		res, err = api.SubmitBlockShare(e.ctx, "alice", BlockShare{MiningJobToken: goodToken, Version: h.Version, NTime: h.Time, Nonce: h.Nonce, Extranonce: en})
		if err != nil || !res.Accepted || !strings.HasPrefix(res.Result, "rejected: already have block ") {
			t.Fatalf("block handed over twice: %+v %v", res, err)
		}
		e.waitTip(j)
		// The job's block is now the tip: a custom job on it is stale.
		if v, _ := api.ValidateCustomJob(e.ctx, "alice", goodJob.customJob(goodToken)); v.Code != CodeStaleChainTip {
			t.Fatalf("after the block: %+v", v)
		}
	})
	t.Run("stale tip under the declaration", func(t *testing.T) {
		fresh := send(2)
		job := e.buildJob(fresh, jobOpts{})
		if _, err := e.n.Generate(e.ctx, 1); err != nil {
			t.Fatal(err)
		}
		e.waitTip(j)
		reject(t, job, CodeStaleChainTip, "older block")
	})
	t.Run("PushSolution accepted by the node", func(t *testing.T) {
		for _, order2025 := range []bool{false, true} {
			fresh := send(2)
			job := e.buildJob(fresh, jobOpts{})
			tok := c.allocate("alice")
			ok, bad, _ := c.declare(tok.MiningJobToken, job)
			if ok == nil {
				t.Fatalf("declaration: %s", codeOf(bad))
			}
			en := []byte{9, 8, 7, 6, 5, 4, 3, 2}
			h, hash := job.mine(en)
			ps := &messages.PushSolution{Extranonce: en, PrevHash: h.PrevHash, Nonce: h.Nonce, NTime: h.Time, NBits: h.Bits, Version: h.Version}
			if order2025 {
				ps.Nonce, ps.NTime = ps.NTime, ps.Nonce
			}
			c.send(ps)
			if err := e.waitBest(hash); err != nil {
				t.Fatalf("2025 order %v: %v", order2025, err)
			}
			e.waitTip(j)
		}
	})

	// A JDS with tight limits: short token lifetime, small blocks.
	tight := e.startJDS(func(c *Config) {
		c.Policy.TokenLifetime = time.Second
		c.Policy.MaxBlockWeight = 4000
	})
	e.waitTip(tight)
	tc := dialJDP(t, tight, messages.FlagDeclareTxData)
	t.Run("expired token", func(t *testing.T) {
		tok := tc.allocate("alice")
		time.Sleep(1100 * time.Millisecond)
		_, bad, _ := tc.declare(tok.MiningJobToken, e.buildJob(send(1), jobOpts{}))
		if bad == nil || bad.ErrorCode != CodeInvalidToken || !strings.Contains(string(bad.ErrorDetails), "expired") {
			t.Fatalf("%s", codeOf(bad))
		}
	})
	t.Run("over-weight", func(t *testing.T) {
		tok := tc.allocate("alice")
		_, bad, _ := tc.declare(tok.MiningJobToken, e.buildJob(send(8), jobOpts{}))
		if bad == nil || bad.ErrorCode != CodeBlockWeight {
			t.Fatalf("%s", codeOf(bad))
		}
		t.Logf("%s", bad.ErrorDetails)
	})
	t.Run("full-template only refuses coinbase-only setup", func(t *testing.T) {
		only := e.startJDS(func(c *Config) { c.Policy.AllowCoinbaseOnly = false })
		pub := only.pub
		conn := dialRaw(t, only.addr, &pub)
		if err := conn.WriteMessage(&messages.SetupConnection{Protocol: 1, MinVersion: 2, MaxVersion: 2}, codecOpts); err != nil {
			t.Fatal(err)
		}
		m, _, err := messages.Read(conn, codecOpts)
		if se, ok := m.(*messages.SetupConnectionError); err != nil || !ok || se.ErrorCode != "unsupported-feature-flags" {
			t.Fatalf("%#v %v", m, err)
		}
	})
}

// TestJDSBounds: connection limits, the setup deadline, malformed frames,
// unexpected messages and the token rate limit each end a connection with
// a reason, without disturbing the others.
func TestJDSBounds(t *testing.T) {
	e := newEnv(t)
	j := e.startJDS(func(c *Config) {
		c.MaxConnsPerIP = 3
		c.SetupTimeout = 300 * time.Millisecond
		c.Policy.TokenBurst, c.Policy.TokenRate = 2, 0.001
	})
	pub := j.pub
	closed := func(t *testing.T, c interface {
		ReadFrame() (codec.Header, []byte, error)
	}) {
		t.Helper()
		if _, _, err := c.ReadFrame(); err == nil {
			t.Fatal("connection still open")
		}
	}
	good := dialJDP(t, j, messages.FlagDeclareTxData)
	// waitConns waits until the server holds n connections.
	waitConns := func(n int) {
		t.Helper()
		for i := 0; i < 100; i++ {
			j.s.mu.Lock()
			k := len(j.s.conns)
			j.s.mu.Unlock()
			if k == n {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("server does not settle at %d connections", n)
	}
	t.Run("setup deadline", func(t *testing.T) {
		c := dialRaw(t, j.addr, &pub)
		start := time.Now()
		closed(t, c)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("closed after %v", d)
		}
	})
	t.Run("per-IP limit", func(t *testing.T) {
		waitConns(1)
		a := dialJDP(t, j, 0)
		b := dialJDP(t, j, 0)
		c := dialRaw(t, j.addr, &pub) // the fourth from 127.0.0.1
		closed(t, c)
		a.c.Close()
		b.c.Close()
		waitConns(1)
	})
	t.Run("wrong protocol", func(t *testing.T) {
		c := dialRaw(t, j.addr, &pub)
		_ = c.WriteMessage(&messages.SetupConnection{Protocol: 2, MinVersion: 2, MaxVersion: 2}, codecOpts)
		m, _, err := messages.Read(c, codecOpts)
		if se, ok := m.(*messages.SetupConnectionError); err != nil || !ok || se.ErrorCode != "unsupported-protocol" {
			t.Fatalf("%#v %v", m, err)
		}
	})
	t.Run("malformed frame", func(t *testing.T) {
		waitConns(1)
		c := dialJDP(t, j, messages.FlagDeclareTxData)
		// A DeclareMiningJob header with a payload that does not decode.
		if err := c.c.WriteFrame(codec.Header{MsgType: messages.TypeDeclareMiningJob}, []byte{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		closed(t, c.c)
	})
	t.Run("unexpected message", func(t *testing.T) {
		waitConns(1)
		c := dialJDP(t, j, messages.FlagDeclareTxData)
		c.send(&messages.SetupConnection{Protocol: 1, MinVersion: 2, MaxVersion: 2})
		closed(t, c.c)
	})
	t.Run("token rate limit", func(t *testing.T) {
		waitConns(1)
		c := dialJDP(t, j, messages.FlagDeclareTxData)
		c.allocate("u")
		c.allocate("u")
		c.send(&messages.AllocateMiningJobToken{UserIdentifier: "u", RequestID: 99})
		closed(t, c.c)
	})
	// The first connection was not disturbed.
	good.allocate("u")
}

// TestJDSZMQTips: with ZMQ configured the JDS follows new tips from
// hashblock notifications (a real libzmq publisher sending Core's frames;
// btcd has none), long before its safety poll.
func TestJDSZMQTips(t *testing.T) {
	e := newEnv(t)
	pub := zmqtest.New(t, "")
	j := e.startJDS(func(c *Config) {
		c.ZMQ = node.ZMQConfig{HashBlock: pub.Endpoint()}
		c.TipPollInterval = time.Hour
	})
	e.waitTip(j)
	// A block the JDS has not heard of (no notification): a declaration
	// on it makes the JDS catch up instead of refusing it.
	if _, err := e.n.Generate(e.ctx, 1); err != nil {
		t.Fatal(err)
	}
	c := dialJDP(t, j, messages.FlagDeclareTxData)
	if ok, bad, _ := c.declare(c.allocate("u").MiningJobToken, e.buildJob(nil, jobOpts{})); ok == nil {
		t.Fatalf("declaration on a block the JDS had not heard of: %s", codeOf(bad))
	}
	hashes, err := e.n.Generate(e.ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The subscription may take a moment to connect: publish until seen.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pub.HashBlock(*hashes[0])
		if ch, _ := j.s.core.Chain(); ch.TipHash == *hashes[0] {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the JDS did not follow the tip from ZMQ")
}

// TestJDSNodeRestart: while the node is down declarations get
// internal-error; once it is back (same chain) they are accepted again.
func TestJDSNodeRestart(t *testing.T) {
	e := newEnv(t)
	j := e.startJDS(nil)
	e.waitTip(j)
	job := e.buildJob(nil, jobOpts{})
	c := dialJDP(t, j, messages.FlagDeclareTxData)
	if err := e.n.Kill(); err != nil {
		t.Fatal(err)
	}
	_, bad, _ := c.declare(c.allocate("u").MiningJobToken, job)
	if bad == nil || bad.ErrorCode != CodeInternal {
		t.Fatalf("node down: %s", codeOf(bad))
	}
	if err := e.n.Restart(e.ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, bad, _ := c.declare(c.allocate("u").MiningJobToken, job)
		if ok != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node back: %s", codeOf(bad))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestJDSValidateCatchUp: a coinbase-only custom job on a block the JDS's
// tip watcher has not reported yet is checked against the node's tip, not
// refused as stale.
func TestJDSValidateCatchUp(t *testing.T) {
	e := newEnv(t)
	pub := zmqtest.New(t, "") // ZMQ configured but silent: no long-poll, no tips
	j := e.startJDS(func(c *Config) {
		c.ZMQ = node.ZMQConfig{HashBlock: pub.Endpoint()}
		c.TipPollInterval = time.Hour
	})
	e.waitTip(j)
	if _, err := e.n.Generate(e.ctx, 1); err != nil {
		t.Fatal(err)
	}
	job := e.buildJob(nil, jobOpts{})
	c := dialJDP(t, j, 0)
	v, err := j.s.ValidateCustomJob(e.ctx, "u", job.customJob(c.allocate("u").MiningJobToken))
	if err != nil || !v.OK {
		t.Fatalf("%+v %v", v, err)
	}
}
