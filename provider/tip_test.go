package provider

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

func TestNextTimeFloor(t *testing.T) {
	seq := func(from uint32, n int) []uint32 { // newest first, 600 s apart
		out := make([]uint32, n)
		for i := range out {
			out[i] = from - uint32(600*i)
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		height    int64 // of the new tip
		newTime   uint32
		known     bool
		ancestors []uint32
		want      uint32
		ok        bool
	}{
		// Window: new tip 10000 + ancestors 9400..4000; sorted the 6th is 7000.
		{"ordered", 100, 10000, true, seq(9400, 10), 7001, true},
		// Only the first 10 ancestors count.
		{"extra ancestors ignored", 100, 10000, true, seq(9400, 15), 7001, true},
		// Out of order: a new tip timestamped far in the past, ancestors jumbled.
		{"out of order", 100, 100, true, []uint32{500, 300, 900, 200, 1000, 400, 700, 600, 800, 1100}, 600 + 1, true},
		{"new tip newest", 100, 2000, true, []uint32{500, 300, 900, 200, 1000, 400, 700, 600, 800, 1100}, 700 + 1, true},
		// Unknown new-tip time: the 6th smallest of the 10 ancestors bounds it.
		{"unknown time", 100, 0, false, []uint32{500, 300, 900, 200, 1000, 400, 700, 600, 800, 1100}, 700 + 1, true},
		{"too few ancestors", 100, 10000, true, seq(9400, 9), 0, false},
		// Near genesis: new tip at height 2 has a 3-block window.
		{"short chain", 2, 300, true, []uint32{200, 100}, 201, true},
		{"short chain unknown time", 2, 0, false, []uint32{200, 100}, 201, true},
		{"height 1 unknown time", 1, 0, false, []uint32{100}, 0, false},
		{"height 1", 1, 50, true, []uint32{100}, 101, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := nextTimeFloor(tc.height, tc.newTime, tc.known, tc.ancestors)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("got %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	// Property: the bound without the new tip's time is never below the
	// exact floor, whatever the new tip's time.
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		anc := make([]uint32, 10)
		for i := range anc {
			anc[i] = 1000 + r.Uint32N(5000)
		}
		nt := r.Uint32N(8000)
		exact, _ := nextTimeFloor(500, nt, true, anc)
		bound, ok := nextTimeFloor(500, 0, false, anc)
		w := append([]uint32{nt}, anc...)
		slices.Sort(w)
		if !ok || bound < exact || exact != w[5]+1 {
			t.Fatalf("anc %v new %d: exact %d (median+1 %d), bound %d", anc, nt, exact, w[5]+1, bound)
		}
	}
}

// fixture: a core with clients 1, 2 (reservation 100) and 3 (10,000) on a
// node template.
type fixture struct {
	c       *Core
	ch      *testChain
	src     *templates.Source
	empties map[ClientID]uint64
}

func newFixture(t *testing.T, cfg Config, height int64) *fixture {
	t.Helper()
	f := &fixture{c: newCore(t, cfg), ch: newTestChain(9, height), empties: map[ClientID]uint64{}}
	// Heavy transactions: the 10,000-byte reservation drops the cheapest leaf.
	specs := someTxs()
	for i := range specs {
		specs[i].weight = 995_000
	}
	f.src = f.ch.source(specs)
	f.c.NodeTemplate(f.src, f.ch.info(), t0)
	for _, cl := range []struct {
		id   ClientID
		size uint32
	}{{1, 100}, {2, 100}, {3, 10_000}} {
		ms := sentTo(connect(t, f.c, cl.id, cl.size, t0), cl.id)
		if len(ms) == 3 {
			f.empties[cl.id] = ms[2].(*messages.NewTemplate).TemplateID
		}
	}
	return f
}

func TestFastPath(t *testing.T) {
	f := newFixture(t, regtestConfig(), 500)
	if len(f.empties) != 3 {
		t.Fatalf("empties %v", f.empties)
	}
	// Client 3 joined a new group after client 1's empty was issued: its
	// full template is newer, so it holds a newer empty template.
	if f.empties[1] != f.empties[2] || f.empties[3] <= f.empties[1] {
		t.Fatalf("empties %v", f.empties)
	}
	now := t0.Add(30 * time.Second)
	notice := f.ch.mine(uint32(now.Unix()) - 5)
	a := f.c.NewTip(notice, now)
	if !a.FetchTemplate || len(a.Send) != 3 {
		t.Fatalf("fast path: fetch %v, %d messages", a.FetchTemplate, len(a.Send))
	}
	for id, emptyID := range f.empties {
		ms := sentTo(a, id)
		expectNames(t, ms, "SetNewPrevHash")
		s := ms[0].(*messages.SetNewPrevHash)
		if s.TemplateID != emptyID || s.PrevHash != notice.Hash || s.NBits != regtestBits || s.Target != templates.TargetFromBits(regtestBits) {
			t.Fatalf("client %d: %+v (empty %d)", id, s, emptyID)
		}
		if s.HeaderTimestamp != uint32(now.Unix()) || s.HeaderTimestamp <= f.ch.mtp() {
			t.Fatalf("client %d: timestamp %d, now %d, mtp %d", id, s.HeaderTimestamp, now.Unix(), f.ch.mtp())
		}
	}
	if st := f.c.Snapshot(); st.TipHash != notice.Hash || st.TipHeight != 501 || st.FastPaths != 1 {
		t.Fatalf("snapshot %+v", st)
	}
	// A duplicate notice (ZMQ and polling) does nothing.
	if a := f.c.NewTip(notice, now); !a.Empty() {
		t.Fatalf("duplicate notice: %+v", a)
	}
	// A late answer to a request sent before the block is ignored.
	a = f.c.NodeTemplate(f.src, ChainInfo{}, now)
	if len(a.Send) != 0 || !a.FetchTemplate {
		t.Fatalf("stale answer: %+v", a)
	}
	// The node's template for the new tip: a non-future template, then
	// the next empty template, ids increasing.
	src2 := f.ch.source(someTxs()[:2])
	a = f.c.NodeTemplate(src2, f.ch.info(), now.Add(50*time.Millisecond))
	var last uint64
	for id := range f.empties {
		ms := sentTo(a, id)
		expectNames(t, ms, "NewTemplate", "NewTemplate(future)")
		full, next := ms[0].(*messages.NewTemplate), ms[1].(*messages.NewTemplate)
		checkTemplate(t, full, src2)
		if full.TemplateID <= f.empties[3] || next.TemplateID <= full.TemplateID {
			t.Fatalf("client %d ids %d, %d after %d", id, full.TemplateID, next.TemplateID, f.empties[3])
		}
		last = max(last, next.TemplateID)
	}
	if st := f.c.Snapshot(); st.LastID != last {
		t.Fatalf("last id %d, sent %d", st.LastID, last)
	}
	// The next block takes the fast path again.
	notice = f.ch.mine(uint32(now.Unix()) + 600)
	a = f.c.NewTip(notice, now.Add(time.Minute))
	if len(a.Send) != 3 {
		t.Fatalf("second fast path: %d messages", len(a.Send))
	}
	for _, o := range a.Send {
		want := max(uint32(now.Add(time.Minute).Unix()), f.ch.mtp()+1)
		if s := o.Msg.(*messages.SetNewPrevHash); s.TemplateID != last || s.PrevHash != notice.Hash || s.HeaderTimestamp != want {
			t.Fatalf("%+v", s)
		}
	}
}

func TestFastPathTimestampFromMedian(t *testing.T) {
	f := newFixture(t, regtestConfig(), 500)
	// Timestamps in the future of our clock and out of order: the floor
	// (median of the new window + 1) is above now.
	f.ch.times = []uint32{5000, 9000, 3000, 8000, 2000, 7000, 1000, 6000, 4000, 10000, 11000}
	for i := range f.ch.times {
		f.ch.times[i] += uint32(t0.Unix())
	}
	f.src = f.ch.source(nil)
	// Same tip: keeps chain info fresh without a tip change.
	f.c.NodeTemplate(f.src, f.ch.info(), t0)
	notice := f.ch.mine(uint32(t0.Unix()) + 500)
	a := f.c.NewTip(notice, t0)
	// New window: 500, 5000, 9000, 3000, 8000, 2000, 7000, 1000, 6000, 4000, 10000 → median 5000.
	want := uint32(t0.Unix()) + 5001
	for _, o := range a.Send {
		if s := o.Msg.(*messages.SetNewPrevHash); s.HeaderTimestamp != want {
			t.Fatalf("timestamp %d, want %d", s.HeaderTimestamp, want)
		}
	}
	if len(a.Send) != 3 {
		t.Fatalf("%d messages", len(a.Send))
	}
	// The same with the new block's time unknown: the bound from the 10
	// ancestors (6th smallest of 5000, 9000, 3000, 8000, 2000, 7000, 1000,
	// 6000, 4000, 10000 is 6000).
	f = newFixture(t, regtestConfig(), 500)
	f.ch.times = []uint32{5000, 9000, 3000, 8000, 2000, 7000, 1000, 6000, 4000, 10000, 11000}
	for i := range f.ch.times {
		f.ch.times[i] += uint32(t0.Unix())
	}
	f.c.NodeTemplate(f.ch.source(nil), f.ch.info(), t0)
	notice = f.ch.mine(0)
	notice.Time = 0
	a = f.c.NewTip(notice, t0)
	if len(a.Send) != 3 || a.Send[0].Msg.(*messages.SetNewPrevHash).HeaderTimestamp != uint32(t0.Unix())+6001 {
		t.Fatalf("unknown time: %+v", a.Send)
	}
}

func TestFastPathRefused(t *testing.T) {
	mainnet := Config{Interval: 10 * time.Second}
	testnet := Config{Interval: 10 * time.Second, MinDifficultyBlocks: true}
	for _, tc := range []struct {
		name   string
		cfg    Config
		height int64 // tip height at setup
		notice func(f *fixture) TipNotice
		chain  func(f *fixture) ChainInfo
		empty  bool // clients hold an empty template
	}{
		// Tip 2014: template 2015, empty 2016 = a retarget: no empty sent.
		{"retarget boundary", mainnet, 2014, nil, nil, false},
		{"min-difficulty network", testnet, 500, nil, nil, false},
		{"parent unknown", mainnet, 500, func(f *fixture) TipNotice {
			n := f.ch.mine(uint32(t0.Unix()))
			n.PrevHash = nil
			return n
		}, nil, true},
		{"reorg", mainnet, 500, func(f *fixture) TipNotice {
			n := f.ch.mine(uint32(t0.Unix()))
			n.PrevHash = &[32]byte{1}
			return n
		}, nil, true},
		{"timestamps unknown", mainnet, 500, nil, func(f *fixture) ChainInfo { return ChainInfo{} }, true},
		{"chain info of another tip", mainnet, 500, nil, func(f *fixture) ChainInfo {
			ci := f.ch.info()
			ci.TipHash[0] ^= 1
			return ci
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fixture{c: newCore(t, tc.cfg), ch: newTestChain(5, tc.height)}
			f.src = f.ch.source(someTxs())
			ci := f.ch.info()
			if tc.chain != nil {
				ci = tc.chain(f)
			}
			f.c.NodeTemplate(f.src, ci, t0)
			ms := sentTo(connect(t, f.c, 1, 100, t0), 1)
			if tc.empty {
				initial(t, ms)
			} else {
				expectNames(t, ms, "NewTemplate(future)", "SetNewPrevHash")
			}
			var n TipNotice
			if tc.notice != nil {
				n = tc.notice(f)
			} else {
				n = f.ch.mine(uint32(t0.Unix()))
			}
			a := f.c.NewTip(n, t0.Add(time.Second))
			if len(a.Send) != 0 || !a.FetchTemplate {
				t.Fatalf("refused fast path: fetch %v, sent %v", a.FetchTemplate, names(sentTo(a, 1)))
			}
			// The node's template: future template + SetNewPrevHash (+ empty).
			src2 := f.ch.source(someTxs()[:1])
			a = f.c.NodeTemplate(src2, f.ch.info(), t0.Add(2*time.Second))
			ms = sentTo(a, 1)
			if n := len(ms); n != 2 && n != 3 {
				t.Fatalf("after node template: %v", names(ms))
			}
			expectNames(t, ms[:2], "NewTemplate(future)", "SetNewPrevHash")
			if s := ms[1].(*messages.SetNewPrevHash); s.PrevHash != f.ch.tip || s.NBits != src2.Bits {
				t.Fatalf("%+v", s)
			}
		})
	}
}

func TestFastPathSecondBlockBeforeNodeAnswers(t *testing.T) {
	f := newFixture(t, regtestConfig(), 500)
	if a := f.c.NewTip(f.ch.mine(uint32(t0.Unix())), t0); len(a.Send) != 3 {
		t.Fatal("first fast path missing")
	}
	a := f.c.NewTip(f.ch.mine(uint32(t0.Unix())+1), t0.Add(time.Second))
	if len(a.Send) != 0 || !a.FetchTemplate {
		t.Fatalf("second block: %+v", a)
	}
	a = f.c.NodeTemplate(f.ch.source(nil), f.ch.info(), t0.Add(2*time.Second))
	for id := range f.empties {
		ms := sentTo(a, id)
		expectNames(t, ms, "NewTemplate(future)", "SetNewPrevHash", "NewTemplate(future)")
		if ms[1].(*messages.SetNewPrevHash).PrevHash != f.ch.tip {
			t.Fatal("wrong prev hash")
		}
	}
}

func TestFastPathCorrectedByNode(t *testing.T) {
	f := newFixture(t, regtestConfig(), 500)
	notice := f.ch.mine(uint32(t0.Unix()))
	f.c.NewTip(notice, t0)
	// The node says different bits: the fast SetNewPrevHash was wrong, so
	// its template is announced as a future template with its own.
	f.ch.bits = 0x1d00ffff
	src := f.ch.source(nil)
	a := f.c.NodeTemplate(src, f.ch.info(), t0.Add(time.Second))
	ms := sentTo(a, 1)
	expectNames(t, ms, "NewTemplate(future)", "SetNewPrevHash", "NewTemplate(future)")
	if s := ms[1].(*messages.SetNewPrevHash); s.NBits != 0x1d00ffff || s.PrevHash != notice.Hash {
		t.Fatalf("%+v", s)
	}
}

func TestClientJoinsDuringFastPath(t *testing.T) {
	f := newFixture(t, regtestConfig(), 500)
	notice := f.ch.mine(uint32(t0.Unix()))
	f.c.NewTip(notice, t0)
	// New group and existing group: both get the activated empty template.
	for _, size := range []uint32{100, 555} {
		id := ClientID(10 + size)
		ms := sentTo(connect(t, f.c, id, size, t0), id)
		expectNames(t, ms, "NewTemplate(future)", "SetNewPrevHash")
		nt, s := ms[0].(*messages.NewTemplate), ms[1].(*messages.SetNewPrevHash)
		if s.TemplateID != nt.TemplateID || s.PrevHash != notice.Hash || len(nt.MerklePath) != 0 {
			t.Fatalf("%+v %+v", nt, s)
		}
	}
	a := f.c.NodeTemplate(f.ch.source(someTxs()), f.ch.info(), t0.Add(time.Second))
	for _, id := range []ClientID{1, 2, 3, 110, 565} {
		expectNames(t, sentTo(a, id), "NewTemplate", "NewTemplate(future)")
	}
}

func TestFeeUpdates(t *testing.T) {
	cfg := regtestConfig()
	cfg.FeeDelta = 1000
	cfg.Interval = 10 * time.Second
	f := newFixture(t, cfg, 500)
	base := f.src
	withFee := func(extra int64) *templates.Source {
		s := *base
		s.Txs = slices.Clone(base.Txs)
		s.Txs[0].Fee += extra // a parent: in every group's template
		s.CoinbaseValue += extra
		return &s
	}
	// Below the delta: nothing, whenever.
	if a := f.c.NodeTemplate(withFee(999), f.ch.info(), t0.Add(20*time.Second)); len(a.Send) != 0 {
		t.Fatalf("below delta: %v", names(sentTo(a, 1)))
	}
	// Above the delta but within the interval: held back.
	if a := f.c.NodeTemplate(withFee(1500), f.ch.info(), t0.Add(5*time.Second)); len(a.Send) != 0 {
		t.Fatal("sent within the interval")
	}
	if a := f.c.Tick(t0.Add(9 * time.Second)); len(a.Send) != 0 {
		t.Fatal("sent by Tick within the interval")
	}
	a := f.c.Tick(t0.Add(10 * time.Second))
	for id := range f.empties {
		expectNames(t, sentTo(a, id), "NewTemplate")
	}
	up := sentTo(a, 1)[0].(*messages.NewTemplate)
	if up.CoinbaseTxValueRemaining != uint64(base.CoinbaseValue+1500) || up.TemplateID <= f.empties[3] {
		t.Fatalf("%+v", up)
	}
	if a := f.c.Tick(t0.Add(30 * time.Second)); len(a.Send) != 0 {
		t.Fatal("sent twice")
	}
	// After the interval a qualifying template goes out at once.
	a = f.c.NodeTemplate(withFee(2600), f.ch.info(), t0.Add(21*time.Second))
	if len(a.Send) != 3 {
		t.Fatalf("%d messages", len(a.Send))
	}
	// A held-back update is dropped when a newer template does not qualify.
	f.c.NodeTemplate(withFee(4000), f.ch.info(), t0.Add(22*time.Second))
	f.c.NodeTemplate(withFee(2700), f.ch.info(), t0.Add(23*time.Second))
	if a := f.c.Tick(t0.Add(40 * time.Second)); len(a.Send) != 0 {
		t.Fatal("stale held-back update sent")
	}
	if st := f.c.Snapshot(); st.FeeUpdates != 4 { // two groups × two updates
		t.Fatalf("fee updates %d", st.FeeUpdates)
	}
}

func TestMempoolFetchGating(t *testing.T) {
	f := newFixture(t, regtestConfig(), 500)
	if a := f.c.MempoolChanged(t0.Add(time.Second)); a.FetchTemplate {
		t.Fatal("fetched within the interval")
	}
	if a := f.c.Tick(t0.Add(5 * time.Second)); a.FetchTemplate {
		t.Fatal("fetched within the interval")
	}
	if a := f.c.Tick(t0.Add(10 * time.Second)); !a.FetchTemplate {
		t.Fatal("no fetch after the interval")
	}
	if a := f.c.Tick(t0.Add(11 * time.Second)); a.FetchTemplate {
		t.Fatal("fetched twice")
	}
	if a := f.c.MempoolChanged(t0.Add(21 * time.Second)); !a.FetchTemplate {
		t.Fatal("no fetch on a mempool change after the interval")
	}
	c := newCore(t, regtestConfig())
	if a := c.MempoolChanged(t0); a.FetchTemplate {
		t.Fatal("mempool fetch before any template (the shell does the first)")
	}
}

// Every client sees strictly increasing NewTemplate ids whatever happens.
func TestTemplateIDsIncreasePerClient(t *testing.T) {
	f := newFixture(t, regtestConfig(), 500)
	seen := map[ClientID]uint64{}
	check := func(a Actions) {
		t.Helper()
		for _, o := range a.Send {
			if nt, ok := o.Msg.(*messages.NewTemplate); ok {
				if nt.TemplateID <= seen[o.Client] {
					t.Fatalf("client %d: id %d after %d", o.Client, nt.TemplateID, seen[o.Client])
				}
				seen[o.Client] = nt.TemplateID
			}
		}
	}
	now := t0
	next := ClientID(100)
	for round := range 6 {
		now = now.Add(11 * time.Second)
		src := f.ch.source(append(someTxs(), txSpec{fee: int64(5000 * (round + 1)), parent: -1}))
		check(f.c.NodeTemplate(src, f.ch.info(), now))
		check(connect(t, f.c, next, uint32(100*(round%3)), now))
		next++
		if round%2 == 0 {
			check(f.c.NewTip(f.ch.mine(uint32(now.Unix())), now))
		} else {
			n := f.ch.mine(uint32(now.Unix()))
			n.PrevHash = nil
			check(f.c.NewTip(n, now))
		}
		check(connect(t, f.c, next, uint32(100*(round%3)+50), now))
		next++
		check(f.c.NodeTemplate(f.ch.source(someTxs()), f.ch.info(), now.Add(time.Second)))
	}
}

// The fast path is refused only when the empty template's height is a
// retarget height: tip 2014 (template 2015, empty 2016). The template at the
// retarget height itself comes from the node, so tip 2015 is fine again.
func TestFastPathAroundRetarget(t *testing.T) {
	for _, tc := range []struct {
		tip  int64
		fast bool
	}{{2012, true}, {2013, true}, {2014, false}, {2015, true}, {4030, false}, {4031, true}} {
		c := newCore(t, Config{})
		ch := newTestChain(6, tc.tip)
		c.NodeTemplate(ch.source(nil), ch.info(), t0)
		ms := sentTo(connect(t, c, 1, 0, t0), 1)
		if (len(ms) == 3) != tc.fast {
			t.Fatalf("tip %d: initial %v", tc.tip, names(ms))
		}
		a := c.NewTip(ch.mine(uint32(t0.Unix())), t0)
		if (len(a.Send) == 1) != tc.fast || !a.FetchTemplate {
			t.Fatalf("tip %d: fast path %v, want %v", tc.tip, len(a.Send) == 1, tc.fast)
		}
	}
}

func TestMinDifficultySameTipNewBits(t *testing.T) {
	cfg := Config{MinDifficultyBlocks: true}
	c := newCore(t, cfg)
	ch := newTestChain(7, 500)
	ch.bits = 0x1d00ffff
	src := ch.source(someTxs())
	c.NodeTemplate(src, ch.info(), t0)
	ms := sentTo(connect(t, c, 1, 100, t0), 1)
	expectNames(t, ms, "NewTemplate(future)", "SetNewPrevHash")
	// 20 minutes after the tip the core asks the node again, once.
	if a := c.Tick(t0.Add(19 * time.Minute)); a.FetchTemplate {
		t.Fatal("fetched before 20 minutes")
	}
	if a := c.Tick(t0.Add(20*time.Minute + time.Second)); !a.FetchTemplate {
		t.Fatal("no fetch after 20 minutes")
	}
	if a := c.Tick(t0.Add(21 * time.Minute)); a.FetchTemplate {
		t.Fatal("fetched twice")
	}
	// The node now gives minimum-difficulty bits on the same tip, same
	// fees: announced again with SetNewPrevHash.
	ch.bits = 0x1d00ffff + 1
	src2 := ch.source(someTxs())
	a := c.NodeTemplate(src2, ch.info(), t0.Add(21*time.Minute))
	ms = sentTo(a, 1)
	expectNames(t, ms, "NewTemplate(future)", "SetNewPrevHash")
	if s := ms[1].(*messages.SetNewPrevHash); s.NBits != ch.bits || s.PrevHash != ch.tip || s.TemplateID != ms[0].(*messages.NewTemplate).TemplateID {
		t.Fatalf("%+v", s)
	}
	if c.Snapshot().TipChanges != 1 {
		t.Fatal("counted as a tip change")
	}
}
