// Package setup is the client side of opening an SV2 connection: dial the
// server (Noise, or plaintext where configured), send SetupConnection and
// wait for its answer. Every client role (TDP, Mining, Job Declaration)
// opens its connections this way.
package setup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// Config says where and how to connect.
type Config struct {
	Addr string // host:port
	// AuthorityPubKey pins the server's authority key. Nil connects encrypted
	// but unauthenticated; sv2/noise warns about it on every connection.
	AuthorityPubKey *[32]byte
	Plaintext       bool
	// Timeout bounds dial, handshake and setup together (ctx may end sooner).
	Timeout time.Duration
	Logger  hclog.Logger
}

// Refused is the server's SetupConnection.Error.
type Refused struct {
	Code  string
	Flags uint32 // the flags the server does not support
}

func (e *Refused) Error() string {
	return fmt.Sprintf("server refused SetupConnection: %s (flags 0x%x)", e.Code, e.Flags)
}

// Dial connects to cfg.Addr and sends m, with its endpoint host and port
// filled from the address, then waits for SetupConnection.Success. A
// refusal is a *Refused. The connection comes back with a deadline at the
// end of the setup time, so the caller's own opening exchange (a channel,
// constraints) stays bounded; clear it with SetDeadline(time.Time{}).
func Dial(ctx context.Context, cfg Config, m *messages.SetupConnection) (*noise.Conn, *messages.SetupConnectionSuccess, error) {
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("address %q: %w", cfg.Addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, nil, fmt.Errorf("address %q: bad port", cfg.Addr)
	}
	ncfg := &noise.Config{
		AuthorityPubKey: cfg.AuthorityPubKey,
		// noise itself warns on every unauthenticated connection.
		InsecureSkipVerify: cfg.AuthorityPubKey == nil && !cfg.Plaintext,
		Plaintext:          cfg.Plaintext,
		HandshakeTimeout:   cfg.Timeout,
		MaxPayload:         messages.MaxPayload,
		Logger:             cfg.Logger,
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	conn, err := noise.Dial(dctx, "tcp", cfg.Addr, ncfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", cfg.Addr, err)
	}
	deadline := time.Now().Add(cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	// A cancelled ctx interrupts the exchange by moving the deadline.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	sm := *m
	sm.EndpointHost, sm.EndpointPort = host, uint16(port)
	ok, err := exchange(conn, &sm)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		_ = conn.Close()
		return nil, nil, err
	}
	_ = conn.SetDeadline(deadline)
	return conn, ok, nil
}

func exchange(conn *noise.Conn, m *messages.SetupConnection) (*messages.SetupConnectionSuccess, error) {
	if err := conn.WriteMessage(m, codec.Options{}); err != nil {
		return nil, fmt.Errorf("send SetupConnection: %w", err)
	}
	reply, err := Read(conn)
	if err != nil {
		return nil, fmt.Errorf("waiting for SetupConnection.Success: %w", err)
	}
	switch r := reply.(type) {
	case *messages.SetupConnectionSuccess:
		if r.UsedVersion < m.MinVersion || r.UsedVersion > m.MaxVersion {
			return nil, fmt.Errorf("server chose protocol version %d, outside %d–%d", r.UsedVersion, m.MinVersion, m.MaxVersion)
		}
		return r, nil
	case *messages.SetupConnectionError:
		return nil, &Refused{Code: r.ErrorCode, Flags: r.Flags}
	default:
		return nil, fmt.Errorf("server sent %s before SetupConnection.Success", r.MessageName())
	}
}

// Read returns the next message, skipping frames of extensions this side
// does not know (a server may send them before negotiation).
func Read(conn *noise.Conn) (codec.Message, error) {
	for {
		m, _, err := messages.Read(conn, codec.Options{})
		if errors.Is(err, messages.ErrUnknownExtension) {
			continue
		}
		return m, err
	}
}
