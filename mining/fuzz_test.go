package mining

import (
	"bytes"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// FuzzCustomJob feeds arbitrary SetCustomMiningJob coinbase fields to the
// pool-side decoder: it must not panic, and whatever it accepts must be a
// coinbase btcd parses, whose stripped form hashes to btcd's txid.
func FuzzCustomJob(f *testing.F) {
	_, txs := fakeTxs(2, 5)
	jt := jobTemplate(f, newTemplateMsg(1, false, 300, txs), 12)
	f.Add(jt.Coinbase.ScriptSigPrefix, jt.CoinbaseOutputs(), uint8(12), uint32(0xfffffffe), uint32(299))
	f.Add([]byte{0x01, 0x02}, []byte{0}, uint8(4), uint32(0), uint32(0))
	f.Add([]byte{}, []byte{0xfd, 0xff, 0xff}, uint8(32), uint32(1), uint32(2))
	f.Fuzz(func(t *testing.T, prefix, outs []byte, size uint8, seq, lock uint32) {
		m := &messages.SetCustomMiningJob{Version: 0x20000000, CoinbaseTxVersion: 2, CoinbasePrefix: prefix,
			CoinbaseTxInputNSequence: seq, CoinbaseTxOutputs: outs, CoinbaseTxLocktime: lock}
		jt, err := JobTemplateFromCustomJob(m, int(size), 1)
		if err != nil {
			return
		}
		ext := bytes.Repeat([]byte{0x42}, int(size))
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(jt.CoinbaseTx(ext, true))); err != nil {
			t.Fatalf("accepted coinbase does not parse: %v", err)
		}
		if templates.DoubleSHA256(jt.CoinbaseTx(ext, false)) != tx.TxHash() {
			t.Fatal("stripped coinbase is not the txid form")
		}
		if !bytes.HasPrefix(tx.TxIn[0].SignatureScript, prefix) {
			t.Fatal("scriptSig does not start with coinbase_prefix")
		}
	})
}

// FuzzSubmitExtended sends arbitrary share fields to a session: no panic,
// and an accepted share's header really hashes below the channel target.
func FuzzSubmitExtended(f *testing.F) {
	f.Add(uint32(1), uint32(1), uint32(0), uint32(0), uint32(0x20000000), []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(uint32(0), uint32(0), uint32(1), uint32(1), uint32(0), []byte{})
	f.Add(uint32(1), uint32(2), uint32(7), uint32(1795000000), uint32(0x3fffffff), make([]byte, 32))
	f.Fuzz(func(t *testing.T, ch, job, nonce, ntime, version uint32, ext []byte) {
		alloc := mustAlloc(t, []byte{9}, 12, 8)
		s := NewSession(Config{}, alloc)
		c, _ := s.OpenExtended(&messages.OpenExtendedMiningChannel{NominalHashRate: 1, MaxTarget: MaxTarget}, t0)
		c.SetTarget(targetBits(1))
		jt := jobTemplate(t, newTemplateMsg(1, true, 300, nil), alloc.FullSize())
		s.NewTemplate(jt)
		tip := tipAt(regtestBits, t0)
		s.NewPrevHash(1, tip)
		if len(ext) > 32 {
			ext = ext[:32]
		}
		// Shares near the tip's time so some pass the nTime check.
		if ntime%2 == 0 {
			ntime = tip.MinNTime + ntime%3600
		}
		r := s.SubmitExtended(&messages.SubmitSharesExtended{ChannelID: ch, JobID: job, Nonce: nonce, NTime: ntime, Version: version, Extranonce: ext}, t0.Add(time.Minute))
		if r.OK() {
			h := r.Header.Hash()
			if h != r.Hash {
				t.Fatal("hash differs from header")
			}
			net := templates.TargetFromBits(regtestBits)
			tg := targetBits(1)
			if !MeetsTarget(&h, &tg) && !MeetsTarget(&h, &net) {
				t.Fatal("accepted a share above both targets")
			}
			if r.Header.MerkleRoot != jt.MerkleRoot(append([]byte{9}, append(c.ExtranoncePrefix()[1:], ext...)...)) {
				t.Fatal("merkle root differs from the template's")
			}
		} else if r.Code == "" {
			t.Fatal("rejected without a code")
		}
	})
}

// FuzzNewJobTemplate feeds arbitrary TDP NewTemplate coinbase fields (the
// template's outputs are decoded here): no panic, and an accepted template
// serializes a coinbase btcd parses with the template's outputs last.
func FuzzNewJobTemplate(f *testing.F) {
	_, txs := fakeTxs(2, 6)
	nt := newTemplateMsg(1, false, 300, txs)
	f.Add(nt.CoinbasePrefix, nt.CoinbaseTxOutputs, nt.CoinbaseTxOutputsCount, uint64(5_000_000_000), []byte("/tag/"), uint8(16))
	f.Add([]byte{0x51}, []byte{}, uint32(0), uint64(0), []byte{}, uint8(1))
	f.Add([]byte{}, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0xfd}, uint32(1), uint64(1), []byte{}, uint8(8))
	f.Fuzz(func(t *testing.T, prefix, outs []byte, count uint32, value uint64, tag []byte, size uint8) {
		m := &messages.NewTemplate{TemplateID: 1, Version: 0x20000000, CoinbaseTxVersion: 2, CoinbasePrefix: prefix,
			CoinbaseTxInputSequence: 0xfffffffe, CoinbaseTxValueRemaining: value, CoinbaseTxOutputsCount: count,
			CoinbaseTxOutputs: outs, CoinbaseTxLocktime: 7}
		pay := []templates.TxOutput{{Value: int64(value % (1 << 62)), PkScript: []byte{0x51}}}
		jt, err := NewJobTemplate(m, CoinbaseConfig{Outputs: pay, Tag: tag, ExtranonceSize: int(size)})
		if err != nil {
			return
		}
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(jt.CoinbaseTx(make([]byte, size), true))); err != nil {
			t.Fatalf("accepted template's coinbase does not parse: %v", err)
		}
		if len(tx.TxOut) != 1+int(count) || tx.LockTime != 7 || !bytes.HasPrefix(tx.TxIn[0].SignatureScript, prefix) {
			t.Fatalf("coinbase %+v", tx)
		}
		if templates.DoubleSHA256(jt.CoinbaseTx(make([]byte, size), false)) != tx.TxHash() {
			t.Fatal("stripped form is not the txid form")
		}
	})
}
