package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"sealgate/internal/resolver/resolvertest"
	"sealgate/keys"
)

// runCLI runs sealgate with args in-process as main would, returning what it printed and its
// exit status. Flags keep their values between Execute calls on the shared rootCmd, so every
// flag is reset to its default first.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var reset func(*cobra.Command)
	reset = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				_ = sv.Replace(nil) // Set would append to a slice flag
			} else {
				_ = f.Value.Set(f.DefValue)
			}
			f.Changed = false
		})
		for _, sub := range c.Commands() {
			reset(sub)
		}
	}
	reset(rootCmd)
	var out, errOut bytes.Buffer
	rootCmd.SetArgs(args)
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&errOut)
	defer func() {
		rootCmd.SetArgs(nil)
		rootCmd.SetOut(nil)
		rootCmd.SetErr(nil)
	}()
	err := rootCmd.Execute()
	if err != nil {
		code = 2
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		if err.Error() != "" {
			errOut.WriteString("sealgate: " + err.Error() + "\n")
		}
	}
	return out.String(), errOut.String(), code
}

func TestKeysGenerateAndCheck(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)

	// Default output file, Unicode domain normalised to A-labels.
	stdout, stderr, code := runCLI(t, "keys", "generate", "--domain", "Bücher.Example", "--selector", "ED2026", "--algorithm", "ed25519")
	if code != 0 {
		t.Fatalf("generate: exit %d: %s", code, stderr)
	}
	keyFile := filepath.Join(dir, "ed2026.xn--bcher-kva.example.key")
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatalf("generate did not write %s: %v", keyFile, err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	if !strings.HasPrefix(stdout, `ed2026._domainkey.xn--bcher-kva.example. IN TXT "v=DKIM1; k=ed25519; p=`) ||
		strings.Count(stdout, "\n") != 1 {
		t.Errorf("generate printed %q", stdout)
	}
	if strings.Contains(stdout, "PRIVATE") || strings.Contains(stderr, "PRIVATE") {
		t.Error("generate printed private key material")
	}

	// keys dns prints the same record from the file.
	dnsOut, stderr, code := runCLI(t, "keys", "dns", "--key", keyFile, "--domain", "xn--bcher-kva.example.", "--selector", "ed2026")
	if code != 0 || dnsOut != stdout {
		t.Errorf("keys dns: exit %d, %q (stderr %q), want %q", code, dnsOut, stderr, stdout)
	}

	// A second generate to the same file is refused; --force replaces it.
	_, stderr, code = runCLI(t, "keys", "generate", "--domain", "bücher.example", "--selector", "ed2026", "--algorithm", "ed25519")
	if code != 2 || !strings.Contains(stderr, "already exists") || !strings.Contains(stderr, "--force") {
		t.Errorf("second generate: exit %d, stderr %q; want 2 and already exists", code, stderr)
	}
	stdout2, _, code := runCLI(t, "keys", "generate", "--domain", "bücher.example", "--selector", "ed2026", "--algorithm", "ed25519", "--force")
	if code != 0 || stdout2 == stdout {
		t.Errorf("generate --force: exit %d, same record %v", code, stdout2 == stdout)
	}

	// check against a zone file holding the record, and against one holding the old key.
	good := filepath.Join(dir, "good.zone")
	old := filepath.Join(dir, "old.zone")
	os.WriteFile(good, []byte(stdout2), 0o644)
	os.WriteFile(old, []byte(stdout), 0o644)
	check := []string{"keys", "check", "--key", keyFile, "--domain", "bücher.example", "--selector", "ed2026"}

	stdout, stderr, code = runCLI(t, append(check, "--zone", good)...)
	if code != 0 || !strings.HasPrefix(stdout, "OK: ed2026._domainkey.xn--bcher-kva.example publishes this key") {
		t.Errorf("check (published): exit %d, %q %q", code, stdout, stderr)
	}
	stdout, _, code = runCLI(t, append(check, "--zone", old)...)
	if code != 1 || !strings.Contains(stdout, "NOT OK (other-key)") || !strings.Contains(stdout, "publish: ed2026._domainkey") {
		t.Errorf("check (old key): exit %d, %q", code, stdout)
	}

	// The same over the network, from the in-process DNS server.
	addr := resolvertest.Start(t, stdout2)
	stdout, stderr, code = runCLI(t, append(check, "--dns", addr)...)
	if code != 0 {
		t.Errorf("check --dns: exit %d, %q %q", code, stdout, stderr)
	}
	stdout, _, code = runCLI(t, "keys", "check", "--key", keyFile, "--domain", "other.example", "--selector", "ed2026", "--dns", addr)
	if code != 1 || !strings.Contains(stdout, "NOT OK (missing)") {
		t.Errorf("check (missing): exit %d, %q", code, stdout)
	}
}

func TestKeysCheckErrors(t *testing.T) {
	dir := t.TempDir()
	key, err := keys.Generate(keys.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "k.key")
	if err := keys.WritePrivateKey(keyFile, key); err != nil {
		t.Fatal(err)
	}
	servfail := resolvertest.StartHandler(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		_ = w.WriteMsg(new(dns.Msg).SetRcode(req, dns.RcodeServerFailure))
	}))
	zone := filepath.Join(dir, "z.zone")
	os.WriteFile(zone, []byte("example.com. IN TXT \"x\"\n"), 0o644)
	badZone := filepath.Join(dir, "bad.zone")
	os.WriteFile(badZone, []byte("example.com. IN TXT \"x\"\nexample.com. IN MX x y\n"), 0o644)
	openKey := filepath.Join(dir, "open.key")
	data, _ := os.ReadFile(keyFile)
	os.WriteFile(openKey, data, 0o644)
	os.Chmod(openKey, 0o644)

	base := []string{"keys", "check", "--key", keyFile, "--domain", "example.com", "--selector", "s1"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"servfail", append(base, "--dns", servfail), "SERVFAIL"},
		{"both", append(base, "--dns", servfail, "--zone", zone), "--dns and --zone are mutually exclusive"},
		{"bad zone", append(base, "--zone", badZone), "bad.zone:2:"},
		{"bad timeout", append(base, "--dns-timeout", "0s"), "--dns-timeout"},
		{"open key", []string{"keys", "check", "--key", openKey, "--domain", "example.com", "--selector", "s1", "--zone", zone},
			"mode 0644 lets others read the private key; chmod 600 it"},
		{"bad domain", []string{"keys", "dns", "--key", keyFile, "--domain", "exa mple.com", "--selector", "s1"}, `--domain "exa mple.com" is not a valid domain name`},
		{"one label", []string{"keys", "dns", "--key", keyFile, "--domain", "localhost", "--selector", "s1"}, "at least two labels"},
		{"bad selector", []string{"keys", "dns", "--key", keyFile, "--domain", "example.com", "--selector", "s1;x"}, `--selector "s1;x" is not valid`},
		{"bad algorithm", []string{"keys", "generate", "--domain", "example.com", "--selector", "s1", "--algorithm", "dsa", "--out", filepath.Join(dir, "x.key")}, "unknown key algorithm"},
		{"missing flag", []string{"keys", "dns", "--key", keyFile, "--selector", "s1"}, `"domain" not set`},
	}
	for _, tt := range tests {
		stdout, stderr, code := runCLI(t, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2 and %q", tt.name, code, stdout, stderr, tt.want)
		}
	}
}

func TestKeysHelp(t *testing.T) {
	for _, sub := range []string{"generate", "dns", "check"} {
		stdout, _, code := runCLI(t, "keys", sub, "--help")
		if code != 0 || !strings.Contains(stdout, "Examples:") || !strings.Contains(stdout, "sealgate keys "+sub) {
			t.Errorf("keys %s --help: exit %d, %q", sub, code, stdout)
		}
	}
}

func TestNormalise(t *testing.T) {
	for in, want := range map[string]string{"Example.COM.": "example.com", "bücher.example": "xn--bcher-kva.example"} {
		if got, err := normaliseDomain(in); err != nil || got != want {
			t.Errorf("normaliseDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a..b", "-x.example", "x_y.example", "a@b.example"} {
		if _, err := normaliseDomain(bad); err == nil {
			t.Errorf("normaliseDomain(%q): no error", bad)
		}
	}
	for in, want := range map[string]string{"S1": "s1", "2026-01.rsa": "2026-01.rsa", "google_2023": "google_2023"} {
		if got, err := normaliseSelector(in); err != nil || got != want {
			t.Errorf("normaliseSelector(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "a..b", "-s", "s ", "s/1", strings.Repeat("a", 64)} {
		if _, err := normaliseSelector(bad); err == nil {
			t.Errorf("normaliseSelector(%q): no error", bad)
		}
	}
}
