package declarer

import (
	"errors"
	"fmt"

	"github.com/sv2kit/sv2kit/sv2/messages"
)

var (
	// ErrClosed is the error of a Declarer closed by its owner (Close).
	ErrClosed = errors.New("declarer: closed")
	// ErrTimeout: the JDS did not answer a request within Config.Timeout.
	ErrTimeout = errors.New("declarer: the JDS did not answer in time")
	// ErrCoinbaseOnly: Declare or PushSolution on a connection set up
	// without DECLARE_TX_DATA (Config.FullTemplate false), where the JDS
	// never sees the transactions and cannot take either.
	ErrCoinbaseOnly = errors.New("declarer: connection is in coinbase-only mode (Config.FullTemplate is false)")
	// ErrQueueFull: the writer queue stayed full for Config.Timeout; the JDS
	// is not reading.
	ErrQueueFull = errors.New("declarer: send queue full")
)

// DeclareError is the JDS's DeclareMiningJob.Error: the job was rejected.
// Code is a free-form string (e.g. "invalid-mining-job-token",
// "stale-chain-tip", "invalid-job"); callers may act on codes they know but
// must fall back on protocol state, not on the code (DIGEST §3). The token
// the job was declared with is spent either way.
type DeclareError struct {
	RequestID uint32
	Code      string
	// Details is error_details as the JDS sent it (sv2kit's JDS: a readable
	// sentence naming the transaction or rule).
	Details string
}

func (e *DeclareError) Error() string {
	if e.Details == "" {
		return fmt.Sprintf("declarer: JDS rejected the job: %q", e.Code)
	}
	return fmt.Sprintf("declarer: JDS rejected the job: %q: %q", e.Code, e.Details)
}

// SetupError is the JDS's SetupConnection.Error: the connection was refused.
type SetupError struct {
	Code string
	// Flags lists the client flags the JDS does not support (0: the refusal
	// is not about flags).
	Flags uint32
	// FullTemplate is what this client asked for.
	FullTemplate bool
}

func (e *SetupError) Error() string {
	msg := fmt.Sprintf("declarer: JDS refused SetupConnection: %q", e.Code)
	if e.Flags != 0 {
		msg += fmt.Sprintf(" (unsupported flags 0x%x)", e.Flags)
	}
	// jdc shows this to operators: the fix is named as its config key.
	switch {
	case e.FullTemplate && e.Flags&messages.FlagDeclareTxData != 0:
		msg += `; this JDS does not accept full-template mode (DECLARE_TX_DATA): set mode = "coinbase-only"`
	case !e.FullTemplate && (e.Code == "missing-declare-tx-data-flag" || e.Code == "unsupported-feature-flags"):
		msg += `; this JDS probably requires full-template mode: set mode = "full-template"`
	}
	return msg
}
