package daemon

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// docs/jdc.md documents every metric jdc registers.
func TestDocsListEveryMetric(t *testing.T) {
	doc, err := os.ReadFile("../../docs/jdc.md")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Vectors appear in Gather once they have a child.
	m.switches.WithLabelValues("a", "b", "c")
	m.templates.WithLabelValues("x")
	m.txData.WithLabelValues("x")
	m.declarations.WithLabelValues("0", "x")
	m.customJobs.WithLabelValues("0", "x")
	m.shares.WithLabelValues("a", "b", "c")
	m.blocks.WithLabelValues("x")
	m.submissions.WithLabelValues("a", "b")
	m.active.WithLabelValues("x")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) < 13 {
		t.Fatalf("only %d metrics gathered", len(mfs))
	}
	for _, mf := range mfs {
		if !strings.Contains(string(doc), "`"+mf.GetName()+"`") {
			t.Errorf("docs/jdc.md does not mention metric %s", mf.GetName())
		}
	}
}
