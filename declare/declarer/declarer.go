// Package declarer is the Job Declarator Client side of the Job Declaration
// Protocol (DIGEST §5): the library jdc uses to talk to a pool's JDS.
//
// A Declarer is one Noise connection to a JDS, set up for protocol 1. It
// keeps Config.SpareTokens mining job tokens allocated ahead
// (AllocateMiningJobToken) and refills them as Token hands them out;
// Declare sends a DeclareMiningJob, answers the JDS's
// ProvideMissingTransactions from the job's own transactions and returns the
// DeclareMiningJob.Success (whose new token goes into SetCustomMiningJob) or
// a *DeclareError; PushSolution hands a found block's header fields to the
// JDS. Every request is bounded by Config.Timeout and by its context.
//
// Each Declarer runs one reader and one writer goroutine; the writer drains
// a bounded queue. They stop on Close or when the connection fails: Done is
// closed then and Err says why. jdc treats a closed Declarer, a timeout and
// a DeclareError alike as a reason to fall back (DIGEST §5.2).
//
// Typical use in full-template mode (see docs/jdc-declarer.md):
//
//	d, err := declarer.Dial(ctx, declarer.Config{Addr: jds, AuthorityPubKey: &key,
//		UserIdentifier: "farm1", FullTemplate: true})
//	tok, err := d.Token(ctx)                 // outputs: tok.CoinbaseTxOutputs
//	prefix, suffix := buildCoinbase(tmpl, tok) // the caller's coinbase
//	job, err := declarer.NewJob(tok.MiningJobToken, tmpl, txData, prefix, suffix)
//	ok, err := d.Declare(ctx, job)           // ok.NewMiningJobToken → SetCustomMiningJob
//	...
//	err = d.PushSolution(ctx, &messages.PushSolution{...}) // on a block
package declarer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/sv2kit/sv2kit/sv2/setup"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// Defaults for the zero values of Config.
const (
	DefaultSpareTokens      = 2
	DefaultTimeout          = 10 * time.Second
	DefaultQueueSize        = 64
	DefaultMaxMissingRounds = 2
	DefaultTokenMaxAge      = 5 * time.Minute
	DefaultVendor           = "sv2kit-jdc"
	// protocolVersion is the only SV2 version there is (DIGEST §3).
	protocolVersion = 2
	// logUnexpectedEvery: after the first few, only every n-th unexpected
	// message is logged, so a chatty peer cannot flood the log.
	logUnexpectedFirst = 10
	logUnexpectedEvery = 100
)

// Config configures a Declarer. The zero value of each optional field
// selects the documented default.
type Config struct {
	// Addr is the JDS's host:port.
	Addr string
	// AuthorityPubKey is the pool's x-only authority key; the JDS's
	// certificate must be signed by it. nil accepts any certificate
	// (encrypted but unauthenticated, logged as a warning).
	AuthorityPubKey *[32]byte
	// UserIdentifier goes into every AllocateMiningJobToken: it identifies
	// this JDC (and its account) to the pool.
	UserIdentifier string
	// FullTemplate sets DECLARE_TX_DATA: the JDC declares every job with
	// its transactions (Declare, PushSolution). Without it the connection
	// is coinbase-only and only Token is useful.
	FullTemplate bool
	// SpareTokens is how many tokens are kept allocated ahead. Default 2;
	// negative: none, each Token call allocates one and waits for it.
	SpareTokens int
	// TokenMaxAge drops a spare token older than this instead of handing it
	// out, for JDSes whose tokens expire (sv2kit's JDS: after 10 minutes by
	// default; SRI's: never). Default 5 minutes; negative: never.
	TokenMaxAge time.Duration
	// Timeout bounds the dial and handshake, SetupConnection, each token
	// allocation, each declaration (with its ProvideMissingTransactions
	// rounds), each frame write and each wait for room in the send queue.
	// Default 10s.
	Timeout time.Duration
	// Logger receives connection events. Default: discard.
	Logger hclog.Logger

	// Vendor is SetupConnection.vendor. Default "sv2kit-jdc".
	Vendor string
	// PushSolution2025 sends PushSolution in the field order of SRI's 2025
	// builds (ntime before nonce, DIGEST §7.2). Default: spec HEAD.
	PushSolution2025 bool
	// QueueSize bounds the frames waiting for the writer. Default 64.
	QueueSize int
	// MaxMissingRounds bounds the ProvideMissingTransactions rounds one
	// declaration answers (the spec's JDS asks once). Default 2.
	MaxMissingRounds int
}

func (c Config) withDefaults() Config {
	if c.SpareTokens == 0 {
		c.SpareTokens = DefaultSpareTokens
	} else if c.SpareTokens < 0 {
		c.SpareTokens = 0
	}
	if c.TokenMaxAge == 0 {
		c.TokenMaxAge = DefaultTokenMaxAge
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.Vendor == "" {
		c.Vendor = DefaultVendor
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.MaxMissingRounds <= 0 {
		c.MaxMissingRounds = DefaultMaxMissingRounds
	}
	return c
}

// Declarer is a connection to a JDS. Its methods may be called from any
// goroutine.
type Declarer struct {
	cfg   Config
	log   hclog.Logger
	conn  *noise.Conn
	opts  codec.Options
	flags uint32 // SetupConnection.Success.flags

	out  chan outFrame
	done chan struct{}
	wg   sync.WaitGroup

	mu        sync.Mutex
	err       error
	nextID    uint32
	spare     []spareToken
	allocs    map[uint32]time.Time // outstanding AllocateMiningJobToken → sent at
	tokenWake chan struct{}        // closed and replaced when a token arrives
	waiters   int                  // Token calls waiting
	declares  map[uint32]*pending
	stats     Stats
}

// Stats counts what a Declarer did, for jdc's metrics and logs.
type Stats struct {
	// TokensReceived counts AllocateMiningJobToken.Success messages.
	TokensReceived uint64
	// Declared counts DeclareMiningJob messages queued; Accepted and
	// Rejected the JDS's answers to them; TimedOut the declarations given
	// up on (Timeout or the caller's context).
	Declared, Accepted, Rejected, TimedOut uint64
	// MissingRounds, MissingTxs and MissingBytes count the
	// ProvideMissingTransactions answered and what the answers carried.
	MissingRounds, MissingTxs, MissingBytes uint64
	// Pushed counts PushSolution frames written.
	Pushed uint64
	// Unexpected counts messages ignored: unknown, unsolicited, or answers
	// to requests given up on.
	Unexpected uint64
}

// Stats returns the counters so far.
func (d *Declarer) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

type outFrame struct {
	msg  codec.Message
	sent chan error // nil, or cap 1: the write's result
}

type spareToken struct {
	tok *messages.AllocateMiningJobTokenSuccess
	at  time.Time
}

// pending is a declaration waiting for its answer.
type pending struct {
	job    *Job
	reply  chan result // cap 1; sent once, by whoever removes it from declares
	rounds int
}

type result struct {
	ok  *messages.DeclareMiningJobSuccess
	err error
}

// Dial connects to the JDS, completes the Noise handshake and
// SetupConnection, starts the reader and writer and the first token
// allocations. ctx bounds only the dial and setup (like net.Dialer): the
// Declarer lives until Close or until the connection fails.
func Dial(ctx context.Context, cfg Config) (*Declarer, error) {
	cfg = cfg.withDefaults()
	log := cfg.Logger.With("jds", cfg.Addr)
	var flags uint32
	if cfg.FullTemplate {
		flags = messages.FlagDeclareTxData
	}
	conn, ok, err := setup.Dial(ctx, setup.Config{Addr: cfg.Addr, AuthorityPubKey: cfg.AuthorityPubKey,
		Timeout: cfg.Timeout, Logger: log},
		&messages.SetupConnection{Protocol: messages.ProtocolJobDeclaration, MinVersion: protocolVersion,
			MaxVersion: protocolVersion, Flags: flags, Vendor: cfg.Vendor})
	if err != nil {
		var refused *setup.Refused
		if errors.As(err, &refused) {
			return nil, &SetupError{Code: refused.Code, Flags: refused.Flags, FullTemplate: cfg.FullTemplate}
		}
		// The connection's deadline is the context's: either may fire first.
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%w (deadline %s): %w", ErrTimeout, cfg.Timeout, err)
		}
		return nil, fmt.Errorf("declarer: JDS %s: %w", cfg.Addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	d := &Declarer{
		cfg:       cfg,
		log:       log,
		conn:      conn,
		opts:      codec.Options{PushSolution2025: cfg.PushSolution2025},
		out:       make(chan outFrame, cfg.QueueSize),
		done:      make(chan struct{}),
		allocs:    make(map[uint32]time.Time),
		tokenWake: make(chan struct{}),
		declares:  make(map[uint32]*pending),
		flags:     ok.Flags,
	}
	d.wg.Add(2)
	go d.readLoop()
	go d.writeLoop()
	d.mu.Lock()
	d.refillLocked()
	d.mu.Unlock()
	log.Info("connected to JDS", "full_template", cfg.FullTemplate, "authenticated", conn.AuthorityVerified())
	return d, nil
}

// Flags returns the flags of the JDS's SetupConnection.Success (none are
// defined for protocol 1; SRI's JDS echoes DECLARE_TX_DATA).
func (d *Declarer) Flags() uint32 { return d.flags }

// Done is closed when the Declarer stops: closed by Close or the
// connection failed.
func (d *Declarer) Done() <-chan struct{} { return d.done }

// Err returns nil while the Declarer runs, ErrClosed after Close, and
// otherwise why the connection failed.
func (d *Declarer) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// Close closes the connection and waits for the reader and writer to end.
// Calls waiting on the Declarer return with ErrClosed. Close is idempotent.
func (d *Declarer) Close() error {
	d.fail(ErrClosed)
	d.wg.Wait()
	return nil
}

// fail stops the Declarer with err as its reason; the first reason sticks.
func (d *Declarer) fail(err error) {
	d.mu.Lock()
	if d.err != nil {
		d.mu.Unlock()
		return
	}
	d.err = err
	close(d.done)
	d.mu.Unlock()
	d.conn.Close()
	if !errors.Is(err, ErrClosed) {
		d.log.Warn("JDS connection ended", "reason", err)
	} else {
		d.log.Debug("JDS connection closed")
	}
}

func (d *Declarer) closedErr() error {
	if err := d.Err(); err != nil {
		return err
	}
	return ErrClosed
}

// readLoop reads and dispatches frames until the connection ends.
func (d *Declarer) readLoop() {
	defer d.wg.Done()
	for {
		h, payload, err := d.conn.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("JDS closed the connection")
			}
			d.fail(fmt.Errorf("declarer: read from JDS: %w", err))
			return
		}
		m, err := messages.Decode(h, payload, d.opts)
		switch {
		case errors.Is(err, messages.ErrUnknownExtension):
			d.log.Debug("dropping frame of an unknown extension", "header", h.String())
			continue
		case errors.Is(err, messages.ErrUnknownMessage):
			d.noteUnexpected(h.String())
			continue
		case err != nil:
			d.fail(fmt.Errorf("declarer: malformed frame from JDS (%s): %w", h, err))
			return
		}
		if err := d.handle(m); err != nil {
			d.fail(err)
			return
		}
	}
}

// writeLoop writes queued frames, each under Config.Timeout.
func (d *Declarer) writeLoop() {
	defer d.wg.Done()
	for {
		select {
		case <-d.done:
			return
		case f := <-d.out:
			d.conn.SetWriteDeadline(time.Now().Add(d.cfg.Timeout))
			err := d.conn.WriteMessage(f.msg, d.opts)
			if f.sent != nil {
				f.sent <- err
			}
			if err != nil {
				d.fail(fmt.Errorf("declarer: write %s to JDS: %w", f.msg.MessageName(), err))
				return
			}
		}
	}
}

// enqueue queues m for the writer, waiting at most Config.Timeout for room.
func (d *Declarer) enqueue(ctx context.Context, m codec.Message, sent chan error) error {
	select {
	case <-d.done:
		return d.closedErr()
	default:
	}
	f := outFrame{msg: m, sent: sent}
	select {
	case d.out <- f:
		return nil
	default:
	}
	t := time.NewTimer(d.cfg.Timeout)
	defer t.Stop()
	select {
	case d.out <- f:
		return nil
	case <-d.done:
		return d.closedErr()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return ErrQueueFull
	}
}

// handle dispatches one message from the JDS; an error ends the connection.
func (d *Declarer) handle(m codec.Message) error {
	switch m := m.(type) {
	case *messages.AllocateMiningJobTokenSuccess:
		d.onToken(m)
	case *messages.ProvideMissingTransactions:
		return d.onMissing(m)
	case *messages.DeclareMiningJobSuccess:
		d.resolve(m.RequestID, result{ok: m}, m.MessageName())
	case *messages.DeclareMiningJobError:
		de := &DeclareError{RequestID: m.RequestID, Code: m.ErrorCode, Details: string(m.ErrorDetails)}
		d.resolve(m.RequestID, result{err: de}, m.MessageName())
	case *messages.Reconnect:
		// jdc owns upstream selection; following a redirect is its call.
		d.log.Warn("JDS asked to reconnect elsewhere; not followed", "host", m.NewHost, "port", m.NewPort)
	default:
		d.noteUnexpected(m.MessageName())
	}
	return nil
}

func (d *Declarer) count(f func(*Stats)) {
	d.mu.Lock()
	f(&d.stats)
	d.mu.Unlock()
}

func (d *Declarer) noteUnexpected(what string) {
	d.mu.Lock()
	d.stats.Unexpected++
	n := d.stats.Unexpected
	d.mu.Unlock()
	if n <= logUnexpectedFirst || n%logUnexpectedEvery == 0 {
		d.log.Warn("ignoring unexpected message from JDS", "message", what, "count", n)
	}
}

// newIDLocked returns a request id not in use by any outstanding request.
func (d *Declarer) newIDLocked() uint32 {
	for {
		d.nextID++
		id := d.nextID
		if _, ok := d.allocs[id]; ok {
			continue
		}
		if _, ok := d.declares[id]; ok {
			continue
		}
		return id
	}
}

// refillLocked sends allocations until spare + outstanding tokens cover
// SpareTokens plus the waiting Token calls.
func (d *Declarer) refillLocked() {
	if d.err != nil {
		return
	}
	need := d.cfg.SpareTokens + d.waiters - len(d.spare) - len(d.allocs)
	for ; need > 0; need-- {
		id := d.newIDLocked()
		m := &messages.AllocateMiningJobToken{UserIdentifier: d.cfg.UserIdentifier, RequestID: id}
		select {
		case d.out <- outFrame{msg: m}:
			d.allocs[id] = time.Now()
		default:
			// Queue full: the next Token call or arriving token retries.
			d.log.Debug("send queue full; token allocation postponed")
			return
		}
	}
}

func (d *Declarer) onToken(m *messages.AllocateMiningJobTokenSuccess) {
	d.mu.Lock()
	sent, ok := d.allocs[m.RequestID]
	if !ok {
		d.mu.Unlock()
		d.noteUnexpected(fmt.Sprintf("%s for unknown request %d", m.MessageName(), m.RequestID))
		return
	}
	delete(d.allocs, m.RequestID)
	d.stats.TokensReceived++
	d.spare = append(d.spare, spareToken{tok: m, at: time.Now()})
	close(d.tokenWake)
	d.tokenWake = make(chan struct{})
	spare := len(d.spare)
	d.mu.Unlock()
	d.log.Trace("token allocated", "request_id", m.RequestID, "rtt", time.Since(sent), "spare", spare)
}

// Token returns an unused mining job token with the pool's coinbase
// outputs: a spare one at once, or the next one allocated. It waits at
// most Config.Timeout; when an allocation stayed unanswered that long the
// JDS is considered dead and the Declarer fails. Each token is handed out
// once; using it (Declare, or SetCustomMiningJob in coinbase-only mode)
// is the caller's.
func (d *Declarer) Token(ctx context.Context) (*messages.AllocateMiningJobTokenSuccess, error) {
	timer := time.NewTimer(d.cfg.Timeout)
	defer timer.Stop()
	for {
		d.mu.Lock()
		if d.err != nil {
			err := d.err
			d.mu.Unlock()
			return nil, fmt.Errorf("declarer: no token: %w", err)
		}
		if tok := d.takeSpareLocked(); tok != nil {
			d.refillLocked()
			d.mu.Unlock()
			return tok, nil
		}
		d.waiters++
		d.refillLocked()
		wake := d.tokenWake
		d.mu.Unlock()

		var err error
		select {
		case <-wake:
		case <-d.done:
			err = d.closedErr()
		case <-ctx.Done():
			err = ctx.Err()
		case <-timer.C:
			err = fmt.Errorf("no token within %s: %w", d.cfg.Timeout, ErrTimeout)
		}
		d.mu.Lock()
		d.waiters--
		stuck := false
		if err != nil && errors.Is(err, ErrTimeout) {
			// Stuck: an allocation went unanswered for (about) the whole
			// wait; the slack covers one sent by this call just after start.
			for _, sent := range d.allocs {
				if time.Since(sent) >= d.cfg.Timeout-d.cfg.Timeout/20 {
					stuck = true
				}
			}
		}
		d.mu.Unlock()
		if stuck {
			d.fail(fmt.Errorf("declarer: JDS did not answer AllocateMiningJobToken within %s: %w", d.cfg.Timeout, ErrTimeout))
		}
		if err != nil {
			return nil, fmt.Errorf("declarer: no token: %w", err)
		}
	}
}

// takeSpareLocked pops the oldest spare token still young enough.
func (d *Declarer) takeSpareLocked() *messages.AllocateMiningJobTokenSuccess {
	now := time.Now()
	for len(d.spare) > 0 {
		s := d.spare[0]
		d.spare[0] = spareToken{}
		d.spare = d.spare[1:]
		if d.cfg.TokenMaxAge > 0 && now.Sub(s.at) > d.cfg.TokenMaxAge {
			d.log.Debug("dropping aged spare token", "request_id", s.tok.RequestID, "age", now.Sub(s.at))
			continue
		}
		return s.tok
	}
	return nil
}

// Declare declares job to the JDS and waits for its verdict, answering
// ProvideMissingTransactions from job.Txs on the way. It returns the
// DeclareMiningJob.Success (its NewMiningJobToken goes into
// SetCustomMiningJob), a *DeclareError when the JDS rejects the job, or
// an error wrapping ErrTimeout, ErrClosed, the connection's failure or
// ctx's error. The job's slices must not change until Declare returns.
// A late answer to a declaration that timed out is logged and dropped.
func (d *Declarer) Declare(ctx context.Context, job Job) (*messages.DeclareMiningJobSuccess, error) {
	if !d.cfg.FullTemplate {
		return nil, ErrCoinbaseOnly
	}
	if err := job.validate(); err != nil {
		return nil, fmt.Errorf("declarer: %w", err)
	}
	p := &pending{job: &job, reply: make(chan result, 1)}
	d.mu.Lock()
	if d.err != nil {
		err := d.err
		d.mu.Unlock()
		return nil, fmt.Errorf("declarer: declare: %w", err)
	}
	id := d.newIDLocked()
	d.declares[id] = p
	d.mu.Unlock()

	start := time.Now()
	timer := time.NewTimer(d.cfg.Timeout)
	defer timer.Stop()
	msg := &messages.DeclareMiningJob{
		RequestID:        id,
		MiningJobToken:   job.Token,
		Version:          job.Version,
		CoinbaseTxPrefix: job.CoinbasePrefix,
		CoinbaseTxSuffix: job.CoinbaseSuffix,
		WtxidList:        job.WTxIDs,
		ExcessData:       job.ExcessData,
	}
	if err := d.enqueue(ctx, msg, nil); err != nil {
		d.forget(id)
		return nil, fmt.Errorf("declarer: declaration %d: %w", id, err)
	}
	d.count(func(s *Stats) { s.Declared++ })
	var err error
	select {
	case r := <-p.reply:
		d.log.Debug("declaration answered", "request_id", id, "txs", len(job.WTxIDs), "ok", r.err == nil, "took", time.Since(start))
		return r.ok, r.err
	case <-d.done:
		err = d.closedErr()
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = fmt.Errorf("not answered within %s: %w", d.cfg.Timeout, ErrTimeout)
	}
	if !d.forget(id) {
		// The answer won the race: it is in p.reply or about to be.
		r := <-p.reply
		return r.ok, r.err
	}
	d.count(func(s *Stats) { s.TimedOut++ })
	return nil, fmt.Errorf("declarer: declaration %d: %w", id, err)
}

// forget drops a pending declaration; false if an answer already took it.
func (d *Declarer) forget(id uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.declares[id]; !ok {
		return false
	}
	delete(d.declares, id)
	return true
}

// resolve hands a declaration its answer (counted before the caller sees
// it, so Stats agrees with what Declare returned).
func (d *Declarer) resolve(id uint32, r result, what string) {
	d.mu.Lock()
	p := d.declares[id]
	delete(d.declares, id)
	var de *DeclareError
	switch {
	case p == nil:
		d.stats.Unexpected++
	case r.ok != nil:
		d.stats.Accepted++
	case errors.As(r.err, &de):
		d.stats.Rejected++
	}
	d.mu.Unlock()
	if p == nil {
		d.log.Warn("dropping answer for an unknown or timed-out declaration", "message", what, "request_id", id)
		return
	}
	p.reply <- r
}

// onMissing answers ProvideMissingTransactions. Positions out of range or
// repeated are a protocol violation and end the connection (repeats would
// let a JDS make us send the same transaction without bound).
func (d *Declarer) onMissing(m *messages.ProvideMissingTransactions) error {
	d.mu.Lock()
	p := d.declares[m.RequestID]
	var rounds int
	if p != nil {
		p.rounds++
		rounds = p.rounds
	}
	d.mu.Unlock()
	if p == nil {
		d.count(func(s *Stats) { s.Unexpected++ })
		d.log.Warn("ProvideMissingTransactions for an unknown or timed-out declaration; ignored", "request_id", m.RequestID)
		return nil
	}
	if rounds > d.cfg.MaxMissingRounds {
		d.resolve(m.RequestID, result{err: fmt.Errorf("declarer: declaration %d: JDS asked for missing transactions %d times (limit %d)", m.RequestID, rounds, d.cfg.MaxMissingRounds)}, m.MessageName())
		return nil
	}
	txs, fatal, err := missingTxs(p.job, m.UnknownTxPositionList)
	if err != nil {
		err = fmt.Errorf("declarer: declaration %d: ProvideMissingTransactions: %w", m.RequestID, err)
		d.resolve(m.RequestID, result{err: err}, m.MessageName())
		if fatal {
			return err
		}
		return nil
	}
	size := 0
	for _, tx := range txs {
		size += len(tx)
	}
	d.log.Debug("providing missing transactions", "request_id", m.RequestID, "count", len(txs), "bytes", size, "round", rounds)
	select {
	case d.out <- outFrame{msg: &messages.ProvideMissingTransactionsSuccess{RequestID: m.RequestID, TransactionList: txs}}:
		d.count(func(s *Stats) {
			s.MissingRounds++
			s.MissingTxs += uint64(len(txs))
			s.MissingBytes += uint64(size)
		})
		return nil
	default:
		// The reader must not block on a peer that does not read.
		return fmt.Errorf("declarer: answering ProvideMissingTransactions: %w", ErrQueueFull)
	}
}

// missingTxs picks the transactions at the requested positions of the
// job's list. fatal marks a request no honest JDS sends.
func missingTxs(job *Job, positions []uint16) (txs [][]byte, fatal bool, err error) {
	n := len(job.WTxIDs)
	seen := make([]uint64, (n+63)/64)
	for _, pos := range positions {
		i := int(pos)
		if i >= n {
			return nil, true, fmt.Errorf("position %d is outside the %d declared transactions", i, n)
		}
		if seen[i/64]&(1<<(i%64)) != 0 {
			return nil, true, fmt.Errorf("position %d requested twice", i)
		}
		seen[i/64] |= 1 << (i % 64)
	}
	if len(positions) > 0 && job.Txs == nil {
		return nil, false, fmt.Errorf("JDS needs %d transactions but the job carries none", len(positions))
	}
	txs = make([][]byte, len(positions))
	for k, pos := range positions {
		txs[k] = job.Txs[pos]
	}
	return txs, false, nil
}

// PushSolution sends a found block's extranonce and header fields to the
// JDS, which rebuilds the block from the last job declared on this
// connection and submits it. The JDS does not answer; PushSolution returns
// once the frame is written, or an error if the connection is gone. Send
// the block to the Template Provider (SubmitSolution) as well.
func (d *Declarer) PushSolution(ctx context.Context, s *messages.PushSolution) error {
	if !d.cfg.FullTemplate {
		return ErrCoinbaseOnly
	}
	if s == nil {
		return errors.New("declarer: PushSolution: nil solution")
	}
	if len(s.Extranonce) > 32 {
		return fmt.Errorf("declarer: PushSolution: extranonce is %d bytes; at most 32", len(s.Extranonce))
	}
	sent := make(chan error, 1)
	if err := d.enqueue(ctx, s, sent); err != nil {
		return fmt.Errorf("declarer: PushSolution: %w", err)
	}
	timer := time.NewTimer(d.cfg.Timeout)
	defer timer.Stop()
	select {
	case err := <-sent:
		if err != nil {
			return fmt.Errorf("declarer: PushSolution: %w", err)
		}
		d.count(func(st *Stats) { st.Pushed++ })
		d.log.Info("solution pushed to JDS", "nonce", s.Nonce, "ntime", s.NTime)
		return nil
	case <-d.done:
		select {
		case err := <-sent:
			if err == nil {
				return nil
			}
		default:
		}
		return fmt.Errorf("declarer: PushSolution: %w", d.closedErr())
	case <-ctx.Done():
		return fmt.Errorf("declarer: PushSolution: %w", ctx.Err())
	case <-timer.C:
		return fmt.Errorf("declarer: PushSolution not written within %s: %w", d.cfg.Timeout, ErrTimeout)
	}
}
