package main

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// validDrill are the -drill-kind values.
var validDrill = map[string]bool{"reject-jobs": true, "reject-shares": true, "kill-pool": true, "kill-jds": true, "kill-tp": true}

// drillTarget is the daemon a drill acts on.
func (d *demo) drillTarget() string {
	switch d.o.drillKind {
	case "kill-jds":
		return "jds"
	case "kill-tp":
		return "tp"
	}
	return "sv2-pool"
}

// drillCheck says why a drill cannot run (a daemon it needs is missing).
func (d *demo) drillCheck() error {
	if d.proc("jdc") == nil {
		return errors.New("the failover drill needs jdc")
	}
	if d.proc(d.drillTarget()) == nil {
		return fmt.Errorf("the failover drill needs %s", d.drillTarget())
	}
	return nil
}

// drillStep makes pair-0 (or tp) fail (fail=true) or recover.
func (d *demo) drillStep(ctx context.Context, fail bool) error {
	name := d.drillTarget()
	p := d.proc(name)
	switch d.o.drillKind {
	case "reject-jobs", "reject-shares":
		sig, what := syscall.SIGUSR1, "custom job"
		if d.o.drillKind == "reject-shares" {
			sig, what = syscall.SIGUSR2, "share"
		}
		if err := p.cmd.Process.Signal(sig); err != nil {
			return fmt.Errorf("signal %s: %w", name, err)
		}
		if fail {
			d.say(">>> drill: pair-0's pool now rejects every %s; jdc should leave pair-0", what)
		} else {
			d.say(">>> drill: pair-0's pool accepts every %s again; jdc should return once pair-0 stayed healthy for failover.return-after (20s)", what)
		}
		return nil
	}
	if fail {
		p.down = true
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		if name == "tp" {
			d.say(">>> drill: tp killed; jdc keeps its devices on the last work and reconnects when tp is back")
		} else {
			d.say(">>> drill: %s of pair-0 killed; jdc should leave pair-0", name)
		}
		return nil
	}
	np, err := startProc(p.name, p.bin, p.dir, p.logPath, p.args...)
	if err != nil {
		return err
	}
	for i, q := range d.procs {
		if q == p {
			d.procs[i] = np
		}
	}
	if err := waitMetrics(ctx, np, d.metrics[name], 60*time.Second); err != nil {
		return err
	}
	d.say(">>> drill: %s restarted on %s; jdc should reconnect and return to pair-0", name, d.addr[name])
	return nil
}
