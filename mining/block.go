package mining

import (
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// Helpers for a share that found a block (Result.Status == BlockFound). ext
// is the share's extranonce (SubmitSharesExtended.extranonce; nil on
// standard channels) and h is Result.Header.

// CoinbaseTx is the complete coinbase of a share on j, with BIP141 witness
// when the block needs it (the form SubmitSolution and the block carry).
func (j *Job) CoinbaseTx(ext []byte) []byte {
	full := j.FullExtranonce(make([]byte, 0, 32), ext)
	return j.Template.CoinbaseTx(full, true)
}

// Block serializes the whole block: header, coinbase and the template's other
// transactions txs in block order (TDP RequestTransactionData.Success
// transaction_list, or the declared job's transactions).
func (j *Job) Block(h *templates.Header, ext []byte, txs [][]byte) []byte {
	return templates.AssembleBlock(h, j.CoinbaseTx(ext), txs)
}

// SubmitSolution is the TDP SubmitSolution for the share (to the Template
// Provider, template_id = the job template's ID).
func (j *Job) SubmitSolution(h *templates.Header, ext []byte) *messages.SubmitSolution {
	return &messages.SubmitSolution{
		TemplateID:      j.Template.ID,
		Version:         h.Version,
		HeaderTimestamp: h.Time,
		HeaderNonce:     h.Nonce,
		CoinbaseTx:      j.CoinbaseTx(ext),
	}
}

// PushSolution is the JDP PushSolution for the share (to the JDS): the full
// extranonce between the declared coinbase prefix and suffix.
func (j *Job) PushSolution(h *templates.Header, ext []byte) *messages.PushSolution {
	return &messages.PushSolution{
		Extranonce: j.FullExtranonce(nil, ext),
		PrevHash:   h.PrevHash,
		Nonce:      h.Nonce,
		NTime:      h.Time,
		NBits:      h.Bits,
		Version:    h.Version,
	}
}
