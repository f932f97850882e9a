package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sealgate/internal/resolver/resolvertest"
	"sealgate/internal/sealgatetest"
)

// rotationRelay is a relay on a dev directory whose DNS is an in-process server, the
// resolver and the zone's one authoritative server, for the key rotation tests.
type rotationRelay struct {
	t               *testing.T
	r               *relayProc
	dns             *resolvertest.Live
	dir, cfgFile    string
	devZone, nsZone string // the dev zone; it with example.test's NS and its address
}

// startRotationRelay runs the relay with key_rotation.check_interval interval.
func startRotationRelay(t *testing.T, interval string) *rotationRelay {
	t.Helper()
	dir := t.TempDir()
	gen := startRelay(t, dir)
	gen.stop()
	e := &rotationRelay{t: t, dir: dir, cfgFile: filepath.Join(dir, "sealgate.yaml")}
	e.devZone = string(gen.readFile(t, "example.test.zone"))
	e.nsZone = e.devZone + "\nexample.test. 60 IN NS ns1.example.test.\nns1.example.test. 60 IN A 127.0.0.1\n"
	e.dns = resolvertest.StartLive(t, e.nsZone)
	_, port, _ := net.SplitHostPort(e.dns.Addr)
	cfg := string(gen.readFile(t, "sealgate.yaml"))
	if !strings.Contains(cfg, "dns:\n  zone_file: example.test.zone\n") {
		t.Fatalf("the dev configuration has no dns.zone_file:\n%s", cfg)
	}
	cfg = strings.Replace(cfg, "dns:\n  zone_file: example.test.zone\n", fmt.Sprintf(
		"dns:\n  server: %q\nkey_rotation:\n  check_interval: %s\n  keep_old_record: 4s\n  authoritative_port: %s\n", e.dns.Addr, interval, port), 1)
	if err := os.WriteFile(e.cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	rl, err := sealgatetest.Start(sealgatetest.Options{Binary: binary, Dir: dir, Config: e.cfgFile, StartTimeout: startupWait})
	if err != nil {
		t.Fatal(err)
	}
	e.r = &relayProc{Relay: rl, t: t, dir: dir, password: rl.Password, logs: relayLog{rl}}
	t.Cleanup(e.r.stop)
	return e
}

// cli runs the sealgate binary; its error carries what it printed.
func (e *rotationRelay) cli(args ...string) (string, error) {
	e.t.Helper()
	cmd := exec.Command(binary, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), fmt.Errorf("sealgate %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out), nil
}

// status returns example.test's selectors and their states (the first word), from keys
// status --json, and its next step as "next".
func (e *rotationRelay) status() map[string]string {
	t := e.t
	t.Helper()
	out, err := e.cli("keys", "status", "--config", e.cfgFile, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Domains []struct {
			Domain    string
			NextStep  string `json:"next_step"`
			Selectors []struct{ Selector, State string }
		}
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("keys status --json: %v\n%s", err, out)
	}
	m := map[string]string{}
	for _, d := range st.Domains {
		if d.Domain == "example.test" {
			for _, s := range d.Selectors {
				m[s.Selector] = strings.Fields(s.State)[0]
			}
			m["next"] = d.NextStep
		}
	}
	return m
}

// waitStatus waits until keys status gives selector sel the state want.
func (e *rotationRelay) waitStatus(sel, want string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := e.status()
		if st[sel] == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("keys status: s=%s is %q, want %q (%v); log:\n%s", sel, st[sel], want, st, e.r.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKeyRotation rotates the dev relay's RSA key publish-before-sign, against an
// in-process DNS server that is the relay's resolver and the zone's one authoritative
// server: the relay signs with the old selector while the new record is missing or
// publishes another key, across a restart; once the record appears it signs with the new
// one; dkimpy verifies the messages signed before, during and after the switch; keys
// status shows each state, up to the old record's removal.
func TestKeyRotation(t *testing.T) {
	e := startRotationRelay(t, "1s")
	r, dns, dir, cfgFile, devZone, nsZone := e.r, e.dns, e.dir, e.cfgFile, e.devZone, e.nsZone
	cli, status, waitStatus := e.cli, e.status, e.waitStatus

	// Start the rotation: the zone line comes on stdout.
	out, err := cli("keys", "rotate", "--config", cfgFile, "--domain", "example.test", "--alg", "rsa")
	if err != nil {
		t.Fatal(err)
	}
	record := strings.TrimSpace(out)
	newSel, _, ok := strings.Cut(record, "._domainkey.example.test. IN TXT ")
	if !ok || !strings.HasPrefix(newSel, "rsa") || newSel == "rsa2026" {
		t.Fatalf("keys rotate printed %q", out)
	}
	if st := status(); st["rsa2026"] != "active" || st[newSel] != "pending-publication" || !strings.Contains(st["next"], "publish the TXT record") {
		t.Errorf("status after rotate: %v", st)
	}
	if code, body := r.get("/metrics"); code != 200 || !strings.Contains(body, `sealgate_dkim_rotations{state="pending-publication"} 1`) {
		t.Errorf("/metrics (%d) has no pending rotation:\n%s", code, body)
	}

	// dkimpy verifies against a zone with both records, as a receiver sees DNS during
	// the keep time.
	verifyZone := filepath.Join(t.TempDir(), "verify.zone")
	if err := os.WriteFile(verifyZone, []byte(devZone+"\n"+record+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := 0
	// sendBoth relays one message and returns the selectors of its RSA and Ed25519
	// signatures, after checking that dkimpy verifies every signature of it.
	sendBoth := func(what string) (rsaSel, edSel string) {
		t.Helper()
		n++
		c := dialAuth(t, r)
		defer c.quit()
		msg := crlf(fmt.Sprintf("From: %s\nTo: someone@example.net\nSubject: rotation %d (%s)\nDate: Mon, 07 Dec 2026 10:00:00 +0000\nMessage-ID: <rot%d@e2e.test>\n\nSigned %s.\n", devLogin, n, what, n, what))
		stage, rp := c.send(devLogin, []string{"someone@example.net"}, msg)
		if stage != "END" {
			t.Fatalf("%s: %s refused: %s", what, stage, rp)
		}
		id := queueID(t, rp)
		eml := filepath.Join(dir, "outbox", id+".eml")
		r.waitOutbox(t, id)
		res := verifyDkimpy(t, verifyZone, eml)
		for _, s := range res.DKIM {
			if !s.Pass {
				t.Errorf("%s: dkimpy fails d=%s s=%s: %v", what, s.D, s.S, s.Log)
			}
			if strings.HasPrefix(s.A, "rsa") {
				if rsaSel != "" {
					t.Errorf("%s: two RSA signatures (s=%s and s=%s)", what, rsaSel, s.S)
				}
				rsaSel = s.S
			} else if s.D == "example.test" {
				edSel = s.S
			}
		}
		return rsaSel, edSel
	}
	send := func(what string) string {
		t.Helper()
		rsaSel, _ := sendBoth(what)
		return rsaSel
	}
	if s := send("before publication"); s != "rsa2026" {
		t.Errorf("before publication: signed with s=%s, want rsa2026", s)
	}

	// A record with another key at the new name is not publication.
	arc := zoneLine(t, devZone, "arc2026._domainkey.example.test.")
	dns.SetZone(t, nsZone+strings.Replace(arc, "arc2026._domainkey", newSel+"._domainkey", 1)+"\n")
	if out, err := cli("keys", "rotate", "--config", cfgFile, "--check-now"); err == nil || !strings.Contains(out, "NOT published") || !strings.Contains(out, "other-key") {
		t.Errorf("check-now with another key published: want exit 1 and the verdict, got %q, %v", out, err)
	}
	if s := send("other key published"); s != "rsa2026" {
		t.Errorf("another key published: signed with s=%s, want rsa2026", s)
	}

	// A restart mid-rotation resumes it.
	r.stop()
	r.restart()
	if st := status(); st[newSel] != "pending-publication" {
		t.Errorf("status after restart: %v", st)
	}
	if s := send("after restart"); s != "rsa2026" {
		t.Errorf("after restart: signed with s=%s, want rsa2026", s)
	}

	// Published: messages sent meanwhile are signed wholly with one selector or the
	// other, and verify; then with the new one.
	dns.SetZone(t, nsZone+record+"\n")
	deadline := time.Now().Add(30 * time.Second)
	for s := ""; s != newSel; {
		s = send("during the switch")
		if s != newSel && s != "rsa2026" {
			t.Fatalf("during the switch: signed with s=%s", s)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still signing with s=%s 30 s after publication; log:\n%s", s, r.logs)
		}
	}
	if !strings.Contains(r.Logs(), "key rotation: new record published; signing switches to the new selector") {
		t.Errorf("no log line of the switch:\n%s", r.logs)
	}
	if s := send("after the switch"); s != newSel {
		t.Errorf("after the switch: signed with s=%s, want %s", s, newSel)
	}
	// DSNs (from MAILER-DAEMON@example.test) switch too: the reload gave the DSN
	// sender the new key ring's keys.
	if !regexp.MustCompile(`msg="DSNs are DKIM-signed".*selectors=\S*` + regexp.QuoteMeta(newSel)).MatchString(r.Logs()) {
		t.Errorf("no log line of DSNs signed with %s after the switch", newSel)
	}
	if st := status(); st[newSel] != "active" || st["rsa2026"] != "retiring-until" && st["rsa2026"] != "remove-record" {
		t.Errorf("status after the switch: %v", st)
	}

	// The keep time (4s) passes: the old record can go; once it is gone, the rotation is done.
	waitStatus("rsa2026", "remove-record")
	if st := status(); !strings.Contains(st["next"], "remove the TXT record rsa2026._domainkey.example.test") {
		t.Errorf("next step at remove-record: %q", st["next"])
	}
	old := zoneLine(t, nsZone, "rsa2026._domainkey.example.test.")
	dns.SetZone(t, strings.Replace(nsZone, old+"\n", "", 1)+record+"\n")
	waitStatus("rsa2026", "removed")
	if s := send("after the old record's removal"); s != newSel {
		t.Errorf("after removal: signed with s=%s, want %s", s, newSel)
	}

	// Abort drops a pending rotation and its key; force makes the running relay sign
	// with a pending key at once, unpublished (dkimpy is given its record).
	out, err = cli("keys", "rotate", "--config", cfgFile, "--domain", "example.test", "--alg", "ed25519", "--selector", "edabort")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cli("keys", "rotate", "--config", cfgFile, "--domain", "example.test", "--alg", "ed25519", "--abort"); err != nil || !strings.Contains(out, "aborted") {
		t.Fatalf("abort: %q, %v", out, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys", "edabort.example.test.key")); !os.IsNotExist(err) {
		t.Errorf("abort left the key: %v", err)
	}
	if _, ok := status()["edabort"]; ok {
		t.Errorf("status still lists the aborted selector: %v", status())
	}
	out, err = cli("keys", "rotate", "--config", cfgFile, "--domain", "example.test", "--alg", "ed25519", "--selector", "edforced")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(verifyZone, []byte(devZone+"\n"+record+"\n"+strings.TrimSpace(out)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ed := sendBoth("ed25519 rotation pending"); ed != "ed2026" {
		t.Errorf("ed25519 rotation pending: signed with s=%s, want ed2026", ed)
	}
	if out, err := cli("keys", "rotate", "--config", cfgFile, "--domain", "example.test", "--alg", "ed25519", "--force"); err != nil || !strings.Contains(out, "forced") || !strings.Contains(out, "the running relay has applied it") {
		t.Fatalf("force: %q, %v", out, err)
	}
	if _, ed := sendBoth("after force"); ed != "edforced" {
		t.Errorf("after force: signed with s=%s, want edforced; log:\n%s", ed, r.logs)
	}
	if !strings.Contains(r.Logs(), "key rotation: forced switch") {
		t.Errorf("no log line of the forced switch")
	}
}

// zoneLine returns the line of zone that starts with prefix.
func zoneLine(t *testing.T, zone, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(zone, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	t.Fatalf("no line %s... in the zone:\n%s", prefix, zone)
	return ""
}

// TestKeyRotationOnReload: with a check interval of a day, a reload is what checks the
// published record and switches.
func TestKeyRotationOnReload(t *testing.T) {
	e := startRotationRelay(t, "24h")
	out, err := e.cli("keys", "rotate", "--config", e.cfgFile, "--domain", "example.test", "--alg", "ed25519", "--selector", "edreload")
	if err != nil {
		t.Fatal(err)
	}
	e.dns.SetZone(t, e.nsZone+strings.TrimSpace(out)+"\n")
	if st := e.status(); st["edreload"] != "pending-publication" {
		t.Fatalf("before the reload: %v", st)
	}
	if out, err := e.cli("reload", "--config", e.cfgFile); err != nil || !strings.Contains(out, "reloaded") {
		t.Fatalf("reload: %q, %v", out, err)
	}
	e.waitStatus("edreload", "active")
	if st := e.status(); st["ed2026"] != "retiring-until" {
		t.Errorf("after the reload: %v", st)
	}
}
