package devices

import (
	"context"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/mining"
	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/templates"
)

func TestSetupConnection(t *testing.T) {
	ts := startServer(t, Config{Plaintext: true, SetupTimeout: 300 * time.Millisecond})
	for _, tc := range []struct {
		name  string
		msg   codec.Message
		code  string
		flags uint32
	}{
		{"template distribution", &messages.SetupConnection{Protocol: messages.ProtocolTemplateDistribution, MinVersion: 2, MaxVersion: 2}, codeUnsupportedProtocol, 0},
		{"job declaration", &messages.SetupConnection{Protocol: messages.ProtocolJobDeclaration, MinVersion: 2, MaxVersion: 2}, codeUnsupportedProtocol, 0},
		{"version 3 only", &messages.SetupConnection{Protocol: messages.ProtocolMining, MinVersion: 3, MaxVersion: 3}, codeVersionMismatch, 0},
		{"version 1 only", &messages.SetupConnection{Protocol: messages.ProtocolMining, MinVersion: 1, MaxVersion: 1}, codeVersionMismatch, 0},
		{"work selection", &messages.SetupConnection{Protocol: messages.ProtocolMining, MinVersion: 2, MaxVersion: 2,
			Flags: messages.FlagRequiresWorkSelection | messages.FlagRequiresVersionRolling}, codeUnsupportedFlags, messages.FlagRequiresWorkSelection},
		{"unknown flag", &messages.SetupConnection{Protocol: messages.ProtocolMining, MinVersion: 2, MaxVersion: 2, Flags: 1 << 9}, codeUnsupportedFlags, 1 << 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := dialDevice(t, ts.addr, devOpts{plaintext: true, noSetup: true})
			d.send(tc.msg)
			e, ok := d.next(t).(*messages.SetupConnectionError)
			if !ok || e.ErrorCode != tc.code || e.Flags != tc.flags {
				t.Fatalf("got %+v, want error %q flags 0x%x", e, tc.code, tc.flags)
			}
			d.closed(t)
		})
	}
	t.Run("versions 1..5 and every flag we support", func(t *testing.T) {
		d := dialDevice(t, ts.addr, devOpts{plaintext: true, noSetup: true})
		d.send(&messages.SetupConnection{Protocol: messages.ProtocolMining, MinVersion: 1, MaxVersion: 5,
			Flags: messages.FlagRequiresStandardJobs | messages.FlagRequiresVersionRolling})
		ok, _ := d.next(t).(*messages.SetupConnectionSuccess)
		if ok == nil || ok.UsedVersion != 2 || ok.Flags&messages.FlagRequiresFixedVersion != 0 {
			t.Fatalf("got %+v", ok)
		}
	})
	t.Run("first message not SetupConnection", func(t *testing.T) {
		d := dialDevice(t, ts.addr, devOpts{plaintext: true, noSetup: true})
		d.send(&messages.OpenStandardMiningChannel{RequestID: 1, MaxTarget: mining.MaxTarget})
		d.closed(t)
	})
	t.Run("no SetupConnection within the timeout", func(t *testing.T) {
		d := dialDevice(t, ts.addr, devOpts{plaintext: true, noSetup: true})
		d.closed(t)
	})
	t.Run("no channel within OpenTimeout", func(t *testing.T) {
		ts := startServer(t, Config{Plaintext: true, OpenTimeout: 200 * time.Millisecond})
		d := ts.dial(t, 0)
		d.closed(t)
		if got := metricValue(t, ts.s.m.dropped.WithLabelValues("no_channel")); got != 1 {
			t.Fatalf("dropped{no_channel} = %v", got)
		}
	})
}

func TestNoiseHandshakeAndAuthority(t *testing.T) {
	ts := startServer(t, Config{SetupTimeout: 2 * time.Second})
	t.Run("pinned authority", func(t *testing.T) {
		d := ts.dial(t, 0)
		d.openStandard(t, "a", 1)
	})
	t.Run("wrong authority refused by the device", func(t *testing.T) {
		other := [32]byte{1}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := noise.Dial(ctx, "tcp", ts.addr, &noise.Config{AuthorityPubKey: &other}); err == nil {
			t.Fatal("handshake with a wrong pinned key succeeded")
		}
	})
	t.Run("plaintext client on a Noise server", func(t *testing.T) {
		d := dialDevice(t, ts.addr, devOpts{plaintext: true, noSetup: true})
		d.send(&messages.SetupConnection{Protocol: messages.ProtocolMining, MinVersion: 2, MaxVersion: 2})
		d.closed(t)
	})
}

func TestMaxConns(t *testing.T) {
	ts := startServer(t, Config{Plaintext: true, MaxConns: 2})
	a := ts.dial(t, 0)
	b := ts.dial(t, 0)
	_ = a
	_ = b
	c := dialDevice(t, ts.addr, devOpts{plaintext: true, noSetup: true})
	c.closed(t)
	if got := metricValue(t, ts.s.m.dropped.WithLabelValues("max_connections")); got != 1 {
		t.Fatalf("dropped{max_connections} = %v", got)
	}
}

func TestMaxConnsPerIP(t *testing.T) {
	ts := startServer(t, Config{Plaintext: true, MaxConnsPerIP: 1})
	a := ts.dial(t, 0)
	c := dialDevice(t, ts.addr, devOpts{plaintext: true, noSetup: true})
	c.closed(t)
	if got := metricValue(t, ts.s.m.dropped.WithLabelValues("max_connections_per_ip")); got != 1 {
		t.Fatalf("dropped{max_connections_per_ip} = %v", got)
	}
	// Once the first leaves, the address may connect again.
	a.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(ts.s.connections()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("first connection not removed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ts.dial(t, 0)
}

// TestMalformedFrameClosesOnlyThatConnection sends broken frames on one
// connection while another keeps mining.
func TestMalformedFrameClosesOnlyThatConnection(t *testing.T) {
	for _, tc := range []struct {
		name      string
		plaintext bool
		reason    string
		send      func(t *testing.T, d *testDevice)
	}{
		{"truncated SubmitSharesStandard", true, "malformed_frame", func(t *testing.T, d *testDevice) {
			if err := d.c.WriteFrame(codec.Header{ExtensionType: codec.ChannelBit, MsgType: messages.TypeSubmitSharesStandard}, []byte{1, 2, 3}); err != nil {
				t.Fatal(err)
			}
		}},
		{"server message from a device", true, "protocol_violation", func(t *testing.T, d *testDevice) {
			d.send(&messages.SetTarget{ChannelID: 1})
		}},
		{"oversized frame", true, "malformed_frame", func(t *testing.T, d *testDevice) {
			h := codec.Header{MsgType: messages.TypeOpenStandardMiningChannel, Length: 1 << 20}
			if _, err := d.c.NetConn().Write(h.Append(nil)); err != nil {
				t.Fatal(err)
			}
		}},
		{"corrupted Noise frame", false, "malformed_frame", func(t *testing.T, d *testDevice) {
			if _, err := d.c.NetConn().Write(make([]byte, 22+16)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, Config{Plaintext: tc.plaintext})
			ts.s.SetWork(testWork(1, true, 8))
			ts.s.SetPrevHash(prevHash(1, hardBits))
			good := ts.dial(t, messages.FlagRequiresStandardJobs)
			gch := good.openStandard(t, "good", 1)
			waitFor[*messages.MiningSetNewPrevHash](t, good, nil)
			bad := ts.dial(t, messages.FlagRequiresStandardJobs)
			bad.openStandard(t, "bad", 1)
			waitFor[*messages.MiningSetNewPrevHash](t, bad, nil)

			tc.send(t, bad)
			bad.closed(t)
			deadline := time.Now().Add(5 * time.Second)
			for metricValue(t, ts.s.m.dropped.WithLabelValues(tc.reason)) != 1 {
				if time.Now().After(deadline) {
					t.Fatalf("drop not counted as %s", tc.reason)
				}
				time.Sleep(5 * time.Millisecond)
			}

			// The other device is untouched: new work reaches it and its
			// shares are accepted.
			ts.s.SetWork(testWork(2, true, 8))
			ts.s.SetPrevHash(prevHash(2, hardBits))
			waitFor[*messages.MiningSetNewPrevHash](t, good, nil)
			sh := good.grind(t, gch.ChannelID, nil, false)
			if code := good.result(t, gch.ChannelID, good.submit(sh, false)); code != "" {
				t.Fatalf("share after the other connection broke: %q", code)
			}
		})
	}
}

// dialSlow connects a device whose socket buffers are tiny and that never
// reads after opening its channel.
func dialSlow(t *testing.T, ts *testServer) *noise.Conn {
	t.Helper()
	dialer := net.Dialer{Control: func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	nc, err := dialer.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := noise.Client(nc, &noise.Config{AuthorityPubKey: ts.pub})
	t.Cleanup(func() { c.Close() })
	if err := c.WriteMessage(&messages.SetupConnection{Protocol: messages.ProtocolMining, MinVersion: 2, MaxVersion: 2}, codec.Options{}); err != nil {
		t.Fatal(err)
	}
	if m, _, err := messages.Read(c, codec.Options{}); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(*messages.SetupConnectionSuccess); !ok {
		t.Fatalf("setup: %s", codec.String(m))
	}
	if err := c.WriteMessage(&messages.OpenExtendedMiningChannel{RequestID: 1, UserIdentity: "slow", MaxTarget: mining.MaxTarget, MinExtranonceSize: 1}, codec.Options{}); err != nil {
		t.Fatal(err)
	}
	return c
}

// bigWork is a work whose coinbase carries ~40 KB of outputs, so a few
// jobs fill any socket buffer.
func bigWork(id uint64) Work {
	w := testWork(id, true, 8)
	outs := []templates.TxOutput{{Value: 1, PkScript: make([]byte, 10_000)}, {Value: 1, PkScript: make([]byte, 10_000)},
		{Value: 1, PkScript: make([]byte, 10_000)}, {Value: 1, PkScript: make([]byte, 10_000)}}
	cb := templates.Coinbase{Version: 2, ScriptSigPrefix: append(templates.HeightScript(int64(id)), 8), ExtranonceSize: 8,
		Sequence: 0xffffffff, Outputs: templates.SerializeOutputs(outs), OutputCount: len(outs)}
	w.CoinbasePrefix, w.CoinbaseSuffix = cb.Parts(false)
	return w
}

func TestSlowDeviceDroppedWithoutDelayingOthers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		reason string
	}{
		{"send queue full", Config{SendQueue: 8, WriteTimeout: time.Minute}, "send_queue_full"},
		{"write timeout", Config{SendQueue: 10_000, WriteTimeout: 3 * time.Second}, "write_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, tc.cfg)
			ts.s.SetWork(bigWork(1))
			ts.s.SetPrevHash(prevHash(1, hardBits))
			fast := ts.dial(t, 0)
			fch := fast.openExtended(t, "fast", 1, 1)
			waitFor[*messages.MiningSetNewPrevHash](t, fast, nil)
			slow := dialSlow(t, ts)
			_ = slow

			// Paced so the fast device always keeps up: each work goes out
			// once it got the previous one. The slow device's buffers fill
			// (40 KB a job) and it is dropped; the fast one never waits.
			works := uint64(2)
			for ; works < 600; works++ {
				ts.s.SetWork(bigWork(works))
				waitFor[*messages.NewExtendedMiningJob](t, fast, func(m *messages.NewExtendedMiningJob) bool {
					return m.ChannelID == fch.ChannelID && len(m.CoinbaseTxSuffix) > 40_000 &&
						string(m.CoinbaseTxPrefix[len(m.CoinbaseTxPrefix)-3:]) == string(bigWork(works).CoinbasePrefix[len(bigWork(works).CoinbasePrefix)-3:])
				})
				if metricValue(t, ts.s.m.dropped.WithLabelValues(tc.reason)) == 1 {
					break
				}
				if tc.reason == "write_timeout" && works == 250 {
					break // 10 MB: more than any socket buffer holds
				}
			}
			deadline := time.Now().Add(20 * time.Second)
			for metricValue(t, ts.s.m.dropped.WithLabelValues(tc.reason)) != 1 {
				if time.Now().After(deadline) {
					t.Fatalf("slow device not dropped (%s)", tc.reason)
				}
				time.Sleep(20 * time.Millisecond)
			}
			for len(ts.s.connections()) != 1 {
				if time.Now().After(deadline) {
					t.Fatalf("%d connections left, want the fast one", len(ts.s.connections()))
				}
				time.Sleep(5 * time.Millisecond)
			}
			// The fast device still works.
			ts.s.SetPrevHash(prevHash(works, hardBits))
			waitFor[*messages.MiningSetNewPrevHash](t, fast, nil)
			sh := fast.grind(t, fch.ChannelID, nil, false)
			if code := fast.result(t, fch.ChannelID, fast.submit(sh, true)); code != "" {
				t.Fatalf("fast device share: %q", code)
			}
		})
	}
}

func TestExtendedChannelAndBlocks(t *testing.T) {
	ts := startServer(t, Config{ShareQueue: 1})
	ts.s.SetWork(testWork(7, true, 12))
	ts.s.SetPrevHash(prevHash(7, easyBits))
	d := ts.dial(t, messages.FlagRequiresVersionRolling)
	ch := d.openExtended(t, "ext", 1, 2)
	j := waitFor[*messages.NewExtendedMiningJob](t, d, nil)
	if j.MinNTime != nil || !j.VersionRollingAllowed {
		t.Fatalf("first job %+v: want a future job with version rolling", j)
	}
	w := testWork(7, true, 12)
	if string(j.CoinbaseTxPrefix) != string(w.CoinbasePrefix) || string(j.CoinbaseTxSuffix) != string(w.CoinbaseSuffix) {
		t.Fatal("extended job coinbase differs from the work's")
	}
	waitFor[*messages.MiningSetNewPrevHash](t, d, nil)

	// Two blocks with a queue of one: the second waits for jdc, it is not
	// dropped.
	net := templates.TargetFromBits(easyBits)
	b1 := d.grind(t, ch.ChannelID, &net, false)
	if code := d.result(t, ch.ChannelID, d.submit(b1, true)); code != "" {
		t.Fatalf("block share: %q", code)
	}
	b2 := d.grind(t, ch.ChannelID, &net, false)
	seq := d.submit(b2, true)
	time.Sleep(100 * time.Millisecond)
	got1 := waitShare(t, ts.s)
	if code := d.result(t, ch.ChannelID, seq); code != "" {
		t.Fatalf("second block share: %q", code)
	}
	got2 := waitShare(t, ts.s)
	if !got1.Block || !got2.Block || got1.Nonce != b1.nonce || got2.Nonce != b2.nonce {
		t.Fatalf("blocks %+v %+v", got1, got2)
	}
	if len(got1.Extranonce) != 12 || string(got1.Extranonce[:len(ch.ExtranoncePrefix)]) != string(ch.ExtranoncePrefix) ||
		string(got1.Extranonce[len(ch.ExtranoncePrefix):]) != string(b1.ext) {
		t.Fatalf("block extranonce %x: want prefix %x then %x", got1.Extranonce, ch.ExtranoncePrefix, b1.ext)
	}
	if metricValue(t, ts.s.m.upstreamLost) != 0 || metricValue(t, ts.s.m.blocks) != 2 {
		t.Fatal("a block was dropped or not counted")
	}
	// Without an upstream target, ordinary shares stay local.
	hard := templates.TargetFromBits(hardBits)
	_ = hard
	st := ts.s.Stats()
	if st.Channels != 1 || st.Blocks != 2 || st.SharesAccepted != 2 || !st.PerChannel[0].Extended {
		t.Fatalf("stats %+v", st)
	}
}

func TestGroupChannelJobs(t *testing.T) {
	ts := startServer(t, Config{})
	ts.s.SetWork(testWork(1, true, 8))
	ts.s.SetPrevHash(prevHash(1, hardBits))
	d := ts.dial(t, 0)
	a := d.openStandard(t, "a", 1)
	waitFor[*messages.MiningSetNewPrevHash](t, d, nil)
	b := d.openStandard(t, "b", 1)
	waitFor[*messages.MiningSetNewPrevHash](t, d, nil)
	if a.GroupChannelID == 0 || a.GroupChannelID != b.GroupChannelID || a.GroupChannelID == a.ChannelID || a.GroupChannelID == b.ChannelID {
		t.Fatalf("group ids %d %d (channels %d %d)", a.GroupChannelID, b.GroupChannelID, a.ChannelID, b.ChannelID)
	}
	ts.s.SetWork(testWork(2, true, 8))
	ts.s.SetPrevHash(prevHash(2, hardBits))
	// One job and one SetNewPrevHash for the whole group.
	j := waitFor[*messages.NewExtendedMiningJob](t, d, nil)
	p := waitFor[*messages.MiningSetNewPrevHash](t, d, nil)
	if j.ChannelID != a.GroupChannelID || p.ChannelID != a.GroupChannelID || p.JobID != j.JobID {
		t.Fatalf("job to %d, prev hash to %d (job %d/%d), want group %d", j.ChannelID, p.ChannelID, j.JobID, p.JobID, a.GroupChannelID)
	}
	for _, ch := range []uint32{a.ChannelID, b.ChannelID} {
		sh := d.grind(t, ch, nil, false)
		if code := d.result(t, ch, d.submit(sh, false)); code != "" {
			t.Fatalf("share on channel %d via group job: %q", ch, code)
		}
	}
	// Closing the group closes both channels.
	d.send(&messages.CloseChannel{ChannelID: a.GroupChannelID, ReasonCode: "bye"})
	ts.s.sync()
	deadline := time.Now().Add(5 * time.Second)
	for ts.s.Stats().Channels != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("channels still open: %+v", ts.s.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOpenChannelErrors(t *testing.T) {
	ts := startServer(t, Config{Plaintext: true, MaxChannelsPerConn: 2})
	ts.s.SetWork(testWork(1, true, 8))
	ts.s.sync()
	d := ts.dial(t, messages.FlagRequiresStandardJobs)
	for _, tc := range []struct {
		name string
		msg  codec.Message
		code string
	}{
		{"extended on a standard-jobs connection", &messages.OpenExtendedMiningChannel{RequestID: 1, MaxTarget: mining.MaxTarget}, codeExtendedNotForStandardJobs},
		{"zero max target", &messages.OpenStandardMiningChannel{RequestID: 2}, mining.CodeMaxTargetOutOfRange},
		{"negative hash rate", &messages.OpenStandardMiningChannel{RequestID: 3, NominalHashRate: -1, MaxTarget: mining.MaxTarget}, mining.CodeInvalidNominalHashrate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d.send(tc.msg)
			e, ok := d.next(t).(*messages.OpenMiningChannelError)
			if !ok || e.ErrorCode != tc.code {
				t.Fatalf("got %+v, want %q", e, tc.code)
			}
		})
	}
	t.Run("extranonce size too large", func(t *testing.T) {
		d := ts.dial(t, 0)
		d.send(&messages.OpenExtendedMiningChannel{RequestID: 9, MaxTarget: mining.MaxTarget, MinExtranonceSize: 5})
		if e, ok := d.next(t).(*messages.OpenMiningChannelError); !ok || e.ErrorCode != mining.CodeMinExtranonceSizeTooLarge {
			t.Fatalf("got %+v", e)
		}
	})
	t.Run("too many channels", func(t *testing.T) {
		d.openStandard(t, "1", 1)
		d.openStandard(t, "2", 1)
		d.send(&messages.OpenStandardMiningChannel{RequestID: 10, MaxTarget: mining.MaxTarget})
		e := waitFor[*messages.OpenMiningChannelError](t, d, nil)
		if e.ErrorCode != mining.CodeTooManyChannels {
			t.Fatalf("got %q", e.ErrorCode)
		}
	})
}

func TestVardiffAndUpdateChannel(t *testing.T) {
	ts := startServer(t, Config{Plaintext: true, VardiffWindow: 600 * time.Millisecond, SharesPerMinute: 6})
	ts.s.SetWork(testWork(1, true, 8))
	ts.s.SetPrevHash(prevHash(1, hardBits))
	d := ts.dial(t, messages.FlagRequiresStandardJobs)
	ch := d.openStandard(t, "fast", 1)
	waitFor[*messages.MiningSetNewPrevHash](t, d, nil)
	start := ch.Target
	// Far more than 6 shares a minute: vardiff must make the target harder.
	var st *messages.SetTarget
	deadline := time.Now().Add(10 * time.Second)
	for st == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		sh := d.grind(t, ch.ChannelID, nil, false)
		seq := d.submit(sh, false)
		for st == nil {
			m := d.next(t)
			if v, ok := m.(*messages.SetTarget); ok {
				st = v
			}
			if v, ok := m.(*messages.SubmitSharesSuccess); ok && v.LastSequenceNumber == seq {
				break
			}
			if v, ok := m.(*messages.SubmitSharesError); ok && v.SequenceNumber == seq {
				break
			}
		}
	}
	if st == nil {
		t.Fatal("no SetTarget after 10s of fast shares")
	}
	if mining.CompareTargets(&st.MaximumTarget, &start) >= 0 {
		t.Fatalf("vardiff made the target easier: %x → %x", start, st.MaximumTarget)
	}
	// The hash-rate estimate follows the accepted shares.
	deadline = time.Now().Add(5 * time.Second)
	for {
		st := ts.s.Stats()
		if len(st.PerChannel) == 1 && st.PerChannel[0].HashRate > 0 && st.HashRate == st.PerChannel[0].HashRate {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no hash-rate estimate: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// UpdateChannel with a lower maximum target is honoured with SetTarget.
	low := mining.TargetFromDifficulty(1000)
	d.send(&messages.UpdateChannel{ChannelID: ch.ChannelID, NominalHashRate: 1, MaximumTarget: low})
	// (A vardiff SetTarget computed just before may come first.)
	waitFor[*messages.SetTarget](t, d, func(m *messages.SetTarget) bool {
		return mining.CompareTargets(&m.MaximumTarget, &low) <= 0
	})
	d.send(&messages.UpdateChannel{ChannelID: 4242, NominalHashRate: 1, MaximumTarget: low})
	if e := waitFor[*messages.UpdateChannelError](t, d, nil); e.ErrorCode != mining.CodeInvalidChannelID {
		t.Fatalf("UpdateChannel.Error %q", e.ErrorCode)
	}
	if metricValue(t, ts.s.m.setTargets) < 2 {
		t.Fatal("SetTarget not counted")
	}
}

func TestNonFutureWorkAndExtranonceChange(t *testing.T) {
	ts := startServer(t, Config{Plaintext: true})
	ts.s.SetWork(testWork(1, true, 8))
	ts.s.SetPrevHash(prevHash(1, hardBits))
	d := ts.dial(t, messages.FlagRequiresStandardJobs)
	ch := d.openStandard(t, "w", 1)
	waitFor[*messages.MiningSetNewPrevHash](t, d, nil)

	// A template update on the same tip: an active job at once.
	ts.s.SetWork(testWork(2, false, 8))
	j := waitFor[*messages.NewMiningJob](t, d, nil)
	if j.MinNTime == nil {
		t.Fatal("non-future work sent as a future job")
	}
	sh := d.grind(t, ch.ChannelID, nil, false)
	if sh.job != j.JobID {
		t.Fatalf("device mines job %d, want %d", sh.job, j.JobID)
	}
	ts.s.SetUpstreamTarget(mining.MaxTarget)
	if code := d.result(t, ch.ChannelID, d.submit(sh, false)); code != "" {
		t.Fatalf("share on the updated job: %q", code)
	}
	if up := waitShare(t, ts.s); up.WorkID != 2 {
		t.Fatalf("share for work %d, want 2", up.WorkID)
	}

	// The pool changed (failover): a larger extranonce space. Every channel
	// gets a new prefix before its next job.
	ts.s.SetWork(testWork(3, true, 10))
	p := waitFor[*messages.SetExtranoncePrefix](t, d, nil)
	if p.ChannelID != ch.ChannelID || len(p.ExtranoncePrefix) != 10 {
		t.Fatalf("SetExtranoncePrefix %+v", p)
	}
	waitFor[*messages.NewMiningJob](t, d, nil)
	ts.s.SetPrevHash(prevHash(3, hardBits))
	waitFor[*messages.MiningSetNewPrevHash](t, d, nil)
	sh = d.grind(t, ch.ChannelID, nil, false)
	if code := d.result(t, ch.ChannelID, d.submit(sh, false)); code != "" {
		t.Fatalf("share after the new prefix: %q", code)
	}
	if up := waitShare(t, ts.s); up.WorkID != 3 || len(up.Extranonce) != 10 || string(up.Extranonce) != string(p.ExtranoncePrefix) {
		t.Fatalf("share %+v", up)
	}
	// A device connecting now gets the newest job on the tip, with the new
	// prefix length, and can mine at once.
	late := ts.dial(t, messages.FlagRequiresStandardJobs)
	lch := late.openStandard(t, "late", 1)
	if len(lch.ExtranoncePrefix) != 10 {
		t.Fatalf("late channel prefix %x", lch.ExtranoncePrefix)
	}
	waitFor[*messages.MiningSetNewPrevHash](t, late, nil)
	sh = late.grind(t, lch.ChannelID, nil, false)
	if code := late.result(t, lch.ChannelID, late.submit(sh, false)); code != "" {
		t.Fatalf("late device share: %q", code)
	}
	if up := waitShare(t, ts.s); up.WorkID != 3 {
		t.Fatalf("late share for work %d", up.WorkID)
	}
	// A pool switch on the same tip (new space, active work): devices
	// connecting afterwards still get an active job.
	ts.s.SetWork(testWork(5, false, 12))
	waitFor[*messages.NewMiningJob](t, d, func(m *messages.NewMiningJob) bool { return m.MinNTime != nil })
	later := ts.dial(t, messages.FlagRequiresStandardJobs)
	lch2 := later.openStandard(t, "later", 1)
	waitFor[*messages.MiningSetNewPrevHash](t, later, nil)
	sh = later.grind(t, lch2.ChannelID, nil, false)
	if code := later.result(t, lch2.ChannelID, later.submit(sh, false)); code != "" {
		t.Fatalf("device after the switch: %q", code)
	}
	if up := waitShare(t, ts.s); up.WorkID != 5 || len(up.Extranonce) != 12 {
		t.Fatalf("share after the switch: %+v", up)
	}
	// A SetPrevHash for a work that was sent as active (not future) is
	// turned into a future job first.
	ts.s.SetWork(testWork(4, false, 12))
	ts.s.SetPrevHash(prevHash(4, hardBits))
	fj := waitFor[*messages.NewMiningJob](t, d, func(m *messages.NewMiningJob) bool { return m.MinNTime == nil })
	snph := waitFor[*messages.MiningSetNewPrevHash](t, d, nil)
	if snph.JobID != fj.JobID {
		t.Fatalf("SetNewPrevHash job %d, future job %d", snph.JobID, fj.JobID)
	}
	// And one for a work nobody knows changes nothing.
	ts.s.SetPrevHash(prevHash(99, hardBits))
	ts.s.sync()
	sh = d.grind(t, ch.ChannelID, nil, false)
	if code := d.result(t, ch.ChannelID, d.submit(sh, false)); code != "" {
		t.Fatalf("share after an unknown SetPrevHash: %q", code)
	}
}

func TestMetricsRegistered(t *testing.T) {
	ts := startServer(t, Config{Plaintext: true})
	ts.s.SetWork(testWork(1, true, 8))
	ts.s.SetPrevHash(prevHash(1, hardBits))
	d := ts.dial(t, 0)
	d.openStandard(t, "m", 1)
	waitFor[*messages.MiningSetNewPrevHash](t, d, nil)
	ts.s.SetWork(testWork(2, true, 8))
	ts.s.SetPrevHash(prevHash(2, hardBits))
	waitFor[*messages.MiningSetNewPrevHash](t, d, nil)
	time.Sleep(50 * time.Millisecond)
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"jdc_devices_connections", "jdc_devices_channels", "jdc_devices_jobs_sent_total",
		"jdc_devices_prev_hashes_sent_total", "jdc_devices_new_tip_latency_seconds", "jdc_devices_channels_opened_total"} {
		if !names[want] {
			t.Errorf("metric %s missing (have %v)", want, strings.Join(keys(names), " "))
		}
	}
	// A second server on the same registry is refused, not a panic.
	if _, err := New(Config{Listen: "127.0.0.1:0", Plaintext: true, Registerer: ts.reg}); err == nil {
		t.Fatal("duplicate registration accepted")
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestShutdownLeavesNoGoroutines stops a server with devices connected,
// one of them blocked on a block the share queue cannot take.
func TestShutdownLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		ts := startServer(t, Config{Plaintext: true, ShareQueue: 1})
		ts.s.SetWork(testWork(1, true, 8))
		ts.s.SetPrevHash(prevHash(1, easyBits))
		var ds []*testDevice
		for i := 0; i < 3; i++ {
			d := ts.dial(t, 0)
			d.openExtended(t, "x", 1, 4)
			waitFor[*messages.MiningSetNewPrevHash](t, d, nil)
			ds = append(ds, d)
		}
		// Two blocks: the second holds its device's reader.
		netT := templates.TargetFromBits(easyBits)
		for i := 0; i < 2; i++ {
			ch := uint32(0)
			ds[0].mu.Lock()
			for id, c := range ds[0].channels {
				if c.extended {
					ch = id
				}
			}
			ds[0].mu.Unlock()
			ds[0].submit(ds[0].grind(t, ch, &netT, false), true)
		}
		time.Sleep(50 * time.Millisecond)
		ts.stop()
		for _, d := range ds {
			d.closed(t)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines left (before: %d):\n%s", runtime.NumGoroutine(), before, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
