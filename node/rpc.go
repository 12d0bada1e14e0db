package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/btcsuite/btcd/btcjson"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/hashicorp/go-hclog"
)

// How calls and rpcclient share the work, and who owns what.
//
// rpcclient in HTTP POST mode runs one goroutine per rpcclient.Client that
// performs queued requests one after the other. It takes no context, sets no
// HTTP timeout, and retries a request whose connection fails 10 times over
// about 22 s before it gives up. So:
//
//   - A Client keeps MaxConcurrent "lanes", each its own rpcclient.Client, so
//     one slow call (a long-poll) never queues the others behind it.
//   - A call owns its lane while it waits. It sends the request with
//     RawRequestAsync and waits on the future, its context, its timeout, and a
//     connection probe (below). When it gives up before the answer, it shuts
//     the lane down and puts an empty slot back; the next call builds a fresh
//     lane. The abandoned rpcclient goroutine belongs to that rpcclient.Client:
//     it ends when the HTTP exchange in flight ends (rpcclient cannot cancel
//     it; a dead peer is detected by TCP keep-alive), never later.
//   - The probe: rpcclient hides connection errors behind its retries, so a
//     call that has not been answered after a moment dials the node's port
//     itself; "connection refused" (the node is down) then fails the call at
//     once with a TransportError instead of ~22 s later.
//   - Cookie authentication: rpcclient re-reads the cookie file at most every
//     30 s, per ConnConfig. Each lane has its own ConnConfig; a 401 or a
//     cookie error replaces the lane and every idle one, and the call is
//     tried once more, so a node restart that wrote a new cookie is followed
//     at once. Batches use a fresh rpcclient.Client, which reads the file.

const (
	probeFirst    = 300 * time.Millisecond
	probeMax      = 5 * time.Second
	probeDialWait = time.Second
)

// Client calls a node's JSON-RPC interface. It is safe for concurrent use.
// It does not connect until the first call, so a node that is down when the
// Client is made is not an error.
type Client struct {
	cfg      Config
	hostPath string // what rpcclient calls Host: host:port[/path]
	dialAddr string // host:port for the probe
	useTLS   bool
	log      hclog.Logger

	lanes     chan *lane // idle lanes; nil means "empty slot, make a lane"
	closeOnce sync.Once
	closed    chan struct{}

	mu   sync.Mutex
	live map[*lane]struct{} // every lane not yet shut down, for Close
}

type lane struct {
	rc *rpcclient.Client
}

// NewClient validates cfg and returns a Client. It does not contact the node.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	hostPath, useTLS, err := parseNodeURL(cfg.URL)
	if err != nil {
		return nil, err // Validate checked it already
	}
	u, _ := url.Parse(cfg.URL)
	c := &Client{
		cfg:      cfg,
		hostPath: hostPath,
		dialAddr: u.Host,
		useTLS:   useTLS,
		log:      cfg.Logger,
		lanes:    make(chan *lane, cfg.MaxConcurrent),
		closed:   make(chan struct{}),
		live:     make(map[*lane]struct{}),
	}
	for i := 0; i < cfg.MaxConcurrent; i++ {
		c.lanes <- nil
	}
	return c, nil
}

// URL returns the node's RPC URL as configured.
func (c *Client) URL() string { return c.cfg.URL }

// Config returns the configuration in use, defaults applied.
func (c *Client) Config() Config { return c.cfg }

// Close shuts every lane down; calls in flight return ErrClosed.
func (c *Client) Close() {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.mu.Lock()
		lanes := make([]*lane, 0, len(c.live))
		for l := range c.live {
			lanes = append(lanes, l)
		}
		c.live = map[*lane]struct{}{}
		c.mu.Unlock()
		for _, l := range lanes {
			l.rc.Shutdown()
		}
	})
}

func (c *Client) connConfig() *rpcclient.ConnConfig {
	cc := &rpcclient.ConnConfig{
		Host:         c.hostPath,
		HTTPPostMode: true,
		DisableTLS:   !c.useTLS,
	}
	if c.cfg.CookieFile != "" {
		cc.CookiePath = c.cfg.CookieFile
	} else {
		cc.User, cc.Pass = c.cfg.User, c.cfg.Password
	}
	return cc
}

func (c *Client) acquire(ctx context.Context) (*lane, error) {
	select {
	case <-c.closed:
		return nil, ErrClosed
	default:
	}
	select {
	case l := <-c.lanes:
		if l != nil {
			return l, nil
		}
		rc, err := rpcclient.New(c.connConfig(), nil)
		if err != nil {
			c.lanes <- nil
			return nil, fmt.Errorf("rpc client: %w", err)
		}
		l = &lane{rc: rc}
		c.mu.Lock()
		c.live[l] = struct{}{}
		c.mu.Unlock()
		return l, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.closed:
		return nil, ErrClosed
	}
}

func (c *Client) release(l *lane) { c.lanes <- l }

// discard shuts a lane down (its in-flight request, if any, is abandoned) and
// frees its slot.
func (c *Client) discard(l *lane) {
	c.mu.Lock()
	delete(c.live, l)
	c.mu.Unlock()
	l.rc.Shutdown()
	c.lanes <- nil
}

// discardIdle replaces every idle lane by an empty slot.
func (c *Client) discardIdle() {
	var taken []*lane
	for range cap(c.lanes) {
		select {
		case l := <-c.lanes:
			taken = append(taken, l)
			continue
		default:
		}
		break
	}
	for _, l := range taken {
		if l == nil {
			c.lanes <- nil
			continue
		}
		c.discard(l)
	}
}

// call runs one JSON-RPC method and returns its raw result. Errors are
// *RPCError, *HTTPError, *TransportError, *CookieError, ErrClosed or the
// context's error, wrapped with the method name.
func (c *Client) call(ctx context.Context, timeout time.Duration, method string, params ...any) (json.RawMessage, error) {
	raw := make([]json.RawMessage, len(params))
	for i, p := range params {
		b, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("%s: marshal parameter %d: %w", method, i, err)
		}
		raw[i] = b
	}
	res, err := c.do(ctx, timeout, method, raw)
	if err != nil && c.cfg.CookieFile != "" && (IsAuth(err) || IsCookie(err)) {
		// The node may have restarted and written a new cookie; do() replaced
		// the lane, so this attempt reads the file again.
		res, err = c.do(ctx, timeout, method, raw)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	return res, nil
}

func (c *Client) do(ctx context.Context, timeout time.Duration, method string, params []json.RawMessage) (json.RawMessage, error) {
	l, err := c.acquire(ctx)
	if err != nil {
		return nil, err
	}
	fut := l.rc.RawRequestAsync(method, params)
	resp, err := await(c, ctx, timeout, fut)
	if err != nil {
		c.log.Debug("rpc call abandoned; lane replaced", "method", method, "error", err)
		c.discard(l)
		return nil, err
	}
	// rpcclient's Response has no exported fields: hand it back to
	// rpcclient through a ready channel to read it.
	ready := make(chan *rpcclient.Response, 1)
	ready <- resp
	res, err := rpcclient.FutureRawResult(ready).Receive()
	if err == nil {
		c.release(l)
		return res, nil
	}
	err = c.classify(err)
	switch {
	case IsAuth(err) || IsCookie(err):
		// Every idle lane holds the same stale cookie for up to 30 s:
		// replace them all, so the retry reads the file again.
		c.discard(l)
		c.discardIdle()
	case IsTransport(err) || errors.Is(err, ErrClosed):
		c.discard(l)
	default:
		c.release(l)
	}
	return nil, err
}

// await waits for a value on ch, or until ctx is done, the timeout passes, the
// Client is closed, or a probe finds the node's port closed. The value is
// never consumed after await returned an error; whoever sends on ch must not
// block on it (rpcclient futures and our own result channels are buffered).
func await[T any](c *Client, ctx context.Context, timeout time.Duration, ch <-chan T) (T, error) {
	var zero T
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	probeEvery := probeFirst
	probe := time.NewTimer(probeEvery)
	defer probe.Stop()
	for {
		select {
		case v := <-ch:
			return v, nil
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-c.closed:
			return zero, ErrClosed
		case <-deadline:
			return zero, &TransportError{URL: c.cfg.URL, Timeout: true,
				Err: fmt.Errorf("no answer within %v", timeout)}
		case <-probe.C:
			if err := c.probe(ctx); err != nil {
				return zero, &TransportError{URL: c.cfg.URL, Err: err}
			}
			probeEvery *= 2
			if probeEvery > probeMax {
				probeEvery = probeMax
			}
			probe.Reset(probeEvery)
		}
	}
}

// probe dials the node's RPC port. It returns an error only when the port is
// certainly not reachable (refused, no route, unknown host); a slow dial is
// not proof of anything and is left to the call's timeout.
func (c *Client) probe(ctx context.Context) error {
	d := net.Dialer{Timeout: probeDialWait}
	conn, err := d.DialContext(ctx, "tcp", c.dialAddr)
	if err == nil {
		conn.Close()
		return nil
	}
	if ctx.Err() != nil {
		return nil // the caller's select sees ctx.Done next
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}

// classify turns rpcclient's errors into this package's types.
func (c *Client) classify(err error) error {
	var re *btcjson.RPCError
	if errors.As(err, &re) {
		return &RPCError{Code: int(re.Code), Message: re.Message}
	}
	if errors.Is(err, rpcclient.ErrClientShutdown) {
		return ErrClosed
	}
	// rpcclient reports a reply that is not JSON-RPC as
	// fmt.Errorf("status code: %d, response: %q", ...).
	var status int
	var body string
	if n, _ := fmt.Sscanf(err.Error(), "status code: %d, response: %q", &status, &body); n >= 1 {
		return &HTTPError{Status: status, Body: body}
	}
	// Errors from reading the cookie file come before any network activity.
	var pe *fs.PathError
	if c.cfg.CookieFile != "" && (errors.As(err, &pe) || strings.Contains(err.Error(), "malformed cookie file")) {
		return &CookieError{Path: c.cfg.CookieFile, Err: err}
	}
	var ue *url.Error
	var ne net.Error
	if errors.As(err, &ue) || errors.As(err, &ne) || strings.Contains(err.Error(), "error reading json reply") ||
		strings.Contains(err.Error(), "invalid http POST response") {
		return &TransportError{URL: c.cfg.URL, Err: err}
	}
	return err
}
