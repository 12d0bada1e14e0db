package provider

import (
	"encoding/hex"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/internal/corelog"
	"github.com/sv2kit/sv2kit/sv2/codec"
)

// ClientID identifies a connection; the shell chooses it and never reuses
// one while the core may still know it.
type ClientID uint64

// Outgoing is one message for one client. Message values may be shared by
// several Outgoing entries (every client of a group gets the same
// *NewTemplate, every client the same fast-path *SetNewPrevHash): the shell
// must not modify them, and may encode a shared value once.
type Outgoing struct {
	Client ClientID
	Msg    codec.Message
}

// Closing asks the shell to close a client's connection after writing what
// Send holds for it; Reason is for the log. The core has already forgotten
// the client (ClientGone for it is a no-op).
type Closing struct {
	Client ClientID
	Reason string
}

// FoundBlock is a block that meets its proof-of-work target. The shell
// writes Raw to disk first, then submits it to the node (submitblock).
type FoundBlock struct {
	TemplateID uint64
	Height     int64
	// Hash is the block hash in internal byte order (see HashString).
	Hash [32]byte
	Raw  []byte
	// Stale: the template was not of the current tip (the block competes
	// with the tip; the node decides).
	Stale bool
}

// HashString is the block hash as RPCs and explorers show it.
func (b *FoundBlock) HashString() string { return DisplayHash(b.Hash) }

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
// Send (per client, in order), write Blocks to disk and submit them, close
// Close (after their pending Send), fetch a template when FetchTemplate is
// set, and log Logs.
type Actions struct {
	Send          []Outgoing
	Close         []Closing
	FetchTemplate bool
	Blocks        []FoundBlock
	Logs          []LogLine
}

// Empty reports whether there is nothing to do.
func (a *Actions) Empty() bool {
	return len(a.Send) == 0 && len(a.Close) == 0 && !a.FetchTemplate && len(a.Blocks) == 0 && len(a.Logs) == 0
}

func (a *Actions) send(id ClientID, m codec.Message) {
	a.Send = append(a.Send, Outgoing{Client: id, Msg: m})
}

func (a *Actions) log(l Level, msg string, kv ...any) {
	a.Logs = append(a.Logs, LogLine{Level: l, Msg: msg, Fields: kv})
}

// DisplayHash renders an internal-order hash the way RPCs show it (reversed).
func DisplayHash(h [32]byte) string {
	var r [32]byte
	for i := range h {
		r[31-i] = h[i]
	}
	return hex.EncodeToString(r[:])
}
