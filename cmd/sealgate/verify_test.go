package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyCLI drives sealgate verify: the staged report with and without the envelope,
// --json, exit 0 whatever the results and 2 for errors.
func TestVerifyCLI(t *testing.T) {
	dir := t.TempDir()
	out, errOut, code := runCLI(t, "keys", "generate", "--domain", "corp.example", "--selector", "ed1",
		"--algorithm", "ed25519", "--out", filepath.Join(dir, "ed1.key"))
	if code != 0 {
		t.Fatalf("keys generate: %d %s", code, errOut)
	}
	zone := out + `
relay.corp.example.         300 A   192.0.2.25
relay.corp.example.         300 TXT "v=spf1 a -all"
25.2.0.192.in-addr.arpa.    300 PTR relay.corp.example.
corp.example.               300 MX  10 relay.corp.example.
bounce.corp.example.        300 TXT "v=spf1 ip4:192.0.2.25 -all"
_dmarc.corp.example.        300 TXT "v=DMARC1; p=reject; pct=0; rua=mailto:d@corp.example"
`
	zoneFile := filepath.Join(dir, "zone")
	os.WriteFile(zoneFile, []byte(zone), 0o644)
	msgFile := filepath.Join(dir, "m.eml")
	os.WriteFile(msgFile, []byte("From: ana@corp.example\nTo: b@example.net\nSubject: hi\n\nhello\n"), 0o644)
	signed, errOut, code := runCLI(t, "sign", "--domain", "corp.example", "--selector", "ed1", "--key", filepath.Join(dir, "ed1.key"), msgFile)
	if code != 0 {
		t.Fatalf("sign: %d %s", code, errOut)
	}
	signedFile := filepath.Join(dir, "signed.eml")
	os.WriteFile(signedFile, []byte(signed), 0o644)

	env := []string{"--ip", "192.0.2.25", "--helo", "relay.corp.example", "--mail-from", "b@bounce.corp.example", "--authserv-id", "mx.test.example"}
	out, errOut, code = runCLI(t, append(append([]string{"verify", "--zone", zoneFile}, env...), signedFile)...)
	for _, want := range []string{
		"Authentication-Results: mx.test.example;\n spf=pass smtp.mailfrom=b@bounce.corp.example;\n spf=pass smtp.helo=relay.corp.example;\n dkim=pass header.d=corp.example",
		"dmarc=pass header.from=corp.example policy.dmarc=none",
		"iprev=pass policy.iprev=192.0.2.25 (relay.corp.example)",
		"connect  iprev        pass", "mail     spf          pass", "[0 of 10 DNS lookups, 0 of 2 void]",
		"\nverdict: accept at data\n",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("verify with envelope: exit %d, stderr %q, output lacks %q:\n%s", code, errOut, want, out)
		}
	}

	// Unsigned and without an envelope: DMARC fails, the two RFCs disagree (pct=0), and the
	// stages needing an IP say so; still exit 0.
	out, _, code = runCLI(t, "verify", "--zone", zoneFile, msgFile)
	for _, want := range []string{"dkim=none", "dmarc=fail", "connect  iprev        not checked     no client IP",
		"mail     spf          not checked     no MAIL FROM", "RFC 9989 would reject, RFC 7489 would quarantine",
		"verdict: reject at data: 550 5.7.1 Email rejected per DMARC policy for corp.example"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("verify without envelope: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}

	out, _, code = runCLI(t, append(append([]string{"verify", "--json", "--zone", zoneFile}, env...), signedFile)...)
	var rep struct {
		Verdict struct{ Action string }
		SPF     struct{ Result string }
		DMARC   struct{ Result string } `json:"dmarc_rfc7489"`
	}
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || rep.Verdict.Action != "accept" || rep.SPF.Result != "pass" || rep.DMARC.Result != "pass" {
		t.Errorf("--json: exit %d, %v, %+v\n%s", code, err, rep, out)
	}

	for name, args := range map[string][]string{
		"bad --ip":         {"verify", "--zone", zoneFile, "--ip", "192.0.2.300", signedFile},
		"bad --mail-from":  {"verify", "--zone", zoneFile, "--mail-from", "no-at-sign", signedFile},
		"--dns and --zone": {"verify", "--zone", zoneFile, "--dns", "127.0.0.1:53", signedFile},
		"missing file":     {"verify", "--zone", zoneFile, filepath.Join(dir, "nope.eml")},
	} {
		_, errOut, code := runCLI(t, args...)
		if code != 2 || !strings.HasPrefix(errOut, "sealgate: ") {
			t.Errorf("%s: exit %d, stderr %q", name, code, errOut)
		}
	}
}
