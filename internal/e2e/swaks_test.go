package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// swaks runs swaks with args against the relay and returns its transcript. swaks
// exits non-zero when the server refuses something; the caller judges the transcript.
func swaks(t testing.TB, args ...string) string {
	t.Helper()
	bin := requireTool(t, "swaks", "swaks")
	args = append([]string{"--timeout", "20", "--ehlo", "client.e2e.test"}, args...)
	cmd := exec.Command(bin, args...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("swaks %v did not finish within 40 s:\n%s", args, out)
	}
	_ = err // refusals exit non-zero; the transcript says what happened
	return string(out)
}

var swaksQueuedRE = regexp.MustCompile(`(?m)^<[-~]\s+250 2\.0\.0 OK queued as (\S+)\s*$`)

// swaksQueueID finds "250 2.0.0 OK queued as <id>" in a swaks transcript.
func swaksQueueID(t testing.TB, transcript string) string {
	t.Helper()
	m := swaksQueuedRE.FindStringSubmatch(transcript)
	if m == nil {
		t.Fatalf("swaks: message was not accepted (no \"250 2.0.0 OK queued as\"); transcript:\n%s", transcript)
	}
	return m[1]
}

type dkimpyResult struct {
	DKIM []struct {
		D, S, A string
		Pass    bool
		Log     []string
	}
	ARC struct{ CV, Reason string }
}

// verifyDkimpy runs testdata/dkimverify.py on a delivered message.
func verifyDkimpy(t testing.TB, zone, eml string) dkimpyResult {
	t.Helper()
	py := requireTool(t, "/usr/bin/python3", "python3")
	if out, err := exec.Command(py, "-c", "import dkim").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 cannot import dkim (install the Debian package python3-dkim): %v\n%s", err, out)
		}
		t.Skipf("python3 cannot import dkim (install the Debian package python3-dkim)")
	}
	out, err := exec.Command(py, "testdata/dkimverify.py", zone, eml).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("dkimverify.py %s: %v\n%s", eml, err, stderr)
	}
	var res dkimpyResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("dkimverify.py output %q: %v", out, err)
	}
	return res
}

// headerFields returns the unfolded header fields named name (case-insensitive),
// with whitespace runs collapsed to one space.
func headerFields(msg []byte, name string) []string {
	head, _, _ := strings.Cut(string(msg), "\r\n\r\n")
	head = regexp.MustCompile(`\r\n[ \t]+`).ReplaceAllString(head, " ")
	var out []string
	for _, l := range strings.Split(head, "\r\n") {
		n, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimSpace(n), name) {
			out = append(out, strings.Join(strings.Fields(v), " "))
		}
	}
	return out
}

// TestSwaksSignAndSeal sends with swaks on each listener and verifies the
// delivered message with dkimpy.
func TestSwaksSignAndSeal(t *testing.T) {
	requireTool(t, "swaks", "swaks")
	r := startRelay(t, "")
	body := "Quarterly numbers below.  \n\tLine two with a tab\t\n\n.a line starting with a dot\n\n\n"
	cases := []struct {
		name     string
		args     func() []string
		protocol string // Received "with" keyword
		smtpAuth string
	}{
		{"starttls-auth-plain", func() []string {
			return []string{"--server", r.Submission, "--tls", "--auth", "PLAIN",
				"--auth-user", devLogin, "--auth-password", r.password}
		}, "ESMTPSA", devLogin},
		{"implicit-tls-auth-login", func() []string {
			return []string{"--server", r.Submissions, "--tlsc", "--auth", "LOGIN",
				"--auth-user", devLogin, "--auth-password", r.password}
		}, "ESMTPSA", devLogin},
		{"smarthost-by-network", func() []string {
			return []string{"--server", r.SmartHost}
		}, "ESMTP", "smarthost-localhost"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args(), "--from", devLogin, "--to", "ops@partner.example",
				"--header", "Subject: e2e "+tc.name, "--body", body)
			tr := swaks(t, args...)
			id := swaksQueueID(t, tr)
			msg := r.waitOutbox(t, id)
			eml := filepath.Join(r.dir, "outbox", id+".eml")

			res := verifyDkimpy(t, filepath.Join(r.dir, "example.test.zone"), eml)
			if len(res.DKIM) != 2 {
				t.Fatalf("want 2 DKIM signatures (rsa2026, ed2026), dkimpy saw %d: %+v", len(res.DKIM), res.DKIM)
			}
			sels := map[string]bool{}
			for i, s := range res.DKIM {
				sels[s.S] = true
				if s.D != "example.test" {
					t.Errorf("signature %d: d=%s, want example.test", i, s.D)
				}
				if !s.Pass {
					t.Errorf("signature %d (s=%s a=%s): dkimpy says fail; log: %q", i, s.S, s.A, s.Log)
				}
			}
			if !sels["rsa2026"] || !sels["ed2026"] {
				t.Errorf("selectors %v, want rsa2026 and ed2026", sels)
			}
			if res.ARC.CV != "pass" {
				t.Errorf("dkimpy arc_verify: cv=%s (%s), want pass", res.ARC.CV, res.ARC.Reason)
			}

			aar := headerFields(msg, "ARC-Authentication-Results")
			want := "auth=pass smtp.auth=" + tc.smtpAuth
			if len(aar) != 1 || !strings.Contains(aar[0], want) {
				t.Errorf("ARC-Authentication-Results %q, want one containing %q", aar, want)
			}
			rcv := headerFields(msg, "Received")
			if len(rcv) == 0 {
				t.Fatalf("no Received field in the delivered message")
			}
			if !regexp.MustCompile(`\bwith ` + tc.protocol + `\b`).MatchString(rcv[0]) {
				t.Errorf("top Received %q, want protocol %q (RFC 3848)", rcv[0], tc.protocol)
			}
			if tc.protocol == "ESMTPSA" && !strings.Contains(rcv[0], devLogin) {
				t.Errorf("top Received %q does not name the authenticated login", rcv[0])
			}
			// The message must be exactly one copy, without bare CR or LF.
			if bad := bareLineEnds(msg); bad >= 0 {
				t.Errorf("delivered message has a bare CR or LF at offset %d", bad)
			}
			if t.Failed() {
				t.Logf("swaks transcript:\n%s\ndelivered message:\n%s", tr, msg)
			}
		})
	}
}

// bareLineEnds returns the offset of the first CR not followed by LF or LF not
// preceded by CR, or -1.
func bareLineEnds(b []byte) int {
	for i, c := range b {
		switch c {
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				return i
			}
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return i
			}
		}
	}
	return -1
}
