// Package chains is the one table of what a network name decides for the
// daemons: default ports, the node's RPC port and datadir, address format,
// and the consensus rules the template code must follow.
package chains

import (
	"fmt"
	"sort"

	"github.com/btcsuite/btcd/chaincfg"

	"github.com/sv2kit/sv2kit/internal/config"
)

// Network is one network's settings.
type Network struct {
	// Name is the configuration value: main, testnet4, test, signet, regtest.
	Name string
	// TPPort is sv2-tp's Template Distribution port (DIGEST §8.1).
	TPPort int
	// RPCPort is Bitcoin Core's default RPC port.
	RPCPort int
	// CoreDir is Bitcoin Core's datadir subdirectory ("" on mainnet): where
	// its .cookie file lives.
	CoreDir string
	// Params gives the address format (testnet4 shares testnet3's).
	Params *chaincfg.Params
	// HalvingInterval is the subsidy halving interval in blocks.
	HalvingInterval int64
	// MinDifficultyBlocks: the 20-minute minimum-difficulty rule applies
	// (testnets), so nBits cannot be known before the node answers.
	MinDifficultyBlocks bool
	// NoRetargeting: difficulty never changes (regtest).
	NoRetargeting bool
}

var table = map[string]Network{
	"main":     {Name: "main", TPPort: 8336, RPCPort: 8332, Params: &chaincfg.MainNetParams, HalvingInterval: 210_000},
	"testnet4": {Name: "testnet4", TPPort: 48336, RPCPort: 48332, CoreDir: "testnet4", Params: &chaincfg.TestNet3Params, HalvingInterval: 210_000, MinDifficultyBlocks: true},
	"test":     {Name: "test", TPPort: 18336, RPCPort: 18332, CoreDir: "testnet3", Params: &chaincfg.TestNet3Params, HalvingInterval: 210_000, MinDifficultyBlocks: true},
	"signet":   {Name: "signet", TPPort: 38336, RPCPort: 38332, CoreDir: "signet", Params: &chaincfg.SigNetParams, HalvingInterval: 210_000},
	"regtest":  {Name: "regtest", TPPort: 18447, RPCPort: 18443, CoreDir: "regtest", Params: &chaincfg.RegressionNetParams, HalvingInterval: 150, NoRetargeting: true},
}

// Names lists the accepted network names, sorted.
func Names() []string {
	names := make([]string, 0, len(table))
	for n := range table {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the network called name; the error names the config key
// "network" and the accepted values.
func Lookup(name string) (Network, error) {
	n, ok := table[name]
	if !ok {
		return Network{}, config.Invalid("network", fmt.Sprintf("%q is not a network", name),
			"use main, testnet4, test, signet or regtest")
	}
	return n, nil
}
