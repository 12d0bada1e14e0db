// Package codec holds the Stratum V2 binary data types and the 6-byte frame
// header (DIGEST §1). Messages are declared once, as a Fields method that walks
// their fields in wire order with a Codec; the same walk encodes, decodes,
// sizes and prints them.
//
// Decoding never panics and never allocates more than the payload it is given:
// every length and element count is checked against the bytes that remain
// before anything is allocated.
package codec

import (
	"encoding/binary"
	"fmt"
)

const (
	// HeaderSize is the size of the plaintext frame header.
	HeaderSize = 6
	// MaxPayload is the largest payload a U24 msg_length can describe.
	MaxPayload = 1<<24 - 1
	// ChannelBit is the channel_msg flag of extension_type (bit 15 of the U16).
	ChannelBit uint16 = 0x8000
	// ExtensionMask selects the extension id from extension_type.
	ExtensionMask uint16 = 0x7fff
)

// Header is a decoded frame header.
type Header struct {
	// ExtensionType is the raw U16, channel bit included.
	ExtensionType uint16
	MsgType       uint8
	// Length is the payload length in bytes (plaintext length on Noise links).
	Length uint32
}

// ChannelMsg reports whether the channel_msg bit is set. Receivers of core
// messages must not rely on it (peers set it inconsistently, DIGEST §1.1).
func (h Header) ChannelMsg() bool { return h.ExtensionType&ChannelBit != 0 }

// Extension returns the extension id without the channel bit (0 for core messages).
func (h Header) Extension() uint16 { return h.ExtensionType & ExtensionMask }

// Put writes the header into b[:HeaderSize].
func (h Header) Put(b []byte) {
	_ = b[HeaderSize-1]
	binary.LittleEndian.PutUint16(b, h.ExtensionType)
	b[2] = h.MsgType
	b[3] = byte(h.Length)
	b[4] = byte(h.Length >> 8)
	b[5] = byte(h.Length >> 16)
}

// Append appends the encoded header to b.
func (h Header) Append(b []byte) []byte {
	var tmp [HeaderSize]byte
	h.Put(tmp[:])
	return append(b, tmp[:]...)
}

func (h Header) String() string {
	return fmt.Sprintf("ext=0x%04x type=0x%02x len=%d", h.ExtensionType, h.MsgType, h.Length)
}

// ParseHeader decodes a frame header from the first HeaderSize bytes of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("frame header: %w: have %d bytes, need %d", ErrShort, len(b), HeaderSize)
	}
	return Header{
		ExtensionType: binary.LittleEndian.Uint16(b),
		MsgType:       b[2],
		Length:        uint32(b[3]) | uint32(b[4])<<8 | uint32(b[5])<<16,
	}, nil
}
