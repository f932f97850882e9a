package main

import (
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
)

// logging is the one log handler of the process. Every package logs through it: the
// relay's own loggers are made from it, slog.SetDefault routes the global slog logger and
// the standard library's log package (go-smtp's and net/http's error logs included)
// through it, so one process writes one format. The level can change while running
// (log.level on reload); the format is chosen once, at start.
type logging struct {
	w      io.Writer
	level  slog.LevelVar
	format string
	logger *slog.Logger
}

// newLogging logs text at info level to w until configure says otherwise.
func newLogging(w io.Writer) *logging {
	l := &logging{w: w}
	l.set("text")
	return l
}

func (l *logging) set(format string) {
	opts := &slog.HandlerOptions{Level: &l.level}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(l.w, opts)
	} else {
		format = "text"
		h = slog.NewTextHandler(l.w, opts)
	}
	l.format = format
	l.logger = slog.New(h)
	slog.SetDefault(l.logger)
}

// configure applies log.format and log.level (validated by config).
func (l *logging) configure(format, level string) {
	if format != "" && format != l.format {
		l.set(format)
	}
	l.setLevel(level)
}

// setLevel applies a log.level value; an unknown one leaves the level as it is.
func (l *logging) setLevel(level string) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err == nil {
		l.level.Set(lv)
	}
}

// buildVersion describes this binary from its build information: the module version
// ("(devel)" for a build from a checkout), the VCS revision and time, whether the tree
// had uncommitted changes, and the Go version.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (no build information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, when string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var b strings.Builder
	b.WriteString(v)
	if rev != "" {
		fmt.Fprintf(&b, " revision %s", rev)
		if when != "" {
			fmt.Fprintf(&b, " (%s)", when)
		}
		if modified {
			b.WriteString(" with uncommitted changes")
		}
	} else {
		b.WriteString(" revision unknown (built without VCS information)")
	}
	fmt.Fprintf(&b, " %s", bi.GoVersion)
	return b.String()
}
