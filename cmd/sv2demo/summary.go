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
	jds := fetchMetrics(ctx, d.metrics["jds"])
	pool := fetchMetrics(ctx, d.metrics["sv2-pool"])
	jdc := fetchMetrics(ctx, d.metrics["jdc"])
	miners := fetchMetrics(ctx, d.metrics["sv2-cpuminer"])

	var b strings.Builder
	el := time.Since(d.startedAt).Round(time.Second)
	fmt.Fprintf(&b, "[%6s] tip %d  blocks since start: %d accepted (%d to pool payout, %d solo, %d other)  mempool %d tx  txgen %d sent",
		el, height, d.accepted(), d.poolBlocks, d.soloBlocks, d.otherBlocks, len(mempool), d.txSent.Load())
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
	sent, _ := tp.sum("tp_templates_sent_total", nil)
	fmt.Fprintf(&b, "         template: node %s | tp: %s sat fees, %s templates sent\n", tmpl, count(fees, ok), count(sent, ok))

	decOK, okD := jds.sum("jds_declarations_total", map[string]string{"result": "accepted"})
	decRej, _ := jds.sum("jds_declarations_total", map[string]string{"result": "rejected"})
	valOK, okV := jds.sum("jds_custom_job_validations_total", map[string]string{"result": "ok"})
	jdsBlocks, okB := jds.sum("jds_blocks_total", map[string]string{"result": "accepted"})
	fmt.Fprintf(&b, "         jds: declared jobs %s accepted / %s rejected, custom-job checks %s ok, block submissions %s ok\n",
		count(decOK, okD), count(decRej, okD), count(valOK, okV), count(jdsBlocks, okB))

	cjOK, okC := pool.sum("sv2pool_custom_jobs_total", map[string]string{"result": "accepted"})
	cjRej, _ := pool.sum("sv2pool_custom_jobs_total", map[string]string{"result": "rejected"})
	shOK, okS := pool.sum("sv2pool_shares_total", map[string]string{"result": "accepted"})
	shRej, _ := pool.sum("sv2pool_shares_total", map[string]string{"result": "rejected"})
	pBlocks, okPB := pool.sum("sv2pool_blocks_found_total", nil)
	pAcc, _ := pool.sum("sv2pool_blocks_submitted_total", map[string]string{"result": "accepted"})
	fmt.Fprintf(&b, "         pool: custom jobs %s accepted / %s rejected, shares %s accepted / %s rejected, blocks %s found / %s accepted via jds\n",
		count(cjOK, okC), count(cjRej, okC), count(shOK, okS), count(shRej, okS), count(pBlocks, okPB), count(pAcc, okPB))

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
		if len(blk.Transactions) > 0 {
			for _, out := range blk.Transactions[0].TxOut {
				switch {
				case bytes.Equal(out.PkScript, d.payout.script):
					kind = "pool"
				case bytes.Equal(out.PkScript, d.solo.script) && kind == "other":
					kind = "solo"
				}
			}
		}
		switch kind {
		case "pool":
			d.poolBlocks++
		case "solo":
			d.soloBlocks++
		default:
			d.otherBlocks++
		}
		d.logLine("block %d %s: %d tx, pays %s", h, hash, len(blk.Transactions), kind)
		d.scanned = h
	}
	return nil
}
