package templates

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"math/big"
	"testing"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

func randHashes(t testing.TB, n int) [][32]byte {
	t.Helper()
	hs := make([][32]byte, n)
	for i := range hs {
		if _, err := rand.Read(hs[i][:]); err != nil {
			t.Fatal(err)
		}
	}
	return hs
}

// The merkle path folded onto the coinbase must give the root btcd computes
// over the whole block, for every tree shape up to a few levels.
func TestMerklePathMatchesBtcd(t *testing.T) {
	for n := 0; n <= 70; n++ {
		leaves := randHashes(t, n+1)
		txs := make([]*btcutil.Tx, n+1)
		for i := range txs {
			// Build distinct transactions so btcd hashes them itself.
			tx := wire.NewMsgTx(1)
			tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint((*chainhash.Hash)(&leaves[i]), uint32(i)), nil, nil))
			tx.AddTxOut(wire.NewTxOut(int64(i), []byte{0x51}))
			txs[i] = btcutil.NewTx(tx)
			leaves[i] = *txs[i].Hash()
		}
		store := blockchain.BuildMerkleTreeStore(txs, false)
		want := *store[len(store)-1]
		got := MerkleRoot(leaves[0], MerklePath(leaves[1:]))
		if got != want {
			t.Fatalf("n=%d: root %x, btcd %x", n, got, want)
		}
		if all := MerkleRootOf(leaves); all != want {
			t.Fatalf("n=%d: MerkleRootOf %x, btcd %x", n, all, want)
		}
		if n == 0 && len(MerklePath(nil)) != 0 {
			t.Fatal("coinbase-only block must have an empty path")
		}
	}
}

func TestTargetFromBits(t *testing.T) {
	for _, bits := range []uint32{0x1d00ffff, 0x207fffff, 0x1703a30c, 0x037fffff, 0x1b0404cb, 0x01003456, 0x02008000, 0x03123456, 0x04123456, 0x20123456, 0x21010000} {
		want := blockchain.CompactToBig(bits)
		got := TargetToBig(TargetFromBits(bits))
		if want.Sign() < 0 || want.BitLen() > 256 {
			want = big.NewInt(0)
		}
		if got.Cmp(want) != 0 {
			t.Errorf("bits %08x: %x, btcd %x", bits, got, want)
		}
	}
	// sv2-tp's SetNewPrevHash vector: nBits 0x037fffff → target ffff7f00… (LE).
	tgt := TargetFromBits(0x037fffff)
	if hex.EncodeToString(tgt[:]) != "ffff7f0000000000000000000000000000000000000000000000000000000000" {
		t.Fatalf("0x037fffff → %x", tgt)
	}
	if BigToTarget(TargetToBig(tgt)) != tgt {
		t.Fatal("big round trip")
	}
}

func TestMeetsTarget(t *testing.T) {
	var lo, hi [32]byte
	lo[31], hi[31] = 1, 2
	if !MeetsTarget(&lo, &hi) || MeetsTarget(&hi, &lo) || !MeetsTarget(&lo, &lo) {
		t.Fatal("compare is not little-endian ordered")
	}
	lo[0], hi[0] = 0xff, 0
	if !MeetsTarget(&lo, &hi) {
		t.Fatal("low byte must not outweigh the high byte")
	}
}

// HeightScript must write what btcd's and Core's miners write, and what
// btcd's BIP34 check reads back.
func TestHeightScript(t *testing.T) {
	for _, h := range []int64{0, 1, 16, 17, 127, 128, 255, 256, 32767, 32768, 65535, 8388607, 8388608, 903388, 1 << 31} {
		want, err := txscript.NewScriptBuilder().AddInt64(h).Script()
		if err != nil {
			t.Fatal(err)
		}
		got := HeightScript(h)
		if !bytes.Equal(got, want) {
			t.Errorf("height %d: %x, btcd %x", h, got, want)
		}
		back, n, ok := ParseHeightScript(append(got, 0xaa, 0xbb))
		if !ok || back != h || n != len(got) {
			t.Errorf("parse height %d: %d %d %v", h, back, n, ok)
		}
	}
}

func TestCoinbaseSerialization(t *testing.T) {
	outs := []TxOutput{{Value: 5000000000, PkScript: []byte{0x00, 0x14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}},
		{Value: 0, PkScript: WitnessCommitmentScript([32]byte{9})}}
	cb := &Coinbase{
		Version: 2, ScriptSigPrefix: append(HeightScript(903388), 0x08), ExtranonceSize: 8,
		Sequence: 0xfffffffe, Outputs: SerializeOutputs(outs), OutputCount: len(outs), LockTime: 903387, Witness: true,
	}
	if err := cb.Validate(); err != nil {
		t.Fatal(err)
	}
	en := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	raw := cb.Bytes(en, true)
	var tx wire.MsgTx
	if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	if !blockchain.IsCoinBaseTx(&tx) || !tx.HasWitness() || tx.LockTime != 903387 || tx.TxIn[0].Sequence != 0xfffffffe {
		t.Fatalf("unexpected coinbase %+v", tx)
	}
	if !bytes.Equal(tx.TxIn[0].SignatureScript, append(append(HeightScript(903388), 0x08), en...)) {
		t.Fatal("scriptSig")
	}
	if len(tx.TxIn[0].Witness) != 1 || !bytes.Equal(tx.TxIn[0].Witness[0], make([]byte, 32)) {
		t.Fatal("witness reserved value")
	}
	// Stripped parts hash to the txid.
	p, s := cb.Parts(true)
	sp, ss := StripWitness(p, s)
	stripped := append(append(append([]byte{}, sp...), en...), ss...)
	if DoubleSHA256(stripped) != [32]byte(tx.TxHash()) {
		t.Fatal("stripped coinbase does not hash to the txid")
	}
	np, ns := cb.Parts(false)
	if !bytes.Equal(np, sp) || !bytes.Equal(ns, ss) {
		t.Fatal("StripWitness differs from the non-witness serialization")
	}
	// Stripping a non-witness form is a no-op.
	if p2, s2 := StripWitness(np, ns); !bytes.Equal(p2, np) || !bytes.Equal(s2, ns) {
		t.Fatal("strip of stripped form changed it")
	}
	got, err := ParseOutputs(cb.Outputs, 2)
	if err != nil || got[0].Value != outs[0].Value || !bytes.Equal(got[1].PkScript, outs[1].PkScript) {
		t.Fatalf("ParseOutputs: %v %v", got, err)
	}
	if _, err := ParseOutputs(cb.Outputs, 1); err == nil {
		t.Fatal("leftover bytes must fail")
	}
	if _, err := ParseOutputs(cb.Outputs, 3); err == nil {
		t.Fatal("missing output must fail")
	}
	vec, err := ParseOutputVector(SerializeOutputVector(outs))
	if err != nil || len(vec) != 2 {
		t.Fatalf("vector: %v %v", vec, err)
	}
	if _, err := ParseOutputVector([]byte{0xfe, 0xff, 0xff, 0xff, 0xff}); err == nil {
		t.Fatal("huge count must fail without allocating")
	}
	bad := *cb
	bad.ScriptSigPrefix = make([]byte, 95)
	if bad.Validate() == nil {
		t.Fatal("scriptSig over 100 bytes accepted")
	}
}

// A block assembled from parts must be one btcd accepts as well formed, with
// a witness commitment btcd validates.
func TestAssembleBlockWitnessCommitment(t *testing.T) {
	// A segwit spend so the block has a witness.
	spend := wire.NewMsgTx(2)
	spend.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Index: 1}, Witness: wire.TxWitness{{1, 2, 3}}, Sequence: 0xffffffff})
	spend.AddTxOut(wire.NewTxOut(1000, []byte{0x51}))
	var buf bytes.Buffer
	if err := spend.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	wtxid := [32]byte(spend.WitnessHash())
	commit := WitnessCommitment([][32]byte{wtxid})
	outs := []TxOutput{{Value: 50, PkScript: []byte{0x51}}, {Value: 0, PkScript: WitnessCommitmentScript(commit)}}
	cb := &Coinbase{Version: 2, ScriptSigPrefix: HeightScript(500), ExtranonceSize: 4, Sequence: 0xffffffff,
		Outputs: SerializeOutputs(outs), OutputCount: 2, Witness: true}
	cbRaw := cb.Bytes([]byte{0, 0, 0, 1}, true)
	var cbTx wire.MsgTx
	if err := cbTx.Deserialize(bytes.NewReader(cbRaw)); err != nil {
		t.Fatal(err)
	}
	h := &Header{Version: 0x20000000, Time: 1700000000, Bits: 0x207fffff}
	h.MerkleRoot = MerkleRoot([32]byte(cbTx.TxHash()), MerklePath([][32]byte{[32]byte(spend.TxHash())}))
	raw := AssembleBlock(h, cbRaw, [][]byte{buf.Bytes()})
	blk, err := btcutil.NewBlockFromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := blockchain.ValidateWitnessCommitment(blk); err != nil {
		t.Fatalf("btcd rejects the witness commitment: %v", err)
	}
	store := blockchain.BuildMerkleTreeStore(blk.Transactions(), false)
	if [32]byte(*store[len(store)-1]) != h.MerkleRoot {
		t.Fatal("merkle root")
	}
	if [32]byte(blk.MsgBlock().Header.BlockHash()) != h.Hash() {
		t.Fatal("header hash")
	}
}

func BenchmarkMerklePath4000(b *testing.B) {
	txids := randHashes(b, 4000)
	b.ReportAllocs()
	for b.Loop() {
		MerklePath(txids)
	}
}
