package jdc

import (
	"bytes"
	"testing"

	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// FuzzBuildCoinbase feeds the coinbase builder templates a hostile tp could
// send: it must fail cleanly or produce parts that put the extranonce where
// the pool and the JDS expect it.
func FuzzBuildCoinbase(f *testing.F) {
	commit := templates.SerializeOutputs([]templates.TxOutput{{PkScript: templates.WitnessCommitmentScript([32]byte{1})}})
	f.Add([]byte{0x03, 0x01, 0x02, 0x03}, commit, uint32(1), uint64(5_000_000_000), 4, 8)
	f.Add([]byte{}, []byte{}, uint32(0), uint64(0), 0, 1)
	f.Add(bytes.Repeat([]byte{0x51}, 90), []byte{0xff, 0xff}, uint32(3), uint64(1<<62), 32, 1)
	f.Fuzz(func(t *testing.T, prefix, outs []byte, count uint32, value uint64, poolPrefix, space int) {
		if poolPrefix < 0 || poolPrefix > 64 || space < -1 || space > 64 {
			return
		}
		nt := &messages.NewTemplate{CoinbasePrefix: prefix, CoinbaseTxOutputs: outs, CoinbaseTxOutputsCount: count,
			CoinbaseTxValueRemaining: value, CoinbaseTxVersion: 2}
		b, err := buildCoinbase(nt, DefaultTag, []templates.TxOutput{{PkScript: soloScript}}, make([]byte, poolPrefix), space)
		if err != nil {
			return
		}
		dev := bytes.Repeat([]byte{0x5a}, space)
		ex := b.fullExtranonce(dev)
		p, s := b.deviceParts()
		stripped := append(append(append([]byte(nil), p...), dev...), s...)
		if !bytes.Equal(stripped, b.cb.Bytes(ex, false)) {
			t.Fatal("device parts differ from the coinbase")
		}
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(b.cb.Bytes(ex, true))); err != nil {
			return // tp's outputs were garbage; the node would refuse the block, not us crash
		}
		if tx.TxHash() != templates.DoubleSHA256(stripped) || !bytes.HasSuffix(tx.TxIn[0].SignatureScript, ex) {
			t.Fatal("extranonce not at the end of the scriptSig, or txid mismatch")
		}
	})
}
