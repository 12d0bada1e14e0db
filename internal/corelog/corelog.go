// Package corelog carries log lines out of the role cores (provider, jdc),
// which decide what is worth logging but do no IO: the shell writes them.
package corelog

import "github.com/hashicorp/go-hclog"

// Line is something worth logging; Fields are hclog key/value pairs.
type Line struct {
	Level  hclog.Level
	Msg    string
	Fields []any
}

// Write logs lines to log, in order.
func Write(log hclog.Logger, lines []Line) {
	for _, l := range lines {
		log.Log(l.Level, l.Msg, l.Fields...)
	}
}
