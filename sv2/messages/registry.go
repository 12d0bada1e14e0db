// Package messages declares every Stratum V2 message this project speaks:
// Common, Template Distribution, Job Declaration and Mining (core, extension
// 0x0000) and Extensions Negotiation (extension 0x0001). Each message's
// Fields method is the single declaration of its wire layout (see package
// codec); this file maps (extension, msg_type) to message constructors.
package messages

import (
	"errors"
	"fmt"

	"github.com/sv2kit/sv2kit/sv2/codec"
)

var (
	// ErrUnknownExtension: the frame's extension is not one this package
	// decodes. Receivers drop such frames silently (DIGEST §1.1).
	ErrUnknownExtension = errors.New("unknown extension_type")
	// ErrUnknownMessage: a known extension but an undefined msg_type.
	ErrUnknownMessage = errors.New("unknown msg_type")
)

// TrailingAllowance is added to each message's declared maximum in
// MaxPayload: peers may append TLV fields (one maximal TLV is 5+65535 bytes)
// or fields from a newer spec revision, and decoding ignores them, so a frame
// carrying them must not be refused for its size.
const TrailingAllowance = 5 + 0xffff

type group uint8

const (
	groupCommon group = iota
	groupMining
	groupJobDeclaration
	groupTemplateDistribution
	groupExtensions
)

type entry struct {
	group group
	new   func() codec.Message
}

// table is the one list of known messages; the lookup maps are built from it.
var table = []entry{
	// Common (DIGEST §3).
	{groupCommon, func() codec.Message { return new(SetupConnection) }},
	{groupCommon, func() codec.Message { return new(SetupConnectionSuccess) }},
	{groupCommon, func() codec.Message { return new(SetupConnectionError) }},
	{groupCommon, func() codec.Message { return new(ChannelEndpointChanged) }},
	{groupCommon, func() codec.Message { return new(Reconnect) }},

	// Mining (DIGEST §6.1).
	{groupMining, func() codec.Message { return new(OpenStandardMiningChannel) }},
	{groupMining, func() codec.Message { return new(OpenStandardMiningChannelSuccess) }},
	{groupMining, func() codec.Message { return new(OpenMiningChannelError) }},
	{groupMining, func() codec.Message { return new(OpenExtendedMiningChannel) }},
	{groupMining, func() codec.Message { return new(OpenExtendedMiningChannelSuccess) }},
	{groupMining, func() codec.Message { return new(NewMiningJob) }},
	{groupMining, func() codec.Message { return new(UpdateChannel) }},
	{groupMining, func() codec.Message { return new(UpdateChannelError) }},
	{groupMining, func() codec.Message { return new(CloseChannel) }},
	{groupMining, func() codec.Message { return new(SetExtranoncePrefix) }},
	{groupMining, func() codec.Message { return new(SubmitSharesStandard) }},
	{groupMining, func() codec.Message { return new(SubmitSharesExtended) }},
	{groupMining, func() codec.Message { return new(SubmitSharesSuccess) }},
	{groupMining, func() codec.Message { return new(SubmitSharesError) }},
	{groupMining, func() codec.Message { return new(NewExtendedMiningJob) }},
	{groupMining, func() codec.Message { return new(MiningSetNewPrevHash) }},
	{groupMining, func() codec.Message { return new(SetTarget) }},
	{groupMining, func() codec.Message { return new(SetCustomMiningJob) }},
	{groupMining, func() codec.Message { return new(SetCustomMiningJobSuccess) }},
	{groupMining, func() codec.Message { return new(SetCustomMiningJobError) }},
	{groupMining, func() codec.Message { return new(SetGroupChannel) }},

	// Job Declaration (DIGEST §5.1).
	{groupJobDeclaration, func() codec.Message { return new(AllocateMiningJobToken) }},
	{groupJobDeclaration, func() codec.Message { return new(AllocateMiningJobTokenSuccess) }},
	{groupJobDeclaration, func() codec.Message { return new(ProvideMissingTransactions) }},
	{groupJobDeclaration, func() codec.Message { return new(ProvideMissingTransactionsSuccess) }},
	{groupJobDeclaration, func() codec.Message { return new(DeclareMiningJob) }},
	{groupJobDeclaration, func() codec.Message { return new(DeclareMiningJobSuccess) }},
	{groupJobDeclaration, func() codec.Message { return new(DeclareMiningJobError) }},
	{groupJobDeclaration, func() codec.Message { return new(PushSolution) }},

	// Template Distribution (DIGEST §4.1).
	{groupTemplateDistribution, func() codec.Message { return new(CoinbaseOutputConstraints) }},
	{groupTemplateDistribution, func() codec.Message { return new(NewTemplate) }},
	{groupTemplateDistribution, func() codec.Message { return new(SetNewPrevHash) }},
	{groupTemplateDistribution, func() codec.Message { return new(RequestTransactionData) }},
	{groupTemplateDistribution, func() codec.Message { return new(RequestTransactionDataSuccess) }},
	{groupTemplateDistribution, func() codec.Message { return new(RequestTransactionDataError) }},
	{groupTemplateDistribution, func() codec.Message { return new(SubmitSolution) }},

	// Extensions Negotiation (DIGEST §7.1).
	{groupExtensions, func() codec.Message { return new(RequestExtensions) }},
	{groupExtensions, func() codec.Message { return new(RequestExtensionsSuccess) }},
	{groupExtensions, func() codec.Message { return new(RequestExtensionsError) }},
}

type key uint32

func keyOf(ext uint16, msgType uint8) key {
	return key(ext&codec.ExtensionMask)<<8 | key(msgType)
}

// registered holds, per (extension, msg_type), the table entry and the spec name.
var registered = func() map[key]registration {
	r := make(map[key]registration, len(table))
	for i, e := range table {
		m := e.new()
		k := keyOf(m.ExtensionType(), m.MsgType())
		if _, dup := r[k]; dup {
			panic(fmt.Sprintf("messages: %s registered twice", m.MessageName()))
		}
		max, bounded := codec.MaxSize(m)
		r[k] = registration{index: i, name: m.MessageName(), max: max, bounded: bounded}
	}
	return r
}()

type registration struct {
	index int
	name  string
	// max is the largest encoding of the declared fields (trailing TLVs
	// excluded), derived from the declaration; bounded is false for
	// messages carrying transaction lists.
	max     int
	bounded bool
}

func knownExtension(ext uint16) bool {
	return ext == ExtensionCore || ext == ExtensionNegotiation
}

func lookup(ext uint16, msgType uint8) (entry, error) {
	r, err := lookupReg(ext, msgType)
	if err != nil {
		return entry{}, err
	}
	return table[r.index], nil
}

func lookupReg(ext uint16, msgType uint8) (registration, error) {
	ext &= codec.ExtensionMask
	if !knownExtension(ext) {
		return registration{}, fmt.Errorf("%w 0x%04x (msg_type 0x%02x)", ErrUnknownExtension, ext, msgType)
	}
	r, ok := registered[keyOf(ext, msgType)]
	if !ok {
		return registration{}, fmt.Errorf("%w 0x%02x (extension 0x%04x)", ErrUnknownMessage, msgType, ext)
	}
	return r, nil
}

// New returns a fresh zero message for an extension id (the channel bit is
// ignored) and msg_type, or false if the pair is unknown.
func New(extension uint16, msgType uint8) (codec.Message, bool) {
	e, err := lookup(extension, msgType)
	if err != nil {
		return nil, false
	}
	return e.new(), true
}

// All returns a fresh zero instance of every known message, in table order.
func All() []codec.Message {
	out := make([]codec.Message, len(table))
	for i, e := range table {
		out[i] = e.new()
	}
	return out
}

// Decode decodes the payload of a frame with header h. Core messages
// (extension 0) are chosen by msg_type alone: the channel bit is ignored, as
// rust does, because peers of different vintages set it differently. An
// unknown extension gives an error wrapping ErrUnknownExtension (drop the
// frame); an unknown msg_type one wrapping ErrUnknownMessage. Bytes after the
// declared fields are ignored; byte-string fields alias payload.
func Decode(h codec.Header, payload []byte, opts codec.Options) (codec.Message, error) {
	e, err := lookup(h.Extension(), h.MsgType)
	if err != nil {
		return nil, err
	}
	m := e.new()
	if err := codec.Decode(payload, m, opts); err != nil {
		return nil, err
	}
	return m, nil
}

// MaxPayload is an upper bound on a sane payload for the message h announces,
// so a connection can refuse an oversized frame before allocating it: the
// largest encoding of the message's declared fields plus TrailingAllowance,
// and codec.MaxPayload for unknown messages and those carrying transaction
// lists.
func MaxPayload(h codec.Header) int {
	r, err := lookupReg(h.Extension(), h.MsgType)
	if err != nil || !r.bounded {
		return codec.MaxPayload
	}
	return min(r.max+TrailingAllowance, codec.MaxPayload)
}

// FrameReader yields one frame at a time (a plaintext or Noise connection).
type FrameReader interface {
	ReadFrame() (codec.Header, []byte, error)
}

// Read reads one frame from r and decodes it. The header is returned even
// when decoding fails; for a frame of an unknown extension the error wraps
// ErrUnknownExtension and the caller should skip the frame.
func Read(r FrameReader, opts codec.Options) (codec.Message, codec.Header, error) {
	h, payload, err := r.ReadFrame()
	if err != nil {
		return nil, h, err
	}
	m, err := Decode(h, payload, opts)
	return m, h, err
}

// Name is the spec name of a message for logs, also for frames that could
// not be decoded; unknown pairs get a descriptive placeholder.
func Name(ext uint16, msgType uint8) string {
	ext &= codec.ExtensionMask
	if knownExtension(ext) {
		if r, ok := registered[keyOf(ext, msgType)]; ok {
			return r.name
		}
	}
	return fmt.Sprintf("unknown(ext=0x%04x type=0x%02x)", ext, msgType)
}
