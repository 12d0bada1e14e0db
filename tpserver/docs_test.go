package tpserver

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestMetricsDocumented: every metric this package declares is in docs/tp.md.
func TestMetricsDocumented(t *testing.T) {
	src, err := os.ReadFile("metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/tp.md")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`Name: "(tp_[a-z_]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(names) < 10 {
		t.Fatalf("found only %d metric names", len(names))
	}
	for _, m := range names {
		if !strings.Contains(string(doc), "`"+m[1]) {
			t.Errorf("metric %s not documented in docs/tp.md", m[1])
		}
	}
}
