package messages

import "github.com/sv2kit/sv2kit/sv2/codec"

// Template Distribution Protocol (DIGEST §4.1). The client is a JDC, pool or
// solo miner; the server is a Template Provider. No message of this protocol
// sets the channel bit.

// Message types of the Template Distribution Protocol.
const (
	TypeCoinbaseOutputConstraints     uint8 = 0x70
	TypeNewTemplate                   uint8 = 0x71
	TypeSetNewPrevHash                uint8 = 0x72
	TypeRequestTransactionData        uint8 = 0x73
	TypeRequestTransactionDataSuccess uint8 = 0x74
	TypeRequestTransactionDataError   uint8 = 0x75
	TypeSubmitSolution                uint8 = 0x76
)

// DefaultCoinbaseOutputMaxAdditionalSigops is what a receiver assumes when a
// peer sends the pre-2025 4-byte CoinbaseOutputConstraints (sv2-tp's default).
const DefaultCoinbaseOutputMaxAdditionalSigops uint16 = 400

// CoinbaseOutputConstraints tells the TP (client → server) how much room the
// client's own coinbase outputs need; the TP replies with its current template.
type CoinbaseOutputConstraints struct {
	CoinbaseOutputMaxAdditionalSize   uint32
	CoinbaseOutputMaxAdditionalSigops uint16
	// HasMaxAdditionalSigops is false when a decoded message used the old
	// 4-byte form (then the sigops field holds the 400 default). Encoding
	// always writes the 6-byte form.
	HasMaxAdditionalSigops bool
}

func (*CoinbaseOutputConstraints) MsgType() uint8        { return TypeCoinbaseOutputConstraints }
func (*CoinbaseOutputConstraints) ExtensionType() uint16 { return 0 }
func (*CoinbaseOutputConstraints) MessageName() string   { return "CoinbaseOutputConstraints" }
func (m *CoinbaseOutputConstraints) Fields(c *codec.Codec) {
	c.U32("coinbase_output_max_additional_size", &m.CoinbaseOutputMaxAdditionalSize)
	// The sigops field was appended in 2025-03; sv2-tp still accepts the
	// 4-byte form and assumes 400, so we do the same.
	c.TrailingU16("coinbase_output_max_additional_sigops", &m.CoinbaseOutputMaxAdditionalSigops, &m.HasMaxAdditionalSigops)
	if c.Decoding() && !m.HasMaxAdditionalSigops {
		m.CoinbaseOutputMaxAdditionalSigops = DefaultCoinbaseOutputMaxAdditionalSigops
	}
}

// NewTemplate offers a block template (server → client); future templates
// become minable when a SetNewPrevHash names them.
type NewTemplate struct {
	TemplateID               uint64
	FutureTemplate           bool
	Version                  uint32
	CoinbaseTxVersion        uint32
	CoinbasePrefix           []byte
	CoinbaseTxInputSequence  uint32
	CoinbaseTxValueRemaining uint64
	CoinbaseTxOutputsCount   uint32
	// CoinbaseTxOutputs are consensus-serialized outputs back to back, with
	// no CompactSize count (the count is CoinbaseTxOutputsCount).
	CoinbaseTxOutputs  []byte
	CoinbaseTxLocktime uint32
	MerklePath         [][32]byte
}

func (*NewTemplate) MsgType() uint8        { return TypeNewTemplate }
func (*NewTemplate) ExtensionType() uint16 { return 0 }
func (*NewTemplate) MessageName() string   { return "NewTemplate" }
func (m *NewTemplate) Fields(c *codec.Codec) {
	c.U64("template_id", &m.TemplateID)
	c.Bool("future_template", &m.FutureTemplate)
	c.U32("version", &m.Version)
	c.U32("coinbase_tx_version", &m.CoinbaseTxVersion)
	c.B0255("coinbase_prefix", &m.CoinbasePrefix)
	c.U32("coinbase_tx_input_sequence", &m.CoinbaseTxInputSequence)
	c.U64("coinbase_tx_value_remaining", &m.CoinbaseTxValueRemaining)
	c.U32("coinbase_tx_outputs_count", &m.CoinbaseTxOutputsCount)
	c.B064K("coinbase_tx_outputs", &m.CoinbaseTxOutputs)
	c.U32("coinbase_tx_locktime", &m.CoinbaseTxLocktime)
	c.Seq0255U256("merkle_path", &m.MerklePath)
}

// SetNewPrevHash announces a new chain tip (server → client) and activates
// the future template it names. See MiningSetNewPrevHash for the Mining one.
type SetNewPrevHash struct {
	TemplateID      uint64
	PrevHash        [32]byte
	HeaderTimestamp uint32
	NBits           uint32
	Target          [32]byte
}

func (*SetNewPrevHash) MsgType() uint8        { return TypeSetNewPrevHash }
func (*SetNewPrevHash) ExtensionType() uint16 { return 0 }
func (*SetNewPrevHash) MessageName() string   { return "SetNewPrevHash" }
func (m *SetNewPrevHash) Fields(c *codec.Codec) {
	c.U64("template_id", &m.TemplateID)
	c.U256("prev_hash", &m.PrevHash)
	c.U32("header_timestamp", &m.HeaderTimestamp)
	c.U32("nBits", &m.NBits)
	c.U256("target", &m.Target)
}

// RequestTransactionData asks the TP (client → server) for the transactions
// of a template.
type RequestTransactionData struct {
	TemplateID uint64
}

func (*RequestTransactionData) MsgType() uint8        { return TypeRequestTransactionData }
func (*RequestTransactionData) ExtensionType() uint16 { return 0 }
func (*RequestTransactionData) MessageName() string   { return "RequestTransactionData" }
func (m *RequestTransactionData) Fields(c *codec.Codec) {
	c.U64("template_id", &m.TemplateID)
}

// RequestTransactionDataSuccess carries a template's transactions (server →
// client).
type RequestTransactionDataSuccess struct {
	TemplateID uint64
	// ExcessData is opaque (sv2-tp: the 32-byte witness reserved value); a
	// JDC forwards it in DeclareMiningJob.ExcessData.
	ExcessData []byte
	// TransactionList holds every non-coinbase transaction in block order,
	// serialized with witness.
	TransactionList [][]byte
}

func (*RequestTransactionDataSuccess) MsgType() uint8        { return TypeRequestTransactionDataSuccess }
func (*RequestTransactionDataSuccess) ExtensionType() uint16 { return 0 }
func (*RequestTransactionDataSuccess) MessageName() string   { return "RequestTransactionData.Success" }
func (m *RequestTransactionDataSuccess) Fields(c *codec.Codec) {
	c.U64("template_id", &m.TemplateID)
	c.B064K("excess_data", &m.ExcessData)
	c.Seq064KB016M("transaction_list", &m.TransactionList)
}

// RequestTransactionDataError refuses a RequestTransactionData (server →
// client), e.g. "template-id-not-found" or "stale-template-id".
type RequestTransactionDataError struct {
	TemplateID uint64
	ErrorCode  string
}

func (*RequestTransactionDataError) MsgType() uint8        { return TypeRequestTransactionDataError }
func (*RequestTransactionDataError) ExtensionType() uint16 { return 0 }
func (*RequestTransactionDataError) MessageName() string   { return "RequestTransactionData.Error" }
func (m *RequestTransactionDataError) Fields(c *codec.Codec) {
	c.U64("template_id", &m.TemplateID)
	c.Str0255("error_code", &m.ErrorCode)
}

// SubmitSolution hands a block-solving header and coinbase to the TP (client
// → server); there is no reply.
type SubmitSolution struct {
	TemplateID      uint64
	Version         uint32
	HeaderTimestamp uint32
	HeaderNonce     uint32
	// CoinbaseTx is the complete coinbase including BIP141 marker, flag and
	// witness.
	CoinbaseTx []byte
}

func (*SubmitSolution) MsgType() uint8        { return TypeSubmitSolution }
func (*SubmitSolution) ExtensionType() uint16 { return 0 }
func (*SubmitSolution) MessageName() string   { return "SubmitSolution" }
func (m *SubmitSolution) Fields(c *codec.Codec) {
	c.U64("template_id", &m.TemplateID)
	c.U32("version", &m.Version)
	c.U32("header_timestamp", &m.HeaderTimestamp)
	c.U32("header_nonce", &m.HeaderNonce)
	c.B064K("coinbase_tx", &m.CoinbaseTx)
}
