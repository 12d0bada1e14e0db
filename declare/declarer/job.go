package declarer

import (
	"errors"
	"fmt"

	"github.com/sv2kit/sv2kit/mempool"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// Wire limits of DeclareMiningJob's fields (DIGEST §5.1).
const (
	maxTokenLen    = 255
	maxB064K       = 0xffff
	maxListEntries = 0xffff
)

// Job is a block template declared to the JDS (DeclareMiningJob).
type Job struct {
	// Token is an unused mining_job_token from Declarer.Token.
	Token []byte
	// Version is the template's header version (NewTemplate.version).
	Version uint32
	// CoinbasePrefix and CoinbaseSuffix are the full serialized coinbase
	// around the extranonce, in witness form (marker, flag and the 32-byte
	// witness reserved value kept): coinbase = prefix ‖ extranonce ‖ suffix.
	// The suffix carries the outputs of AllocateMiningJobToken.Success's
	// coinbase_tx_outputs, the pool payout output funded, in the order the
	// SetCustomMiningJob will use.
	CoinbasePrefix, CoinbaseSuffix []byte
	// WTxIDs are the wtxids of the non-coinbase transactions in block order
	// (internal byte order). A 2025 SRI JDS expects txids here (see TxIDs).
	WTxIDs [][32]byte
	// Txs are the same transactions serialized with witness, in the same
	// order, to answer ProvideMissingTransactions. Nil means the JDS must
	// know every transaction; a request for one then fails the declaration.
	Txs [][]byte
	// ExcessData is RequestTransactionData.Success.excess_data, forwarded.
	ExcessData []byte
}

// validate checks the wire limits, so that a job that cannot be encoded is
// refused before it spends a request id.
func (j *Job) validate() error {
	switch {
	case len(j.Token) == 0:
		return errors.New("job has no mining job token")
	case len(j.Token) > maxTokenLen:
		return fmt.Errorf("job token is %d bytes; at most %d fit", len(j.Token), maxTokenLen)
	case len(j.CoinbasePrefix) > maxB064K:
		return fmt.Errorf("coinbase prefix is %d bytes; at most %d fit", len(j.CoinbasePrefix), maxB064K)
	case len(j.CoinbaseSuffix) > maxB064K:
		return fmt.Errorf("coinbase suffix is %d bytes; at most %d fit", len(j.CoinbaseSuffix), maxB064K)
	case len(j.ExcessData) > maxB064K:
		return fmt.Errorf("excess data is %d bytes; at most %d fit", len(j.ExcessData), maxB064K)
	case len(j.WTxIDs) > maxListEntries:
		return fmt.Errorf("job has %d transactions; a declaration carries at most %d", len(j.WTxIDs), maxListEntries)
	case j.Txs != nil && len(j.Txs) != len(j.WTxIDs):
		return fmt.Errorf("job has %d wtxids but %d transactions", len(j.WTxIDs), len(j.Txs))
	}
	return nil
}

// NewJob builds the Job for a TDP template: tmpl is the NewTemplate, data
// the RequestTransactionData.Success for it, token an unused token
// (Declarer.Token), and coinbasePrefix/coinbaseSuffix the coinbase the
// caller built from the template and the token's coinbase_tx_outputs
// (witness form, split around the extranonce). NewJob takes the version
// from the template, computes the wtxids of data's transactions and
// forwards excess_data; it does not copy the byte slices.
//
// It checks that data belongs to tmpl and, when the template commits to
// witnesses, that the coinbase is in witness form; how the coinbase is laid
// out is the caller's business.
func NewJob(token []byte, tmpl *messages.NewTemplate, data *messages.RequestTransactionDataSuccess, coinbasePrefix, coinbaseSuffix []byte) (Job, error) {
	if tmpl == nil || data == nil {
		return Job{}, errors.New("declarer: NewJob needs a template and its transaction data")
	}
	if data.TemplateID != tmpl.TemplateID {
		return Job{}, fmt.Errorf("declarer: transaction data is for template %d, not %d", data.TemplateID, tmpl.TemplateID)
	}
	if committed, err := commitsToWitness(tmpl); err != nil {
		return Job{}, fmt.Errorf("declarer: template %d: %w", tmpl.TemplateID, err)
	} else if committed && !witnessForm(coinbasePrefix) {
		return Job{}, fmt.Errorf("declarer: template %d has a witness commitment but the coinbase is not in witness form", tmpl.TemplateID)
	}
	j := Job{
		Token:          token,
		Version:        tmpl.Version,
		CoinbasePrefix: coinbasePrefix,
		CoinbaseSuffix: coinbaseSuffix,
		WTxIDs:         WTxIDs(data.TransactionList),
		Txs:            data.TransactionList,
		ExcessData:     data.ExcessData,
	}
	if err := j.validate(); err != nil {
		return Job{}, fmt.Errorf("declarer: %w", err)
	}
	return j, nil
}

// WTxIDs returns the wtxid of each transaction serialized with witness: the
// double SHA-256 of the whole serialization (for a transaction without
// witness that is its txid, as BIP141 defines).
func WTxIDs(txs [][]byte) [][32]byte {
	out := make([][32]byte, len(txs))
	for i, tx := range txs {
		out[i] = templates.DoubleSHA256(tx)
	}
	return out
}

// TxIDs returns the txid of each transaction (hash of the serialization
// without witness). A 2025 SRI JDS keys its mempool by txid and expects
// txids in DeclareMiningJob's list (DIGEST §7.2); put these in Job.WTxIDs
// for such a JDS.
func TxIDs(txs [][]byte) ([][32]byte, error) {
	out := make([][32]byte, len(txs))
	for i, raw := range txs {
		ti, err := mempool.ScanTx(raw, mempool.ScanOptions{})
		if err != nil {
			return nil, fmt.Errorf("declarer: transaction %d: %w", i, err)
		}
		out[i] = ti.TxID
	}
	return out, nil
}

// commitsToWitness reports whether a template's coinbase outputs carry a
// BIP141 witness commitment.
func commitsToWitness(tmpl *messages.NewTemplate) (bool, error) {
	outs, err := templates.ParseOutputs(tmpl.CoinbaseTxOutputs, int(tmpl.CoinbaseTxOutputsCount))
	if err != nil {
		return false, err
	}
	for _, o := range outs {
		if templates.IsWitnessCommitment(o.PkScript) {
			return true, nil
		}
	}
	return false, nil
}

// witnessForm reports whether a serialized coinbase prefix has the BIP141
// marker and flag after its version.
func witnessForm(prefix []byte) bool {
	return len(prefix) >= 6 && prefix[4] == 0x00 && prefix[5] == 0x01
}
