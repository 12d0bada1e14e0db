package devices

import (
	"context"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/internal/cpuminer"
)

// TestWithCPUMiners runs the project's CPU mining devices (standard
// channels, REQUIRES_STANDARD_JOBS) against the server over Noise: their
// shares are accepted through tip changes and reach jdc.
func TestWithCPUMiners(t *testing.T) {
	ts := startServer(t, Config{VardiffWindow: time.Second, SharesPerMinute: 600})
	ts.s.SetWork(testWork(1, true, 8))
	ts.s.SetPrevHash(prevHash(1, hardBits))
	ts.s.SetUpstreamTarget([32]byte{31: 0xff})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var miners []*cpuminer.Miner
	for i := 0; i < 2; i++ {
		m, err := cpuminer.New(cpuminer.Config{Addr: ts.addr, AuthorityPubKey: ts.pub, UserIdentity: "cpu", HashRate: 400})
		if err != nil {
			t.Fatal(err)
		}
		miners = append(miners, m)
		go func() { _ = m.Run(ctx) }()
	}
	waitAccepted := func(n uint64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for _, m := range miners {
			for m.Stats().Accepted < n {
				if time.Now().After(deadline) {
					t.Fatalf("miner stats %+v: fewer than %d accepted", m.Stats(), n)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	waitAccepted(3)
	before := miners[0].Stats().Accepted
	ts.s.SetWork(testWork(2, true, 8))
	ts.s.SetPrevHash(prevHash(2, hardBits))
	waitAccepted(before + 3)
	for _, m := range miners {
		st := m.Stats()
		for code, n := range st.RejectReasons {
			// Shares in flight across the tip change may be stale.
			if code != "stale-share" {
				t.Errorf("miner rejected %d × %s", n, code)
			}
		}
	}
	got := 0
	for got < 4 {
		select {
		case sh := <-ts.s.Shares():
			if sh.UserIdentity != "cpu" || len(sh.Extranonce) != 8 {
				t.Fatalf("upstream share %+v", sh)
			}
			got++
		case <-time.After(10 * time.Second):
			t.Fatal("no upstream shares from the CPU miners")
		}
	}
	if st := ts.s.Stats(); st.Channels != 2 || st.SharesAccepted == 0 {
		t.Fatalf("server stats %+v", st)
	}
}
