package messages

import "github.com/sv2kit/sv2kit/sv2/codec"

// Job Declaration Protocol (DIGEST §5.1). The client is a JDC, the server a
// JDS. No message of this protocol sets the channel bit.

// Message types of the Job Declaration Protocol. 0x52–0x54 belonged to
// messages removed from the spec and are not decoded.
const (
	TypeAllocateMiningJobToken            uint8 = 0x50
	TypeAllocateMiningJobTokenSuccess     uint8 = 0x51
	TypeProvideMissingTransactions        uint8 = 0x55
	TypeProvideMissingTransactionsSuccess uint8 = 0x56
	TypeDeclareMiningJob                  uint8 = 0x57
	TypeDeclareMiningJobSuccess           uint8 = 0x58
	TypeDeclareMiningJobError             uint8 = 0x59
	TypePushSolution                      uint8 = 0x60
)

// AllocateMiningJobToken asks the JDS (client → server) for a token to
// declare or set a custom job with.
type AllocateMiningJobToken struct {
	UserIdentifier string
	RequestID      uint32
}

func (*AllocateMiningJobToken) MsgType() uint8        { return TypeAllocateMiningJobToken }
func (*AllocateMiningJobToken) ExtensionType() uint16 { return 0 }
func (*AllocateMiningJobToken) MessageName() string   { return "AllocateMiningJobToken" }
func (m *AllocateMiningJobToken) Fields(c *codec.Codec) {
	c.Str0255("user_identifier", &m.UserIdentifier)
	c.U32("request_id", &m.RequestID)
}

// AllocateMiningJobTokenSuccess hands out a token and the pool's required
// coinbase outputs (server → client).
type AllocateMiningJobTokenSuccess struct {
	RequestID      uint32
	MiningJobToken []byte
	// CoinbaseTxOutputs is a CompactSize-prefixed vector of outputs; the
	// first is the pool payout output (rust calls the field coinbase_outputs).
	CoinbaseTxOutputs []byte
}

func (*AllocateMiningJobTokenSuccess) MsgType() uint8        { return TypeAllocateMiningJobTokenSuccess }
func (*AllocateMiningJobTokenSuccess) ExtensionType() uint16 { return 0 }
func (*AllocateMiningJobTokenSuccess) MessageName() string   { return "AllocateMiningJobToken.Success" }
func (m *AllocateMiningJobTokenSuccess) Fields(c *codec.Codec) {
	c.U32("request_id", &m.RequestID)
	c.B0255("mining_job_token", &m.MiningJobToken)
	c.B064K("coinbase_tx_outputs", &m.CoinbaseTxOutputs)
}

// ProvideMissingTransactions asks the JDC (server → client) for the full
// transactions at the given positions of a DeclareMiningJob's wtxid_list.
type ProvideMissingTransactions struct {
	// RequestID is the DeclareMiningJob's request_id.
	RequestID             uint32
	UnknownTxPositionList []uint16
}

func (*ProvideMissingTransactions) MsgType() uint8        { return TypeProvideMissingTransactions }
func (*ProvideMissingTransactions) ExtensionType() uint16 { return 0 }
func (*ProvideMissingTransactions) MessageName() string   { return "ProvideMissingTransactions" }
func (m *ProvideMissingTransactions) Fields(c *codec.Codec) {
	c.U32("request_id", &m.RequestID)
	c.Seq064KU16("unknown_tx_position_list", &m.UnknownTxPositionList)
}

// ProvideMissingTransactionsSuccess carries the requested transactions, in
// the requested order (client → server).
type ProvideMissingTransactionsSuccess struct {
	RequestID       uint32
	TransactionList [][]byte
}

func (*ProvideMissingTransactionsSuccess) MsgType() uint8 {
	return TypeProvideMissingTransactionsSuccess
}
func (*ProvideMissingTransactionsSuccess) ExtensionType() uint16 { return 0 }
func (*ProvideMissingTransactionsSuccess) MessageName() string {
	return "ProvideMissingTransactions.Success"
}
func (m *ProvideMissingTransactionsSuccess) Fields(c *codec.Codec) {
	c.U32("request_id", &m.RequestID)
	c.Seq064KB016M("transaction_list", &m.TransactionList)
}

// DeclareMiningJob declares a block template to the JDS (client → server) in
// Full-Template mode.
type DeclareMiningJob struct {
	RequestID      uint32
	MiningJobToken []byte
	Version        uint32
	// CoinbaseTxPrefix and CoinbaseTxSuffix surround the extranonce; unlike
	// NewExtendedMiningJob they keep the BIP141 marker, flag and witness.
	CoinbaseTxPrefix []byte
	CoinbaseTxSuffix []byte
	// WtxidList lists the non-coinbase transactions in block order
	// (2025 SRI builds put txids here; same layout).
	WtxidList  [][32]byte
	ExcessData []byte
}

func (*DeclareMiningJob) MsgType() uint8        { return TypeDeclareMiningJob }
func (*DeclareMiningJob) ExtensionType() uint16 { return 0 }
func (*DeclareMiningJob) MessageName() string   { return "DeclareMiningJob" }
func (m *DeclareMiningJob) Fields(c *codec.Codec) {
	c.U32("request_id", &m.RequestID)
	c.B0255("mining_job_token", &m.MiningJobToken)
	c.U32("version", &m.Version)
	c.B064K("coinbase_tx_prefix", &m.CoinbaseTxPrefix)
	c.B064K("coinbase_tx_suffix", &m.CoinbaseTxSuffix)
	c.Seq064KU256("wtxid_list", &m.WtxidList)
	c.B064K("excess_data", &m.ExcessData)
}

// DeclareMiningJobSuccess accepts a declared job (server → client); the
// client uses the new token in SetCustomMiningJob.
type DeclareMiningJobSuccess struct {
	RequestID         uint32
	NewMiningJobToken []byte
}

func (*DeclareMiningJobSuccess) MsgType() uint8        { return TypeDeclareMiningJobSuccess }
func (*DeclareMiningJobSuccess) ExtensionType() uint16 { return 0 }
func (*DeclareMiningJobSuccess) MessageName() string   { return "DeclareMiningJob.Success" }
func (m *DeclareMiningJobSuccess) Fields(c *codec.Codec) {
	c.U32("request_id", &m.RequestID)
	c.B0255("new_mining_job_token", &m.NewMiningJobToken)
}

// DeclareMiningJobError rejects a declared job (server → client).
type DeclareMiningJobError struct {
	RequestID    uint32
	ErrorCode    string
	ErrorDetails []byte
}

func (*DeclareMiningJobError) MsgType() uint8        { return TypeDeclareMiningJobError }
func (*DeclareMiningJobError) ExtensionType() uint16 { return 0 }
func (*DeclareMiningJobError) MessageName() string   { return "DeclareMiningJob.Error" }
func (m *DeclareMiningJobError) Fields(c *codec.Codec) {
	c.U32("request_id", &m.RequestID)
	c.Str0255("error_code", &m.ErrorCode)
	c.B064K("error_details", &m.ErrorDetails)
}

// PushSolution sends a found block's header fields and extranonce to the JDS
// (client → server) so it can propagate the block too (Full-Template mode).
type PushSolution struct {
	// Extranonce is the full extranonce between the declared prefix and suffix.
	Extranonce []byte
	PrevHash   [32]byte
	Nonce      uint32
	NTime      uint32
	NBits      uint32
	Version    uint32
}

func (*PushSolution) MsgType() uint8        { return TypePushSolution }
func (*PushSolution) ExtensionType() uint16 { return 0 }
func (*PushSolution) MessageName() string   { return "PushSolution" }
func (m *PushSolution) Fields(c *codec.Codec) {
	c.B032("extranonce", &m.Extranonce)
	c.U256("prev_hash", &m.PrevHash)
	// SRI's 2025 builds put ntime before nonce; the two U32s cannot be told
	// apart on the wire, so the order is a connection option (DIGEST §7.2).
	if c.Options().PushSolution2025 {
		c.U32("ntime", &m.NTime)
		c.U32("nonce", &m.Nonce)
	} else {
		c.U32("nonce", &m.Nonce)
		c.U32("ntime", &m.NTime)
	}
	c.U32("nbits", &m.NBits)
	c.U32("version", &m.Version)
}
