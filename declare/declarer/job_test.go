package declarer

import (
	"bytes"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// segwitTx returns a serialized transaction with a witness and its ids.
func segwitTx(t *testing.T, seed byte, witness bool) (raw []byte, txid, wtxid chainhash.Hash) {
	tx := wire.NewMsgTx(2)
	in := wire.NewTxIn(&wire.OutPoint{Hash: chainhash.Hash{seed}, Index: 1}, nil, nil)
	if witness {
		in.Witness = wire.TxWitness{bytes.Repeat([]byte{seed}, 71), bytes.Repeat([]byte{2}, 33)}
	}
	tx.AddTxIn(in)
	tx.AddTxOut(wire.NewTxOut(1000, []byte{0x00, 0x14, seed, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}))
	var b bytes.Buffer
	if err := tx.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), tx.TxHash(), tx.WitnessHash()
}

func TestNewJob(t *testing.T) {
	var txs [][]byte
	var txids, wtxids [][32]byte
	for i := 0; i < 4; i++ {
		raw, txid, wtxid := segwitTx(t, byte(i), i%2 == 0)
		txs = append(txs, raw)
		txids = append(txids, txid)
		wtxids = append(wtxids, wtxid)
	}
	commit := templates.WitnessCommitment(wtxids)
	outs := templates.SerializeOutputs([]templates.TxOutput{{Value: 0, PkScript: templates.WitnessCommitmentScript(commit)}})
	tmpl := &messages.NewTemplate{
		TemplateID: 7, Version: 0x20000000, CoinbaseTxOutputsCount: 1, CoinbaseTxOutputs: outs,
		MerklePath: templates.MerklePath(txids),
	}
	data := &messages.RequestTransactionDataSuccess{TemplateID: 7, ExcessData: make([]byte, 32), TransactionList: txs}
	cb := templates.Coinbase{Version: 2, ScriptSigPrefix: []byte{1, 2}, ExtranonceSize: 8, Sequence: 0xffffffff,
		Outputs: outs, OutputCount: 1, Witness: true}
	prefix, suffix := cb.Parts(true)

	job, err := NewJob([]byte("tok"), tmpl, data, prefix, suffix)
	if err != nil {
		t.Fatal(err)
	}
	if job.Version != tmpl.Version || !bytes.Equal(job.ExcessData, data.ExcessData) || string(job.Token) != "tok" || len(job.Txs) != 4 {
		t.Errorf("job = %+v", job)
	}
	for i := range wtxids {
		if job.WTxIDs[i] != wtxids[i] {
			t.Errorf("wtxid %d = %x, want %x", i, job.WTxIDs[i], wtxids[i])
		}
	}
	got, err := TxIDs(txs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range txids {
		if got[i] != txids[i] {
			t.Errorf("txid %d", i)
		}
	}
	if _, err := TxIDs([][]byte{{1, 2, 3}}); err == nil {
		t.Error("TxIDs of garbage")
	}

	for _, tc := range []struct {
		name           string
		tmpl           *messages.NewTemplate
		data           *messages.RequestTransactionDataSuccess
		prefix, suffix []byte
		want           string
	}{
		{"other template", tmpl, &messages.RequestTransactionDataSuccess{TemplateID: 8}, prefix, suffix, "template 8"},
		{"no data", tmpl, nil, prefix, suffix, "needs"},
		{"non-witness coinbase", tmpl, data, func() []byte { p, _ := cb.Parts(false); return p }(), suffix, "witness form"},
		{"bad outputs", &messages.NewTemplate{TemplateID: 7, CoinbaseTxOutputsCount: 3, CoinbaseTxOutputs: []byte{1}}, data, prefix, suffix, "outputs"},
		{"huge suffix", tmpl, data, prefix, make([]byte, 1<<16), "suffix"},
	} {
		if _, err := NewJob([]byte("tok"), tc.tmpl, tc.data, tc.prefix, tc.suffix); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	// A template without witness commitment takes a non-witness coinbase.
	plain := &messages.NewTemplate{TemplateID: 7, CoinbaseTxOutputsCount: 1,
		CoinbaseTxOutputs: templates.SerializeOutputs([]templates.TxOutput{{Value: 1, PkScript: []byte{0x51}}})}
	p, s := cb.Parts(false)
	if _, err := NewJob([]byte("tok"), plain, data, p, s); err != nil {
		t.Error(err)
	}
}
