package daemon

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sv2kit/sv2kit/jdc"
	"github.com/sv2kit/sv2kit/jdc/devices"
	"github.com/sv2kit/sv2kit/sv2/messages"
	"github.com/sv2kit/sv2kit/templates"
)

// A found block is logged once, written to disk once and handed on once:
// the core describes it (FoundBlock), the shell reports it.
func TestBlockFoundOnce(t *testing.T) {
	logs := &logBuf{}
	blocks := t.TempDir()
	d, err := New(Config{
		Core:       jdc.Config{Mode: jdc.SoloMode, SoloScript: []byte{0x51}},
		TPAddr:     "127.0.0.1:1",
		Devices:    devices.Config{Listen: "127.0.0.1:0", Plaintext: true},
		BlocksDir:  blocks,
		Logger:     hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: logs, Name: "jdc"}),
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ctx := context.Background()
	d.execute(ctx, d.core.NewTemplate(now, &messages.NewTemplate{
		TemplateID: 1, FutureTemplate: true, Version: 0x20000000, CoinbaseTxVersion: 2,
		CoinbasePrefix: templates.HeightScript(500), CoinbaseTxInputSequence: 0xffffffff,
		CoinbaseTxValueRemaining: 5_000_000_000,
	}))
	d.execute(ctx, d.core.SetNewPrevHash(now, &messages.SetNewPrevHash{TemplateID: 1, NBits: 0x207fffff,
		Target: templates.TargetFromBits(0x207fffff)}))
	d.execute(ctx, d.core.DeviceShare(now, jdc.Share{WorkID: 1, Extranonce: make([]byte, d.cfg.Core.SoloExtranonceSize),
		Version: 0x20000000, Block: true}))
	d.wg.Wait() // the submissions
	if n := strings.Count(logs.String(), "jdc: block found"); n != 1 {
		t.Fatalf("%d \"block found\" lines:\n%s", n, logs.String())
	}
	files, err := os.ReadDir(blocks)
	if err != nil || len(files) != 1 {
		t.Fatalf("block files %v (%v)", files, err)
	}
	if n := counterValue(t, d.m.blocks.WithLabelValues("solo")); n != 1 {
		t.Fatalf("blocks counted %v times", n)
	}
	if n := counterValue(t, d.m.submissions.WithLabelValues("disk", "ok")); n != 1 {
		t.Fatalf("written %v times", n)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
