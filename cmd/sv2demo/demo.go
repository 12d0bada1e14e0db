package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"

	"github.com/sv2kit/sv2kit/internal/regtest"
	"github.com/sv2kit/sv2kit/sv2/noise"
)

// binaries are the commands the demo runs, in start order.
var binaries = []string{"tp", "jds", "sv2-pool", "jdc", "sv2-cpuminer"}

// The user identity jdc uses towards the pool and the JDS.
const demoUser = "demo-farm"

// demo is one run: the node, the daemons and what the summary needs.
type demo struct {
	o    options
	root string
	dir  string
	out  io.Writer

	logMu sync.Mutex
	logf  *os.File // logs/demo.log: the demo's own progress lines

	bins  map[string]string
	node  *regtest.Node
	procs []*proc

	keys      map[string]*btcec.PrivateKey
	payouts   []address // each pair's pool payout (its JDS's pool.payout-address)
	solo      address   // jdc's solo fallback
	addr      map[string]string
	metrics   map[string]string
	notes     []string
	offsets   map[string]int64 // -v: how far each daemon log was read
	startedAt time.Time

	txCancel context.CancelFunc
	txWG     sync.WaitGroup
	txSent   atomic.Int64
	txFailed atomic.Int64
	txLast   atomic.Value // string: last generator error

	// Blocks since the miners started, by who the coinbase pays.
	startHeight int32
	scanned     int32
	pairBlocks  []int
	soloBlocks  int
	otherBlocks int
}

type address struct {
	addr   string
	script []byte
}

func newDemo(o options, root, dir string, out io.Writer) *demo {
	d := &demo{o: o, root: root, dir: dir, out: out, keys: map[string]*btcec.PrivateKey{},
		addr: map[string]string{}, metrics: map[string]string{}, offsets: map[string]int64{}}
	os.MkdirAll(filepath.Join(dir, "logs"), 0o700)
	d.logf, _ = os.OpenFile(filepath.Join(dir, "logs", "demo.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	return d
}

func (d *demo) closeLog() {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	if d.logf != nil {
		d.logf.Close()
		d.logf = nil
	}
}

// logLine writes to logs/demo.log only.
func (d *demo) logLine(format string, args ...any) {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	if d.logf != nil {
		fmt.Fprintf(d.logf, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
	}
}

// say prints a progress line and logs it.
func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
	d.logLine(format, args...)
}

// note records something missing, printed with every summary.
func (d *demo) note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	d.notes = append(d.notes, n)
	d.say("NOTE: %s", n)
}

func (d *demo) run(ctx context.Context) error {
	d.startedAt = time.Now()
	d.say("sv2demo: working directory %s", d.dir)
	d.say("building %s ...", strings.Join(binaries, ", "))
	bins, err := buildBinaries(ctx, d.root, filepath.Join(d.dir, "bin"), binaries)
	if err != nil {
		return err
	}
	d.bins = bins
	var missing []string
	for _, b := range binaries {
		if bins[b] == "" {
			missing = append(missing, "cmd/"+b)
		}
	}
	if len(missing) > 0 {
		d.note("not in this tree yet, so not started: %s", strings.Join(missing, ", "))
	}
	if err := d.makeKeys(); err != nil {
		return err
	}

	d.say("starting btcd (regtest; the first run builds btcd and mines to segwit activation) ...")
	node, err := regtest.StartProcess(ctx, filepath.Join(d.dir, "btcd"), regtest.Options{
		Logf: func(format string, args ...any) { d.logLine("btcd: "+format, args...) },
	})
	if err != nil {
		return fmt.Errorf("start btcd: %w", err)
	}
	d.node = node
	h, err := node.Height(ctx)
	if err != nil {
		return fmt.Errorf("btcd: %w", err)
	}
	d.say("  btcd     rpc %s, height %d (log %s)", node.RPCAddr(), h, node.LogPath())
	// Nothing but the pipeline mines from here on (the generator only sends).
	d.startHeight, d.scanned = h, h
	d.startTxGenerator(ctx)

	for _, start := range []struct {
		name string
		fn   func(context.Context) error
	}{
		{"tp", d.startTP},
		{"jds", d.startJDS},
		{"sv2-pool", d.startPool},
		{"jdc", d.startJDC},
		{"sv2-cpuminer", d.startMiners},
	} {
		if err := ctx.Err(); err != nil {
			return nil
		}
		if err := start.fn(ctx); err != nil {
			if errors.Is(err, errSkipped) {
				continue
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("start %s: %w", start.name, err)
		}
	}
	if d.o.blocks > 0 && (d.proc("jdc") == nil || d.proc("sv2-cpuminer") == nil) {
		return fmt.Errorf("-blocks %d: jdc and the CPU miners must run to find blocks, and they could not be started (%s)",
			d.o.blocks, strings.Join(d.notes, "; "))
	}
	if d.bins["jdc"] == "" {
		d.say("jdc is missing: the pool takes only custom jobs, so no miner can mine; showing the rest of the network.")
	}
	d.startedAt = time.Now() // the summary's clock: time since mining started
	if d.o.blocks > 0 {
		d.say("running until the node accepted %d blocks mined through jdc (timeout %s) ...", d.o.blocks, d.o.timeout)
	} else {
		d.say("running; Ctrl-C stops everything.")
	}
	return d.loop(ctx)
}

// errSkipped: a component is not started because its binary (or one it
// needs) is missing; already noted.
var errSkipped = errors.New("skipped")

func (d *demo) loop(ctx context.Context) error {
	t := time.NewTicker(d.o.interval)
	defer t.Stop()
	var drill <-chan time.Time
	drillStep := 0
	if d.o.drill > 0 {
		if err := d.drillCheck(); err != nil {
			d.note("%v; no drill", err)
		} else {
			drill = time.After(d.o.drill)
		}
	}
	for {
		for _, p := range d.procs {
			if !p.down && !p.running() {
				return fmt.Errorf("%s exited unexpectedly (%v); end of its log (%s):\n%s", p.name, p.err, p.logPath, p.logTail(4000))
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				d.summary(context.Background())
				return fmt.Errorf("timed out after %s with %d of %d blocks accepted", d.o.timeout, d.accepted(), d.o.blocks)
			}
			d.say("\ninterrupted; stopping ...")
			return nil
		case <-drill:
			drillStep++
			if err := d.drillStep(ctx, drillStep == 1); err != nil {
				return fmt.Errorf("drill: %w", err)
			}
			if drillStep == 1 {
				drill = time.After(d.o.drill)
			} else {
				drill = nil
			}
			continue
		case <-t.C:
		}
		if err := d.summary(ctx); err != nil && ctx.Err() == nil {
			d.say("summary: %v", err)
		}
		if d.o.verbose {
			d.echoWarnings()
		}
		if d.o.blocks > 0 && d.accepted() >= d.o.blocks {
			d.say("done: the node accepted %d blocks mined through jdc (%s).", d.accepted(), d.blockSplit())
			return nil
		}
	}
}

// proc finds a running daemon by name.
func (d *demo) proc(name string) *proc {
	for _, p := range d.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

// accepted is the number of blocks since the miners started that pay the
// pool or jdc's solo address (nothing else mines on this node).
func (d *demo) accepted() int {
	n := d.soloBlocks
	for _, b := range d.pairBlocks {
		n += b
	}
	return n
}

// shutdown stops the miners first and the node last.
func (d *demo) shutdown() {
	for i := len(d.procs) - 1; i >= 0; i-- {
		p := d.procs[i]
		if p.running() {
			d.logLine("stopping %s", p.name)
			p.stop(10 * time.Second)
		}
	}
	if d.txCancel != nil {
		d.txCancel()
		d.txWG.Wait()
	}
	if d.node != nil {
		if err := d.node.Stop(); err != nil {
			d.logLine("btcd stop: %v", err)
		}
	}
}

// makeKeys creates the authority keys and the payout addresses.
func (d *demo) makeKeys() error {
	names := []string{"tp", "jdc", "solo"}
	for i := 0; i < d.o.pairs; i++ {
		names = append(names, "pool"+pairName(i), "payout"+pairName(i))
	}
	for _, n := range names {
		k, err := noise.GenerateKey(nil)
		if err != nil {
			return err
		}
		d.keys[n] = k
	}
	for i := 0; i < d.o.pairs; i++ {
		a, err := p2wpkh(d.keys["payout"+pairName(i)])
		if err != nil {
			return err
		}
		d.payouts = append(d.payouts, a)
	}
	d.pairBlocks = make([]int, d.o.pairs)
	var err error
	d.solo, err = p2wpkh(d.keys["solo"])
	return err
}

func p2wpkh(k *btcec.PrivateKey) (address, error) {
	a, err := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(k.PubKey().SerializeCompressed()), &chaincfg.RegressionNetParams)
	if err != nil {
		return address{}, err
	}
	script, err := txscript.PayToAddrScript(a)
	if err != nil {
		return address{}, err
	}
	return address{addr: a.EncodeAddress(), script: script}, nil
}

func (d *demo) pub(name string) string {
	return noise.EncodeAuthorityPublicKey(noise.PublicKey(d.keys[name]))
}

func (d *demo) secret(name string) string { return noise.EncodeSecretKey(d.keys[name]) }

// ports reserves loopback addresses for a component: its listen address and
// its metrics address.
func (d *demo) ports(name string, extra ...string) error {
	for _, k := range append([]string{name, name + "-metrics"}, extra...) {
		a, err := freePort()
		if err != nil {
			return err
		}
		d.addr[k] = a
	}
	d.metrics[name] = d.addr[name+"-metrics"]
	return nil
}

// launch writes cfg to <dir>/<name>/<name>.toml, starts the binary with it
// and waits until its metrics answer.
func (d *demo) launch(ctx context.Context, name, bin, cfg string, extraArgs ...string) (*proc, error) {
	wd := filepath.Join(d.dir, name)
	if err := os.MkdirAll(wd, 0o700); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(wd, name+".toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(d.dir, "logs", name+".log")
	p, err := startProc(name, bin, wd, logPath, append([]string{"-config", cfgPath}, extraArgs...)...)
	if err != nil {
		return nil, err
	}
	d.procs = append(d.procs, p)
	if err := waitMetrics(ctx, p, d.metrics[name], 60*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}

// startTxGenerator sends a wallet transaction every txInterval at a random
// fee rate, so templates carry real transactions with fees.
func (d *demo) startTxGenerator(ctx context.Context) {
	if d.o.txInterval <= 0 {
		return
	}
	ctx, d.txCancel = context.WithCancel(ctx)
	d.txWG.Add(1)
	go func() {
		defer d.txWG.Done()
		w := d.node.Wallet()
		rates := []float64{1, 2, 3, 5, 8, 13, 21, 34}
		t := time.NewTicker(d.o.txInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := w.Send(sctx, regtest.SendOpts{FeeRate: rates[rand.IntN(len(rates))], Outputs: 2})
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				d.txFailed.Add(1)
				d.txLast.Store(err.Error())
				d.logLine("txgen: %v", err)
				continue
			}
			d.txSent.Add(1)
		}
	}()
}

// echoWarnings prints new WARN and ERROR lines of the daemons' logs (-v).
func (d *demo) echoWarnings() {
	for _, p := range d.procs {
		f, err := os.Open(p.logPath)
		if err != nil {
			continue
		}
		f.Seek(d.offsets[p.name], io.SeekStart)
		b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
		f.Close()
		last := strings.LastIndexByte(string(b), '\n')
		if last < 0 {
			continue
		}
		d.offsets[p.name] += int64(last + 1)
		for _, line := range strings.Split(string(b[:last]), "\n") {
			if strings.Contains(line, "[WARN]") || strings.Contains(line, "[ERROR]") {
				fmt.Fprintf(d.out, "    %-12s %s\n", p.name+":", line)
			}
		}
	}
}
