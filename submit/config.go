package submit

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"sealgate/internal/addr"
)

// Config is sealgate's whole configuration, loaded by LoadConfig from one YAML
// file with SEALGATE_* environment overrides and checked by Validate. The keys are
// described in examples/sealgate.yaml.
type Config struct {
	Hostname       string                `mapstructure:"hostname"`
	AuthservID     string                `mapstructure:"authserv_id"`
	Dir            string                `mapstructure:"dir"`
	Listeners      []ListenerConfig      `mapstructure:"listeners"`
	Limits         LimitsConfig          `mapstructure:"limits"`
	UsersFile      string                `mapstructure:"users_file"`
	ClientNetworks []ClientNetworkConfig `mapstructure:"client_networks"`
	ClientCerts    []ClientCertConfig    `mapstructure:"client_certs"`
	Domains        []DomainConfig        `mapstructure:"domains"`
	ARC            ARCConfig             `mapstructure:"arc"`
	Relay          RelayConfig           `mapstructure:"relay"`
}

// ListenerConfig is one entry of listeners.
type ListenerConfig struct {
	Name     string   `mapstructure:"name"`
	Address  string   `mapstructure:"address"`
	Mode     string   `mapstructure:"mode"` // submission | submissions | smarthost
	Auth     []string `mapstructure:"auth"` // sasl | client-cert | network
	TLSCert  string   `mapstructure:"tls_cert"`
	TLSKey   string   `mapstructure:"tls_key"`
	ClientCA string   `mapstructure:"client_ca"`
}

// LimitsConfig is the limits section.
type LimitsConfig struct {
	MaxMessageBytes int64         `mapstructure:"max_message_bytes"`
	MaxRecipients   int           `mapstructure:"max_recipients"`
	MaxConnections  int           `mapstructure:"max_connections"`
	CommandTimeout  time.Duration `mapstructure:"command_timeout"`
	DataTimeout     time.Duration `mapstructure:"data_timeout"`
	AuthFailures    int           `mapstructure:"auth_failures"`
	AuthCooldown    time.Duration `mapstructure:"auth_cooldown"`
}

// SenderRules are the per-identity settings shared by client networks and
// client certificates (logins carry them in the users file).
type SenderRules struct {
	MaySendAs       []string `mapstructure:"may_send_as"`
	AllowNullSender bool     `mapstructure:"allow_null_sender"`
	Seal            *bool    `mapstructure:"seal"` // nil: true
	RatePerMinute   int      `mapstructure:"rate_per_minute"`
	MaxRecipients   int      `mapstructure:"max_recipients"`
	AllowUnsigned   bool     `mapstructure:"allow_unsigned"`
}

// ClientNetworkConfig is one entry of client_networks: a client organisation's
// servers, known by source address.
type ClientNetworkConfig struct {
	Name        string   `mapstructure:"name"`
	CIDRs       []string `mapstructure:"cidrs"`
	SenderRules `mapstructure:",squash"`
}

// ClientCertConfig is one entry of client_certs: a client known by its TLS
// client certificate's subject common name or SHA-256 fingerprint.
type ClientCertConfig struct {
	Name        string `mapstructure:"name"`
	Subject     string `mapstructure:"subject"`
	SHA256      string `mapstructure:"sha256"`
	SenderRules `mapstructure:",squash"`
}

// DomainConfig is one entry of domains: a domain we sign for.
type DomainConfig struct {
	Domain   string      `mapstructure:"domain"`
	Keys     []KeyConfig `mapstructure:"keys"`
	Unsigned string      `mapstructure:"unsigned"` // refuse (default) | relay
}

// KeyConfig is one DKIM key of a domain.
type KeyConfig struct {
	Selector string `mapstructure:"selector"`
	KeyFile  string `mapstructure:"key_file"`
}

// ARCConfig is the relay's ARC sealing key (RFC 8617).
type ARCConfig struct {
	Domain              string `mapstructure:"domain"`
	Selector            string `mapstructure:"selector"`
	KeyFile             string `mapstructure:"key_file"`
	PseudonymousAuth    bool   `mapstructure:"pseudonymous_auth"`
	PseudonymSecretFile string `mapstructure:"pseudonym_secret_file"`
}

// RelayConfig says where accepted mail goes.
type RelayConfig struct {
	NextHop string `mapstructure:"next_hop"`
	Outbox  string `mapstructure:"outbox"`
}

// configDefaults are applied before the file is read. Every scalar key is listed,
// even without a default, because viper consults the environment only for keys
// it knows.
var configDefaults = map[string]any{
	"hostname":                  "",
	"authserv_id":               "",
	"dir":                       "",
	"users_file":                "",
	"limits.max_message_bytes":  25 << 20,
	"limits.max_recipients":     100,
	"limits.max_connections":    200,
	"limits.command_timeout":    "5m",
	"limits.data_timeout":       "10m",
	"limits.auth_failures":      5,
	"limits.auth_cooldown":      "5m",
	"arc.domain":                "",
	"arc.selector":              "",
	"arc.key_file":              "",
	"arc.pseudonymous_auth":     false,
	"arc.pseudonym_secret_file": "",
	"relay.next_hop":            "",
	"relay.outbox":              "",
}

// LoadConfig reads the YAML file at path, applies SEALGATE_* environment
// overrides (SEALGATE_HOSTNAME, SEALGATE_LIMITS_MAX_RECIPIENTS: the key path in
// upper case with '.' as '_'; lists cannot be overridden this way), resolves
// relative file names against the file's directory, and validates the result. On
// error it returns every problem found (unknown keys, wrong types and Validate's
// findings) joined; the *Config is returned too if the file could be read.
func LoadConfig(path string) (*Config, error) {
	v := viper.New()
	for k, d := range configDefaults {
		v.SetDefault(k, d)
	}
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	v.SetEnvPrefix("SEALGATE")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if err := v.ReadInConfig(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	var c Config
	// UnmarshalExact reports keys the struct does not know: a misspelt key
	// must not silently fall back to a default.
	decodeErr := decodeProblems(v.UnmarshalExact(&c))
	c.resolvePaths(filepath.Dir(path))
	if c.AuthservID == "" {
		c.AuthservID = c.Hostname
	}
	return &c, errors.Join(decodeErr, c.Validate())
}

// decodeProblems rewrites mapstructure's errors into Validate's form, one per
// problem with its key path: "limits.max_recipients: cannot parse ...",
// "listeners[0].colour: unknown key".
func decodeProblems(err error) error {
	if err == nil {
		return nil
	}
	var p problems
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		de, ok := err.(*mapstructure.DecodeError)
		if !ok {
			if u := errors.Unwrap(err); u != nil {
				walk(u)
				return
			}
			p = append(p, err)
			return
		}
		inner := de.Unwrap().Error()
		if keys, ok := strings.CutPrefix(inner, "has invalid keys: "); ok {
			for _, k := range strings.Split(keys, ", ") {
				if de.Name() != "" {
					k = de.Name() + "." + k
				}
				p.add(k, "unknown key")
			}
			return
		}
		p.add(de.Name(), "%s", inner)
	}
	walk(err)
	return errors.Join(p...)
}

func (c *Config) resolvePaths(base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.Dir)
	abs(&c.UsersFile)
	for i := range c.Listeners {
		abs(&c.Listeners[i].TLSCert)
		abs(&c.Listeners[i].TLSKey)
		abs(&c.Listeners[i].ClientCA)
	}
	for i := range c.Domains {
		for j := range c.Domains[i].Keys {
			abs(&c.Domains[i].Keys[j].KeyFile)
		}
	}
	abs(&c.ARC.KeyFile)
	abs(&c.ARC.PseudonymSecretFile)
	abs(&c.Relay.Outbox)
}

// problems collects configuration problems with their key paths.
type problems []error

func (p *problems) add(key, format string, a ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
}

func (p *problems) file(key, path string) {
	if path == "" {
		p.add(key, "required")
		return
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		p.add(key, "file %s not found", path)
	case err != nil:
		p.add(key, "%v", err)
	case !st.Mode().IsRegular():
		p.add(key, "%s is not a regular file", path)
	}
}

// Validate checks the whole configuration and returns every problem at once,
// joined, each prefixed by its key path ("listeners[1].tls_cert: file /x not
// found"); nil if there is none. It also loads the users file when a listener
// accepts SASL logins.
func (c *Config) Validate() error {
	var p problems
	if c.Hostname == "" {
		p.add("hostname", "required")
	} else if _, err := addr.ParseDomain(c.Hostname); err != nil {
		p.add("hostname", "%v", err)
	}
	if strings.ContainsAny(c.AuthservID, " \t;()\"\\") {
		p.add("authserv_id", "%q contains white space or RFC 8601 specials", c.AuthservID)
	}
	if c.Dir == "" {
		p.add("dir", "required")
	}

	var usesSASL, usesNetwork, usesCert bool
	if len(c.Listeners) == 0 {
		p.add("listeners", "at least one listener is required")
	}
	names := map[string]bool{}
	addrs := map[string]bool{}
	for i, l := range c.Listeners {
		k := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			p.add(k+".name", "required")
		} else if names[l.Name] {
			p.add(k+".name", "%q used twice", l.Name)
		}
		names[l.Name] = true
		if host, port, err := net.SplitHostPort(l.Address); err != nil {
			p.add(k+".address", "%q: want host:port (%v)", l.Address, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			p.add(k+".address", "%q: bad port", l.Address)
		} else if host != "" && net.ParseIP(host) == nil {
			if _, err := addr.ParseDomain(host); err != nil {
				p.add(k+".address", "%q: bad host", l.Address)
			}
		}
		// Port 0 asks the system for a free port, so it never collides.
		if l.Address != "" && !strings.HasSuffix(l.Address, ":0") && addrs[l.Address] {
			p.add(k+".address", "%q used twice", l.Address)
		}
		addrs[l.Address] = true
		hasTLS := l.TLSCert != "" || l.TLSKey != ""
		switch l.Mode {
		case "submission", "submissions":
			// RFC 8314 / RFC 6409 + standards §8.1: submission always runs under TLS.
			p.file(k+".tls_cert", l.TLSCert)
			p.file(k+".tls_key", l.TLSKey)
			hasTLS = true
		case "smarthost":
			if hasTLS {
				p.file(k+".tls_cert", l.TLSCert)
				p.file(k+".tls_key", l.TLSKey)
			}
		case "":
			p.add(k+".mode", "required (submission, submissions or smarthost)")
		default:
			p.add(k+".mode", "%q: want submission, submissions or smarthost", l.Mode)
		}
		if len(l.Auth) == 0 {
			p.add(k+".auth", "required: list of sasl, client-cert, network")
		}
		seen := map[string]bool{}
		for j, a := range l.Auth {
			ka := fmt.Sprintf("%s.auth[%d]", k, j)
			if seen[a] {
				p.add(ka, "%q listed twice", a)
			}
			seen[a] = true
			switch a {
			case "sasl":
				usesSASL = true
				if !hasTLS {
					p.add(ka, "sasl needs tls_cert and tls_key: AUTH is offered only under TLS (RFC 8314, standards §8.1)")
				}
			case "client-cert":
				usesCert = true
				if !hasTLS {
					p.add(ka, "client-cert needs tls_cert and tls_key")
				}
				p.file(k+".client_ca", l.ClientCA)
			case "network":
				usesNetwork = true
			default:
				p.add(ka, "%q: want sasl, client-cert or network", a)
			}
		}
		if l.ClientCA != "" && !seen["client-cert"] {
			p.add(k+".client_ca", "set but auth does not list client-cert")
		}
	}

	lm := c.Limits
	if lm.MaxMessageBytes <= 0 {
		p.add("limits.max_message_bytes", "must be positive")
	}
	if lm.MaxRecipients < 100 {
		p.add("limits.max_recipients", "%d: RFC 5321 §4.5.3.1.8 requires accepting at least 100 (limit individual clients with max_recipients)", lm.MaxRecipients)
	}
	if lm.MaxConnections <= 0 {
		p.add("limits.max_connections", "must be positive")
	}
	for key, d := range map[string]time.Duration{"limits.command_timeout": lm.CommandTimeout, "limits.data_timeout": lm.DataTimeout, "limits.auth_cooldown": lm.AuthCooldown} {
		if d <= 0 {
			p.add(key, "must be a positive duration such as 5m")
		}
	}
	if lm.AuthFailures <= 0 {
		p.add("limits.auth_failures", "must be positive")
	}

	switch {
	case usesSASL && c.UsersFile == "":
		p.add("users_file", "required: a listener accepts sasl")
	case c.UsersFile != "":
		p.file("users_file", c.UsersFile)
		if _, err := os.Stat(c.UsersFile); err == nil {
			if _, err := LoadUsers(c.UsersFile, UsersOptions{}); err != nil {
				p.add("users_file", "%v", err)
			}
		}
	}

	if usesNetwork && len(c.ClientNetworks) == 0 {
		p.add("client_networks", "required: a listener accepts network")
	}
	names = map[string]bool{}
	for i, n := range c.ClientNetworks {
		k := fmt.Sprintf("client_networks[%d]", i)
		checkName(&p, k, n.Name, names)
		if len(n.CIDRs) == 0 {
			p.add(k+".cidrs", "required")
		}
		for j, s := range n.CIDRs {
			if _, err := parsePrefix(s); err != nil {
				p.add(fmt.Sprintf("%s.cidrs[%d]", k, j), "%v", err)
			}
		}
		n.SenderRules.check(&p, k)
	}
	if usesCert && len(c.ClientCerts) == 0 {
		p.add("client_certs", "required: a listener accepts client-cert")
	}
	names = map[string]bool{}
	for i, cc := range c.ClientCerts {
		k := fmt.Sprintf("client_certs[%d]", i)
		checkName(&p, k, cc.Name, names)
		switch {
		case (cc.Subject == "") == (cc.SHA256 == ""):
			p.add(k, "set exactly one of subject and sha256")
		case cc.SHA256 != "" && !isHexFingerprint(cc.SHA256):
			p.add(k+".sha256", "%q: want 64 hex digits (colons allowed)", cc.SHA256)
		}
		cc.SenderRules.check(&p, k)
	}

	domains := map[addr.Domain]bool{}
	for i, d := range c.Domains {
		k := fmt.Sprintf("domains[%d]", i)
		nd, err := addr.ParseDomain(d.Domain)
		if err != nil {
			p.add(k+".domain", "%v", err)
		} else if domains[nd] {
			p.add(k+".domain", "%s listed twice", nd)
		}
		domains[nd] = true
		selectors := map[string]bool{}
		for j, key := range d.Keys {
			kk := fmt.Sprintf("%s.keys[%d]", k, j)
			if !isSelector(key.Selector) {
				p.add(kk+".selector", "%q: want dot-separated labels of letters, digits and '-' (RFC 6376 §3.1)", key.Selector)
			} else if selectors[strings.ToLower(key.Selector)] {
				p.add(kk+".selector", "%q listed twice", key.Selector)
			}
			selectors[strings.ToLower(key.Selector)] = true
			p.file(kk+".key_file", key.KeyFile)
		}
		switch d.Unsigned {
		case "", "refuse":
			if len(d.Keys) == 0 {
				p.add(k+".keys", "no keys and unsigned is refuse: all mail for %s would be refused; add keys or set unsigned: relay", d.Domain)
			}
		case "relay":
		default:
			p.add(k+".unsigned", "%q: want refuse or relay", d.Unsigned)
		}
	}

	if _, err := addr.ParseDomain(c.ARC.Domain); err != nil {
		p.add("arc.domain", "%v", err)
	}
	if !isSelector(c.ARC.Selector) {
		p.add("arc.selector", "%q: want dot-separated labels of letters, digits and '-'", c.ARC.Selector)
	}
	p.file("arc.key_file", c.ARC.KeyFile)
	if c.ARC.PseudonymousAuth {
		p.file("arc.pseudonym_secret_file", c.ARC.PseudonymSecretFile)
	}

	if c.Relay.NextHop != "" {
		if _, port, err := net.SplitHostPort(c.Relay.NextHop); err != nil || port == "" {
			p.add("relay.next_hop", "%q: want host:port", c.Relay.NextHop)
		}
	}
	return errors.Join(p...)
}

func checkName(p *problems, k, name string, seen map[string]bool) {
	switch {
	case name == "":
		p.add(k+".name", "required")
	case seen[name]:
		p.add(k+".name", "%q used twice", name)
	case strings.IndexFunc(name, func(r rune) bool { return r <= ' ' || r == ';' }) >= 0:
		// The name appears in AAR smtp.auth (RFC 8601) and in replies.
		p.add(k+".name", "%q contains white space, controls or ';'", name)
	}
	seen[name] = true
}

func (r SenderRules) check(p *problems, k string) {
	if len(r.MaySendAs) == 0 {
		p.add(k+".may_send_as", "required: at least one pattern")
	}
	for j, s := range r.MaySendAs {
		if _, err := ParsePattern(s); err != nil {
			p.add(fmt.Sprintf("%s.may_send_as[%d]", k, j), "%v", err)
		}
	}
	if r.RatePerMinute < 0 {
		p.add(k+".rate_per_minute", "must not be negative")
	}
	if r.MaxRecipients < 0 {
		p.add(k+".max_recipients", "must not be negative")
	}
}

func (r SenderRules) identity(name string, kind IdentityKind) (*Identity, error) {
	ps, err := ParsePatterns(r.MaySendAs)
	if err != nil {
		return nil, err
	}
	id := NewIdentity(name, kind, ps)
	id.AllowNullSender = r.AllowNullSender
	if r.Seal != nil {
		id.Seal = *r.Seal
	}
	id.RatePerMinute = r.RatePerMinute
	id.MaxRecipients = r.MaxRecipients
	id.AllowUnsigned = r.AllowUnsigned
	return id, nil
}

// Identity returns the client network's Identity (KindClientNetwork).
func (n ClientNetworkConfig) Identity() (*Identity, error) {
	return n.SenderRules.identity(n.Name, KindClientNetwork)
}

// Prefixes returns the client network's address ranges; a bare address is a
// single-host range.
func (n ClientNetworkConfig) Prefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range n.CIDRs {
		pf, err := parsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, pf)
	}
	return out, nil
}

// Identity returns the client certificate's Identity (KindClientCert).
func (cc ClientCertConfig) Identity() (*Identity, error) {
	return cc.SenderRules.identity(cc.Name, KindClientCert)
}

func parsePrefix(s string) (netip.Prefix, error) {
	if pf, err := netip.ParsePrefix(s); err == nil {
		if pf != pf.Masked() {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, pf.Masked())
		}
		return pf, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR range nor an IP address", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func isHexFingerprint(s string) bool {
	s = strings.ReplaceAll(s, ":", "")
	if len(s) != 64 {
		return false
	}
	return !slices.ContainsFunc([]byte(s), func(c byte) bool {
		return !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F')
	})
}

// isSelector checks RFC 6376 §3.1 selector syntax: sub-domain *("." sub-domain),
// letters, digits and inner hyphens, labels of 1-63 characters.
func isSelector(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
