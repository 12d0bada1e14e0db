package declare

// Error codes in DeclareMiningJob.Error and in pool API verdicts. Codes SRI
// defines are used where one fits (DIGEST §5.3, §6.2); the others are ours
// and say which rule failed. error_details always says which transaction or
// field and why.
const (
	CodeInvalidToken           = "invalid-mining-job-token"
	CodeInvalidCoinbaseTx      = "invalid-coinbase-tx"
	CodeInvalidCoinbaseTxInput = "invalid-coinbase-tx-input"
	CodePayoutMissing          = "pool-payout-script-missing"
	CodePayoutUnderpaid        = "pool-payout-underpaid"
	CodeMissingTxs             = "missing-txs"
	CodeTooManyMissing         = "too-many-missing-txs"
	CodeDuplicateTx            = "duplicate-transaction"
	CodeDoubleSpend            = "double-spend"
	CodeInvalidTx              = "invalid-transaction"
	CodeBlockWeight            = "block-weight-exceeded"
	CodeBlockSigOps            = "block-sigops-exceeded"
	CodeStaleChainTip          = "stale-chain-tip"
	CodeInvalidJob             = "invalid-job" // the node's proposal check refused the block
	CodeInternal               = "internal-error"
	CodeNotAllowed             = "declaration-not-allowed"
	CodeTooManyPending         = "too-many-pending-declarations"

	// Pool API only (SetCustomMiningJob.Error codes of SRI's pool).
	CodeJobNotYetValidated        = "job-not-yet-validated"
	CodeInvalidNBits              = "invalid-nbits"
	CodeInvalidVersion            = "invalid-version"
	CodeInvalidMinNTime           = "invalid-min-ntime"
	CodeInvalidCoinbaseTxVersion  = "invalid-coinbase-tx-version"
	CodeInvalidCoinbasePrefix     = "invalid-coinbase-prefix"
	CodeInvalidCoinbaseTxSequence = "invalid-coinbase-tx-input-n-sequence"
	CodeInvalidCoinbaseTxOutputs  = "invalid-coinbase-tx-outputs"
	CodeInvalidCoinbaseTxLocktime = "invalid-coinbase-tx-locktime"
	CodeInvalidMerklePath         = "invalid-merkle-path"
	CodeUserMismatch              = "user-identity-mismatch"

	// Block hand-over.
	CodeBadExtranonceSize = "bad-extranonce-size"
	CodeNotABlock         = "share-not-a-block"
	CodeNoTransactions    = "coinbase-only-job"
)
