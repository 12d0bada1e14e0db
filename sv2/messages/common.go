package messages

import "github.com/sv2kit/sv2kit/sv2/codec"

// Common messages (DIGEST §3), shared by every subprotocol.

// Message types of the common messages.
const (
	TypeSetupConnection        uint8 = 0x00
	TypeSetupConnectionSuccess uint8 = 0x01
	TypeSetupConnectionError   uint8 = 0x02
	TypeChannelEndpointChanged uint8 = 0x03
	TypeReconnect              uint8 = 0x04
)

// Subprotocol numbers carried by SetupConnection.Protocol.
const (
	ProtocolMining               uint8 = 0
	ProtocolJobDeclaration       uint8 = 1
	ProtocolTemplateDistribution uint8 = 2
)

// SetupConnection flags, per subprotocol.
const (
	// Mining, client side.
	FlagRequiresStandardJobs   uint32 = 1 << 0
	FlagRequiresWorkSelection  uint32 = 1 << 1
	FlagRequiresVersionRolling uint32 = 1 << 2
	// Mining, server side (SetupConnection.Success).
	FlagRequiresFixedVersion     uint32 = 1 << 0
	FlagRequiresExtendedChannels uint32 = 1 << 1
	// Job Declaration, client side.
	FlagDeclareTxData uint32 = 1 << 0
)

// SetupConnection is the first message a client sends after the handshake
// (client → server).
type SetupConnection struct {
	Protocol        uint8
	MinVersion      uint16
	MaxVersion      uint16
	Flags           uint32
	EndpointHost    string
	EndpointPort    uint16
	Vendor          string
	HardwareVersion string
	Firmware        string
	DeviceID        string
}

func (*SetupConnection) MsgType() uint8        { return TypeSetupConnection }
func (*SetupConnection) ExtensionType() uint16 { return 0 }
func (*SetupConnection) MessageName() string   { return "SetupConnection" }
func (m *SetupConnection) Fields(c *codec.Codec) {
	c.U8("protocol", &m.Protocol)
	c.U16("min_version", &m.MinVersion)
	c.U16("max_version", &m.MaxVersion)
	c.U32("flags", &m.Flags)
	c.Str0255("endpoint_host", &m.EndpointHost)
	c.U16("endpoint_port", &m.EndpointPort)
	c.Str0255("vendor", &m.Vendor)
	c.Str0255("hardware_version", &m.HardwareVersion)
	c.Str0255("firmware", &m.Firmware)
	c.Str0255("device_id", &m.DeviceID)
}

// SetupConnectionSuccess accepts a SetupConnection (server → client).
type SetupConnectionSuccess struct {
	UsedVersion uint16
	Flags       uint32
}

func (*SetupConnectionSuccess) MsgType() uint8        { return TypeSetupConnectionSuccess }
func (*SetupConnectionSuccess) ExtensionType() uint16 { return 0 }
func (*SetupConnectionSuccess) MessageName() string   { return "SetupConnection.Success" }
func (m *SetupConnectionSuccess) Fields(c *codec.Codec) {
	c.U16("used_version", &m.UsedVersion)
	c.U32("flags", &m.Flags)
}

// SetupConnectionError refuses a SetupConnection; the server closes the
// connection after sending it.
type SetupConnectionError struct {
	// Flags lists every client flag the server does not support (0 when the
	// failure is unrelated to flags).
	Flags     uint32
	ErrorCode string
}

func (*SetupConnectionError) MsgType() uint8        { return TypeSetupConnectionError }
func (*SetupConnectionError) ExtensionType() uint16 { return 0 }
func (*SetupConnectionError) MessageName() string   { return "SetupConnection.Error" }
func (m *SetupConnectionError) Fields(c *codec.Codec) {
	c.U32("flags", &m.Flags)
	c.Str0255("error_code", &m.ErrorCode)
}

// ChannelEndpointChanged tells the client (server → client) that the
// endpoint of a channel changed, so in-flight state for it is reset.
type ChannelEndpointChanged struct {
	ChannelID uint32
}

func (*ChannelEndpointChanged) MsgType() uint8 { return TypeChannelEndpointChanged }

// ExtensionType carries the channel bit: the spec lists the message with channel_msg=1.
func (*ChannelEndpointChanged) ExtensionType() uint16 { return codec.ChannelBit }
func (*ChannelEndpointChanged) MessageName() string   { return "ChannelEndpointChanged" }
func (m *ChannelEndpointChanged) Fields(c *codec.Codec) {
	c.U32("channel_id", &m.ChannelID)
}

// Reconnect asks the client (server → client) to reconnect, possibly elsewhere.
type Reconnect struct {
	// NewHost empty means the current host.
	NewHost string
	// NewPort 0 means the current port.
	NewPort uint16
}

func (*Reconnect) MsgType() uint8        { return TypeReconnect }
func (*Reconnect) ExtensionType() uint16 { return 0 }
func (*Reconnect) MessageName() string   { return "Reconnect" }
func (m *Reconnect) Fields(c *codec.Codec) {
	c.Str0255("new_host", &m.NewHost)
	c.U16("new_port", &m.NewPort)
}
