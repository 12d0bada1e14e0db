package templates

import "testing"

func TestFitDropsLowestFeerateLeaves(t *testing.T) {
	big := int64(1_000_000)
	mk := func(id byte, fee, weight int64, deps ...int) Tx {
		return Tx{TxID: [32]byte{id}, WTxID: [32]byte{id}, Fee: fee, Weight: weight, SigOps: 4, Depends: deps}
	}
	tests := []struct {
		name      string
		txs       []Tx
		res       Reservation
		wantIDs   []byte
		wantFees  int64
		wantError bool
	}{
		{"fits", []Tx{mk(1, 10, 1000), mk(2, 20, 1000)}, Reservation{OutputBytes: 100}, []byte{1, 2}, 0, false},
		// 4 × ~1M weight: one must go; tx 1 has the lowest feerate but tx 2
		// spends it, so the cheapest leaf (tx 3) goes instead... unless the
		// child is cheaper still: here tx 2 (child) is the lowest leaf.
		{"parent protected", []Tx{mk(1, 1, big), mk(2, 50, big, 0), mk(3, 40, big), mk(4, 60, big)}, Reservation{OutputBytes: 1000}, []byte{1, 2, 4}, 40, false},
		{"child dropped then parent", []Tx{mk(1, 1, big), mk(2, 2, big, 0), mk(3, 40, big), mk(4, 60, big)}, Reservation{OutputBytes: 250_000}, []byte{3, 4}, 3, false},
		{"reservation too large", []Tx{mk(1, 1, 100)}, Reservation{OutputBytes: 1_000_000}, nil, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kept, fees, err := Fit(tc.txs, tc.res)
			if tc.wantError {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fees != tc.wantFees {
				t.Errorf("dropped fees %d, want %d", fees, tc.wantFees)
			}
			var ids []byte
			var w int64
			for _, k := range kept {
				ids = append(ids, k.TxID[0])
				w += k.Weight
				for _, d := range k.Depends {
					if d < 0 || d >= len(kept) {
						t.Fatalf("dangling dependency %d", d)
					}
				}
			}
			if string(ids) != string(tc.wantIDs) {
				t.Errorf("kept %v, want %v", ids, tc.wantIDs)
			}
			if w+1168+4*int64(tc.res.OutputBytes) > MaxBlockWeight {
				t.Errorf("weight %d leaves no room", w)
			}
		})
	}
}

func TestFitSigops(t *testing.T) {
	txs := []Tx{{TxID: [32]byte{1}, Fee: 100, Weight: 400, SigOps: 79_000}, {TxID: [32]byte{2}, Fee: 1, Weight: 400, SigOps: 500}}
	kept, _, err := Fit(txs, Reservation{OutputBytes: 50, SigOps: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || kept[0].TxID[0] != 1 {
		t.Fatalf("kept %+v", kept)
	}
}

func TestBuildRecomputesCommitmentWhenDropping(t *testing.T) {
	big := int64(1_300_000)
	txs := []Tx{
		{TxID: [32]byte{1}, WTxID: [32]byte{11}, Fee: 30, Weight: big},
		{TxID: [32]byte{2}, WTxID: [32]byte{12}, Fee: 20, Weight: big},
		{TxID: [32]byte{3}, WTxID: [32]byte{13}, Fee: 10, Weight: big},
	}
	src := &Source{Height: 200, CoinbaseValue: 5000, Txs: txs, CurTime: 10, MinTime: 5,
		WitnessCommitment: WitnessCommitmentScript(WitnessCommitment([][32]byte{{11}, {12}, {13}}))}
	tpl, err := Build(src, Reservation{OutputBytes: 30_000})
	if err != nil {
		t.Fatal(err)
	}
	if len(tpl.Txs) != 2 || tpl.ValueRemaining != 4990 || tpl.Fees != 50 {
		t.Fatalf("txs %d value %d fees %d", len(tpl.Txs), tpl.ValueRemaining, tpl.Fees)
	}
	outs, err := ParseOutputs(tpl.Outputs, int(tpl.OutputCount))
	if err != nil {
		t.Fatal(err)
	}
	want := WitnessCommitmentScript(WitnessCommitment([][32]byte{{11}, {12}}))
	if string(outs[0].PkScript) != string(want) {
		t.Fatal("commitment not recomputed for the kept transactions")
	}
	if tpl.CoinbaseLockTime != 199 || tpl.Timestamp != 10 || len(tpl.MerklePath) != 2 {
		t.Fatalf("fields %+v", tpl)
	}
	next := EmptyNext(tpl, 150)
	if next.Height != 201 || next.ValueRemaining != Subsidy(201, 150) || next.ValueRemaining != 25*100_000_000 || len(next.MerklePath) != 0 {
		t.Fatalf("empty next %+v", next)
	}
}
