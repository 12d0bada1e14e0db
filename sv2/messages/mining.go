package messages

import "github.com/sv2kit/sv2kit/sv2/codec"

// Mining Protocol (DIGEST §6.1). ExtensionType returns the channel bit per the
// spec HEAD message-type table: set for 0x15–0x24, clear for channel opening
// (0x10–0x14) and SetGroupChannel (0x25). Receivers ignore the bit.

// Message types of the Mining Protocol. 0x1e is reserved.
const (
	TypeOpenStandardMiningChannel        uint8 = 0x10
	TypeOpenStandardMiningChannelSuccess uint8 = 0x11
	TypeOpenMiningChannelError           uint8 = 0x12
	TypeOpenExtendedMiningChannel        uint8 = 0x13
	TypeOpenExtendedMiningChannelSuccess uint8 = 0x14
	TypeNewMiningJob                     uint8 = 0x15
	TypeUpdateChannel                    uint8 = 0x16
	TypeUpdateChannelError               uint8 = 0x17
	TypeCloseChannel                     uint8 = 0x18
	TypeSetExtranoncePrefix              uint8 = 0x19
	TypeSubmitSharesStandard             uint8 = 0x1a
	TypeSubmitSharesExtended             uint8 = 0x1b
	TypeSubmitSharesSuccess              uint8 = 0x1c
	TypeSubmitSharesError                uint8 = 0x1d
	TypeNewExtendedMiningJob             uint8 = 0x1f
	TypeMiningSetNewPrevHash             uint8 = 0x20
	TypeSetTarget                        uint8 = 0x21
	TypeSetCustomMiningJob               uint8 = 0x22
	TypeSetCustomMiningJobSuccess        uint8 = 0x23
	TypeSetCustomMiningJobError          uint8 = 0x24
	TypeSetGroupChannel                  uint8 = 0x25
)

// OpenStandardMiningChannel asks the server (client → server) for a standard
// (header-only) channel.
type OpenStandardMiningChannel struct {
	RequestID       uint32
	UserIdentity    string
	NominalHashRate float32
	MaxTarget       [32]byte
}

func (*OpenStandardMiningChannel) MsgType() uint8        { return TypeOpenStandardMiningChannel }
func (*OpenStandardMiningChannel) ExtensionType() uint16 { return 0 }
func (*OpenStandardMiningChannel) MessageName() string   { return "OpenStandardMiningChannel" }
func (m *OpenStandardMiningChannel) Fields(c *codec.Codec) {
	c.U32("request_id", &m.RequestID)
	c.Str0255("user_identity", &m.UserIdentity)
	c.F32("nominal_hash_rate", &m.NominalHashRate)
	c.U256("max_target", &m.MaxTarget)
}

// OpenStandardMiningChannelSuccess opens a standard channel (server → client).
type OpenStandardMiningChannelSuccess struct {
	RequestID        uint32
	ChannelID        uint32
	Target           [32]byte
	ExtranoncePrefix []byte
	GroupChannelID   uint32
}

func (*OpenStandardMiningChannelSuccess) MsgType() uint8 {
	return TypeOpenStandardMiningChannelSuccess
}
func (*OpenStandardMiningChannelSuccess) ExtensionType() uint16 { return 0 }
func (*OpenStandardMiningChannelSuccess) MessageName() string {
	return "OpenStandardMiningChannel.Success"
}
func (m *OpenStandardMiningChannelSuccess) Fields(c *codec.Codec) {
	c.U32("request_id", &m.RequestID)
	c.U32("channel_id", &m.ChannelID)
	c.U256("target", &m.Target)
	c.B032("extranonce_prefix", &m.ExtranoncePrefix)
	c.U32("group_channel_id", &m.GroupChannelID)
}

// OpenMiningChannelError refuses an Open*MiningChannel (server → client).
type OpenMiningChannelError struct {
	RequestID uint32
	ErrorCode string
}

func (*OpenMiningChannelError) MsgType() uint8        { return TypeOpenMiningChannelError }
func (*OpenMiningChannelError) ExtensionType() uint16 { return 0 }
func (*OpenMiningChannelError) MessageName() string   { return "OpenMiningChannel.Error" }
func (m *OpenMiningChannelError) Fields(c *codec.Codec) {
	c.U32("request_id", &m.RequestID)
	c.Str0255("error_code", &m.ErrorCode)
}

// OpenExtendedMiningChannel asks the server (client → server) for an extended
// channel (client rolls its own extranonce).
type OpenExtendedMiningChannel struct {
	RequestID         uint32
	UserIdentity      string
	NominalHashRate   float32
	MaxTarget         [32]byte
	MinExtranonceSize uint16
}

func (*OpenExtendedMiningChannel) MsgType() uint8        { return TypeOpenExtendedMiningChannel }
func (*OpenExtendedMiningChannel) ExtensionType() uint16 { return 0 }
func (*OpenExtendedMiningChannel) MessageName() string   { return "OpenExtendedMiningChannel" }
func (m *OpenExtendedMiningChannel) Fields(c *codec.Codec) {
	c.U32("request_id", &m.RequestID)
	c.Str0255("user_identity", &m.UserIdentity)
	c.F32("nominal_hash_rate", &m.NominalHashRate)
	c.U256("max_target", &m.MaxTarget)
	c.U16("min_extranonce_size", &m.MinExtranonceSize)
}

// OpenExtendedMiningChannelSuccess opens an extended channel (server → client).
type OpenExtendedMiningChannelSuccess struct {
	RequestID        uint32
	ChannelID        uint32
	Target           [32]byte
	ExtranonceSize   uint16
	ExtranoncePrefix []byte
	GroupChannelID   uint32
	// HasGroupChannelID is false when a decoded message came from a pool
	// predating the field (spec 2025-10). Encoding always writes it.
	HasGroupChannelID bool
}

func (*OpenExtendedMiningChannelSuccess) MsgType() uint8 {
	return TypeOpenExtendedMiningChannelSuccess
}
func (*OpenExtendedMiningChannelSuccess) ExtensionType() uint16 { return 0 }
func (*OpenExtendedMiningChannelSuccess) MessageName() string {
	return "OpenExtendedMiningChannel.Success"
}
func (m *OpenExtendedMiningChannelSuccess) Fields(c *codec.Codec) {
	c.U32("request_id", &m.RequestID)
	c.U32("channel_id", &m.ChannelID)
	c.U256("target", &m.Target)
	c.U16("extranonce_size", &m.ExtranonceSize)
	c.B032("extranonce_prefix", &m.ExtranoncePrefix)
	// Appended in 2025; 2025 SRI pools do not send it.
	c.TrailingU32("group_channel_id", &m.GroupChannelID, &m.HasGroupChannelID)
}

// NewMiningJob sends a job to a standard channel (server → client).
type NewMiningJob struct {
	ChannelID uint32
	JobID     uint32
	// MinNTime nil marks a future job, activated by a MiningSetNewPrevHash.
	MinNTime   *uint32
	Version    uint32
	MerkleRoot [32]byte
}

func (*NewMiningJob) MsgType() uint8        { return TypeNewMiningJob }
func (*NewMiningJob) ExtensionType() uint16 { return codec.ChannelBit }
func (*NewMiningJob) MessageName() string   { return "NewMiningJob" }
func (m *NewMiningJob) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
	c.U32("job_id", &m.JobID)
	c.OptionU32("min_ntime", &m.MinNTime)
	c.U32("version", &m.Version)
	c.U256("merkle_root", &m.MerkleRoot)
}

// UpdateChannel reports a channel's new hashrate and maximum target (client →
// server).
type UpdateChannel struct {
	ChannelID       uint32
	NominalHashRate float32
	MaximumTarget   [32]byte
}

func (*UpdateChannel) MsgType() uint8        { return TypeUpdateChannel }
func (*UpdateChannel) ExtensionType() uint16 { return codec.ChannelBit }
func (*UpdateChannel) MessageName() string   { return "UpdateChannel" }
func (m *UpdateChannel) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
	c.F32("nominal_hash_rate", &m.NominalHashRate)
	c.U256("maximum_target", &m.MaximumTarget)
}

// UpdateChannelError refuses an UpdateChannel (server → client).
type UpdateChannelError struct {
	ChannelID uint32
	ErrorCode string
}

func (*UpdateChannelError) MsgType() uint8        { return TypeUpdateChannelError }
func (*UpdateChannelError) ExtensionType() uint16 { return codec.ChannelBit }
func (*UpdateChannelError) MessageName() string   { return "UpdateChannel.Error" }
func (m *UpdateChannelError) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
	c.Str0255("error_code", &m.ErrorCode)
}

// CloseChannel closes a channel or every member of a group (either side).
type CloseChannel struct {
	ChannelID  uint32
	ReasonCode string
}

func (*CloseChannel) MsgType() uint8        { return TypeCloseChannel }
func (*CloseChannel) ExtensionType() uint16 { return codec.ChannelBit }
func (*CloseChannel) MessageName() string   { return "CloseChannel" }
func (m *CloseChannel) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
	c.Str0255("reason_code", &m.ReasonCode)
}

// SetExtranoncePrefix changes a channel's extranonce prefix for later jobs
// (server → client).
type SetExtranoncePrefix struct {
	ChannelID        uint32
	ExtranoncePrefix []byte
}

func (*SetExtranoncePrefix) MsgType() uint8        { return TypeSetExtranoncePrefix }
func (*SetExtranoncePrefix) ExtensionType() uint16 { return codec.ChannelBit }
func (*SetExtranoncePrefix) MessageName() string   { return "SetExtranoncePrefix" }
func (m *SetExtranoncePrefix) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
	c.B032("extranonce_prefix", &m.ExtranoncePrefix)
}

// SubmitSharesStandard submits a share on a standard channel (client → server).
type SubmitSharesStandard struct {
	ChannelID      uint32
	SequenceNumber uint32
	JobID          uint32
	Nonce          uint32
	NTime          uint32
	Version        uint32
}

func (*SubmitSharesStandard) MsgType() uint8        { return TypeSubmitSharesStandard }
func (*SubmitSharesStandard) ExtensionType() uint16 { return codec.ChannelBit }
func (*SubmitSharesStandard) MessageName() string   { return "SubmitSharesStandard" }
func (m *SubmitSharesStandard) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
	c.U32("sequence_number", &m.SequenceNumber)
	c.U32("job_id", &m.JobID)
	c.U32("nonce", &m.Nonce)
	c.U32("ntime", &m.NTime)
	c.U32("version", &m.Version)
}

// SubmitSharesExtended submits a share on an extended or group channel
// (client → server).
type SubmitSharesExtended struct {
	ChannelID      uint32
	SequenceNumber uint32
	JobID          uint32
	Nonce          uint32
	NTime          uint32
	Version        uint32
	Extranonce     []byte
	// TLVs holds the raw TLV fields of negotiated extensions (DIGEST §1.3),
	// kept on decode and written verbatim on encode; nil when none.
	TLVs []byte
}

func (*SubmitSharesExtended) MsgType() uint8        { return TypeSubmitSharesExtended }
func (*SubmitSharesExtended) ExtensionType() uint16 { return codec.ChannelBit }
func (*SubmitSharesExtended) MessageName() string   { return "SubmitSharesExtended" }
func (m *SubmitSharesExtended) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
	c.U32("sequence_number", &m.SequenceNumber)
	c.U32("job_id", &m.JobID)
	c.U32("nonce", &m.Nonce)
	c.U32("ntime", &m.NTime)
	c.U32("version", &m.Version)
	c.B032("extranonce", &m.Extranonce)
	// Extension 0x0002 appends a worker-identity TLV here.
	c.Rest("tlvs", &m.TLVs)
}

// SubmitSharesSuccess acknowledges a batch of shares (server → client).
type SubmitSharesSuccess struct {
	ChannelID               uint32
	LastSequenceNumber      uint32
	NewSubmitsAcceptedCount uint32
	// NewSharesSum is the sum of the difficulties of the batch.
	NewSharesSum uint64
}

func (*SubmitSharesSuccess) MsgType() uint8        { return TypeSubmitSharesSuccess }
func (*SubmitSharesSuccess) ExtensionType() uint16 { return codec.ChannelBit }
func (*SubmitSharesSuccess) MessageName() string   { return "SubmitShares.Success" }
func (m *SubmitSharesSuccess) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
	c.U32("last_sequence_number", &m.LastSequenceNumber)
	c.U32("new_submits_accepted_count", &m.NewSubmitsAcceptedCount)
	c.U64("new_shares_sum", &m.NewSharesSum)
}

// SubmitSharesError rejects one share (server → client).
type SubmitSharesError struct {
	ChannelID      uint32
	SequenceNumber uint32
	ErrorCode      string
}

func (*SubmitSharesError) MsgType() uint8        { return TypeSubmitSharesError }
func (*SubmitSharesError) ExtensionType() uint16 { return codec.ChannelBit }
func (*SubmitSharesError) MessageName() string   { return "SubmitShares.Error" }
func (m *SubmitSharesError) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
	c.U32("sequence_number", &m.SequenceNumber)
	c.Str0255("error_code", &m.ErrorCode)
}

// NewExtendedMiningJob sends a job to an extended or group channel (server →
// client).
type NewExtendedMiningJob struct {
	ChannelID uint32
	JobID     uint32
	// MinNTime nil marks a future job, activated by a MiningSetNewPrevHash.
	MinNTime              *uint32
	Version               uint32
	VersionRollingAllowed bool
	MerklePath            [][32]byte
	// CoinbaseTxPrefix and CoinbaseTxSuffix are BIP141-stripped (no marker,
	// flag or witness) so the miner hashes a txid.
	CoinbaseTxPrefix []byte
	CoinbaseTxSuffix []byte
}

func (*NewExtendedMiningJob) MsgType() uint8        { return TypeNewExtendedMiningJob }
func (*NewExtendedMiningJob) ExtensionType() uint16 { return codec.ChannelBit }
func (*NewExtendedMiningJob) MessageName() string   { return "NewExtendedMiningJob" }
func (m *NewExtendedMiningJob) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
	c.U32("job_id", &m.JobID)
	c.OptionU32("min_ntime", &m.MinNTime)
	c.U32("version", &m.Version)
	c.Bool("version_rolling_allowed", &m.VersionRollingAllowed)
	c.Seq0255U256("merkle_path", &m.MerklePath)
	c.B064K("coinbase_tx_prefix", &m.CoinbaseTxPrefix)
	c.B064K("coinbase_tx_suffix", &m.CoinbaseTxSuffix)
}

// MiningSetNewPrevHash is the Mining Protocol's SetNewPrevHash (0x20): a new
// chain tip that activates one future job (server → client). Not to be
// confused with the Template Distribution SetNewPrevHash (0x72).
type MiningSetNewPrevHash struct {
	ChannelID uint32
	JobID     uint32
	PrevHash  [32]byte
	MinNTime  uint32
	NBits     uint32
}

func (*MiningSetNewPrevHash) MsgType() uint8        { return TypeMiningSetNewPrevHash }
func (*MiningSetNewPrevHash) ExtensionType() uint16 { return codec.ChannelBit }
func (*MiningSetNewPrevHash) MessageName() string   { return "SetNewPrevHash" }
func (m *MiningSetNewPrevHash) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
	c.U32("job_id", &m.JobID)
	c.U256("prev_hash", &m.PrevHash)
	c.U32("min_ntime", &m.MinNTime)
	c.U32("nbits", &m.NBits)
}

// SetTarget changes a channel's maximum share target for later jobs (server →
// client).
type SetTarget struct {
	ChannelID     uint32
	MaximumTarget [32]byte
}

func (*SetTarget) MsgType() uint8        { return TypeSetTarget }
func (*SetTarget) ExtensionType() uint16 { return codec.ChannelBit }
func (*SetTarget) MessageName() string   { return "SetTarget" }
func (m *SetTarget) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
	c.U256("maximum_target", &m.MaximumTarget)
}

// SetCustomMiningJob proposes a client-built job on an extended channel
// (client → server); the client is a JDC holding a JDS token.
type SetCustomMiningJob struct {
	ChannelID         uint32
	RequestID         uint32
	MiningJobToken    []byte
	Version           uint32
	PrevHash          [32]byte
	MinNTime          uint32
	NBits             uint32
	CoinbaseTxVersion uint32
	// CoinbasePrefix is the scriptSig start the pool prepends to its
	// extranonce prefix and the extranonce.
	CoinbasePrefix           []byte
	CoinbaseTxInputNSequence uint32
	// CoinbaseTxOutputs is a CompactSize-prefixed vector of outputs.
	CoinbaseTxOutputs  []byte
	CoinbaseTxLocktime uint32
	MerklePath         [][32]byte
}

func (*SetCustomMiningJob) MsgType() uint8 { return TypeSetCustomMiningJob }

// ExtensionType carries the channel bit (spec HEAD; 2025 SRI builds sent 0).
func (*SetCustomMiningJob) ExtensionType() uint16 { return codec.ChannelBit }
func (*SetCustomMiningJob) MessageName() string   { return "SetCustomMiningJob" }
func (m *SetCustomMiningJob) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
	c.U32("request_id", &m.RequestID)
	c.B0255("mining_job_token", &m.MiningJobToken)
	c.U32("version", &m.Version)
	c.U256("prev_hash", &m.PrevHash)
	c.U32("min_ntime", &m.MinNTime)
	c.U32("nbits", &m.NBits)
	c.U32("coinbase_tx_version", &m.CoinbaseTxVersion)
	c.B0255("coinbase_prefix", &m.CoinbasePrefix)
	c.U32("coinbase_tx_input_nSequence", &m.CoinbaseTxInputNSequence)
	c.B064K("coinbase_tx_outputs", &m.CoinbaseTxOutputs)
	c.U32("coinbase_tx_locktime", &m.CoinbaseTxLocktime)
	c.Seq0255U256("merkle_path", &m.MerklePath)
}

// SetCustomMiningJobSuccess accepts a custom job and gives the job_id to use
// in shares (server → client).
type SetCustomMiningJobSuccess struct {
	ChannelID uint32
	RequestID uint32
	JobID     uint32
}

func (*SetCustomMiningJobSuccess) MsgType() uint8        { return TypeSetCustomMiningJobSuccess }
func (*SetCustomMiningJobSuccess) ExtensionType() uint16 { return codec.ChannelBit }
func (*SetCustomMiningJobSuccess) MessageName() string   { return "SetCustomMiningJob.Success" }
func (m *SetCustomMiningJobSuccess) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
	c.U32("request_id", &m.RequestID)
	c.U32("job_id", &m.JobID)
}

// SetCustomMiningJobError rejects a custom job (server → client).
type SetCustomMiningJobError struct {
	ChannelID uint32
	RequestID uint32
	ErrorCode string
}

func (*SetCustomMiningJobError) MsgType() uint8        { return TypeSetCustomMiningJobError }
func (*SetCustomMiningJobError) ExtensionType() uint16 { return codec.ChannelBit }
func (*SetCustomMiningJobError) MessageName() string   { return "SetCustomMiningJob.Error" }
func (m *SetCustomMiningJobError) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
	c.U32("request_id", &m.RequestID)
	c.Str0255("error_code", &m.ErrorCode)
}

// SetGroupChannel (re)assigns channels to a group (server → client).
type SetGroupChannel struct {
	GroupChannelID uint32
	ChannelIDs     []uint32
}

func (*SetGroupChannel) MsgType() uint8 { return TypeSetGroupChannel }

// ExtensionType has no channel bit although the first field is a channel id:
// the spec table lists channel_msg=0.
func (*SetGroupChannel) ExtensionType() uint16 { return 0 }
func (*SetGroupChannel) MessageName() string   { return "SetGroupChannel" }
func (m *SetGroupChannel) Fields(c *codec.Codec) {
	c.U32("group_channel_id", &m.GroupChannelID)
	c.Seq064KU32("channel_ids", &m.ChannelIDs)
}
