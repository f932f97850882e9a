package main

import (
	"os"
	"path/filepath"
	"sealgate/internal/config"
	"strings"
	"testing"
)

// The checks of signing.go, through loadConfig as "sealgate config check" and serve run
// them: key files, the RSA minimum, coverage of every may_send_as pattern, forwarders'
// sign_as.

// openConfig loads everything a parsed configuration names, as loadAndOpen does.
func openConfig(cfg *config.Config) (*resources, error) {
	res, err := cfg.Open()
	return withSigning(cfg, res, err)
}

// A good configuration gives the key ring of its domains section and the ARC key.
func TestSigningResources(t *testing.T) {
	c, err, _ := loadWith(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := openConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	if res.ARCKey == nil || len(res.WeakKeys) != 0 || len(res.Users) != 1 {
		t.Errorf("resources: ARC key %v, weak keys %v, users %v", res.ARCKey, res.WeakKeys, res.Users)
	}
	if got := res.KeyRing.Domains(); len(got) != 3 || got[2] != "xn--bcher-kva.example" {
		t.Errorf("key ring domains: %v", got)
	}
	if dk, ok := res.KeyRing.Lookup("corp.example"); !ok || len(dk.Keys) != 2 || dk.Keys[1].Selector != "2026e" {
		t.Errorf("corp.example keys: %+v", dk)
	}
}

func TestSigningKeyFiles(t *testing.T) {
	weak := rsaKey(t, 1024)
	t.Run("mode", func(t *testing.T) {
		_, err, dir := loadWith(t, nil)
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, "keys/s1.pem"), 0o644)
		os.Chmod(filepath.Join(dir, "keys/arc.pem"), 0o604)
		_, err = loadConfig(filepath.Join(dir, "sealgate.yaml"))
		onlyProblems(t, err,
			"domains[0].keys[0].key_file: "+filepath.Join(dir, "keys/s1.pem")+": mode 0644 lets others read the private key; chmod 600 it",
			"arc.key_file: "+filepath.Join(dir, "keys/arc.pem")+": mode 0604 lets others read the private key; chmod 600 it")
	})
	t.Run("not a key", func(t *testing.T) {
		_, err, dir := loadWith(t, map[string]string{"keys/e.pem": "not a key\n", "keys/arc.pem": rsaKey(t, 1024)[:200]})
		onlyProblems(t, err,
			"domains[0].keys[1].key_file: "+filepath.Join(dir, "keys/e.pem")+`: no PEM "PRIVATE KEY" block found`,
			"arc.key_file: "+filepath.Join(dir, "keys/arc.pem")+`: no PEM "PRIVATE KEY" block found`)
	})
	t.Run("1024 bits refused by default", func(t *testing.T) {
		_, err, dir := loadWith(t, map[string]string{"keys/acme.pem": weak, "keys/arc.pem": weak})
		onlyProblems(t, err,
			"domains[1].keys[0].key_file: "+filepath.Join(dir, "keys/acme.pem")+": RSA key is 1024 bits; signing needs at least 2048 (RFC 8301 §3.2)",
			"arc.key_file: "+filepath.Join(dir, "keys/arc.pem")+": RSA key is 1024 bits; signing needs at least 2048")
	})
	t.Run("1024 bits with min_rsa_bits", func(t *testing.T) {
		c, err, _ := loadWith(t, map[string]string{"keys/acme.pem": weak, "keys/arc.pem": weak},
			"  - domain: acme.example\n", "  - domain: acme.example\n    min_rsa_bits: 1024\n",
			"  key_file: keys/arc.pem\n", "  key_file: keys/arc.pem\n  min_rsa_bits: 1024\n")
		if err != nil {
			t.Fatal(err)
		}
		res, err := openConfig(c)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"domains[1].keys[0] (acme.example s=s1): RSA 1024 bits", "arc.key_file (corp.example s=arc): RSA 1024 bits"}
		if strings.Join(res.WeakKeys, "|") != strings.Join(want, "|") {
			t.Errorf("WeakKeys = %q, want %q", res.WeakKeys, want)
		}
	})
	t.Run("min_rsa_bits below 1024", func(t *testing.T) {
		_, err, _ := loadWith(t, nil, "  - domain: acme.example\n", "  - domain: acme.example\n    min_rsa_bits: 512\n",
			"  key_file: keys/arc.pem\n", "  key_file: keys/arc.pem\n  min_rsa_bits: 768\n")
		onlyProblems(t, err,
			"domains[1].min_rsa_bits: 512: RSA signing keys must have at least 1024 bits (RFC 8301 §3.2); the default minimum is 2048",
			"arc.min_rsa_bits: 768: RSA signing keys must have at least 1024 bits")
	})
}

// Every may_send_as pattern of every identity must be signable, or relayable unsigned by
// an identity allowed to: otherwise serve would refuse all of that mail.
func TestSigningCoverage(t *testing.T) {
	network := `may_send_as: ["*@acme.example", "*@bücher.example"]`
	certPEM, _ := certPair(t)
	t.Run("domain without keys", func(t *testing.T) {
		_, err, _ := loadWith(t, nil, network, `may_send_as: ["*@acme.example", "news@other.example"]`)
		onlyProblems(t, err, "client_networks[0].may_send_as[1]: news@other.example: no DKIM keys sign for other.example: add it under domains with keys (or set sign_subdomains: true on a parent domain listed there)")
	})
	t.Run("client certificate", func(t *testing.T) {
		_, err, _ := loadWith(t, map[string]string{"ca.pem": certPEM},
			"    auth: [sasl]\n", "    auth: [sasl, client-cert]\n    client_ca: ca.pem\n",
			"domains:\n", "client_certs:\n  - {name: app, subject: app.initech.example, may_send_as: [noreply@initech.example]}\ndomains:\n")
		onlyProblems(t, err, "client_certs[0].may_send_as[0]: noreply@initech.example: no DKIM keys sign for initech.example: add it under domains with keys")
	})
	t.Run("subdomains without sign_subdomains", func(t *testing.T) {
		_, err, _ := loadWith(t, nil, network, `may_send_as: ["*@acme.example", "*@*.acme.example", "*@*.client.example"]`)
		onlyProblems(t, err,
			"client_networks[0].may_send_as[1]: *@*.acme.example: no DKIM keys sign for the subdomains of acme.example: set sign_subdomains: true on domains[1] (acme.example)",
			"client_networks[0].may_send_as[2]: *@*.client.example: no DKIM keys sign for the subdomains of client.example: add client.example under domains with keys and sign_subdomains: true")
	})
	t.Run("subdomains with sign_subdomains", func(t *testing.T) {
		_, err, _ := loadWith(t, nil, network, `may_send_as: ["*@acme.example", "*@*.acme.example", "x@news.acme.example"]`,
			"  - domain: acme.example\n", "  - domain: acme.example\n    sign_subdomains: true\n")
		if err != nil {
			t.Error(err)
		}
	})
	t.Run("unsigned relay", func(t *testing.T) {
		legacy := []string{"domains:\n", "domains:\n  - domain: legacy.example\n    unsigned: relay\n",
			network, `may_send_as: ["*@acme.example", "*@legacy.example"]`}
		_, err, dir := loadWith(t, map[string]string{"users": "alice " + testHash("pw") + " *@corp.example bob@legacy.example\n"}, legacy...)
		onlyProblems(t, err,
			"client_networks[0].may_send_as[1]: *@legacy.example: domains[0] (legacy.example) has no DKIM keys and relays unsigned mail only for identities that allow it: set allow_unsigned: true on client_networks[0], or add keys",
			"users_file: "+filepath.Join(dir, "users")+`:1: login "alice": may_send_as bob@legacy.example: domains[0] (legacy.example) has no DKIM keys and relays unsigned mail only for identities that allow it: set unsigned=yes on this line, or add keys`)

		_, err, _ = loadWith(t, map[string]string{"users": "alice " + testHash("pw") + " *@corp.example bob@legacy.example unsigned=yes\n"},
			append(legacy, "    seal: false\n", "    seal: false\n    allow_unsigned: true\n")...)
		if err != nil {
			t.Errorf("identities allowed to relay unsigned: %v", err)
		}
	})
	t.Run("users file", func(t *testing.T) {
		_, err, dir := loadWith(t, map[string]string{"users": "# users\nalice " + testHash("pw") + " *@corp.example\n\nbob " + testHash("pw") + " bob@corp.example *@*.corp.example\n"})
		onlyProblems(t, err, "users_file: "+filepath.Join(dir, "users")+`:4: login "bob": may_send_as *@*.corp.example: no DKIM keys sign for the subdomains of corp.example: set sign_subdomains: true on domains[0] (corp.example)`)
	})
}

// A forwarder's sign_as domain must have keys; one listed with keys whose files have
// problems is reported at the keys instead.
func TestSigningForwarderSignAs(t *testing.T) {
	_, err, dir := loadWith(t, map[string]string{
		"users": "alice " + testHash("pw") + " *@corp.example\nlist " + testHash("pw") + " *@corp.example role=forwarder sign_as=other.example\n",
	}, "    seal: false\n", "    seal: false\n    role: forwarder\n    sign_as: nokeys.example\n")
	onlyProblems(t, err,
		"client_networks[0].sign_as: nokeys.example has no DKIM keys: add it under domains with keys",
		"users_file: "+filepath.Join(dir, "users")+`:2: login "list": sign_as: other.example has no DKIM keys: add it under domains with keys`)

	_, err, dir = loadWith(t, map[string]string{"keys/acme.pem": "not a key\n"},
		"    seal: false\n", "    seal: false\n    role: forwarder\n    sign_as: acme.example\n")
	onlyProblems(t, err, "domains[1].keys[0].key_file: "+filepath.Join(dir, "keys/acme.pem")+`: no PEM "PRIVATE KEY" block found`)
}

// A problem of signing.go with a value set by the environment names the variable, as
// config's own problems do.
func TestSigningProblemsNameTheEnvironment(t *testing.T) {
	_, err, dir := loadWith(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SEALGATE_ARC_MIN_RSA_BITS", "512")
	_, err = loadConfig(filepath.Join(dir, "sealgate.yaml"))
	if err == nil || !strings.Contains(err.Error(), "arc.min_rsa_bits: 512: RSA signing keys must have at least 1024 bits") ||
		!strings.Contains(err.Error(), "(set by SEALGATE_ARC_MIN_RSA_BITS)") {
		t.Errorf("err = %v", err)
	}
}
