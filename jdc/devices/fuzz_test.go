package devices

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/mining"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// FuzzWorkCoinbase feeds arbitrary coinbase halves to the work parser: it
// must not panic, and what it accepts must re-serialize to the same bytes.
func FuzzWorkCoinbase(f *testing.F) {
	for _, space := range []int{1, 8, 12, 32} {
		w := testWork(1, true, space)
		f.Add(w.CoinbasePrefix, w.CoinbaseSuffix, space)
	}
	w := bigWork(3)
	f.Add(w.CoinbasePrefix, w.CoinbaseSuffix, 8)
	f.Add([]byte{2, 0, 0, 0, 0, 1}, []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0}, 4)
	f.Add(bytes.Repeat([]byte{0xfd}, 60), bytes.Repeat([]byte{0xff}, 20), 8)
	f.Fuzz(func(t *testing.T, prefix, suffix []byte, space int) {
		w := Work{ID: 1, Version: 0x20000000, CoinbasePrefix: prefix, CoinbaseSuffix: suffix, ExtranonceSpace: space}
		jt, err := jobTemplate(&w)
		if err != nil {
			return
		}
		p, s := jt.CoinbaseParts(false)
		if !bytes.Equal(p, prefix) || !bytes.Equal(s, suffix) || jt.ExtranonceSize() != space {
			t.Fatalf("accepted work does not round-trip")
		}
	})
}

// FuzzDeviceMessages feeds arbitrary frames, as a device would send them
// after SetupConnection, to a connection with open channels and work: no
// panic, and the connection either handles the frame or refuses it.
func FuzzDeviceMessages(f *testing.F) {
	seeds := []codec.Message{
		&messages.OpenStandardMiningChannel{RequestID: 1, UserIdentity: "u", NominalHashRate: 1, MaxTarget: mining.MaxTarget},
		&messages.OpenExtendedMiningChannel{RequestID: 2, UserIdentity: "u", NominalHashRate: 1, MaxTarget: mining.MaxTarget, MinExtranonceSize: 2},
		&messages.SubmitSharesStandard{ChannelID: 1, SequenceNumber: 1, JobID: 1},
		&messages.SubmitSharesExtended{ChannelID: 3, SequenceNumber: 1, JobID: 1, Extranonce: []byte{1, 2, 3, 4}},
		&messages.UpdateChannel{ChannelID: 1, NominalHashRate: 10, MaximumTarget: mining.MaxTarget},
		&messages.CloseChannel{ChannelID: 2, ReasonCode: "x"},
		&messages.RequestExtensions{RequestID: 1, RequestedExtensions: []uint16{2}},
		&messages.SetCustomMiningJob{ChannelID: 3},
	}
	for _, m := range seeds {
		p, err := codec.Append(nil, m, codec.Options{})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.ExtensionType(), m.MsgType(), p)
	}
	f.Fuzz(func(t *testing.T, ext uint16, typ uint8, payload []byte) {
		s, err := New(Config{Listen: "127.0.0.1:0", Plaintext: true, MinDifficulty: testMinDifficulty, SendQueue: 1 << 10})
		if err != nil {
			t.Fatal(err)
		}
		defer s.ln.Close()
		w := testWork(1, true, 8)
		s.handleWork(&w, time.Now())
		s.handlePrevHash(&PrevHash{WorkID: 1, NBits: hardBits}, time.Now())
		p1, p2 := net.Pipe()
		defer p1.Close()
		defer p2.Close()
		c := newConn(s, 1, noise.Server(p1, &noise.Config{Plaintext: true}))
		s.conns[c.id] = c
		c.startSession()
		for _, m := range seeds[:2] {
			if err := c.handle(m); err != nil {
				t.Fatal(err)
			}
		}
		m, err := messages.Decode(codec.Header{ExtensionType: ext, MsgType: typ, Length: uint32(len(payload))}, payload, codec.Options{})
		if err != nil {
			return // the reader closes the connection (or skips an unknown extension)
		}
		_ = c.handle(m)
		c.closeChannels()
		if s.state.alloc.InUse() != 0 {
			t.Fatalf("%d extranonce allocations leaked", s.state.alloc.InUse())
		}
	})
}
