package mining

import (
	"bytes"
	"testing"
	"time"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// netFixture is a session with one tip and one active template.
type netFixture struct {
	t     *testing.T
	s     *Session
	alloc *ExtranonceAllocator
	txs   [][]byte
	tip   ChainTip
	jt    *JobTemplate
	next  uint64
}

func newFixture(t *testing.T, cfg Config) *netFixture {
	alloc := mustAlloc(t, []byte{0xaa, 0xbb}, 14, 8) // full extranonce 16
	return &netFixture{t: t, s: NewSession(cfg, alloc), alloc: alloc, next: 1}
}

// block sends a future template with ntx transactions and activates it on a
// new tip with bits, like a TP on a new block. It returns the messages.
func (f *netFixture) block(bits uint32, ntx int, now time.Time) []codec.Message {
	f.t.Helper()
	raw, txs := fakeTxs(ntx, int64(f.next))
	f.txs = raw
	f.jt = jobTemplate(f.t, newTemplateMsg(f.next, true, 200, txs), f.alloc.FullSize())
	f.next++
	out, err := f.s.NewTemplate(f.jt)
	if err != nil {
		f.t.Fatal(err)
	}
	f.tip = tipAt(bits, now)
	more, err := f.s.NewPrevHash(f.jt.ID, f.tip)
	if err != nil {
		f.t.Fatal(err)
	}
	return append(out, more...)
}

func openExt(t *testing.T, s *Session, maxTarget [32]byte, now time.Time) *device {
	_, msgs := s.OpenExtended(&messages.OpenExtendedMiningChannel{RequestID: 1, UserIdentity: "dev", NominalHashRate: 1, MaxTarget: maxTarget, MinExtranonceSize: 4}, now)
	return newDevice(t, msgs)
}

func openStd(t *testing.T, s *Session, maxTarget [32]byte, now time.Time) *device {
	_, msgs := s.OpenStandard(&messages.OpenStandardMiningChannel{RequestID: 2, UserIdentity: "std", NominalHashRate: 1, MaxTarget: maxTarget}, now)
	return newDevice(t, msgs)
}

func TestShareValidationExtended(t *testing.T) {
	f := newFixture(t, Config{})
	dev := openExt(t, f.s, targetBits(8), t0)
	dev.handle(f.block(mainnetBits, 3, t0))
	ext := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	now := t0.Add(90 * time.Second)

	good := dev.grind(ext, 0, 0, dev.meetsTarget)
	r := f.s.SubmitExtended(good.extended(dev.ch), now)
	if r.Status != Accepted || r.Hash != good.hash || r.Job == nil || r.Job.ID != good.job {
		t.Fatalf("good share: %+v", r)
	}
	if r.Difficulty != DifficultyFromTarget(targetBits(8)) {
		t.Fatalf("difficulty %v", r.Difficulty)
	}
	// The rebuilt header hashes to the same value.
	if h := r.Header.Hash(); h != good.hash {
		t.Fatal("Result.Header does not hash to Result.Hash")
	}

	rolled := dev.grind(ext, dev.jobs[dev.active].version|0x00400000, 0, dev.meetsTarget)
	late := dev.grind(ext, 0, 60, dev.meetsTarget) // nTime rolled one minute
	low := dev.grind(ext, 0, 0, func(h *[32]byte) bool { return !dev.meetsTarget(h) })
	mod := func(sh devShare, fn func(m *messages.SubmitSharesExtended)) *messages.SubmitSharesExtended {
		m := sh.extended(dev.ch)
		fn(m)
		return m
	}
	tests := []struct {
		name string
		m    *messages.SubmitSharesExtended
		want string // "" = accepted
	}{
		{"rolled version bit in mask", rolled.extended(dev.ch), ""},
		{"ntime rolled 60s", late.extended(dev.ch), ""},
		{"duplicate", good.extended(dev.ch), CodeDuplicateShare},
		{"unknown channel", mod(good, func(m *messages.SubmitSharesExtended) { m.ChannelID = 777 }), CodeInvalidChannelID},
		{"unknown job", mod(good, func(m *messages.SubmitSharesExtended) { m.JobID = 999 }), CodeInvalidJobID},
		{"short extranonce", mod(good, func(m *messages.SubmitSharesExtended) { m.Extranonce = ext[:7] }), CodeBadExtranonceSize},
		{"long extranonce", mod(good, func(m *messages.SubmitSharesExtended) { m.Extranonce = append(ext, 0) }), CodeBadExtranonceSize},
		{"ntime before min", mod(good, func(m *messages.SubmitSharesExtended) { m.NTime = f.tip.MinNTime - 1 }), CodeInvalidTimestamp},
		{"ntime 3h ahead", mod(good, func(m *messages.SubmitSharesExtended) { m.NTime = uint32(now.Unix()) + 3*3600 }), CodeInvalidTimestamp},
		{"version bit outside mask", mod(good, func(m *messages.SubmitSharesExtended) { m.Version ^= 1 }), CodeInvalidVersionBits},
		{"version top bits", mod(good, func(m *messages.SubmitSharesExtended) { m.Version ^= 0x80000000 }), CodeInvalidVersionBits},
		{"altered nonce", mod(low, func(*messages.SubmitSharesExtended) {}), CodeDifficultyTooLow},
		{"altered extranonce", mod(good, func(m *messages.SubmitSharesExtended) { m.Extranonce = []byte{8, 7, 6, 5, 4, 3, 2, 1} }), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.s.SubmitExtended(tc.m, now)
			if tc.name == "altered extranonce" {
				// Another extranonce gives another hash: almost surely too
				// high, and never the grinder's.
				if r.Hash == good.hash {
					t.Fatal("extranonce not hashed")
				}
				return
			}
			if tc.want == "" {
				if r.Status != Accepted {
					t.Fatalf("rejected %q", r.Code)
				}
				return
			}
			if r.Status != Rejected || r.Code != tc.want {
				t.Fatalf("got %v %q, want %q", r.Status, r.Code, tc.want)
			}
		})
	}
	st := f.s.Channel(dev.ch).Stats()
	if st.Accepted != 3 || st.Blocks != 0 {
		t.Fatalf("stats %+v", st)
	}

	// A new block makes the old job stale.
	dev.handle(f.block(mainnetBits, 0, now))
	if r := f.s.SubmitExtended(late.extended(dev.ch), now); r.Code != CodeStaleShare {
		t.Fatalf("old job after new tip: %v %q", r.Status, r.Code)
	}
	fresh := dev.grind(ext, 0, 0, dev.meetsTarget)
	if r := f.s.SubmitExtended(fresh.extended(dev.ch), now); r.Status != Accepted {
		t.Fatalf("share on new tip: %q", r.Code)
	}
	// A standard share on an extended channel names the wrong channel kind.
	if r := f.s.SubmitStandard(fresh.standard(dev.ch), now); r.Code != CodeInvalidChannelID {
		t.Fatalf("standard share on extended channel: %q", r.Code)
	}
}

func TestShareValidationNoRolling(t *testing.T) {
	f := newFixture(t, Config{NoVersionRolling: true, VersionMask: BIP320VersionMask})
	dev := openExt(t, f.s, targetBits(4), t0)
	dev.handle(f.block(mainnetBits, 1, t0))
	if dev.jobs[dev.active].rolling {
		t.Fatal("job allows rolling")
	}
	sh := dev.grind(make([]byte, 8), dev.jobs[dev.active].version|0x2000, 0, dev.meetsTarget)
	if r := f.s.SubmitExtended(sh.extended(dev.ch), t0); r.Code != CodeVersionRollingDenied {
		t.Fatalf("rolled version without rolling: %v %q", r.Status, r.Code)
	}
}

func TestShareValidationStandard(t *testing.T) {
	for _, stdJobs := range []bool{true, false} {
		name := "group extended job"
		if stdJobs {
			name = "NewMiningJob per channel"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, Config{StandardJobs: stdJobs})
			a := openStd(t, f.s, targetBits(8), t0)
			b := openStd(t, f.s, targetBits(8), t0)
			if a.grp == 0 || a.grp != b.grp || a.ch == b.ch || a.ch == a.grp {
				t.Fatalf("channels %d %d group %d %d", a.ch, b.ch, a.grp, b.grp)
			}
			out := f.block(mainnetBits, 4, t0)
			a.handle(out)
			b.handle(out)
			if !stdJobs {
				// The group gets one job and one prev hash.
				if len(out) != 2 {
					t.Fatalf("%d messages for a group", len(out))
				}
				// A header-only device behind a proxy: the proxy turns the
				// group's extended job into a standard one with the member's
				// prefix as the whole extranonce.
				for _, d := range []*device{a, b} {
					j := d.jobs[d.active]
					r := d.root(j, nil)
					j.merkleRoot = &r
				}
			} else if len(out) != 4 {
				t.Fatalf("%d messages for two standard channels", len(out))
			}
			for _, d := range []*device{a, b} {
				sh := d.grind(nil, 0, 0, d.meetsTarget)
				r := f.s.SubmitStandard(sh.standard(d.ch), t0)
				if r.Status != Accepted || r.Hash != sh.hash {
					t.Fatalf("channel %d: %v %q", d.ch, r.Status, r.Code)
				}
				if r2 := f.s.SubmitStandard(sh.standard(d.ch), t0); r2.Code != CodeDuplicateShare {
					t.Fatalf("duplicate: %q", r2.Code)
				}
				// The same header on the other channel has another merkle root.
				other := a
				if d == a {
					other = b
				}
				if r3 := f.s.SubmitStandard(sh.standard(other.ch), t0); r3.Hash == sh.hash {
					t.Fatal("channels share a merkle root")
				}
				if r4 := f.s.SubmitExtended(sh.extended(d.ch), t0); r4.Code != CodeInvalidChannelID {
					t.Fatalf("extended share on standard channel: %q", r4.Code)
				}
			}
		})
	}
}

func TestBlockFound(t *testing.T) {
	f := newFixture(t, Config{})
	dev := openExt(t, f.s, targetBits(12), t0)
	dev.handle(f.block(regtestBits, 5, t0))
	net := templates.TargetFromBits(regtestBits)
	ext := []byte("abcdefgh")
	// Meets the (easy) network target but not the channel's: still a block.
	sh := dev.grind(ext, 0, 0, func(h *[32]byte) bool { return MeetsTarget(h, &net) && !dev.meetsTarget(h) })
	r := f.s.SubmitExtended(sh.extended(dev.ch), t0)
	if r.Status != BlockFound {
		t.Fatalf("got %v %q", r.Status, r.Code)
	}
	raw := r.Job.Block(&r.Header, ext, f.txs)
	blk, err := btcutil.NewBlockFromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	if [32]byte(*blk.Hash()) != r.Hash {
		t.Fatal("block hash differs from share hash")
	}
	if err := blockchain.CheckProofOfWork(blk, chaincfg.RegressionNetParams.PowLimit); err != nil {
		t.Fatal(err)
	}
	if err := blockchain.ValidateWitnessCommitment(blk); err != nil {
		t.Fatal(err)
	}
	if root := blockchain.CalcMerkleRoot(blk.Transactions(), false); root != blk.MsgBlock().Header.MerkleRoot {
		t.Fatal("merkle root")
	}
	// SubmitSolution carries the witness coinbase; PushSolution the full
	// extranonce between the declared prefix and suffix.
	ss := r.Job.SubmitSolution(&r.Header, ext)
	var cbuf bytes.Buffer
	if err := blk.MsgBlock().Transactions[0].Serialize(&cbuf); err != nil {
		t.Fatal(err)
	}
	if ss.TemplateID != f.jt.ID || !bytes.Equal(ss.CoinbaseTx, cbuf.Bytes()) || ss.HeaderNonce != sh.nonce || ss.HeaderTimestamp != sh.ntime || ss.Version != sh.version {
		t.Fatalf("SubmitSolution %+v", ss)
	}
	ps := r.Job.PushSolution(&r.Header, ext)
	p, s := f.jt.CoinbaseParts(true)
	if !bytes.Equal(append(append(append([]byte{}, p...), ps.Extranonce...), s...), cbuf.Bytes()) || ps.NBits != regtestBits || ps.PrevHash != f.tip.PrevHash {
		t.Fatalf("PushSolution %+v", ps)
	}
	if f.s.Channel(dev.ch).Stats().Blocks != 1 {
		t.Fatal("block not counted")
	}
}
