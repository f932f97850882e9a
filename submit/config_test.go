package submit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFiles creates files (name -> content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

const goodConfig = `
hostname: relay.corp.example
dir: state
listeners:
  - name: submission
    address: "127.0.0.1:0"
    mode: submission
    auth: [sasl]
    tls_cert: tls/cert.pem
    tls_key: tls/key.pem
  - name: smarthost
    address: "127.0.0.1:2525"
    mode: smarthost
    auth: [network]
users_file: users
client_networks:
  - name: acme
    cidrs: [192.0.2.0/28, 198.51.100.7, "2001:db8::/32"]
    may_send_as: ["*@acme.example", "*@bücher.example"]
    seal: false
    rate_per_minute: 10
domains:
  - domain: corp.example
    keys:
      - {selector: s1, key_file: keys/s1.pem}
      - {selector: "2026e", key_file: keys/e.pem}
arc:
  domain: corp.example
  selector: arc
  key_file: keys/arc.pem
`

func goodConfigDir(t *testing.T) string {
	dir := t.TempDir()
	hash, _ := HashPassword("pw")
	writeFiles(t, dir, map[string]string{
		"sealgate.yaml": goodConfig,
		"tls/cert.pem":  "x", "tls/key.pem": "x",
		"users":       "alice " + hash + " *@corp.example\n",
		"keys/s1.pem": "x", "keys/e.pem": "x", "keys/arc.pem": "x",
	})
	return dir
}

func TestLoadConfig(t *testing.T) {
	dir := goodConfigDir(t)
	c, err := LoadConfig(filepath.Join(dir, "sealgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "relay.corp.example" || c.AuthservID != "relay.corp.example" || c.Dir != filepath.Join(dir, "state") {
		t.Errorf("top level: %+v", c)
	}
	if c.Listeners[0].TLSCert != filepath.Join(dir, "tls/cert.pem") || c.Listeners[1].Mode != "smarthost" {
		t.Errorf("listeners: %+v", c.Listeners)
	}
	want := LimitsConfig{MaxMessageBytes: 25 << 20, MaxRecipients: 100, MaxConnections: 200,
		CommandTimeout: 5 * time.Minute, DataTimeout: 10 * time.Minute, AuthFailures: 5, AuthCooldown: 5 * time.Minute}
	if c.Limits != want {
		t.Errorf("limits = %+v, want defaults %+v", c.Limits, want)
	}
	id, err := c.ClientNetworks[0].Identity()
	if err != nil || id.Kind != KindClientNetwork || id.Name != "acme" || id.Seal || id.RatePerMinute != 10 ||
		id.AllowedString() != "*@acme.example, *@xn--bcher-kva.example" {
		t.Errorf("network identity: %+v %v", id, err)
	}
	pfx, err := c.ClientNetworks[0].Prefixes()
	if err != nil || len(pfx) != 3 || pfx[1].String() != "198.51.100.7/32" {
		t.Errorf("prefixes: %v %v", pfx, err)
	}
}

func TestLoadConfigEnvironment(t *testing.T) {
	dir := goodConfigDir(t)
	t.Setenv("SEALGATE_HOSTNAME", "other.corp.example")
	t.Setenv("SEALGATE_LIMITS_MAX_RECIPIENTS", "250")
	t.Setenv("SEALGATE_LIMITS_DATA_TIMEOUT", "3m")
	t.Setenv("SEALGATE_ARC_SELECTOR", "arc2")
	t.Setenv("SEALGATE_USERS_FILE", "/nonexistent/users")
	c, err := LoadConfig(filepath.Join(dir, "sealgate.yaml"))
	if c == nil {
		t.Fatal(err)
	}
	if c.Hostname != "other.corp.example" || c.Limits.MaxRecipients != 250 || c.Limits.DataTimeout != 3*time.Minute || c.ARC.Selector != "arc2" {
		t.Errorf("environment not applied: %+v", c)
	}
	if err == nil || !strings.Contains(err.Error(), "users_file: file /nonexistent/users not found") {
		t.Errorf("err = %v", err)
	}
}

func TestConfigValidateReportsEverything(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"sealgate.yaml": `
hostname: "bad host"
authserv_id: "a;b"
listeners:
  - name: sub
    address: ":587"
    mode: submission
    auth: [sasl, carrier-pigeon, sasl]
    tls_cert: /x/cert.pem
  - name: sub
    address: "nope"
    mode: smtp
    auth: [client-cert]
    colour: red
limits:
  max_recipients: 10
  max_connections: many
  command_timeout: 0s
client_networks:
  - name: wide
    cidrs: [10.0.0.1/8, example]
    may_send_as: ["*", "*@*.com"]
client_certs:
  - name: c
    subject: x
    sha256: abc
domains:
  - domain: corp.example
  - domain: CORP.example
    unsigned: maybe
    keys: [{selector: "_bad", key_file: missing.pem}]
arc:
  pseudonymous_auth: true
relay:
  next_hop: nowhere
colour: blue
`})
	_, err := LoadConfig(filepath.Join(dir, "sealgate.yaml"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"\ncolour: unknown key",
		"listeners[1].colour: unknown key",
		"limits.max_connections: cannot parse",
		`hostname: addr: invalid domain "bad host"`,
		`authserv_id: "a;b"`,
		"dir: required",
		"listeners[0].auth[1]: \"carrier-pigeon\"",
		"listeners[0].auth[2]: \"sasl\" listed twice",
		"listeners[0].tls_cert: file /x/cert.pem not found",
		"listeners[0].tls_key: required",
		`listeners[1].name: "sub" used twice`,
		`listeners[1].address: "nope"`,
		`listeners[1].mode: "smtp"`,
		"listeners[1].auth[0]: client-cert needs tls_cert",
		"listeners[1].client_ca: required",
		"limits.max_recipients: 10",
		"limits.command_timeout: must be a positive duration",
		"users_file: required: a listener accepts sasl",
		"client_networks[0].cidrs[0]: \"10.0.0.1/8\" has host bits set",
		"client_networks[0].cidrs[1]: \"example\"",
		"client_networks[0].may_send_as[0]: may_send_as pattern \"*\"",
		"client_networks[0].may_send_as[1]: may_send_as pattern \"*@*.com\"",
		"client_certs[0]: set exactly one of subject and sha256",
		"domains[0].keys: no keys",
		"domains[1].domain: corp.example listed twice",
		"domains[1].keys[0].selector: \"_bad\"",
		"domains[1].keys[0].key_file: file " + filepath.Join(dir, "missing.pem") + " not found",
		"domains[1].unsigned: \"maybe\"",
		"arc.domain:", "arc.selector:", "arc.key_file: required", "arc.pseudonym_secret_file: required",
		"relay.next_hop: \"nowhere\"",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing problem %q", want)
		}
	}
	if t.Failed() {
		t.Logf("all problems:\n%v", err)
	}
}

func TestExampleConfig(t *testing.T) {
	// The example refers to files under /etc/sealgate; everything else in it must
	// be valid, including every key name.
	_, err := LoadConfig("../examples/sealgate.yaml")
	if err == nil {
		return
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatal(err)
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.Contains(line, "not found") {
			t.Errorf("example config problem: %s", line)
		}
	}
}
