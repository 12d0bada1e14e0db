package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// sample is one series of a Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape is the samples of one /metrics read.
type scrape []sample

// parseMetrics reads the Prometheus text format (comments skipped). Lines
// it cannot read are skipped: the summary is best effort.
func parseMetrics(r io.Reader) scrape {
	var out scrape
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if s, ok := parseLine(line); ok {
			out = append(out, s)
		}
	}
	return out
}

func parseLine(line string) (sample, bool) {
	s := sample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return s, false
	}
	s.name = line[:i]
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, " ,")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, "=\"")
			if eq <= 0 {
				return s, false
			}
			key := rest[:eq]
			rest = rest[eq+2:]
			var val strings.Builder
			j := 0
			for ; j < len(rest) && rest[j] != '"'; j++ {
				if rest[j] == '\\' && j+1 < len(rest) {
					j++
					switch rest[j] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(rest[j])
					}
					continue
				}
				val.WriteByte(rest[j])
			}
			if j >= len(rest) {
				return s, false
			}
			s.labels[key] = val.String()
			rest = rest[j+1:]
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return s, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, false
	}
	s.value = v
	return s, true
}

// sum adds the series of name whose labels include match; ok is false when
// there is none.
func (sc scrape) sum(name string, match map[string]string) (float64, bool) {
	var total float64
	// A reachable daemon that has not yet counted anything has no series
	// for a labelled counter: that reads as 0, not as absent.
	found := len(sc) > 0
	for _, s := range sc {
		if s.name != name {
			continue
		}
		okLabels := true
		for k, v := range match {
			if s.labels[k] != v {
				okLabels = false
				break
			}
		}
		if okLabels {
			total += s.value
			found = true
		}
	}
	return total, found
}

// label returns the value of label key of the first series of name with
// value v (e.g. the active source of a one-hot gauge).
func (sc scrape) label(name, key string, v float64) (string, bool) {
	for _, s := range sc {
		if s.name == name && s.value == v {
			return s.labels[key], true
		}
	}
	return "", false
}

// fetchMetrics scrapes http://addr/metrics; nil when unreachable.
func fetchMetrics(ctx context.Context, addr string) scrape {
	if addr == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	return parseMetrics(resp.Body)
}

// count formats a metric for the summary: "-" when the series is absent.
func count(v float64, ok bool) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}
