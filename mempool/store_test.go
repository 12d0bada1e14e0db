package mempool

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

func TestParseMatchesWire(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tx      *wire.MsgTx
		witness bool
	}{
		{"legacy 1-1", simpleTx(1, false), false},
		{"segwit 1-1", simpleTx(2, true), true},
		{"segwit 3-5", synthTx(3, []wire.OutPoint{outpoint(3), outpoint(4), outpoint(5)}, 5, true), true},
		{"legacy 0 outputs", synthTx(4, []wire.OutPoint{outpoint(6)}, 0, false), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := ser(t, tc.tx)
			ti, err := parseTx(raw)
			if err != nil {
				t.Fatal(err)
			}
			if ti.txid != tc.tx.TxHash() || ti.wtxid != tc.tx.WitnessHash() {
				t.Fatalf("ids %s %s, want %s %s", ti.txid, ti.wtxid, tc.tx.TxHash(), tc.tx.WitnessHash())
			}
			if tc.witness == (ti.txid == ti.wtxid) || ti.witness != tc.witness {
				t.Fatalf("witness %v: txid == wtxid is %v", tc.witness, ti.txid == ti.wtxid)
			}
			w := blockchain.GetTransactionWeight(btcutil.NewTx(tc.tx))
			if want := int((w + 3) / 4); ti.vsize != want {
				t.Fatalf("vsize %d, want %d", ti.vsize, want)
			}
			var ops []wire.OutPoint
			nOut, err := WalkInputs(raw, func(op wire.OutPoint) { ops = append(ops, op) })
			if err != nil || nOut != len(tc.tx.TxOut) || len(ops) != len(tc.tx.TxIn) {
				t.Fatalf("walk: %d outputs, %d inputs, %v", nOut, len(ops), err)
			}
			for k, op := range ops {
				if op != tc.tx.TxIn[k].PreviousOutPoint {
					t.Fatalf("input %d: %v", k, op)
				}
			}
		})
	}
}

func TestStoreAddLookup(t *testing.T) {
	s := NewStore(0)
	seg, leg := simpleTx(10, true), simpleTx(11, false)
	segRaw, legRaw := ser(t, seg), ser(t, leg)

	e, err := s.Add(segRaw)
	if err != nil {
		t.Fatal(err)
	}
	if e.TxID != seg.TxHash() || e.WTxID != seg.WitnessHash() || e.TxID == e.WTxID || e.Size != len(segRaw) || e.Fee != FeeUnknown {
		t.Fatalf("segwit entry %+v", e)
	}
	if _, err := s.AddWithFee(legRaw, 500); err != nil {
		t.Fatal(err)
	}
	// Add copies: the caller may reuse its buffer.
	segRaw[len(segRaw)-1] ^= 0xff
	segRaw[len(segRaw)-1] ^= 0xff
	orig := append([]byte(nil), legRaw...)
	legRaw[0] = 0x77

	for _, c := range []struct {
		name string
		get  func(chainhash.Hash) ([]byte, bool)
		id   chainhash.Hash
		want []byte
	}{
		{"segwit by txid", s.ByTxID, seg.TxHash(), ser(t, seg)},
		{"segwit by wtxid", s.ByWTxID, seg.WitnessHash(), ser(t, seg)},
		{"segwit txid is no wtxid", s.ByWTxID, seg.TxHash(), nil},
		{"segwit wtxid is no txid", s.ByTxID, seg.WitnessHash(), nil},
		{"legacy by txid", s.ByTxID, leg.TxHash(), orig},
		{"legacy by wtxid", s.ByWTxID, leg.WitnessHash(), orig},
		{"unknown", s.ByWTxID, chainhash.Hash{1}, nil},
	} {
		got, ok := c.get(c.id)
		if ok != (c.want != nil) || !bytes.Equal(got, c.want) {
			t.Errorf("%s: ok=%v, %d bytes", c.name, ok, len(got))
		}
	}
	if s.Len() != 2 || s.Bytes() != Cost(len(orig), false)+Cost(len(segRaw), true) {
		t.Fatalf("len %d bytes %d", s.Len(), s.Bytes())
	}
	if e, ok := s.Get(leg.TxHash()); !ok || e.Fee != 500 || e.WTxID != e.TxID {
		t.Fatalf("legacy entry %+v", e)
	}

	// Duplicates change nothing but an unknown fee.
	if _, err := s.Add(orig); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if e, err := s.AddWithFee(ser(t, seg), 1234); !errors.Is(err, ErrExists) || e.Fee != 1234 {
		t.Fatalf("duplicate with fee: %+v %v", e, err)
	}
	if st := s.Stats(); st.Count != 2 || st.Adds != 2 {
		t.Fatalf("stats %+v", st)
	}

	found, missing := s.LookupWTxIDs([][32]byte{seg.WitnessHash(), {9}, leg.TxHash(), seg.TxHash()})
	if len(missing) != 2 || missing[0] != 1 || missing[1] != 3 || found[0] == nil || found[2] == nil || found[1] != nil {
		t.Fatalf("lookup: missing %v", missing)
	}
	if st := s.Stats(); st.LookupHits != 2 || st.LookupMisses != 2 {
		t.Fatalf("lookup counters %+v", st)
	}

	if !s.Remove(seg.TxHash()) || s.Remove(seg.TxHash()) {
		t.Fatal("remove")
	}
	if _, ok := s.ByWTxID(seg.WitnessHash()); ok {
		t.Fatal("removed tx still found by wtxid")
	}
	if s.Len() != 1 || s.Bytes() != Cost(len(orig), false) {
		t.Fatalf("after remove: len %d bytes %d", s.Len(), s.Bytes())
	}
	checkInvariants(t, s)
}

func TestStoreRejectsGarbage(t *testing.T) {
	good := ser(t, simpleTx(20, true))
	legacy := ser(t, simpleTx(21, false))
	cases := map[string][]byte{
		"empty":               nil,
		"one byte":            {1},
		"version only":        {2, 0, 0, 0},
		"truncated":           good[:len(good)-1],
		"trailing byte":       append(append([]byte(nil), good...), 0),
		"legacy truncated":    legacy[:40],
		"huge input count":    {2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"huge output count":   append(append([]byte(nil), legacy[:4+1+36+1+107+4]...), 0xfe, 0xff, 0xff, 0xff, 0x7f),
		"non-canonical count": {2, 0, 0, 0, 0xfd, 1, 0, 0, 0, 0, 0},
		"witness flag 2":      append([]byte{2, 0, 0, 0, 0, 2}, good[6:]...),
		"huge witness count":  {2, 0, 0, 0, 0, 1, 1},
	}
	// A witness flag with only empty witnesses.
	tx := simpleTx(22, false)
	tx.TxIn[0].SignatureScript = nil
	b := ser(t, tx)
	sup := append([]byte{}, b[:4]...)
	sup = append(sup, 0, 1)
	sup = append(sup, b[4:len(b)-4]...)
	sup = append(sup, 0) // one empty witness stack
	sup = append(sup, b[len(b)-4:]...)
	cases["superfluous witness"] = sup
	cases["too large"] = make([]byte, MaxTxSize+1)

	s := NewStore(0)
	for name, raw := range cases {
		if _, err := s.Add(raw); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
		var tx wire.MsgTx
		if len(raw) <= MaxTxSize && tx.Deserialize(bytes.NewReader(raw)) == nil && len(raw) > 0 {
			var out bytes.Buffer
			tx.Serialize(&out)
			if bytes.Equal(out.Bytes(), raw) {
				t.Errorf("%s: wire accepts what parseTx refuses", name)
			}
		}
	}
	if st := s.Stats(); st.Count != 0 || st.Rejected != uint64(len(cases)) {
		t.Fatalf("stats %+v", st)
	}
}

// A block that confirms one mempool transaction and double-spends another
// removes both, and the double-spent one's descendants, and nothing else.
func TestRemoveConfirmedConflicts(t *testing.T) {
	s := NewStore(0)
	a := simpleTx(30, true)                                                      // spends outpoint(30)
	child := synthTx(31, []wire.OutPoint{{Hash: a.TxHash(), Index: 0}}, 2, true) // a's child
	grandchild := synthTx(32, []wire.OutPoint{{Hash: child.TxHash(), Index: 1}}, 1, false)
	e := simpleTx(33, true)                                                       // confirmed as is
	eChild := synthTx(34, []wire.OutPoint{{Hash: e.TxHash(), Index: 0}}, 1, true) // stays: its parent is confirmed
	other := simpleTx(35, false)
	for _, tx := range []*wire.MsgTx{a, child, grandchild, e, eChild, other} {
		if _, err := s.Add(ser(t, tx)); err != nil {
			t.Fatal(err)
		}
	}
	d := synthTx(36, []wire.OutPoint{outpoint(30)}, 1, true) // double-spends a
	coinbase := wire.NewMsgTx(1)
	coinbase.AddTxIn(wire.NewTxIn(&wire.OutPoint{Index: wire.MaxPrevOutIndex}, []byte{1, 2}, nil))
	coinbase.AddTxOut(wire.NewTxOut(50, []byte{0x51}))
	block := &wire.MsgBlock{Transactions: []*wire.MsgTx{coinbase, e, d}}

	confirmed, conflicts := s.RemoveConfirmed(block)
	if confirmed != 1 || conflicts != 3 {
		t.Fatalf("confirmed %d conflicts %d, want 1 and 3", confirmed, conflicts)
	}
	for _, tx := range []*wire.MsgTx{a, child, grandchild, e} {
		if s.Has(tx.TxHash()) {
			t.Errorf("%s still there", tx.TxHash())
		}
	}
	for _, tx := range []*wire.MsgTx{eChild, other} {
		if !s.Has(tx.TxHash()) {
			t.Errorf("%s was removed", tx.TxHash())
		}
	}
	if st := s.Stats(); st.Confirmed != 1 || st.Conflicts != 3 || st.Count != 2 {
		t.Fatalf("stats %+v", st)
	}
	checkInvariants(t, s)
	if c, k := s.RemoveConfirmed(block); c != 0 || k != 0 {
		t.Fatalf("second time: %d %d", c, k)
	}
}

// Two stored transactions may spend the same output (the node reports the
// replaced one's removal separately); a block that settles it removes the
// loser and its descendants.
func TestConflictingTxsCoexistUntilABlock(t *testing.T) {
	s := NewStore(0)
	old := simpleTx(40, true)
	kid := synthTx(41, []wire.OutPoint{{Hash: old.TxHash(), Index: 0}}, 1, true)
	repl := synthTx(42, []wire.OutPoint{outpoint(40)}, 2, true)
	for _, tx := range []*wire.MsgTx{old, kid, repl} {
		if _, err := s.Add(ser(t, tx)); err != nil {
			t.Fatal(err)
		}
	}
	if s.Len() != 3 {
		t.Fatalf("len %d", s.Len())
	}
	c, k := s.RemoveConfirmed(&wire.MsgBlock{Transactions: []*wire.MsgTx{simpleTx(43, false), repl}})
	if c != 1 || k != 2 || s.Len() != 0 {
		t.Fatalf("confirmed %d conflicts %d len %d", c, k, s.Len())
	}
	checkInvariants(t, s)
}

func TestReconcile(t *testing.T) {
	s := NewStore(0)
	var ids []chainhash.Hash
	for i := range 10 {
		tx := simpleTx(uint64(50+i), i%2 == 0)
		ids = append(ids, tx.TxHash())
		if i < 6 {
			if _, err := s.Add(ser(t, tx)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The node now has ids[3:10] (and lists one twice).
	listing := append(append([]chainhash.Hash(nil), ids[3:]...), ids[7])
	missing, removed := s.Reconcile(listing)
	if removed != 3 || len(missing) != 4 {
		t.Fatalf("removed %d, missing %v", removed, missing)
	}
	for k, id := range missing {
		if id != ids[6+k] {
			t.Fatalf("missing[%d] = %s, want %s", k, id, ids[6+k])
		}
	}
	if s.Len() != 3 {
		t.Fatalf("len %d", s.Len())
	}
	checkInvariants(t, s)
	if missing, removed := s.Reconcile(nil); len(missing) != 0 || removed != 3 || s.Len() != 0 {
		t.Fatalf("empty listing: %v %d", missing, removed)
	}
	checkInvariants(t, s)
}

func TestEviction(t *testing.T) {
	raw := func(seed uint64) []byte { return ser(t, simpleTx(seed, true)) }
	one := Cost(len(raw(1)), true)
	s := NewStore(4 * one) // room for exactly four

	// Known fees: the lowest fee rate goes first.
	fees := map[uint64]int64{100: 500, 101: 100, 102: 900, 103: 300}
	for seed := uint64(100); seed < 104; seed++ {
		if _, err := s.AddWithFee(raw(seed), fees[seed]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.AddWithFee(raw(104), 700); err != nil {
		t.Fatal(err)
	}
	if s.Has(simpleTx(101, true).TxHash()) || s.Len() != 4 {
		t.Fatal("the 100-sat transaction was not evicted")
	}
	// Lower than everything held: not admitted.
	if _, err := s.AddWithFee(raw(105), 50); !errors.Is(err, ErrFull) || s.Has(simpleTx(105, true).TxHash()) {
		t.Fatalf("low fee: %v", err)
	}
	// Unknown fees are kept longer than known ones...
	if _, err := s.Add(raw(106)); err != nil {
		t.Fatal(err)
	}
	if s.Has(simpleTx(103, true).TxHash()) {
		t.Fatal("the 300-sat transaction was not evicted for an unknown-fee one")
	}
	for seed := uint64(107); seed < 110; seed++ {
		if _, err := s.Add(raw(seed)); err != nil {
			t.Fatal(err)
		}
	}
	// ...and among them the oldest goes first.
	for seed := uint64(106); seed < 110; seed++ {
		if !s.Has(simpleTx(seed, true).TxHash()) {
			t.Fatalf("%d evicted", seed)
		}
	}
	if _, err := s.Add(raw(110)); err != nil {
		t.Fatal(err)
	}
	if s.Has(simpleTx(106, true).TxHash()) || !s.Has(simpleTx(107, true).TxHash()) {
		t.Fatal("not the oldest evicted")
	}
	// A fee learned later moves it to the front of the line.
	s.SetFee(simpleTx(109, true).TxHash(), 1)
	if _, err := s.Add(raw(111)); err != nil {
		t.Fatal(err)
	}
	if s.Has(simpleTx(109, true).TxHash()) {
		t.Fatal("SetFee did not reorder")
	}
	st := s.Stats()
	if st.Evictions != 8 || st.Count != 4 || st.Bytes > 4*one {
		t.Fatalf("stats %+v", st)
	}
	checkInvariants(t, s)

	// Alone larger than the bound.
	small := NewStore(100)
	if _, err := small.Add(raw(1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
}

// Random operations keep the indexes, the heap and the accounting consistent.
func TestStoreRandomOps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	one := Cost(len(ser(t, simpleTx(1, true))), true)
	s := NewStore(60 * one)
	var txs []*wire.MsgTx
	for step := range 3000 {
		switch op := rng.IntN(10); {
		case op < 6 || len(txs) == 0:
			var ins []wire.OutPoint
			if len(txs) > 0 && rng.IntN(3) == 0 { // a child, or a double spend
				p := txs[rng.IntN(len(txs))]
				ins = append(ins, wire.OutPoint{Hash: p.TxHash(), Index: uint32(rng.IntN(2))})
			}
			ins = append(ins, outpoint(uint64(rng.IntN(400))))
			tx := synthTx(uint64(step)+1000, ins, 1+rng.IntN(2), rng.IntN(3) > 0)
			fee := FeeUnknown
			if rng.IntN(2) == 0 {
				fee = int64(rng.IntN(10000))
			}
			s.AddWithFee(ser(t, tx), fee)
			txs = append(txs, tx)
		case op < 8:
			s.Remove(txs[rng.IntN(len(txs))].TxHash())
		default:
			blk := &wire.MsgBlock{Transactions: []*wire.MsgTx{simpleTx(9999, false)}}
			for range 5 {
				blk.Transactions = append(blk.Transactions, txs[rng.IntN(len(txs))])
			}
			blk.Transactions = append(blk.Transactions, simpleTx(uint64(rng.IntN(400)), true))
			s.RemoveConfirmed(blk)
		}
		if step%100 == 0 {
			checkInvariants(t, s)
		}
	}
	checkInvariants(t, s)
	t.Logf("stats %+v", s.Stats())
}

// Readers run while a writer adds and removes; run with -race.
func TestStoreConcurrentReaders(t *testing.T) {
	s := NewStore(0)
	const n = 2000
	txs := make([]*wire.MsgTx, n)
	raws := make([][]byte, n)
	for i := range txs {
		txs[i] = simpleTx(uint64(i)+5000, i%3 != 0)
		raws[i] = ser(t, txs[i])
	}
	for i := 0; i < n/2; i++ {
		s.Add(raws[i])
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wt := make([][32]byte, 0, 64)
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				i := (k*7 + r) % n
				if raw, ok := s.ByWTxID(txs[i].WitnessHash()); ok && !bytes.Equal(raw, raws[i]) {
					t.Errorf("wrong bytes for %d", i)
					return
				}
				wt = append(wt[:0], txs[i].WitnessHash(), txs[(i+1)%n].WitnessHash())
				found, _ := s.LookupWTxIDs(wt)
				for j, f := range found {
					if f != nil && !bytes.Equal(f, raws[(i+j)%n]) {
						t.Errorf("lookup: wrong bytes")
						return
					}
				}
				_ = s.Stats()
				_ = s.Len()
			}
		}()
	}
	for round := range 3 {
		for i := range n {
			if (i+round)%2 == 0 {
				s.Add(raws[i])
			} else {
				s.Remove(txs[i].TxHash())
			}
		}
		s.Reconcile(s.TxIDs()[:s.Len()/2])
		s.RemoveConfirmed(&wire.MsgBlock{Transactions: txs[:50]})
	}
	close(stop)
	wg.Wait()
	checkInvariants(t, s)
}

// TestLookupWTxIDsFees: the fees come with the transactions, unknown ones
// as FeeUnknown, and the hit and miss counters move as with LookupWTxIDs.
func TestLookupWTxIDsFees(t *testing.T) {
	s := NewStore(0)
	seg, leg := simpleTx(20, true), simpleTx(21, false)
	if _, err := s.Add(ser(t, seg)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddWithFee(ser(t, leg), 700); err != nil {
		t.Fatal(err)
	}
	found, fees, missing := s.LookupWTxIDsFees([][32]byte{seg.WitnessHash(), {9}, leg.TxHash(), seg.TxHash()})
	if found[0] == nil || found[1] != nil || found[2] == nil || found[3] != nil {
		t.Fatalf("found %v", found)
	}
	if fees[0] != FeeUnknown || fees[1] != FeeUnknown || fees[2] != 700 || fees[3] != FeeUnknown {
		t.Fatalf("fees %v", fees)
	}
	if len(missing) != 2 || missing[0] != 1 || missing[1] != 3 {
		t.Fatalf("missing %v", missing)
	}
	if st := s.Stats(); st.LookupHits != 2 || st.LookupMisses != 2 {
		t.Fatalf("%+v", st)
	}
}
