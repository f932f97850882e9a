package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sealgate/keys"
)

// The rotation commands in-process, against the zone file of configtest.Good (dns.zone_file:
// the file is the whole truth, no authoritative server is asked) and no running relay.
// The e2e test (internal/e2e/rotation_test.go) runs them against a relay and a DNS server.

// keysStatusJSON runs keys status --json and returns the domain's entry.
func keysStatusJSON(t *testing.T, cfgFile, domain string) domainStatus {
	t.Helper()
	out, errOut, code := runCLI(t, "keys", "status", "--config", cfgFile, "--json")
	if code != 0 {
		t.Fatalf("keys status: exit %d: %s", code, errOut)
	}
	var st struct{ Domains []domainStatus }
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("keys status --json: %v\n%s", err, out)
	}
	for _, d := range st.Domains {
		if d.Domain == domain {
			return d
		}
	}
	t.Fatalf("keys status has no %s:\n%s", domain, out)
	return domainStatus{}
}

// selectorStates returns "selector=state" of each selector, in order.
func selectorStates(ds domainStatus) string {
	var s []string
	for _, sel := range ds.Selectors {
		s = append(s, sel.Selector+"="+strings.Fields(sel.State)[0])
	}
	return strings.Join(s, " ")
}

func TestKeysRotateCommands(t *testing.T) {
	_, err, dir := loadWith(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "sealgate.yaml")
	zone := filepath.Join(dir, "corp.example.zone")
	base, _ := os.ReadFile(zone)

	// Start: the key is written 0600 under dir/keys, the record printed, the rotation pending.
	out, errOut, code := runCLI(t, "keys", "rotate", "--config", cfgFile, "--domain", "acme.example", "--alg", "ed25519", "--selector", "ed2")
	if code != 0 {
		t.Fatalf("keys rotate: exit %d: %s", code, errOut)
	}
	line := strings.TrimSpace(out)
	if !strings.HasPrefix(line, "ed2._domainkey.acme.example. IN TXT \"v=DKIM1; k=ed25519; p=") || !strings.Contains(errOut, "pending") {
		t.Fatalf("keys rotate printed %q, %q", out, errOut)
	}
	keyFile := filepath.Join(dir, "state", "keys", "ed2.acme.example.key")
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new key %s: %v", keyFile, err)
	}
	if got := selectorStates(keysStatusJSON(t, cfgFile, "acme.example")); got != "s1=active ed2=pending-publication" {
		t.Errorf("status after rotate: %s", got)
	}
	signsWith := func(want string) {
		t.Helper()
		_, res, err := loadAndOpen(cfgFile)
		if err != nil {
			t.Fatal(err)
		}
		dk, _ := res.KeyRing.Lookup("acme.example")
		var got []string
		for _, k := range dk.Keys {
			got = append(got, k.Selector)
		}
		if strings.Join(got, " ") != want {
			t.Errorf("acme.example signs with %q, want %q", got, want)
		}
	}
	signsWith("s1")
	records := func(want ...string) {
		t.Helper()
		out, errOut, code := runCLI(t, "dns", "records", "--config", cfgFile, "acme.example")
		for _, w := range want {
			if code != 0 || !strings.Contains(out, w) {
				t.Errorf("dns records (exit %d, %s) has no %q:\n%s", code, errOut, w, out)
			}
		}
	}
	records("s1._domainkey.acme.example. IN TXT", "selector ed2 (key rotation pending: publish it", line)

	// A second rotation of the family is refused while one is open.
	if _, errOut, code := runCLI(t, "keys", "rotate", "--config", cfgFile, "--domain", "acme.example", "--alg", "ed25519"); code == 0 || !strings.Contains(errOut, "already has a ed25519 rotation") {
		t.Errorf("second rotation: exit %d, %s", code, errOut)
	}

	// Not published: the check says so and nothing switches.
	out, errOut, code = runCLI(t, "keys", "rotate", "--config", cfgFile, "--check-now")
	if code != 1 || !strings.Contains(out, "acme.example s=ed2: NOT published") {
		t.Fatalf("check-now before publication: exit %d, %q %q", code, out, errOut)
	}
	signsWith("s1")

	// A record that does not publish the key is not publication either.
	other := line[:len(line)-10] + "AAAAAAAAA\""
	os.WriteFile(zone, append(append([]byte{}, base...), other+"\n"...), 0o600)
	if out, _, _ = runCLI(t, "keys", "rotate", "--config", cfgFile, "--check-now"); !strings.Contains(out, "NOT published") {
		t.Errorf("check-now with another key published: %q", out)
	}
	signsWith("s1")

	// Published: switched; the old record is to stay.
	os.WriteFile(zone, append(append([]byte{}, base...), line+"\n"...), 0o600)
	out, _, code = runCLI(t, "keys", "rotate", "--config", cfgFile, "--check-now")
	if code != 0 || !strings.Contains(out, "switched: acme.example s=ed2") {
		t.Fatalf("check-now after publication: exit %d, %q", code, out)
	}
	signsWith("ed2")
	records(line, "selector s1 (replaced by ed2: keep it published until", "s1._domainkey.acme.example. IN TXT")
	st := keysStatusJSON(t, cfgFile, "acme.example")
	if got := selectorStates(st); got != "s1=retiring-until ed2=active" || !strings.Contains(st.NextStep, "keep the record s1._domainkey.acme.example published until") {
		t.Errorf("status after the switch: %s; next %q", got, st.NextStep)
	}

	// Abort drops a pending rotation and its key; force switches one now.
	if _, errOut, code := runCLI(t, "keys", "rotate", "--config", cfgFile, "--domain", "bücher.example", "--alg", "ed25519"); code != 0 {
		t.Fatalf("rotate bücher.example: %s", errOut)
	}
	sel := keys.DefaultSelector(keys.FamilyEd25519, time.Now(), nil)
	abortKey := filepath.Join(dir, "state", "keys", sel+".xn--bcher-kva.example.key")
	if _, err := os.Stat(abortKey); err != nil {
		t.Fatalf("default selector %s: %v", sel, err)
	}
	out, errOut, code = runCLI(t, "keys", "rotate", "--config", cfgFile, "--domain", "bücher.example", "--alg", "ed25519", "--abort")
	if _, err := os.Stat(abortKey); code != 0 || !os.IsNotExist(err) || !strings.Contains(out, "aborted") {
		t.Errorf("abort: exit %d, %q %q, key file %v", code, out, errOut, err)
	}
	if got := selectorStates(keysStatusJSON(t, cfgFile, "xn--bcher-kva.example")); got != "s1=active" {
		t.Errorf("status after abort: %s", got)
	}
	if _, errOut, code := runCLI(t, "keys", "rotate", "--config", cfgFile, "--domain", "bücher.example", "--alg", "ed25519", "--selector", "forced1"); code != 0 {
		t.Fatalf("rotate bücher.example: %s", errOut)
	}
	out, errOut, code = runCLI(t, "keys", "rotate", "--config", cfgFile, "--domain", "bücher.example", "--alg", "ed25519", "--force")
	if code != 0 || !strings.Contains(errOut, "WARNING: s=forced1") || !strings.Contains(out, "forced") {
		t.Errorf("force: exit %d, %q %q", code, out, errOut)
	}
	_, res, err := loadAndOpen(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if dk, _ := res.KeyRing.Lookup("xn--bcher-kva.example"); len(dk.Keys) != 1 || dk.Keys[0].Selector != "forced1" {
		t.Errorf("after force bücher.example signs with %+v", dk.Keys)
	}
	if st := keysStatusJSON(t, cfgFile, "xn--bcher-kva.example"); len(st.Selectors) != 2 || !st.Selectors[1].Forced || !strings.Contains(st.NextStep, "signs by --force") {
		t.Errorf("status after force: %+v", st)
	}
	if _, errOut, code := runCLI(t, "keys", "rotate", "--config", cfgFile, "--domain", "bücher.example", "--alg", "ed25519", "--abort"); code == 0 || !strings.Contains(errOut, "no pending") {
		t.Errorf("abort of a switched rotation: exit %d, %s", code, errOut)
	}

	// Text status names the states and the next step.
	out, _, _ = runCLI(t, "keys", "status", "--config", cfgFile)
	for _, want := range []string{"acme.example\n", "ed2", "retiring-until", "next: keep the record"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys status has no %q:\n%s", want, out)
		}
	}

	// A broken state file stops the configuration from loading, naming the file.
	os.WriteFile(keys.RotationFile(filepath.Join(dir, "state")), []byte("{"), 0o600)
	if _, err := loadConfig(cfgFile); err == nil || !strings.Contains(err.Error(), "rotation.json") {
		t.Errorf("broken state file: %v", err)
	}
}
