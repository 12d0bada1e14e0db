package messages

import "github.com/sv2kit/sv2kit/sv2/codec"

// Extensions Negotiation (extension 0x0001, DIGEST §7.1). Its messages carry
// extension_type 0x0001 with the channel bit clear; the msg_type values
// overlap the core ones, so dispatch is by (extension, msg_type).

// Extension ids.
const (
	// ExtensionCore is the extension_type of every core message.
	ExtensionCore uint16 = 0x0000
	// ExtensionNegotiation defines RequestExtensions and its replies.
	ExtensionNegotiation uint16 = 0x0001
	// ExtensionWorkerHashrateTracking adds a TLV to SubmitSharesExtended.
	ExtensionWorkerHashrateTracking uint16 = 0x0002
)

// TLVWorkerUserIdentity is the field_type of extension 0x0002's TLV on
// SubmitSharesExtended: a UTF-8 user identity of at most 32 bytes.
const TLVWorkerUserIdentity uint8 = 0x01

// Message types of the Extensions Negotiation extension.
const (
	TypeRequestExtensions        uint8 = 0x00
	TypeRequestExtensionsSuccess uint8 = 0x01
	TypeRequestExtensionsError   uint8 = 0x02
)

// RequestExtensions asks the server (client → server) to enable extensions;
// sent right after SetupConnection.Success.
type RequestExtensions struct {
	RequestID           uint16
	RequestedExtensions []uint16
}

func (*RequestExtensions) MsgType() uint8        { return TypeRequestExtensions }
func (*RequestExtensions) ExtensionType() uint16 { return ExtensionNegotiation }
func (*RequestExtensions) MessageName() string   { return "RequestExtensions" }
func (m *RequestExtensions) Fields(c *codec.Codec) {
	c.U16("request_id", &m.RequestID)
	c.Seq064KU16("requested_extensions", &m.RequestedExtensions)
}

// RequestExtensionsSuccess lists the requested extensions the server enabled
// (server → client).
type RequestExtensionsSuccess struct {
	RequestID           uint16
	SupportedExtensions []uint16
}

func (*RequestExtensionsSuccess) MsgType() uint8        { return TypeRequestExtensionsSuccess }
func (*RequestExtensionsSuccess) ExtensionType() uint16 { return ExtensionNegotiation }
func (*RequestExtensionsSuccess) MessageName() string   { return "RequestExtensions.Success" }
func (m *RequestExtensionsSuccess) Fields(c *codec.Codec) {
	c.U16("request_id", &m.RequestID)
	c.Seq064KU16("supported_extensions", &m.SupportedExtensions)
}

// RequestExtensionsError lists the requested extensions the server does not
// support and those it requires but were not requested (server → client).
type RequestExtensionsError struct {
	RequestID             uint16
	UnsupportedExtensions []uint16
	RequiredExtensions    []uint16
}

func (*RequestExtensionsError) MsgType() uint8        { return TypeRequestExtensionsError }
func (*RequestExtensionsError) ExtensionType() uint16 { return ExtensionNegotiation }
func (*RequestExtensionsError) MessageName() string   { return "RequestExtensions.Error" }
func (m *RequestExtensionsError) Fields(c *codec.Codec) {
	c.U16("request_id", &m.RequestID)
	c.Seq064KU16("unsupported_extensions", &m.UnsupportedExtensions)
	c.Seq064KU16("required_extensions", &m.RequiredExtensions)
}
