package declare

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/mempool"
	"github.com/sv2kit/sv2kit/sv2/messages"
)

// FuzzParseDeclaredCoinbase: any prefix and suffix either are refused or
// give a coinbase that btcd reads as one transaction with one null input,
// the declared height and our txid.
func FuzzParseDeclaredCoinbase(f *testing.F) {
	m := offlineJob(f, nil, 100, nil)
	f.Add(m.CoinbaseTxPrefix, m.CoinbaseTxSuffix)
	m = offlineJob(f, nil, 100, []byte{1, 2})
	f.Add(m.CoinbaseTxPrefix, m.CoinbaseTxSuffix)
	f.Add([]byte{2, 0, 0, 0}, []byte{})
	f.Fuzz(func(t *testing.T, prefix, suffix []byte) {
		cb, e := parseDeclaredCoinbase(prefix, suffix)
		if e != nil {
			if e.code == "" || e.details == "" {
				t.Fatal("error without code or details")
			}
			return
		}
		raw, txid := cb.coinbase(make([]byte, cb.extranonceLen))
		var tx wire.MsgTx
		r := bytes.NewReader(raw)
		if err := tx.Deserialize(r); err != nil || r.Len() != 0 {
			t.Fatalf("accepted coinbase does not parse: %v (%d left)", err, r.Len())
		}
		if len(tx.TxIn) != 1 || tx.TxIn[0].PreviousOutPoint.Index != 0xffffffff || tx.TxHash() != txid {
			t.Fatalf("accepted a non-coinbase or wrong txid")
		}
		if len(tx.TxOut) != len(cb.outputs) {
			t.Fatalf("%d outputs, parsed %d", len(tx.TxOut), len(cb.outputs))
		}
	})
}

// FuzzHTTPBodies: the pool API's JSON decoders never panic, and what they
// accept survives a round trip.
func FuzzHTTPBodies(f *testing.F) {
	j := offlineJob(f, nil, 1, nil)
	b, _ := json.Marshal(ValidateRequest{UserIdentity: "u", Job: CustomJobJSON{MiningJobToken: Hex{1, 2}, CoinbasePrefix: j.CoinbaseTxPrefix[:10],
		MerklePath: []Hash32{{1}}}})
	f.Add(b)
	b, _ = json.Marshal(BlockRequest{UserIdentity: "u", Share: BlockShareJSON{MiningJobToken: Hex{1}, Extranonce: Hex{2, 3}, Nonce: 5}})
	f.Add(b)
	f.Add([]byte(`{"user_identity":"x","job":{"prev_hash":"00"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if r, err := DecodeValidateRequest(body); err == nil {
			again, _ := json.Marshal(r)
			r2, err := DecodeValidateRequest(again)
			if err != nil || r2.Job.Message().MiningJobToken == nil && len(r.Job.MiningJobToken) != 0 {
				t.Fatalf("validate round trip: %v", err)
			}
		}
		if r, err := DecodeBlockRequest(body); err == nil {
			again, _ := json.Marshal(r)
			if _, err := DecodeBlockRequest(again); err != nil {
				t.Fatalf("block round trip: %v", err)
			}
		}
	})
}

// FuzzCoreDeclare feeds a core arbitrary declarations and provided
// transactions: it never panics, and every answer is an error with a code,
// a request for transactions at valid positions, or a block btcd reads.
func FuzzCoreDeclare(f *testing.F) {
	tx := synthTx(1, true)
	var b bytes.Buffer
	_ = tx.Serialize(&b)
	m := offlineJob(f, []*wire.MsgTx{tx}, 1_250_000_000, nil)
	f.Add(m.CoinbaseTxPrefix, m.CoinbaseTxSuffix, b.Bytes(), uint8(1))
	f.Add(m.CoinbaseTxPrefix, m.CoinbaseTxSuffix, []byte{1, 2, 3}, uint8(3))
	f.Fuzz(func(t *testing.T, prefix, suffix, provided []byte, n uint8) {
		c := offlineCore(t, mempool.NewStore(0), nil)
		now := time.Unix(1_700_000_000, 0)
		c.Connect(1, true, now)
		tok, _ := c.Allocate(1, &messages.AllocateMiningJobToken{}, now)
		var wtxids [][32]byte
		for i := 0; i < int(n%4); i++ {
			w := tx.WitnessHash()
			w[0] += byte(i)
			wtxids = append(wtxids, w)
		}
		st := c.Declare(1, &messages.DeclareMiningJob{RequestID: 5, MiningJobToken: tok.MiningJobToken, CoinbaseTxPrefix: prefix,
			CoinbaseTxSuffix: suffix, WtxidList: wtxids}, now)
		if st.Missing != nil {
			list := make([][]byte, len(st.Missing.UnknownTxPositionList))
			for i, pos := range st.Missing.UnknownTxPositionList {
				if int(pos) >= len(wtxids) {
					t.Fatalf("position %d of %d", pos, len(wtxids))
				}
				list[i] = provided
			}
			st, _ = c.Provide(1, &messages.ProvideMissingTransactionsSuccess{RequestID: 5, TransactionList: list}, now)
		}
		switch {
		case st.Reply != nil:
			if st.Reply.ErrorCode == "" || len(st.Reply.ErrorDetails) == 0 {
				t.Fatal("error without code or details")
			}
		case st.Proposal != nil:
			var blk wire.MsgBlock
			if err := blk.Deserialize(bytes.NewReader(st.Proposal.Block)); err != nil {
				t.Fatalf("proposed block does not parse: %v", err)
			}
		}
	})
}
