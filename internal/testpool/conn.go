package testpool

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"time"

	"github.com/sv2kit/sv2kit/internal/blockfile"

	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/declare"
	"github.com/sv2kit/sv2kit/mining"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// maxTokens bounds the custom-job tokens remembered per connection (for
// block hand-over); jobs older than that are long stale.
const maxTokens = 256

// conn is one miner connection. Its serve goroutine owns the mining
// session; a reader and a writer goroutine move frames.
type conn struct {
	p      *Pool
	nc     *noise.Conn
	log    hclog.Logger
	out    chan codec.Message
	cancel context.CancelCauseFunc
	sess   *mining.Session
	tokens map[uint64][]byte
	order  []uint64
}

func newConn(p *Pool, nc *noise.Conn) *conn {
	return &conn{
		p: p, nc: nc, log: p.log.With("remote", nc.RemoteAddr().String()),
		out:    make(chan codec.Message, p.cfg.SendQueue),
		sess:   mining.NewSession(p.mcfg, p.alloc),
		tokens: map[uint64][]byte{},
	}
}

// readKnown reads the next message, skipping unknown extensions and types.
func readKnown(nc *noise.Conn) (codec.Message, error) {
	for {
		msg, _, err := messages.Read(nc, codec.Options{})
		if errors.Is(err, messages.ErrUnknownExtension) || errors.Is(err, messages.ErrUnknownMessage) {
			continue
		}
		return msg, err
	}
}

func (c *conn) serve(ctx context.Context) {
	defer c.nc.Close()
	if err := c.setup(); err != nil {
		c.log.Info("connection refused", "error", err)
		return
	}
	defer func() {
		n := len(c.sess.Channels())
		c.sess.CloseAll()
		c.p.channelsDelta(-n)
	}()

	sctx, cancel := context.WithCancelCause(ctx)
	c.cancel = cancel
	in := make(chan codec.Message, 64)
	done := make(chan struct{}, 2)
	defer func() {
		c.nc.Close()
		cancel(nil)
		<-done
		<-done
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		for {
			msg, err := readKnown(c.nc)
			if err != nil {
				cancel(fmt.Errorf("read: %w", err))
				return
			}
			select {
			case in <- msg:
			case <-sctx.Done():
				return
			}
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		for {
			select {
			case <-sctx.Done():
				return
			case msg := <-c.out:
				c.nc.SetWriteDeadline(time.Now().Add(c.p.cfg.WriteTimeout))
				if err := c.nc.WriteMessage(msg, codec.Options{}); err != nil {
					cancel(fmt.Errorf("write %s: %w", msg.MessageName(), err))
					return
				}
			}
		}
	}()

	tick := time.NewTicker(c.p.cfg.TickInterval)
	defer tick.Stop()
	for {
		select {
		case <-sctx.Done():
			if err := context.Cause(sctx); ctx.Err() == nil {
				c.log.Info("connection closed", "reason", err)
			}
			return
		case now := <-tick.C:
			c.send(c.sess.Tick(now)...)
		case msg := <-in:
			c.handle(sctx, msg)
		}
	}
}

// send queues messages for the writer; a peer that lets the queue fill is
// disconnected.
func (c *conn) send(msgs ...codec.Message) {
	for _, m := range msgs {
		select {
		case c.out <- m:
		default:
			c.cancel(errors.New("slow peer: send queue full"))
			return
		}
	}
}

// setup runs SetupConnection under SetupTimeout and writes the answer
// directly (the writer is not running yet).
func (c *conn) setup() error {
	c.nc.SetDeadline(time.Now().Add(c.p.cfg.SetupTimeout))
	defer c.nc.SetDeadline(time.Time{})
	msg, err := readKnown(c.nc)
	if err != nil {
		return fmt.Errorf("read SetupConnection: %w", err)
	}
	m, ok := msg.(*messages.SetupConnection)
	if !ok {
		return fmt.Errorf("first message is %s, not SetupConnection", msg.MessageName())
	}
	refuse := func(flags uint32, code string) error {
		c.nc.WriteMessage(&messages.SetupConnectionError{Flags: flags, ErrorCode: code}, codec.Options{})
		return fmt.Errorf("SetupConnection refused: %s (flags 0x%x, vendor %q)", code, flags, m.Vendor)
	}
	switch {
	case m.Protocol != messages.ProtocolMining:
		return refuse(0, CodeUnsupportedProtocol)
	case m.MinVersion > 2 || m.MaxVersion < 2:
		return refuse(0, CodeVersionMismatch)
	case m.Flags&messages.FlagRequiresStandardJobs != 0:
		// Only custom work is mined here: there are no standard jobs.
		return refuse(messages.FlagRequiresStandardJobs, CodeUnsupportedFlags)
	case m.Flags&messages.FlagRequiresWorkSelection == 0:
		return refuse(0, CodeWorkSelectionRequired)
	}
	if err := c.nc.WriteMessage(&messages.SetupConnectionSuccess{UsedVersion: 2,
		Flags: messages.FlagRequiresExtendedChannels}, codec.Options{}); err != nil {
		return fmt.Errorf("send SetupConnection.Success: %w", err)
	}
	c.log.Debug("connection set up", "vendor", m.Vendor, "flags", m.Flags)
	return nil
}

func (c *conn) handle(ctx context.Context, msg codec.Message) {
	now := time.Now()
	switch m := msg.(type) {
	case *messages.OpenExtendedMiningChannel:
		ch, out := c.sess.OpenExtended(m, now)
		if ch != nil {
			c.p.channelsDelta(1)
			c.log.Info("channel open", "channel", ch.ID(), "user", ch.UserIdentity(),
				"prefix", hex.EncodeToString(ch.ExtranoncePrefix()), "extranonce_size", ch.ExtranonceSize())
		}
		c.send(out...)
	case *messages.OpenStandardMiningChannel:
		c.send(&messages.OpenMiningChannelError{RequestID: m.RequestID, ErrorCode: CodeStandardNotSupported})
	case *messages.SetCustomMiningJob:
		c.customJob(ctx, m, now)
	case *messages.SubmitSharesExtended:
		c.share(ctx, m, now)
	case *messages.SubmitSharesStandard:
		c.p.countShare("", mining.CodeInvalidChannelID, 0, false)
		c.send(&messages.SubmitSharesError{ChannelID: m.ChannelID, SequenceNumber: m.SequenceNumber,
			ErrorCode: mining.CodeInvalidChannelID})
	case *messages.UpdateChannel:
		c.send(c.sess.UpdateChannel(m, now)...)
	case *messages.CloseChannel:
		closed := c.sess.Close(m.ChannelID)
		c.p.channelsDelta(-len(closed))
	default:
		c.log.Debug("ignored message", "message", msg.MessageName())
	}
}

func (c *conn) customJob(ctx context.Context, m *messages.SetCustomMiningJob, now time.Time) {
	user := ""
	reject := func(code, why string) {
		c.log.Info("custom job rejected", "channel", m.ChannelID, "request", m.RequestID, "user", user,
			"code", code, "why", why)
		c.p.countCustomJob(user, code)
		c.send(&messages.SetCustomMiningJobError{ChannelID: m.ChannelID, RequestID: m.RequestID, ErrorCode: code})
	}
	ch := c.sess.Channel(m.ChannelID)
	if ch == nil || ch.Kind() != mining.Extended {
		reject(mining.CodeInvalidChannelID, "no extended channel with that id")
		return
	}
	user = ch.UserIdentity()
	if c.p.rejectJobs.Load() {
		reject(CodeRejectedByPolicy, "the reject-custom-jobs knob is on")
		return
	}
	actx, cancel := context.WithTimeout(ctx, c.p.cfg.APITimeout)
	v, err := c.p.cfg.API.ValidateCustomJob(actx, user, m)
	cancel()
	if err != nil {
		reject(CodeJDSUnavailable, err.Error())
		return
	}
	if !v.OK {
		code := v.Code
		if code == "" {
			code = CodeInvalidCustomJob
		}
		reject(code, v.Details)
		return
	}
	id := c.p.jobSeq.Add(1)
	jt, err := mining.JobTemplateFromCustomJob(m, len(ch.ExtranoncePrefix())+ch.ExtranonceSize(), id)
	if err != nil {
		reject(CodeInvalidCustomJob, err.Error())
		return
	}
	tip := mining.ChainTip{PrevHash: m.PrevHash, MinNTime: m.MinNTime, NBits: m.NBits, Since: now}
	job, err := ch.AddCustomJob(jt, tip)
	if err != nil {
		reject(CodeInvalidCustomJob, err.Error())
		return
	}
	c.tokens[id] = append([]byte(nil), m.MiningJobToken...)
	c.order = append(c.order, id)
	if len(c.order) > maxTokens {
		delete(c.tokens, c.order[0])
		c.order = c.order[1:]
	}
	c.p.countCustomJob(user, "")
	c.log.Debug("custom job accepted", "channel", m.ChannelID, "request", m.RequestID, "job", job.ID, "user", user)
	c.send(&messages.SetCustomMiningJobSuccess{ChannelID: m.ChannelID, RequestID: m.RequestID, JobID: job.ID})
}

func (c *conn) share(ctx context.Context, m *messages.SubmitSharesExtended, now time.Time) {
	r := c.sess.SubmitExtended(m, now)
	user := ""
	if r.Channel != nil {
		user = r.Channel.UserIdentity()
	}
	code := r.Code
	if r.OK() && c.p.rejectShares.Load() {
		code = CodeRejectedByPolicy
	}
	if !r.OK() || code != "" {
		c.p.countShare(user, code, 0, false)
		c.log.Debug("share rejected", "channel", m.ChannelID, "seq", m.SequenceNumber, "job", m.JobID, "code", code)
		c.send(&messages.SubmitSharesError{ChannelID: m.ChannelID, SequenceNumber: m.SequenceNumber, ErrorCode: code})
		return
	}
	block := r.Status == mining.BlockFound
	c.p.countShare(user, "", r.Difficulty, block)
	c.send(&messages.SubmitSharesSuccess{ChannelID: m.ChannelID, LastSequenceNumber: m.SequenceNumber,
		NewSubmitsAcceptedCount: 1, NewSharesSum: uint64(math.Ceil(r.Difficulty))})
	if !block {
		return
	}
	b := blockShare{user: user, hash: displayHash(r.Hash), share: declare.BlockShare{
		MiningJobToken: c.tokens[r.Job.Template.ID],
		Version:        r.Header.Version, NTime: r.Header.Time, Nonce: r.Header.Nonce,
		Extranonce: r.Job.FullExtranonce(nil, m.Extranonce),
	}}
	c.log.Info("block found", "hash", b.hash, "user", user, "job", m.JobID)
	if b.share.MiningJobToken == nil {
		c.log.Error("block found on a job whose token is forgotten; cannot hand it over", "hash", b.hash)
		c.p.countBlock(BlockRecord{User: user, Hash: b.hash, Err: "token forgotten"})
		return
	}
	if err := c.p.persist(b); err != nil {
		c.log.Error("could not write the block share to disk; handing it over anyway", "hash", b.hash, "error", err)
	}
	select {
	case c.p.blocks <- b:
	case <-ctx.Done():
		c.p.countBlock(BlockRecord{User: user, Hash: b.hash, Err: "pool shut down before hand-over"})
	}
}

// blockShare is a block-solving share waiting for the JDS.
type blockShare struct {
	user  string
	hash  string
	share declare.BlockShare
}

// persist writes a block share to BlocksDir (fsync) before hand-over.
func (p *Pool) persist(b blockShare) error {
	if p.cfg.BlocksDir == "" {
		return nil
	}
	data, err := json.MarshalIndent(struct {
		User  string             `json:"user"`
		Hash  string             `json:"hash"`
		Share declare.BlockShare `json:"share"`
	}{b.user, b.hash, b.share}, "", "  ")
	if err != nil {
		return err
	}
	return blockfile.Write(filepath.Join(p.cfg.BlocksDir, b.hash+".json"), data, 0o600)
}

// submitBlocks hands block shares to the JDS one at a time, retrying a
// failed hand-over a few times. On shutdown it tries the queued ones once
// more within APITimeout.
func (p *Pool) submitBlocks() {
	submit := func(ctx context.Context, b blockShare, attempts int) {
		rec := BlockRecord{User: b.user, Hash: b.hash}
		for i := 0; i < attempts; i++ {
			actx, cancel := context.WithTimeout(ctx, p.cfg.APITimeout)
			res, err := p.cfg.API.SubmitBlockShare(actx, b.user, b.share)
			cancel()
			if err == nil {
				rec.Result, rec.Err = res, ""
				break
			}
			rec.Err = err.Error()
			var refused *declare.BlockError
			if errors.As(err, &refused) {
				// The JDS answered and cannot rebuild this block (e.g. a
				// coinbase-only job): asking again changes nothing. The
				// miner's jdc submits its blocks itself.
				rec.Refused = true
				break
			}
			if ctx.Err() != nil || i == attempts-1 {
				break
			}
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
		}
		p.countBlock(rec)
		switch {
		case rec.Refused:
			p.log.Warn("the JDS cannot rebuild this block (the miner's jdc submits it itself)", "hash", b.hash, "answer", rec.Err)
		case rec.Err != "":
			p.log.Error("block hand-over to the JDS failed", "hash", b.hash, "error", rec.Err)
		case rec.Result.Accepted:
			// "duplicate"/"already have": another path (jdc via tp) got it there first.
			p.log.Info("block handed to the JDS; the node has it", "hash", rec.Result.Hash, "node_answer", rec.Result.Result)
		default:
			p.log.Warn("block rejected by the node", "hash", rec.Result.Hash, "result", rec.Result.Result)
		}
	}
	for {
		select {
		case b := <-p.blocks:
			submit(p.ctx, b, 3)
		case <-p.ctx.Done():
			ctx, cancel := context.WithTimeout(context.Background(), p.cfg.APITimeout)
			defer cancel()
			for {
				select {
				case b := <-p.blocks:
					submit(ctx, b, 1)
				default:
					return
				}
			}
		}
	}
}

// displayHash is a hash in display (reversed) byte order.
func displayHash(h [32]byte) string {
	var r [32]byte
	for i := range h {
		r[i] = h[31-i]
	}
	return hex.EncodeToString(r[:])
}
