package node

import (
	"bytes"
	"encoding/binary"
	"math/big"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/templates"
)

// Block assembly for tests only: the templates/ package owns the real one.

// assembleBlock builds a block from a template: a coinbase paying
// CoinbaseValue to payScript (BIP34 height first in scriptSig, the witness
// commitment and the 32-byte reserved value when the template has one), the
// template's transactions, and a header with nonce 0.
func assembleBlock(t *testing.T, tpl *BlockTemplate, payScript []byte, extraNonce uint64) *wire.MsgBlock {
	t.Helper()
	sigScript, err := txscript.NewScriptBuilder().AddInt64(tpl.Height).AddInt64(int64(extraNonce)).
		AddData([]byte("sv2kit-test")).Script()
	if err != nil {
		t.Fatal(err)
	}
	cb := wire.NewMsgTx(2)
	cb.AddTxIn(&wire.TxIn{
		PreviousOutPoint: wire.OutPoint{Index: wire.MaxPrevOutIndex},
		SignatureScript:  sigScript,
		Sequence:         wire.MaxTxInSequenceNum,
	})
	cb.AddTxOut(wire.NewTxOut(tpl.CoinbaseValue, payScript))
	if tpl.DefaultWitnessCommitment != nil {
		cb.AddTxOut(wire.NewTxOut(0, tpl.DefaultWitnessCommitment))
		cb.TxIn[0].Witness = wire.TxWitness{make([]byte, 32)}
	}
	blk := &wire.MsgBlock{Header: wire.BlockHeader{
		Version:   tpl.Version,
		PrevBlock: tpl.PreviousBlockHash,
		Timestamp: time.Unix(max(tpl.CurTime, tpl.MinTime), 0),
		Bits:      tpl.Bits,
	}}
	blk.AddTransaction(cb)
	for i, tt := range tpl.Transactions {
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(tt.Data)); err != nil {
			t.Fatalf("template tx %d: %v", i, err)
		}
		blk.AddTransaction(&tx)
	}
	setMerkleRoot(blk)
	return blk
}

func setMerkleRoot(blk *wire.MsgBlock) {
	ids := make([]chainhash.Hash, len(blk.Transactions))
	for i, tx := range blk.Transactions {
		ids[i] = tx.TxHash()
	}
	blk.Header.MerkleRoot = merkleRoot(ids)
}

// solve grinds the nonce until the header meets the target (instant on regtest).
func solve(t *testing.T, blk *wire.MsgBlock) {
	t.Helper()
	target := compactToBig(blk.Header.Bits)
	for nonce := uint32(0); nonce < 1<<24; nonce++ {
		blk.Header.Nonce = nonce
		h := blk.Header.BlockHash()
		if hashToBig(h).Cmp(target) <= 0 {
			return
		}
	}
	t.Fatal("no nonce found")
}

func serializeBlock(t *testing.T, blk *wire.MsgBlock) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := blk.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func le32(n uint32) []byte {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, n)
	return b
}

func compactToBig(bits uint32) *big.Int { return templates.TargetToBig(templates.TargetFromBits(bits)) }

// merkleRoot is the merkle root over full leaves, for test blocks.
func merkleRoot(leaves []chainhash.Hash) chainhash.Hash {
	l := make([][32]byte, len(leaves))
	for i := range leaves {
		l[i] = leaves[i]
	}
	return templates.MerkleRootOf(l)
}
