package devices

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sv2kit/sv2kit/mining"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

var errCoinbase = errors.New("malformed work coinbase")

// jobTemplate turns a Work into the mining core's job template. The core
// builds templates from a coinbase's fields, so the work's serialized
// coinbase is split back into them (the same fields a pool reads from a
// SetCustomMiningJob), and the template's re-serialization is checked to be
// byte-identical to what jdc sent: devices hash exactly jdc's coinbase.
func jobTemplate(w *Work) (*mining.JobTemplate, error) {
	m, err := splitCoinbase(w.CoinbasePrefix, w.CoinbaseSuffix, w.ExtranonceSpace)
	if err != nil {
		return nil, err
	}
	m.Version = w.Version
	m.MerklePath = w.MerklePath
	jt, err := mining.JobTemplateFromCustomJob(m, w.ExtranonceSpace, w.ID)
	if err != nil {
		return nil, fmt.Errorf("work %d: %w", w.ID, err)
	}
	jt.Future = w.Future
	p, s := jt.CoinbaseParts(false)
	if !bytes.Equal(p, w.CoinbasePrefix) || !bytes.Equal(s, w.CoinbaseSuffix) {
		return nil, fmt.Errorf("work %d: %w: coinbase does not re-serialize to the same bytes", w.ID, errCoinbase)
	}
	return jt, nil
}

// splitCoinbase parses a non-witness coinbase split around its extranonce:
//
//	prefix = version ‖ 01 ‖ 32×00 ‖ ffffffff ‖ scriptSig length ‖ scriptSig start
//	suffix = nSequence ‖ output count ‖ outputs ‖ locktime
//
// The extranonce (space bytes) must end the scriptSig.
func splitCoinbase(prefix, suffix []byte, space int) (*messages.SetCustomMiningJob, error) {
	if space < 1 || space > mining.MaxExtranonceSize {
		return nil, fmt.Errorf("%w: extranonce space %d not in 1..%d", errCoinbase, space, mining.MaxExtranonceSize)
	}
	if len(prefix) < 4+1+36+1 {
		return nil, fmt.Errorf("%w: prefix of %d bytes is too short", errCoinbase, len(prefix))
	}
	var m messages.SetCustomMiningJob
	m.CoinbaseTxVersion = binary.LittleEndian.Uint32(prefix)
	p := prefix[4:]
	if p[0] == 0x00 {
		return nil, fmt.Errorf("%w: prefix is in witness form (marker byte); devices need the txid form", errCoinbase)
	}
	if p[0] != 0x01 {
		return nil, fmt.Errorf("%w: %d inputs, want 1", errCoinbase, p[0])
	}
	p = p[1:]
	for i := 0; i < 32; i++ {
		if p[i] != 0 {
			return nil, fmt.Errorf("%w: input is not a coinbase input (prevout hash not null)", errCoinbase)
		}
	}
	if binary.LittleEndian.Uint32(p[32:]) != 0xffffffff {
		return nil, fmt.Errorf("%w: input is not a coinbase input (prevout index)", errCoinbase)
	}
	p = p[36:]
	scriptLen, n, ok := templates.ReadCompactSize(p)
	if !ok {
		return nil, fmt.Errorf("%w: scriptSig length", errCoinbase)
	}
	p = p[n:]
	if scriptLen != uint64(len(p))+uint64(space) {
		return nil, fmt.Errorf("%w: scriptSig length %d, but prefix holds %d bytes of it and the extranonce %d: the extranonce must end the scriptSig",
			errCoinbase, scriptLen, len(p), space)
	}
	m.CoinbasePrefix = p

	if len(suffix) < 4+1+4 {
		return nil, fmt.Errorf("%w: suffix of %d bytes is too short", errCoinbase, len(suffix))
	}
	m.CoinbaseTxInputNSequence = binary.LittleEndian.Uint32(suffix)
	m.CoinbaseTxOutputs = suffix[4 : len(suffix)-4]
	m.CoinbaseTxLocktime = binary.LittleEndian.Uint32(suffix[len(suffix)-4:])
	return &m, nil
}
