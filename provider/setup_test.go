package provider

import (
	"github.com/sv2kit/sv2kit/internal/config"

	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		key  string
	}{
		{"zero value is valid", Config{}, ""},
		{"interval below 1s", Config{Interval: 500 * time.Millisecond}, "templates.interval"},
		{"negative interval", Config{Interval: -time.Second}, "templates.interval"},
		{"negative fee delta", Config{FeeDelta: -1}, "templates.fee-delta"},
		{"negative max clients", Config{MaxClients: -1}, "server.max-clients"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("error %v, want one naming %q", err, tc.key)
			}
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
	c := newCore(t, Config{})
	if got := c.Config(); got.FeeDelta != 1000 || got.Interval != 10*time.Second || got.PrevTipRetention != 10*time.Second || got.HalvingInterval != 210000 {
		t.Fatalf("defaults: %+v", got)
	}
}

func TestSetupErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		setupDone bool // SetupConnection accepted first
		msg       codec.Message
		errCode   string // SetupConnection.Error expected
		closed    bool
	}{
		{"mining protocol", false, &messages.SetupConnection{Protocol: 0, MinVersion: 2, MaxVersion: 2}, ErrUnsupportedProtocol, true},
		{"job declaration protocol", false, &messages.SetupConnection{Protocol: 1, MinVersion: 2, MaxVersion: 2}, ErrUnsupportedProtocol, true},
		{"versions above 2", false, &messages.SetupConnection{Protocol: 2, MinVersion: 3, MaxVersion: 4}, ErrProtocolVersion, true},
		{"versions below 2", false, &messages.SetupConnection{Protocol: 2, MinVersion: 1, MaxVersion: 1}, ErrProtocolVersion, true},
		{"inverted range", false, &messages.SetupConnection{Protocol: 2, MinVersion: 3, MaxVersion: 1}, ErrProtocolVersion, true},
		{"constraints before setup", false, constraintsMsg(0, 0), "", true},
		{"request before setup", false, &messages.RequestTransactionData{TemplateID: 1}, "", true},
		{"second SetupConnection", true, setupMsg(), "", true},
		{"request before constraints", true, &messages.RequestTransactionData{TemplateID: 1}, "", true},
		{"solution before constraints", true, &messages.SubmitSolution{TemplateID: 1}, "", true},
		{"server message from client", true, &messages.NewTemplate{}, "", true},
		{"mining message", true, &messages.OpenStandardMiningChannel{}, "", true},
		{"oversized reservation", true, constraintsMsg(MaxCoinbaseOutputSize+1, 0), "", true},
		{"reservation that cannot fit a block", true, constraintsMsg(999_800, 0), "", true},
		{"reservation with too many sigops", true, constraintsMsg(100, 20_000), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCore(t, regtestConfig())
			c.ClientConnected(1, t0)
			if tc.setupDone {
				if a := c.ClientMessage(1, setupMsg(), t0); len(a.Close) != 0 {
					t.Fatal(a.Close)
				}
			}
			a := c.ClientMessage(1, tc.msg, t0)
			if tc.errCode != "" {
				expectNames(t, sentTo(a, 1), "SetupConnection.Error")
				if got := a.Send[0].Msg.(*messages.SetupConnectionError).ErrorCode; got != tc.errCode {
					t.Fatalf("error code %q, want %q", got, tc.errCode)
				}
			} else if len(a.Send) != 0 {
				t.Fatalf("sent %v", names(sentTo(a, 1)))
			}
			reason, closed := hasClose(a, 1)
			if closed != tc.closed || (closed && reason == "") {
				t.Fatalf("closed %v (%q), want %v", closed, reason, tc.closed)
			}
			if closed && c.Snapshot().Clients != 0 {
				t.Fatal("closed client still counted")
			}
			c.ClientGone(1) // no-op after Close
		})
	}
}

func TestSetupSuccessIgnoresFlags(t *testing.T) {
	c := newCore(t, regtestConfig())
	c.ClientConnected(7, t0)
	m := setupMsg()
	m.MinVersion, m.MaxVersion, m.Flags = 1, 5, 0xffffffff
	a := c.ClientMessage(7, m, t0)
	expectNames(t, sentTo(a, 7), "SetupConnection.Success")
	if s := a.Send[0].Msg.(*messages.SetupConnectionSuccess); s.UsedVersion != 2 || s.Flags != 0 {
		t.Fatalf("%+v", s)
	}
	if len(a.Close) != 0 {
		t.Fatal(a.Close)
	}
}

func TestMaxClients(t *testing.T) {
	cfg := regtestConfig()
	cfg.MaxClients = 2
	c := newCore(t, cfg)
	for id := ClientID(1); id <= 2; id++ {
		if a := c.ClientConnected(id, t0); len(a.Close) != 0 {
			t.Fatal(a.Close)
		}
	}
	a := c.ClientConnected(3, t0)
	if r, ok := hasClose(a, 3); !ok || !strings.Contains(r, "too many clients") {
		t.Fatalf("third client: %+v", a)
	}
	c.ClientGone(1)
	if a := c.ClientConnected(3, t0); len(a.Close) != 0 {
		t.Fatal("a freed slot was not reused")
	}
}

func TestConstraintsBeforeFirstTemplate(t *testing.T) {
	c := newCore(t, regtestConfig())
	ch := newTestChain(1, 200)
	a := connect(t, c, 1, 100, t0)
	if len(a.Send) != 0 {
		t.Fatalf("sent before any template: %v", names(sentTo(a, 1)))
	}
	src := ch.source(someTxs())
	a = c.NodeTemplate(src, ch.info(), t0)
	nt, snph, empty := initial(t, sentTo(a, 1))
	if nt.TemplateID != 1 || empty.TemplateID != 2 {
		t.Fatalf("ids %d, %d; want 1, 2", nt.TemplateID, empty.TemplateID)
	}
	checkTemplate(t, nt, src)
	if snph.PrevHash != ch.tip || snph.NBits != ch.bits || snph.Target != templates.TargetFromBits(ch.bits) || snph.HeaderTimestamp != src.CurTime {
		t.Fatalf("SetNewPrevHash %+v", snph)
	}
	if empty.CoinbaseTxValueRemaining != uint64(templates.Subsidy(src.Height+1, 150)) ||
		string(empty.CoinbasePrefix) != string(templates.HeightScript(src.Height+1)) || empty.CoinbaseTxLocktime != uint32(src.Height) {
		t.Fatalf("empty template %+v", empty)
	}
}

// checkTemplate compares a NewTemplate with what the source gives.
func checkTemplate(t testing.TB, nt *messages.NewTemplate, src *templates.Source) {
	t.Helper()
	if nt.Version != src.Version || nt.CoinbaseTxVersion != 2 || string(nt.CoinbasePrefix) != string(templates.HeightScript(src.Height)) ||
		nt.CoinbaseTxValueRemaining != uint64(src.CoinbaseValue) || nt.CoinbaseTxLocktime != uint32(src.Height-1) {
		t.Fatalf("NewTemplate %+v does not match the source", nt)
	}
	txids := make([][32]byte, len(src.Txs))
	for i := range src.Txs {
		txids[i] = src.Txs[i].TxID
	}
	want := templates.MerklePath(txids)
	if len(nt.MerklePath) != len(want) {
		t.Fatalf("merkle path of %d, want %d", len(nt.MerklePath), len(want))
	}
	for i := range want {
		if nt.MerklePath[i] != want[i] {
			t.Fatal("merkle path differs")
		}
	}
	if src.WitnessCommitment != nil {
		outs, err := templates.ParseOutputs(nt.CoinbaseTxOutputs, int(nt.CoinbaseTxOutputsCount))
		if err != nil || len(outs) != 1 || string(outs[0].PkScript) != string(src.WitnessCommitment) {
			t.Fatalf("outputs %x (%v), want the witness commitment", nt.CoinbaseTxOutputs, err)
		}
	}
}

func TestConstraintsWithTemplate(t *testing.T) {
	c := newCore(t, regtestConfig())
	ch := newTestChain(2, 300)
	src := ch.source(someTxs())
	if a := c.NodeTemplate(src, ch.info(), t0); len(a.Send) != 0 {
		t.Fatal("sent with no clients")
	}
	a := connect(t, c, 1, 100, t0)
	nt1, _, e1 := initial(t, sentTo(a, 1))
	checkTemplate(t, nt1, src)
	// A second client with the same reservation shares the templates.
	a = connect(t, c, 2, 100, t0)
	nt2, _, e2 := initial(t, sentTo(a, 2))
	if nt2 != nt1 || e2 != e1 {
		t.Fatal("same reservation did not share the template messages")
	}
	// Re-sent constraints with the same reservation: the same templates again.
	a = c.ClientMessage(2, constraintsMsg(100, 10), t0)
	nt3, _, _ := initial(t, sentTo(a, 2))
	if nt3.TemplateID != nt1.TemplateID {
		t.Fatal("re-sent constraints issued a new template for the same reservation")
	}
	if s := c.Snapshot(); s.Groups != 1 || s.ReadyClients != 2 {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestReservationsGetTheirOwnTemplates(t *testing.T) {
	c := newCore(t, regtestConfig())
	ch := newTestChain(3, 300)
	// Ten transactions filling the block but for ~8,800 WU: a 100-byte
	// reservation fits, a 10,000-byte one must drop the cheapest leaf.
	specs := make([]txSpec, 10)
	for i := range specs {
		specs[i] = txSpec{fee: int64(10_000 + 1000*i), weight: 399_000, witness: i%2 == 0, parent: -1}
	}
	specs[0].fee = 50_000 // highest feerate...
	specs[1].parent = 0   // ...but a parent: its child (lowest fee) goes first
	specs[1].fee = 500
	src := ch.source(specs)
	c.NodeTemplate(src, ch.info(), t0)

	small, _, _ := initial(t, sentTo(connect(t, c, 1, 100, t0), 1))
	big, _, _ := initial(t, sentTo(connect(t, c, 2, 10_000, t0), 2))
	if small.TemplateID == big.TemplateID {
		t.Fatal("different reservations share a template")
	}
	checkTemplate(t, small, src)
	if big.CoinbaseTxValueRemaining != small.CoinbaseTxValueRemaining-500 {
		t.Fatalf("big reservation value %d, want %d (child dropped)", big.CoinbaseTxValueRemaining, small.CoinbaseTxValueRemaining-500)
	}
	a := c.ClientMessage(2, &messages.RequestTransactionData{TemplateID: big.TemplateID}, t0)
	expectNames(t, sentTo(a, 2), "RequestTransactionData.Success")
	if n := len(a.Send[0].Msg.(*messages.RequestTransactionDataSuccess).TransactionList); n != 9 {
		t.Fatalf("big reservation template has %d txs, want 9", n)
	}
	// The witness commitment was recomputed for the smaller set.
	outs, err := templates.ParseOutputs(big.CoinbaseTxOutputs, int(big.CoinbaseTxOutputsCount))
	if err != nil || len(outs) != 1 || string(outs[0].PkScript) == string(src.WitnessCommitment) {
		t.Fatalf("big template commitment %x (%v)", big.CoinbaseTxOutputs, err)
	}
	// Moving client 2 to the small reservation joins the existing group.
	a = c.ClientMessage(2, constraintsMsg(100, 10), t0)
	nt, _, _ := initial(t, sentTo(a, 2))
	if nt.TemplateID != small.TemplateID || c.Snapshot().Groups != 1 {
		t.Fatalf("moved client got %d (groups %d)", nt.TemplateID, c.Snapshot().Groups)
	}
}

func TestMaxGroups(t *testing.T) {
	cfg := regtestConfig()
	cfg.MaxGroups = 2
	c := newCore(t, cfg)
	ch := newTestChain(4, 300)
	c.NodeTemplate(ch.source(someTxs()), ch.info(), t0)
	connect(t, c, 1, 10, t0)
	connect(t, c, 2, 20, t0)
	c.ClientConnected(3, t0)
	c.ClientMessage(3, setupMsg(), t0)
	a := c.ClientMessage(3, constraintsMsg(30, 0), t0)
	if r, ok := hasClose(a, 3); !ok || !strings.Contains(r, "reservations") {
		t.Fatalf("%+v", a)
	}
	c.ClientGone(1)
	connect(t, c, 4, 30, t0) // the group of client 1 is gone
}
