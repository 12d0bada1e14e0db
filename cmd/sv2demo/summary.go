package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"
)

// summary prints one status block: the node, then each daemon's counters
// from its /metrics ("-" where a daemon or a series is absent).
func (d *demo) summary(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	height, err := d.node.Height(ctx)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := d.scanBlocks(ctx, height); err != nil {
		return err
	}
	var mempool []string
	d.node.Call(ctx, "getrawmempool", &mempool)
	var gbt struct {
		Transactions []struct {
			Fee int64 `json:"fee"`
		} `json:"transactions"`
	}
	gbtErr := d.node.Call(ctx, "getblocktemplate", &gbt, map[string]any{"rules": []string{"segwit"}})

	tp := fetchMetrics(ctx, d.metrics["tp"])
	jdc := fetchMetrics(ctx, d.metrics["jdc"])
	miners := fetchMetrics(ctx, d.metrics["sv2-cpuminer"])

	var b strings.Builder
	el := time.Since(d.startedAt).Round(time.Second)
	fmt.Fprintf(&b, "[%6s] tip %d  blocks since start: %d accepted (%s)  mempool %d tx  txgen %d sent",
		el, height, d.accepted(), d.blockSplit(), len(mempool), d.txSent.Load())
	if n := d.txFailed.Load(); n > 0 {
		fmt.Fprintf(&b, " / %d failed", n)
	}
	b.WriteString("\n")

	tmpl := "-"
	if gbtErr == nil {
		var fees int64
		for _, t := range gbt.Transactions {
			fees += t.Fee
		}
		tmpl = fmt.Sprintf("%d tx, %d sat fees", len(gbt.Transactions), fees)
	}
	fees, ok := tp.sum("tp_template_fees_sats", nil)
	txs, _ := tp.sum("tp_template_transactions", nil)
	sent, _ := tp.sum("tp_templates_sent_total", nil)
	fmt.Fprintf(&b, "         template: tp %s tx, %s sat fees, %s templates sent | node %s\n", count(txs, ok), count(fees, ok), count(sent, ok), tmpl)

	for i := 0; i < d.o.pairs; i++ {
		jds := fetchMetrics(ctx, d.metrics["jds"+pairName(i)])
		pool := fetchMetrics(ctx, d.metrics["sv2-pool"+pairName(i)])
		decOK, okD := jds.sum("jds_declarations_total", map[string]string{"result": "accepted"})
		decRej, _ := jds.sum("jds_declarations_total", map[string]string{"result": "rejected"})
		cjOK, okC := pool.sum("sv2pool_custom_jobs_total", map[string]string{"result": "accepted"})
		cjRej, _ := pool.sum("sv2pool_custom_jobs_total", map[string]string{"result": "rejected"})
		shOK, okS := pool.sum("sv2pool_shares_total", map[string]string{"result": "accepted"})
		shRej, _ := pool.sum("sv2pool_shares_total", map[string]string{"result": "rejected"})
		pBlocks, okPB := pool.sum("sv2pool_blocks_found_total", nil)
		pAcc, _ := pool.sum("sv2pool_blocks_submitted_total", map[string]string{"result": "accepted"})
		fmt.Fprintf(&b, "         pair-%d: jds declared %s ok / %s rejected | pool custom jobs %s ok / %s rejected, shares %s ok / %s rejected, blocks %s found / %s handed to jds\n",
			i, count(decOK, okD), count(decRej, okD), count(cjOK, okC), count(cjRej, okC), count(shOK, okS), count(shRej, okS),
			count(pBlocks, okPB), count(pAcc, okPB))
	}

	active, okA := jdc.label("jdc_active_source", "source", 1)
	if !okA {
		active = "-"
	}
	jBlocks, okJB := jdc.sum("jdc_blocks_found_total", nil)
	jShares, okJS := jdc.sum("jdc_shares_total", map[string]string{"outcome": "accepted"})
	conn, okM := miners.sum("sv2cpuminer_devices_connected", nil)
	mSub, _ := miners.sum("sv2cpuminer_shares_submitted_total", nil)
	mAcc, _ := miners.sum("sv2cpuminer_shares_accepted_total", nil)
	fmt.Fprintf(&b, "         jdc: active upstream %s, shares accepted upstream %s, blocks found %s | miners: %s connected, shares %s sent / %s accepted\n",
		active, count(jShares, okJS), count(jBlocks, okJB), count(conn, okM), count(mSub, okM), count(mAcc, okM))
	fmt.Fprint(d.out, b.String())
	d.logLine("%s", b.String())
	return nil
}

// scanBlocks classifies the blocks above the last one scanned by whom their
// coinbase pays.
func (d *demo) scanBlocks(ctx context.Context, height int32) error {
	c := d.node.Client()
	for h := d.scanned + 1; h <= height; h++ {
		hash, err := c.GetBlockHash(int64(h))
		if err != nil {
			return fmt.Errorf("getblockhash %d: %w", h, err)
		}
		blk, err := c.GetBlock(hash)
		if err != nil {
			return fmt.Errorf("getblock %s: %w", hash, err)
		}
		kind := "other"
		pair := -1
		if len(blk.Transactions) > 0 {
			for _, out := range blk.Transactions[0].TxOut {
				for i, p := range d.payouts {
					if bytes.Equal(out.PkScript, p.script) {
						pair, kind = i, fmt.Sprintf("pair-%d", i)
					}
				}
				if pair < 0 && bytes.Equal(out.PkScript, d.solo.script) {
					kind = "solo"
				}
			}
		}
		switch {
		case pair >= 0:
			d.pairBlocks[pair]++
		case kind == "solo":
			d.soloBlocks++
		default:
			d.otherBlocks++
		}
		d.logLine("block %d %s: %d tx, pays %s", h, hash, len(blk.Transactions), kind)
		d.scanned = h
	}
	return nil
}

// blockSplit says whom the blocks since start paid: "pair-0 5, solo 1, other 0".
func (d *demo) blockSplit() string {
	var parts []string
	for i, n := range d.pairBlocks {
		parts = append(parts, fmt.Sprintf("pair-%d %d", i, n))
	}
	parts = append(parts, fmt.Sprintf("solo %d", d.soloBlocks), fmt.Sprintf("other %d", d.otherBlocks))
	return strings.Join(parts, ", ")
}
