package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// examples/sealgate.service runs sealgate as a dedicated user with only
// CAP_NET_BIND_SERVICE, a read-only system but for the data directory of
// examples/sealgate.yaml, and reloads with SIGHUP; systemd-analyze verify accepts it
// without a warning. Where systemd-analyze is not installed that part is skipped, also
// under CI: it is an optional check of an example file.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../../examples/sealgate.service")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig("../../examples/sealgate.yaml")
	if cfg == nil {
		t.Fatalf("examples/sealgate.yaml: %v", err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(unit), "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{
		"User=sealgate",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
		"NoNewPrivileges=yes",
		"ProtectSystem=strict",
		"ReadWritePaths=" + cfg.Dir,
		"ExecReload=/bin/kill -HUP $MAINPID",
		"ExecStart=/usr/local/bin/sealgate serve --config /etc/sealgate/sealgate.yaml",
	} {
		if !lines[want] {
			t.Errorf("examples/sealgate.service has no line %q", want)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: the unit is not verified (optional check)")
	}
	// verify wants the executables to exist: point the unit at this test binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "sealgate.service")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/sealgate", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", file).CombinedOutput()
	// verify exits 0 on many warnings (an unknown key, a bad value): any output fails.
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
