package logging

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	var buf bytes.Buffer
	l, err := New("tp", Config{Level: "warn", Format: "json"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "client", "1.2.3.4")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["@message"] != "shown" || m["client"] != "1.2.3.4" {
		t.Fatalf("%s %v", buf.String(), err)
	}
	for _, bad := range []Config{{Level: "loud"}, {Level: "info", Format: "xml"}} {
		if _, err := New("x", bad, &buf); err == nil || !strings.Contains(err.Error(), "log.") {
			t.Fatalf("%+v: %v", bad, err)
		}
	}
}

// log.level is case-insensitive (hclog's parser); log.format is too.
func TestFormatCaseInsensitive(t *testing.T) {
	for _, f := range []string{"JSON", "Json", "TEXT", "Text"} {
		if _, err := New("tp", Config{Level: "INFO", Format: f}, io.Discard); err != nil {
			t.Errorf("format %q: %v", f, err)
		}
	}
	if _, err := New("tp", Config{Level: "info", Format: "yaml"}, io.Discard); err == nil {
		t.Error("format yaml accepted")
	}
}
