package config

import (
	"fmt"
	"io"
	"os"
	"strings"

	"sealgate/internal/addr"
	"sealgate/internal/secretfile"
	"sealgate/internal/srs"
)

// The identity roles.
const (
	// RoleSubmission (the default): the client writes its own mail; every From must be its
	// own, and it is signed for the From domain.
	RoleSubmission = "submission"
	// RoleForwarder: a mailing list or forwarder relays mail whose author is someone else. Its
	// mail is verified, signed with its sign_as domain and ARC-sealed; the From is not checked.
	RoleForwarder = "forwarder"
)

// The from_rewrite modes of a forwarder.
const (
	FromRewriteOff    = "off"
	FromRewriteAuto   = "auto"
	FromRewriteAlways = "always"
)

// ForwarderRules are the settings of an identity with role forwarder, in client_networks and
// client_certs entries and as users-file options (role=forwarder sign_as=lists.example ...).
type ForwarderRules struct {
	// Role is submission (default) or forwarder.
	Role string `mapstructure:"role"`
	// SignAs is the domain a forwarder's mail is DKIM-signed as (d=); it must have keys.
	SignAs string `mapstructure:"sign_as"`
	// ListAddress is the list's own address, which a rewritten From shows.
	ListAddress string `mapstructure:"list_address"`
	// ListName is the display name in a rewritten From ("Alice via Team"); empty means the
	// list address's local part.
	ListName string `mapstructure:"list_name"`
	// FromRewrite is off (default), auto or always.
	FromRewrite string `mapstructure:"from_rewrite"`
	// SRS rewrites the envelope sender by the Sender Rewriting Scheme into SignAs, for plain
	// forwarders; a list's own bounce address, already in SignAs, is left as it is.
	SRS bool `mapstructure:"srs"`
	// TrustedAuthservIDs are the authserv-ids whose Authentication-Results the forwarder's
	// messages carry from its own verification, copied into our AAR.
	TrustedAuthservIDs []string `mapstructure:"trusted_authserv_ids"`
}

// IsForwarder reports whether the rules give the forwarder role.
func (f ForwarderRules) IsForwarder() bool { return f.Role == RoleForwarder }

// Rewrite returns FromRewrite with the default filled in.
func (f ForwarderRules) Rewrite() string {
	if f.FromRewrite == "" {
		return FromRewriteOff
	}
	return f.FromRewrite
}

// SRSConfig is the srs section: the secrets SRS addresses are signed with.
type SRSConfig struct {
	// SecretFiles hold one secret each (at least MinSRSSecretBytes, white space around it
	// not counted), with the file mode of private keys. The first signs, every one verifies,
	// so a new secret goes first and the old one stays until its addresses expire.
	SecretFiles []string `mapstructure:"secret_files"`
	// MaxAgeDays is how long an SRS address can be reversed (Mail::SRS's default: 21).
	MaxAgeDays int `mapstructure:"max_age_days"`
}

// MinSRSSecretBytes is the shortest SRS secret accepted: 128 bits.
const MinSRSSecretBytes = 16

// problems checks the rules on their own and returns each problem as (key, message), key
// relative to the identity ("sign_as").
func (f ForwarderRules) problems(authservID string) [][2]string {
	var out [][2]string
	add := func(k, format string, a ...any) { out = append(out, [2]string{k, fmt.Sprintf(format, a...)}) }
	switch f.Role {
	case "", RoleSubmission:
		for k, set := range map[string]bool{"sign_as": f.SignAs != "", "list_address": f.ListAddress != "",
			"list_name": f.ListName != "", "from_rewrite": f.FromRewrite != "", "srs": f.SRS,
			"trusted_authserv_ids": len(f.TrustedAuthservIDs) > 0} {
			if set {
				add(k, "only for role: forwarder")
			}
		}
		return out
	case RoleForwarder:
	default:
		add("role", "%q: want submission or forwarder", f.Role)
		return out
	}
	signAs, err := addr.ParseDomain(f.SignAs)
	if f.SignAs == "" {
		add("sign_as", "required for role: forwarder (the domain its mail is signed as)")
	} else if err != nil {
		add("sign_as", "%v", err)
	}
	switch f.Rewrite() {
	case FromRewriteOff, FromRewriteAuto, FromRewriteAlways:
	default:
		add("from_rewrite", "%q: want off, auto or always", f.FromRewrite)
	}
	if f.ListAddress != "" {
		la, err := addr.ParseAddress(f.ListAddress)
		switch {
		case err != nil:
			add("list_address", "%v", err)
		case la.AddressLiteral != "":
			add("list_address", "%s: an address literal cannot be a From", f.ListAddress)
		case signAs != "" && addr.OrgDomain(la.Domain) != addr.OrgDomain(signAs):
			// A rewritten From must pass DMARC through our signature (RFC 7489 §3.1.1).
			add("list_address", "%s is not in the organisational domain of sign_as %s, so a From rewritten to it would fail DMARC", f.ListAddress, signAs)
		}
	} else if r := f.Rewrite(); r == FromRewriteAuto || r == FromRewriteAlways {
		add("list_address", "required with from_rewrite: %s (the address a rewritten From shows)", f.Rewrite())
	}
	if strings.ContainsAny(f.ListName, "\"\\\r\n") {
		add("list_name", "%q contains quotes, backslashes or line breaks", f.ListName)
	}
	for i, id := range f.TrustedAuthservIDs {
		k := fmt.Sprintf("trusted_authserv_ids[%d]", i)
		switch {
		case id == "" || strings.ContainsAny(id, " \t;()\"\\,"):
			add(k, "%q is not an authserv-id (RFC 8601 §2.5)", id)
		case strings.EqualFold(id, authservID):
			add(k, "%q is our own authserv-id: results claiming it are removed as forged", id)
		}
	}
	return out
}

// forwarders checks the forwarder settings of every identity and loads the SRS secrets.
func (v *validation) forwarders() {
	c, p := v.c, &v.p
	usesSRS := false
	// report adds a problem with an identity's setting sub: at its key path, or for a
	// users-file line at users_file with the line named.
	type reporter func(sub, format string, a ...any)
	check := func(report reporter, f ForwarderRules, maySendAs []addr.Pattern) {
		for _, pr := range f.problems(c.AuthservID) {
			report(pr[0], "%s", pr[1])
		}
		if !f.IsForwarder() {
			return
		}
		d, err := addr.ParseDomain(f.SignAs)
		if err != nil {
			return
		}
		// Whether d has keys to sign with is cmd/sealgate's check (signing.go there).
		if f.SRS {
			usesSRS = true
			// The rewritten envelope sender is in sign_as, under any local part.
			probe := addr.Address{Local: "SRS0=hhhh=tt=example.com=x", Domain: d}
			if !permits(maySendAs, probe) {
				report("may_send_as", "srs: true rewrites the envelope sender into %s: add the pattern *@%s", d, d)
			}
		}
	}
	at := func(k string) reporter {
		return func(sub, format string, a ...any) { p.add(k+"."+sub, format, a...) }
	}
	for i, n := range c.ClientNetworks {
		ps, _ := n.Patterns()
		check(at(fmt.Sprintf("client_networks[%d]", i)), n.ForwarderRules, ps)
	}
	for i, cc := range c.ClientCerts {
		ps, _ := cc.Patterns()
		check(at(fmt.Sprintf("client_certs[%d]", i)), cc.ForwarderRules, ps)
	}
	for _, u := range v.res.Users {
		check(func(sub, format string, a ...any) {
			p.add("users_file", "%s:%d: login %q: %s: %s", c.UsersFile, u.Line, u.Login, sub, fmt.Sprintf(format, a...))
		}, u.Forwarder, u.MaySendAs)
	}

	s := c.SRS
	if s.MaxAgeDays < 1 || s.MaxAgeDays > 1000 {
		p.add("srs.max_age_days", "%d: want 1 to 1000 days (the stamp counts days modulo 1024)", s.MaxAgeDays)
	}
	if usesSRS && len(s.SecretFiles) == 0 {
		p.add("srs.secret_files", "required: an identity has srs: true (for example: head -c 32 /dev/urandom | base64 > srs.secret; chmod 600 srs.secret)")
	}
	for i, path := range s.SecretFiles {
		k := fmt.Sprintf("srs.secret_files[%d]", i)
		if !v.secretFile(k, path, "the SRS secret") {
			continue
		}
		secret, err := ReadSRSSecret(path)
		if err != nil {
			p.add(k, "%v", err)
			continue
		}
		v.res.SRSSecrets = append(v.res.SRSSecrets, secret)
	}
}

// ReadSRSSecret reads one SRS secret file: held to the file-mode rule of private keys
// (internal/secretfile), and at least MinSRSSecretBytes once white space around it is removed.
func ReadSRSSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := secretfile.CheckMode(path, st, "the SRS secret"); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, 64*1024))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	secret := []byte(strings.TrimSpace(string(b)))
	if len(secret) < MinSRSSecretBytes {
		return nil, fmt.Errorf("%s holds %d bytes; the secret must be at least %d (for example: head -c 32 /dev/urandom | base64 > %s)", path, len(secret), MinSRSSecretBytes, path)
	}
	return secret, nil
}

func permits(ps []addr.Pattern, a addr.Address) bool {
	for _, pt := range ps {
		if pt.Matches(a) {
			return true
		}
	}
	return false
}

// SRS returns the rewriter for the srs section and the secrets Open loaded, or nil when no
// secret is configured.
func (r *Resources) SRS(c *Config) *srs.SRS {
	if len(r.SRSSecrets) == 0 {
		return nil
	}
	return &srs.SRS{Secrets: r.SRSSecrets, MaxAge: c.SRS.MaxAgeDays}
}

// forwarderOptions are the users-file options of ForwarderRules. An option is recognised
// by its name before '=' even when its value holds '@' (list_address=team@lists.example).
var forwarderOptions = []string{"role", "sign_as", "list_address", "list_name", "from_rewrite", "srs", "trusted_authserv_ids"}

func isForwarderOption(tok string) bool {
	k, _, ok := strings.Cut(tok, "=")
	if !ok {
		return false
	}
	for _, o := range forwarderOptions {
		if k == o {
			return true
		}
	}
	return false
}

// setForwarderOption sets one users-file forwarder option; ok is false for another name.
func (f *ForwarderRules) setForwarderOption(k, v string) (ok bool, err error) {
	switch k {
	case "role":
		f.Role = v
	case "sign_as":
		f.SignAs = v
	case "list_address":
		f.ListAddress = v
	case "list_name":
		// White space cannot be written in a users file: '_' stands for a space.
		f.ListName = strings.ReplaceAll(v, "_", " ")
	case "from_rewrite":
		f.FromRewrite = v
	case "srs":
		switch v {
		case "yes", "true":
			f.SRS = true
		case "no", "false":
			f.SRS = false
		default:
			return true, fmt.Errorf("option srs=%q: want yes or no", v)
		}
	case "trusted_authserv_ids":
		f.TrustedAuthservIDs = strings.Split(v, ",")
	default:
		return false, nil
	}
	return true, nil
}
