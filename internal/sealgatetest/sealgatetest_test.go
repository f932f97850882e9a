package sealgatetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeRelay writes a shell script that behaves like `serve --dev` as far as
// the harness can tell: it logs its listeners (after a line that is not
// about them) and runs until signalled.
func fakeRelay(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake-sealgate")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStartWaitsForEveryListener(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "credentials"), []byte(DevLogin+" s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The arguments are logged before the listeners: Start returns on the
	// third listener, and a later line could lose the race with Stop's SIGTERM.
	bin := fakeRelay(t, `echo "args: $*" >&2
echo 'time=x level=INFO msg="dev mode" dir=x' >&2
echo 'time=x level=INFO msg=listening listener=submission address=127.0.0.1:1001' >&2
echo 'time=x level=INFO msg=listening listener=smarthost address=127.0.0.1:1003'
echo 'time=x level=INFO msg=listening listener=submissions address=127.0.0.1:1002' >&2
exec sleep 60
`)
	r, err := Start(Options{Binary: bin, Dir: dir, Args: []string{"--next-hop", "127.0.0.1:9"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Submission != "127.0.0.1:1001" || r.Submissions != "127.0.0.1:1002" || r.SmartHost != "127.0.0.1:1003" || r.Password != "s3cret" {
		t.Errorf("relay %+v", r)
	}
	if err := r.Stop(10 * time.Second); err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Errorf("Stop = %v, want the SIGTERM it died of", err)
	}
	logs := r.Logs()
	for _, want := range []string{"--dev --dir " + dir, "--smarthost-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --next-hop 127.0.0.1:9", `msg="dev mode"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	if r.Exited() {
		t.Error("Exited after Restart")
	}
	r.Kill()
	if !r.Exited() {
		t.Error("not Exited after Kill")
	}
}

func TestStartFailures(t *testing.T) {
	dir := t.TempDir()
	_, err := Start(Options{Binary: fakeRelay(t, "echo 'level=ERROR msg=\"bad config\"' >&2; exit 2\n"), Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "exited before listening") || !strings.Contains(err.Error(), "bad config") {
		t.Errorf("exiting relay: %v", err)
	}
	_, err = Start(Options{Binary: fakeRelay(t, "echo 'msg=listening listener=submission address=127.0.0.1:1'; exec sleep 60\n"),
		Dir: dir, StartTimeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "did not log its three listeners") {
		t.Errorf("relay with one listener: %v", err)
	}
	bin := fakeRelay(t, `for l in submission submissions smarthost; do echo "msg=listening listener=$l address=127.0.0.1:1"; done; exec sleep 60
`)
	if _, err := Start(Options{Binary: bin, Dir: dir}); err == nil || !strings.Contains(err.Error(), "credentials") {
		t.Errorf("no credentials file: %v", err)
	}
}

func TestLogfmt(t *testing.T) {
	kv := logfmt(`time=2026-11-29T21:00:00Z level=INFO msg="a b=c" listener=submission address=127.0.0.1:2587 q="x\"y"`)
	if kv["msg"] != "a b=c" || kv["listener"] != "submission" || kv["address"] != "127.0.0.1:2587" || kv["q"] != `x"y` {
		t.Errorf("logfmt = %q", kv)
	}
}
