package devices

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/mining"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/templates"
)

// testDevice is a Mining Protocol client for the tests: it speaks to the
// server over a real TCP connection (Noise or plaintext), keeps the state a
// device keeps (channels, groups, jobs, the tip) and grinds shares.
type testDevice struct {
	t    testing.TB
	c    *noise.Conn
	bc   *batchConn // with devOpts.batch
	msgs chan codec.Message
	done chan struct{}
	err  error // why the reader stopped; read after done

	mu       sync.Mutex
	channels map[uint32]*devChannel
	groups   map[uint32][]uint32
	seq      uint32
	reqID    uint32
}

type devChannel struct {
	id        uint32
	group     uint32
	extended  bool
	prefix    []byte
	size      int
	target    [32]byte
	jobs      map[uint32]*devJob
	active    *devJob
	prevHash  [32]byte
	minNTime  uint32
	nbits     uint32
	haveTip   bool
	nextNonce uint32
}

type devJob struct {
	id       uint32
	version  uint32
	merkle   [32]byte // standard
	path     [][32]byte
	cbPrefix []byte
	cbSuffix []byte
	extended bool
	future   bool
}

type devOpts struct {
	// batch wraps the TCP connection so writes can be collected and sent
	// with one system call (d.bc.hold / flush).
	batch     bool
	plaintext bool
	authority *[32]byte
	flags     uint32
	noSetup   bool
}

func dialDevice(t testing.TB, addr string, o devOpts) *testDevice {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := &noise.Config{Plaintext: o.plaintext, AuthorityPubKey: o.authority, InsecureSkipVerify: o.authority == nil}
	var c *noise.Conn
	var bc *batchConn
	if o.batch {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		bc = newBatchConn(nc)
		c = noise.Client(bc, cfg)
		if err := c.Handshake(ctx); err != nil {
			t.Fatalf("handshake: %v", err)
		}
	} else {
		var err error
		if c, err = noise.Dial(ctx, "tcp", addr, cfg); err != nil {
			t.Fatalf("dial: %v", err)
		}
	}
	d := &testDevice{bc: bc, t: t, c: c, msgs: make(chan codec.Message, 4096), done: make(chan struct{}),
		channels: map[uint32]*devChannel{}, groups: map[uint32][]uint32{}}
	t.Cleanup(func() { c.Close() })
	go d.readLoop()
	if !o.noSetup {
		d.send(&messages.SetupConnection{Protocol: messages.ProtocolMining, MinVersion: 2, MaxVersion: 2,
			Flags: o.flags, EndpointHost: "127.0.0.1", EndpointPort: 1, Vendor: "sv2kit-test"})
		if _, ok := d.next(t).(*messages.SetupConnectionSuccess); !ok {
			t.Fatalf("setup not accepted")
		}
	}
	return d
}

func (d *testDevice) readLoop() {
	defer close(d.done)
	defer close(d.msgs)
	for {
		m, _, err := messages.Read(d.c, codec.Options{})
		if err != nil {
			d.err = err
			return
		}
		d.apply(m)
		select {
		case d.msgs <- m:
		default:
			d.err = errors.New("test device: message buffer full")
			return
		}
	}
}

func (d *testDevice) send(m codec.Message) {
	d.t.Helper()
	if err := d.c.WriteMessage(m, codec.Options{}); err != nil {
		d.t.Fatalf("send %s: %v", m.MessageName(), err)
	}
}

// next returns the next message (fails the test after a timeout or EOF).
func (d *testDevice) next(t testing.TB) codec.Message {
	t.Helper()
	select {
	case m, ok := <-d.msgs:
		if !ok {
			t.Fatalf("connection ended: %v", d.err)
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("no message within 10s")
	}
	return nil
}

// waitFor skips messages until one satisfies f.
func waitFor[T codec.Message](t testing.TB, d *testDevice, f func(T) bool) T {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-d.msgs:
			if !ok {
				t.Fatalf("connection ended while waiting for %T: %v", *new(T), d.err)
			}
			if v, ok := m.(T); ok && (f == nil || f(v)) {
				return v
			}
		case <-deadline:
			var zero T
			t.Fatalf("no %T within 10s", zero)
		}
	}
}

// closed waits for the server to close the connection.
func (d *testDevice) closed(t testing.TB) error {
	t.Helper()
	for {
		select {
		case _, ok := <-d.msgs:
			if !ok {
				return d.err
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("connection still open after 10s")
		}
	}
}

// apply keeps the device state as a device would.
func (d *testDevice) apply(m codec.Message) {
	d.mu.Lock()
	defer d.mu.Unlock()
	members := func(id uint32) []*devChannel {
		if ch, ok := d.channels[id]; ok {
			return []*devChannel{ch}
		}
		var out []*devChannel
		for _, cid := range d.groups[id] {
			if ch, ok := d.channels[cid]; ok {
				out = append(out, ch)
			}
		}
		return out
	}
	switch m := m.(type) {
	case *messages.OpenStandardMiningChannelSuccess:
		ch := &devChannel{id: m.ChannelID, group: m.GroupChannelID, prefix: m.ExtranoncePrefix, target: m.Target, jobs: map[uint32]*devJob{}}
		d.channels[m.ChannelID] = ch
		d.groups[m.GroupChannelID] = append(d.groups[m.GroupChannelID], m.ChannelID)
	case *messages.OpenExtendedMiningChannelSuccess:
		ch := &devChannel{id: m.ChannelID, group: m.GroupChannelID, extended: true, prefix: m.ExtranoncePrefix,
			size: int(m.ExtranonceSize), target: m.Target, jobs: map[uint32]*devJob{}}
		d.channels[m.ChannelID] = ch
		d.groups[m.GroupChannelID] = append(d.groups[m.GroupChannelID], m.ChannelID)
	case *messages.NewMiningJob:
		for _, ch := range members(m.ChannelID) {
			j := &devJob{id: m.JobID, version: m.Version, merkle: m.MerkleRoot, future: m.MinNTime == nil}
			ch.addJob(j, m.MinNTime)
		}
	case *messages.NewExtendedMiningJob:
		for _, ch := range members(m.ChannelID) {
			j := &devJob{id: m.JobID, version: m.Version, path: m.MerklePath, cbPrefix: m.CoinbaseTxPrefix,
				cbSuffix: m.CoinbaseTxSuffix, extended: true, future: m.MinNTime == nil}
			ch.addJob(j, m.MinNTime)
		}
	case *messages.MiningSetNewPrevHash:
		for _, ch := range members(m.ChannelID) {
			j := ch.jobs[m.JobID]
			ch.jobs = map[uint32]*devJob{}
			if j != nil {
				ch.jobs[j.id] = j
			}
			ch.active = j
			ch.prevHash, ch.minNTime, ch.nbits, ch.haveTip = m.PrevHash, m.MinNTime, m.NBits, true
		}
	case *messages.SetTarget:
		for _, ch := range members(m.ChannelID) {
			ch.target = m.MaximumTarget
		}
	case *messages.SetExtranoncePrefix:
		if ch, ok := d.channels[m.ChannelID]; ok {
			ch.prefix = m.ExtranoncePrefix
		}
	case *messages.CloseChannel:
		for _, ch := range members(m.ChannelID) {
			delete(d.channels, ch.id)
		}
	}
}

func (ch *devChannel) addJob(j *devJob, minNTime *uint32) {
	ch.jobs[j.id] = j
	if minNTime != nil {
		ch.active = j
		ch.minNTime = max(ch.minNTime, *minNTime)
	}
}

// header builds the 80-byte header of the channel's active job.
func (ch *devChannel) header(j *devJob, ext []byte, version, ntime, nonce uint32) [80]byte {
	var root [32]byte
	if j.extended {
		cb := append(append(append([]byte(nil), j.cbPrefix...), ch.prefix...), ext...)
		cb = append(cb, j.cbSuffix...)
		root = templates.MerkleRoot(templates.DoubleSHA256(cb), j.path)
	} else {
		root = j.merkle
	}
	var h [80]byte
	binary.LittleEndian.PutUint32(h[0:], version)
	copy(h[4:], ch.prevHash[:])
	copy(h[36:], root[:])
	binary.LittleEndian.PutUint32(h[68:], ntime)
	binary.LittleEndian.PutUint32(h[72:], ch.nbits)
	binary.LittleEndian.PutUint32(h[76:], nonce)
	return h
}

// share is a found (or deliberately bad) share.
type share struct {
	channel uint32
	job     uint32
	ext     []byte
	version uint32
	ntime   uint32
	nonce   uint32
	hash    [32]byte
}

// grind searches the channel's active job for a header meeting target
// (the channel target when zero) or, with below, one that does NOT meet it.
func (d *testDevice) grind(t testing.TB, channel uint32, target *[32]byte, below bool) share {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	ch := d.channels[channel]
	if ch == nil || ch.active == nil || !ch.haveTip {
		t.Fatalf("channel %d has no active job", channel)
	}
	tgt := ch.target
	if target != nil {
		tgt = *target
	}
	j := ch.active
	var ext []byte
	if j.extended && ch.extended {
		ext = make([]byte, ch.size)
		binary.BigEndian.PutUint32(ext[max(0, len(ext)-4):], 0x01020304)
	}
	for i := 0; i < 1<<24; i++ {
		nonce := ch.nextNonce
		ch.nextNonce++
		h := ch.header(j, ext, j.version, ch.minNTime, nonce)
		hash := templates.DoubleSHA256(h[:])
		if templates.MeetsTarget(&hash, &tgt) != below {
			return share{channel: channel, job: j.id, ext: ext, version: j.version, ntime: ch.minNTime, nonce: nonce, hash: hash}
		}
	}
	t.Fatalf("no share found in 2^24 hashes")
	return share{}
}

// submit sends a share and returns its sequence number.
func (d *testDevice) submit(s share, extended bool) uint32 {
	d.mu.Lock()
	d.seq++
	seq := d.seq
	d.mu.Unlock()
	if extended {
		d.send(&messages.SubmitSharesExtended{ChannelID: s.channel, SequenceNumber: seq, JobID: s.job, Nonce: s.nonce,
			NTime: s.ntime, Version: s.version, Extranonce: s.ext})
	} else {
		d.send(&messages.SubmitSharesStandard{ChannelID: s.channel, SequenceNumber: seq, JobID: s.job, Nonce: s.nonce,
			NTime: s.ntime, Version: s.version})
	}
	return seq
}

// result waits for the answer to sequence number seq: "" for success, the
// error code otherwise.
func (d *testDevice) result(t testing.TB, channel, seq uint32) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-d.msgs:
			if !ok {
				t.Fatalf("connection ended while waiting for share %d: %v", seq, d.err)
			}
			switch m := m.(type) {
			case *messages.SubmitSharesSuccess:
				if m.ChannelID == channel && m.LastSequenceNumber >= seq {
					return ""
				}
			case *messages.SubmitSharesError:
				if m.ChannelID == channel && m.SequenceNumber == seq {
					return m.ErrorCode
				}
			}
		case <-deadline:
			t.Fatalf("no answer to share %d within 10s", seq)
		}
	}
}

func (d *testDevice) openStandard(t testing.TB, user string, hashRate float32) *messages.OpenStandardMiningChannelSuccess {
	t.Helper()
	d.mu.Lock()
	d.reqID++
	req := d.reqID
	d.mu.Unlock()
	d.send(&messages.OpenStandardMiningChannel{RequestID: req, UserIdentity: user, NominalHashRate: hashRate, MaxTarget: mining.MaxTarget})
	return openAnswer[*messages.OpenStandardMiningChannelSuccess](t, d, req)
}

func (d *testDevice) openExtended(t testing.TB, user string, hashRate float32, minSize uint16) *messages.OpenExtendedMiningChannelSuccess {
	t.Helper()
	d.mu.Lock()
	d.reqID++
	req := d.reqID
	d.mu.Unlock()
	d.send(&messages.OpenExtendedMiningChannel{RequestID: req, UserIdentity: user, NominalHashRate: hashRate,
		MaxTarget: mining.MaxTarget, MinExtranonceSize: minSize})
	return openAnswer[*messages.OpenExtendedMiningChannelSuccess](t, d, req)
}

// openAnswer waits for the answer to open request req.
func openAnswer[T codec.Message](t testing.TB, d *testDevice, req uint32) T {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-d.msgs:
			if !ok {
				t.Fatalf("connection ended while opening a channel: %v", d.err)
			}
			switch m := m.(type) {
			case T:
				return m
			case *messages.OpenMiningChannelError:
				if m.RequestID == req {
					t.Fatalf("channel refused: %s", m.ErrorCode)
				}
			}
		case <-deadline:
			t.Fatalf("no answer to open request %d", req)
		}
	}
}

func (d *testDevice) String() string { return fmt.Sprintf("device(%s)", d.c.LocalAddr()) }
