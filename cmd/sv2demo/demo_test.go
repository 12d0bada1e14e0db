package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseMetrics(t *testing.T) {
	text := `# HELP x y
# TYPE sv2pool_shares_total counter
sv2pool_shares_total{code="",result="accepted"} 12
sv2pool_shares_total{code="duplicate-share",result="rejected"} 2
sv2pool_shares_total{code="weird \"q\" \\ x",result="rejected"} 1
jdc_active_source{source="pair-0"} 1
jdc_active_source{source="solo"} 0
tp_template_fees_sats 4320 1700000000000
go_gc_duration_seconds{quantile="0.5"} 1.5e-05
bad line
`
	sc := parseMetrics(strings.NewReader(text))
	for _, tc := range []struct {
		name  string
		match map[string]string
		want  float64
	}{
		{"sv2pool_shares_total", map[string]string{"result": "accepted"}, 12},
		{"sv2pool_shares_total", map[string]string{"result": "rejected"}, 3},
		{"sv2pool_shares_total", map[string]string{"code": `weird "q" \ x`}, 1},
		{"sv2pool_shares_total", nil, 15},
		{"tp_template_fees_sats", nil, 4320},
		{"missing_total", nil, 0},
	} {
		if got, ok := sc.sum(tc.name, tc.match); got != tc.want || !ok {
			t.Errorf("sum(%s, %v) = %v, %v; want %v", tc.name, tc.match, got, ok, tc.want)
		}
	}
	if s, ok := sc.label("jdc_active_source", "source", 1); !ok || s != "pair-0" {
		t.Errorf("active source %q %v", s, ok)
	}
	var none scrape
	if _, ok := none.sum("x", nil); ok {
		t.Error("an unreachable daemon's series must read as absent")
	}
	if count(3, true) != "3" || count(0, false) != "-" {
		t.Error("count")
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-blocks", "3"}, io.Discard)
	if err != nil || o.blocks != 3 || o.timeout != 15*time.Minute || o.miners != 3 {
		t.Fatalf("%+v %v", o, err)
	}
	for _, args := range [][]string{
		{"-blocks", "-1"}, {"-miners", "0"}, {"-hash-rate", "0"}, {"-interval", "1ms"}, {"-mode", "solo"}, {"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// FuzzParseMetrics: any exposition text parses without panicking, and every
// sample read back has a name.
func FuzzParseMetrics(f *testing.F) {
	f.Add("a 1\n")
	f.Add(`x{a="b",c="d\"e"} 2 123` + "\n")
	f.Add("x{a=\"unterminated} 1\n# c\n\n")
	f.Add("x{} NaN\ny{a=\"\\\\\"} +Inf\n")
	f.Fuzz(func(t *testing.T, text string) {
		for _, s := range parseMetrics(strings.NewReader(text)) {
			if s.name == "" {
				t.Fatalf("sample without a name from %q", text)
			}
		}
	})
}
