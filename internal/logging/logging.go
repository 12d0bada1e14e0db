// Package logging builds the go-hclog loggers every daemon uses, from the
// two settings operators set: level and format.
package logging

import (
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Config is the [log] section of every daemon's configuration.
type Config struct {
	Level  string `toml:"level" help:"log level: trace, debug, info, warn or error"`
	Format string `toml:"format" help:"log format: text or json"`
}

// Defaults are info-level text logs.
func Defaults() Config { return Config{Level: "info", Format: "text"} }

// New returns a logger named name writing to w.
func New(name string, c Config, w io.Writer) (hclog.Logger, error) {
	lvl := hclog.LevelFromString(c.Level)
	if lvl == hclog.NoLevel {
		return nil, fmt.Errorf("config key \"log.level\": %q is not a level; use trace, debug, info, warn or error", c.Level)
	}
	var json bool
	switch strings.ToLower(c.Format) {
	case "text", "":
	case "json":
		json = true
	default:
		return nil, fmt.Errorf("config key \"log.format\": %q is not a format; use text or json", c.Format)
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      lvl,
		Output:     w,
		JSONFormat: json,
	}), nil
}
