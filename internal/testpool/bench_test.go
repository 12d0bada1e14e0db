package testpool

import (
	"testing"

	"github.com/sv2kit/sv2kit/mining"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
)

// BenchmarkSharesOverNoise is the pool's share throughput on one Noise
// connection: SubmitSharesExtended in, validated by the mining core,
// SubmitShares.Success out (every hash meets the channel target; none is a
// block).
func BenchmarkSharesOverNoise(b *testing.B) {
	p := startPool(b, Config{SendQueue: 1 << 16})
	c := dialPool(b, p)
	c.setup(messages.FlagRequiresWorkSelection)
	c.send(&messages.OpenExtendedMiningChannel{RequestID: 1, UserIdentity: "bench", NominalHashRate: 0.001,
		MaxTarget: mining.MaxTarget})
	ch := recvAs[*messages.OpenExtendedMiningChannelSuccess](c)
	job, _ := customJob(b, ch, 1, hardBits, 1)
	c.send(job)
	ok := recvAs[*messages.SetCustomMiningJobSuccess](c)
	if ch.Target != mining.MaxTarget {
		b.Skipf("channel target %x is not the easiest; every share must be valid for this benchmark", ch.Target)
	}
	ext := make([]byte, ch.ExtranonceSize)
	errc := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; i++ {
			m := &messages.SubmitSharesExtended{ChannelID: ch.ChannelID, SequenceNumber: uint32(i), JobID: ok.JobID,
				Nonce: uint32(i), NTime: job.MinNTime + 1, Version: job.Version, Extranonce: ext}
			if err := c.c.WriteMessage(m, codec.Options{}); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := 0; i < b.N; i++ {
		m, _, err := messages.Read(c.c, codec.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := m.(*messages.SubmitSharesSuccess); !ok {
			b.Fatalf("share %d: %s", i, codec.String(m))
		}
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "shares/s")
}
