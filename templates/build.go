package templates

import (
	"bytes"
	"fmt"
)

// Coinbase fields a template fixes. Bitcoin Core ≥ v30 time-locks the
// coinbase to the previous height (BIP54's rule); any node accepts that, so
// we do it on every node.
const (
	CoinbaseTxVersion = 2
	CoinbaseSequence  = 0xfffffffe
)

// Template is a block template as the Template Distribution Protocol carries
// it (NewTemplate + SetNewPrevHash fields), with its transactions.
type Template struct {
	Height    int64
	PrevHash  [32]byte
	Version   uint32
	Bits      uint32
	Target    [32]byte
	Timestamp uint32

	CoinbasePrefix   []byte // BIP34 height push
	CoinbaseVersion  uint32
	CoinbaseSequence uint32
	CoinbaseLockTime uint32
	ValueRemaining   int64
	// Outputs the client must put last in its coinbase, serialized back to
	// back without a count (the witness commitment when there is one).
	Outputs     []byte
	OutputCount uint32
	MerklePath  [][32]byte

	Txs  []Tx
	Fees int64
	// Empty marks a template built ahead of a block that is not known yet.
	Empty bool
}

// HasWitnessCommitment reports whether the client's coinbase needs the
// BIP141 witness (marker, flag and reserved value).
func (t *Template) HasWitnessCommitment() bool { return t.OutputCount > 0 }

// Build turns a node template into an SV2 template that leaves room for r.
func Build(src *Source, r Reservation) (*Template, error) {
	txs, dropped, err := Fit(src.Txs, r)
	if err != nil {
		return nil, err
	}
	return BuildFitted(src, txs, dropped)
}

// BuildFitted builds the SV2 template of src holding txs, a result of Fit on
// src.Txs that dropped transactions worth droppedFees: callers that fit once
// and build for several reservations use it to avoid fitting twice.
func BuildFitted(src *Source, txs []Tx, droppedFees int64) (*Template, error) {
	t := &Template{
		Height:           src.Height,
		PrevHash:         src.PrevHash,
		Version:          src.Version,
		Bits:             src.Bits,
		Target:           src.Target,
		Timestamp:        max(src.CurTime, src.MinTime),
		CoinbasePrefix:   HeightScript(src.Height),
		CoinbaseVersion:  CoinbaseTxVersion,
		CoinbaseSequence: CoinbaseSequence,
		CoinbaseLockTime: uint32(src.Height - 1),
		ValueRemaining:   src.CoinbaseValue - droppedFees,
		Txs:              txs,
	}
	if src.Height < 1 {
		return nil, fmt.Errorf("template height %d", src.Height)
	}
	var fees int64
	hasWitness := false
	txids := make([][32]byte, len(txs))
	for i := range txs {
		txids[i] = txs[i].TxID
		fees += txs[i].Fee
		if txs[i].WTxID != txs[i].TxID {
			hasWitness = true
		}
	}
	t.Fees = fees
	t.MerklePath = MerklePath(txids)

	commitment := src.WitnessCommitment
	if len(txs) != len(src.Txs) || (commitment == nil && hasWitness) {
		// The node's commitment covers its own transaction set.
		wtxids := make([][32]byte, len(txs))
		for i := range txs {
			wtxids[i] = txs[i].WTxID
		}
		commitment = WitnessCommitmentScript(WitnessCommitment(wtxids))
	}
	if commitment != nil {
		if !IsWitnessCommitment(commitment) {
			return nil, fmt.Errorf("node's default_witness_commitment %x is not a witness commitment script", commitment)
		}
		t.Outputs = SerializeOutputs([]TxOutput{{Value: 0, PkScript: bytes.Clone(commitment)}})
		t.OutputCount = 1
	}
	return t, nil
}

// Subsidy is the block subsidy at height for a chain halving every
// halvingInterval blocks (210,000; 150 on regtest).
func Subsidy(height, halvingInterval int64) int64 {
	halvings := height / halvingInterval
	if halvings >= 64 {
		return 0
	}
	return (50 * 100_000_000) >> halvings
}

// EmptyNext builds the empty template for the block after the one that
// extends cur: no transactions, so the client can start on it the moment the
// next block is announced. Prev hash, time, bits and target are filled in by
// the SetNewPrevHash that activates it.
func EmptyNext(cur *Template, halvingInterval int64) *Template {
	h := cur.Height + 1
	return &Template{
		Height:           h,
		Version:          cur.Version,
		CoinbasePrefix:   HeightScript(h),
		CoinbaseVersion:  CoinbaseTxVersion,
		CoinbaseSequence: CoinbaseSequence,
		CoinbaseLockTime: uint32(h - 1),
		ValueRemaining:   Subsidy(h, halvingInterval),
		Empty:            true,
	}
}
