package node

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/sv2kit/sv2kit/templates"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// BlockTemplate is a getblocktemplate result (BIP22/23/9/141) in the form
// callers need, the same whichever node produced it.
type BlockTemplate struct {
	Version           int32
	PreviousBlockHash chainhash.Hash // internal byte order (String() gives the RPC form)
	Height            int64
	Bits              uint32
	Target            *big.Int // from `target`, or from Bits when absent
	CurTime           int64
	MinTime           int64
	MaxTime           int64 // btcd only; 0 when absent

	// CoinbaseValue is the subsidy plus all fees, in satoshis.
	CoinbaseValue int64
	// CoinbaseAuxFlags is coinbaseaux.flags (btcd; old Core), nil when absent.
	CoinbaseAuxFlags []byte
	// DefaultWitnessCommitment is the witness commitment output script
	// (OP_RETURN aa21a9ed...), also when the node sent only the 32-byte
	// hash (btcd). Nodes omit it when the template has no witness
	// transaction (btcd) — then it is nil; when they omit it although a
	// transaction has witness data, it is computed here.
	DefaultWitnessCommitment []byte
	// SignetChallenge is set on signet (Core), nil otherwise.
	SignetChallenge []byte

	Transactions []TemplateTx

	SigOpLimit  int64
	SizeLimit   int64
	WeightLimit int64

	LongPollID   string
	Mutable      []string
	Rules        []string       // empty on btcd
	VBAvailable  map[string]int // empty on btcd
	VBRequired   int
	Capabilities []string
}

// TemplateTx is one non-coinbase transaction of a template, in block order.
type TemplateTx struct {
	Data    []byte         // consensus serialization with witness
	TxID    chainhash.Hash // internal byte order
	WTxID   chainhash.Hash // GBT's `hash`; equals TxID without witness
	Fee     int64          // satoshis
	SigOps  int64          // sigop cost as the node reports it
	Weight  int64
	Depends []int // 1-based indices into Transactions (BIP22), as the node sends them
}

// TargetLE returns the target as 32 little-endian bytes (the SV2 U256 form).
func (t *BlockTemplate) TargetLE() [32]byte {
	var out [32]byte
	if t.Target == nil {
		return out
	}
	be := t.Target.FillBytes(make([]byte, 32))
	for i := range 32 {
		out[i] = be[31-i]
	}
	return out
}

// TotalFees is the sum of the transactions' fees.
func (t *BlockTemplate) TotalFees() int64 {
	var sum int64
	for i := range t.Transactions {
		sum += t.Transactions[i].Fee
	}
	return sum
}

type gbtTxJSON struct {
	Data    string `json:"data"`
	TxID    string `json:"txid"`
	Hash    string `json:"hash"`
	Depends []int  `json:"depends"`
	Fee     int64  `json:"fee"`
	SigOps  int64  `json:"sigops"`
	Weight  *int64 `json:"weight"`
}

type gbtJSON struct {
	Version                  int32             `json:"version"`
	Rules                    []string          `json:"rules"`
	VBAvailable              map[string]int    `json:"vbavailable"`
	VBRequired               int               `json:"vbrequired"`
	PreviousBlockHash        string            `json:"previousblockhash"`
	Transactions             []gbtTxJSON       `json:"transactions"`
	CoinbaseAux              map[string]string `json:"coinbaseaux"`
	CoinbaseValue            *int64            `json:"coinbasevalue"`
	LongPollID               string            `json:"longpollid"`
	Target                   string            `json:"target"`
	MinTime                  int64             `json:"mintime"`
	MaxTime                  int64             `json:"maxtime"`
	Mutable                  []string          `json:"mutable"`
	SigOpLimit               int64             `json:"sigoplimit"`
	SizeLimit                int64             `json:"sizelimit"`
	WeightLimit              int64             `json:"weightlimit"`
	CurTime                  int64             `json:"curtime"`
	Bits                     string            `json:"bits"`
	Height                   int64             `json:"height"`
	DefaultWitnessCommitment string            `json:"default_witness_commitment"`
	SignetChallenge          string            `json:"signet_challenge"`
	Capabilities             []string          `json:"capabilities"`
}

// ParseBlockTemplate decodes a getblocktemplate result from Bitcoin Core,
// Knots or btcd. Fields a node leaves out (txid, hash, weight; the witness
// commitment when witness transactions are present; target) are computed.
func ParseBlockTemplate(raw []byte) (*BlockTemplate, error) {
	var j gbtJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("decode template: %w", err)
	}
	if j.CoinbaseValue == nil {
		return nil, fmt.Errorf("template has no coinbasevalue (the node sent coinbasetxn only)")
	}
	t := &BlockTemplate{
		Version:       j.Version,
		Height:        j.Height,
		CurTime:       j.CurTime,
		MinTime:       j.MinTime,
		MaxTime:       j.MaxTime,
		CoinbaseValue: *j.CoinbaseValue,
		SigOpLimit:    j.SigOpLimit,
		SizeLimit:     j.SizeLimit,
		WeightLimit:   j.WeightLimit,
		LongPollID:    j.LongPollID,
		Mutable:       j.Mutable,
		Rules:         j.Rules,
		VBAvailable:   j.VBAvailable,
		VBRequired:    j.VBRequired,
		Capabilities:  j.Capabilities,
	}
	prev, err := chainhash.NewHashFromStr(j.PreviousBlockHash)
	if err != nil || len(j.PreviousBlockHash) != 64 {
		return nil, fmt.Errorf("template previousblockhash %q: not a 32-byte hex hash", j.PreviousBlockHash)
	}
	t.PreviousBlockHash = *prev
	bits, err := strconv.ParseUint(j.Bits, 16, 32) // btcd does not zero-pad
	if err != nil {
		return nil, fmt.Errorf("template bits %q: %w", j.Bits, err)
	}
	t.Bits = uint32(bits)
	if j.Target != "" {
		tb, ok := new(big.Int).SetString(j.Target, 16)
		if !ok {
			return nil, fmt.Errorf("template target %q: not hex", j.Target)
		}
		t.Target = tb
	} else {
		t.Target = templates.TargetToBig(templates.TargetFromBits(t.Bits))
	}
	if f, ok := j.CoinbaseAux["flags"]; ok && f != "" {
		if t.CoinbaseAuxFlags, err = hex.DecodeString(f); err != nil {
			return nil, fmt.Errorf("template coinbaseaux.flags: %w", err)
		}
	}
	if j.DefaultWitnessCommitment != "" {
		c, err := hex.DecodeString(j.DefaultWitnessCommitment)
		if err != nil {
			return nil, fmt.Errorf("template default_witness_commitment: %w", err)
		}
		switch {
		case len(c) == 32:
			// btcd sends only the 32-byte commitment hash; Core the script.
			c = templates.WitnessCommitmentScript([32]byte(c))
		case len(c) != 38 || !templates.IsWitnessCommitment(c):
			return nil, fmt.Errorf("template default_witness_commitment %x: neither a commitment script nor a 32-byte hash", c)
		}
		t.DefaultWitnessCommitment = c
	}
	if j.SignetChallenge != "" {
		if t.SignetChallenge, err = hex.DecodeString(j.SignetChallenge); err != nil {
			return nil, fmt.Errorf("template signet_challenge: %w", err)
		}
	}

	t.Transactions = make([]TemplateTx, len(j.Transactions))
	anyWitness := false
	for i := range j.Transactions {
		jt := &j.Transactions[i]
		tx := &t.Transactions[i]
		if tx.Data, err = hex.DecodeString(jt.Data); err != nil {
			return nil, fmt.Errorf("template transaction %d data: %w", i, err)
		}
		tx.Fee, tx.SigOps, tx.Depends = jt.Fee, jt.SigOps, jt.Depends
		haveIDs := len(jt.TxID) == 64 && len(jt.Hash) == 64
		if haveIDs {
			id, err1 := chainhash.NewHashFromStr(jt.TxID)
			wid, err2 := chainhash.NewHashFromStr(jt.Hash)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("template transaction %d: bad txid %q or hash %q", i, jt.TxID, jt.Hash)
			}
			tx.TxID, tx.WTxID = *id, *wid
		}
		if jt.Weight != nil {
			tx.Weight = *jt.Weight
		}
		if !haveIDs || jt.Weight == nil {
			if err := fillFromData(tx); err != nil {
				return nil, fmt.Errorf("template transaction %d: %w", i, err)
			}
		}
		if tx.TxID != tx.WTxID {
			anyWitness = true
		}
	}
	if t.DefaultWitnessCommitment == nil && anyWitness {
		t.DefaultWitnessCommitment = WitnessCommitmentScript(t.Transactions)
	}
	return t, nil
}

// fillFromData computes txid, wtxid and weight from the serialized transaction.
func fillFromData(tx *TemplateTx) error {
	var m wire.MsgTx
	if err := m.Deserialize(bytes.NewReader(tx.Data)); err != nil {
		return fmt.Errorf("decode data: %w", err)
	}
	tx.TxID = m.TxHash()
	tx.WTxID = m.WitnessHash()
	tx.Weight = int64(m.SerializeSizeStripped()*3 + m.SerializeSize()) // BIP141: base·3 + total
	return nil
}

// WitnessCommitmentScript returns the BIP141 commitment output script for a
// block whose non-coinbase transactions are txs (witness reserved value of 32
// zero bytes).
func WitnessCommitmentScript(txs []TemplateTx) []byte {
	wtxids := make([][32]byte, len(txs))
	for i := range txs {
		wtxids[i] = txs[i].WTxID
	}
	return templates.WitnessCommitmentScript(templates.WitnessCommitment(wtxids))
}

// hashFromRPC parses a hash in RPC (display) order.
func hashFromRPC(s string) (chainhash.Hash, error) {
	s = strings.TrimSpace(s)
	if len(s) != 64 {
		return chainhash.Hash{}, fmt.Errorf("hash %q: want 64 hex digits", s)
	}
	h, err := chainhash.NewHashFromStr(s)
	if err != nil {
		return chainhash.Hash{}, fmt.Errorf("hash %q: %w", s, err)
	}
	return *h, nil
}
