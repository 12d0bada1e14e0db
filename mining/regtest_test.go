package mining

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/templates"
)

// TestBlocksAcceptedByBtcd mines blocks through the mining core — template
// → job → device share → BlockFound → Job.Block — with real signed segwit
// transactions, and a real btcd regtest node accepts them: on an extended
// channel and on a standard channel of a group.
func TestBlocksAcceptedByBtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a btcd node")
	}
	n := regtest.Start(t, regtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rpc := n.Client()
	w := n.Wallet()
	if err := w.Fund(ctx, 4); err != nil {
		t.Fatal(err)
	}

	alloc := mustAlloc(t, []byte{0x50, 0x4f, 0x4f, 0x4c}, 12, 8)
	s := NewSession(Config{}, alloc)
	ext := openExt(t, s, targetBits(1), time.Now())
	std := openStd(t, s, targetBits(1), time.Now())

	for round, dev := range []*device{ext, std} {
		// Transactions for the block: a parent and its child, segwit.
		var txs []*wire.MsgTx
		for _, opts := range []regtest.SendOpts{{FeeRate: 3}, {FeeRate: 7, SpendUnconfirmed: true}} {
			tx, err := w.Send(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			txs = append(txs, tx)
		}
		var raw [][]byte
		for _, tx := range txs {
			var b bytes.Buffer
			if err := tx.Serialize(&b); err != nil {
				t.Fatal(err)
			}
			raw = append(raw, b.Bytes())
		}
		best, height, err := rpc.GetBestBlock()
		if err != nil {
			t.Fatal(err)
		}
		prev, err := rpc.GetBlockHeader(best)
		if err != nil {
			t.Fatal(err)
		}
		nt := newTemplateMsg(uint64(100+round), true, int64(height)+1, txs)
		// Claim the subsidy only: fees are not known here and a coinbase may
		// take less than it is owed.
		nt.CoinbaseTxValueRemaining = uint64(blockchain.CalcBlockSubsidy(height+1, n.Params()))
		nt.CoinbaseTxLocktime = uint32(height)
		jt, err := NewJobTemplate(nt, CoinbaseConfig{Outputs: []templates.TxOutput{{Value: int64(nt.CoinbaseTxValueRemaining), PkScript: w.PkScript()}},
			Tag: []byte("/sv2kit-test/"), ExtranonceSize: alloc.FullSize()})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		out, err := s.NewTemplate(jt)
		if err != nil {
			t.Fatal(err)
		}
		ext.handle(out)
		std.handle(out)
		tip := ChainTip{PrevHash: *best, MinNTime: uint32(prev.Timestamp.Unix()) + 1, NBits: prev.Bits, Since: now}
		if out, err = s.NewPrevHash(jt.ID, tip); err != nil {
			t.Fatal(err)
		}
		ext.handle(out)
		std.handle(out)
		if dev == std {
			// The group got one extended job: the proxy side computes the
			// member's merkle root.
			j := std.jobs[std.active]
			r := std.root(j, nil)
			j.merkleRoot = &r
		}

		var e []byte
		if dev == ext {
			e = []byte("devices!")
		}
		net := templates.TargetFromBits(prev.Bits)
		sh := dev.grind(e, 0, 0, func(h *[32]byte) bool { return MeetsTarget(h, &net) })
		var r Result
		if dev == ext {
			r = s.SubmitExtended(sh.extended(dev.ch), now)
		} else {
			r = s.SubmitStandard(sh.standard(dev.ch), now)
		}
		if r.Status != BlockFound {
			t.Fatalf("round %d: %v %q", round, r.Status, r.Code)
		}
		blk, err := btcutil.NewBlockFromBytes(r.Job.Block(&r.Header, e, raw))
		if err != nil {
			t.Fatal(err)
		}
		if err := rpc.SubmitBlock(blk, nil); err != nil {
			t.Fatalf("round %d: btcd refused the block: %v", round, err)
		}
		got, h2, err := rpc.GetBestBlock()
		if err != nil || *got != chainhash.Hash(r.Hash) || h2 != height+1 {
			t.Fatalf("round %d: best block %v at %d, want %x at %d (%v)", round, got, h2, r.Hash, height+1, err)
		}
		// The coinbase SubmitSolution would carry is the block's.
		ss := r.Job.SubmitSolution(&r.Header, e)
		var cb bytes.Buffer
		if err := blk.MsgBlock().Transactions[0].Serialize(&cb); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ss.CoinbaseTx, cb.Bytes()) {
			t.Fatal("SubmitSolution coinbase differs from the accepted block's")
		}
	}
}
