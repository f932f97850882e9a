package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sealgate/keys"
)

// TestSignSealVerifyCLI drives the command-line contract of sign, arc seal and
// arc verify with their exit statuses, on keys made by keys generate and a zone file of
// the records it printed.
func TestSignSealVerifyCLI(t *testing.T) {
	dir := t.TempDir()
	var zone strings.Builder
	for _, k := range []struct{ sel, alg string }{{"rsa1", "rsa2048"}, {"ed1", "ed25519"}} {
		out, errOut, code := runCLI(t, "keys", "generate", "--domain", "example.test", "--selector", k.sel,
			"--algorithm", k.alg, "--out", filepath.Join(dir, k.sel+".key"))
		if code != 0 {
			t.Fatalf("keys generate: %d %s", code, errOut)
		}
		zone.WriteString(out)
	}
	zoneFile := filepath.Join(dir, "zone")
	os.WriteFile(zoneFile, []byte(zone.String()), 0o644)
	msgFile := filepath.Join(dir, "m.eml")
	os.WriteFile(msgFile, []byte("From: a@example.test\nTo: b@example.net\nSubject: hi\n\nhello  \n"), 0o644)

	signed, errOut, code := runCLI(t, "sign", "--domain", "example.test", "--selector", "rsa1", "--key", filepath.Join(dir, "rsa1.key"),
		"--selector", "ed1", "--key", filepath.Join(dir, "ed1.key"), "--timestamp", "1791278100", msgFile)
	if code != 0 || strings.Count(signed, "DKIM-Signature:") != 2 || !strings.Contains(signed, "t=1791278100") {
		t.Fatalf("sign: code %d, stderr %s\n%s", code, errOut, signed)
	}
	signedFile := filepath.Join(dir, "signed.eml")
	os.WriteFile(signedFile, []byte(signed), 0o644)

	sealed, errOut, code := runCLI(t, "arc", "seal", "--domain", "example.test", "--selector", "rsa1", "--key", filepath.Join(dir, "rsa1.key"),
		"--authserv-id", "relay.example.test", "--result", "auth=pass smtp.auth=a@example.test", "--zone", zoneFile, signedFile)
	if code != 0 || !strings.HasPrefix(sealed, "ARC-Seal: i=1;") || !strings.Contains(sealed, "auth=pass smtp.auth=a@example.test") {
		t.Fatalf("arc seal: code %d, stderr %s\n%s", code, errOut, sealed)
	}
	sealedFile := filepath.Join(dir, "sealed.eml")
	os.WriteFile(sealedFile, []byte(sealed), 0o644)

	out, _, code := runCLI(t, "arc", "verify", "--zone", zoneFile, sealedFile)
	if code != 0 || !strings.HasPrefix(out, "arc=pass") {
		t.Errorf("arc verify: code %d, %q", code, out)
	}
	out, _, code = runCLI(t, "verify", "--zone", zoneFile, sealedFile)
	if code != 0 || strings.Count(out, "dkim=pass") != 2 {
		t.Errorf("verify: code %d, %q", code, out)
	}
	// Several files (as `verify sealgate-dev/outbox/*.eml` gives): one report each, headed.
	out, _, code = runCLI(t, "verify", "--zone", zoneFile, sealedFile, signedFile)
	if code != 0 || strings.Count(out, "dkim=pass") != 4 || !strings.HasPrefix(out, "==> "+sealedFile+" <==\n") ||
		!strings.Contains(out, "\n==> "+signedFile+" <==\n") {
		t.Errorf("verify of two files: code %d, %q", code, out)
	}
	out, _, code = runCLI(t, "arc", "verify", "--zone", zoneFile, signedFile)
	if code != 0 || !strings.HasPrefix(out, "arc=none") {
		t.Errorf("arc verify unsealed: code %d, %q", code, out)
	}

	tamperedFile := filepath.Join(dir, "tampered.eml")
	os.WriteFile(tamperedFile, []byte(strings.Replace(sealed, "hello", "Hello", 1)), 0o644)
	out, _, code = runCLI(t, "arc", "verify", "--zone", zoneFile, tamperedFile)
	if code != 1 || !strings.HasPrefix(out, "arc=fail") {
		t.Errorf("arc verify tampered: code %d, %q", code, out)
	}
	// The tampered chain is sealed with cv=fail; on top of that nothing more is added.
	failed, _, code := runCLI(t, "arc", "seal", "--domain", "example.test", "--selector", "rsa1", "--key", filepath.Join(dir, "rsa1.key"),
		"--authserv-id", "hop2.example", "--zone", zoneFile, tamperedFile)
	if code != 0 || !strings.Contains(failed, "cv=fail") {
		t.Fatalf("seal of failed chain: code %d\n%s", code, failed)
	}
	failedFile := filepath.Join(dir, "failed.eml")
	os.WriteFile(failedFile, []byte(failed), 0o644)
	out, errOut, code = runCLI(t, "arc", "seal", "--domain", "example.test", "--selector", "rsa1", "--key", filepath.Join(dir, "rsa1.key"),
		"--authserv-id", "hop3.example", "--zone", zoneFile, failedFile)
	if code != 0 || out != failed || !strings.Contains(errOut, "cv=fail") {
		t.Errorf("seal on cv=fail: code %d, unchanged %v, stderr %q", code, out == failed, errOut)
	}

	// Errors: exit 2 with a message, never a panic.
	badFile := filepath.Join(dir, "bad.eml")
	os.WriteFile(badFile, []byte("not a header line\n\nbody\n"), 0o644)
	for name, args := range map[string][]string{
		"malformed message": {"arc", "verify", "--zone", zoneFile, badFile},
		"missing file":      {"arc", "verify", "--zone", zoneFile, filepath.Join(dir, "nope.eml")},
		"unreadable key":    {"sign", "--domain", "example.test", "--selector", "s", "--key", filepath.Join(dir, "nope.key"), msgFile},
		"bad zone":          {"arc", "verify", "--zone", msgFile, sealedFile},
		"bad seal selector": {"arc", "seal", "--domain", "example.test", "--selector", "_arc", "--key", filepath.Join(dir, "rsa1.key"), "--authserv-id", "r.example", "--zone", zoneFile, signedFile},
	} {
		_, errOut, code := runCLI(t, args...)
		if code != 2 || !strings.HasPrefix(errOut, "sealgate: ") {
			t.Errorf("%s: code %d, stderr %q", name, code, errOut)
		}
	}
}

// TestMinRSABitsFlag: sign and arc seal refuse a 1024-bit key by default and sign with it
// given --min-rsa-bits 1024 (RFC 8301 §3.2 permits 1024 for signers), warning on stderr.
func TestMinRSABitsFlag(t *testing.T) {
	dir := t.TempDir()
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(weak)
	keyFile := filepath.Join(dir, "old.key")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	zoneFile := filepath.Join(dir, "zone")
	os.WriteFile(zoneFile, []byte(keys.DNSRecord(weak.Public(), "old", "example.test")+"\n"), 0o644)
	msgFile := filepath.Join(dir, "m.eml")
	os.WriteFile(msgFile, []byte("From: a@example.test\nTo: b@example.net\nSubject: hi\n\nhello\n"), 0o644)

	signArgs := []string{"sign", "--domain", "example.test", "--selector", "old", "--key", keyFile}
	sealArgs := []string{"arc", "seal", "--domain", "example.test", "--selector", "old", "--key", keyFile,
		"--authserv-id", "relay.example.test", "--zone", zoneFile}
	for name, args := range map[string][]string{"sign": signArgs, "arc seal": sealArgs} {
		out, errOut, code := runCLI(t, append(args, msgFile)...)
		if code != 2 || out != "" || !strings.Contains(errOut, "RSA key is 1024 bits; signing needs at least 2048") ||
			!strings.Contains(errOut, "--min-rsa-bits 1024") {
			t.Errorf("%s without --min-rsa-bits: exit %d, stdout %q, stderr %q", name, code, out, errOut)
		}
		_, errOut, code = runCLI(t, append(args, "--min-rsa-bits", "512", msgFile)...)
		if code != 2 || !strings.Contains(errOut, "--min-rsa-bits 512: must be at least 1024") {
			t.Errorf("%s --min-rsa-bits 512: exit %d, %q", name, code, errOut)
		}
	}

	signed, errOut, code := runCLI(t, append(signArgs, "--min-rsa-bits", "1024", msgFile)...)
	if code != 0 || !strings.HasPrefix(signed, "DKIM-Signature: ") || !strings.Contains(errOut, "warning: "+keyFile+": RSA key of 1024 bits") {
		t.Fatalf("sign --min-rsa-bits 1024: exit %d, stderr %q\n%s", code, errOut, signed)
	}
	signedFile := filepath.Join(dir, "signed.eml")
	os.WriteFile(signedFile, []byte(signed), 0o644)
	sealed, errOut, code := runCLI(t, append(sealArgs, "--min-rsa-bits", "1024", signedFile)...)
	if code != 0 || !strings.HasPrefix(sealed, "ARC-Seal: i=1;") || !strings.Contains(errOut, "RSA key of 1024 bits") {
		t.Fatalf("arc seal --min-rsa-bits 1024: exit %d, stderr %q\n%s", code, errOut, sealed)
	}
	sealedFile := filepath.Join(dir, "sealed.eml")
	os.WriteFile(sealedFile, []byte(sealed), 0o644)
	out, _, code := runCLI(t, "verify", "--zone", zoneFile, sealedFile)
	if code != 0 || !strings.Contains(out, "dkim=pass header.d=example.test") || !strings.Contains(out, "header.s=old") || !strings.Contains(out, "arc=pass") {
		t.Errorf("verify of the 1024-bit signature and seal: exit %d\n%s", code, out)
	}
}
