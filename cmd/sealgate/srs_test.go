package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sealgate/internal/config"
	"sealgate/internal/srs"
)

// Dev mode has a forwarder login with its password on the credentials file's second line
// (the demo login's stays first), keys for its domain, and an SRS secret; `srs reverse`
// maps what that secret signed back and refuses a forged hash or an expired stamp.
func TestDevForwarderAndSRSReverse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	st, err := prepareDev(dir, devOptions{submission: "127.0.0.1:0", submissions: "127.0.0.1:0", smarthost: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	creds, _ := os.ReadFile(filepath.Join(dir, "credentials"))
	lines := strings.Split(strings.TrimSpace(string(creds)), "\n")
	if len(lines) != 2 || lines[0] != devLogin+" "+st.password || lines[1] != devListLogin+" "+st.listPassword {
		t.Fatalf("credentials:\n%s", creds)
	}
	cfg, res, err := loadAndOpen(st.configFile)
	if err != nil {
		t.Fatal(err)
	}
	settings, err := submitSettings(cfg, res)
	if err != nil {
		t.Fatal(err)
	}
	id, err := settings.Users.Authenticate(devListLogin, st.listPassword)
	if err != nil {
		t.Fatal(err)
	}
	if f := id.Forwarder; f == nil || f.SignAs != devListDomain || !f.SRS || f.FromRewrite != config.FromRewriteAuto ||
		f.ListAddress.String() != devListLogin || settings.Pipeline.SRS == nil {
		t.Fatalf("forwarder login: %+v, pipeline SRS %v", id.Forwarder, settings.Pipeline.SRS)
	}
	zone, _ := os.ReadFile(st.zoneFile)
	if !strings.Contains(string(zone), devListSelector+"._domainkey."+devListDomain) {
		t.Errorf("dev zone lacks the list's DKIM record:\n%s", zone)
	}
	// Running again keeps both passwords.
	st2, err := prepareDev(dir, devOptions{submission: "127.0.0.1:0", submissions: "127.0.0.1:0", smarthost: "127.0.0.1:0"})
	if err != nil || st2.password != st.password || st2.listPassword != st.listPassword {
		t.Fatalf("second run: %v", err)
	}

	a, err := settings.Pipeline.SRS.Forward("alice@author.example", devListDomain)
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, "srs", "reverse", a, "--config", st.configFile)
	if code != 0 || out != "alice@author.example\n" {
		t.Fatalf("srs reverse: %d %q %q", code, out, errOut)
	}
	out, _, code = runCLI(t, "srs", "reverse", a, "--secret-file", filepath.Join(dir, "srs.secret"))
	if code != 0 || out != "alice@author.example\n" {
		t.Errorf("srs reverse --secret-file: %d %q", code, out)
	}
	forged := strings.Replace(a, "=alice@", "=mallory@", 1)
	if _, errOut, code := runCLI(t, "srs", "reverse", forged, "--config", st.configFile); code != 1 || !strings.Contains(errOut, "hash does not verify") {
		t.Errorf("forged: %d %q", code, errOut)
	}
	old := &srs.SRS{Secrets: settings.Pipeline.SRS.Secrets, Now: func() time.Time { return time.Now().Add(-30 * 24 * time.Hour) }}
	expired, _ := old.Forward("alice@author.example", devListDomain)
	if _, errOut, code := runCLI(t, "srs", "reverse", expired, "--config", st.configFile); code != 1 || !strings.Contains(errOut, "expired") {
		t.Errorf("expired: %d %q", code, errOut)
	}
	if _, _, code := runCLI(t, "srs", "reverse", "bob@example.test", "--config", st.configFile); code != 1 {
		t.Errorf("not SRS: exit %d", code)
	}
	os.Chmod(filepath.Join(dir, "srs.secret"), 0o644)
	if _, errOut, code := runCLI(t, "srs", "reverse", a, "--secret-file", filepath.Join(dir, "srs.secret")); code != 2 || !strings.Contains(errOut, "chmod 600") {
		t.Errorf("readable secret: %d %q", code, errOut)
	}
}
