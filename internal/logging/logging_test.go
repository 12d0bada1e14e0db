package logging

import (
	"bytes"
	"encoding/json"
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
