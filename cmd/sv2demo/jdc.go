package main

import (
	"fmt"
	"path/filepath"
	"strings"
)

// jdcConfig is jdc's configuration for the demo: templates from tp, the
// pool + JDS pairs in order, devices on loopback with no minimum difficulty
// (regtest), solo fallback to the demo's solo address, and found blocks
// also submitted to the node.
func (d *demo) jdcConfig() string {
	var ups strings.Builder
	for i := 0; i < d.o.pairs; i++ {
		fmt.Fprintf(&ups, `[[upstreams]] # pair-%d
pool = %q
pool-authority-public-key = %q
jds = %q
jds-authority-public-key = %q
user-identity = %q

`, i, d.addr["sv2-pool"+pairName(i)], d.pub("pool"+pairName(i)), d.addr["jds"+pairName(i)], d.pub("pool"+pairName(i)), demoUser)
	}
	return fmt.Sprintf(`# jdc for the demo: pool+JDS pairs in failover order, solo fallback, CPU devices on loopback.
network = "regtest"
mode = %q
datadir = %q

[tp]
addr = %q
authority-public-key = %q

%s[solo]
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

%s`, d.o.mode, filepath.Join(d.dir, "jdc", "data"), d.addr["tp"], d.pub("tp"), ups.String(),
		d.solo.addr, d.addr["jdc"], d.secret("jdc"), d.rpcSection(), d.metrics["jdc"], logSection)
}
