package mining

import (
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
)

func TestOpenChannelErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		req  *messages.OpenExtendedMiningChannel
		want string
	}{
		{"ok", Config{}, &messages.OpenExtendedMiningChannel{MaxTarget: MaxTarget, MinExtranonceSize: 8}, ""},
		{"nan hashrate", Config{}, &messages.OpenExtendedMiningChannel{NominalHashRate: float32(math.NaN()), MaxTarget: MaxTarget}, CodeInvalidNominalHashrate},
		{"negative hashrate", Config{}, &messages.OpenExtendedMiningChannel{NominalHashRate: -1, MaxTarget: MaxTarget}, CodeInvalidNominalHashrate},
		{"inf hashrate", Config{}, &messages.OpenExtendedMiningChannel{NominalHashRate: float32(math.Inf(1)), MaxTarget: MaxTarget}, CodeInvalidNominalHashrate},
		{"zero max target", Config{}, &messages.OpenExtendedMiningChannel{MaxTarget: [32]byte{}}, CodeMaxTargetOutOfRange},
		{"extranonce too large", Config{}, &messages.OpenExtendedMiningChannel{MaxTarget: MaxTarget, MinExtranonceSize: 9}, CodeMinExtranonceSizeTooLarge},
		{"session full", Config{MaxChannels: 1}, &messages.OpenExtendedMiningChannel{MaxTarget: MaxTarget}, CodeTooManyChannels},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSession(tc.cfg, mustAlloc(t, nil, 12, 8))
			if tc.cfg.MaxChannels == 1 {
				s.OpenExtended(&messages.OpenExtendedMiningChannel{MaxTarget: MaxTarget}, t0)
			}
			tc.req.RequestID = 5
			c, out := s.OpenExtended(tc.req, t0)
			if tc.want == "" {
				ok, isOK := out[0].(*messages.OpenExtendedMiningChannelSuccess)
				if c == nil || !isOK || ok.RequestID != 5 || ok.ExtranonceSize != 8 || len(ok.ExtranoncePrefix) != 4 {
					t.Fatalf("open: %+v", out[0])
				}
				return
			}
			e, isErr := out[0].(*messages.OpenMiningChannelError)
			if c != nil || !isErr || e.ErrorCode != tc.want || e.RequestID != 5 {
				t.Fatalf("got %+v, want %q", out[0], tc.want)
			}
		})
	}
	// Exhausted extranonce space.
	s := NewSession(Config{}, mustAlloc(t, nil, 9, 8)) // 256 ids
	for i := 0; i < 256; i++ {
		if c, _ := s.OpenStandard(&messages.OpenStandardMiningChannel{MaxTarget: MaxTarget}, t0); c == nil {
			t.Fatal("open failed early")
		}
	}
	if _, out := s.OpenStandard(&messages.OpenStandardMiningChannel{MaxTarget: MaxTarget}, t0); out[0].(*messages.OpenMiningChannelError).ErrorCode != CodeExtranonceExhausted {
		t.Fatal("exhausted space not reported")
	}
}

func TestInitialTargetFromHashRate(t *testing.T) {
	s := NewSession(Config{Vardiff: VardiffConfig{SharesPerMinute: 6}}, mustAlloc(t, nil, 12, 8))
	_, out := s.OpenStandard(&messages.OpenStandardMiningChannel{NominalHashRate: 100e12, MaxTarget: MaxTarget}, t0)
	got := out[0].(*messages.OpenStandardMiningChannelSuccess).Target
	if got != TargetFromHashRate(float64(float32(100e12)), 6) {
		t.Fatal("initial target not from hash rate")
	}
	// Clamped to the client's max target.
	_, out = s.OpenStandard(&messages.OpenStandardMiningChannel{NominalHashRate: 1, MaxTarget: targetBits(30)}, t0)
	if out[0].(*messages.OpenStandardMiningChannelSuccess).Target != targetBits(30) {
		t.Fatal("max target not honoured")
	}
	// And to the session's easiest target.
	s = NewSession(Config{EasiestTarget: targetBits(20)}, mustAlloc(t, nil, 12, 8))
	_, out = s.OpenStandard(&messages.OpenStandardMiningChannel{NominalHashRate: 1, MaxTarget: MaxTarget}, t0)
	if out[0].(*messages.OpenStandardMiningChannelSuccess).Target != targetBits(20) {
		t.Fatal("easiest target not honoured")
	}
	// Unknown hash rate starts at InitialHashRate, not the easiest target.
	_, out = s.OpenStandard(&messages.OpenStandardMiningChannel{MaxTarget: MaxTarget}, t0)
	if out[0].(*messages.OpenStandardMiningChannelSuccess).Target != TargetFromHashRate(1e6, 10) {
		t.Fatal("easiest target not honoured")
	}
}

func jobIDs(t *testing.T, out []codec.Message) map[uint32][]uint32 {
	t.Helper()
	ids := map[uint32][]uint32{}
	for _, m := range out {
		switch m := m.(type) {
		case *messages.NewExtendedMiningJob:
			ids[m.ChannelID] = append(ids[m.ChannelID], m.JobID)
		case *messages.NewMiningJob:
			ids[m.ChannelID] = append(ids[m.ChannelID], m.JobID)
		}
	}
	return ids
}

func TestJobLifecycle(t *testing.T) {
	f := newFixture(t, Config{StandardJobs: true, MaxJobs: 3, MaxFutureJobs: 2})
	ext := openExt(t, f.s, targetBits(4), t0)
	std := openStd(t, f.s, targetBits(4), t0)

	// Non-future job before any tip.
	_, txs := fakeTxs(1, 1)
	active := jobTemplate(t, newTemplateMsg(50, false, 200, txs), 16)
	if _, err := f.s.NewTemplate(active); !errors.Is(err, ErrNoTip) {
		t.Fatalf("active job without tip: %v", err)
	}
	// Unknown template in SetNewPrevHash.
	if _, err := f.s.NewPrevHash(77, tipAt(mainnetBits, t0)); !errors.Is(err, ErrUnknownTemplate) {
		t.Fatalf("unknown template: %v", err)
	}
	// Wrong extranonce size.
	wrong := jobTemplate(t, newTemplateMsg(51, true, 200, nil), 12)
	if _, err := f.s.NewTemplate(wrong); !errors.Is(err, ErrExtranonceMismatch) {
		t.Fatalf("wrong size: %v", err)
	}

	// Future job → SetNewPrevHash per channel; first message to a channel
	// is a future job (min_ntime None), then the SetNewPrevHash.
	out := f.block(mainnetBits, 2, t0)
	ext.handle(out)
	std.handle(out)
	if len(out) != 4 {
		t.Fatalf("%d messages", len(out))
	}
	for _, m := range out[:2] {
		switch m := m.(type) {
		case *messages.NewExtendedMiningJob:
			if m.MinNTime != nil {
				t.Fatal("future job has min_ntime")
			}
		case *messages.NewMiningJob:
			if m.MinNTime != nil {
				t.Fatal("future job has min_ntime")
			}
		default:
			t.Fatalf("unexpected %T", m)
		}
	}
	for _, m := range out[2:] {
		if _, ok := m.(*messages.MiningSetNewPrevHash); !ok {
			t.Fatalf("unexpected %T", m)
		}
	}

	// Fee updates on the same tip: active jobs, ids strictly increasing,
	// at most MaxJobs kept.
	last := map[uint32]uint32{ext.ch: ext.active, std.ch: std.active}
	var first map[uint32]uint32
	for i := 0; i < 5; i++ {
		_, txs := fakeTxs(i+1, int64(100+i))
		jt := jobTemplate(t, newTemplateMsg(f.next, false, 200, txs), 16)
		f.next++
		out, err := f.s.NewTemplate(jt)
		if err != nil {
			t.Fatal(err)
		}
		for ch, ids := range jobIDs(t, out) {
			if ids[0] <= last[ch] {
				t.Fatalf("channel %d job id %d after %d", ch, ids[0], last[ch])
			}
			last[ch] = ids[0]
		}
		for _, m := range out {
			if m, ok := m.(*messages.NewExtendedMiningJob); ok && (m.MinNTime == nil || *m.MinNTime != f.tip.MinNTime) {
				t.Fatal("active job without the tip's min_ntime")
			}
		}
		if i == 0 {
			first = map[uint32]uint32{ext.ch: last[ext.ch], std.ch: last[std.ch]}
		}
		ext.handle(out)
		std.handle(out)
	}
	if n := len(f.s.Channel(ext.ch).Jobs()); n != 3 {
		t.Fatalf("%d active jobs kept, want 3", n)
	}
	// The oldest fee-update job fell out of the window: stale.
	if j := f.s.Channel(ext.ch).Job(first[ext.ch]); j != nil {
		t.Fatal("job beyond MaxJobs kept")
	}
	if r := f.s.SubmitExtended(&messages.SubmitSharesExtended{ChannelID: ext.ch, JobID: first[ext.ch], NTime: f.tip.MinNTime, Extranonce: make([]byte, 8)}, t0); r.Code != CodeStaleShare {
		t.Fatalf("evicted job: %q", r.Code)
	}

	// Future jobs are bounded; the newest are kept.
	for i := 0; i < 3; i++ {
		jt := jobTemplate(t, newTemplateMsg(f.next, true, 201, nil), 16)
		f.next++
		if _, err := f.s.NewTemplate(jt); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.s.NewPrevHash(f.next-3, tipAt(mainnetBits, t0)); !errors.Is(err, ErrUnknownTemplate) {
		t.Fatal("dropped future template activated")
	}
	out, err := f.s.NewPrevHash(f.next-1, tipAt(mainnetBits, t0.Add(time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || len(f.s.Channel(ext.ch).Jobs()) != 1 || len(f.s.Channel(std.ch).Jobs()) != 1 {
		t.Fatalf("after new tip: %d messages, jobs %d/%d", len(out), len(f.s.Channel(ext.ch).Jobs()), len(f.s.Channel(std.ch).Jobs()))
	}
}

// TestLateChannelGetsWork: a channel opened mid-tip gets the current work as
// future job + SetNewPrevHash, then pending futures; a group member that
// joins late gets the group's job ids, so later group-wide messages fit.
func TestLateChannelGetsWork(t *testing.T) {
	f := newFixture(t, Config{})
	early := openStd(t, f.s, targetBits(4), t0)
	early.handle(f.block(mainnetBits, 1, t0))
	fut := jobTemplate(t, newTemplateMsg(f.next, true, 201, nil), 16)
	f.next++
	out, _ := f.s.NewTemplate(fut)
	early.handle(out)

	_, msgs := f.s.OpenStandard(&messages.OpenStandardMiningChannel{RequestID: 9, NominalHashRate: 1, MaxTarget: targetBits(4)}, t0)
	if len(msgs) != 4 {
		t.Fatalf("late open: %d messages", len(msgs))
	}
	late := newDevice(t, msgs)
	if late.active != early.active {
		t.Fatalf("late member's job %d, group's %d", late.active, early.active)
	}
	sh := late.grind(nil, 0, 0, late.meetsTarget)
	if r := f.s.SubmitStandard(sh.standard(late.ch), t0); r.Status != Accepted {
		t.Fatalf("late share: %q", r.Code)
	}
	// The group's SetNewPrevHash for the future job reaches both.
	tip := tipAt(mainnetBits, t0.Add(time.Minute))
	out, err := f.s.NewPrevHash(fut.ID, tip)
	if err != nil {
		t.Fatal(err)
	}
	early.handle(out) // the device fails the test if the job id is unknown
	late.handle(out)
	if late.active != early.active || late.prevHash != tip.PrevHash {
		t.Fatal("late member not moved to the new tip")
	}
	sh = late.grind(nil, 0, 0, late.meetsTarget)
	if r := f.s.SubmitStandard(sh.standard(late.ch), t0.Add(time.Minute)); r.Status != Accepted {
		t.Fatalf("late share on new tip: %q", r.Code)
	}
}

func TestCloseAndReprefix(t *testing.T) {
	alloc := mustAlloc(t, []byte{1, 2}, 10, 6)
	s := NewSession(Config{}, alloc)
	e1, _ := s.OpenExtended(&messages.OpenExtendedMiningChannel{MaxTarget: MaxTarget}, t0)
	s1, _ := s.OpenStandard(&messages.OpenStandardMiningChannel{MaxTarget: MaxTarget}, t0)
	s2, _ := s.OpenStandard(&messages.OpenStandardMiningChannel{MaxTarget: MaxTarget}, t0)
	if alloc.InUse() != 3 {
		t.Fatal(alloc.InUse())
	}
	if ids := s.Close(e1.ID()); len(ids) != 1 || s.Channel(e1.ID()) != nil || alloc.InUse() != 2 {
		t.Fatalf("close extended: %v", ids)
	}
	if ids := s.Close(12345); ids != nil {
		t.Fatal("closed an unknown id")
	}
	// Failover to a pool with a different prefix.
	if err := alloc.Rebase([]byte{9, 9, 9}, 12); err != nil {
		t.Fatal(err)
	}
	out := s.Reprefix()
	if len(out) != 2 {
		t.Fatalf("%d SetExtranoncePrefix", len(out))
	}
	for _, m := range out {
		p := m.(*messages.SetExtranoncePrefix)
		if len(p.ExtranoncePrefix) != 15 || p.ExtranoncePrefix[0] != 9 {
			t.Fatalf("new prefix %x", p.ExtranoncePrefix)
		}
	}
	// Closing the group id closes every member.
	if ids := s.Close(s1.GroupID()); len(ids) != 2 || s.Channel(s2.ID()) != nil || alloc.InUse() != 0 {
		t.Fatalf("close group: %v", ids)
	}
	s.OpenStandard(&messages.OpenStandardMiningChannel{MaxTarget: MaxTarget}, t0)
	s.CloseAll()
	if alloc.InUse() != 0 || len(s.Channels()) != 0 {
		t.Fatal("CloseAll left channels")
	}
}

func TestUpdateChannelAndSetTarget(t *testing.T) {
	s := NewSession(Config{}, mustAlloc(t, nil, 12, 8))
	c, _ := s.OpenExtended(&messages.OpenExtendedMiningChannel{NominalHashRate: 1e9, MaxTarget: MaxTarget}, t0)
	tests := []struct {
		name string
		m    *messages.UpdateChannel
		want string // error code, "target" for a SetTarget, "" for nothing
	}{
		{"unknown channel", &messages.UpdateChannel{ChannelID: 99, MaximumTarget: MaxTarget}, CodeInvalidChannelID},
		{"bad hashrate", &messages.UpdateChannel{ChannelID: c.ID(), NominalHashRate: float32(math.NaN()), MaximumTarget: MaxTarget}, CodeInvalidNominalHashrate},
		{"zero max", &messages.UpdateChannel{ChannelID: c.ID(), NominalHashRate: 1e9}, CodeMaxTargetOutOfRange},
		{"same", &messages.UpdateChannel{ChannelID: c.ID(), NominalHashRate: 1e9, MaximumTarget: MaxTarget}, ""},
		{"faster", &messages.UpdateChannel{ChannelID: c.ID(), NominalHashRate: 1e12, MaximumTarget: MaxTarget}, "target"},
		{"lower max", &messages.UpdateChannel{ChannelID: c.ID(), NominalHashRate: 1e12, MaximumTarget: targetBits(60)}, "target"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := s.UpdateChannel(tc.m, t0)
			switch tc.want {
			case "":
				if len(out) != 0 {
					t.Fatalf("%+v", out)
				}
			case "target":
				st, ok := out[0].(*messages.SetTarget)
				if !ok || st.MaximumTarget != c.Target() || CompareTargets(&st.MaximumTarget, &tc.m.MaximumTarget) > 0 {
					t.Fatalf("%+v", out)
				}
			default:
				if e, ok := out[0].(*messages.UpdateChannelError); !ok || e.ErrorCode != tc.want {
					t.Fatalf("%+v", out)
				}
			}
		})
	}
	if st := c.SetTarget(MaxTarget); st.MaximumTarget != targetBits(60) {
		t.Fatal("SetTarget above the client's max target")
	}
}

func TestCustomJobs(t *testing.T) {
	// Pool side: a JDC's extended channel with the pool's 4-byte prefix and
	// 8 bytes for the JDC.
	pool := NewSession(Config{}, mustAlloc(t, nil, 12, 8))
	_, msgs := pool.OpenExtended(&messages.OpenExtendedMiningChannel{NominalHashRate: 1, MaxTarget: targetBits(8), MinExtranonceSize: 8}, t0)
	dev := newDevice(t, msgs)
	c := pool.Channel(dev.ch)

	_, txs := fakeTxs(3, 3)
	jdcJT := jobTemplate(t, newTemplateMsg(1, false, 300, txs), 12)
	tip := tipAt(mainnetBits, t0)
	scm := jdcJT.SetCustomMiningJob(dev.ch, 1, []byte("tok"), &tip)
	poolJT, err := JobTemplateFromCustomJob(scm, len(c.ExtranoncePrefix())+c.ExtranonceSize(), 1)
	if err != nil {
		t.Fatal(err)
	}
	j, err := c.AddCustomJob(poolJT, ChainTip{PrevHash: scm.PrevHash, MinNTime: scm.MinNTime, NBits: scm.NBits, Since: t0})
	if err != nil || !j.Custom || j.Future() {
		t.Fatalf("custom job: %v", err)
	}
	// The JDC mines its own template and submits with the pool's job id.
	p, s := jdcJT.CoinbaseParts(false)
	dev.jobs[j.ID] = &devJob{version: jdcJT.Version, rolling: true, path: jdcJT.MerklePath, prefix: p, suffix: s}
	dev.active, dev.prevHash, dev.nbits, dev.minNTime = j.ID, tip.PrevHash, tip.NBits, tip.MinNTime
	sh := dev.grind([]byte("12345678"), 0, 0, dev.meetsTarget)
	if r := pool.SubmitExtended(sh.extended(dev.ch), t0); r.Status != Accepted {
		t.Fatalf("share on custom job: %q", r.Code)
	}
	// A second custom job on the same tip keeps the first valid; one on a
	// new tip makes it stale.
	j2, _ := c.AddCustomJob(poolJT, ChainTip{PrevHash: scm.PrevHash, MinNTime: scm.MinNTime, NBits: scm.NBits, Since: t0})
	if j2.ID <= j.ID || c.Job(j.ID) == nil {
		t.Fatal("second custom job")
	}
	newTip := tipAt(mainnetBits, t0.Add(time.Minute))
	if _, err := c.AddCustomJob(poolJT, newTip); err != nil {
		t.Fatal(err)
	}
	if r := pool.SubmitExtended(sh.extended(dev.ch), t0); r.Code != CodeStaleShare {
		t.Fatalf("custom job after new tip: %q", r.Code)
	}
	// Wrong size or a standard channel.
	if _, err := c.AddCustomJob(jdcJT, tip); err != nil {
		t.Fatal("same size refused")
	}
	small := jobTemplate(t, newTemplateMsg(2, false, 300, nil), 8)
	if _, err := c.AddCustomJob(small, tip); !errors.Is(err, ErrExtranonceMismatch) {
		t.Fatalf("wrong size: %v", err)
	}
	std, _ := pool.OpenStandard(&messages.OpenStandardMiningChannel{MaxTarget: MaxTarget}, t0)
	if _, err := std.AddCustomJob(poolJT, tip); err == nil {
		t.Fatal("custom job on a standard channel")
	}
}

func TestDupSetBounded(t *testing.T) {
	var d dupSet
	d.init(100)
	for k := uint64(1); k <= 100; k++ {
		if !d.add(k * 0x9e3779b97f4a7c15) {
			t.Fatal("fresh key refused")
		}
	}
	for k := uint64(1); k <= 100; k++ {
		if d.add(k * 0x9e3779b97f4a7c15) {
			t.Fatal("duplicate accepted")
		}
	}
	// Two more windows push the first keys out.
	for k := uint64(1000); k < 1200; k++ {
		d.add(k * 0x9e3779b97f4a7c15)
	}
	if !d.add(1 * 0x9e3779b97f4a7c15) {
		t.Fatal("key older than two windows still held")
	}
	if len(d.cur) > 256 || len(d.prev) > 256 {
		t.Fatalf("tables grew to %d/%d", len(d.cur), len(d.prev))
	}
	if !d.add(0) || d.add(0) {
		t.Fatal("zero key")
	}
	// A new tip forgets everything (cleared lazily on the next add).
	d.reset()
	last := uint64(1199)
	last *= 0x9e3779b97f4a7c15
	if !d.add(0) || !d.add(last) {
		t.Fatal("reset kept keys")
	}
}

// TestUpstreamForwarding: a JDC validates a device share, then forwards it to
// its pool, which validates it on its own channel with the same hash.
func TestUpstreamForwarding(t *testing.T) {
	// Pool: extended channel for the JDC with a 4-byte pool prefix and 12
	// bytes for the JDC.
	poolAlloc := mustAlloc(t, []byte{0xee, 0xee, 0xee, 0xee}, 12, 8)
	pool := NewSession(Config{}, poolAlloc)
	up, _ := pool.OpenExtended(&messages.OpenExtendedMiningChannel{NominalHashRate: 1, MaxTarget: targetBits(6), MinExtranonceSize: 8}, t0)
	if up.ExtranonceSize() != 8 {
		// The pool gives 8 rollable bytes: the JDC subdivides those.
		t.Fatalf("pool extranonce size %d", up.ExtranonceSize())
	}
	// JDC: its space is the pool channel's; devices roll 4 bytes.
	jdcAlloc := mustAlloc(t, up.ExtranoncePrefix(), up.ExtranonceSize(), 4)
	jdc := NewSession(Config{}, jdcAlloc)
	_, msgs := jdc.OpenExtended(&messages.OpenExtendedMiningChannel{NominalHashRate: 1, MaxTarget: targetBits(4), MinExtranonceSize: 4}, t0)
	dev := newDevice(t, msgs)

	_, txs := fakeTxs(3, 77)
	jt := jobTemplate(t, newTemplateMsg(5, true, 400, txs), jdcAlloc.FullSize())
	out, _ := jdc.NewTemplate(jt)
	dev.handle(out)
	tip := tipAt(mainnetBits, t0)
	out, _ = jdc.NewPrevHash(5, tip)
	dev.handle(out)

	// The pool accepts the JDC's custom job for the same template.
	scm := jt.SetCustomMiningJob(up.ID(), 1, []byte("tok"), jdc.Tip())
	poolJT, err := JobTemplateFromCustomJob(scm, len(up.ExtranoncePrefix())+up.ExtranonceSize(), 1)
	if err != nil {
		t.Fatal(err)
	}
	pj, err := up.AddCustomJob(poolJT, *jdc.Tip())
	if err != nil {
		t.Fatal(err)
	}
	upTarget := up.Target()
	ext := []byte{1, 2, 3, 4}
	sh := dev.grind(ext, 0, 0, func(h *[32]byte) bool { return MeetsTarget(h, &upTarget) })
	r := jdc.SubmitExtended(sh.extended(dev.ch), t0)
	if !r.OK() || !MeetsTarget(&r.Hash, &upTarget) {
		t.Fatalf("jdc: %v %q", r.Status, r.Code)
	}
	fwd := r.Upstream(ext, len(up.ExtranoncePrefix()), up.ID(), 1, pj.ID)
	pr := pool.SubmitExtended(fwd, t0)
	if pr.Status != Accepted || pr.Hash != r.Hash {
		t.Fatalf("pool: %v %q", pr.Status, pr.Code)
	}
	if e := (&Result{Code: CodeStaleShare}).Error(3, 9); e.ErrorCode != CodeStaleShare || e.SequenceNumber != 9 {
		t.Fatal("Error")
	}
}

// TestReprefixKeepsOldJobs: after a SetExtranoncePrefix, shares on jobs
// issued before still hash with the old prefix; new jobs use the new one.
func TestReprefixKeepsOldJobs(t *testing.T) {
	f := newFixture(t, Config{})
	dev := openExt(t, f.s, targetBits(6), t0)
	dev.handle(f.block(mainnetBits, 2, t0))
	oldJob := dev.active
	oldPrefix := dev.prefix
	ext := []byte("rollroll")
	before := dev.grind(ext, 0, 0, dev.meetsTarget)

	// Failover: another pool prefix of the same length, same full size.
	if err := f.alloc.Rebase([]byte{0xcc, 0xdd}, 14); err != nil {
		t.Fatal(err)
	}
	dev.handle(f.s.Reprefix())
	if string(dev.prefix) == string(oldPrefix) {
		t.Fatal("prefix unchanged")
	}
	if r := f.s.SubmitExtended(before.extended(dev.ch), t0); r.Status != Accepted {
		t.Fatalf("share on the old job after reprefix: %q", r.Code)
	}
	// New work uses the new prefix.
	_, txs := fakeTxs(1, 5)
	jt := jobTemplate(t, newTemplateMsg(f.next, false, 200, txs), f.alloc.FullSize())
	out, err := f.s.NewTemplate(jt)
	if err != nil {
		t.Fatal(err)
	}
	dev.handle(out)
	if dev.active == oldJob {
		t.Fatal("no new job")
	}
	after := dev.grind(ext, 0, 0, dev.meetsTarget)
	r := f.s.SubmitExtended(after.extended(dev.ch), t0)
	if r.Status != Accepted || string(r.Job.ExtranoncePrefix) != string(dev.prefix) {
		t.Fatalf("share on the new job: %q", r.Code)
	}
}

func TestAppendVariantsShareTip(t *testing.T) {
	alloc := mustAlloc(t, nil, 12, 8)
	var sessions []*Session
	var devs []*device
	for i := 0; i < 3; i++ {
		s := NewSession(Config{}, alloc)
		sessions = append(sessions, s)
		devs = append(devs, openExt(t, s, targetBits(4), t0))
	}
	jt := jobTemplate(t, newTemplateMsg(1, true, 10, nil), alloc.FullSize())
	var buf []codec.Message
	for i, s := range sessions {
		var err error
		buf, err = s.AppendNewTemplate(buf[:0], jt)
		if err != nil || len(buf) != 1 {
			t.Fatalf("append template: %v %d", err, len(buf))
		}
		devs[i].handle(buf)
	}
	tip := tipAt(mainnetBits, t0)
	tip.Target = tip.NetworkTarget()
	for i, s := range sessions {
		var err error
		buf, err = s.AppendNewPrevHash(buf[:0], 1, &tip)
		if err != nil || len(buf) != 1 {
			t.Fatalf("append prev hash: %v %d", err, len(buf))
		}
		devs[i].handle(buf)
		if s.Tip() != &tip {
			t.Fatal("tip copied")
		}
		sh := devs[i].grind(make([]byte, 8), 0, 0, devs[i].meetsTarget)
		if r := s.SubmitExtended(sh.extended(devs[i].ch), t0); r.Status != Accepted {
			t.Fatalf("session %d: %q", i, r.Code)
		}
	}
	// A tip without Target is copied and completed, never modified.
	bare := tipAt(mainnetBits, t0.Add(time.Minute))
	jt2 := jobTemplate(t, newTemplateMsg(2, true, 11, nil), alloc.FullSize())
	sessions[0].NewTemplate(jt2)
	if _, err := sessions[0].AppendNewPrevHash(nil, 2, &bare); err != nil {
		t.Fatal(err)
	}
	if bare.Target != ([32]byte{}) || sessions[0].Tip() == &bare || sessions[0].Tip().Target != bare.NetworkTarget() {
		t.Fatal("zero-target tip handling")
	}
	if out, err := sessions[1].AppendNewPrevHash(buf[:0], 99, &tip); !errors.Is(err, ErrUnknownTemplate) || len(out) != 0 {
		t.Fatal("unknown template")
	}
}

// TestSessionsInParallel: sessions in their own goroutines share one
// allocator, one job template and one tip (run with -race).
func TestSessionsInParallel(t *testing.T) {
	alloc := mustAlloc(t, []byte{7}, 12, 8)
	_, txs := fakeTxs(3, 3)
	jt := jobTemplate(t, newTemplateMsg(1, true, 10, txs), alloc.FullSize())
	tip := tipAt(mainnetBits, t0)
	tip.Target = tip.NetworkTarget()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := NewSession(Config{}, alloc)
			for i := 0; i < 20; i++ {
				s.OpenExtended(&messages.OpenExtendedMiningChannel{NominalHashRate: 1, MaxTarget: MaxTarget}, t0)
				s.OpenStandard(&messages.OpenStandardMiningChannel{NominalHashRate: 1, MaxTarget: MaxTarget}, t0)
			}
			if _, err := s.NewTemplate(jt); err != nil {
				t.Error(err)
				return
			}
			if _, err := s.AppendNewPrevHash(nil, 1, &tip); err != nil {
				t.Error(err)
				return
			}
			for _, c := range s.Channels() {
				if c.Kind() == Extended {
					s.SubmitExtended(&messages.SubmitSharesExtended{ChannelID: c.ID(), JobID: c.Jobs()[0].ID, NTime: tip.MinNTime, Version: jt.Version, Extranonce: make([]byte, 8)}, t0)
				} else {
					s.SubmitStandard(&messages.SubmitSharesStandard{ChannelID: c.ID(), JobID: c.Jobs()[0].ID, NTime: tip.MinNTime, Version: jt.Version}, t0)
				}
			}
			s.CloseAll()
		}()
	}
	wg.Wait()
	if alloc.InUse() != 0 {
		t.Fatalf("%d allocations left", alloc.InUse())
	}
}
