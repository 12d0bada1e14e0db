package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemoFindsBlocks is `make demo BLOCKS=2` as a test: every daemon built
// and started as a process, two blocks mined through jdc and accepted by
// the node, exit without error and nothing left running.
func TestDemoFindsBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every daemon and runs a regtest network")
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(root, "cmd", b, "main.go")); err != nil {
			t.Skipf("cmd/%s is not in this tree", b)
		}
	}
	dir := t.TempDir()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	err = run(ctx, []string{"-blocks", "2", "-dir", dir, "-interval", "2s", "-hash-rate", "0.3", "-timeout", "3m"}, &out, &out)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "done: the node accepted") {
		t.Fatalf("no success line:\n%s", out.String())
	}
	// Every daemon was stopped: their logs end, no process left (Pdeathsig
	// would only catch them when this test process dies).
	for _, name := range []string{"tp", "jds", "sv2-pool", "jdc", "sv2-cpuminer"} {
		if _, err := os.Stat(filepath.Join(dir, "logs", name+".log")); err != nil {
			t.Errorf("%s did not run: %v", name, err)
		}
	}
	t.Logf("%s", out.String())
}
