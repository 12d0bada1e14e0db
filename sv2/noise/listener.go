package noise

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Listener accepts connections and runs their handshakes concurrently, each
// under Config.HandshakeTimeout, at most Config.MaxHandshakes at a time.
// Accept returns only connections whose handshake completed; failed
// handshakes are logged and closed.
type Listener struct {
	ln    net.Listener
	cfg   *Config
	ident *identitySource
	slots chan struct{} // one per connection not yet returned by Accept
	ready chan *Conn

	ctx    context.Context // cancelled by Close; parents every handshake
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every handshake goroutine

	done    chan struct{} // closed when the accept loop exits
	loopErr error         // why it exited; read after done is closed
	once    sync.Once
}

// Listen listens on addr and returns a Listener running the responder side
// of the handshake on every connection.
func Listen(network, addr string, cfg *Config) (*Listener, error) {
	if err := checkResponderConfig(cfg); err != nil {
		return nil, err
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("noise: listen on %s: %w", addr, err)
	}
	return NewListener(ln, cfg)
}

// NewListener wraps ln. Closing the returned Listener closes ln.
func NewListener(ln net.Listener, cfg *Config) (*Listener, error) {
	if err := checkResponderConfig(cfg); err != nil {
		ln.Close()
		return nil, err
	}
	r := cfg.resolved()
	ctx, cancel := context.WithCancel(context.Background())
	l := &Listener{
		ln:     ln,
		cfg:    r,
		ident:  newIdentitySource(r),
		slots:  make(chan struct{}, r.MaxHandshakes),
		ready:  make(chan *Conn),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

func checkResponderConfig(cfg *Config) error {
	if cfg != nil && cfg.Plaintext {
		return nil
	}
	if cfg == nil || cfg.AuthorityKey == nil {
		return ErrNoAuthorityKey
	}
	return nil
}

// Accept waits for the next connection whose handshake completed.
func (l *Listener) Accept() (*Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, l.loopErr
	}
}

// Addr returns the listener's network address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting, aborts handshakes in flight, closes connections not
// yet returned by Accept, and waits for every goroutine of the listener to
// end. Connections already returned by Accept are not affected.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		l.cancel()
		err = l.ln.Close()
		l.wg.Wait()
	})
	return err
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	defer close(l.done)
	var backoff time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				l.loopErr = fmt.Errorf("noise: listener closed: %w", net.ErrClosed)
				return
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				// Out of file descriptors and the like: back off, as
				// net/http does, rather than spin or stop serving.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				l.cfg.Logger.Warn("noise: accept failed; retrying", "error", err, "retry_in", backoff)
				select {
				case <-time.After(backoff):
					continue
				case <-l.ctx.Done():
					l.loopErr = fmt.Errorf("noise: listener closed: %w", net.ErrClosed)
					return
				}
			}
			l.loopErr = fmt.Errorf("noise: accept: %w", err)
			return
		}
		backoff = 0
		// The cap is checked before anything else is done for the
		// connection: a flood of idle connections costs no EC work.
		select {
		case l.slots <- struct{}{}:
		default:
			l.cfg.Logger.Warn("noise: connection refused", "remote", nc.RemoteAddr().String(),
				"reason", ErrTooManyHandshakes, "max_handshakes", l.cfg.MaxHandshakes)
			nc.Close()
			continue
		}
		l.wg.Add(1)
		go l.serve(nc)
	}
}

// serve runs one handshake and hands the connection to Accept.
func (l *Listener) serve(nc net.Conn) {
	defer l.wg.Done()
	defer func() { <-l.slots }()
	c := &Conn{conn: nc, cfg: l.cfg, ident: l.ident}
	if err := c.Handshake(l.ctx); err != nil {
		if l.ctx.Err() == nil {
			l.cfg.Logger.Debug("noise: handshake failed", "remote", nc.RemoteAddr().String(), "error", err)
		}
		return
	}
	select {
	case l.ready <- c:
	case <-l.ctx.Done():
		nc.Close()
	}
}
