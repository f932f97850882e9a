package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"testing"
	"time"

	"sealgate/internal/sealgatetest"
)

// binary is the sealgate executable built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "sealgate-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if binary, err = sealgatetest.Build(tmp); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	return m.Run()
}

// requireTool skips the test when an external program is missing, or fails it when
// CI=true, naming the Debian package to install.
func requireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (install the Debian package %s): %v", name, pkg, err)
		}
		t.Skipf("%s not found (install the Debian package %s)", name, pkg)
	}
	return p
}

const (
	devLogin    = sealgatetest.DevLogin
	startupWait = 30 * time.Second
	stopWait    = 40 * time.Second // serve gives sessions up to 30 s to end
)

// relayProc is one `sealgate serve --dev` subprocess (internal/sealgatetest), with
// the test's failure reporting.
type relayProc struct {
	*sealgatetest.Relay // listener addresses: Submission, Submissions, SmartHost
	t                   testing.TB
	dir                 string
	password            string
	logs                relayLog // what the current run logged, for messages
}

// relayLog prints the relay's log so far.
type relayLog struct{ r *sealgatetest.Relay }

func (l relayLog) String() string { return l.r.Logs() }

// startRelay runs sealgate serve --dev in dir (a fresh t.TempDir() when dir is "")
// with its listeners on 127.0.0.1:0 and waits until all three listen. The process is
// stopped with SIGTERM when the test ends.
func startRelay(t testing.TB, dir string, extra ...string) *relayProc {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	rl, err := sealgatetest.Start(sealgatetest.Options{Binary: binary, Dir: dir, Args: extra, StartTimeout: startupWait})
	if err != nil {
		t.Fatal(err)
	}
	r := &relayProc{Relay: rl, t: t, dir: dir, password: rl.Password, logs: relayLog{rl}}
	t.Cleanup(r.stop)
	return r
}

// stop sends SIGTERM and waits for a clean exit (status 0).
func (r *relayProc) stop() {
	t := r.t
	if r.Exited() {
		return // already stopped or killed
	}
	if err := r.Stop(stopWait); err != nil {
		t.Errorf("sealgate did not stop cleanly after SIGTERM: %v; log:\n%s", err, r.logs)
	}
	if t.Failed() {
		t.Logf("sealgate log (%s):\n%s", r.dir, r.logs)
	}
}

// kill sends SIGKILL and waits until the process is gone.
func (r *relayProc) kill() {
	r.Kill()
}

// restart starts the process again with the same directory and flags.
func (r *relayProc) restart() {
	r.t.Helper()
	if err := r.Restart(); err != nil {
		r.t.Fatal(err)
	}
	r.password = r.Password
}

// snapshot lists the files under the spool's msg/ and tmp/ and the outbox.
type snapshot map[string]bool

func (r *relayProc) snapshot() snapshot {
	s := snapshot{}
	for _, sub := range []string{"spool/msg", "spool/tmp", "outbox"} {
		ents, err := os.ReadDir(filepath.Join(r.dir, sub))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			r.t.Fatalf("read %s: %v", sub, err)
		}
		for _, e := range ents {
			s[sub+"/"+e.Name()] = true
		}
	}
	return s
}

// newFiles returns what is in after and not in before, sorted.
func newFiles(before, after snapshot) []string {
	var out []string
	for f := range after {
		if !before[f] {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

// assertNothingSpooled fails when anything appeared in spool/msg, spool/tmp or the
// outbox since before. A refused message answered before commit must leave nothing;
// the short settle catches a delivery that would follow a wrong 250.
func (r *relayProc) assertNothingSpooled(t testing.TB, before snapshot, what string) {
	t.Helper()
	time.Sleep(50 * time.Millisecond)
	if n := newFiles(before, r.snapshot()); len(n) > 0 {
		t.Errorf("%s: refused message left files behind: %v", what, n)
	}
}

// waitOutbox waits for DIR/outbox/<id>.eml and returns its content.
func (r *relayProc) waitOutbox(t testing.TB, id string) []byte {
	t.Helper()
	p := filepath.Join(r.dir, "outbox", id+".eml")
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, err := os.ReadFile(p)
		if err == nil {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %s did not arrive in %s within 15 s; log:\n%s", id, p, r.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var queuedRE = regexp.MustCompile(`^OK queued as (\S+)$`)

// queueID extracts the id from "250 2.0.0 OK queued as <id>".
func queueID(t testing.TB, rp reply) string {
	t.Helper()
	if rp.Code != 250 || len(rp.Lines) == 0 {
		t.Fatalf("want 250 OK queued as <id>, got %s", rp)
	}
	m := queuedRE.FindStringSubmatch(rp.Text())
	if m == nil {
		t.Fatalf("250 reply without a queue id: %s", rp)
	}
	return m[1]
}

// readFile reads a file relative to the relay's directory.
func (r *relayProc) readFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
