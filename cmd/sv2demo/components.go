package main

import (
	"context"
	"fmt"
	"path/filepath"
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

func (d *demo) startJDS(ctx context.Context) error {
	bin := d.bins["jds"]
	if bin == "" {
		return errSkipped
	}
	if err := d.ports("jds", "jds-api"); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`# jds for the demo: checks jdc's declared jobs against the same regtest node.
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

%s`, filepath.Join(d.dir, "jds", "data"), d.rpcSection(), d.addr["jds"], d.payout.addr, d.secret("jds"),
		d.addr["jds-api"], d.metrics["jds"], logSection)
	if _, err := d.launch(ctx, "jds", bin, cfg); err != nil {
		return err
	}
	d.say("  jds      JDP %s, pool API http://%s, metrics %s (pool payout %s)", d.addr["jds"], d.addr["jds-api"], d.metrics["jds"], d.payout.addr)
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
	if err := d.ports("sv2-pool"); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`# The test pool: takes jdc's custom jobs, checks them with jds, counts shares.
[pool]
listen = %q
authority-secret-key = %q
blocks-dir = %q

[jds]
api-url = %q

[metrics]
listen = %q

%s`, d.addr["sv2-pool"], d.secret("pool"), filepath.Join(d.dir, "sv2-pool", "blocks"), "http://"+d.addr["jds-api"],
		d.metrics["sv2-pool"], logSection)
	if _, err := d.launch(ctx, "sv2-pool", bin, cfg); err != nil {
		return err
	}
	d.say("  pool     Mining Protocol %s, metrics %s", d.addr["sv2-pool"], d.metrics["sv2-pool"])
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
	d.say("  jdc      devices %s, metrics %s (mode %s, solo fallback %s)", d.addr["jdc"], d.metrics["jdc"], d.o.mode, d.solo.addr)
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
