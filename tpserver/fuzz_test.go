package tpserver

import (
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/node"
	"github.com/sv2kit/sv2kit/provider"
	"github.com/sv2kit/sv2kit/sv2/messages"
)

// FuzzNodeTemplate: whatever a node answers to getblocktemplate is parsed,
// converted and handed to the core without a panic (a bad template is an
// error or a logged refusal, never a crash of the daemon).
func FuzzNodeTemplate(f *testing.F) {
	f.Add([]byte(`{"version":536870912,"previousblockhash":"0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206","transactions":[],"coinbasevalue":5000000000,"bits":"207fffff","height":1,"curtime":1700000000,"mintime":1699999000}`))
	f.Add([]byte(`{"version":536870912,"previousblockhash":"0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206","transactions":[{"data":"0100000000010000000000","fee":10,"weight":40,"depends":[2]}],"coinbasevalue":5000000000,"bits":"207fffff","height":5,"curtime":1700000000}`))
	f.Add([]byte(`{"height":-4,"bits":"1d00ffff","transactions":[{"data":"00","depends":[0,1,1]}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		tpl, err := node.ParseBlockTemplate(raw)
		if err != nil {
			return
		}
		src, err := ConvertTemplate(tpl)
		if err != nil {
			return
		}
		core, err := provider.New(provider.Config{})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Unix(1700000000, 0)
		core.ClientConnected(1, now)
		core.ClientMessage(1, &messages.SetupConnection{Protocol: 2, MinVersion: 2, MaxVersion: 2}, now)
		core.ClientMessage(1, &messages.CoinbaseOutputConstraints{CoinbaseOutputMaxAdditionalSize: 100}, now)
		core.NodeTemplate(src, provider.ChainInfo{TipHash: src.PrevHash, TipHeight: src.Height - 1}, now)
	})
}
