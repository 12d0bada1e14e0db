package templates

import (
	"container/heap"
	"errors"
	"fmt"
)

// Consensus limits a template must respect.
const (
	MaxBlockWeight     = 4_000_000
	MaxBlockSigOpsCost = 80_000
	// WitnessScaleFactor converts legacy sigops and non-witness bytes to cost and weight.
	WitnessScaleFactor = 4
	// coinbaseFixedWeight is the spec's reservation for everything but the
	// client's outputs (header 320, tx count 12, coinbase fields 236,
	// scriptSig 400, output count 12, witness commitment output 188).
	coinbaseFixedWeight = 1168
	// nodeCoinbaseSigOps is what Bitcoin Core reserves for the coinbase's
	// own sigops (cost units) when it builds a template.
	nodeCoinbaseSigOpsCost = 400
)

// Tx is one non-coinbase transaction of a node template.
type Tx struct {
	// Data is the consensus serialization with witness.
	Data   []byte
	TxID   [32]byte
	WTxID  [32]byte
	Fee    int64
	SigOps int64 // sigop cost
	Weight int64
	// Depends lists indices (0-based, into the same Tx slice) of the
	// template transactions this one spends.
	Depends []int
}

// Source is what a node's getblocktemplate gives us, in SV2's byte orders.
type Source struct {
	Height        int64
	PrevHash      [32]byte // internal byte order
	Version       uint32
	Bits          uint32
	Target        [32]byte // little-endian
	CurTime       uint32
	MinTime       uint32
	CoinbaseValue int64 // subsidy + fees of Txs
	// WitnessCommitment is the node's default_witness_commitment script, or
	// nil when the node sent none.
	WitnessCommitment []byte
	Txs               []Tx
}

// Reservation is what a client adds to the coinbase (CoinbaseOutputConstraints).
type Reservation struct {
	OutputBytes uint32
	SigOps      uint16
}

// Fit returns the transactions of src that leave room for a coinbase with
// the reserved outputs within the block weight and sigop limits, dropping
// the lowest-feerate transactions that no kept transaction depends on until
// it fits, and the total fee removed. When nothing has to go it returns
// src.Txs itself.
func Fit(txs []Tx, r Reservation) (kept []Tx, droppedFees int64, err error) {
	needWeight := int64(coinbaseFixedWeight) + WitnessScaleFactor*int64(r.OutputBytes)
	needSigOps := int64(nodeCoinbaseSigOpsCost) + WitnessScaleFactor*int64(r.SigOps)
	if needWeight > MaxBlockWeight || needSigOps > MaxBlockSigOpsCost {
		return nil, 0, fmt.Errorf("coinbase reservation of %d bytes and %d sigops exceeds a block", r.OutputBytes, r.SigOps)
	}
	var weight, sigops int64
	for i := range txs {
		weight += txs[i].Weight
		sigops += txs[i].SigOps
	}
	if weight+needWeight <= MaxBlockWeight && sigops+needSigOps <= MaxBlockSigOpsCost {
		return txs, 0, nil
	}
	// children[i] counts kept transactions that spend tx i; a tx may only be
	// dropped when that count is zero (dropping a parent would orphan its child).
	children := make([]int, len(txs))
	for i := range txs {
		for _, d := range txs[i].Depends {
			if d < 0 || d >= len(txs) || d == i {
				return nil, 0, errors.New("template transaction depends on an index outside the template")
			}
			children[d]++
		}
	}
	h := &feerateHeap{txs: txs}
	for i := range txs {
		if children[i] == 0 {
			h.idx = append(h.idx, i)
		}
	}
	heap.Init(h)
	dropped := make([]bool, len(txs))
	for weight+needWeight > MaxBlockWeight || sigops+needSigOps > MaxBlockSigOpsCost {
		if h.Len() == 0 {
			return nil, 0, errors.New("cannot fit the coinbase reservation")
		}
		i := heap.Pop(h).(int)
		dropped[i] = true
		weight -= txs[i].Weight
		sigops -= txs[i].SigOps
		droppedFees += txs[i].Fee
		for _, d := range txs[i].Depends {
			children[d]--
			if children[d] == 0 {
				heap.Push(h, d)
			}
		}
	}
	// Depends indices refer to positions; renumber them for the kept slice.
	newIdx := make([]int, len(txs))
	kept = make([]Tx, 0, len(txs))
	for i := range txs {
		if dropped[i] {
			newIdx[i] = -1
			continue
		}
		newIdx[i] = len(kept)
		kept = append(kept, txs[i])
	}
	for k := range kept {
		if len(kept[k].Depends) == 0 {
			continue
		}
		deps := make([]int, len(kept[k].Depends))
		for j, d := range kept[k].Depends {
			deps[j] = newIdx[d]
		}
		kept[k].Depends = deps
	}
	return kept, droppedFees, nil
}

// feerateHeap pops the lowest fee per weight unit first.
type feerateHeap struct {
	txs []Tx
	idx []int
}

func (h *feerateHeap) Len() int { return len(h.idx) }
func (h *feerateHeap) Less(a, b int) bool {
	x, y := &h.txs[h.idx[a]], &h.txs[h.idx[b]]
	// Compare fee/weight without division: x.Fee/x.Weight < y.Fee/y.Weight.
	l, r := x.Fee*max(y.Weight, 1), y.Fee*max(x.Weight, 1)
	if l != r {
		return l < r
	}
	return h.idx[a] > h.idx[b] // later (usually lower-priority) first
}
func (h *feerateHeap) Swap(a, b int) { h.idx[a], h.idx[b] = h.idx[b], h.idx[a] }
func (h *feerateHeap) Push(x any)    { h.idx = append(h.idx, x.(int)) }
func (h *feerateHeap) Pop() any {
	n := len(h.idx) - 1
	v := h.idx[n]
	h.idx = h.idx[:n]
	return v
}
