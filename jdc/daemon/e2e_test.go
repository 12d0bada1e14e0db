package daemon

import (
	"bytes"
	"testing"
	"time"

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
	if got := len(e.blockAt(start + 1).Transactions); got < 2 {
		t.Logf("first block has %d transactions", got)
	}
	st := e.pairs[0].pool.Stats()
	if st.CustomJobsAccepted == 0 || st.SharesAccepted == 0 {
		t.Fatalf("pool stats %+v", st)
	}
	t.Logf("pool: %d custom jobs, %d shares, %d blocks found", st.CustomJobsAccepted, st.SharesAccepted, st.BlocksFound)
}
