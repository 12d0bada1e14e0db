package node

import (
	"encoding/binary"
	"testing"
)

// FuzzParseBlockTemplate: whatever a node (or something pretending to be one)
// answers to getblocktemplate, parsing returns an error or a template, never
// a panic.
func FuzzParseBlockTemplate(f *testing.F) {
	f.Add([]byte(`{"version":536870912,"previousblockhash":"0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206","transactions":[],"coinbasevalue":5000000000,"bits":"207fffff","height":1,"curtime":1700000000,"mintime":1699999000}`))
	f.Add([]byte(`{"transactions":[{"data":"00","txid":"zz","depends":[0]}],"bits":"1"}`))
	f.Add([]byte(`{"default_witness_commitment":"6a24aa21a9ed","target":"ff"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		tpl, err := ParseBlockTemplate(raw)
		if err == nil && tpl == nil {
			t.Fatal("nil template without error")
		}
	})
}

// FuzzZMQMessage: any multipart message on any topic is decoded or refused,
// never a panic.
func FuzzZMQMessage(f *testing.F) {
	seq := binary.LittleEndian.AppendUint32(nil, 7)
	f.Add("hashblock", make([]byte, 32), seq)
	f.Add("sequence", append(make([]byte, 32), 'A', 1, 0, 0, 0, 0, 0, 0, 0), seq)
	f.Add("sequence", append(make([]byte, 32), 'C'), seq)
	f.Add("rawtx", []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, seq)
	f.Add("sequence", append(make([]byte, 32), 'Z'), []byte{1})
	f.Fuzz(func(t *testing.T, topic string, body, seqFrame []byte) {
		tp, b, _, err := splitFrames([][]byte{[]byte(topic), body, seqFrame})
		if err != nil {
			return
		}
		_, _ = parseBody(tp, b)
	})
}
