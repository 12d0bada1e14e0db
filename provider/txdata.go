package provider

import (
	"time"

	"github.com/sv2kit/sv2kit/sv2/messages"
)

// witnessReservedValue is RequestTransactionData.Success.excess_data: the
// coinbase witness reserved value (32 zero bytes), as sv2-tp sends it.
var witnessReservedValue = make([]byte, 32)

// takeToken takes one token of the client's bucket (TxDataRate per second,
// at most TxDataBurst).
func (c *Core) takeToken(cl *client, now time.Time) bool {
	ns := now.UnixNano()
	if ns > cl.refill {
		cl.tokens += float64(ns-cl.refill) / 1e9 * c.cfg.TxDataRate
		if b := float64(c.cfg.TxDataBurst); cl.tokens > b {
			cl.tokens = b
		}
		cl.refill = ns
	}
	if cl.tokens < 1 {
		return false
	}
	cl.tokens--
	return true
}

// lookup finds a template still available for RequestTransactionData and
// SubmitSolution; stale reports an id issued but pruned.
func (c *Core) lookup(id uint64, now time.Time) (e *entry, stale bool) {
	if len(c.prevIDs) > 0 && !now.Before(c.prevUntil) {
		for _, old := range c.prevIDs {
			delete(c.entries, old)
		}
		c.prevIDs = c.prevIDs[:0]
	}
	if e := c.entries[id]; e != nil {
		return e, false
	}
	return nil, id != 0 && id <= c.lastID
}

func (c *Core) requestTxData(a *Actions, cl *client, m *messages.RequestTransactionData, now time.Time) {
	if !c.takeToken(cl, now) {
		a.send(cl.id, &messages.RequestTransactionDataError{TemplateID: m.TemplateID, ErrorCode: ErrTxDataRateLimited})
		return
	}
	e, stale := c.lookup(m.TemplateID, now)
	if e == nil {
		code := ErrTemplateIDNotFound
		if stale {
			code = ErrStaleTemplateID
		}
		a.send(cl.id, &messages.RequestTransactionDataError{TemplateID: m.TemplateID, ErrorCode: code})
		return
	}
	if e.txData == nil {
		list := make([][]byte, len(e.t.Txs))
		for i := range e.t.Txs {
			list[i] = e.t.Txs[i].Data
		}
		e.txData = &messages.RequestTransactionDataSuccess{TemplateID: e.id, ExcessData: witnessReservedValue, TransactionList: list}
	}
	a.send(cl.id, e.txData)
}
