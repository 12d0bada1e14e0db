package devices

import (
	"encoding/binary"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
)

// fanoutEncoder encodes the messages of one fan-out. Payloads are carved
// from shared arenas (one allocation per 64 KiB instead of one per message),
// SetNewPrevHash is written directly (fixed layout), and a
// NewExtendedMiningJob — identical on every channel but for channel_id and
// job_id — is encoded once per template and copied with those two fields
// patched. Payloads are read-only once handed to a writer.
type fanoutEncoder struct {
	arena  []byte
	cached []cachedExt
	msgs   []codec.Message // reusable message buffer of the fan-out
}

// extKey identifies the bytes after channel_id and job_id of a
// NewExtendedMiningJob: the mining core hands out its template's own
// coinbase and merkle-path slices, so their addresses name the template.
type extKey struct {
	prefix, suffix *byte
	path           *[32]byte
	active         bool
	minNTime       uint32
	version        uint32
	rolling        bool
}

type cachedExt struct {
	k extKey
	p []byte
}

const arenaSize = 64 << 10

func newFanoutEncoder() *fanoutEncoder { return &fanoutEncoder{} }

// alloc returns n bytes of arena.
func (e *fanoutEncoder) alloc(n int) []byte {
	if n > arenaSize/4 {
		return make([]byte, n)
	}
	if len(e.arena)+n > cap(e.arena) {
		e.arena = make([]byte, 0, arenaSize)
	}
	b := e.arena[len(e.arena) : len(e.arena)+n : len(e.arena)+n]
	e.arena = e.arena[:len(e.arena)+n]
	return b
}

func header(m codec.Message) codec.Header {
	return codec.Header{ExtensionType: m.ExtensionType(), MsgType: m.MsgType()}
}

// frame encodes m.
func (e *fanoutEncoder) frame(m codec.Message) outFrame {
	switch m := m.(type) {
	case *messages.MiningSetNewPrevHash:
		p := e.alloc(48)
		binary.LittleEndian.PutUint32(p[0:], m.ChannelID)
		binary.LittleEndian.PutUint32(p[4:], m.JobID)
		copy(p[8:40], m.PrevHash[:])
		binary.LittleEndian.PutUint32(p[40:], m.MinNTime)
		binary.LittleEndian.PutUint32(p[44:], m.NBits)
		return outFrame{h: header(m), payload: p}
	case *messages.NewExtendedMiningJob:
		return e.extendedJob(m)
	}
	return e.generic(m)
}

// extendedJob encodes a NewExtendedMiningJob, from the cache when an
// identical one (but for the ids) was encoded in this fan-out.
func (e *fanoutEncoder) extendedJob(m *messages.NewExtendedMiningJob) outFrame {
	if len(m.CoinbaseTxPrefix) == 0 || len(m.CoinbaseTxSuffix) == 0 {
		return e.generic(m)
	}
	k := extKey{prefix: &m.CoinbaseTxPrefix[0], suffix: &m.CoinbaseTxSuffix[0], version: m.Version,
		rolling: m.VersionRollingAllowed, active: m.MinNTime != nil}
	if k.active {
		k.minNTime = *m.MinNTime
	}
	if len(m.MerklePath) > 0 {
		k.path = &m.MerklePath[0]
	}
	for i := range e.cached {
		if e.cached[i].k == k {
			cached := e.cached[i].p
			p := e.alloc(len(cached))
			copy(p, cached)
			binary.LittleEndian.PutUint32(p[0:], m.ChannelID)
			binary.LittleEndian.PutUint32(p[4:], m.JobID)
			return outFrame{h: header(m), payload: p}
		}
	}
	f := e.generic(m)
	if f.payload != nil {
		e.cached = append(e.cached, cachedExt{k: k, p: f.payload})
	}
	return f
}

func (e *fanoutEncoder) generic(m codec.Message) outFrame {
	n := codec.Size(m)
	p, err := codec.Append(e.alloc(n)[:0], m, codec.Options{})
	if err != nil {
		// Our own messages always encode; keep the connection going.
		return outFrame{h: header(m)}
	}
	return outFrame{h: header(m), payload: p}
}

// encodeFrame encodes one message outside a fan-out.
func encodeFrame(m codec.Message) outFrame {
	p, err := codec.Append(nil, m, codec.Options{})
	if err != nil {
		return outFrame{h: header(m)}
	}
	return outFrame{h: header(m), payload: p}
}

// countJob counts job and tip messages for the metrics.
func (m *metrics) countJob(msg codec.Message) {
	switch msg.(type) {
	case *messages.NewMiningJob:
		m.jobsStd.Inc()
	case *messages.NewExtendedMiningJob:
		m.jobsExt.Inc()
	case *messages.MiningSetNewPrevHash:
		m.prevHashes.Inc()
	case *messages.SetExtranoncePrefix:
		m.prefixes.Inc()
	}
}
