package testpool

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/declare"
	"github.com/sv2kit/sv2kit/declare/declarer"
	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/mempool"
	"github.com/sv2kit/sv2kit/mining"
	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/sv2/noise"
	"github.com/sv2kit/sv2kit/templates"
)

// TestRealJDS runs the pool against sv2kit's JDS and a real btcd: a job
// declared through the JDP with a token, the custom job checked by the JDS
// (accepted, and refused for an unknown token and another user), and a
// block-solving share rebuilt by the JDS and accepted by the node.
func TestRealJDS(t *testing.T) {
	n := regtest.Start(t, regtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rpc, err := node.NewClient(node.Config{URL: "http://" + n.RPCAddr(), User: n.RPCUser(), Password: n.RPCPass(),
		Network: "regtest", Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer rpc.Close()

	auth, err := noise.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	payout := append([]byte{0x00, 0x14}, bytes.Repeat([]byte{0x5a}, 20)...)
	jds, err := declare.New(declare.Config{
		AuthorityKey: auth,
		Policy: declare.Policy{PayoutScript: payout, HalvingInterval: declare.RegtestHalvingInterval,
			AllowFullTemplate: true, AllowCoinbaseOnly: true, RequireSameUser: true},
		Node: rpc, Txs: mempool.NewStore(0), BlockDir: t.TempDir(), TipPollInterval: 200 * time.Millisecond,
		Logger: hclog.NewNullLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	jctx, jcancel := context.WithCancel(ctx)
	jdone := make(chan struct{})
	go func() { defer close(jdone); jds.Serve(jctx, ln) }()
	defer func() { jcancel(); <-jdone }()
	select {
	case <-jds.Ready():
	case <-ctx.Done():
		t.Fatal("JDS not ready")
	}

	p := startPool(t, Config{AuthorityKey: auth, API: jds})
	c := dialPool(t, p)
	c.setup(messages.FlagRequiresWorkSelection | messages.FlagRequiresVersionRolling)
	ch := c.openExtended("alice", 8)

	// The tip the job builds on, as the JDS sees it.
	var tipHash [32]byte
	var tipHeight int64
	var bits, tipTime uint32
	deadline := time.Now().Add(15 * time.Second)
	for {
		best, err := n.Client().GetBestBlockHash()
		if err != nil {
			t.Fatal(err)
		}
		if chain, ok := jds.Core().Chain(); ok && chain.TipHash == *best {
			hdr, err := n.Client().GetBlockHeader(best)
			if err != nil {
				t.Fatal(err)
			}
			tipHash, tipHeight, bits, tipTime = *best, chain.Height, hdr.Bits, uint32(hdr.Timestamp.Unix())
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("JDS did not follow the tip")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Declare a coinbase-only block (no transactions) in full-template mode.
	d, err := declarer.Dial(ctx, declarer.Config{Addr: ln.Addr().String(), AuthorityPubKey: &p.pub,
		UserIdentifier: "alice", FullTemplate: true, SpareTokens: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tok, err := d.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	outs, err := templates.ParseOutputVector(tok.CoinbaseTxOutputs)
	if err != nil {
		t.Fatal(err)
	}
	value := templates.Subsidy(tipHeight+1, declare.RegtestHalvingInterval)
	outs, err = mining.PayRemaining(outs, uint64(value))
	if err != nil {
		t.Fatal(err)
	}
	nt := &messages.NewTemplate{TemplateID: 1, Version: 0x20000000, CoinbaseTxVersion: 2,
		CoinbasePrefix: templates.HeightScript(tipHeight + 1), CoinbaseTxInputSequence: 0xffffffff,
		CoinbaseTxValueRemaining: uint64(value)}
	jt, err := mining.NewJobTemplate(nt, mining.CoinbaseConfig{Outputs: outs, Tag: []byte("/testpool/"),
		ExtranonceSize: len(ch.ExtranoncePrefix) + int(ch.ExtranonceSize)})
	if err != nil {
		t.Fatal(err)
	}
	prefix, suffix := jt.CoinbaseParts(true)
	ok, err := d.Declare(ctx, declarer.Job{Token: tok.MiningJobToken, Version: nt.Version,
		CoinbasePrefix: prefix, CoinbaseSuffix: suffix})
	if err != nil {
		t.Fatalf("declare: %v", err)
	}
	tip := &mining.ChainTip{PrevHash: tipHash, MinNTime: tipTime + 1, NBits: bits}

	// Refusals come from the JDS with its codes.
	bad := jt.SetCustomMiningJob(ch.ChannelID, 1, []byte("not a token"), tip)
	c.send(bad)
	if r := recvAs[*messages.SetCustomMiningJobError](c); r.ErrorCode != declare.CodeInvalidToken {
		t.Fatalf("unknown token answered %q", r.ErrorCode)
	}
	c.send(&messages.OpenExtendedMiningChannel{RequestID: 10, UserIdentity: "mallory", NominalHashRate: 1000,
		MaxTarget: mining.MaxTarget, MinExtranonceSize: 8})
	other := recvAs[*messages.OpenExtendedMiningChannelSuccess](c)
	c.send(jt.SetCustomMiningJob(other.ChannelID, 2, ok.NewMiningJobToken, tip))
	if r := recvAs[*messages.SetCustomMiningJobError](c); r.ErrorCode != declare.CodeUserMismatch {
		t.Fatalf("another user's token answered %q", r.ErrorCode)
	}

	// The declared job is accepted, and a block found on it reaches the chain.
	job := jt.SetCustomMiningJob(ch.ChannelID, 3, ok.NewMiningJobToken, tip)
	c.send(job)
	acc := recvAs[*messages.SetCustomMiningJobSuccess](c)
	share := grind(t, ch, jt, job, acc.JobID, ch.Target, true, bytes.Repeat([]byte{3}, int(ch.ExtranonceSize)))
	c.send(share)
	recvAs[*messages.SubmitSharesSuccess](c)
	waitFor(t, "the node to accept the block", func() bool {
		h, err := n.Height(ctx)
		return err == nil && int64(h) == tipHeight+1
	})
	waitFor(t, "the block counted", func() bool { return p.Stats().BlocksAccepted == 1 })
	blk, err := n.Client().GetBlock(mustBest(t, n))
	if err != nil {
		t.Fatal(err)
	}
	if cb := blk.Transactions[0]; len(cb.TxOut) == 0 || !bytes.Equal(cb.TxOut[0].PkScript, payout) || cb.TxOut[0].Value != value {
		t.Fatalf("coinbase pays %+v", cb.TxOut)
	}
	st := p.Stats()
	if st.Users["alice"].BlocksFound != 1 || st.CustomJobsRejected[declare.CodeInvalidToken] != 1 ||
		st.Users["mallory"].CustomJobsRejected[declare.CodeUserMismatch] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func mustBest(t *testing.T, n *regtest.Node) *chainhash.Hash {
	t.Helper()
	h, err := n.Client().GetBestBlockHash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
