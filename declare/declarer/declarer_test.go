package declarer

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSetupConnection(t *testing.T) {
	for _, tc := range []struct {
		name      string
		full      bool
		wantFlags uint32
	}{
		{"full template", true, messages.FlagDeclareTxData},
		{"coinbase only", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, behavior{})
			d := dial(t, f, func(c *Config) { c.FullTemplate = tc.full })
			sc := next[*messages.SetupConnection](t, f)
			if sc.Protocol != messages.ProtocolJobDeclaration || sc.MinVersion != 2 || sc.MaxVersion != 2 || sc.Flags != tc.wantFlags {
				t.Errorf("SetupConnection = %+v", sc)
			}
			if sc.Vendor != DefaultVendor || sc.EndpointHost != "127.0.0.1" || sc.EndpointPort == 0 {
				t.Errorf("endpoint/vendor = %q %d %q", sc.EndpointHost, sc.EndpointPort, sc.Vendor)
			}
			if d.Flags() != tc.wantFlags {
				t.Errorf("Flags = %x", d.Flags())
			}
			if !tc.full {
				if _, err := d.Declare(ctxT(t), testJob([]byte{1}, 1)); !errors.Is(err, ErrCoinbaseOnly) {
					t.Errorf("Declare in coinbase-only mode: %v", err)
				}
				if err := d.PushSolution(ctxT(t), &messages.PushSolution{}); !errors.Is(err, ErrCoinbaseOnly) {
					t.Errorf("PushSolution in coinbase-only mode: %v", err)
				}
				// Tokens still work: coinbase-only uses them for SetCustomMiningJob.
				if _, err := d.Token(ctxT(t)); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestSetupRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		full  bool
		reply codec.Message
		want  string
	}{
		{"full template refused", true, &messages.SetupConnectionError{Flags: 1, ErrorCode: "unsupported-feature-flags"}, `does not accept full-template mode (DECLARE_TX_DATA): set mode = "coinbase-only"`},
		{"full template required", false, &messages.SetupConnectionError{ErrorCode: "missing-declare-tx-data-flag"}, `requires full-template mode: set mode = "full-template"`},
		{"other", true, &messages.SetupConnectionError{ErrorCode: "unsupported-protocol"}, `"unsupported-protocol"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, behavior{setup: func(*messages.SetupConnection) codec.Message { return tc.reply }})
			_, err := Dial(ctxT(t), Config{Addr: f.addr(), AuthorityPubKey: &f.pub, FullTemplate: tc.full, Logger: testLogger(t)})
			var se *SetupError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *SetupError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to mention %q", err, tc.want)
			}
		})
	}
	t.Run("wrong answer", func(t *testing.T) {
		f := startFake(t, behavior{setup: func(*messages.SetupConnection) codec.Message { return &messages.Reconnect{} }})
		if _, err := Dial(ctxT(t), Config{Addr: f.addr(), AuthorityPubKey: &f.pub}); err == nil || !strings.Contains(err.Error(), "Reconnect") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("wrong version", func(t *testing.T) {
		f := startFake(t, behavior{setup: func(*messages.SetupConnection) codec.Message { return &messages.SetupConnectionSuccess{UsedVersion: 3} }})
		if _, err := Dial(ctxT(t), Config{Addr: f.addr(), AuthorityPubKey: &f.pub}); err == nil || !strings.Contains(err.Error(), "version 3") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		block := make(chan struct{})
		defer close(block)
		f := startFake(t, behavior{setup: func(*messages.SetupConnection) codec.Message {
			<-block
			return &messages.SetupConnectionSuccess{UsedVersion: 2}
		}})
		_, err := Dial(ctxT(t), Config{Addr: f.addr(), AuthorityPubKey: &f.pub, Timeout: 300 * time.Millisecond})
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("err = %v, want ErrTimeout", err)
		}
	})
}

func TestAuthority(t *testing.T) {
	f := startFake(t, behavior{})
	other := [32]byte{1}
	if _, err := Dial(ctxT(t), Config{Addr: f.addr(), AuthorityPubKey: &other}); !errors.Is(err, noise.ErrBadCertificate) {
		t.Errorf("wrong authority key: %v", err)
	}
	// nil key: encrypted, not authenticated, works (with a warning).
	d := dial(t, f, func(c *Config) { c.AuthorityPubKey = nil })
	if _, err := d.Token(ctxT(t)); err != nil {
		t.Error(err)
	}
	if _, err := Dial(ctxT(t), Config{Addr: "no-port"}); err == nil {
		t.Error("address without port accepted")
	}
}

func TestTokens(t *testing.T) {
	f := startFake(t, behavior{})
	d := dial(t, f, func(c *Config) { c.SpareTokens = 3 })
	ids := map[uint32]bool{}
	for i := 0; i < 3; i++ {
		a := next[*messages.AllocateMiningJobToken](t, f)
		if a.UserIdentifier != "farm1" || ids[a.RequestID] {
			t.Errorf("allocation %d = %+v", i, a)
		}
		ids[a.RequestID] = true
	}
	seen := map[string]bool{}
	for i := 0; i < 10; i++ {
		tok, err := d.Token(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(tok.MiningJobToken)] {
			t.Fatalf("token %x handed out twice", tok.MiningJobToken)
		}
		seen[string(tok.MiningJobToken)] = true
		if len(tok.CoinbaseTxOutputs) == 0 {
			t.Error("token without coinbase outputs")
		}
	}
	// Each token taken is refilled: 3 ahead + 10 taken.
	for i := 3; i < 13; i++ {
		a := next[*messages.AllocateMiningJobToken](t, f)
		if ids[a.RequestID] {
			t.Errorf("request id %d reused while outstanding", a.RequestID)
		}
		ids[a.RequestID] = true
	}
}

func TestTokenOnDemandAndAge(t *testing.T) {
	f := startFake(t, behavior{})
	d := dial(t, f, func(c *Config) { c.SpareTokens = -1; c.TokenMaxAge = 50 * time.Millisecond })
	tok, err := d.Token(ctxT(t))
	if err != nil || tok == nil {
		t.Fatal(err)
	}
	select {
	case m := <-f.got:
		if _, ok := m.(*messages.SetupConnection); !ok {
			t.Fatalf("got %s", m.MessageName())
		}
	default:
	}
	next[*messages.AllocateMiningJobToken](t, f)
	select {
	case m := <-f.got:
		t.Fatalf("no spare tokens configured, yet the fake got %s", m.MessageName())
	case <-time.After(100 * time.Millisecond):
	}

	// With spares that age out, a fresh token replaces an old one.
	f2 := startFake(t, behavior{})
	d2 := dial(t, f2, func(c *Config) { c.SpareTokens = 1; c.TokenMaxAge = 50 * time.Millisecond })
	first := next[*messages.AllocateMiningJobToken](t, f2)
	time.Sleep(150 * time.Millisecond)
	tok, err = d2.Token(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if tok.RequestID == first.RequestID {
		t.Error("aged spare token handed out")
	}
}

func TestTokenTimeoutFailsConnection(t *testing.T) {
	for _, spare := range []int{2, -1} { // allocated at Dial, or by Token itself
		f := startFake(t, behavior{noTokens: true})
		d := dial(t, f, func(c *Config) { c.Timeout = 200 * time.Millisecond; c.SpareTokens = spare })
		_, err := d.Token(ctxT(t))
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v", err)
		}
		select {
		case <-d.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("spare %d: declarer still running with a JDS that does not hand out tokens", spare)
		}
		if !errors.Is(d.Err(), ErrTimeout) {
			t.Errorf("Err = %v", d.Err())
		}
	}
	// A caller's own short context does not kill the connection.
	f2 := startFake(t, behavior{noTokens: true})
	d2 := dial(t, f2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := d2.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
	if d2.Err() != nil {
		t.Errorf("connection failed: %v", d2.Err())
	}
}

func TestDeclare(t *testing.T) {
	const n = 5
	for _, tc := range []struct {
		name    string
		timeout time.Duration // Config.Timeout; default 5 s
		declare func(p *peer, m *messages.DeclareMiningJob)
		check   func(t *testing.T, ok *messages.DeclareMiningJobSuccess, err error, d *Declarer)
	}{
		{
			name: "accepted",
			declare: func(p *peer, m *messages.DeclareMiningJob) {
				p.send(&messages.DeclareMiningJobSuccess{RequestID: m.RequestID, NewMiningJobToken: []byte("new")})
			},
			check: func(t *testing.T, ok *messages.DeclareMiningJobSuccess, err error, d *Declarer) {
				if err != nil || string(ok.NewMiningJobToken) != "new" {
					t.Errorf("got %v %v", ok, err)
				}
			},
		},
		{
			name: "rejected",
			declare: func(p *peer, m *messages.DeclareMiningJob) {
				p.send(&messages.DeclareMiningJobError{RequestID: m.RequestID, ErrorCode: "invalid-mining-job-token", ErrorDetails: []byte("token 7 already used")})
			},
			check: func(t *testing.T, ok *messages.DeclareMiningJobSuccess, err error, d *Declarer) {
				var de *DeclareError
				if !errors.As(err, &de) || de.Code != "invalid-mining-job-token" || de.Details != "token 7 already used" {
					t.Errorf("got %v %v", ok, err)
				}
				if d.Err() != nil {
					t.Errorf("a rejection ended the connection: %v", d.Err())
				}
			},
		},
		{
			name: "missing transactions provided",
			declare: func(p *peer, m *messages.DeclareMiningJob) {
				pos := []uint16{3, 0}
				p.send(&messages.ProvideMissingTransactions{RequestID: m.RequestID, UnknownTxPositionList: pos})
				r, err := p.read()
				if err != nil {
					p.t.Error(err)
					return
				}
				pm, ok := r.(*messages.ProvideMissingTransactionsSuccess)
				if !ok || pm.RequestID != m.RequestID || len(pm.TransactionList) != len(pos) {
					p.t.Errorf("answer = %v", codec.String(r))
					return
				}
				for k, i := range pos {
					if WTxIDs(pm.TransactionList[k : k+1])[0] != m.WtxidList[i] {
						p.t.Errorf("tx %d does not match wtxid at position %d", k, i)
					}
				}
				p.send(&messages.DeclareMiningJobSuccess{RequestID: m.RequestID, NewMiningJobToken: []byte("new")})
			},
			check: func(t *testing.T, ok *messages.DeclareMiningJobSuccess, err error, d *Declarer) {
				if err != nil || ok == nil {
					t.Errorf("got %v %v", ok, err)
				}
				if st := d.Stats(); st.Declared != 1 || st.Accepted != 1 || st.MissingRounds != 1 || st.MissingTxs != 2 || st.MissingBytes != 14 {
					t.Errorf("stats %+v", st)
				}
			},
		},
		{
			name: "empty missing list",
			declare: func(p *peer, m *messages.DeclareMiningJob) {
				p.send(&messages.ProvideMissingTransactions{RequestID: m.RequestID})
				if r, err := p.read(); err != nil || len(r.(*messages.ProvideMissingTransactionsSuccess).TransactionList) != 0 {
					p.t.Errorf("answer %v %v", r, err)
				}
				p.send(&messages.DeclareMiningJobSuccess{RequestID: m.RequestID})
			},
			check: func(t *testing.T, ok *messages.DeclareMiningJobSuccess, err error, d *Declarer) {
				if err != nil {
					t.Error(err)
				}
			},
		},
		{
			name: "position out of range",
			declare: func(p *peer, m *messages.DeclareMiningJob) {
				p.send(&messages.ProvideMissingTransactions{RequestID: m.RequestID, UnknownTxPositionList: []uint16{n}})
			},
			check: func(t *testing.T, ok *messages.DeclareMiningJobSuccess, err error, d *Declarer) {
				if err == nil || !strings.Contains(err.Error(), "outside") {
					t.Errorf("err = %v", err)
				}
				waitDone(t, d)
			},
		},
		{
			name: "position repeated",
			declare: func(p *peer, m *messages.DeclareMiningJob) {
				p.send(&messages.ProvideMissingTransactions{RequestID: m.RequestID, UnknownTxPositionList: []uint16{1, 2, 1}})
			},
			check: func(t *testing.T, ok *messages.DeclareMiningJobSuccess, err error, d *Declarer) {
				if err == nil || !strings.Contains(err.Error(), "twice") {
					t.Errorf("err = %v", err)
				}
				waitDone(t, d)
			},
		},
		{
			name: "too many rounds",
			declare: func(p *peer, m *messages.DeclareMiningJob) {
				for i := 0; i < DefaultMaxMissingRounds+1; i++ {
					p.send(&messages.ProvideMissingTransactions{RequestID: m.RequestID, UnknownTxPositionList: []uint16{uint16(i)}})
				}
			},
			check: func(t *testing.T, ok *messages.DeclareMiningJobSuccess, err error, d *Declarer) {
				if err == nil || !strings.Contains(err.Error(), "times") {
					t.Errorf("err = %v", err)
				}
			},
		},
		{
			name:    "slow answer",
			timeout: 300 * time.Millisecond,
			declare: func(p *peer, m *messages.DeclareMiningJob) {
				time.Sleep(600 * time.Millisecond)
				p.send(&messages.DeclareMiningJobSuccess{RequestID: m.RequestID}) // late: dropped
			},
			check: func(t *testing.T, ok *messages.DeclareMiningJobSuccess, err error, d *Declarer) {
				if !errors.Is(err, ErrTimeout) {
					t.Errorf("err = %v", err)
				}
				if st := d.Stats(); st.TimedOut != 1 {
					t.Errorf("stats %+v", st)
				}
				// The connection stays usable and the late answer is dropped.
				time.Sleep(600 * time.Millisecond)
				if _, err := d.Token(ctxT(t)); err != nil || d.Err() != nil {
					t.Errorf("after a slow answer: %v %v", err, d.Err())
				}
			},
		},
		{
			name: "connection dropped",
			declare: func(p *peer, m *messages.DeclareMiningJob) {
				p.c.Close()
			},
			check: func(t *testing.T, ok *messages.DeclareMiningJobSuccess, err error, d *Declarer) {
				if err == nil || !strings.Contains(err.Error(), "closed") {
					t.Errorf("err = %v", err)
				}
				waitDone(t, d)
				if err := d.PushSolution(ctxT(t), &messages.PushSolution{}); err == nil {
					t.Error("PushSolution on a dropped connection succeeded")
				}
				if _, err := d.Token(ctxT(t)); err == nil {
					t.Error("Token on a dropped connection succeeded")
				}
			},
		},
		{
			name: "malformed frame",
			declare: func(p *peer, m *messages.DeclareMiningJob) {
				// A DeclareMiningJob.Success cut short: request_id only half there.
				p.c.WriteFrame(codec.Header{MsgType: messages.TypeDeclareMiningJobSuccess}, []byte{1, 2})
			},
			check: func(t *testing.T, ok *messages.DeclareMiningJobSuccess, err error, d *Declarer) {
				if err == nil {
					t.Error("no error")
				}
				waitDone(t, d)
				if !strings.Contains(d.Err().Error(), "malformed") {
					t.Errorf("Err = %v", d.Err())
				}
			},
		},
		{
			name: "unexpected messages ignored",
			declare: func(p *peer, m *messages.DeclareMiningJob) {
				p.send(&messages.NewTemplate{TemplateID: 1})
				p.send(&messages.DeclareMiningJobSuccess{RequestID: m.RequestID + 1000})
				p.send(&messages.AllocateMiningJobTokenSuccess{RequestID: m.RequestID + 1000})
				p.send(&messages.ProvideMissingTransactions{RequestID: m.RequestID + 1000, UnknownTxPositionList: []uint16{0}})
				p.send(&messages.Reconnect{NewHost: "elsewhere"})
				p.c.WriteFrame(codec.Header{ExtensionType: 0x7777, MsgType: 1}, []byte("unknown extension"))
				p.c.WriteFrame(codec.Header{MsgType: 0x52}, []byte("removed message"))
				p.send(&messages.DeclareMiningJobSuccess{RequestID: m.RequestID, NewMiningJobToken: []byte("new")})
			},
			check: func(t *testing.T, ok *messages.DeclareMiningJobSuccess, err error, d *Declarer) {
				if err != nil || string(ok.NewMiningJobToken) != "new" {
					t.Errorf("got %v %v", ok, err)
				}
				// NewTemplate, 0x52, and three answers to unknown requests.
				if st := d.Stats(); st.Unexpected != 5 {
					t.Errorf("stats %+v", st)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, behavior{declare: tc.declare})
			d := dial(t, f, func(c *Config) {
				if tc.timeout != 0 {
					c.Timeout = tc.timeout
				}
			})
			tok, err := d.Token(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			job := testJob(tok.MiningJobToken, n)
			ok, err := d.Declare(ctxT(t), job)
			got := next[*messages.DeclareMiningJob](t, f)
			if !bytes.Equal(got.MiningJobToken, tok.MiningJobToken) || got.Version != job.Version ||
				!bytes.Equal(got.CoinbaseTxPrefix, job.CoinbasePrefix) || !bytes.Equal(got.CoinbaseTxSuffix, job.CoinbaseSuffix) ||
				len(got.WtxidList) != n || got.WtxidList[n-1] != job.WTxIDs[n-1] || !bytes.Equal(got.ExcessData, job.ExcessData) {
				t.Errorf("declared %s", codec.String(got))
			}
			tc.check(t, ok, err, d)
		})
	}
}

func waitDone(t *testing.T, d *Declarer) {
	t.Helper()
	select {
	case <-d.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("declarer did not stop")
	}
	if d.Err() == nil {
		t.Error("stopped without an error")
	}
}

func TestDeclareBadJob(t *testing.T) {
	f := startFake(t, behavior{})
	d := dial(t, f, nil)
	for _, tc := range []struct {
		name string
		mod  func(*Job)
	}{
		{"no token", func(j *Job) { j.Token = nil }},
		{"long token", func(j *Job) { j.Token = make([]byte, 256) }},
		{"txs and wtxids differ", func(j *Job) { j.Txs = j.Txs[1:] }},
		{"huge prefix", func(j *Job) { j.CoinbasePrefix = make([]byte, 1<<16) }},
		{"too many txs", func(j *Job) { j.WTxIDs = make([][32]byte, 1<<16); j.Txs = nil }},
	} {
		j := testJob([]byte{1}, 3)
		tc.mod(&j)
		if _, err := d.Declare(ctxT(t), j); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	// Job without transactions: the JDS must know them all.
	f2 := startFake(t, behavior{declare: func(p *peer, m *messages.DeclareMiningJob) {
		p.send(&messages.ProvideMissingTransactions{RequestID: m.RequestID, UnknownTxPositionList: []uint16{0}})
	}})
	d2 := dial(t, f2, nil)
	j := testJob([]byte{1}, 3)
	j.Txs = nil
	if _, err := d2.Declare(ctxT(t), j); err == nil || !strings.Contains(err.Error(), "carries none") {
		t.Errorf("err = %v", err)
	}
	if d2.Err() != nil {
		t.Errorf("connection ended: %v", d2.Err())
	}
}

func TestConcurrentDeclarations(t *testing.T) {
	// Answers come back in reverse order; each caller gets its own.
	var held []*messages.DeclareMiningJob
	f := startFake(t, behavior{declare: func(p *peer, m *messages.DeclareMiningJob) {
		held = append(held, m)
		if len(held) < 8 {
			return
		}
		for i := len(held) - 1; i >= 0; i-- {
			p.send(&messages.DeclareMiningJobSuccess{RequestID: held[i].RequestID, NewMiningJobToken: held[i].MiningJobToken})
		}
	}})
	d := dial(t, f, nil)
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			tok, err := d.Token(ctxT(t))
			if err != nil {
				errs <- err
				return
			}
			ok, err := d.Declare(ctxT(t), testJob(tok.MiningJobToken, 2))
			if err == nil && !bytes.Equal(ok.NewMiningJobToken, tok.MiningJobToken) {
				err = errors.New("answer of another declaration")
			}
			errs <- err
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestPushSolution(t *testing.T) {
	for _, v2025 := range []bool{false, true} {
		f := startFake(t, behavior{opts: codec.Options{PushSolution2025: v2025}})
		d := dial(t, f, func(c *Config) { c.PushSolution2025 = v2025 })
		s := &messages.PushSolution{Extranonce: []byte{1, 2, 3}, PrevHash: [32]byte{9}, Nonce: 11, NTime: 22, NBits: 33, Version: 44}
		if err := d.PushSolution(ctxT(t), s); err != nil {
			t.Fatal(err)
		}
		got := next[*messages.PushSolution](t, f)
		if d.Stats().Pushed != 1 {
			t.Errorf("stats %+v", d.Stats())
		}
		if codec.String(got) != codec.String(s) {
			t.Errorf("2025=%v: pushed %s, got %s", v2025, codec.String(s), codec.String(got))
		}
		if err := d.PushSolution(ctxT(t), &messages.PushSolution{Extranonce: make([]byte, 33)}); err == nil {
			t.Error("33-byte extranonce accepted")
		}
		d.Close()
		if err := d.PushSolution(ctxT(t), s); !errors.Is(err, ErrClosed) {
			t.Errorf("after Close: %v", err)
		}
	}
}

func TestCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	block := make(chan struct{})
	f := startFake(t, behavior{declare: func(p *peer, m *messages.DeclareMiningJob) { <-block }})
	d := dial(t, f, nil)
	tok, err := d.Token(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 2)
	go func() { _, err := d.Declare(ctxT(t), testJob(tok.MiningJobToken, 2)); res <- err }()
	next[*messages.DeclareMiningJob](t, f)
	if err := d.Close(); err != nil {
		t.Error(err)
	}
	if err := <-res; !errors.Is(err, ErrClosed) {
		t.Errorf("Declare in flight: %v", err)
	}
	if !errors.Is(d.Err(), ErrClosed) {
		t.Errorf("Err = %v", d.Err())
	}
	d.Close() // idempotent
	close(block)
	f.close()
	// Every goroutine of the declarer and the fake ends.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDialContext(t *testing.T) {
	f := startFake(t, behavior{})
	ctx, cancel := context.WithCancel(context.Background())
	d, err := Dial(ctx, Config{Addr: f.addr(), AuthorityPubKey: &f.pub, FullTemplate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cancel() // the dial context ends; the Declarer lives on
	if _, err := d.Token(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := Dial(ctx, Config{Addr: f.addr(), AuthorityPubKey: &f.pub}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled dial: %v", err)
	}
}
