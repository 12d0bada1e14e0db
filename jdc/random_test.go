package jdc

import (
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/sv2/messages"
)

// world answers the core's requests like real peers would, sometimes
// failing, and checks after every step that the devices mine valid work of
// the active source (fixture.apply). At the end every peer heals and jdc
// must be back on pair 0.
type world struct {
	*fixture
	rng      *rand.Rand
	tokens   map[int]uint32 // pair → outstanding token request
	declares map[int]DeclareRequest
	customs  map[int]*messages.SetCustomMiningJob
	txReqs   map[uint64]bool // RequestTransactionData asked again by the core
	poolUp   []bool
	jdsUp    []bool
	failProb float64
	// prompt: every request is answered at once (the healed world).
	prompt bool
}

// answerAll answers every outstanding request successfully.
func (w *world) answerAll() {
	f := w.fixture
	for k := 0; k < 20; k++ {
		var a Actions
		switch {
		case len(w.txReqs) > 0:
			for id := range w.txReqs {
				delete(w.txReqs, id)
				a = f.txData(id)
				break
			}
		case len(w.tokens) > 0:
			for i, req := range w.tokens {
				delete(w.tokens, i)
				if w.jdsUp[i] {
					a = f.apply(f.c.Token(f.now, i, req, tokenMsg(i, int(req)), nil))
				}
				break
			}
		case len(w.declares) > 0:
			for i, d := range w.declares {
				delete(w.declares, i)
				if w.jdsUp[i] {
					a = f.apply(f.c.Declared(f.now, i, d.Req, []byte("dt"), nil))
				}
				break
			}
		case len(w.customs) > 0:
			for i, m := range w.customs {
				delete(w.customs, i)
				if w.poolUp[i] {
					a = f.apply(f.c.PoolMessage(f.now, i, &messages.SetCustomMiningJobSuccess{ChannelID: m.ChannelID, RequestID: m.RequestID, JobID: m.RequestID}))
				}
				break
			}
		default:
			return
		}
		w.record(a)
	}
}

func (w *world) do(a Actions) {
	w.record(a)
	if w.prompt {
		w.answerAll()
	}
}

func (w *world) record(a Actions) {
	for _, id := range a.TxData {
		w.txReqs[id] = true
	}
	for _, r := range a.Tokens {
		w.tokens[r.Pair] = r.Req
	}
	for _, d := range a.Declares {
		w.declares[d.Pair] = d
	}
	for _, s := range a.Pool {
		if m, ok := s.Msg.(*messages.SetCustomMiningJob); ok {
			w.customs[s.Pair] = m
		}
	}
	for _, r := range a.Resets {
		w.poolUp[r.Pair], w.jdsUp[r.Pair] = false, false
		delete(w.tokens, r.Pair)
		delete(w.declares, r.Pair)
		delete(w.customs, r.Pair)
	}
}

// txData answers a RequestTransactionData: the data, or tp's refusal.
func (w *world) txData(id uint64, fail bool) Actions {
	f := w.fixture
	delete(w.txReqs, id)
	if fail {
		return f.apply(f.c.TxDataFailed(f.now, id, errors.New("template-id-not-found")))
	}
	return f.txData(id)
}

func (w *world) step() {
	f := w.fixture
	n := len(w.poolUp)
	i := w.rng.IntN(n)
	fail := w.rng.Float64() < w.failProb
	var a Actions
	switch w.rng.IntN(15) {
	case 12:
		if w.poolUp[i] {
			a = f.apply(f.c.PoolMessage(f.now, i, &messages.SetExtranoncePrefix{ChannelID: uint32(10 + i), ExtranoncePrefix: []byte{byte(w.rng.IntN(256))}}))
		}
	case 13:
		if w.poolUp[i] && fail {
			a = f.apply(f.c.PoolMessage(f.now, i, &messages.CloseChannel{ChannelID: uint32(10 + i), ReasonCode: "bye"}))
		}
	case 14:
		if fail {
			a = f.apply(f.c.TemplateProviderReset(f.now))
		}
	case 0:
		id := f.newTip(w.rng.IntN(3))
		a = f.all[len(f.all)-1]
		w.do(f.all[len(f.all)-2])
		w.do(a)
		a = w.txData(id, fail)
	case 1:
		m := f.newTemplate(false, w.rng.IntN(3))
		w.do(f.all[len(f.all)-1])
		a = w.txData(m.TemplateID, fail)
	case 10:
		for id := range w.txReqs {
			a = w.txData(id, fail)
			break
		}
	case 2:
		if !w.poolUp[i] {
			w.poolUp[i] = true
			a = f.apply(f.c.PoolUp(f.now, i, testChannel(i)))
		} else if fail {
			w.poolUp[i] = false
			delete(w.customs, i)
			a = f.apply(f.c.PoolDown(f.now, i, "killed"))
		}
	case 3:
		if !w.jdsUp[i] {
			w.jdsUp[i] = true
			a = f.apply(f.c.JDSUp(f.now, i))
		} else if fail {
			w.jdsUp[i] = false
			delete(w.tokens, i)
			delete(w.declares, i)
			a = f.apply(f.c.JDSDown(f.now, i, "killed"))
		}
	case 4, 5:
		if req, ok := w.tokens[i]; ok && w.jdsUp[i] {
			delete(w.tokens, i)
			a = f.apply(f.c.Token(f.now, i, req, tokenMsg(i, int(req)), nil))
		}
	case 6:
		if d, ok := w.declares[i]; ok && w.jdsUp[i] {
			delete(w.declares, i)
			var err error
			if fail {
				err = &DeclareError{Code: "invalid-job"}
				if w.rng.IntN(2) == 0 {
					err = &DeclareError{Code: "stale-chain-tip"}
				}
			}
			a = f.apply(f.c.Declared(f.now, i, d.Req, []byte("dt"), err))
		}
	case 7:
		if m, ok := w.customs[i]; ok && w.poolUp[i] {
			delete(w.customs, i)
			var msg = any(&messages.SetCustomMiningJobSuccess{ChannelID: m.ChannelID, RequestID: m.RequestID, JobID: m.RequestID})
			if fail {
				code := "invalid-job"
				if w.rng.IntN(2) == 0 {
					code = "stale-chain-tip"
				}
				msg = &messages.SetCustomMiningJobError{ChannelID: m.ChannelID, RequestID: m.RequestID, ErrorCode: code}
			}
			switch x := msg.(type) {
			case *messages.SetCustomMiningJobSuccess:
				a = f.apply(f.c.PoolMessage(f.now, i, x))
			case *messages.SetCustomMiningJobError:
				a = f.apply(f.c.PoolMessage(f.now, i, x))
			}
		}
	case 8:
		if w.poolUp[i] {
			code := "stale-share"
			if fail {
				code = "invalid-share"
			}
			a = f.apply(f.c.PoolMessage(f.now, i, &messages.SubmitSharesError{ChannelID: uint32(10 + i), ErrorCode: code}))
		}
	case 9:
		if f.devActive != 0 {
			a = f.apply(f.c.DeviceShare(f.now, f.share(w.rng.IntN(50) == 0)))
		}
	default:
		a = f.advance(time.Duration(w.rng.IntN(4000)) * time.Millisecond)
	}
	w.do(a)
}

func TestRandomizedFailover(t *testing.T) {
	seeds := uint64(12)
	if n, err := strconv.ParseUint(os.Getenv("JDC_RANDOM_SEEDS"), 10, 64); err == nil {
		seeds = n // a longer search: JDC_RANDOM_SEEDS=500 go test -run Randomized ./jdc
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		f := newFixture(t, poolCfg(FullTemplate, 3))
		w := &world{
			fixture: f, rng: rand.New(rand.NewPCG(seed, 99)),
			tokens: map[int]uint32{}, declares: map[int]DeclareRequest{}, customs: map[int]*messages.SetCustomMiningJob{}, txReqs: map[uint64]bool{},
			poolUp: make([]bool, 3), jdsUp: make([]bool, 3), failProb: 0.3,
		}
		f.newTip(1)
		w.do(f.all[len(f.all)-1])
		for k := 0; k < 1500; k++ {
			w.step()
		}
		// Heal: no failures, every peer up and answering, time passing.
		w.failProb, w.prompt = 0, true
		for k := 0; k < 3000 && f.c.Active() != 0; k++ {
			w.step()
		}
		if f.c.Active() != 0 {
			t.Fatalf("seed %d: not back on pair 0 after healing: active %s states %+v", seed, SourceName(f.c.Active()), f.c.States())
		}
		// Everything the peers made the core hold stayed bounded.
		if len(f.c.templates) > DefaultMaxTemplates || len(f.c.works) > 4*DefaultMaxTemplates {
			t.Fatalf("seed %d: %d templates, %d works kept", seed, len(f.c.templates), len(f.c.works))
		}
		for _, p := range f.c.pairs {
			if len(p.sent) > maxSentJobs || (p.job != nil && len(p.job.pending) > DefaultMaxPendingShares) {
				t.Fatalf("seed %d: pair %d holds %d sent jobs", seed, p.idx, len(p.sent))
			}
		}
		switches := 0
		for _, a := range f.all {
			switches += len(a.Switches)
		}
		t.Logf("seed %d: %d switches", seed, switches)
	}
}
