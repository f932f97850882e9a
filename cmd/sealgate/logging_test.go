package main

import (
	"bytes"
	"encoding/json"
	"log"
	"log/slog"
	"strings"
	"testing"
)

// With log.format json every line is JSON, whoever logs it: our loggers, the global slog
// logger and the standard log package (go-smtp's and net/http's error logs); log.level
// applies to all and changes in place.
func TestOneLogHandler(t *testing.T) {
	defer slog.SetDefault(slog.Default())
	defer log.SetOutput(log.Writer())
	defer log.SetFlags(log.Flags())
	var buf bytes.Buffer
	l := newLogging(&buf)
	l.configure("json", "info")
	ours := l.logger.With("listener", "submission")
	ours.Debug("not shown at info")
	ours.Warn("from our logger")
	slog.Warn("from the global slog logger")
	log.Print("from the standard log package")
	l.setLevel("debug")
	ours.Debug("debug after a level change")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{"from our logger", "from the global slog logger", "from the standard log package", "debug after a level change"}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("line %d is not JSON: %s", i, line)
			continue
		}
		if m["msg"] != want[i] {
			t.Errorf("line %d: msg %v, want %q", i, m["msg"], want[i])
		}
	}
}

func TestBuildVersion(t *testing.T) {
	v := buildVersion()
	// A test binary has build information; "go test" stamps no VCS revision.
	if !strings.Contains(v, "go1.") || !strings.Contains(v, "revision") {
		t.Errorf("buildVersion() = %q", v)
	}
	out, _, code := runCLI(t, "--version")
	if code != 0 || out != "sealgate "+v+"\n" {
		t.Errorf("--version: exit %d %q", code, out)
	}
}
