package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	dir := goodConfigDir(t)
	c, err := Load(filepath.Join(dir, "sealgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "relay.corp.example" || c.AuthservID != "relay.corp.example" || c.Dir != filepath.Join(dir, "state") {
		t.Errorf("top level: %+v", c)
	}
	if c.Listeners[0].TLSCert != filepath.Join(dir, "tls/cert.pem") || c.Listeners[1].Mode != "smarthost" {
		t.Errorf("listeners: %+v", c.Listeners)
	}
	want := LimitsConfig{MaxMessageBytes: 25 << 20, MaxRecipients: 100, MaxConnections: 200, MaxConnectionsPerIP: 20,
		CommandTimeout: 5 * time.Minute, DataTimeout: 10 * time.Minute, PreAuthTimeout: 30 * time.Second, MaxHeaderFields: 1000,
		AuthFailures: 5, AuthCooldown: 5 * time.Minute, InFlowDelay: time.Second, DrainTimeout: 15 * time.Second}
	if c.Limits != want {
		t.Errorf("limits = %+v, want defaults %+v", c.Limits, want)
	}
	if c.DNS != (DNSConfig{ZoneFile: filepath.Join(dir, "corp.example.zone"), Timeout: 5 * time.Second}) {
		t.Errorf("dns = %+v, want the zone file with the default 5s timeout", c.DNS)
	}
	n := c.ClientNetworks[0]
	pats, err := n.Patterns()
	if err != nil || n.Name != "acme" || n.Sealed() || n.RatePerMinute != 10 || len(pats) != 2 ||
		pats[0].String() != "*@acme.example" || pats[1].String() != "*@xn--bcher-kva.example" {
		t.Errorf("network rules: %+v %v %v", n, pats, err)
	}
	res, err := c.Open()
	if err != nil {
		t.Fatal(err)
	}
	pfx := res.NetworkPrefixes[0]
	if len(pfx) != 3 || pfx[1].String() != "198.51.100.7/32" {
		t.Errorf("prefixes: %v", pfx)
	}
	if res.ListenerTLS[0] == nil || res.ListenerTLS[1] != nil || len(res.Users) != 1 || res.Resolver == nil {
		t.Errorf("resources: %+v", res)
	}
	if d := res.Domains; len(d) != 3 || d[2].Domain != "xn--bcher-kva.example" || len(d[0].GoodSelector) != 2 || !d[0].GoodSelector[1] {
		t.Errorf("checked domains: %+v", d)
	}
}

func TestLoadConfigEnvironment(t *testing.T) {
	dir := goodConfigDir(t)
	t.Setenv("SEALGATE_HOSTNAME", "other.corp.example")
	t.Setenv("SEALGATE_LIMITS_MAX_RECIPIENTS", "250")
	t.Setenv("SEALGATE_LIMITS_DATA_TIMEOUT", "3m")
	t.Setenv("SEALGATE_ARC_SELECTOR", "arc2")
	t.Setenv("SEALGATE_USERS_FILE", "/nonexistent/users")
	c, err := Load(filepath.Join(dir, "sealgate.yaml"))
	if c == nil {
		t.Fatal(err)
	}
	if c.Hostname != "other.corp.example" || c.Limits.MaxRecipients != 250 || c.Limits.DataTimeout != 3*time.Minute || c.ARC.Selector != "arc2" {
		t.Errorf("environment not applied: %+v", c)
	}
	if err == nil || !strings.Contains(err.Error(), "users_file: file /nonexistent/users not found (set by SEALGATE_USERS_FILE)") {
		t.Errorf("err = %v", err)
	}
}

// Environment values that do not parse name the variable; values in the file that do not
// parse name the key; both say what was expected.
func TestLoadConfigParseErrors(t *testing.T) {
	t.Setenv("SEALGATE_LIMITS_MAX_RECIPIENTS", "lots")
	t.Setenv("SEALGATE_LIMITS_COMMAND_TIMEOUT", "10 minutes")
	t.Setenv("SEALGATE_ARC_PSEUDONYMOUS_AUTH", "maybe")
	_, err, _ := loadWith(t, nil, "relay:\n", `limits:
  data_timeout: "10 minutes"
  auth_cooldown: 600
  max_connections: 1.5
relay:
`)
	onlyProblems(t, err,
		`SEALGATE_LIMITS_MAX_RECIPIENTS: not a number: "lots" (overrides limits.max_recipients)`,
		`SEALGATE_LIMITS_COMMAND_TIMEOUT: "10 minutes" is not a duration; use a number with a unit: 30s, 5m, 1h (overrides limits.command_timeout)`,
		`SEALGATE_ARC_PSEUDONYMOUS_AUTH: not true or false: "maybe" (overrides arc.pseudonymous_auth)`,
		`limits.data_timeout: "10 minutes" is not a duration; use a number with a unit: 30s, 5m, 1h`,
		`limits.auth_cooldown: 600 is not a duration; use a number with a unit: 30s, 5m, 1h`,
		`limits.max_connections: not a whole number: 1.5`,
		// What failed to decode is not reported again as the zero Validate saw.
	)

	// A value from the environment that Open refuses says where it came from.
	t.Setenv("SEALGATE_LIMITS_MAX_RECIPIENTS", "10")
	t.Setenv("SEALGATE_LIMITS_COMMAND_TIMEOUT", "0s")
	t.Setenv("SEALGATE_ARC_PSEUDONYMOUS_AUTH", "false")
	_, err, _ = loadWith(t, nil)
	onlyProblems(t, err,
		"limits.max_recipients: 10: RFC 5321 §4.5.3.1.8 requires accepting at least 100 (limit individual clients with max_recipients) (set by SEALGATE_LIMITS_MAX_RECIPIENTS)",
		"limits.command_timeout: must be a positive duration such as 5m (set by SEALGATE_LIMITS_COMMAND_TIMEOUT)")
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
	_, err := Load(filepath.Join(dir, "sealgate.yaml"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"\ncolour: unknown key",
		"listeners[1].colour: unknown key",
		`limits.max_connections: not a number: "many"`,
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
	_, err := Load("../../examples/sealgate.yaml")
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

// A public-suffix pattern is reported with its key path by configuration checks
// ("sealgate config check") and with its line by the users file.
func TestPublicSuffixPatternReported(t *testing.T) {
	hash := testHash("pw")
	_, err, dir := loadWith(t, map[string]string{
		"users": "alice " + hash + " *@corp.example\nbob " + hash + " *@*.co.uk\n",
	}, `may_send_as: ["*@acme.example", "*@bücher.example"]`, `may_send_as: ["*@acme.example", "*@*.co.uk", "*@github.io"]`)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`client_networks[0].may_send_as[1]: may_send_as pattern "*@*.co.uk": "co.uk" is a public suffix (ICANN section`,
		`client_networks[0].may_send_as[2]: may_send_as pattern "*@github.io": "github.io" is a public suffix (private section`,
		filepath.Join(dir, "users") + `:2: login "bob": may_send_as pattern "*@*.co.uk": "co.uk" is a public suffix`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing problem %q", want)
		}
	}
	if strings.Contains(err.Error(), "may_send_as[0]") || strings.Contains(err.Error(), ":1:") {
		t.Errorf("good pattern or line reported:\n%v", err)
	}
	if t.Failed() {
		t.Logf("all problems:\n%v", err)
	}
}

func TestValidateTLS(t *testing.T) {
	_, otherKey := certPair(t)
	cert, _ := certPair(t)
	t.Run("mismatch", func(t *testing.T) {
		_, err, dir := loadWith(t, map[string]string{"tls/key.pem": otherKey})
		onlyProblems(t, err, "listeners[0].tls_key: "+filepath.Join(dir, "tls/key.pem")+" does not match the certificate in "+filepath.Join(dir, "tls/cert.pem"))
	})
	t.Run("garbage", func(t *testing.T) {
		_, err, dir := loadWith(t, map[string]string{"tls/cert.pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "tls/key.pem": "junk"})
		onlyProblems(t, err, "listeners[0].tls_cert: "+filepath.Join(dir, "tls/cert.pem")+": x509: ")
	})
	t.Run("key unreadable", func(t *testing.T) {
		_, err, dir := loadWith(t, map[string]string{"tls/cert.pem": cert, "tls/key.pem": "junk"})
		onlyProblems(t, err, "listeners[0].tls_key: "+filepath.Join(dir, "tls/key.pem")+": failed to find any PEM data in key input")
	})
	t.Run("key mode", func(t *testing.T) {
		c, err, dir := loadWith(t, nil)
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, "tls/key.pem"), 0o640)
		onlyProblems(t, validate(c), "listeners[0].tls_key: "+filepath.Join(dir, "tls/key.pem")+": mode 0640 lets others read the private key; chmod 600 it")
	})
	t.Run("client CA", func(t *testing.T) {
		_, err, dir := loadWith(t, map[string]string{"ca.pem": "no certificate here\n"},
			"    auth: [sasl]\n", "    auth: [sasl, client-cert]\n    client_ca: ca.pem\n",
			"domains:\n", "client_certs:\n  - {name: gw, subject: gw.acme.example, may_send_as: [\"*@acme.example\"]}\ndomains:\n")
		onlyProblems(t, err, "listeners[0].client_ca: "+filepath.Join(dir, "ca.pem")+" holds no PEM certificate")
	})
}

func TestValidateSecrets(t *testing.T) {
	t.Run("users file mode", func(t *testing.T) {
		c, err, dir := loadWith(t, nil)
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, "users"), 0o644)
		onlyProblems(t, validate(c), "users_file: "+filepath.Join(dir, "users")+": mode 0644 lets others read the password hashes; chmod 600 it")
	})
	withSecret := []string{"  key_file: keys/arc.pem\n", "  key_file: keys/arc.pem\n  pseudonymous_auth: true\n  pseudonym_secret_file: secret\n"}
	t.Run("pseudonym secret too short", func(t *testing.T) {
		_, err, dir := loadWith(t, map[string]string{"secret": "  fifteen-bytes!!\n"}, withSecret...)
		onlyProblems(t, err, "arc.pseudonym_secret_file: "+filepath.Join(dir, "secret")+" holds 15 bytes; the secret must be at least 16")
	})
	t.Run("pseudonym secret mode", func(t *testing.T) {
		c, err, dir := loadWith(t, map[string]string{"secret": "sixteen-bytes-ok"}, withSecret...)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Open()
		if err != nil || string(res.PseudonymKey) != "sixteen-bytes-ok" {
			t.Fatalf("pseudonym key %q, %v", res.PseudonymKey, err)
		}
		os.Chmod(filepath.Join(dir, "secret"), 0o644)
		onlyProblems(t, validate(c), "arc.pseudonym_secret_file: "+filepath.Join(dir, "secret")+": mode 0644 lets others read the secret; chmod 600 it")
	})
}

func TestValidateRelayAndDNS(t *testing.T) {
	// Neither next_hop nor outbox: delivery to MX hosts.
	c, err, _ := loadWith(t, nil, "relay:\n  outbox: outbox\n", "")
	if err != nil {
		t.Fatalf("no relay section (MX delivery): %v", err)
	}
	if res, err := c.Open(); err != nil || res.Routes == nil || res.Routes.Default.NextHop != "" || c.Relay.MXPort != 25 {
		t.Errorf("MX delivery: routes %+v, mx_port %d, %v", res.Routes, c.Relay.MXPort, err)
	}

	_, err, _ = loadWith(t, nil, "  outbox: outbox\n", "  outbox: outbox\n  next_hop: mx.corp.example:25\n")
	onlyProblems(t, err, "relay: set relay.next_hop or relay.outbox, not both (neither: delivery to MX hosts)")

	_, err, _ = loadWith(t, map[string]string{"outbox": "a file"}, "  outbox: outbox\n", "  outbox: outbox\n")
	onlyProblems(t, err, "relay.outbox: ") // a file, not a directory

	_, err, dir := loadWith(t, map[string]string{"zone": "this is not a zone\n"}, "zone_file: corp.example.zone", "zone_file: zone")
	onlyProblems(t, err, "dns.zone_file: zone file "+filepath.Join(dir, "zone")+":1")

	_, err, _ = loadWith(t, nil, "dns:\n", "dns:\n  server: 192.0.2.53:53\n")
	onlyProblems(t, err, "dns: set dns.server or dns.zone_file, not both")

	_, err, _ = loadWith(t, nil, "  zone_file: corp.example.zone", "  server: \"bad server:x\"")
	onlyProblems(t, err, `dns.server: DNS server "bad server:x"`)

	c, err, _ = loadWith(t, nil, "  zone_file: corp.example.zone", "  server: 192.0.2.53:53")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Open(); err != nil || res.Resolver == nil {
		t.Errorf("DNS server resolver: %v", err)
	}
}

// relay.workers and limits.in_flow_delay: defaults, values and bounds.
func TestValidateWorkersAndInFlowDelay(t *testing.T) {
	c, err, _ := loadWith(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Relay.Workers != DefaultWorkers || c.Limits.InFlowDelay != time.Second {
		t.Errorf("defaults: workers %d, in_flow_delay %s", c.Relay.Workers, c.Limits.InFlowDelay)
	}
	c, err, _ = loadWith(t, nil, "  outbox: outbox\n", "  outbox: outbox\n  workers: 40\nlimits:\n  in_flow_delay: 0s\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Relay.Workers != 40 || c.Limits.InFlowDelay != 0 {
		t.Errorf("set: workers %d, in_flow_delay %s (0 turns flow control off)", c.Relay.Workers, c.Limits.InFlowDelay)
	}
	_, err, _ = loadWith(t, nil, "  outbox: outbox\n", "  outbox: outbox\n  workers: 0\nlimits:\n  in_flow_delay: 1m\n")
	onlyProblems(t, err, "relay.workers: 0: want from 1 to 1000",
		"limits.in_flow_delay: 1m0s: want a duration from 0 (off) to 10s, such as 1s")
	t.Setenv("SEALGATE_LIMITS_IN_FLOW_DELAY", "-1s")
	_, err, _ = loadWith(t, nil)
	onlyProblems(t, err, "limits.in_flow_delay: -1s: want a duration from 0 (off) to 10s")
}

// sign_subdomains on a public suffix is refused: its keys would sign for others' domains.
// (Coverage of every may_send_as pattern is cmd/sealgate's check, signing.go there.)
func TestValidateSignSubdomainsPublicSuffix(t *testing.T) {
	_, err, _ := loadWith(t, map[string]string{"keys/uk.pem": edKey(t)}, "domains:\n", "domains:\n  - domain: co.uk\n    sign_subdomains: true\n    keys: [{selector: s1, key_file: keys/uk.pem}]\n")
	onlyProblems(t, err, "domains[0].sign_subdomains: co.uk is a public suffix: the domains under it belong to others, and its keys may not sign for them")
}

// validate is Open's error alone.
func validate(c *Config) error {
	_, err := c.Open()
	return err
}
