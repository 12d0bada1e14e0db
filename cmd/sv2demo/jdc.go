package main

import (
	"fmt"
	"path/filepath"
)

// jdcConfig is jdc's configuration for the demo: templates from tp, one
// pool + JDS pair (the test pool and jds), devices on loopback with no
// minimum difficulty (regtest), solo fallback to the demo's solo address,
// and found blocks also submitted to the node.
func (d *demo) jdcConfig() string {
	return fmt.Sprintf(`# jdc for the demo: one pool+JDS pair, solo fallback, CPU devices on loopback.
network = "regtest"
mode = %q
datadir = %q

[tp]
addr = %q
authority-public-key = %q

[[upstreams]]
pool = %q
pool-authority-public-key = %q
jds = %q
jds-authority-public-key = %q
user-identity = %q

[solo]
address = %q

[devices]
listen = %q
authority-secret-key = %q
# regtest: a CPU at a fraction of a hash per second must still find shares
min-difficulty = 1e-12

[failover]
return-after = "20s"

%s
[metrics]
listen = %q

%s`, d.o.mode, filepath.Join(d.dir, "jdc", "data"), d.addr["tp"], d.pub("tp"),
		d.addr["sv2-pool"], d.pub("pool"), d.addr["jds"], d.pub("jds"), demoUser,
		d.solo.addr, d.addr["jdc"], d.secret("jdc"), d.rpcSection(), d.metrics["jdc"], logSection)
}
