// Package poolclient is jdc's Mining Protocol client to a pool: one Noise
// connection set up with REQUIRES_WORK_SELECTION and version rolling, one
// extended channel, custom jobs (SetCustomMiningJob) and shares
// (SubmitSharesExtended) out, the pool's answers and channel changes
// (SetTarget, SetExtranoncePrefix, CloseChannel, …) in.
//
// One reader and one writer goroutine per connection; the writer drains a
// bounded queue and a pool that does not read is dropped with a logged
// reason. Every wait during setup is bounded by Config.Timeout.
package poolclient

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sv2kit/sv2kit/sv2/setup"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// Defaults for Config's zero values.
const (
	DefaultTimeout   = 10 * time.Second
	DefaultSendQueue = 256
	DefaultVendor    = "sv2kit-jdc"
	// EventBuffer is the capacity of Events.
	EventBuffer = 256
)

// ErrClosed is the error of a client closed by its owner.
var ErrClosed = errors.New("poolclient: closed")

// Config says how to reach a pool.
type Config struct {
	Addr string
	// AuthorityPubKey pins the pool's authority key; nil accepts any
	// certificate (encrypted, unauthenticated; a warning is logged).
	AuthorityPubKey *[32]byte
	// Plaintext turns Noise off (local test pools only).
	Plaintext bool
	// UserIdentity goes in OpenExtendedMiningChannel (the pool account).
	UserIdentity string
	// NominalHashRate is reported when the channel opens (h/s).
	NominalHashRate float32
	// MinExtranonceSize is the extranonce space jdc asks for (it subdivides
	// it among its devices). Default 8.
	MinExtranonceSize uint16
	// Timeout bounds dialing, the handshake, SetupConnection, opening the
	// channel and each frame write. Default 10s.
	Timeout time.Duration
	// SendQueue bounds frames waiting for the writer. Default 256.
	SendQueue int
	Vendor    string
	Logger    hclog.Logger
}

// SetupError is the pool refusing SetupConnection or the channel.
type SetupError struct {
	Msg   string // the message name
	Code  string
	Flags uint32 // SetupConnection.Error's unsupported flags
}

func (e *SetupError) Error() string {
	msg := fmt.Sprintf("poolclient: pool refused %s: %s", e.Msg, e.Code)
	if e.Flags != 0 {
		msg += fmt.Sprintf(" (flags 0x%x)", e.Flags)
	}
	if e.Flags&messages.FlagRequiresWorkSelection != 0 {
		// The usual cause: a pool (or another jdc's device port) that
		// does not take custom jobs.
		msg += "; this server does not accept custom jobs (REQUIRES_WORK_SELECTION): check that upstreams.pool is a pool's Mining Protocol port with job declaration"
	}
	return msg
}

// Channel is the extended channel the pool opened.
type Channel struct {
	ID               uint32
	Target           [32]byte
	ExtranonceSize   int
	ExtranoncePrefix []byte
}

// Client is one set-up pool connection with its channel.
type Client struct {
	conn    *noise.Conn
	cfg     Config
	log     hclog.Logger
	channel Channel
	events  chan codec.Message
	queue   chan codec.Message
	done    chan struct{}
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup

	mu  sync.Mutex
	err error
}

// Dial connects, sets the connection up and opens the extended channel.
// ctx bounds only the setup; the Client lives until Close or a failure.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = DefaultSendQueue
	}
	if cfg.MinExtranonceSize == 0 {
		cfg.MinExtranonceSize = 8
	}
	if cfg.Vendor == "" {
		cfg.Vendor = DefaultVendor
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	conn, _, err := setup.Dial(ctx, setup.Config{Addr: cfg.Addr, AuthorityPubKey: cfg.AuthorityPubKey,
		Plaintext: cfg.Plaintext, Timeout: cfg.Timeout, Logger: cfg.Logger},
		&messages.SetupConnection{Protocol: messages.ProtocolMining, MinVersion: 2, MaxVersion: 2,
			Flags: messages.FlagRequiresWorkSelection | messages.FlagRequiresVersionRolling, Vendor: cfg.Vendor})
	var refused *setup.Refused
	if errors.As(err, &refused) {
		return nil, &SetupError{Msg: "SetupConnection", Code: refused.Code, Flags: refused.Flags}
	}
	if err != nil {
		return nil, fmt.Errorf("poolclient: %w", err)
	}
	fail := func(err error) (*Client, error) {
		_ = conn.Close()
		return nil, err
	}
	var maxTarget [32]byte
	for i := range maxTarget {
		maxTarget[i] = 0xff
	}
	open := &messages.OpenExtendedMiningChannel{
		RequestID: 1, UserIdentity: cfg.UserIdentity, NominalHashRate: cfg.NominalHashRate,
		MaxTarget: maxTarget, MinExtranonceSize: cfg.MinExtranonceSize,
	}
	if err := conn.WriteMessage(open, codec.Options{}); err != nil {
		return fail(fmt.Errorf("poolclient: send OpenExtendedMiningChannel: %w", err))
	}
	var ch Channel
	for got := false; !got; {
		m, err := setup.Read(conn)
		if err != nil {
			return fail(fmt.Errorf("poolclient: waiting for OpenExtendedMiningChannel.Success: %w", err))
		}
		switch m := m.(type) {
		case *messages.OpenExtendedMiningChannelSuccess:
			if m.RequestID != 1 {
				continue
			}
			if int(m.ExtranonceSize) < 1 || len(m.ExtranoncePrefix)+int(m.ExtranonceSize) > 32 {
				return fail(fmt.Errorf("poolclient: pool opened a channel with an unusable extranonce (%d+%d bytes)", len(m.ExtranoncePrefix), m.ExtranonceSize))
			}
			ch = Channel{ID: m.ChannelID, Target: m.Target, ExtranonceSize: int(m.ExtranonceSize),
				ExtranoncePrefix: append([]byte(nil), m.ExtranoncePrefix...)}
			got = true
		case *messages.OpenMiningChannelError:
			return fail(&SetupError{Msg: "OpenExtendedMiningChannel", Code: m.ErrorCode})
		default:
			// A pool may send SetTarget/SetGroupChannel early; nothing to
			// keep before the channel exists.
			cfg.Logger.Debug("message before the channel opened; ignored", "msg", m.MessageName())
		}
	}
	_ = conn.SetDeadline(time.Time{})
	c := &Client{
		conn: conn, cfg: cfg, log: cfg.Logger, channel: ch,
		events: make(chan codec.Message, EventBuffer),
		queue:  make(chan codec.Message, cfg.SendQueue),
		done:   make(chan struct{}),
		stop:   make(chan struct{}),
	}
	c.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
	return c, nil
}

// Channel returns the channel as opened.
func (c *Client) Channel() Channel { return c.channel }

// Events delivers the pool's messages after setup, in wire order; it is
// closed when the connection ends.
func (c *Client) Events() <-chan codec.Message { return c.events }

// Done is closed when the connection has ended; Err says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is nil while the connection is up.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Send queues m for the writer without blocking. A full queue means the
// pool stopped reading: the connection is closed.
func (c *Client) Send(m codec.Message) error {
	select {
	case <-c.done:
		return c.endErr()
	default:
	}
	select {
	case c.queue <- m:
		return nil
	default:
		c.end(fmt.Errorf("poolclient: send queue full (%d frames): the pool is not reading", cap(c.queue)))
		return c.endErr()
	}
}

// Close ends the connection and waits for its goroutines.
func (c *Client) Close() error {
	c.end(ErrClosed)
	c.wg.Wait()
	return nil
}

func (c *Client) endErr() error {
	if err := c.Err(); err != nil {
		return err
	}
	return ErrClosed
}

func (c *Client) end(err error) {
	c.once.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.stop)
		_ = c.conn.Close()
	})
}

func (c *Client) readLoop() {
	defer c.wg.Done()
	defer close(c.events)
	defer close(c.done)
	for {
		m, h, err := messages.Read(c.conn, codec.Options{})
		if errors.Is(err, messages.ErrUnknownExtension) {
			continue
		}
		if err != nil {
			c.end(fmt.Errorf("poolclient: read: %w", err))
			return
		}
		switch m.(type) {
		case *messages.SetCustomMiningJobSuccess, *messages.SetCustomMiningJobError,
			*messages.SubmitSharesSuccess, *messages.SubmitSharesError,
			*messages.SetTarget, *messages.SetExtranoncePrefix, *messages.CloseChannel,
			*messages.Reconnect, *messages.UpdateChannelError, *messages.SetGroupChannel:
		default:
			// Pools do not send jobs on a work-selection connection; anything
			// else is logged and skipped rather than trusted.
			c.log.Debug("unexpected message from the pool; ignored", "msg", m.MessageName(), "type", h.MsgType)
			continue
		}
		select {
		case c.events <- m:
		case <-c.stop:
			return
		}
	}
}

func (c *Client) writeLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case m := <-c.queue:
			_ = c.conn.SetWriteDeadline(time.Now().Add(c.cfg.Timeout))
			if err := c.conn.WriteMessage(m, codec.Options{}); err != nil {
				c.end(fmt.Errorf("poolclient: send %s: %w", m.MessageName(), err))
				return
			}
		}
	}
}
