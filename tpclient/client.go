// Package tpclient is a Template Distribution Protocol client: it connects
// to a Template Provider (sv2kit's tp, sv2-tp, or any SV2 TP) over Noise,
// sets the connection up for protocol 2, declares its coinbase reservation
// and delivers the provider's NewTemplate and SetNewPrevHash messages in
// wire order. It also asks for a template's transactions and submits block
// solutions. jdc uses it upstream; tp's tests drive tp through it.
//
// The API is stable (CONTRACTS.md §1): Dial, Events, RequestTransactionData,
// SubmitSolution, SetConstraints, Err, Close.
//
// Events must be drained: the reader blocks while the channel is full, the
// provider then sees a slow client and drops it.
package tpclient

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
	DefaultUserAgent = "sv2kit-tpclient"
	// EventBuffer is the capacity of the Events channel.
	EventBuffer = 256
	// maxPendingTxData bounds RequestTransactionData calls waiting for an
	// answer at once.
	maxPendingTxData = 256
)

// ErrClosed is returned by calls on a client whose connection ended; Err
// says why it ended.
var ErrClosed = errors.New("tpclient: connection closed")

// Config says how to reach a Template Provider.
type Config struct {
	// Addr is host:port of the provider.
	Addr string
	// AuthorityPubKey is the provider's authority key (the base58 string tp
	// prints at start, parsed with noise.ParseAuthorityPublicKey). nil
	// accepts any certificate (encrypted but unauthenticated) and logs a
	// warning.
	AuthorityPubKey *[32]byte
	// Plaintext turns Noise off (only for a provider configured so).
	Plaintext bool
	// MaxAdditionalSize and MaxAdditionalSigops are the
	// CoinbaseOutputConstraints: the worst-case serialized size and sigops
	// of the coinbase outputs the client adds.
	MaxAdditionalSize   uint32
	MaxAdditionalSigops uint16
	// Timeout bounds the handshake, SetupConnection and each write
	// (default 10 s).
	Timeout time.Duration
	// Logger receives diagnostics; nil discards them.
	Logger hclog.Logger
	// UserAgent is SetupConnection's vendor string (default "sv2kit-tpclient").
	UserAgent string
}

// SetupError is the provider's SetupConnection.Error.
type SetupError struct {
	Code  string
	Flags uint32
}

func (e *SetupError) Error() string {
	return fmt.Sprintf("tpclient: provider refused SetupConnection: %q (flags 0x%x)", e.Code, e.Flags)
}

// TxDataError is the provider's RequestTransactionData.Error; Code is its
// error_code ("template-id-not-found", "stale-template-id", ...).
type TxDataError struct {
	TemplateID uint64
	Code       string
}

func (e *TxDataError) Error() string {
	return fmt.Sprintf("tpclient: transaction data of template %d refused: %s", e.TemplateID, e.Code)
}

// Client is a connected, set-up TDP connection. Its methods are safe for
// concurrent use.
type Client struct {
	conn    *noise.Conn
	timeout time.Duration
	log     hclog.Logger
	events  chan codec.Message
	done    chan struct{}
	quit    chan struct{} // closed by Close, so a blocked reader stops
	once    sync.Once

	mu      sync.Mutex
	err     error
	pending map[uint64][]chan txDataAnswer
	npend   int
	closed  bool
}

type txDataAnswer struct {
	ok  *messages.RequestTransactionDataSuccess
	err error
}

// Dial connects to the provider, runs the Noise handshake, sends
// SetupConnection (protocol 2, version 2) and, once it succeeded,
// CoinbaseOutputConstraints. Messages the provider sends next are delivered
// on Events.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	conn, _, err := setup.Dial(ctx, setup.Config{Addr: cfg.Addr, AuthorityPubKey: cfg.AuthorityPubKey,
		Plaintext: cfg.Plaintext, Timeout: cfg.Timeout, Logger: cfg.Logger},
		&messages.SetupConnection{Protocol: messages.ProtocolTemplateDistribution, MinVersion: 2, MaxVersion: 2, Vendor: cfg.UserAgent})
	var refused *setup.Refused
	if errors.As(err, &refused) {
		return nil, &SetupError{Code: refused.Code, Flags: refused.Flags}
	}
	if err != nil {
		return nil, fmt.Errorf("tpclient: %w", err)
	}
	fail := func(err error) (*Client, error) {
		_ = conn.Close()
		return nil, err
	}
	c := &Client{
		conn:    conn,
		timeout: cfg.Timeout,
		log:     cfg.Logger,
		events:  make(chan codec.Message, EventBuffer),
		done:    make(chan struct{}),
		quit:    make(chan struct{}),
		pending: make(map[uint64][]chan txDataAnswer),
	}
	if err := c.SetConstraints(cfg.MaxAdditionalSize, cfg.MaxAdditionalSigops); err != nil {
		return fail(err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	go c.readLoop()
	return c, nil
}

// Events delivers *messages.NewTemplate and *messages.SetNewPrevHash in
// wire order. It is closed when the connection ends (then Err says why).
func (c *Client) Events() <-chan codec.Message { return c.events }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended, or nil while it is up.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection. Events is closed once the reader stopped.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.once.Do(func() { close(c.quit) })
	return c.conn.Close()
}

func (c *Client) write(ctx context.Context, m codec.Message) error {
	select {
	case <-c.done:
		return c.endErr()
	default:
	}
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// The write deadline is shared by concurrent writers; each sets its own
	// before writing, under the conn's write lock order (last one wins,
	// which is at least as late as each writer's own).
	_ = c.conn.SetWriteDeadline(deadline)
	if err := c.conn.WriteMessage(m, codec.Options{}); err != nil {
		return fmt.Errorf("tpclient: send %s: %w", m.MessageName(), err)
	}
	return nil
}

// SetConstraints sends CoinbaseOutputConstraints; the provider answers with
// templates that leave room for them.
func (c *Client) SetConstraints(size uint32, sigops uint16) error {
	return c.write(context.Background(), &messages.CoinbaseOutputConstraints{
		CoinbaseOutputMaxAdditionalSize:   size,
		CoinbaseOutputMaxAdditionalSigops: sigops,
	})
}

// SubmitSolution sends a block solution (there is no reply).
func (c *Client) SubmitSolution(ctx context.Context, m *messages.SubmitSolution) error {
	return c.write(ctx, m)
}

// RequestTransactionData asks for the transactions of a template. A refusal
// is a *TxDataError carrying the provider's error code.
func (c *Client) RequestTransactionData(ctx context.Context, templateID uint64) (*messages.RequestTransactionDataSuccess, error) {
	ch := make(chan txDataAnswer, 1)
	c.mu.Lock()
	if c.err != nil || c.closed {
		c.mu.Unlock()
		return nil, c.endErr()
	}
	if c.npend >= maxPendingTxData {
		c.mu.Unlock()
		return nil, fmt.Errorf("tpclient: %d RequestTransactionData calls already wait for an answer", maxPendingTxData)
	}
	c.pending[templateID] = append(c.pending[templateID], ch)
	c.npend++
	c.mu.Unlock()
	if err := c.write(ctx, &messages.RequestTransactionData{TemplateID: templateID}); err != nil {
		c.forget(templateID, ch)
		return nil, err
	}
	select {
	case a := <-ch:
		return a.ok, a.err
	case <-ctx.Done():
		c.forget(templateID, ch)
		return nil, ctx.Err()
	case <-c.done:
		select {
		case a := <-ch:
			return a.ok, a.err
		default:
		}
		return nil, c.endErr()
	}
}

func (c *Client) forget(id uint64, ch chan txDataAnswer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.pending[id]
	for i, x := range w {
		if x == ch {
			w = append(w[:i], w[i+1:]...)
			c.npend--
			break
		}
	}
	if len(w) == 0 {
		delete(c.pending, id)
	} else {
		c.pending[id] = w
	}
}

// answer hands a RequestTransactionData answer to the oldest caller waiting
// for that template.
func (c *Client) answer(id uint64, a txDataAnswer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.pending[id]
	if len(w) == 0 {
		c.log.Debug("unsolicited RequestTransactionData answer ignored", "template_id", id)
		return
	}
	w[0] <- a
	c.npend--
	if len(w) == 1 {
		delete(c.pending, id)
	} else {
		c.pending[id] = w[1:]
	}
}

func (c *Client) endErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return fmt.Errorf("%w: %w", ErrClosed, c.err)
	}
	return ErrClosed
}

func (c *Client) readLoop() {
	var err error
	defer func() {
		_ = c.conn.Close()
		c.mu.Lock()
		if c.closed {
			err = ErrClosed
		}
		c.err = err
		c.mu.Unlock()
		close(c.done)
		close(c.events)
	}()
	for {
		var m codec.Message
		var h codec.Header
		m, h, err = messages.Read(c.conn, codec.Options{})
		if errors.Is(err, messages.ErrUnknownExtension) || errors.Is(err, messages.ErrUnknownMessage) {
			// A message a newer provider may send: skip it, the frame
			// boundary is intact.
			c.log.Debug("unknown message from the Template Provider skipped", "header", h.String())
			continue
		}
		if err != nil {
			err = fmt.Errorf("tpclient: read: %w", err)
			return
		}
		switch m := m.(type) {
		case *messages.NewTemplate, *messages.SetNewPrevHash:
			select {
			case c.events <- m:
			case <-c.quit:
				err = ErrClosed
				return
			}
		case *messages.RequestTransactionDataSuccess:
			c.answer(m.TemplateID, txDataAnswer{ok: m})
		case *messages.RequestTransactionDataError:
			c.answer(m.TemplateID, txDataAnswer{err: &TxDataError{TemplateID: m.TemplateID, Code: m.ErrorCode}})
		default:
			c.log.Debug("unexpected message from the Template Provider ignored", "msg", m.MessageName())
		}
	}
}
