package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sealgate/internal/resolver"
	"sealgate/keys"
)

func devConfigFile(t *testing.T) string {
	t.Helper()
	st, err := prepareDev(filepath.Join(t.TempDir(), "dev"), devOptions{submission: "127.0.0.1:0", submissions: "127.0.0.1:0", smarthost: "127.0.0.1:0", admin: "127.0.0.1:2580"})
	if err != nil {
		t.Fatal(err)
	}
	return st.configFile
}

func TestConfigShow(t *testing.T) {
	file := devConfigFile(t)
	// A password written in the file is redacted.
	b, _ := os.ReadFile(file)
	withSecret := strings.Replace(string(b), "relay:\n", "relay:\n  auth:\n    username: relay-user\n    password: s3cret-in-file\n", 1)
	if err := os.WriteFile(file, []byte(withSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, "config", "show", "--config", file)
	if strings.Contains(out+errOut, "s3cret-in-file") {
		t.Errorf("config show prints the password:\n%s", out)
	}
	for _, want := range []string{
		"hostname = relay.example.test\n",
		"limits.max_recipients = 100\n", // a default, filled in
		"limits.pre_auth_timeout = 30s\n",
		"listeners[1].mode = submissions\n",
		"domains[0].keys[1].selector = ed2026\n",
		"relay.auth.password = <redacted>\n",
		"admin.listen = 127.0.0.1:2580\n",
		"log.format = text\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("config show has no line %q", want)
		}
	}
	if t.Failed() {
		t.Logf("exit %d\n%s%s", code, out, errOut)
	}

	out, _, code = runCLI(t, "config", "show", "--config", file, "-n")
	if code == 2 || strings.Contains(out, "limits.max_recipients") || !strings.Contains(out, "hostname = relay.example.test\n") ||
		!strings.Contains(out, "relay.auth.password = <redacted>\n") {
		t.Errorf("config show -n: exit %d\n%s", code, out)
	}
	out, _, code = runCLI(t, "config", "show", "-d")
	if code != 0 || !strings.Contains(out, "limits.max_recipients = 100\n") || !strings.Contains(out, "log.level = info\n") || strings.Contains(out, "hostname = relay") {
		t.Errorf("config show -d: exit %d\n%s", code, out)
	}
	t.Setenv("SEALGATE_LIMITS_MAX_RECIPIENTS", "7")
	if out, _, _ = runCLI(t, "config", "show", "--config", file, "-n"); !strings.Contains(out, "limits.max_recipients = 7\n") {
		t.Errorf("an environment override is not shown:\n%s", out)
	}
}

// dns records prints zone-file lines that parse, with key records that match the keys,
// an SPF record for the relay and a DMARC record at p=none with rua.
func TestDNSRecords(t *testing.T) {
	file := devConfigFile(t)
	out, errOut, code := runCLI(t, "dns", "records", "--config", file)
	if code != 0 {
		t.Fatalf("dns records: exit %d %s", code, errOut)
	}
	r, err := resolver.NewZoneResolver(strings.NewReader(out), "", "dns records")
	if err != nil {
		t.Fatalf("the output does not parse as a zone: %v\n%s", err, out)
	}
	ctx := context.Background()
	dir := filepath.Dir(file)
	for _, k := range []struct{ sel, file string }{
		{"rsa2026", "keys/rsa2026.example.test.key"},
		{"ed2026", "keys/ed2026.example.test.key"},
		{"arc2026", "keys/arc2026.example.test.key"},
	} {
		key, err := keys.Load(filepath.Join(dir, k.file))
		if err != nil {
			t.Fatal(err)
		}
		res, err := keys.Check(ctx, r, key, k.sel, "example.test")
		if err != nil || !res.OK() {
			t.Errorf("selector %s: %+v %v", k.sel, res, err)
		}
	}
	spf, err := r.LookupTXT(ctx, "example.test")
	if err != nil || len(spf) != 1 || spf[0] != "v=spf1 a:relay.example.test ~all" {
		t.Errorf("SPF: %q %v", spf, err)
	}
	dmarc, err := r.LookupTXT(ctx, "_dmarc.example.test")
	if err != nil || len(dmarc) != 1 || !strings.HasPrefix(dmarc[0], "v=DMARC1; p=none; rua=mailto:dmarc-reports@example.test") {
		t.Errorf("DMARC: %q %v", dmarc, err)
	}

	if _, errOut, code := runCLI(t, "dns", "records", "--config", file, "other.example"); code != 2 || !strings.Contains(errOut, "not a domain of the configuration") {
		t.Errorf("an unknown domain: exit %d %q", code, errOut)
	}
}

func TestReloadNotRunning(t *testing.T) {
	_, errOut, code := runCLI(t, "reload", "--dir", t.TempDir())
	if code != 2 || !strings.Contains(errOut, "not running") {
		t.Errorf("reload without a running relay: exit %d %q", code, errOut)
	}
}
