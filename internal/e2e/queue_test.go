package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sealgate/relay"
)

// TestSIGTERMDrainsIdleClients: clients waiting between commands when SIGTERM
// arrives, in plain text and inside TLS, are told 421 4.3.2 and the process exits
// promptly, instead of waiting out the sessions (serve allows them up to 30 s).
func TestSIGTERMDrainsIdleClients(t *testing.T) {
	r := startRelay(t, "")
	plain := dial(t, r.SmartHost, dialOpts{})
	plain.ehlo()
	secure := dial(t, r.Submissions, dialOpts{implicitTLS: true})
	secure.ehlo()

	stopped := make(chan error, 1)
	go func() { stopped <- r.Stop(20 * time.Second) }()
	for name, c := range map[string]*smtpClient{"smart host": plain, "implicit TLS": secure} {
		rep, err := c.readReplyTimeout(10 * time.Second)
		if err != nil || !rep.is(421, "4.3.2") {
			t.Errorf("%s client at SIGTERM: %v %v, want 421 4.3.2\n%s", name, rep, err, c.Transcript())
		}
		if !c.closedByServer(5 * time.Second) {
			t.Errorf("%s client: connection still open after the 421", name)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatalf("serve after SIGTERM with idle clients: %v\n%s", err, r.logs)
	}
}

// queueCLI runs `sealgate queue ARGS --dir DIR` and returns its output and exit status.
func queueCLI(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, append(append([]string{"queue"}, args...), "--dir", dir)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestQueueCLIWhileServing: the queue commands of a second process reach the
// running relay through its control socket: a message deferred because its next hop
// is down is listed, shown, counted, retried and deleted; with serve stopped the
// commands say it is not running.
func TestQueueCLIWhileServing(t *testing.T) {
	dir := t.TempDir()
	r := startRelay(t, dir, "--next-hop", closedPort(t))
	sock := filepath.Join(dir, "control.sock")
	// The delivery runner, which serves the socket, starts beside the listeners.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v %v, want a socket of mode 0600", fi, err)
	}

	c := dial(t, r.SmartHost, dialOpts{})
	c.ehlo()
	msg := crlf("From: billing@example.test\nTo: ops@partner.example\nSubject: queue cli\n\nhello\n")
	if stage, rep := c.send("billing@example.test", []string{"ops@partner.example"}, msg); stage != "END" || rep.Code != 250 {
		t.Fatalf("%s: %v\n%s", stage, rep, c.Transcript())
	}
	c.quit()

	var entries []relay.QueueEntry
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := queueCLI(t, dir, "list", "--json")
		if code != 0 {
			t.Fatalf("queue list: exit %d: %s", code, out)
		}
		if err := json.Unmarshal([]byte(out), &entries); err != nil {
			t.Fatalf("queue list --json: %v: %s", err, out)
		}
		if len(entries) == 1 && entries[0].State == relay.StateDeferred {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue list: %+v, want one deferred message", entries)
		}
		time.Sleep(50 * time.Millisecond)
	}
	id := entries[0].ID
	if out, code := queueCLI(t, dir, "show", id); code != 0 || !strings.Contains(out, "<ops@partner.example>") ||
		!strings.Contains(out, "Subject: queue cli") || !strings.Contains(out, "DKIM-Signature:") || !strings.Contains(out, "Last reply:") {
		t.Errorf("queue show: exit %d\n%s", code, out)
	}
	var st relay.QueueStats
	if out, code := queueCLI(t, dir, "stats", "--json"); code != 0 || json.Unmarshal([]byte(out), &st) != nil ||
		st.ByState[relay.StateDeferred] != 1 || st.ByDomain["partner.example"] != 1 {
		t.Errorf("queue stats --json: exit %d\n%s", code, out)
	}
	if out, code := queueCLI(t, dir, "retry", id); code != 0 || !strings.Contains(out, id) {
		t.Errorf("queue retry: exit %d\n%s", code, out)
	}
	// The retry runs at once and fails again: wait for it to end, then delete.
	deadline = time.Now().Add(30 * time.Second)
	for {
		out, code := queueCLI(t, dir, "delete", id)
		if code == 0 {
			if !strings.Contains(out, "deleted "+id) || !strings.Contains(out, "<billing@example.test>") {
				t.Errorf("queue delete: %s", out)
			}
			break
		}
		if !strings.Contains(out, "being delivered now") || time.Now().After(deadline) {
			t.Fatalf("queue delete: exit %d: %s", code, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, code := queueCLI(t, dir, "list"); code != 0 || !strings.Contains(out, "0 message(s)") {
		t.Errorf("queue list after delete: exit %d\n%s", code, out)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "spool", "msg")); len(ents) != 0 {
		t.Errorf("spool/msg after delete: %v", ents)
	}

	r.stop()
	if out, code := queueCLI(t, dir, "list"); code == 0 || !strings.Contains(out, "sealgate serve is not running") {
		t.Errorf("queue list with serve stopped: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(sock); err == nil {
		t.Error("control socket left behind after serve stopped")
	}
}
