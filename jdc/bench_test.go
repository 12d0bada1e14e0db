package jdc

import (
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/sv2/messages"
)

// BenchmarkTipChange: a future template from tp and its SetNewPrevHash, with
// two connected pairs (the active one's work ready ahead, both pairs'
// custom jobs started) — the core's share of the new-tip latency.
func BenchmarkTipChange(b *testing.B) {
	f := newFixture(&testing.T{}, poolCfg(CoinbaseOnly, 2))
	f.newTip(0)
	f.connect(0)
	f.connect(1)
	tmpls := make([]*messages.NewTemplate, 0, 64)
	for i := 0; i < 64; i++ {
		tmpls = append(tmpls, f.template(true, 0))
	}
	now := f.now
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := tmpls[i%len(tmpls)]
		m.TemplateID = uint64(1000 + i)
		f.c.NewTemplate(now, m)
		f.c.SetNewPrevHash(now, &messages.SetNewPrevHash{TemplateID: m.TemplateID, NBits: 0x207fffff})
		// Keep the pairs supplied with tokens so every tip sends a custom job.
		for p := 0; p < 2; p++ {
			if r := f.c.pairs[p].tokenReq; r != 0 {
				f.c.Token(now, p, r, tokenMsg(p, i), nil)
			}
		}
	}
}

// BenchmarkDeviceShare: an upstream share of an acknowledged job mapped to
// SubmitSharesExtended.
func BenchmarkDeviceShare(b *testing.B) {
	f := newFixture(&testing.T{}, poolCfg(CoinbaseOnly, 1))
	f.newTip(0)
	f.acceptJob(0, f.connect(0))
	s := f.share(false)
	now := f.now.Add(time.Second)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Nonce = uint32(i)
		f.c.DeviceShare(now, s)
	}
}
