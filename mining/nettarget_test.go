package mining

import (
	"testing"

	"github.com/sv2kit/sv2kit/sv2/messages"
)

// A channel target is never harder than the network's: otherwise a device
// would keep block-solving hashes to itself (regtest, testnet minimum-
// difficulty blocks). When the network gets harder again, the channel goes
// back to its vardiff target. The device's own maximum target still wins.
func TestChannelTargetNeverHarderThanNetwork(t *testing.T) {
	const regtestBits, harderBits = 0x207fffff, 0x17034219 // regtest; mainnet 2025
	s := NewSession(Config{}, mustAlloc(t, nil, 12, 8))
	// 1 TH/s: vardiff's target is far harder than regtest's.
	c, _ := s.OpenExtended(&messages.OpenExtendedMiningChannel{NominalHashRate: 1e12, MaxTarget: MaxTarget}, t0)
	lame, _ := s.OpenExtended(&messages.OpenExtendedMiningChannel{NominalHashRate: 1e12, MaxTarget: targetBits(40)}, t0)
	vardiff := c.Target()

	steps := []struct {
		name     string
		bits     uint32
		wantC    func(net [32]byte) [32]byte
		wantLame func(net [32]byte) [32]byte
	}{
		{"easy network: clamped to it", regtestBits,
			func(net [32]byte) [32]byte { return net },
			func([32]byte) [32]byte { return targetBits(40) }}, // its max target comes first
		{"hard network: back to vardiff", harderBits,
			func([32]byte) [32]byte { return vardiff },
			func([32]byte) [32]byte { return HarderTarget(vardiff, targetBits(40)) }},
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			nt := newTemplateMsg(uint64(i+1), true, 200, nil)
			if _, err := s.NewTemplate(jobTemplate(t, nt, 12)); err != nil {
				t.Fatal(err)
			}
			tip := tipAt(st.bits, t0)
			out, err := s.NewPrevHash(nt.TemplateID, tip)
			if err != nil {
				t.Fatal(err)
			}
			net := s.Tip().Target
			if got := c.Target(); got != st.wantC(net) {
				t.Fatalf("channel target %x, want %x", got, st.wantC(net))
			}
			if got := lame.Target(); got != st.wantLame(net) {
				t.Fatalf("max-target channel %x, want %x", got, st.wantLame(net))
			}
			var sent bool
			for _, m := range out {
				if m, ok := m.(*messages.SetTarget); ok && m.ChannelID == c.ID() {
					sent = m.MaximumTarget == c.Target()
				}
			}
			if !sent {
				t.Fatalf("no SetTarget for the channel among %d messages", len(out))
			}
		})
	}
}
