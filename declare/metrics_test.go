package declare

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sv2kit/sv2kit/mempool"
)

// TestDocsListEveryMetric: docs/jds.md names every metric the JDS
// registers, with its labels.
func TestDocsListEveryMetric(t *testing.T) {
	doc, err := os.ReadFile("../docs/jds.md")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, offlineCore(t, mempool.NewStore(0), nil))
	// Vectors are gathered once they have a child.
	for v, n := range map[*prometheus.CounterVec]int{m.declarations: 2, m.validations: 2, m.blocks: 2, m.connRefused: 1, m.connClosed: 1} {
		v.WithLabelValues(make([]string, n)...).Inc()
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) < 15 {
		t.Fatalf("only %d metric families gathered", len(families))
	}
	for _, f := range families {
		var labels []string
		if ms := f.GetMetric(); len(ms) > 0 {
			for _, l := range ms[0].GetLabel() {
				labels = append(labels, l.GetName())
			}
		}
		if !documented(string(doc), f.GetName(), labels) {
			t.Errorf("docs/jds.md does not list `%s{%s}`", f.GetName(), strings.Join(labels, ","))
		}
	}
}

// documented reports whether doc names the metric as `name` (no labels) or
// `name{a,b}` with exactly these labels in any order.
func documented(doc, name string, labels []string) bool {
	if len(labels) == 0 {
		return strings.Contains(doc, "`"+name+"`")
	}
	for _, rest := range strings.Split(doc, "`"+name+"{")[1:] {
		list, _, ok := strings.Cut(rest, "}`")
		if !ok {
			continue
		}
		got := strings.Split(list, ",")
		slices.Sort(got)
		if slices.Equal(got, labels) { // Gather sorts labels by name
			return true
		}
	}
	return false
}
