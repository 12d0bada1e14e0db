// Package daemon is jdc's IO shell: the TDP client to tp, per pool+JDS pair
// a declarer and a Mining Protocol client, the device server, block
// submission and metrics, all around the decision core of package jdc.
//
// One goroutine (the loop) owns the core. Connections run in their own
// goroutines and post events to the loop; the loop carries out the core's
// Actions, starting a goroutine for every call that waits on a peer (tokens,
// declarations, transaction data, block submissions), so it never blocks on
// the network.
package daemon

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/sv2kit/sv2kit/internal/corelog"

	"github.com/sv2kit/sv2kit/internal/blockfile"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/declare/declarer"
	"github.com/sv2kit/sv2kit/jdc"
	"github.com/sv2kit/sv2kit/jdc/devices"
	"github.com/sv2kit/sv2kit/jdc/poolclient"
	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/tpclient"
)

// Defaults for Config's zero values.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultReconnectMin = 250 * time.Millisecond
	DefaultReconnectMax = 10 * time.Second
	DefaultTick         = 200 * time.Millisecond
	eventQueue          = 1024
	maxTxDataInFlight   = 8
	// statusEvery paces the status line in the log.
	statusEvery = time.Minute
	// hashRateReport paces UpdateChannel to the pools.
	hashRateReport = 30 * time.Second
	// stableConn: a connection that lasted this long resets its backoff.
	stableConn = 30 * time.Second
)

// Upstream is one pool+JDS pair.
type Upstream struct {
	PoolAddr         string
	PoolAuthorityKey *[32]byte // nil: not checked (logged)
	PoolPlaintext    bool      // test pools only
	JDSAddr          string
	JDSAuthorityKey  *[32]byte
	UserIdentity     string
	// DeclareTxIDs puts txids instead of wtxids in DeclareMiningJob, for a
	// 2025 SRI JDS (DIGEST §7.2).
	DeclareTxIDs bool
	// PushSolution2025 sends PushSolution in the 2025 SRI field order.
	PushSolution2025 bool
}

// Config configures a Daemon.
type Config struct {
	// Core is the decision core's configuration; Pairs is set from Upstreams.
	Core jdc.Config

	TPAddr         string
	TPAuthorityKey *[32]byte // nil: not checked (logged)
	TPPlaintext    bool
	Upstreams      []Upstream

	Devices devices.Config
	// Node, when set, also gets every found block (submitblock).
	Node *node.Client
	// BlocksDir receives every found block (fsync'd) before it is submitted
	// anywhere. Required.
	BlocksDir string

	// NominalHashRate is reported to pools when the channel opens.
	NominalHashRate float32
	// Timeout bounds each connection setup and each request to tp.
	Timeout                    time.Duration
	ReconnectMin, ReconnectMax time.Duration
	// Tick is how often the core checks deadlines and returns (default 200ms).
	Tick time.Duration

	Logger     hclog.Logger
	Registerer prometheus.Registerer
}

// Status is a snapshot for tests, logs and the demo.
type Status struct {
	Active      int
	States      []jdc.PairState
	TPConnected bool
	Blocks      int
}

type event struct {
	fn func(now time.Time) jdc.Actions
	// tip is when a SetNewPrevHash was read from tp (latency metric).
	tip time.Time
}

type pairConns struct {
	mu   sync.Mutex
	pool *poolclient.Client
	decl *declarer.Declarer
}

// Daemon is a running jdc.
type Daemon struct {
	cfg     Config
	log     hclog.Logger
	core    *jdc.Core
	devices *devices.Server
	m       *metrics
	events  chan event
	pairs   []*pairConns
	txSem   chan struct{}

	tpMu sync.Mutex
	tp   *tpclient.Client

	stMu        sync.Mutex
	status      Status
	constraints jdc.Constraints

	wg sync.WaitGroup
}

// New checks cfg, builds the core and binds the device listener.
func New(cfg Config) (*Daemon, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = DefaultReconnectMin
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = DefaultReconnectMax
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.TPAddr == "" {
		return nil, errors.New("jdc: no tp address")
	}
	if cfg.BlocksDir == "" {
		return nil, errors.New("jdc: no blocks directory")
	}
	if err := os.MkdirAll(cfg.BlocksDir, 0o755); err != nil {
		return nil, fmt.Errorf("jdc: blocks directory: %w", err)
	}
	cfg.Core.Pairs = len(cfg.Upstreams)
	// Solo work must leave the device server room to split per channel.
	if need := devices.MinExtranonceSpace(cfg.Devices); cfg.Core.SoloExtranonceSize < need {
		cfg.Core.SoloExtranonceSize = max(need, jdc.DefaultSoloExtranonceSize)
	}
	if cfg.Core.MinExtranonceSpace == 0 {
		cfg.Core.MinExtranonceSpace = devices.MinExtranonceSpace(cfg.Devices)
	}
	core, err := jdc.New(cfg.Core)
	if err != nil {
		return nil, fmt.Errorf("jdc: %w", err)
	}
	cfg.Core = core.Config()
	m, err := newMetrics(cfg.Registerer, len(cfg.Upstreams))
	if err != nil {
		return nil, fmt.Errorf("jdc: metrics: %w", err)
	}
	if cfg.Devices.Logger == nil {
		cfg.Devices.Logger = cfg.Logger.Named("devices")
	}
	if cfg.Devices.Registerer == nil {
		cfg.Devices.Registerer = cfg.Registerer
	}
	srv, err := devices.New(cfg.Devices)
	if err != nil {
		return nil, fmt.Errorf("jdc: device server: %w", err)
	}
	d := &Daemon{
		cfg: cfg, log: cfg.Logger, core: core, devices: srv, m: m,
		events: make(chan event, eventQueue),
		txSem:  make(chan struct{}, maxTxDataInFlight),
	}
	for range cfg.Upstreams {
		d.pairs = append(d.pairs, &pairConns{})
	}
	d.constraints = core.Constraints()
	d.status = Status{Active: core.Active(), States: core.States()}
	return d, nil
}

// DevicesAddr is the address devices connect to.
func (d *Daemon) DevicesAddr() string { return d.devices.Addr().String() }

// Devices is the device server (for stats).
func (d *Daemon) Devices() *devices.Server { return d.devices }

// Status returns a snapshot of the upstream states.
func (d *Daemon) Status() Status {
	d.stMu.Lock()
	defer d.stMu.Unlock()
	s := d.status
	s.States = append([]jdc.PairState(nil), s.States...)
	return s
}

// Run serves until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srvErr := make(chan error, 1)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		srvErr <- d.devices.Run(ctx)
	}()
	d.goRun(func() { d.tpLoop(ctx) })
	d.goRun(func() { d.reportHashRate(ctx) })
	for i := range d.cfg.Upstreams {
		i := i
		d.goRun(func() { d.poolLoop(ctx, i) })
		d.goRun(func() { d.jdsLoop(ctx, i) })
	}
	err := d.loop(ctx, srvErr)
	cancel()
	d.wg.Wait()
	return err
}

func (d *Daemon) goRun(f func()) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		f()
	}()
}

// post hands an event to the loop; false when ctx ended first.
func (d *Daemon) post(ctx context.Context, e event) bool {
	select {
	case d.events <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

func (d *Daemon) loop(ctx context.Context, srvErr <-chan error) error {
	tick := time.NewTicker(d.cfg.Tick)
	defer tick.Stop()
	status := time.NewTicker(statusEvery)
	defer status.Stop()
	shares := d.devices.Shares()
	for {
		var a jdc.Actions
		var tip time.Time
		select {
		case <-ctx.Done():
			return nil
		case err := <-srvErr:
			if err != nil {
				return fmt.Errorf("jdc: device server: %w", err)
			}
			return nil
		case e := <-d.events:
			a = e.fn(time.Now())
			tip = e.tip
		case s := <-shares:
			a = d.core.DeviceShare(time.Now(), jdc.Share{
				WorkID: s.WorkID, ChannelID: s.ChannelID, UserIdentity: s.UserIdentity,
				Extranonce: s.Extranonce, Version: s.Version, NTime: s.NTime, Nonce: s.Nonce,
				Hash: s.Hash, Block: s.Block,
			})
		case now := <-tick.C:
			a = d.core.Tick(now)
		case <-status.C:
			d.logStatus()
			continue
		}
		d.execute(ctx, a)
		if !tip.IsZero() {
			d.m.tipLatency.Observe(time.Since(tip).Seconds())
		}
	}
}

// execute carries out the core's actions in the documented order.
func (d *Daemon) execute(ctx context.Context, a jdc.Actions) {
	defer d.updateStatus(len(a.Blocks))
	if a.Empty() {
		return
	}
	for i := range a.Blocks {
		d.block(ctx, &a.Blocks[i])
	}
	for _, op := range a.Devices {
		switch {
		case op.Work != nil:
			w := op.Work
			d.devices.SetWork(devices.Work{ID: w.ID, Future: w.Future, Version: w.Version,
				CoinbasePrefix: w.CoinbasePrefix, CoinbaseSuffix: w.CoinbaseSuffix,
				ExtranonceSpace: w.ExtranonceSpace, MerklePath: w.MerklePath})
		case op.PrevHash != nil:
			p := op.PrevHash
			d.devices.SetPrevHash(devices.PrevHash{WorkID: p.WorkID, PrevHash: p.PrevHash, MinNTime: p.MinNTime, NBits: p.NBits})
		case op.Target != nil:
			d.devices.SetUpstreamTarget(*op.Target)
		}
	}
	for _, s := range a.Pool {
		d.sendPool(s.Pair, s.Msg)
	}
	for _, r := range a.Tokens {
		d.token(ctx, r)
	}
	for _, r := range a.Declares {
		d.declare(ctx, r)
	}
	for _, id := range a.TxData {
		d.txData(ctx, id)
	}
	for _, r := range a.Resets {
		d.reset(r)
	}
	if a.Constraints != nil {
		c := *a.Constraints
		d.stMu.Lock()
		d.constraints = c
		d.stMu.Unlock()
		if tp := d.currentTP(); tp != nil {
			if err := tp.SetConstraints(c.Size, c.SigOps); err != nil {
				d.log.Warn("cannot update CoinbaseOutputConstraints", "error", err)
			}
		}
	}
	for _, s := range a.Switches {
		d.m.switches.WithLabelValues(jdc.SourceName(s.From), jdc.SourceName(s.To), reasonLabel(s.Reason)).Inc()
	}
	for _, s := range a.Shares {
		d.m.shares.WithLabelValues(jdc.SourceName(s.Source), s.Outcome, s.Reason).Add(float64(s.Count))
	}
	corelog.Write(d.log, a.Logs)
}

// updateStatus refreshes the snapshot and the state gauges: the core's
// states change on events that need no action too (a custom job accepted).
func (d *Daemon) updateStatus(blocks int) {
	st := d.core.States()
	d.m.setStates(st, d.core.Active(), len(d.pairs))
	d.stMu.Lock()
	d.status.Active = d.core.Active()
	d.status.States = st
	d.status.Blocks += blocks
	d.stMu.Unlock()
}

// logStatus writes one line an operator can follow: what the devices mine
// for, each pair's state, the devices.
func (d *Daemon) logStatus() {
	kv := []any{"active", jdc.SourceName(d.core.Active()), "tp_connected", d.currentTP() != nil}
	for i, st := range d.core.States() {
		v := st.State
		if st.Reason != "" && (st.State == "failed" || st.State == "probing") {
			v += " (" + st.Reason + ")"
		}
		kv = append(kv, "pair-"+strconv.Itoa(i), v)
	}
	ds := d.devices.Stats()
	kv = append(kv, "devices", ds.Connections, "channels", ds.Channels, "hashrate", ds.HashRate, "blocks", d.Status().Blocks)
	d.log.Info("status", kv...)
}

// reasonLabel keeps the metric label set small: the reason up to its colon
// (the error code or detail after it goes to the log).
func reasonLabel(r string) string {
	for i := 0; i < len(r); i++ {
		if r[i] == ':' {
			return r[:i]
		}
	}
	return r
}

// ------------------------------------------------------------------ tp

func (d *Daemon) currentTP() *tpclient.Client {
	d.tpMu.Lock()
	defer d.tpMu.Unlock()
	return d.tp
}

func (d *Daemon) tpLoop(ctx context.Context) {
	log := d.log.Named("tp").With("addr", d.cfg.TPAddr)
	first := true
	d.redial(ctx, log, "tp", func() (func() string, error) {
		d.stMu.Lock()
		c := d.constraints
		d.stMu.Unlock()
		cl, err := tpclient.Dial(ctx, tpclient.Config{
			Addr: d.cfg.TPAddr, AuthorityPubKey: d.cfg.TPAuthorityKey, Plaintext: d.cfg.TPPlaintext,
			MaxAdditionalSize: c.Size, MaxAdditionalSigops: c.SigOps, Timeout: d.cfg.Timeout,
			Logger: log, UserAgent: "sv2kit-jdc",
		})
		if err != nil {
			return nil, err
		}
		return func() string {
			log.Info("connected to tp")
			d.tpMu.Lock()
			d.tp = cl
			d.tpMu.Unlock()
			d.setTP(true)
			stop := context.AfterFunc(ctx, func() { _ = cl.Close() })
			if !first {
				d.post(ctx, event{fn: d.core.TemplateProviderReset})
			}
			first = false
			for m := range cl.Events() {
				switch m := m.(type) {
				case *messages.NewTemplate:
					kind := "current"
					if m.FutureTemplate {
						kind = "future"
					}
					d.m.templates.WithLabelValues(kind).Inc()
					d.post(ctx, event{fn: func(now time.Time) jdc.Actions { return d.core.NewTemplate(now, m) }})
				case *messages.SetNewPrevHash:
					d.m.tipChanges.Inc()
					d.post(ctx, event{tip: time.Now(), fn: func(now time.Time) jdc.Actions { return d.core.SetNewPrevHash(now, m) }})
				}
			}
			stop()
			d.tpMu.Lock()
			d.tp = nil
			d.tpMu.Unlock()
			d.setTP(false)
			_ = cl.Close()
			return endReason(cl.Err())
		}, nil
	})
}

// redial keeps one upstream connection up until ctx ends: connect, serve
// the session until it ends (serve returns why), wait with backoff (reset
// after a connection that lasted stableConn), again.
func (d *Daemon) redial(ctx context.Context, log hclog.Logger, what string, connect func() (serve func() string, err error)) {
	b := node.Backoff{Initial: d.cfg.ReconnectMin, Max: d.cfg.ReconnectMax}
	var rl repeatLimiter
	for ctx.Err() == nil {
		serve, err := connect()
		if err != nil {
			wait := b.Next()
			if n, warn := rl.note(time.Now(), err.Error()); warn {
				log.Warn("cannot connect to "+what+"; retrying", "error", err, "in", wait, "failures", n)
			} else {
				log.Debug("cannot connect to "+what+"; retrying", "error", err, "in", wait, "failures", n)
			}
			if !sleep(ctx, wait) {
				return
			}
			continue
		}
		rl = repeatLimiter{}
		up := time.Now()
		reason := serve()
		if ctx.Err() != nil {
			return
		}
		if time.Since(up) > stableConn {
			b.Reset()
		}
		wait := b.Next()
		log.Warn(what+" connection ended; reconnecting", "reason", reason, "in", wait)
		if !sleep(ctx, wait) {
			return
		}
	}
}

// repeatWarnEvery is how often the same connection failure is warned about
// again while it lasts (as tp does for node errors): a peer down for an
// hour would otherwise be one warning per reconnect attempt.
const repeatWarnEvery = 5 * time.Minute

var digits = regexp.MustCompile(`[0-9]+`)

// repeatLimiter decides which of a run of connection failures is a warning:
// the first, a different error, and the same one again every
// repeatWarnEvery. The others are logged at debug.
type repeatLimiter struct {
	last     string
	warnedAt time.Time
	n        int // failures in a row
}

func (r *repeatLimiter) note(now time.Time, msg string) (failures int, warn bool) {
	r.n++
	// Ports and byte counts change between attempts ("read tcp
	// 127.0.0.1:53066->…"): the same failure all the same.
	msg = digits.ReplaceAllString(msg, "#")
	if msg != r.last || now.Sub(r.warnedAt) >= repeatWarnEvery {
		r.last, r.warnedAt = msg, now
		return r.n, true
	}
	return r.n, false
}

func endReason(err error) string {
	if err != nil {
		return err.Error()
	}
	return "closed"
}

func (d *Daemon) setTP(up bool) {
	v := 0.0
	if up {
		v = 1
	}
	d.m.tpConnected.Set(v)
	d.stMu.Lock()
	d.status.TPConnected = up
	d.stMu.Unlock()
}

func (d *Daemon) txData(ctx context.Context, id uint64) {
	// The core asks again (and gives up at the declaration deadline) after a
	// failure it is told of.
	failed := func(err error) {
		d.m.txData.WithLabelValues("error").Inc()
		d.post(ctx, event{fn: func(now time.Time) jdc.Actions { return d.core.TxDataFailed(now, id, err) }})
	}
	tp := d.currentTP()
	if tp == nil {
		// Not from the loop itself: post waits when the queue is full.
		d.goRun(func() { failed(errors.New("tp not connected")) })
		return
	}
	d.goRun(func() {
		select {
		case d.txSem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-d.txSem }()
		// A few tries: full-template declarations wait for this data.
		var (
			r   *messages.RequestTransactionDataSuccess
			err error
		)
		for try := 0; try < 3; try++ {
			rctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
			r, err = tp.RequestTransactionData(rctx, id)
			cancel()
			var te *tpclient.TxDataError
			if err == nil || errors.As(err, &te) || ctx.Err() != nil {
				break // answered (a refusal will not change)
			}
			if !sleep(ctx, 100*time.Millisecond) {
				return
			}
		}
		if err != nil {
			d.log.Warn("RequestTransactionData failed", "template", id, "error", err)
			failed(err)
			return
		}
		txids, err := declarer.TxIDs(r.TransactionList)
		if err != nil {
			d.log.Error("tp sent transactions that do not parse", "template", id, "error", err)
			failed(err)
			return
		}
		d.m.txData.WithLabelValues("ok").Inc()
		data := &jdc.TxData{Txs: r.TransactionList, TxIDs: txids, WTxIDs: declarer.WTxIDs(r.TransactionList), Excess: r.ExcessData}
		d.post(ctx, event{fn: func(now time.Time) jdc.Actions { return d.core.TxData(now, id, data) }})
	})
}

// ------------------------------------------------------------------ pairs

func (d *Daemon) poolLoop(ctx context.Context, i int) {
	u := d.cfg.Upstreams[i]
	pc := d.pairs[i]
	log := d.log.Named("pool").With("pair", i, "addr", u.PoolAddr)
	d.redial(ctx, log, "the pool", func() (func() string, error) {
		hr := d.cfg.NominalHashRate
		if st := d.devices.Stats(); st.HashRate > 0 {
			hr = float32(st.HashRate)
		}
		cl, err := poolclient.Dial(ctx, poolclient.Config{
			Addr: u.PoolAddr, AuthorityPubKey: u.PoolAuthorityKey, Plaintext: u.PoolPlaintext,
			UserIdentity: u.UserIdentity, NominalHashRate: hr,
			MinExtranonceSize: uint16(devices.MinExtranonceSpace(d.cfg.Devices)),
			Timeout:           d.cfg.Timeout, Logger: log,
		})
		if err != nil {
			return nil, err
		}
		return func() string {
			ch := cl.Channel()
			log.Info("pool channel open", "channel", ch.ID, "extranonce_prefix", hex.EncodeToString(ch.ExtranoncePrefix), "extranonce_size", ch.ExtranonceSize)
			pc.mu.Lock()
			pc.pool = cl
			pc.mu.Unlock()
			stop := context.AfterFunc(ctx, func() { _ = cl.Close() })
			d.post(ctx, event{fn: func(now time.Time) jdc.Actions {
				return d.core.PoolUp(now, i, jdc.Channel{ID: ch.ID, Target: ch.Target, ExtranoncePrefix: ch.ExtranoncePrefix, ExtranonceSize: ch.ExtranonceSize})
			}})
			for m := range cl.Events() {
				switch m := m.(type) {
				case *messages.SetCustomMiningJobSuccess:
					d.m.customJobs.WithLabelValues(strconv.Itoa(i), "accepted").Inc()
				case *messages.SetCustomMiningJobError:
					d.m.customJobs.WithLabelValues(strconv.Itoa(i), "rejected").Inc()
					log.Warn("pool rejected a custom job", "code", m.ErrorCode)
				case *messages.SubmitSharesError:
					log.Debug("pool rejected a share", "code", m.ErrorCode, "seq", m.SequenceNumber)
				case *messages.Reconnect:
					// Not followed: a redirect would leave the pinned pool.
					log.Warn("pool asked to reconnect elsewhere; staying (the connection is kept until the pool closes it)",
						"host", m.NewHost, "port", m.NewPort)
				}
				d.post(ctx, event{fn: func(now time.Time) jdc.Actions { return d.core.PoolMessage(now, i, m) }})
			}
			stop()
			pc.mu.Lock()
			if pc.pool == cl {
				pc.pool = nil
			}
			pc.mu.Unlock()
			_ = cl.Close()
			reason := endReason(cl.Err())
			d.post(ctx, event{fn: func(now time.Time) jdc.Actions { return d.core.PoolDown(now, i, reason) }})
			return reason
		}, nil
	})
}

func (d *Daemon) jdsLoop(ctx context.Context, i int) {
	u := d.cfg.Upstreams[i]
	pc := d.pairs[i]
	log := d.log.Named("jds").With("pair", i, "addr", u.JDSAddr)
	d.redial(ctx, log, "the JDS", func() (func() string, error) {
		dc, err := declarer.Dial(ctx, declarer.Config{
			Addr: u.JDSAddr, AuthorityPubKey: u.JDSAuthorityKey, UserIdentifier: u.UserIdentity,
			FullTemplate: d.cfg.Core.Mode == jdc.FullTemplate, Timeout: d.cfg.Timeout, Logger: log,
			PushSolution2025: u.PushSolution2025,
		})
		if err != nil {
			return nil, err
		}
		return func() string {
			log.Debug("connected to the JDS") // the declarer logs it (Info) with mode and authentication
			pc.mu.Lock()
			pc.decl = dc
			pc.mu.Unlock()
			d.post(ctx, event{fn: func(now time.Time) jdc.Actions { return d.core.JDSUp(now, i) }})
			select {
			case <-dc.Done():
			case <-ctx.Done():
			}
			pc.mu.Lock()
			if pc.decl == dc {
				pc.decl = nil
			}
			pc.mu.Unlock()
			_ = dc.Close()
			reason := endReason(dc.Err())
			d.post(ctx, event{fn: func(now time.Time) jdc.Actions { return d.core.JDSDown(now, i, reason) }})
			return reason
		}, nil
	})
}

// reportHashRate tells every connected pool the devices' hash rate
// (UpdateChannel), so its vardiff starts near the right target; 0 when no
// device is connected, as the spec asks of proxies.
func (d *Daemon) reportHashRate(ctx context.Context) {
	t := time.NewTicker(hashRateReport)
	defer t.Stop()
	max := [32]byte{}
	for i := range max {
		max[i] = 0xff
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hr := float32(d.devices.Stats().HashRate)
		for i := range d.pairs {
			if pool, _ := d.conns(i); pool != nil {
				_ = pool.Send(&messages.UpdateChannel{ChannelID: pool.Channel().ID, NominalHashRate: hr, MaximumTarget: max})
			}
		}
	}
}

func (d *Daemon) conns(i int) (*poolclient.Client, *declarer.Declarer) {
	if i < 0 || i >= len(d.pairs) {
		return nil, nil
	}
	pc := d.pairs[i]
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.pool, pc.decl
}

func (d *Daemon) sendPool(i int, m codec.Message) {
	pool, _ := d.conns(i)
	if pool == nil {
		return
	}
	if _, ok := m.(*messages.SetCustomMiningJob); ok {
		d.m.customJobs.WithLabelValues(strconv.Itoa(i), "sent").Inc()
	}
	if err := pool.Send(m); err != nil {
		d.log.Warn("cannot send to the pool", "pair", i, "msg", m.MessageName(), "error", err)
	}
}

func (d *Daemon) token(ctx context.Context, r jdc.TokenRequest) {
	_, dc := d.conns(r.Pair)
	d.goRun(func() {
		var (
			tok *messages.AllocateMiningJobTokenSuccess
			err error
		)
		if dc == nil {
			err = errors.New("JDS not connected")
		} else {
			tctx, cancel := context.WithTimeout(ctx, d.cfg.Core.TokenTimeout+time.Second)
			tok, err = dc.Token(tctx)
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		d.post(ctx, event{fn: func(now time.Time) jdc.Actions { return d.core.Token(now, r.Pair, r.Req, tok, err) }})
	})
}

func (d *Daemon) declare(ctx context.Context, r jdc.DeclareRequest) {
	_, dc := d.conns(r.Pair)
	u := d.cfg.Upstreams[r.Pair]
	d.m.declarations.WithLabelValues(strconv.Itoa(r.Pair), "sent").Inc()
	d.goRun(func() {
		var (
			ok  *messages.DeclareMiningJobSuccess
			err error
		)
		if dc == nil {
			err = errors.New("JDS not connected")
		} else {
			ids := r.WTxIDs
			if u.DeclareTxIDs {
				ids, err = declarer.TxIDs(r.Txs)
			}
			if err == nil {
				dctx, cancel := context.WithTimeout(ctx, d.cfg.Core.DeclareTimeout+time.Second)
				ok, err = dc.Declare(dctx, declarer.Job{
					Token: r.Token, Version: r.Version, CoinbasePrefix: r.CoinbasePrefix, CoinbaseSuffix: r.CoinbaseSuffix,
					WTxIDs: ids, Txs: r.Txs, ExcessData: r.ExcessData,
				})
				cancel()
			}
		}
		if ctx.Err() != nil {
			return
		}
		var newToken []byte
		var de *declarer.DeclareError
		switch {
		case err == nil:
			newToken = ok.NewMiningJobToken
			d.m.declarations.WithLabelValues(strconv.Itoa(r.Pair), "ok").Inc()
		case errors.As(err, &de):
			err = &jdc.DeclareError{Code: de.Code, Details: de.Details}
			d.m.declarations.WithLabelValues(strconv.Itoa(r.Pair), "rejected").Inc()
		default:
			d.m.declarations.WithLabelValues(strconv.Itoa(r.Pair), "failed").Inc()
		}
		d.post(ctx, event{fn: func(now time.Time) jdc.Actions { return d.core.Declared(now, r.Pair, r.Req, newToken, err) }})
	})
}

// reset drops a pair's connections; its loops reconnect with backoff.
func (d *Daemon) reset(r jdc.PairReset) {
	pool, dc := d.conns(r.Pair)
	d.log.Warn("resetting pair connections", "pair", r.Pair, "reason", r.Reason)
	d.goRun(func() {
		if pool != nil {
			_ = pool.Close()
		}
		if dc != nil {
			_ = dc.Close()
		}
	})
}

// ------------------------------------------------------------------ blocks

type blockRecord struct {
	Hash       string `json:"hash"`
	Source     string `json:"source"`
	TemplateID uint64 `json:"template_id"`
	Version    uint32 `json:"version"`
	NTime      uint32 `json:"ntime"`
	Nonce      uint32 `json:"nonce"`
	Coinbase   string `json:"coinbase"`
	Block      string `json:"block,omitempty"`
	FoundAt    string `json:"found_at"`
}

// nodeSubmitTimeout bounds the retries of submitblock to the miner's own node.
const nodeSubmitTimeout = 2 * time.Minute

// block writes the block to disk (fsync) and only then submits it on every
// path jdc has: tp (SubmitSolution), the pair's JDS (PushSolution) and the
// node (submitblock).
func (d *Daemon) block(ctx context.Context, b *jdc.FoundBlock) {
	d.m.blocks.WithLabelValues(jdc.SourceName(b.Source)).Inc()
	rec := blockRecord{
		Hash: b.HashString(), Source: jdc.SourceName(b.Source), TemplateID: b.TemplateID,
		Version: b.Solution.Version, NTime: b.Solution.HeaderTimestamp, Nonce: b.Solution.HeaderNonce,
		Coinbase: hex.EncodeToString(b.Solution.CoinbaseTx), FoundAt: time.Now().UTC().Format(time.RFC3339Nano),
	}
	if b.Raw != nil {
		rec.Block = hex.EncodeToString(b.Raw)
	}
	file := filepath.Join(d.cfg.BlocksDir, rec.Hash+".json")
	data, err := json.MarshalIndent(rec, "", "  ")
	if err == nil {
		err = blockfile.Write(file, append(data, '\n'), 0o600)
	}
	if err != nil {
		// Still submit: losing the block is worse than a missing file.
		d.m.submissions.WithLabelValues("disk", "error").Inc()
		d.log.Error("cannot write the found block to disk; submitting anyway", "hash", rec.Hash, "error", err)
	} else {
		d.m.submissions.WithLabelValues("disk", "ok").Inc()
	}
	// The one log line per block (the core leaves it to the shell).
	d.log.Info("block found", "hash", rec.Hash, "source", rec.Source, "template", b.TemplateID, "file", file)
	tp := d.currentTP()
	_, dc := d.conns(b.Source)
	sol, push, raw := b.Solution, b.Push, b.Raw
	d.goRun(func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.Timeout)
		defer cancel()
		if tp != nil {
			if err := tp.SubmitSolution(sctx, sol); err != nil {
				d.m.submissions.WithLabelValues("tp", "error").Inc()
				d.log.Error("SubmitSolution to tp failed", "hash", rec.Hash, "error", err)
			} else {
				d.m.submissions.WithLabelValues("tp", "ok").Inc()
			}
		} else {
			d.m.submissions.WithLabelValues("tp", "error").Inc()
			d.log.Error("tp not connected: block not sent to tp", "hash", rec.Hash)
		}
		if push != nil && dc != nil {
			if err := dc.PushSolution(sctx, push); err != nil {
				d.m.submissions.WithLabelValues("jds", "error").Inc()
				d.log.Error("PushSolution to the JDS failed", "hash", rec.Hash, "error", err)
			} else {
				d.m.submissions.WithLabelValues("jds", "ok").Inc()
			}
		}
		if d.cfg.Node != nil && raw == nil {
			// Found before tp's transaction data arrived: tp (which has them)
			// and the JDS still get it.
			d.m.submissions.WithLabelValues("node", "error").Inc()
			d.log.Warn("block not sent to the node: its transactions were not known yet", "hash", rec.Hash)
		}
		if d.cfg.Node != nil && raw != nil {
			// The node may be restarting: retry until it answers, for longer
			// than the peers' timeout (the block is on disk meanwhile).
			nctx, ncancel := context.WithTimeout(context.WithoutCancel(ctx), nodeSubmitTimeout)
			res, err := node.SubmitBlockRetrying(nctx, d.cfg.Node, raw, func(err error, attempt int, wait time.Duration) {
				d.log.Warn("submitblock did not reach the node; retrying", "hash", rec.Hash, "attempt", attempt, "retry_in", wait, "error", err)
			})
			ncancel()
			switch {
			case err != nil:
				d.m.submissions.WithLabelValues("node", "error").Inc()
				d.log.Error("submitblock failed", "hash", rec.Hash, "error", err)
			case res != "" && !node.IsDuplicateBlock(res):
				// (btcd answers "rejected: already have block" for a block
				// tp or the JDS submitted first.)
				d.m.submissions.WithLabelValues("node", "rejected").Inc()
				d.log.Error("node rejected the block", "hash", rec.Hash, "result", res)
			default:
				d.m.submissions.WithLabelValues("node", "ok").Inc()
				d.log.Info("node accepted the block", "hash", rec.Hash, "result", res)
			}
		}
	})
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
