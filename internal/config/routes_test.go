package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The smart host, its TLS and AUTH, and the routes of identities and domains.
func TestValidateRoutes(t *testing.T) {
	relaySection := func(yaml string) []string { return []string{"relay:\n  outbox: outbox\n", "relay:\n" + yaml} }

	t.Run("upstream ESP", func(t *testing.T) {
		t.Setenv("ESP_PASSWORD", "from-env")
		c, err, _ := loadWith(t, map[string]string{"esp.pw": "from-file\n"}, relaySection(`  next_hop: smtp.esp.example:587
  next_hop_tls: required
  auth: {username: acme, password_env: ESP_PASSWORD, mechanism: login}
  identities:
    - name: acme
      auth: {username: globex, password_file: esp.pw}
      helo_name: out.globex.example
      source_ip: 127.0.0.2
  domains:
    - domain: Partner.Example
`)...)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Open()
		if err != nil {
			t.Fatal(err)
		}
		d := res.Routes.Default
		if d.NextHop != "smtp.esp.example:587" || d.TLS != NextHopTLSRequired || d.Auth == nil || d.Auth.Password != "from-env" || d.Auth.Mechanism != "LOGIN" {
			t.Errorf("default route %+v (auth %v)", d, d.Auth)
		}
		g := res.Routes.Identities["acme"]
		if g.NextHop != "smtp.esp.example:587" || g.TLS != NextHopTLSRequired || g.Auth == nil || g.Auth.Username != "globex" ||
			g.Auth.Password != "from-file" || g.HeloName != "out.globex.example" || g.SourceIP.String() != "127.0.0.2" {
			t.Errorf("acme route %+v (auth %v)", g, g.Auth)
		}
		p, ok := res.Routes.Domains["partner.example"]
		if !ok || p.NextHop != "" || p.Auth != nil {
			t.Errorf("partner.example route %+v, %v; want MX delivery without AUTH", p, ok)
		}
		if strings.Contains(d.Auth.String(), "from-env") {
			t.Errorf("Credentials.String shows the password: %s", d.Auth)
		}
	})

	t.Run("AUTH without TLS", func(t *testing.T) {
		_, err, _ := loadWith(t, nil, relaySection("  next_hop: smtp.esp.example:587\n  auth: {username: acme, password: pw}\n")...)
		onlyProblems(t, err, `relay.auth: AUTH needs next_hop_tls: required or implicit, so that the password never crosses the network in plain text (next_hop_tls is "opportunistic")`)
		if err != nil && strings.Contains(err.Error(), "pw)") {
			t.Errorf("the password appears in %v", err)
		}
	})

	t.Run("AUTH for MX", func(t *testing.T) {
		_, err, _ := loadWith(t, nil, relaySection("  next_hop_tls: required\n  auth: {username: acme, password: pw}\n")...)
		onlyProblems(t, err, "relay.auth: AUTH needs a next_hop")
	})

	t.Run("password sources", func(t *testing.T) {
		_, err, _ := loadWith(t, nil, relaySection("  next_hop: h.example:465\n  next_hop_tls: implicit\n  auth: {username: acme, password: a, password_env: B}\n")...)
		onlyProblems(t, err, "relay.auth: give exactly one of password, password_env and password_file")
		_, err, _ = loadWith(t, nil, relaySection("  next_hop: h.example:465\n  next_hop_tls: implicit\n  auth: {username: acme, password_env: SEALGATE_TEST_UNSET_VAR}\n")...)
		onlyProblems(t, err, "relay.auth.password_env: environment variable SEALGATE_TEST_UNSET_VAR is not set or empty")
		c, err, dir := loadWith(t, map[string]string{"pw": "secret\n"}, relaySection("  next_hop: h.example:465\n  next_hop_tls: implicit\n  auth: {username: acme, password_file: pw}\n")...)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, "pw"), 0o644); err != nil {
			t.Fatal(err)
		}
		onlyProblems(t, validate(c), "relay.auth.password_file: "+filepath.Join(dir, "pw")+": mode 0644 lets others read the smart host password; chmod 600 it")
	})

	t.Run("bad values", func(t *testing.T) {
		_, err, _ := loadWith(t, nil, relaySection(`  next_hop_tls: sometimes
  mx_port: 0
  source_ip: 192.0.2.77
  identities:
    - helo_name: "bad name!"
    - name: acme-typo
    - name: alice
  domains:
    - domain: "[192.0.2.1]"
      next_hop: nohost
`)...)
		onlyProblems(t, err,
			`relay.next_hop_tls: "sometimes": want opportunistic, required or implicit`,
			"relay.mx_port: 0: want a port from 1 to 65535",
			"relay.source_ip: 192.0.2.77 is not an address of this host",
			"relay.identities[0].name: required",
			`relay.identities[1].name: "acme-typo" is not the name of a client network, a client certificate or a login of the users file`,
			"relay.identities[0].helo_name: ",
			"relay.domains[0].domain: ",
			`relay.domains[0].next_hop: "nohost": want host:port`,
		)
	})

	t.Run("implicit TLS for MX", func(t *testing.T) {
		_, err, _ := loadWith(t, nil, relaySection("  next_hop_tls: implicit\n")...)
		onlyProblems(t, err, "relay.next_hop_tls: implicit applies to a next_hop only (MX hosts take STARTTLS on port 25)")
		_, err, _ = loadWith(t, nil, relaySection("  domains:\n    - domain: partner.example\n      next_hop_tls: implicit\n")...)
		onlyProblems(t, err, "relay.domains[0].next_hop_tls: implicit applies to a next_hop only (MX hosts take STARTTLS on port 25)")
	})

	t.Run("ca_file", func(t *testing.T) {
		cert, _ := certPair(t)
		c, err, _ := loadWith(t, map[string]string{"ca.pem": cert, "bad.pem": "nothing\n"}, relaySection("  ca_file: ca.pem\n")...)
		if err != nil {
			t.Fatal(err)
		}
		if res, err := c.Open(); err != nil || res.Routes.RootCAs == nil {
			t.Errorf("ca_file: %v", err)
		}
		_, err, dir := loadWith(t, map[string]string{"bad.pem": "nothing\n"}, relaySection("  ca_file: bad.pem\n")...)
		onlyProblems(t, err, "relay.ca_file: "+filepath.Join(dir, "bad.pem")+" holds no PEM certificate")
	})
}
