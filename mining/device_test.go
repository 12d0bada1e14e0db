package mining

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/sv2kit/sv2kit/sv2/codec"
	"github.com/sv2kit/sv2kit/sv2/messages"
)

// device is a minimal SV2 mining device for tests: it learns its work only
// from the messages a Session sends and hashes with btcd's code, so it checks
// those messages independently of the validator.
type device struct {
	t        testing.TB
	ch, grp  uint32
	prefix   []byte
	extSize  int
	target   [32]byte
	jobs     map[uint32]*devJob
	active   uint32
	prevHash [32]byte
	nbits    uint32
	minNTime uint32
}

type devJob struct {
	version        uint32
	rolling        bool
	merkleRoot     *[32]byte // standard job
	path           [][32]byte
	prefix, suffix []byte
	minNTime       *uint32
}

func newDevice(t testing.TB, msgs []codec.Message) *device {
	d := &device{t: t, jobs: map[uint32]*devJob{}}
	switch m := msgs[0].(type) {
	case *messages.OpenStandardMiningChannelSuccess:
		d.ch, d.grp, d.prefix, d.target = m.ChannelID, m.GroupChannelID, m.ExtranoncePrefix, m.Target
	case *messages.OpenExtendedMiningChannelSuccess:
		d.ch, d.prefix, d.extSize, d.target = m.ChannelID, m.ExtranoncePrefix, int(m.ExtranonceSize), m.Target
	default:
		t.Fatalf("open answered %T %+v", m, m)
	}
	d.handle(msgs[1:])
	return d
}

func (d *device) mine(id uint32) bool { return id == d.ch || (d.grp != 0 && id == d.grp) }

func (d *device) handle(msgs []codec.Message) {
	for _, msg := range msgs {
		switch m := msg.(type) {
		case *messages.NewMiningJob:
			if d.mine(m.ChannelID) {
				r := m.MerkleRoot
				d.jobs[m.JobID] = &devJob{version: m.Version, rolling: true, merkleRoot: &r, minNTime: m.MinNTime}
				if m.MinNTime != nil {
					d.active = m.JobID
				}
			}
		case *messages.NewExtendedMiningJob:
			if d.mine(m.ChannelID) {
				d.jobs[m.JobID] = &devJob{version: m.Version, rolling: m.VersionRollingAllowed, path: m.MerklePath,
					prefix: m.CoinbaseTxPrefix, suffix: m.CoinbaseTxSuffix, minNTime: m.MinNTime}
				if m.MinNTime != nil {
					d.active = m.JobID
				}
			}
		case *messages.MiningSetNewPrevHash:
			if d.mine(m.ChannelID) {
				if _, ok := d.jobs[m.JobID]; !ok {
					d.t.Fatalf("SetNewPrevHash names job %d the device never got", m.JobID)
				}
				d.active, d.prevHash, d.nbits, d.minNTime = m.JobID, m.PrevHash, m.NBits, m.MinNTime
			}
		case *messages.SetTarget:
			if m.ChannelID == d.ch {
				d.target = m.MaximumTarget
			}
		case *messages.SetExtranoncePrefix:
			if m.ChannelID == d.ch {
				d.prefix = m.ExtranoncePrefix
			}
		}
	}
}

// root computes the merkle root of job j for ext the way a device does.
func (d *device) root(j *devJob, ext []byte) [32]byte {
	if j.merkleRoot != nil {
		return *j.merkleRoot
	}
	cb := append(append(append(append([]byte{}, j.prefix...), d.prefix...), ext...), j.suffix...)
	root := chainhash.DoubleHashH(cb)
	for _, n := range j.path {
		root = chainhash.DoubleHashH(append(root[:], n[:]...))
	}
	return root
}

type devShare struct {
	job, nonce, ntime, version uint32
	ext                        []byte
	hash                       [32]byte
}

// grind searches nonces on the active job until accept(hash) holds.
func (d *device) grind(ext []byte, version uint32, ntimeDelta uint32, accept func(h *[32]byte) bool) devShare {
	d.t.Helper()
	j := d.jobs[d.active]
	if j == nil {
		d.t.Fatal("no active job")
	}
	if version == 0 {
		version = j.version
	}
	hdr := wire.BlockHeader{
		Version:    int32(version),
		PrevBlock:  chainhash.Hash(d.prevHash),
		MerkleRoot: chainhash.Hash(d.root(j, ext)),
		Timestamp:  time.Unix(int64(d.minNTime+ntimeDelta), 0),
		Bits:       d.nbits,
	}
	for n := uint32(0); n < 1<<24; n++ {
		hdr.Nonce = n
		h := [32]byte(hdr.BlockHash())
		if accept(&h) {
			return devShare{job: d.active, nonce: n, ntime: d.minNTime + ntimeDelta, version: version, ext: ext, hash: h}
		}
	}
	d.t.Fatal("no share found in 2^24 nonces")
	return devShare{}
}

func (d *device) meetsTarget(h *[32]byte) bool { return MeetsTarget(h, &d.target) }

func (sh devShare) standard(ch uint32) *messages.SubmitSharesStandard {
	return &messages.SubmitSharesStandard{ChannelID: ch, SequenceNumber: 1, JobID: sh.job, Nonce: sh.nonce, NTime: sh.ntime, Version: sh.version}
}

func (sh devShare) extended(ch uint32) *messages.SubmitSharesExtended {
	return &messages.SubmitSharesExtended{ChannelID: ch, SequenceNumber: 1, JobID: sh.job, Nonce: sh.nonce, NTime: sh.ntime, Version: sh.version, Extranonce: sh.ext}
}

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
