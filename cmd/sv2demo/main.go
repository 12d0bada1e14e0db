// Command sv2demo runs a whole Stratum V2 network on loopback, for `make
// demo`: a btcd regtest node with a transaction generator, tp, jds, the test
// pool (sv2-pool), jdc and CPU miners (sv2-cpuminer), each daemon a child
// process built into a temporary directory and configured with a TOML file.
// It prints a live summary every few seconds; Ctrl-C stops everything and
// removes what it started. With -blocks N it exits 0 by itself once the node
// accepted N blocks mined through the pipeline. See docs/demo.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// options are the demo's flags.
type options struct {
	blocks     int
	miners     int
	hashRate   float64
	interval   time.Duration
	txInterval time.Duration
	timeout    time.Duration
	dir        string
	keep       bool
	mode       string
	verbose    bool
	drill      time.Duration
	drillKind  string
	pairs      int
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "sv2demo:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("sv2demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.blocks, "blocks", 0, "stop with exit status 0 once the node accepted this many blocks mined through jdc (0: run until Ctrl-C)")
	fs.IntVar(&o.miners, "miners", 3, "CPU mining devices connected to jdc")
	fs.IntVar(&o.pairs, "pairs", 1, "pool+JDS pairs (each a jds and an sv2-pool process), in jdc's failover order")
	fs.Float64Var(&o.hashRate, "hash-rate", 0.1, "hash-rate cap per device, hashes/s (regtest: about every other hash is a block)")
	fs.DurationVar(&o.interval, "interval", 5*time.Second, "time between summary lines")
	fs.DurationVar(&o.txInterval, "tx-interval", time.Second, "time between generated transactions (0: none)")
	fs.DurationVar(&o.timeout, "timeout", 0, "give up (exit 1) after this long; default 15m with -blocks, none without")
	fs.StringVar(&o.dir, "dir", "", "working directory for binaries, configs, data and logs (default: a new temporary directory)")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory at the end (it is always kept after a failure)")
	fs.StringVar(&o.mode, "mode", "full-template", "jdc mode: full-template or coinbase-only")
	fs.BoolVar(&o.verbose, "v", false, "also print the daemons' warnings and errors as they happen")
	fs.DurationVar(&o.drill, "drill", 0, "failover drill: this long after mining starts pair-0 fails (see -drill-kind), as long again later it recovers; 0: off")
	fs.StringVar(&o.drillKind, "drill-kind", "reject-jobs", "what fails: reject-jobs, reject-shares (the pool's knobs), kill-pool, kill-jds or kill-tp (the process is killed and later restarted on the same address)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sv2demo [flags]   (normally: make demo [BLOCKS=N])\n\n"+
			"Runs btcd (regtest) + transaction generator, tp, jds, sv2-pool, jdc and CPU miners on loopback\n"+
			"and prints a live summary. Ctrl-C stops everything.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case o.blocks < 0:
		return o, errors.New("-blocks must not be negative")
	case o.pairs < 1 || o.pairs > 3:
		return o, errors.New("-pairs must be 1..3")
	case o.miners < 1 || o.miners > 100:
		return o, errors.New("-miners must be 1..100")
	case o.hashRate <= 0:
		return o, errors.New("-hash-rate must be positive (on regtest an uncapped CPU finds blocks as fast as it can submit them)")
	case o.interval < 500*time.Millisecond:
		return o, errors.New("-interval must be at least 500ms")
	case !validDrill[o.drillKind]:
		return o, fmt.Errorf("-drill-kind %q: use reject-jobs, reject-shares, kill-pool, kill-jds or kill-tp", o.drillKind)
	case o.mode != "full-template" && o.mode != "coinbase-only":
		return o, fmt.Errorf("-mode %q: use full-template or coinbase-only", o.mode)
	}
	if o.timeout == 0 && o.blocks > 0 {
		o.timeout = 15 * time.Minute
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if o.blocks > 0 {
		if _, err := os.Stat(filepath.Join(root, "cmd", "jdc", "main.go")); err != nil {
			return fmt.Errorf("-blocks %d needs jdc (cmd/jdc), which is not in this tree yet: "+
				"the pool only mines miners' custom jobs, so without jdc no CPU miner can find a block", o.blocks)
		}
	}
	dir := o.dir
	temp := dir == ""
	if temp {
		if dir, err = os.MkdirTemp("", "sv2demo-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	d := newDemo(o, root, dir, stdout)
	defer d.closeLog()
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	err = d.run(ctx)
	d.shutdown()
	for _, n := range d.notes {
		fmt.Fprintf(stdout, "note: %s\n", n)
	}
	switch {
	case err != nil:
		fmt.Fprintf(stdout, "\nsv2demo: failed; everything is kept in %s (logs in %s)\n", dir, filepath.Join(dir, "logs"))
		return err
	case o.keep || !temp:
		fmt.Fprintf(stdout, "sv2demo: kept %s\n", dir)
	default:
		d.closeLog()
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
		fmt.Fprintf(stdout, "sv2demo: removed %s\n", dir)
	}
	return nil
}
