package e2e

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"sealgate/internal/sealgatetest"
)

// The operations tests run the relay with its admin listener on a free port.
func startOpsRelay(t *testing.T, env ...string) *relayProc {
	t.Helper()
	dir := t.TempDir()
	rl, err := sealgatetest.Start(sealgatetest.Options{Binary: binary, Dir: dir,
		Args: []string{"--admin-addr", "127.0.0.1:0"}, StartTimeout: startupWait, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	r := &relayProc{Relay: rl, t: t, dir: dir, password: rl.Password, logs: relayLog{rl}}
	t.Cleanup(r.stop)
	return r
}

var adminRE = regexp.MustCompile(`msg=listening listener=admin address=(\S+)`)

// adminAddr is the admin listener's address, from its "listening" line (logged before
// the three SMTP listeners are reported ready).
func (r *relayProc) adminAddr() string {
	r.t.Helper()
	m := adminRE.FindStringSubmatch(r.Logs())
	if m == nil {
		r.t.Fatalf("no admin listening line; log:\n%s", r.logs)
	}
	return m[1]
}

func (r *relayProc) get(path string) (int, string) {
	r.t.Helper()
	resp, err := http.Get("http://" + r.adminAddr() + path)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitLog waits until the log holds n lines matching re, and returns the log.
func (r *relayProc) waitLog(re string, n int) string {
	r.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(20 * time.Second)
	for {
		l := r.Logs()
		if len(rx.FindAllString(l, -1)) >= n {
			return l
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no %d log lines matching %q within 20 s; log:\n%s", n, re, l)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *relayProc) hup() {
	r.t.Helper()
	if err := syscall.Kill(r.PID(), syscall.SIGHUP); err != nil {
		r.t.Fatal(err)
	}
}

func testMessage(from, subject string) []byte {
	return []byte("From: " + from + "\r\nTo: someone@example.net\r\nSubject: " + subject + "\r\n\r\nhello\r\n")
}

func (c *smtpClient) sendTest(from, subject string) reply {
	c.t.Helper()
	c.expect("MAIL FROM:<"+from+">", 250)
	c.expect("RCPT TO:<someone@example.net>", 250)
	return c.data(testMessage(from, subject))
}

func addUser(t *testing.T, dir, login, password string) {
	t.Helper()
	cmd := exec.Command(binary, "users", "add", login, "--file", filepath.Join(dir, "users"),
		"--may-send-as", "*@example.test", "--password-stdin")
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("users add: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "reload") {
		t.Errorf("users add does not say that a running relay picks the change up on reload:\n%s", out)
	}
}

// SIGHUP with a changed users file lets the new user in, while a session that was open
// before the reload carries on with its transaction; a configuration that fails
// validation at a reload changes nothing and every problem is logged.
func TestReloadUsersWhileSessionContinues(t *testing.T) {
	r := startOpsRelay(t)
	old := dialAuth(t, r)
	old.expect("MAIL FROM:<demo@example.test>", 250)
	old.expect("RCPT TO:<someone@example.net>", 250)

	addUser(t, r.dir, "new@example.test", "new-user-password-1")
	c := dial(t, r.Submission, dialOpts{})
	c.ehlo()
	c.startTLS()
	c.ehlo()
	if a := c.authPlain("new@example.test", "new-user-password-1"); a.Code != 535 {
		t.Fatalf("new user before the reload: want 535, got %s", a)
	}

	r.hup()
	r.waitLog(`msg="configuration reloaded" trigger=SIGHUP`, 1)
	c = dial(t, r.Submission, dialOpts{})
	c.ehlo()
	c.startTLS()
	c.ehlo()
	if a := c.authPlain("new@example.test", "new-user-password-1"); a.Code != 235 {
		t.Fatalf("new user after the reload: want 235, got %s", a)
	}
	queueID(t, c.sendTest("new@example.test", "from the new user"))
	// The session opened before the reload finishes its transaction.
	queueID(t, old.data(testMessage("demo@example.test", "begun before the reload")))

	// A broken configuration: the running one stays, every problem is logged.
	cfgFile := filepath.Join(r.dir, "sealgate.yaml")
	good, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(good), "hostname: relay.example.test", "hostname: relay.example.test\nlimits:\n  max_recipients: lots\n  max_header_fields: many", 1)
	if err := os.WriteFile(cfgFile, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	r.hup()
	logs := r.waitLog(`msg="reload failed: still running the previous configuration"`, 1)
	for _, key := range []string{"limits.max_recipients", "limits.max_header_fields"} {
		if !regexp.MustCompile(`msg="reload: configuration problem".*problem="` + regexp.QuoteMeta(key)).MatchString(logs) {
			t.Errorf("the problem with %s is not logged", key)
		}
	}
	queueID(t, old.sendTest("demo@example.test", "after the failed reload, old session"))
	c2 := dialAuth(t, r)
	queueID(t, c2.sendTest("demo@example.test", "after the failed reload, new session"))
	queueID(t, c.sendTest("new@example.test", "new user after the failed reload"))
	if code, body := r.get("/metrics"); code != 200 || !strings.Contains(body, `sealgate_config_reloads_total{result="failed"} 1`) ||
		!strings.Contains(body, `sealgate_config_reloads_total{result="ok"} 1`) {
		t.Errorf("reload counts wrong:\n%s", grepMetrics(body, "sealgate_config_reloads"))
	}
}

func grepMetrics(body, prefix string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// /metrics counts an accepted and a refused message, with their labels; the refusal's
// log line carries the same reason code.
func TestMetricsCountAcceptedAndRefused(t *testing.T) {
	r := startOpsRelay(t)
	if code, body := r.get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	c := dialAuth(t, r)
	queueID(t, c.sendTest("demo@example.test", "accepted"))
	if rp := c.cmd("MAIL FROM:<ceo@bank.example>"); rp.Code != 553 {
		t.Fatalf("MAIL FROM a foreign address: want 553, got %s", rp)
	}
	code, body := r.get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`sealgate_messages_accepted_total 1`,
		`sealgate_refused_total{reason="sender_not_permitted"} 1`,
		`sealgate_refused_total{reason="auth_failed"} 0`,
		`sealgate_messages_signed_total{domain="example.test"} 1`,
		`sealgate_messages_sealed_total{domain="example.test"} 1`,
		`sealgate_accept_duration_seconds_count 1`,
		`sealgate_tls_sessions_in_total{version="TLS1.3"} 1`,
	} {
		if !strings.Contains("\n"+body, "\n"+want+"\n") {
			t.Errorf("/metrics has no line %q", want)
		}
	}
	if !strings.Contains(body, `sealgate_queue_messages{state="queued"}`) {
		t.Error("/metrics has no queue size")
	}
	if t.Failed() {
		t.Logf("sealgate metrics:\n%s", grepMetrics(body, "sealgate_"))
	}
	if !regexp.MustCompile(`level=WARN msg="MAIL FROM refused" .*reason=sender_not_permitted reply=553`).MatchString(r.Logs()) {
		t.Errorf("the refusal's log line has no reason=sender_not_permitted; log:\n%s", r.logs)
	}
}

// /readyz fails while the spool cannot take new files, and passes again after.
func TestReadyzSpoolNotWritable(t *testing.T) {
	r := startOpsRelay(t)
	if code, body := r.get("/readyz"); code != 200 || body != "ok spool\nok listeners\nok keys\n" {
		t.Fatalf("/readyz of a running relay: %d %q", code, body)
	}
	msg := filepath.Join(r.dir, "spool", "msg")
	restore := makeUnwritable(t, msg)
	code, body := r.get("/readyz")
	restore()
	if code != 503 || !strings.HasPrefix(body, "failed spool: ") || !strings.Contains(body, "ok listeners\nok keys\n") {
		t.Errorf("/readyz with an unwritable spool: %d %q", code, body)
	}
	if code, body := r.get("/readyz"); code != 200 {
		t.Errorf("/readyz after the spool is writable again: %d %q", code, body)
	}
}

// makeUnwritable makes dir refuse new files: mode 0500, or, for root (whom modes do not
// stop), a regular file in its place. restore undoes it.
func makeUnwritable(t *testing.T, dir string) (restore func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		return func() { os.Chmod(dir, 0o700) }
	}
	aside := dir + ".aside"
	if err := os.Rename(dir, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		os.Remove(dir)
		if err := os.Rename(aside, dir); err != nil {
			t.Fatal(err)
		}
	}
}

// No password and no AUTH exchange appears in any log line, at debug level, for logins
// that succeed, fail, and a password typed into the login field.
func TestNoSecretsInLogs(t *testing.T) {
	r := startOpsRelay(t, "SEALGATE_LOG_LEVEL=debug")
	const wrong = "Wr0ng-Secret-Passw0rd"
	secrets := []string{r.password, wrong}
	blob := func(user, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	}
	secrets = append(secrets,
		blob(devLogin, r.password), blob(devLogin, wrong), blob(wrong, wrong),
		base64.StdEncoding.EncodeToString([]byte(r.password)), base64.StdEncoding.EncodeToString([]byte(wrong)))

	c := dialAuth(t, r) // AUTH PLAIN that succeeds
	queueID(t, c.sendTest("demo@example.test", "logged in"))
	for _, login := range []string{devLogin, wrong} { // a password typed as the login
		c := dial(t, r.Submission, dialOpts{})
		c.ehlo()
		c.startTLS()
		c.ehlo()
		if a := c.authPlain(login, wrong); a.Code != 535 {
			t.Fatalf("AUTH PLAIN with a wrong password: want 535, got %s", a)
		}
		if a := c.authLogin(login, wrong); a.Code != 535 {
			t.Fatalf("AUTH LOGIN with a wrong password: want 535, got %s", a)
		}
	}
	c = dial(t, r.Submissions, dialOpts{implicitTLS: true})
	c.ehlo()
	if a := c.authLogin(devLogin, r.password); a.Code != 235 {
		t.Fatalf("AUTH LOGIN: want 235, got %s", a)
	}
	r.waitLog(`msg="authentication failed"`, 4)
	r.stop()
	lines := 0
	for _, line := range strings.Split(r.Logs(), "\n") {
		if !strings.HasPrefix(line, "time=") {
			// The dev banner prints the demo password by design (README); it is not a
			// log line.
			continue
		}
		lines++
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("log line holds a secret (%.4s...): %s", s, line)
			}
		}
	}
	if lines < 10 {
		t.Errorf("only %d log lines: the test saw no log", lines)
	}
	if !strings.Contains(r.Logs(), `msg="sealgate stopped"`) {
		t.Errorf("no shutdown line")
	}
	if first := strings.SplitN(r.Logs(), "\n", 2)[0]; !strings.Contains(first, `msg="sealgate starting"`) {
		t.Errorf("the first line is not the startup line: %s", first)
	}
}

// --version of a binary built from a git checkout with VCS stamping names the revision.
func TestVersionRevision(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not found")
	}
	top, err := exec.Command(git, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	head, err := exec.Command(git, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "sealgate")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/sealgate")
	build.Dir = strings.TrimSpace(string(top))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("--version: %v", err)
	}
	want := fmt.Sprintf("revision %s", strings.TrimSpace(string(head)))
	if !strings.HasPrefix(string(out), "sealgate ") || !strings.Contains(string(out), want) {
		t.Errorf("--version = %q, want it to name %s", out, want)
	}
}

// sealgate reload asks the running relay through its control socket and reports the
// outcome: applied (with what needs a restart), or refused with every problem.
func TestReloadCommand(t *testing.T) {
	r := startOpsRelay(t)
	reload := func() (string, int) {
		out, err := exec.Command(binary, "reload", "--dir", r.dir).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	addUser(t, r.dir, "cli@example.test", "cli-user-password-1")
	if out, code := reload(); code != 0 || out != "reloaded\n" {
		t.Fatalf("sealgate reload: exit %d %q", code, out)
	}
	c := dial(t, r.Submission, dialOpts{})
	c.ehlo()
	c.startTLS()
	c.ehlo()
	if a := c.authPlain("cli@example.test", "cli-user-password-1"); a.Code != 235 {
		t.Fatalf("user added before sealgate reload: want 235, got %s", a)
	}

	cfgFile := filepath.Join(r.dir, "sealgate.yaml")
	good, _ := os.ReadFile(cfgFile)
	moved := string(good) + "limits:\n  max_recipients: 500\n"
	os.WriteFile(cfgFile, []byte(moved), 0o600)
	if out, code := reload(); code != 0 || out != "reloaded\nneeds a restart to take effect: limits\n" {
		t.Errorf("reload with changed limits: exit %d %q", code, out)
	}
	os.WriteFile(cfgFile, []byte(string(good)+"limits:\n  max_recipients: lots\n"), 0o600)
	if out, code := reload(); code != 1 || !strings.Contains(out, "limits.max_recipients") {
		t.Errorf("reload of a broken configuration: exit %d %q", code, out)
	}
	if a := c.cmd("NOOP"); a.Code != 250 {
		t.Errorf("session after the failed reload: %s", a)
	}
}
