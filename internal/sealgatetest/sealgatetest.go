// Package sealgatetest starts the real sealgate binary for end-to-end tests and
// the load benchmark: one way to build it, run `sealgate serve --dev` in a
// directory with every listener on a free port of 127.0.0.1, wait until it is
// ready, read the demo login's password, and stop it with SIGTERM or kill it.
//
// Readiness is a condition, not a delay: the relay logs one line per listener,
//
//	time=... level=INFO msg=listening listener=submission address=127.0.0.1:NNNNN
//
// once that listener accepts connections, and Start returns when all three
// (submission, submissions, smarthost) have been logged, with their addresses.
// It relies only on the dev-mode flags (--dir, --next-hop, --submission-addr,
// --submissions-addr, --smarthost-addr), on those log lines and on
// DIR/credentials ("LOGIN PASSWORD"); how dev mode builds its relay (it writes
// and serves DIR/sealgate.yaml) is its own business.
//
// It is not a test framework: functions return errors, so a command (the load
// benchmark) uses it as well as a test, which wraps it for testing.TB.
package sealgatetest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DevLogin is the login `serve --dev` creates; its password is in DIR/credentials.
const DevLogin = "demo@example.test"

// Listener names, as the "listening" log lines give them.
const (
	Submission  = "submission"  // STARTTLS + AUTH (RFC 6409)
	Submissions = "submissions" // implicit TLS + AUTH (RFC 8314)
	SmartHost   = "smarthost"   // trusted networks and client certificates
)

// Build compiles ./cmd/sealgate of the module that contains the working
// directory into outDir and returns the binary's path.
func Build(outDir string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the sealgate module (go env GOMOD is empty)")
	}
	bin := filepath.Join(outDir, "sealgate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sealgate")
	build.Dir = filepath.Dir(mod)
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/sealgate in %s: %w\n%s", build.Dir, err, out)
	}
	return bin, nil
}

// Options say how to run `serve --dev`.
type Options struct {
	// Binary is the sealgate executable (see Build).
	Binary string
	// Dir is the dev directory (--dir): keys, users, spool/, outbox/,
	// credentials and sealgate.yaml live there. Reusing one keeps its keys,
	// password and queue, as a restart does.
	Dir string
	// Args are further flags, such as "--next-hop", "127.0.0.1:2525".
	Args []string
	// Log, if set, receives every line the relay writes (to stdout or stderr),
	// and Logs stays empty; otherwise the lines are kept for Logs.
	Log io.Writer
	// StartTimeout bounds the wait for the listeners; 0 means 60 s.
	StartTimeout time.Duration
	// Config, if set, runs `serve --config Config` instead of dev mode (Dir is still
	// where credentials are read from, when the file names a dev directory's).
	Config string
	// Env is added to the relay's environment, e.g. SEALGATE_LIMITS_MAX_CONNECTIONS_PER_IP=64
	// (SEALGATE_* variables override the configuration dev mode writes).
	Env []string
}

// Relay is one `sealgate serve --dev` process (and its restarts).
type Relay struct {
	opts Options

	// Listener addresses (host:port) of the current run.
	Submission, Submissions, SmartHost string
	// Password is the demo login's password, from DIR/credentials.
	Password string

	mu      sync.Mutex
	admin   string // the admin listener's address, once logged
	logs    bytes.Buffer
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process has been waited for
	waitErr error
}

// Start runs the relay and returns once all three listeners accept connections.
// If it exits first or StartTimeout passes, the error carries the end of its
// log, and the process is gone.
func Start(o Options) (*Relay, error) {
	if o.Binary == "" || o.Dir == "" {
		return nil, errors.New("sealgatetest: Options.Binary and Options.Dir are required")
	}
	r := &Relay{opts: o}
	if err := r.start(); err != nil {
		return nil, err
	}
	return r, nil
}

// Restart runs the relay again, on the same directory and flags, after Stop or Kill.
func (r *Relay) Restart() error {
	if !r.Exited() {
		return errors.New("sealgatetest: Restart of a relay that is still running")
	}
	return r.start()
}

func (r *Relay) start() error {
	o := r.opts
	args := append([]string{"serve", "--dev", "--dir", o.Dir,
		"--submission-addr", "127.0.0.1:0", "--submissions-addr", "127.0.0.1:0", "--smarthost-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, o.Args...)
	if o.Config != "" {
		args = append([]string{"serve", "--config", o.Config}, o.Args...)
	}
	cmd := exec.Command(o.Binary, args...)
	cmd.SysProcAttr = sysProcAttr()
	if len(o.Env) > 0 {
		cmd.Env = append(os.Environ(), o.Env...)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	r.mu.Lock()
	r.logs.Reset()
	r.mu.Unlock()
	r.Submission, r.Submissions, r.SmartHost, r.Password = "", "", "", ""
	r.mu.Lock()
	r.admin = ""
	r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sealgatetest: start %s %s: %w", o.Binary, strings.Join(args, " "), err)
	}
	exited := make(chan struct{})
	r.mu.Lock()
	r.cmd, r.exited, r.waitErr = cmd, exited, nil
	r.mu.Unlock()

	found := make(chan [2]string, 8)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			r.writeLog(line + "\n")
			if kv := logfmt(line); kv["msg"] == "listening" && kv["listener"] == "admin" {
				r.mu.Lock()
				r.admin = kv["address"]
				r.mu.Unlock()
			} else if kv["msg"] == "listening" && kv["listener"] != "" && kv["address"] != "" {
				select {
				case found <- [2]string{kv["listener"], kv["address"]}:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr) // a line over the limit: keep draining
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		<-scanned // every line is in the log before Exited reports the end
		r.mu.Lock()
		r.waitErr = err
		r.mu.Unlock()
		close(exited)
	}()

	timeout := o.StartTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for r.Submission == "" || r.Submissions == "" || r.SmartHost == "" {
		select {
		case l := <-found:
			switch l[0] {
			case Submission:
				r.Submission = l[1]
			case Submissions:
				r.Submissions = l[1]
			case SmartHost:
				r.SmartHost = l[1]
			}
		case <-exited:
			return fmt.Errorf("sealgatetest: sealgate exited before listening (%v); log:\n%s", r.WaitErr(), r.tail(40))
		case <-deadline.C:
			r.Kill()
			return fmt.Errorf("sealgatetest: sealgate did not log its three listeners within %v; log:\n%s", timeout, r.tail(40))
		}
	}
	pass, err := ReadPassword(o.Dir)
	if err != nil {
		r.Kill()
		return fmt.Errorf("sealgatetest: %w", err)
	}
	r.Password = pass
	return nil
}

// ReadPassword returns the demo login's password from dir/credentials, which
// `serve --dev` writes as one line "LOGIN PASSWORD".
func ReadPassword(dir string) (string, error) {
	p := filepath.Join(dir, "credentials")
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read credentials: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == DevLogin {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("%s has no line %q", p, DevLogin+" PASSWORD")
}

func (r *Relay) writeLog(s string) {
	if r.opts.Log != nil {
		io.WriteString(r.opts.Log, s)
		return
	}
	r.mu.Lock()
	r.logs.WriteString(s)
	r.mu.Unlock()
}

// Logs returns what the current run has logged so far (empty with Options.Log).
func (r *Relay) Logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

func (r *Relay) tail(n int) string {
	lines := strings.Split(strings.TrimRight(r.Logs(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if r.opts.Log != nil {
		return "  (the log went to Options.Log)"
	}
	return "  " + strings.Join(lines, "\n  ")
}

// AdminAddr is the admin listener's address (/metrics, /readyz) of the current run,
// "" if it has none.
func (r *Relay) AdminAddr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.admin
}

// Dir returns the dev directory.
func (r *Relay) Dir() string { return r.opts.Dir }

// PID returns the process id of the current run.
func (r *Relay) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd.Process.Pid
}

// Exited reports whether the current run has ended.
func (r *Relay) Exited() bool {
	r.mu.Lock()
	ch := r.exited
	r.mu.Unlock()
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Done returns a channel closed when the current run has ended.
func (r *Relay) Done() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exited
}

// WaitErr returns how the current run ended (nil: exit status 0), once Exited.
func (r *Relay) WaitErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waitErr
}

// Stop sends SIGTERM and waits for the relay to end, up to timeout (serve gives
// sessions and deliveries in flight up to 30 s); then it kills it. It returns
// nil for exit status 0, else what happened. A run that had already ended
// returns how it ended.
func (r *Relay) Stop(timeout time.Duration) error {
	if r.Exited() {
		return r.WaitErr()
	}
	r.mu.Lock()
	p := r.cmd.Process
	r.mu.Unlock()
	if err := p.Signal(syscall.SIGTERM); err != nil && !r.Exited() {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.Done():
		return r.WaitErr()
	case <-t.C:
		p.Kill()
		<-r.Done()
		return fmt.Errorf("did not exit within %v of SIGTERM; killed", timeout)
	}
}

// Kill sends SIGKILL and waits until the process is gone.
func (r *Relay) Kill() {
	r.mu.Lock()
	p := r.cmd.Process
	r.mu.Unlock()
	p.Kill()
	<-r.Done()
}

// logfmt splits a log/slog text line into its key=value pairs (values may be quoted).
func logfmt(line string) map[string]string {
	kv := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			break
		}
		key, rest := line[:eq], line[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			if q, err := strconv.QuotedPrefix(rest); err == nil {
				val, _ = strconv.Unquote(q)
				rest = rest[len(q):]
			} else {
				val, rest = rest, ""
			}
		} else if sp := strings.IndexByte(rest, ' '); sp >= 0 {
			val, rest = rest[:sp], rest[sp:]
		} else {
			val, rest = rest, ""
		}
		kv[key] = val
		line = rest
	}
	return kv
}
