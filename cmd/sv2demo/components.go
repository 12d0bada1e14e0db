package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
)

// Each start function writes one daemon's TOML configuration, starts it and
// waits for its metrics endpoint. A missing binary is skipped (errSkipped)
// after a note, so the demo runs whatever exists.

func (d *demo) rpcSection() string {
	return fmt.Sprintf("[node]\nurl = %q\nuser = %q\npassword = %q\n",
		"http://"+d.node.RPCAddr(), d.node.RPCUser(), d.node.RPCPass())
}

// logSection keeps the daemons' logs at info: the demo's log files are for
// reading after the fact.
const logSection = "[log]\nlevel = \"info\"\nformat = \"text\"\n"

func (d *demo) startTP(ctx context.Context) error {
	bin := d.bins["tp"]
	if bin == "" {
		return errSkipped
	}
	if err := d.ports("tp"); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`# tp for the demo: templates from the btcd regtest node (RPC + long-poll; btcd has no ZMQ).
network = "regtest"
datadir = %q

%s
[server]
listen = %q

[keys]
authority-secret-key = %q

[templates]
interval = "1s"

[metrics]
listen = %q

%s`, filepath.Join(d.dir, "tp", "data"), d.rpcSection(), d.addr["tp"], d.secret("tp"), d.metrics["tp"], logSection)
	if _, err := d.launch(ctx, "tp", bin, cfg); err != nil {
		return err
	}
	d.say("  tp       TDP %s, metrics %s", d.addr["tp"], d.metrics["tp"])
	return nil
}

// pairName is the daemon name suffix of pool+JDS pair i: "" for the
// first, "-2", "-3" for the others (jds, jds-2, sv2-pool, sv2-pool-2).
func pairName(i int) string {
	if i == 0 {
		return ""
	}
	return fmt.Sprintf("-%d", i+1)
}

func (d *demo) startJDS(ctx context.Context) error {
	bin := d.bins["jds"]
	if bin == "" {
		return errSkipped
	}
	for i := 0; i < d.o.pairs; i++ {
		if err := d.startJDSPair(ctx, bin, i); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) startJDSPair(ctx context.Context, bin string, i int) error {
	name := "jds" + pairName(i)
	if err := d.ports(name, name+"-api"); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`# jds of pair-%d for the demo: checks jdc's declared jobs against the regtest node.
network = "regtest"
datadir = %q

%s
[jds]
listen = %q
full-template = true
coinbase-only = true

[pool]
payout-address = %q

[keys]
authority-secret-key = %q

[api]
listen = %q

[metrics]
listen = %q

%s`, i, filepath.Join(d.dir, name, "data"), d.rpcSection(), d.addr[name], d.payouts[i].addr, d.secret("pool"+pairName(i)),
		d.addr[name+"-api"], d.metrics[name], logSection)
	if _, err := d.launch(ctx, name, bin, cfg); err != nil {
		return err
	}
	d.say("  %-8s JDP %s, pool API http://%s, metrics %s (pair-%d payout %s)", name, d.addr[name], d.addr[name+"-api"],
		d.metrics[name], i, d.payouts[i].addr)
	return nil
}

func (d *demo) startPool(ctx context.Context) error {
	bin := d.bins["sv2-pool"]
	if bin == "" {
		return errSkipped
	}
	if d.addr["jds-api"] == "" {
		d.note("sv2-pool needs jds's pool API; not started")
		return errSkipped
	}
	for i := 0; i < d.o.pairs; i++ {
		if err := d.startPoolPair(ctx, bin, i); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) startPoolPair(ctx context.Context, bin string, i int) error {
	name := "sv2-pool" + pairName(i)
	if err := d.ports(name); err != nil {
		return err
	}
	// The pool and its JDS share one authority key, as a pool operator's
	// would: jdc pins it for both.
	cfg := fmt.Sprintf(`# The test pool of pair-%d: takes jdc's custom jobs, checks them with its jds, counts shares.
[pool]
listen = %q
authority-secret-key = %q
blocks-dir = %q

[jds]
api-url = %q

[metrics]
listen = %q

%s`, i, d.addr[name], d.secret("pool"+pairName(i)), filepath.Join(d.dir, name, "blocks"),
		"http://"+d.addr["jds"+pairName(i)+"-api"], d.metrics[name], logSection)
	if _, err := d.launch(ctx, name, bin, cfg); err != nil {
		return err
	}
	d.say("  %-8s Mining Protocol %s, metrics %s", strings.TrimPrefix(name, "sv2-"), d.addr[name], d.metrics[name])
	return nil
}

func (d *demo) startJDC(ctx context.Context) error {
	bin := d.bins["jdc"]
	if bin == "" {
		return errSkipped
	}
	switch {
	case d.addr["tp"] == "":
		d.note("jdc needs tp; not started")
		return errSkipped
	case d.addr["sv2-pool"] == "":
		d.note("jdc needs the pool and jds; not started")
		return errSkipped
	}
	if err := d.ports("jdc"); err != nil {
		return err
	}
	cfg := d.jdcConfig()
	if _, err := d.launch(ctx, "jdc", bin, cfg); err != nil {
		return err
	}
	d.say("  jdc      devices %s, metrics %s (mode %s, %d pool+JDS pair(s), solo fallback %s)", d.addr["jdc"], d.metrics["jdc"], d.o.mode, d.o.pairs, d.solo.addr)
	return nil
}

func (d *demo) startMiners(ctx context.Context) error {
	bin := d.bins["sv2-cpuminer"]
	if bin == "" {
		return errSkipped
	}
	if d.addr["jdc"] == "" {
		return errSkipped
	}
	if err := d.ports("sv2-cpuminer"); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`# CPU mining devices on jdc's device port.
[miner]
addr = %q
authority-public-key = %q
user = "cpu"
devices = %d
hash-rate = %g

[metrics]
listen = %q

%s`, d.addr["jdc"], d.pub("jdc"), d.o.miners, d.o.hashRate, d.metrics["sv2-cpuminer"], logSection)
	if _, err := d.launch(ctx, "sv2-cpuminer", bin, cfg); err != nil {
		return err
	}
	d.say("  miners   %d CPU devices at %g H/s each, metrics %s", d.o.miners, d.o.hashRate, d.metrics["sv2-cpuminer"])
	return nil
}
