package jdc

import (
	"encoding/hex"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/internal/corelog"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
)

// Solo is the Source of work that pays the configured solo payout script,
// with no pool; pairs are numbered from 0 in configuration order.
const Solo = -1

// None is the Source when there is no work at all (no solo payout configured
// and no pair usable).
const None = -2

// SourceName renders a source for logs and metrics.
func SourceName(src int) string {
	switch src {
	case Solo:
		return "solo"
	case None:
		return "none"
	}
	return fmt.Sprintf("pair-%d", src)
}

// Work is what the devices mine: one template's coinbase split around the
// extranonce space the device server subdivides per channel. It mirrors
// jdc/devices.Work so that the core does not depend on the server.
type Work struct {
	ID              uint64
	Future          bool
	Version         uint32
	CoinbasePrefix  []byte // non-witness, ends with the pool's extranonce prefix
	CoinbaseSuffix  []byte // non-witness
	ExtranonceSpace int
	MerklePath      [][32]byte
}

// PrevHash activates a future Work (mirrors jdc/devices.PrevHash).
type PrevHash struct {
	WorkID   uint64
	PrevHash [32]byte
	MinNTime uint32
	NBits    uint32
}

// Share is a device share that met the upstream target or found a block
// (mirrors jdc/devices.Share).
type Share struct {
	WorkID       uint64
	ChannelID    uint32
	UserIdentity string
	// Extranonce is the device-space part: ExtranonceSpace bytes.
	Extranonce            []byte
	Version, NTime, Nonce uint32
	Hash                  [32]byte
	Block                 bool
}

// DeviceOp is one call the shell makes on the device server, in order:
// exactly one of Work, PrevHash and Target is set.
type DeviceOp struct {
	Work     *Work
	PrevHash *PrevHash
	Target   *[32]byte
}

// PoolSend is a message for a pair's pool connection.
type PoolSend struct {
	Pair int
	Msg  codec.Message
}

// TokenRequest asks the shell for a mining job token from a pair's JDS
// (declarer.Token); the answer comes back as Core.Token with the same Req.
type TokenRequest struct {
	Pair int
	Req  uint32
}

// DeclareRequest asks the shell to declare a job to a pair's JDS
// (declarer.Declare); the answer comes back as Core.Declared with Req.
type DeclareRequest struct {
	Pair           int
	Req            uint32
	Token          []byte
	Version        uint32
	CoinbasePrefix []byte // witness form, ends right before the full extranonce
	CoinbaseSuffix []byte
	WTxIDs         [][32]byte
	Txs            [][]byte
	ExcessData     []byte
}

// PairReset asks the shell to drop a pair's connections (pool and JDS) and
// reconnect them with backoff: the core has already forgotten their state.
type PairReset struct {
	Pair   int
	Reason string
}

// Switch records a change of the source feeding the devices.
type Switch struct {
	From, To int
	Reason   string
}

// FoundBlock is a block found by a device. The shell writes Raw (when not
// nil) to disk and fsyncs it before anything else, then sends Solution to
// tp, Push (when not nil) to the pair's JDS and Raw to the node.
type FoundBlock struct {
	Source     int
	TemplateID uint64
	Hash       [32]byte
	// Raw is the whole block, nil when the template's transactions were not
	// known yet (tp still has them and rebuilds it from Solution).
	Raw      []byte
	Solution *messages.SubmitSolution
	Push     *messages.PushSolution
}

// HashString is the block hash as RPCs and explorers show it.
func (b *FoundBlock) HashString() string { return DisplayHash(b.Hash) }

// Constraints is the CoinbaseOutputConstraints jdc must announce to tp.
type Constraints struct {
	Size   uint32
	SigOps uint16
}

// ShareResult is the fate of a device share, for metrics.
type ShareResult struct {
	Source int
	// Outcome is "sent", "buffered", "accepted", "rejected", "dropped" or
	// "block".
	Outcome string
	// Reason is the pool's error code for "rejected", why for "dropped".
	Reason string
	Count  uint32
}

// Level is a log level of a LogLine (hclog's).
type Level = hclog.Level

// Log levels.
const (
	LevelDebug = hclog.Debug
	LevelInfo  = hclog.Info
	LevelWarn  = hclog.Warn
	LevelError = hclog.Error
)

// LogLine is something worth logging; the shell writes it with corelog.Write.
type LogLine = corelog.Line

// Actions is what the shell must do after an event, in this order: write
// Blocks to disk and submit them, apply Devices, send Pool messages (per
// pair, in order), start Tokens, Declares and TxData requests, reset Resets,
// announce Constraints, then record Switches and Shares and log Logs.
type Actions struct {
	Blocks      []FoundBlock
	Devices     []DeviceOp
	Pool        []PoolSend
	Tokens      []TokenRequest
	Declares    []DeclareRequest
	TxData      []uint64 // RequestTransactionData to tp for these template ids
	Resets      []PairReset
	Constraints *Constraints
	Switches    []Switch
	Shares      []ShareResult
	Logs        []LogLine
}

// Empty reports whether there is nothing to do.
func (a *Actions) Empty() bool {
	return len(a.Blocks) == 0 && len(a.Devices) == 0 && len(a.Pool) == 0 && len(a.Tokens) == 0 &&
		len(a.Declares) == 0 && len(a.TxData) == 0 && len(a.Resets) == 0 && a.Constraints == nil &&
		len(a.Switches) == 0 && len(a.Shares) == 0 && len(a.Logs) == 0
}

func (a *Actions) log(l Level, msg string, kv ...any) {
	a.Logs = append(a.Logs, LogLine{Level: l, Msg: msg, Fields: kv})
}

func (a *Actions) share(src int, outcome, reason string, n uint32) {
	a.Shares = append(a.Shares, ShareResult{Source: src, Outcome: outcome, Reason: reason, Count: n})
}

// DisplayHash renders an internal-order hash the way RPCs show it (reversed).
func DisplayHash(h [32]byte) string {
	var r [32]byte
	for i := range h {
		r[31-i] = h[i]
	}
	return hex.EncodeToString(r[:])
}
