package poolclient

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/declare"
	"github.com/sv2kit/sv2kit/internal/testpool"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/templates"
)

// verdicts is a pool API answering custom jobs from a switch, so the client
// sees both answers of the real test pool.
type verdicts struct{ ok atomic.Bool }

func (v *verdicts) ValidateCustomJob(ctx context.Context, user string, job *messages.SetCustomMiningJob) (declare.Verdict, error) {
	if v.ok.Load() {
		return declare.Verdict{OK: true}, nil
	}
	return declare.Verdict{Code: "invalid-mining-job-token"}, nil
}

func (v *verdicts) SubmitBlockShare(ctx context.Context, user string, s declare.BlockShare) (declare.BlockResult, error) {
	return declare.BlockResult{}, errors.New("not in this test")
}

func key(t *testing.T) *btcec.PrivateKey {
	k, err := noise.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func startPool(t *testing.T, auth *btcec.PrivateKey, api declare.PoolAPI) string {
	t.Helper()
	p, err := testpool.New(testpool.Config{Listen: "127.0.0.1:0", AuthorityKey: auth, API: api, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); _ = p.Close() })
	return p.Addr().String()
}

// customJob is a well-formed custom job (the stub API decides its fate).
func customJob(ch Channel, req uint32) *messages.SetCustomMiningJob {
	outs := templates.SerializeOutputVector([]templates.TxOutput{{Value: 50, PkScript: []byte{0x51}}})
	return &messages.SetCustomMiningJob{ChannelID: ch.ID, RequestID: req, MiningJobToken: []byte{1}, Version: 0x20000000,
		NBits: 0x207fffff, MinNTime: uint32(time.Now().Unix()), CoinbaseTxVersion: 2,
		CoinbasePrefix:           []byte{0x01, 0x05, byte(len(ch.ExtranoncePrefix) + ch.ExtranonceSize)},
		CoinbaseTxInputNSequence: 0xffffffff, CoinbaseTxOutputs: outs}
}

func next(t *testing.T, c *Client) codec.Message {
	t.Helper()
	select {
	case m, ok := <-c.Events():
		if !ok {
			t.Fatalf("events closed: %v", c.Err())
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message from the pool")
	}
	return nil
}

func TestAgainstTestPool(t *testing.T) {
	auth := key(t)
	api := &verdicts{}
	addr := startPool(t, auth, api)
	pub := noise.PublicKey(auth)
	ctx := context.Background()
	c, err := Dial(ctx, Config{Addr: addr, AuthorityPubKey: &pub, UserIdentity: "farm", MinExtranonceSize: 8, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch := c.Channel()
	if ch.ExtranonceSize < 8 || len(ch.ExtranoncePrefix)+ch.ExtranonceSize > 32 {
		t.Fatalf("channel %+v", ch)
	}
	api.ok.Store(true)
	if err := c.Send(customJob(ch, 7)); err != nil {
		t.Fatal(err)
	}
	for {
		m := next(t, c)
		if s, ok := m.(*messages.SetCustomMiningJobSuccess); ok {
			if s.RequestID != 7 {
				t.Fatalf("%+v", s)
			}
			break
		}
	}
	api.ok.Store(false)
	if err := c.Send(customJob(ch, 8)); err != nil {
		t.Fatal(err)
	}
	for {
		m := next(t, c)
		if e, ok := m.(*messages.SetCustomMiningJobError); ok {
			if e.RequestID != 8 || e.ErrorCode != "invalid-mining-job-token" {
				t.Fatalf("%+v", e)
			}
			break
		}
	}
	// A share on an unknown job is answered with an error, per share.
	if err := c.Send(&messages.SubmitSharesExtended{ChannelID: ch.ID, SequenceNumber: 1, JobID: 999, Extranonce: make([]byte, ch.ExtranonceSize)}); err != nil {
		t.Fatal(err)
	}
	for {
		if e, ok := next(t, c).(*messages.SubmitSharesError); ok {
			if e.SequenceNumber != 1 {
				t.Fatalf("%+v", e)
			}
			break
		}
	}
}

func TestWrongAuthorityKey(t *testing.T) {
	addr := startPool(t, key(t), &verdicts{})
	other := noise.PublicKey(key(t))
	_, err := Dial(context.Background(), Config{Addr: addr, AuthorityPubKey: &other, UserIdentity: "x", Timeout: 3 * time.Second})
	if err == nil {
		t.Fatal("connected to a pool signed by another key")
	}
}

// fakeServer answers the setup with what reply returns (nil: silence).
func fakeServer(t *testing.T, reply func(m codec.Message) []codec.Message) string {
	t.Helper()
	ln, err := noise.Listen("tcp", "127.0.0.1:0", &noise.Config{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				for {
					m, _, err := messages.Read(conn, codec.Options{})
					if err != nil {
						return
					}
					for _, r := range reply(m) {
						if r == nil {
							_ = conn.NetConn().SetDeadline(time.Now())
							_, _ = conn.NetConn().Write([]byte{0, 0, 0xff, 0xff, 0xff, 0xff, 1, 2})
							continue
						}
						if err := conn.WriteMessage(r, codec.Options{}); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestSetupFailures(t *testing.T) {
	ok := &messages.SetupConnectionSuccess{UsedVersion: 2}
	for _, tc := range []struct {
		name  string
		reply func(m codec.Message) []codec.Message
		want  string
	}{
		{"setup refused", func(m codec.Message) []codec.Message {
			return []codec.Message{&messages.SetupConnectionError{ErrorCode: "unsupported-feature-flags"}}
		}, "unsupported-feature-flags"},
		// A server without custom jobs (another jdc's device port) says
		// which flag, and what to check.
		{"work selection refused", func(m codec.Message) []codec.Message {
			return []codec.Message{&messages.SetupConnectionError{ErrorCode: "unsupported-feature-flags", Flags: messages.FlagRequiresWorkSelection}}
		}, "unsupported-feature-flags (flags 0x2); this server does not accept custom jobs"},
		{"channel refused", func(m codec.Message) []codec.Message {
			if _, is := m.(*messages.SetupConnection); is {
				return []codec.Message{ok}
			}
			return []codec.Message{&messages.OpenMiningChannelError{RequestID: 1, ErrorCode: "unknown-user"}}
		}, "unknown-user"},
		{"silent pool", func(m codec.Message) []codec.Message { return nil }, "timeout"},
		{"bad extranonce", func(m codec.Message) []codec.Message {
			if _, is := m.(*messages.SetupConnection); is {
				return []codec.Message{ok}
			}
			return []codec.Message{&messages.OpenExtendedMiningChannelSuccess{RequestID: 1, ChannelID: 1, ExtranonceSize: 30, ExtranoncePrefix: make([]byte, 8)}}
		}, "unusable extranonce"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeServer(t, tc.reply)
			start := time.Now()
			_, err := Dial(context.Background(), Config{Addr: addr, Plaintext: true, UserIdentity: "x", Timeout: 500 * time.Millisecond})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatal("setup wait not bounded")
			}
		})
	}
}

// A malformed frame after setup ends the connection with a reason.
func TestMalformedFrameCloses(t *testing.T) {
	addr := fakeServer(t, func(m codec.Message) []codec.Message {
		switch m.(type) {
		case *messages.SetupConnection:
			return []codec.Message{&messages.SetupConnectionSuccess{UsedVersion: 2}}
		case *messages.OpenExtendedMiningChannel:
			return []codec.Message{&messages.OpenExtendedMiningChannelSuccess{RequestID: 1, ChannelID: 3, ExtranonceSize: 8}}
		}
		return []codec.Message{nil} // garbage
	})
	c, err := Dial(context.Background(), Config{Addr: addr, Plaintext: true, UserIdentity: "x", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.Send(&messages.SubmitSharesExtended{ChannelID: 3, Extranonce: make([]byte, 8)})
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed")
	}
	if c.Err() == nil {
		t.Fatal("no reason")
	}
	if err := c.Send(&messages.SubmitSharesExtended{}); err == nil {
		t.Fatal("send on a closed client")
	}
}

var _ = net.Dial
