// Command buildbtcd builds (or finds cached) the btcd binary the regtest
// harness runs and prints its path. The Makefile runs it before the tests so
// that no test timeout includes the first build.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sv2kit/sv2kit/internal/regtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	path, err := regtest.BuildBtcd(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(path)
}
