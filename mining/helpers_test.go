package mining

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

var t0 = time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)

// regtestBits is regtest's powLimit compact form: about every other hash is a block.
const regtestBits = 0x207fffff

// mainnetBits is a hard enough nBits that test shares never find a block.
const mainnetBits = 0x1703255b

// fakeTxs makes n distinct segwit transactions (witness serialization) so
// wtxid ≠ txid, deterministic from seed.
func fakeTxs(n int, seed int64) (raw [][]byte, msgs []*wire.MsgTx) {
	rng := rand.New(rand.NewSource(seed))
	for i := 0; i < n; i++ {
		tx := wire.NewMsgTx(2)
		var prev [32]byte
		rng.Read(prev[:])
		in := wire.NewTxIn(wire.NewOutPoint((*chainhash.Hash)(&prev), uint32(i)), nil, nil)
		sig := make([]byte, 71)
		rng.Read(sig)
		in.Witness = wire.TxWitness{sig, bytes.Repeat([]byte{2}, 33)}
		tx.AddTxIn(in)
		pk := append([]byte{0x00, 0x14}, make([]byte, 20)...)
		rng.Read(pk[2:])
		tx.AddTxOut(wire.NewTxOut(int64(1000+i), pk))
		var b bytes.Buffer
		if err := tx.Serialize(&b); err != nil {
			panic(err)
		}
		raw = append(raw, b.Bytes())
		msgs = append(msgs, tx)
	}
	return raw, msgs
}

// newTemplateMsg builds a TDP NewTemplate the way a TP would for txs: BIP34
// prefix, witness commitment output when there are transactions, merkle path.
func newTemplateMsg(id uint64, future bool, height int64, txs []*wire.MsgTx) *messages.NewTemplate {
	var txids, wtxids [][32]byte
	for _, tx := range txs {
		txids = append(txids, tx.TxHash())
		wtxids = append(wtxids, tx.WitnessHash())
	}
	var outs []templates.TxOutput
	if len(txs) > 0 {
		outs = append(outs, templates.TxOutput{PkScript: templates.WitnessCommitmentScript(templates.WitnessCommitment(wtxids))})
	}
	return &messages.NewTemplate{
		TemplateID:               id,
		FutureTemplate:           future,
		Version:                  0x20000000,
		CoinbaseTxVersion:        2,
		CoinbasePrefix:           templates.HeightScript(height),
		CoinbaseTxInputSequence:  0xfffffffe,
		CoinbaseTxValueRemaining: 5_000_000_000,
		CoinbaseTxOutputsCount:   uint32(len(outs)),
		CoinbaseTxOutputs:        templates.SerializeOutputs(outs),
		CoinbaseTxLocktime:       uint32(height - 1),
		MerklePath:               templates.MerklePath(txids),
	}
}

var payout = []templates.TxOutput{{Value: 0, PkScript: append([]byte{0x00, 0x14}, bytes.Repeat([]byte{0xab}, 20)...)}}

func jobTemplate(t testing.TB, nt *messages.NewTemplate, fullSize int) *JobTemplate {
	t.Helper()
	outs, err := PayRemaining(payout, nt.CoinbaseTxValueRemaining)
	if err != nil {
		t.Fatal(err)
	}
	jt, err := NewJobTemplate(nt, CoinbaseConfig{Outputs: outs, Tag: []byte("/sv2kit/"), ExtranonceSize: fullSize})
	if err != nil {
		t.Fatal(err)
	}
	return jt
}

func tipAt(bits uint32, now time.Time) ChainTip {
	var prev [32]byte
	binary.LittleEndian.PutUint64(prev[:], uint64(now.UnixNano()))
	return ChainTip{PrevHash: prev, MinNTime: uint32(now.Unix()), NBits: bits, Since: now}
}

// targetBits returns a target whose top `zeros` bits are zero: a share meets
// it about once in 2^zeros hashes.
func targetBits(zeros int) [32]byte {
	t := MaxTarget
	for i := 0; i < zeros; i++ {
		bit := 255 - i
		t[bit/8] &^= 1 << (bit % 8)
	}
	return t
}
