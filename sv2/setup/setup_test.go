package setup

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// server answers one SetupConnection with reply (nil: never answers) and
// hands back what it received.
func server(t *testing.T, reply codec.Message) (string, <-chan *messages.SetupConnection) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan *messages.SetupConnection, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		c := noise.Server(nc, &noise.Config{Plaintext: true, MaxPayload: messages.MaxPayload})
		defer c.Close()
		m, err := Read(c)
		if err != nil {
			return
		}
		sc, _ := m.(*messages.SetupConnection)
		got <- sc
		if reply == nil {
			time.Sleep(2 * time.Second)
			return
		}
		_ = c.WriteMessage(reply, codec.Options{})
		time.Sleep(100 * time.Millisecond)
	}()
	return ln.Addr().String(), got
}

func TestDial(t *testing.T) {
	req := &messages.SetupConnection{Protocol: messages.ProtocolMining, MinVersion: 2, MaxVersion: 2, Vendor: "test"}
	tests := []struct {
		name  string
		reply codec.Message
		check func(t *testing.T, err error)
	}{
		{"success", &messages.SetupConnectionSuccess{UsedVersion: 2}, func(t *testing.T, err error) {
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"refused", &messages.SetupConnectionError{ErrorCode: "unsupported-feature-flags", Flags: 4}, func(t *testing.T, err error) {
			var r *Refused
			if !errors.As(err, &r) || r.Code != "unsupported-feature-flags" || r.Flags != 4 {
				t.Fatalf("err = %v, want *Refused", err)
			}
		}},
		{"version outside the range", &messages.SetupConnectionSuccess{UsedVersion: 3}, func(t *testing.T, err error) {
			if err == nil {
				t.Fatal("version 3 accepted")
			}
		}},
		{"another message", &messages.SetTarget{}, func(t *testing.T, err error) {
			if err == nil {
				t.Fatal("SetTarget accepted as the setup answer")
			}
		}},
		{"no answer: deadline", nil, func(t *testing.T, err error) {
			if err == nil {
				t.Fatal("no answer accepted")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, got := server(t, tc.reply)
			conn, _, err := Dial(context.Background(), Config{Addr: addr, Plaintext: true, Timeout: 300 * time.Millisecond}, req)
			if conn != nil {
				conn.Close()
			}
			tc.check(t, err)
			sc := <-got
			host, port, _ := net.SplitHostPort(addr)
			if sc.EndpointHost != host || port == "" || sc.EndpointPort == 0 || sc.Vendor != "test" {
				t.Fatalf("server got %+v", sc)
			}
		})
	}
}

// Cancelling ctx interrupts a setup waiting for its answer.
func TestDialCancelled(t *testing.T) {
	addr, _ := server(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, _, err := Dial(ctx, Config{Addr: addr, Plaintext: true, Timeout: 10 * time.Second},
		&messages.SetupConnection{Protocol: messages.ProtocolMining, MinVersion: 2, MaxVersion: 2})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
