package config

import (
	"path/filepath"
	"strings"
	"testing"
)

const forwarderNetwork = `client_networks:
  - name: lists
    cidrs: [192.0.2.100]
    may_send_as: ["*@acme.example"]
    role: forwarder
    sign_as: acme.example
    list_address: team@acme.example
    list_name: Team
    from_rewrite: auto
    trusted_authserv_ids: [mx.acme.example]
  - name: fwd
    cidrs: [192.0.2.101]
    may_send_as: ["*@acme.example"]
    role: forwarder
    sign_as: acme.example
    srs: true
  - name: acme
`

func TestForwarderConfig(t *testing.T) {
	secret := strings.Repeat("s", 32) + "\n"
	c, err, dir := loadWith(t, map[string]string{
		"srs.secret": secret, "srs.old": strings.Repeat("o", 16),
		"users": "alice " + testHash("pw") + " *@corp.example\n" +
			"list@corp.example " + testHash("pw") + " *@corp.example role=forwarder sign_as=corp.example list_address=team@corp.example list_name=The_Team from_rewrite=always trusted_authserv_ids=a.example,b.example\n",
	}, "client_networks:\n  - name: acme\n", forwarderNetwork, "relay:\n", "srs:\n  secret_files: [srs.secret, srs.old]\nrelay:\n")
	if err != nil {
		t.Fatal(err)
	}
	l := c.ClientNetworks[0].ForwarderRules
	if !l.IsForwarder() || l.SignAs != "acme.example" || l.ListAddress != "team@acme.example" || l.ListName != "Team" ||
		l.Rewrite() != FromRewriteAuto || len(l.TrustedAuthservIDs) != 1 || l.SRS {
		t.Errorf("list rules = %+v", l)
	}
	if f := c.ClientNetworks[1].ForwarderRules; !f.SRS || f.Rewrite() != FromRewriteOff {
		t.Errorf("forwarder rules = %+v", f)
	}
	if c.SRS.MaxAgeDays != 21 || c.SRS.SecretFiles[0] != filepath.Join(dir, "srs.secret") {
		t.Errorf("srs = %+v", c.SRS)
	}
	res, err := c.Open()
	if err != nil {
		t.Fatal(err)
	}
	if len(res.SRSSecrets) != 2 || string(res.SRSSecrets[0]) != strings.TrimSpace(secret) || res.SRS(c) == nil {
		t.Errorf("SRS secrets = %q", res.SRSSecrets)
	}
	u := res.Users[1].Forwarder
	if !u.IsForwarder() || u.SignAs != "corp.example" || u.ListAddress != "team@corp.example" || u.ListName != "The Team" ||
		u.Rewrite() != FromRewriteAlways || strings.Join(u.TrustedAuthservIDs, " ") != "a.example b.example" {
		t.Errorf("users-file forwarder = %+v", u)
	}
	if len(res.Users[1].MaySendAs) != 1 {
		t.Errorf("list_address=... taken as a pattern: %v", res.Users[1].MaySendAs)
	}
}

func TestForwarderConfigProblems(t *testing.T) {
	bad := `client_networks:
  - name: a
    cidrs: [192.0.2.100]
    may_send_as: ["*@acme.example"]
    role: forwarder
    sign_as: other.example
    from_rewrite: sometimes
    srs: true
    trusted_authserv_ids: ["relay.corp.example", "a b"]
  - name: b
    cidrs: [192.0.2.101]
    may_send_as: ["bounces@acme.example"]
    role: forwarder
    sign_as: acme.example
    list_address: team@elsewhere.example
    srs: true
  - name: c
    cidrs: [192.0.2.102]
    may_send_as: ["*@acme.example"]
    role: forwarder
    from_rewrite: auto
  - name: d
    cidrs: [192.0.2.103]
    may_send_as: ["*@acme.example"]
    sign_as: acme.example
  - name: e
    cidrs: [192.0.2.104]
    may_send_as: ["*@acme.example"]
    role: lister
  - name: acme
`
	_, err, _ := loadWith(t, map[string]string{
		"users": "alice " + testHash("pw") + " *@corp.example\n" +
			"list " + testHash("pw") + " *@corp.example role=forwarder\n",
	}, "client_networks:\n  - name: acme\n", bad, "relay:\n", "srs:\n  max_age_days: 0\nrelay:\n")
	onlyProblems(t, err,
		"client_networks[0].from_rewrite: \"sometimes\": want off, auto or always",
		"client_networks[0].trusted_authserv_ids[0]: \"relay.corp.example\" is our own authserv-id",
		"client_networks[0].trusted_authserv_ids[1]: \"a b\" is not an authserv-id",
		// whether other.example has keys: cmd/sealgate (TestSigningForwarderSignAs)
		"client_networks[0].may_send_as: srs: true rewrites the envelope sender into other.example",
		"client_networks[1].list_address: team@elsewhere.example is not in the organisational domain of sign_as acme.example",
		"client_networks[1].may_send_as: srs: true rewrites the envelope sender into acme.example: add the pattern *@acme.example",
		"client_networks[2].sign_as: required for role: forwarder",
		"client_networks[2].list_address: required with from_rewrite: auto",
		"client_networks[3].sign_as: only for role: forwarder",
		"client_networks[4].role: \"lister\": want submission or forwarder",
		"users_file: "+"", // the users-file line, checked below
		"srs.max_age_days: 0: want 1 to 1000 days",
		"srs.secret_files: required: an identity has srs: true",
	)
	if !strings.Contains(err.Error(), `login "list": sign_as: required for role: forwarder`) {
		t.Errorf("users-file problem not named by line and login:\n%v", err)
	}
}
