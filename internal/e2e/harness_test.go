package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the sealgate executable built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go env GOMOD: %v\n", err)
		return 1
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	tmp, err := os.MkdirTemp("", "sealgate-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	binary = filepath.Join(tmp, "sealgate")
	build := exec.Command("go", "build", "-o", binary, "./cmd/sealgate")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/sealgate in %s: %v\n%s", root, err, out)
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
	devLogin    = "demo@example.test"
	startupWait = 30 * time.Second
	stopWait    = 40 * time.Second // serve gives sessions up to 30 s to end
)

var listeningRE = regexp.MustCompile(`msg=listening listener=(\S+) address=(\S+)`)

// relayProc is one `sealgate serve --dev` subprocess.
type relayProc struct {
	t        testing.TB
	dir      string
	args     []string
	cmd      *exec.Cmd
	logs     *lockedBuffer
	exited   chan struct{}
	waitErr  error
	password string
	// Listener addresses (host:port) parsed from the "listening" log lines.
	Submission, Submissions, SmartHost string
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startRelay runs sealgate serve --dev in dir (a fresh t.TempDir() when dir is "")
// with its listeners on 127.0.0.1:0 and waits until all three listen. The process is
// stopped with SIGTERM when the test ends.
func startRelay(t testing.TB, dir string, extra ...string) *relayProc {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	r := &relayProc{t: t, dir: dir}
	r.args = append([]string{"serve", "--dev", "--dir", dir,
		"--submission-addr", "127.0.0.1:0", "--submissions-addr", "127.0.0.1:0", "--smarthost-addr", "127.0.0.1:0"}, extra...)
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *relayProc) start() {
	t := r.t
	t.Helper()
	r.logs = &lockedBuffer{}
	r.exited = make(chan struct{})
	r.Submission, r.Submissions, r.SmartHost = "", "", ""
	cmd := exec.Command(binary, r.args...)
	cmd.Stdout = io.Discard
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s %v: %v", binary, r.args, err)
	}
	r.cmd = cmd
	found := make(chan [2]string, 8)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			r.logs.Write([]byte(line + "\n"))
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				found <- [2]string{m[1], m[2]}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		r.waitErr = cmd.Wait()
		pw.Close()
		close(r.exited)
	}()
	deadline := time.After(startupWait)
	for r.Submission == "" || r.Submissions == "" || r.SmartHost == "" {
		select {
		case l := <-found:
			switch l[0] {
			case "submission":
				r.Submission = l[1]
			case "submissions":
				r.Submissions = l[1]
			case "smarthost":
				r.SmartHost = l[1]
			}
		case <-r.exited:
			t.Fatalf("sealgate exited before listening (%v); log:\n%s", r.waitErr, r.logs)
		case <-deadline:
			r.cmd.Process.Kill()
			<-r.exited
			t.Fatalf("sealgate did not log all three listeners within %v; log:\n%s", startupWait, r.logs)
		}
	}
	cred, err := os.ReadFile(filepath.Join(r.dir, "credentials"))
	if err != nil {
		t.Fatalf("read credentials: %v", err)
	}
	login, pass, ok := strings.Cut(strings.TrimSpace(string(cred)), " ")
	if !ok || login != devLogin || pass == "" {
		t.Fatalf("credentials file is %q, want a line %q", cred, devLogin+" PASSWORD")
	}
	r.password = pass
}

// stop sends SIGTERM and waits for a clean exit (status 0).
func (r *relayProc) stop() {
	t := r.t
	select {
	case <-r.exited:
		return // already stopped or killed
	default:
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
		if r.waitErr != nil {
			t.Errorf("sealgate exited with %v after SIGTERM; log:\n%s", r.waitErr, r.logs)
		}
	case <-time.After(stopWait):
		r.cmd.Process.Kill()
		<-r.exited
		t.Errorf("sealgate did not exit within %v of SIGTERM; killed. log:\n%s", stopWait, r.logs)
	}
	if t.Failed() {
		t.Logf("sealgate log (%s):\n%s", r.dir, r.logs)
	}
}

// kill sends SIGKILL and waits until the process is gone.
func (r *relayProc) kill() {
	r.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		r.t.Fatalf("sealgate did not die within 10 s of SIGKILL")
	}
}

// restart starts the process again with the same directory and flags.
func (r *relayProc) restart() {
	r.t.Helper()
	r.start()
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
