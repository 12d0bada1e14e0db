package mining_test

import (
	"fmt"
	"time"

	"github.com/sv2kit/sv2kit/mining"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// A JDC's device server: one allocator over the pool channel's extranonce
// space, one session per device connection, work from TDP templates.
func Example() {
	now := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	// The pool gave our upstream channel a 4-byte prefix and 12 bytes; devices
	// roll 8 of them, 4 identify the channel.
	alloc, err := mining.NewExtranonceAllocator([]byte{0, 0, 0, 1}, 12, 8, 0)
	if err != nil {
		panic(err)
	}
	s := mining.NewSession(mining.Config{}, alloc)
	ch, out := s.OpenExtended(&messages.OpenExtendedMiningChannel{
		RequestID: 1, UserIdentity: "rig1", NominalHashRate: 100e12, MaxTarget: mining.MaxTarget, MinExtranonceSize: 8,
	}, now)
	fmt.Println(names(out), ch.ExtranonceSize(), len(ch.ExtranoncePrefix()))

	// A future template and the SetNewPrevHash that activates it (TDP).
	nt := &messages.NewTemplate{TemplateID: 10, FutureTemplate: true, Version: 0x20000000, CoinbaseTxVersion: 2,
		CoinbasePrefix: templates.HeightScript(900_000), CoinbaseTxInputSequence: 0xfffffffe,
		CoinbaseTxValueRemaining: 312_500_000, CoinbaseTxLocktime: 899_999}
	payout, _ := mining.PayRemaining([]templates.TxOutput{{PkScript: []byte{0x51}}}, nt.CoinbaseTxValueRemaining)
	jt, err := mining.NewJobTemplate(nt, mining.CoinbaseConfig{Outputs: payout, ExtranonceSize: alloc.FullSize()})
	if err != nil {
		panic(err)
	}
	out, _ = s.NewTemplate(jt)
	fmt.Println(names(out))
	out, _ = s.NewPrevHash(10, mining.ChainTip{NBits: 0x1703255b, MinNTime: uint32(now.Unix()), Since: now})
	fmt.Println(names(out))

	// A share that does not meet the channel target.
	r := s.SubmitExtended(&messages.SubmitSharesExtended{ChannelID: ch.ID(), JobID: ch.Jobs()[0].ID,
		NTime: uint32(now.Unix()), Version: 0x20000000, Extranonce: make([]byte, 8)}, now)
	fmt.Println(r.Status, r.Code)
	// Output:
	// [OpenExtendedMiningChannel.Success] 8 8
	// [NewExtendedMiningJob]
	// [SetNewPrevHash]
	// rejected difficulty-too-low
}

func names[T interface{ MessageName() string }](ms []T) []string {
	var n []string
	for _, m := range ms {
		n = append(n, m.MessageName())
	}
	return n
}
