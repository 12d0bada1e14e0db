package declarer

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/hashicorp/go-hclog"

	"github.com/sv2kit/sv2kit/sv2/messages"
)

// benchJob is a job of n random 250-byte transactions (a typical size).
func benchJob(b *testing.B, n int) Job {
	txs := make([][]byte, n)
	for i := range txs {
		txs[i] = make([]byte, 250)
		rand.Read(txs[i])
	}
	prefix := make([]byte, 60)
	suffix := make([]byte, 150)
	return Job{Token: []byte{1, 2, 3, 4}, Version: 0x20000000, CoinbasePrefix: prefix, CoinbaseSuffix: suffix,
		WTxIDs: WTxIDs(txs), Txs: txs, ExcessData: make([]byte, 32)}
}

// BenchmarkDeclare4000 declares a 4,000-transaction job over loopback TCP +
// Noise to the fake JDS, which answers at once (every transaction known):
// the declarer's own cost and one round trip, without a JDS's checks.
func BenchmarkDeclare4000(b *testing.B) {
	benchDeclare(b, 4000, nil)
}

// BenchmarkDeclare4000AllMissing: the JDS knows none of the transactions
// and asks for all 4,000 (≈1 MB uploaded) before it answers.
func BenchmarkDeclare4000AllMissing(b *testing.B) {
	all := make([]uint16, 4000)
	for i := range all {
		all[i] = uint16(i)
	}
	benchDeclare(b, 4000, all)
}

func benchDeclare(b *testing.B, n int, missing []uint16) {
	f := startFake(b, behavior{declare: func(p *peer, m *messages.DeclareMiningJob) {
		if missing != nil {
			p.send(&messages.ProvideMissingTransactions{RequestID: m.RequestID, UnknownTxPositionList: missing})
			if _, err := p.read(); err != nil {
				return
			}
		}
		p.send(&messages.DeclareMiningJobSuccess{RequestID: m.RequestID, NewMiningJobToken: []byte("ok")})
	}})
	d, err := Dial(context.Background(), Config{Addr: f.addr(), AuthorityPubKey: &f.pub, FullTemplate: true,
		Logger: hclog.NewNullLogger(), Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	job := benchJob(b, n)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Declare(ctx, job); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWTxIDs4000 hashes 4,000 250-byte transactions (NewJob's cost).
func BenchmarkWTxIDs4000(b *testing.B) {
	job := benchJob(b, 4000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		WTxIDs(job.Txs)
	}
}

// realisticTxs returns n segwit transactions of two inputs and two outputs
// (about 370 bytes each), serialized with witness.
func realisticTxs(b *testing.B, n int) [][]byte {
	txs := make([][]byte, n)
	for i := range txs {
		tx := wire.NewMsgTx(2)
		for k := 0; k < 2; k++ {
			var h chainhash.Hash
			rand.Read(h[:])
			in := wire.NewTxIn(&wire.OutPoint{Hash: h, Index: uint32(k)}, nil, nil)
			sig := make([]byte, 72)
			pub := make([]byte, 33)
			rand.Read(sig)
			rand.Read(pub)
			in.Witness = wire.TxWitness{sig, pub}
			tx.AddTxIn(in)
		}
		for k := 0; k < 2; k++ {
			script := make([]byte, 22)
			rand.Read(script)
			tx.AddTxOut(wire.NewTxOut(int64(1000+k), script))
		}
		var buf bytes.Buffer
		if err := tx.Serialize(&buf); err != nil {
			b.Fatal(err)
		}
		txs[i] = buf.Bytes()
	}
	return txs
}

// BenchmarkTxIDs4000 computes the txids of 4,000 segwit transactions.
func BenchmarkTxIDs4000(b *testing.B) {
	txs := realisticTxs(b, 4000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := TxIDs(txs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWTxIDs4000Segwit computes the wtxids of the same transactions.
func BenchmarkWTxIDs4000Segwit(b *testing.B) {
	txs := realisticTxs(b, 4000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		WTxIDs(txs)
	}
}
