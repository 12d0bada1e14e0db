package daemon

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/declare"
	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/jdc"
)

// paysTo reports whether the coinbase's first output pays script.
func paysTo(e *env, h int32, script []byte) bool {
	b := e.blockAt(h)
	return bytes.Equal(b.Transactions[0].TxOut[0].PkScript, script)
}

// TestFullTemplatePool: the whole pipeline on a real btcd — tp templates
// with real transactions, declared to sv2kit's JDS, custom jobs accepted by
// the test pool, a CPU miner on jdc finding blocks the node accepts, paying
// the pool.
func TestFullTemplatePool(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	w := e.n.Wallet()
	if err := w.Fund(e.ctx, 2); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := w.Send(e.ctx, regtest.SendOpts{FeeRate: float64(5 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	d := e.startJDC(jdc.FullTemplate, nil)
	start := e.height()
	waitFor(t, 30*time.Second, "pair 0 healthy", func() bool {
		s := d.Status()
		return s.Active == 0 && s.States[0].State == "healthy"
	})
	e.startMiner(d.DevicesAddr(), 4)
	waitFor(t, 60*time.Second, "two blocks", func() bool { return e.height() >= start+2 })
	for h := start + 1; h <= start+2; h++ {
		b := e.blockAt(h)
		if !paysTo(e, h, e.pairs[0].payout) {
			t.Fatalf("block %d coinbase pays %x, not the pool", h, b.Transactions[0].TxOut[0].PkScript)
		}
	}
	// The wallet's transactions end up in a block mined on a declared job
	// (the JDS learnt them through ProvideMissingTransactions).
	waitFor(t, 60*time.Second, "a pool block with the wallet's transactions", func() bool {
		for h := start + 1; h <= e.height(); h++ {
			if b := e.blockAt(h); len(b.Transactions) >= 4 && paysTo(e, h, e.pairs[0].payout) {
				return true
			}
		}
		return false
	})
	if js := e.pairs[0].jds.Core().Stats(); js.Declared == 0 {
		t.Fatalf("JDS stats %+v", js)
	}
	st := e.pairs[0].pool.Stats()
	if st.CustomJobsAccepted == 0 || st.SharesAccepted == 0 {
		t.Fatalf("pool stats %+v", st)
	}
	t.Logf("pool: %d custom jobs, %d shares, %d blocks found", st.CustomJobsAccepted, st.SharesAccepted, st.BlocksFound)
}

// TestSoloMode: no pool at all; blocks pay the configured script.
func TestSoloMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	script := append([]byte{0x00, 0x14}, bytes.Repeat([]byte{0x5e}, 20)...)
	blocks := t.TempDir()
	d := e.startJDC(jdc.SoloMode, func(c *Config) { c.Core.SoloScript = script; c.BlocksDir = blocks })
	start := e.height()
	e.startMiner(d.DevicesAddr(), 4)
	waitFor(t, 60*time.Second, "two blocks", func() bool { return e.height() >= start+2 })
	for h := start + 1; h <= start+2; h++ {
		if !paysTo(e, h, script) {
			t.Fatalf("block %d does not pay the solo script", h)
		}
	}
	if d.Status().Active != jdc.Solo {
		t.Fatal("not solo")
	}
	// Every accepted block was written to disk first, whole.
	for h := start + 1; h <= start+2; h++ {
		b := e.blockAt(h)
		raw, err := os.ReadFile(filepath.Join(blocks, b.BlockHash().String()+".json"))
		if err != nil {
			t.Fatalf("block %d not on disk: %v", h, err)
		}
		var rec blockRecord
		if err := json.Unmarshal(raw, &rec); err != nil || rec.Block == "" || rec.Source != "solo" {
			t.Fatalf("block file %s: %v", raw, err)
		}
	}
}

// TestCoinbaseOnly: custom jobs with bare tokens; the JDS never sees a
// declaration (no transaction data leaves the miner), blocks still pay the
// pool and are accepted.
func TestCoinbaseOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	w := e.n.Wallet()
	if err := w.Fund(e.ctx, 1); err != nil {
		t.Fatal(err)
	}
	d := e.startJDC(jdc.CoinbaseOnly, nil)
	start := e.height()
	waitFor(t, 30*time.Second, "pair 0 healthy", func() bool {
		s := d.Status()
		return s.Active == 0 && s.States[0].State == "healthy"
	})
	e.startMiner(d.DevicesAddr(), 4)
	if _, err := w.Send(e.ctx, regtest.SendOpts{FeeRate: 9}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "two blocks", func() bool { return e.height() >= start+2 })
	for h := start + 1; h <= start+2; h++ {
		if !paysTo(e, h, e.pairs[0].payout) {
			t.Fatalf("block %d does not pay the pool", h)
		}
	}
	js := e.pairs[0].jds.Core().Stats()
	if js.Declared != 0 || js.TokensAllocated == 0 {
		t.Fatalf("JDS stats %+v: coinbase-only must allocate tokens and declare nothing", js)
	}
	if st := e.pairs[0].pool.Stats(); st.CustomJobsAccepted == 0 {
		t.Fatalf("pool stats %+v", st)
	}
}

// waitActive waits until jdc mines for src and a new block paying payout
// (nil: any) was accepted by the node after that.
func waitActive(t *testing.T, e *env, d *Daemon, src int, what string, payout []byte) {
	t.Helper()
	waitFor(t, 30*time.Second, what+": active "+jdc.SourceName(src), func() bool { return d.Status().Active == src })
	if payout == nil {
		return
	}
	from := e.height()
	waitFor(t, 30*time.Second, what+": a block paying "+jdc.SourceName(src), func() bool {
		h := e.height()
		for x := from + 1; x <= h; x++ {
			if paysTo(e, x, payout) {
				return true
			}
		}
		return false
	})
}

// TestFailover: two pairs; every trigger moves jdc to pair 1 while the
// miner keeps finding blocks (its work stays valid), and jdc returns to
// pair 0 once it is healthy again; tp killed and restarted is reconnected.
func TestFailover(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	reg := prometheus.NewRegistry()
	solo := append([]byte{0x00, 0x14}, bytes.Repeat([]byte{0x50}, 20)...)
	d := e.startJDC(jdc.CoinbaseOnly, func(c *Config) { c.Registerer = reg; c.Core.SoloScript = solo })
	p0, p1 := e.pairs[0], e.pairs[1]
	waitActive(t, e, d, 0, "start", nil)
	// The start grace: solo → pair-0, never through pair-1 first.
	if n := switchesWith(t, reg, map[string]string{"to": "pair-1"}); n != 0 {
		t.Fatalf("%v switches to pair-1 at start", n)
	}
	m := e.startMiner(d.DevicesAddr(), 4)
	waitActive(t, e, d, 0, "start", p0.payout)

	for _, tc := range []struct {
		name   string
		reject func(bool)
		reason string
	}{
		{"pool rejects custom jobs", p0.pool.SetRejectCustomJobs, "custom-job-rejected: rejected-by-pool-policy"},
		{"pool rejects shares", p0.pool.SetRejectShares, "shares-rejected: rejected-by-pool-policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.reject(true)
			waitActive(t, e, d, 1, tc.name, p1.payout)
			if r := d.Status().States[0].Reason; r != tc.reason {
				t.Fatalf("pair 0 reason %q", r)
			}
			tc.reject(false)
			waitActive(t, e, d, 0, "recovered", p0.payout)
		})
	}
	t.Run("JDS killed", func(t *testing.T) {
		addr := p0.jdsAddr
		p0.jdsStop()
		waitActive(t, e, d, 1, "JDS killed", p1.payout)
		e.startJDS(0, addr)
		// The pool checks custom jobs with the JDS it was started with.
		addrPool := p0.poolAddr
		_ = p0.pool.Close()
		e.startPool(0, addrPool, false, false)
		waitActive(t, e, d, 0, "JDS back", p0.payout)
	})
	t.Run("pool killed", func(t *testing.T) {
		addr := p0.poolAddr
		_ = p0.pool.Close()
		waitActive(t, e, d, 1, "pool killed", p1.payout)
		e.startPool(0, addr, false, false)
		waitActive(t, e, d, 0, "pool back", p0.payout)
	})
	t.Run("every pair gone: solo, then back", func(t *testing.T) {
		a0, a1 := p0.poolAddr, p1.poolAddr
		_ = p0.pool.Close()
		_ = p1.pool.Close()
		waitActive(t, e, d, jdc.Solo, "both pools killed", solo)
		e.startPool(1, a1, false, false)
		waitActive(t, e, d, 1, "pool 1 back", p1.payout)
		e.startPool(0, a0, false, false)
		waitActive(t, e, d, 0, "pool 0 back", p0.payout)
	})
	t.Run("tp killed and restarted", func(t *testing.T) {
		addr := e.tpAddr
		e.tpStop()
		waitFor(t, 10*time.Second, "tp disconnected", func() bool { return !d.Status().TPConnected })
		e.startTP(addr)
		waitFor(t, 10*time.Second, "tp reconnected", func() bool { return d.Status().TPConnected })
		from := e.height()
		waitFor(t, 30*time.Second, "a block after tp restarted", func() bool { return e.height() > from })
	})
	// The switches are counted with their reasons; tips reached the devices.
	want := map[string]bool{"custom-job-rejected": false, "shares-rejected": false, "jds-lost": false, "pool-lost": false, "return": false}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var tips uint64
	for _, mf := range mfs {
		switch mf.GetName() {
		case "jdc_upstream_switches_total":
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if _, ok := want[l.GetValue()]; ok && l.GetName() == "reason" {
						want[l.GetValue()] = true
					}
				}
			}
		case "jdc_new_tip_to_device_work_seconds":
			h := mf.GetMetric()[0].GetHistogram()
			tips = h.GetSampleCount()
			if tips > 0 {
				t.Logf("new tip → device work: %d tips, mean %.0f µs", tips, h.GetSampleSum()/float64(tips)*1e6)
			}
		}
	}
	for r, seen := range want {
		if !seen {
			t.Errorf("no switch counted with reason %q", r)
		}
	}
	if tips == 0 {
		t.Error("no new-tip latency observed")
	}
	st := m.Stats()
	t.Logf("miner: %d jobs, %d shares accepted, %d rejected %v, %d blocks", st.Jobs, st.Accepted, st.Rejected, st.RejectReasons, st.Blocks)
}

// TestFailoverFullTemplate: in full-template mode a JDS that refuses every
// declaration (DeclareMiningJob.Error) and a JDS that goes away each move
// jdc to pair 1, and it returns once the JDS declares again.
func TestFailoverFullTemplate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	p0, p1 := e.pairs[0], e.pairs[1]
	addr, paddr := p0.jdsAddr, p0.poolAddr
	// Pair 0's JDS computes the subsidy with mainnet's halving interval:
	// on regtest past height 150 it asks more than the template has, and
	// answers every declaration pool-payout-underpaid.
	p0.jdsStop()
	_ = p0.pool.Close()
	p0.policy = func(p *declare.Policy) { p.HalvingInterval = 210_000 }
	e.startJDS(0, addr)
	e.startPool(0, paddr, false, false)
	reg := prometheus.NewRegistry()
	d := e.startJDC(jdc.FullTemplate, func(c *Config) { c.Registerer = reg })
	waitActive(t, e, d, 1, "JDS 0 refusing declarations", nil)
	if r := d.Status().States[0].Reason; r != "declare-error: "+declare.CodePayoutUnderpaid {
		t.Fatalf("pair 0 reason %q", r)
	}
	if n := switchesWithReason(t, reg, "declare-error"); n == 0 {
		t.Fatal("no switch counted with reason declare-error")
	}
	e.startMiner(d.DevicesAddr(), 4)
	waitActive(t, e, d, 1, "JDS 0 refusing declarations", p1.payout)
	p0.jdsStop()
	_ = p0.pool.Close()
	p0.policy = nil
	e.startJDS(0, addr)
	e.startPool(0, paddr, false, false)
	waitActive(t, e, d, 0, "JDS 0 declaring again", p0.payout)

	p0.jdsStop()
	waitActive(t, e, d, 1, "JDS killed", p1.payout)
	e.startJDS(0, addr)
	_ = p0.pool.Close()
	e.startPool(0, paddr, false, false)
	waitActive(t, e, d, 0, "JDS back", p0.payout)
	if js := p0.jds.Core().Stats(); js.Declared == 0 {
		t.Fatalf("the new JDS saw no declaration: %+v", js)
	}
}

// TestFailoverStalled: a JDS or a pool that stops answering (the connection
// stays up, held by a proxy) fails its pair on its deadline; jdc returns
// once it answers again.
func TestFailoverStalled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mode   jdc.Mode
		jds    bool // stall the JDS, else the pool
		reason string
	}{
		// The declarer's own request timeout or the core's deadline,
		// whichever fires first: jds-token/jds-declare/jds-timeout.
		{"JDS", jdc.FullTemplate, true, "jds-"},
		{"pool", jdc.CoinbaseOnly, false, "pool-timeout: no SetCustomMiningJob answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, 2)
			p0, p1 := e.pairs[0], e.pairs[1]
			target := p0.poolAddr
			if tc.jds {
				target = p0.jdsAddr
			}
			proxy := newStallProxy(t, target)
			d := e.startJDC(tc.mode, func(c *Config) {
				if tc.jds {
					c.Upstreams[0].JDSAddr = proxy.Addr()
				} else {
					c.Upstreams[0].PoolAddr = proxy.Addr()
				}
			})
			waitActive(t, e, d, 0, "start", nil)
			e.startMiner(d.DevicesAddr(), 4)
			waitActive(t, e, d, 0, "start", p0.payout)
			proxy.stalled.Store(true)
			waitActive(t, e, d, 1, tc.name+" stalled", p1.payout)
			if r := d.Status().States[0].Reason; !strings.HasPrefix(r, tc.reason) {
				t.Fatalf("pair 0 reason %q, want %q", r, tc.reason)
			}
			t.Logf("pair 0 failed: %s", d.Status().States[0].Reason)
			proxy.stalled.Store(false)
			waitActive(t, e, d, 0, tc.name+" answering again", p0.payout)
		})
	}
}

// switchesWithReason sums jdc_upstream_switches_total for reason.
func switchesWithReason(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	return switchesWith(t, reg, map[string]string{"reason": reason})
}

// switchesWith sums jdc_upstream_switches_total over the series with labels.
func switchesWith(t *testing.T, reg *prometheus.Registry, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "jdc_upstream_switches_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := 0
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
					match++
				}
			}
			if match == len(labels) {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
