package provider

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/sv2kit/sv2kit/sv2/messages"
)

func requestTxData(t testing.TB, c *Core, id ClientID, tid uint64, now time.Time) (*messages.RequestTransactionDataSuccess, string) {
	t.Helper()
	a := c.ClientMessage(id, &messages.RequestTransactionData{TemplateID: tid}, now)
	if len(a.Close) != 0 {
		t.Fatalf("closed: %+v", a.Close)
	}
	ms := sentTo(a, id)
	if len(ms) != 1 {
		t.Fatalf("reply %v", names(ms))
	}
	switch m := ms[0].(type) {
	case *messages.RequestTransactionDataSuccess:
		if m.TemplateID != tid {
			t.Fatalf("success for %d, asked %d", m.TemplateID, tid)
		}
		return m, ""
	case *messages.RequestTransactionDataError:
		if m.TemplateID != tid {
			t.Fatalf("error for %d, asked %d", m.TemplateID, tid)
		}
		return nil, m.ErrorCode
	}
	t.Fatalf("reply %s", ms[0].MessageName())
	return nil, ""
}

func TestRequestTransactionData(t *testing.T) {
	cfg := regtestConfig()
	cfg.PrevTipRetention = 10 * time.Second
	cfg.TxDataBurst = 100
	c := newCore(t, cfg)
	ch := newTestChain(21, 300)
	src := ch.source(someTxs())
	c.NodeTemplate(src, ch.info(), t0)
	nt, _, empty := initial(t, sentTo(connect(t, c, 1, 100, t0), 1))

	ok, code := requestTxData(t, c, 1, nt.TemplateID, t0)
	if code != "" {
		t.Fatal(code)
	}
	if !bytes.Equal(ok.ExcessData, make([]byte, 32)) || len(ok.TransactionList) != len(src.Txs) {
		t.Fatalf("%+v", ok)
	}
	for i := range src.Txs {
		if !bytes.Equal(ok.TransactionList[i], src.Txs[i].Data) {
			t.Fatalf("tx %d differs (block order)", i)
		}
	}
	if ok, code := requestTxData(t, c, 1, empty.TemplateID, t0); code != "" || len(ok.TransactionList) != 0 {
		t.Fatalf("empty template: %v %q", ok, code)
	}
	for _, tid := range []uint64{0, 1000} {
		if _, code := requestTxData(t, c, 1, tid, t0); code != ErrTemplateIDNotFound {
			t.Fatalf("id %d: %q", tid, code)
		}
	}

	// New tip (fast path), then its template: the old tip's template is
	// kept for the retention period, then stale.
	c.NewTip(ch.mine(uint32(t0.Unix())), t0.Add(time.Second))
	a := c.NodeTemplate(ch.source(someTxs()[:1]), ch.info(), t0.Add(2*time.Second))
	nt2 := sentTo(a, 1)[0].(*messages.NewTemplate)
	if _, code := requestTxData(t, c, 1, nt.TemplateID, t0.Add(10*time.Second)); code != "" {
		t.Fatalf("previous tip within retention: %q", code)
	}
	// The activated empty template belongs to the current tip.
	if _, code := requestTxData(t, c, 1, empty.TemplateID, t0.Add(10*time.Second)); code != "" {
		t.Fatalf("fast-path template: %q", code)
	}
	if _, code := requestTxData(t, c, 1, nt.TemplateID, t0.Add(11*time.Second)); code != ErrStaleTemplateID {
		t.Fatalf("previous tip after retention: %q", code)
	}
	if ok, code := requestTxData(t, c, 1, nt2.TemplateID, t0.Add(11*time.Second)); code != "" || len(ok.TransactionList) != 1 {
		t.Fatalf("current: %q", code)
	}

	// Two tips later, the first tip's templates are stale at once.
	n := ch.mine(uint32(t0.Unix()) + 20)
	n.PrevHash = nil
	c.NewTip(n, t0.Add(20*time.Second))
	c.NodeTemplate(ch.source(nil), ch.info(), t0.Add(20*time.Second))
	if _, code := requestTxData(t, c, 1, nt2.TemplateID, t0.Add(21*time.Second)); code != "" {
		t.Fatalf("previous tip: %q", code)
	}
	n = ch.mine(uint32(t0.Unix()) + 22)
	n.PrevHash = nil
	c.NewTip(n, t0.Add(22*time.Second))
	c.NodeTemplate(ch.source(nil), ch.info(), t0.Add(22*time.Second))
	if _, code := requestTxData(t, c, 1, nt2.TemplateID, t0.Add(22*time.Second)); code != ErrStaleTemplateID {
		t.Fatalf("tip before the previous one: %q", code)
	}
	// Tick prunes as well.
	c.Tick(t0.Add(60 * time.Second))
	if st := c.Snapshot(); st.Templates > 3 {
		t.Fatalf("%d templates cached after pruning", st.Templates)
	}
}

func TestRequestTransactionDataRateLimit(t *testing.T) {
	cfg := regtestConfig()
	cfg.TxDataRate, cfg.TxDataBurst = 2, 3
	c := newCore(t, cfg)
	ch := newTestChain(22, 300)
	c.NodeTemplate(ch.source(someTxs()), ch.info(), t0)
	nt, _, _ := initial(t, sentTo(connect(t, c, 1, 100, t0), 1))
	connect(t, c, 2, 100, t0)
	for i := range 3 {
		if _, code := requestTxData(t, c, 1, nt.TemplateID, t0); code != "" {
			t.Fatalf("request %d: %q", i, code)
		}
	}
	if _, code := requestTxData(t, c, 1, nt.TemplateID, t0); code != ErrTxDataRateLimited {
		t.Fatalf("over the burst: %q", code)
	}
	// Other clients have their own bucket.
	if _, code := requestTxData(t, c, 2, nt.TemplateID, t0); code != "" {
		t.Fatalf("client 2: %q", code)
	}
	// 2 tokens per second.
	if _, code := requestTxData(t, c, 1, nt.TemplateID, t0.Add(499*time.Millisecond)); code != ErrTxDataRateLimited {
		t.Fatalf("after 0.499 s: %q", code)
	}
	if _, code := requestTxData(t, c, 1, nt.TemplateID, t0.Add(time.Second)); code != "" {
		t.Fatalf("after 1 s: %q", code)
	}
	if _, code := requestTxData(t, c, 1, nt.TemplateID, t0.Add(time.Second)); code != "" {
		t.Fatalf("after 1 s, second: %q", code)
	}
	if _, code := requestTxData(t, c, 1, nt.TemplateID, t0.Add(time.Second)); code != ErrTxDataRateLimited {
		t.Fatalf("after 1 s, third: %q", code)
	}
}

func TestTemplateCacheBounded(t *testing.T) {
	cfg := regtestConfig()
	cfg.Interval = time.Second
	c := newCore(t, cfg)
	ch := newTestChain(23, 300)
	src := ch.source(someTxs())
	c.NodeTemplate(src, ch.info(), t0)
	first, _, _ := initial(t, sentTo(connect(t, c, 1, 100, t0), 1))
	var ids []uint64
	for i := 1; i <= MaxTemplatesPerGroup+10; i++ {
		s := *src
		s.Txs = slices.Clone(src.Txs)
		s.Txs[0].Fee += int64(1000 * i)
		a := c.NodeTemplate(&s, ch.info(), t0.Add(time.Duration(i)*time.Second))
		ms := sentTo(a, 1)
		expectNames(t, ms, "NewTemplate")
		ids = append(ids, ms[0].(*messages.NewTemplate).TemplateID)
	}
	st := c.Snapshot()
	if st.Templates > MaxTemplatesPerGroup+1 { // + the empty template
		t.Fatalf("%d templates cached", st.Templates)
	}
	for _, tid := range []uint64{first.TemplateID, ids[0]} {
		if _, code := requestTxData(t, c, 1, tid, t0.Add(time.Hour)); code != ErrStaleTemplateID {
			t.Fatalf("oldest %d: %q", tid, code)
		}
	}
	last := ids[len(ids)-1]
	if _, code := requestTxData(t, c, 1, last, t0.Add(time.Hour)); code != "" {
		t.Fatalf("latest: %q", code)
	}
}
