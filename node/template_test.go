package node

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"testing"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

func hashToBig(h chainhash.Hash) *big.Int {
	be := make([]byte, 32)
	for i := range 32 {
		be[i] = h[31-i]
	}
	return new(big.Int).SetBytes(be)
}

// testTxs returns a legacy transaction and a segwit one that spends it.
func testTxs() (legacy, segwit *wire.MsgTx) {
	legacy = wire.NewMsgTx(1)
	legacy.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Hash: hashN(40), Index: 1},
		SignatureScript: []byte{0x51}, Sequence: 0xfffffffd})
	legacy.AddTxOut(wire.NewTxOut(1000, append([]byte{0x00, 0x14}, bytes.Repeat([]byte{7}, 20)...)))
	segwit = wire.NewMsgTx(2)
	segwit.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Hash: legacy.TxHash(), Index: 0},
		Witness: wire.TxWitness{bytes.Repeat([]byte{1}, 71), bytes.Repeat([]byte{2}, 33)}, Sequence: 0xffffffff})
	segwit.AddTxOut(wire.NewTxOut(800, append([]byte{0x00, 0x14}, bytes.Repeat([]byte{8}, 20)...)))
	return legacy, segwit
}

func txHex(tx *wire.MsgTx) string {
	var buf bytes.Buffer
	tx.Serialize(&buf)
	return hex.EncodeToString(buf.Bytes())
}

func weightOf(tx *wire.MsgTx) int64 {
	return blockchain.GetTransactionWeight(btcutil.NewTx(tx))
}

func TestParseBlockTemplateCore(t *testing.T) {
	legacy, segwit := testTxs()
	prev := hashN(60)
	txs := []TemplateTx{{TxID: legacy.TxHash(), WTxID: legacy.WitnessHash()}, {TxID: segwit.TxHash(), WTxID: segwit.WitnessHash()}}
	commitment := WitnessCommitmentScript(txs)
	// Bitcoin Core 27's shape.
	raw := map[string]any{
		"capabilities": []string{"proposal"}, "version": 536870912, "rules": []string{"csv", "!segwit", "taproot"},
		"vbavailable": map[string]int{}, "vbrequired": 0, "previousblockhash": prev.String(),
		"transactions": []map[string]any{
			{"data": txHex(legacy), "txid": legacy.TxHash().String(), "hash": legacy.WitnessHash().String(),
				"depends": []int{}, "fee": 200, "sigops": 4, "weight": weightOf(legacy)},
			{"data": txHex(segwit), "txid": segwit.TxHash().String(), "hash": segwit.WitnessHash().String(),
				"depends": []int{1}, "fee": 200, "sigops": 1, "weight": weightOf(segwit)},
		},
		"coinbaseaux": map[string]string{}, "coinbasevalue": 5000000400, "longpollid": prev.String() + "12",
		"target": "0000000000000000000346e90000000000000000000000000000000000000000", "mintime": 1718000000,
		"mutable": []string{"time", "transactions", "prevblock"}, "noncerange": "00000000ffffffff",
		"sigoplimit": 80000, "sizelimit": 4000000, "weightlimit": 4000000, "curtime": 1718000600,
		"bits": "170346e9", "height": 850000, "default_witness_commitment": hex.EncodeToString(commitment),
	}
	b, _ := json.Marshal(raw)
	tpl, err := ParseBlockTemplate(b)
	if err != nil {
		t.Fatal(err)
	}
	if tpl.Version != 0x20000000 || tpl.Height != 850000 || tpl.Bits != 0x170346e9 || tpl.CoinbaseValue != 5000000400 ||
		tpl.CurTime != 1718000600 || tpl.MinTime != 1718000000 || tpl.PreviousBlockHash != prev ||
		tpl.WeightLimit != 4000000 || tpl.SigOpLimit != 80000 || len(tpl.Rules) != 3 || tpl.LongPollID != prev.String()+"12" {
		t.Fatalf("fields: %+v", tpl)
	}
	if tpl.Target.Cmp(compactToBig(tpl.Bits)) != 0 {
		t.Errorf("target %x vs bits %x", tpl.Target, compactToBig(tpl.Bits))
	}
	le := tpl.TargetLE()
	if le[31] != 0 || le[22] != 0x03 || le[21] != 0x46 || le[20] != 0xe9 {
		t.Errorf("TargetLE %x", le)
	}
	if len(tpl.Transactions) != 2 || tpl.Transactions[1].Depends[0] != 1 || tpl.TotalFees() != 400 {
		t.Fatalf("txs: %+v", tpl.Transactions)
	}
	for i, want := range []*wire.MsgTx{legacy, segwit} {
		got := tpl.Transactions[i]
		if got.TxID != want.TxHash() || got.WTxID != want.WitnessHash() || got.Weight != weightOf(want) {
			t.Errorf("tx %d: %+v", i, got)
		}
	}
	if !bytes.Equal(tpl.DefaultWitnessCommitment, commitment) {
		t.Errorf("commitment")
	}
}

// btcd (and older nodes) may leave out hash/weight, pad bits differently, and
// skip the witness commitment; ParseBlockTemplate fills them in.
func TestParseBlockTemplateFillsMissing(t *testing.T) {
	legacy, segwit := testTxs()
	prev := hashN(61)
	raw := map[string]any{
		"version": 536870912, "previousblockhash": prev.String(),
		"transactions": []map[string]any{
			{"data": txHex(legacy), "depends": []int{}, "fee": 200, "sigops": 4},
			{"data": txHex(segwit), "txid": segwit.TxHash().String(), "depends": []int{1}, "fee": 300, "sigops": 1},
		},
		"coinbaseaux": map[string]string{"flags": "0b2f503253482f627463642f"}, "coinbasevalue": 5000000500,
		"longpollid": prev.String() + "-1718000600", "curtime": 1718000600, "mintime": 1718000000, "maxtime": 1718007800,
		"bits": "207fffff", "height": 101, "sigoplimit": 80000, "sizelimit": 4000000, "weightlimit": 4000000,
		"mutable": []string{"time", "transactions/add", "prevblock", "coinbase/append"}, "capabilities": []string{"proposal"},
	}
	b, _ := json.Marshal(raw)
	tpl, err := ParseBlockTemplate(b)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []*wire.MsgTx{legacy, segwit} {
		got := tpl.Transactions[i]
		if got.TxID != want.TxHash() || got.WTxID != want.WitnessHash() || got.Weight != weightOf(want) {
			t.Errorf("tx %d not filled: %+v", i, got)
		}
	}
	if tpl.Target.Cmp(compactToBig(0x207fffff)) != 0 || tpl.MaxTime != 1718007800 {
		t.Errorf("target/maxtime: %x %d", tpl.Target, tpl.MaxTime)
	}
	if string(tpl.CoinbaseAuxFlags[1:]) != "/P2SH/btcd/" {
		t.Errorf("coinbaseaux flags %q", tpl.CoinbaseAuxFlags)
	}
	if tpl.DefaultWitnessCommitment == nil {
		t.Fatal("commitment not computed for a template with witness data")
	}
	// The computed commitment is what consensus checks (btcd's validator).
	blk := assembleBlock(t, tpl, []byte{0x51}, 1)
	if err := blockchain.ValidateWitnessCommitment(btcutil.NewBlock(blk)); err != nil {
		t.Fatalf("computed commitment invalid: %v", err)
	}

	// btcd sends only the 32-byte commitment hash: it becomes the script.
	raw["default_witness_commitment"] = hex.EncodeToString(tpl.DefaultWitnessCommitment[6:])
	b, _ = json.Marshal(raw)
	tpl2, err := ParseBlockTemplate(b)
	if err != nil || !bytes.Equal(tpl2.DefaultWitnessCommitment, tpl.DefaultWitnessCommitment) {
		t.Fatalf("32-byte commitment: %v %x", err, tpl2.DefaultWitnessCommitment)
	}
	raw["default_witness_commitment"] = "6a24aa21a9ed00"
	b, _ = json.Marshal(raw)
	if _, err := ParseBlockTemplate(b); err == nil {
		t.Error("a truncated commitment script was accepted")
	}
	delete(raw, "default_witness_commitment")

	// No witness transaction and no commitment: none is made up.
	raw["transactions"] = raw["transactions"].([]map[string]any)[:1]
	b, _ = json.Marshal(raw)
	if tpl, err = ParseBlockTemplate(b); err != nil || tpl.DefaultWitnessCommitment != nil {
		t.Fatalf("legacy-only: %v %x", err, tpl.DefaultWitnessCommitment)
	}
}

func TestParseBlockTemplateRejects(t *testing.T) {
	for name, js := range map[string]string{
		"not json":      `[`,
		"no value":      `{"previousblockhash":"` + hashN(1).String() + `","bits":"207fffff"}`,
		"bad prev":      `{"previousblockhash":"zz","bits":"207fffff","coinbasevalue":1}`,
		"bad bits":      `{"previousblockhash":"` + hashN(1).String() + `","bits":"xyz","coinbasevalue":1}`,
		"bad tx hex":    `{"previousblockhash":"` + hashN(1).String() + `","bits":"207fffff","coinbasevalue":1,"transactions":[{"data":"zz"}]}`,
		"bad tx data":   `{"previousblockhash":"` + hashN(1).String() + `","bits":"207fffff","coinbasevalue":1,"transactions":[{"data":"0100"}]}`,
		"bad target":    `{"previousblockhash":"` + hashN(1).String() + `","bits":"207fffff","coinbasevalue":1,"target":"qq"}`,
		"bad wcommit":   `{"previousblockhash":"` + hashN(1).String() + `","bits":"207fffff","coinbasevalue":1,"default_witness_commitment":"q"}`,
		"short prevblk": `{"previousblockhash":"00","bits":"207fffff","coinbasevalue":1}`,
	} {
		if _, err := ParseBlockTemplate([]byte(js)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
