package corelog

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestWrite(t *testing.T) {
	var buf bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info})
	Write(log, []Line{
		{Level: hclog.Debug, Msg: "hidden"},
		{Level: hclog.Warn, Msg: "shown", Fields: []any{"client", 7}},
	})
	out := buf.String()
	if strings.Contains(out, "hidden") || !strings.Contains(out, "[WARN]  shown: client=7") {
		t.Fatalf("log:\n%s", out)
	}
}
