package mining

import (
	"bytes"
	"errors"
	"sync"
	"testing"
)

func TestExtranonceAllocatorLayout(t *testing.T) {
	tests := []struct {
		name                 string
		prefix               []byte
		size, down, max      int
		wantErr              bool
		wantFull, wantIDSize int
	}{
		{"pool 4+16, devices 8", []byte{1, 2, 3, 4}, 16, 8, 0, false, 20, 8},
		{"solo 0+12, devices 8", nil, 12, 8, 0, false, 12, 4},
		{"one id byte", []byte{9}, 3, 2, 0, false, 4, 1},
		{"no id byte", []byte{9}, 8, 8, 0, true, 0, 0},
		{"too long", make([]byte, 20), 13, 4, 0, true, 0, 0},
		{"negative", nil, 8, -1, 0, true, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewExtranonceAllocator(tc.prefix, tc.size, tc.down, tc.max)
			if tc.wantErr {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.FullSize() != tc.wantFull {
				t.Fatalf("full size %d, want %d", a.FullSize(), tc.wantFull)
			}
			ext, err := a.Allocate(false)
			if err != nil {
				t.Fatal(err)
			}
			p, n := a.Prefix(ext)
			if n != tc.down || len(p) != len(tc.prefix)+tc.wantIDSize || !bytes.HasPrefix(p, tc.prefix) {
				t.Fatalf("extended prefix %x size %d", p, n)
			}
			std, _ := a.Allocate(true)
			sp, sn := a.Prefix(std)
			if sn != 0 || len(sp) != tc.wantFull || !bytes.HasPrefix(sp, tc.prefix) {
				t.Fatalf("standard prefix %x size %d", sp, sn)
			}
			if bytes.HasPrefix(sp, p) {
				t.Fatalf("standard prefix %x overlaps extended %x", sp, p)
			}
		})
	}
}

func TestExtranonceAllocatorExhaustAndReuse(t *testing.T) {
	a, err := NewExtranonceAllocator([]byte{0xaa}, 2, 1, 0) // one id byte: 256 ids
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var all []Extranonce
	for i := 0; i < 256; i++ {
		e, err := a.Allocate(i%2 == 0)
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		p, _ := a.Prefix(e)
		key := string(p[:2])
		if seen[key] {
			t.Fatalf("id prefix %x handed out twice", p)
		}
		seen[key] = true
		all = append(all, e)
	}
	if _, err := a.Allocate(false); !errors.Is(err, ErrExtranonceExhausted) {
		t.Fatalf("want exhausted, got %v", err)
	}
	a.Release(all[7])
	a.Release(all[3])
	a.Release(all[3]) // twice is harmless
	if a.InUse() != 254 {
		t.Fatalf("in use %d", a.InUse())
	}
	// Oldest released first.
	if e, _ := a.Allocate(false); e.ID != all[7].ID {
		t.Fatalf("reused %d, want %d", e.ID, all[7].ID)
	}
	if e, _ := a.Allocate(false); e.ID != all[3].ID {
		t.Fatalf("reused %d, want %d", e.ID, all[3].ID)
	}
	if _, err := a.Allocate(false); err == nil {
		t.Fatal("want exhausted")
	}
}

func TestExtranonceAllocatorLimitAndRebase(t *testing.T) {
	a, _ := NewExtranonceAllocator([]byte{1, 2, 3, 4}, 8, 4, 2)
	e1, _ := a.Allocate(false)
	e2, _ := a.Allocate(true)
	if _, err := a.Allocate(false); !errors.Is(err, ErrExtranonceExhausted) {
		t.Fatal("channel limit not enforced")
	}
	// Failover: another pool with a shorter prefix and more room.
	if err := a.Rebase([]byte{9, 9}, 12); err != nil {
		t.Fatal(err)
	}
	p1, n1 := a.Prefix(e1)
	p2, n2 := a.Prefix(e2)
	if n1 != 4 || !bytes.Equal(p1, []byte{9, 9, 0, 0, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("rebased extended %x %d", p1, n1)
	}
	if n2 != 0 || len(p2) != 14 || p2[9] != 1 {
		t.Fatalf("rebased standard %x %d", p2, n2)
	}
	if a.FullSize() != 14 {
		t.Fatal(a.FullSize())
	}
	// A pool whose space cannot hold the devices' part is refused.
	if err := a.Rebase(nil, 4); err == nil {
		t.Fatal("rebase leaving no id byte accepted")
	}
}

func TestExtranonceAllocatorConcurrent(t *testing.T) {
	a, _ := NewExtranonceAllocator(nil, 6, 4, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[uint64]bool{}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				e, err := a.Allocate(false)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if ids[e.ID] {
					t.Errorf("id %d twice", e.ID)
				}
				ids[e.ID] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if a.InUse() != 1600 {
		t.Fatal(a.InUse())
	}
}
