package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/resolver"
	"sealgate/internal/secretfile"
)

// Resources is what serve needs from the files a configuration names, loaded and checked
// by Open. The DKIM and ARC keys are not among them: cmd/sealgate loads them and builds
// the key ring (its signing.go), from Domains.
type Resources struct {
	// Domains are the entries of the domains section as the checks left them.
	Domains []CheckedDomain
	// PseudonymKey is the secret of arc.pseudonym_secret_file when pseudonymous_auth is on.
	PseudonymKey []byte
	// ListenerTLS holds each listener's TLS configuration, in the order of Listeners; nil
	// for a listener without tls_cert.
	ListenerTLS []*tls.Config
	// Users are the entries of users_file (nil without one).
	Users []UserEntry
	// NetworkPrefixes holds each client network's address ranges, in the order of
	// ClientNetworks.
	NetworkPrefixes [][]netip.Prefix
	// Routes are the relay section's delivery routes (nil when they have problems).
	Routes *Routes
	// Resolver answers DNS queries as the dns section says.
	Resolver resolver.Resolver
	// SRSSecrets are the secrets of srs.secret_files, in order: the first signs.
	SRSSecrets [][]byte
}

// Open loads and checks everything the configuration names (certificates, the users file,
// the pseudonym secret, the DNS zone file; that the key files exist) and returns it. Its
// error lists every problem at once, joined, each prefixed by its key path
// ("listeners[1].tls_cert: file /x not found"); the Resources are then incomplete.
func (c *Config) Open() (*Resources, error) {
	v := &validation{c: c, res: &Resources{}}
	v.top()
	v.listeners()
	v.limits()
	v.scaleOut()
	v.users()
	v.clients()
	v.domains()
	v.arc()
	v.relay()
	v.queue()
	v.dns()
	v.tlsrpt()
	v.operations()
	v.forwarders()
	v.keyRotation()
	v.dmarcReports()
	return v.res, v.p.join()
}

// validation is one run of Open: the problems found and what was loaded.
type validation struct {
	c   *Config
	p   problems
	res *Resources

	usesSASL, usesNetwork, usesCert bool
}

func (v *validation) top() {
	c, p := v.c, &v.p
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
	} else {
		v.directory("dir", c.Dir)
	}
}

// directory checks that path, if it exists, is a directory (serve creates it otherwise).
func (v *validation) directory(key, path string) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		v.p.add(key, "%v", err)
	case !st.IsDir():
		v.p.add(key, "%s is not a directory", path)
	}
}

// file checks that a required file exists and is a regular file; it reports false after
// adding a problem.
func (v *validation) file(key, path string) bool {
	if err := CheckFile(path); err != nil {
		v.p.add(key, "%v", err)
		return false
	}
	return true
}

// CheckFile checks that the file a required key names is given, exists and is a regular
// file, with the problem Validate reports for it ("required", "file /x not found").
func CheckFile(path string) error {
	if path == "" {
		return errors.New("required")
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("file %s not found", path)
	case err != nil:
		return err
	case !st.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}

// secretFile is file, and the file mode rule of private keys.
func (v *validation) secretFile(key, path, what string) bool {
	if !v.file(key, path) {
		return false
	}
	st, err := os.Stat(path)
	if err == nil {
		err = secretfile.CheckMode(path, st, what)
	}
	if err != nil {
		v.p.add(key, "%v", err)
		return false
	}
	return true
}

func (v *validation) listeners() {
	c, p := v.c, &v.p
	if len(c.Listeners) == 0 {
		p.add("listeners", "at least one listener is required")
	}
	v.res.ListenerTLS = make([]*tls.Config, len(c.Listeners))
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
			// RFC 8314 §3 and RFC 6409 §4.3: submission always runs under TLS here.
			hasTLS = true
		case "smarthost":
		case "":
			p.add(k+".mode", "required (submission, submissions or smarthost)")
		default:
			p.add(k+".mode", "%q: want submission, submissions or smarthost", l.Mode)
		}
		if hasTLS {
			v.res.ListenerTLS[i] = v.tls(k, l)
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
				v.usesSASL = true
				if !hasTLS {
					p.add(ka, "sasl needs tls_cert and tls_key: AUTH is offered only under TLS (RFC 8314 §3, RFC 4954 §4)")
				}
			case "client-cert":
				v.usesCert = true
				if !hasTLS {
					p.add(ka, "client-cert needs tls_cert and tls_key")
				}
				if v.file(k+".client_ca", l.ClientCA) {
					if pool, err := loadCertPool(l.ClientCA); err != nil {
						p.add(k+".client_ca", "%v", err)
					} else if cfg := v.res.ListenerTLS[i]; cfg != nil {
						cfg.ClientCAs = pool
						cfg.ClientAuth = tls.VerifyClientCertIfGiven
					}
				}
			case "network":
				v.usesNetwork = true
			default:
				p.add(ka, "%q: want sasl, client-cert or network", a)
			}
		}
		if l.ClientCA != "" && !seen["client-cert"] {
			p.add(k+".client_ca", "set but auth does not list client-cert")
		}
	}
}

// tls loads a listener's certificate and key: each file must parse, the key must match the
// certificate, and the key file must be private to us like a DKIM key.
func (v *validation) tls(k string, l ListenerConfig) *tls.Config {
	certOK := v.file(k+".tls_cert", l.TLSCert)
	keyOK := v.secretFile(k+".tls_key", l.TLSKey, "the private key")
	if certOK {
		if err := checkCertificateFile(l.TLSCert); err != nil {
			v.p.add(k+".tls_cert", "%v", err)
			certOK = false
		}
	}
	if !certOK || !keyOK {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(l.TLSCert, l.TLSKey)
	if err != nil {
		msg := err.Error()
		if strings.Contains(msg, "does not match") {
			v.p.add(k+".tls_key", "%s does not match the certificate in %s", l.TLSKey, l.TLSCert)
		} else {
			v.p.add(k+".tls_key", "%s: %s", l.TLSKey, strings.TrimPrefix(msg, "tls: "))
		}
		return nil
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// checkCertificateFile checks that a PEM file starts with a parseable certificate.
func checkCertificateFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return fmt.Errorf("%s holds no PEM certificate", path)
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		return nil
	}
}

func loadCertPool(path string) (*x509.CertPool, error) {
	if err := checkCertificateFile(path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

func (v *validation) limits() {
	lm, p := v.c.Limits, &v.p
	if lm.MaxMessageBytes <= 0 {
		p.add("limits.max_message_bytes", "must be positive")
	}
	if lm.MaxRecipients < 100 {
		p.add("limits.max_recipients", "%d: RFC 5321 §4.5.3.1.8 requires accepting at least 100 (limit individual clients with max_recipients)", lm.MaxRecipients)
	}
	for _, n := range []struct {
		key string
		v   int
	}{
		{"limits.max_connections", lm.MaxConnections},
		{"limits.max_connections_per_ip", lm.MaxConnectionsPerIP},
		{"limits.max_header_fields", lm.MaxHeaderFields},
		{"limits.auth_failures", lm.AuthFailures},
	} {
		if n.v <= 0 {
			p.add(n.key, "must be positive")
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"limits.command_timeout", lm.CommandTimeout},
		{"limits.data_timeout", lm.DataTimeout},
		{"limits.pre_auth_timeout", lm.PreAuthTimeout},
		{"limits.auth_cooldown", lm.AuthCooldown},
	} {
		if d.v <= 0 {
			p.add(d.key, "must be a positive duration such as 5m")
		}
	}
	// A client waits this long for the reply to MAIL; RFC 5321 §4.5.3.2.2 gives it
	// minutes, but a delay of seconds already slows intake to delivery's pace.
	if lm.InFlowDelay < 0 || lm.InFlowDelay > maxInFlowDelay {
		p.add("limits.in_flow_delay", "%s: want a duration from 0 (off) to %s, such as 1s", lm.InFlowDelay, maxInFlowDelay)
	}
}

// maxInFlowDelay bounds limits.in_flow_delay.
const maxInFlowDelay = 10 * time.Second

func (v *validation) users() {
	c, p := v.c, &v.p
	switch {
	case v.usesSASL && c.UsersFile == "":
		p.add("users_file", "required: a listener accepts sasl")
	case c.UsersFile != "":
		if !v.secretFile("users_file", c.UsersFile, "the password hashes") {
			return
		}
		entries, err := ReadUsersFile(c.UsersFile)
		if err != nil {
			for _, e := range leaves(err) {
				p.add("users_file", "%v", e)
			}
			return
		}
		v.res.Users = entries
	}
}

// leaves returns the errors of a tree of errors.Join results.
func leaves(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, leaves(e)...)
	}
	return out
}

func (v *validation) clients() {
	c, p := v.c, &v.p
	if v.usesNetwork && len(c.ClientNetworks) == 0 {
		p.add("client_networks", "required: a listener accepts network")
	}
	v.res.NetworkPrefixes = make([][]netip.Prefix, len(c.ClientNetworks))
	names := map[string]bool{}
	for i, n := range c.ClientNetworks {
		k := fmt.Sprintf("client_networks[%d]", i)
		v.name(k, n.Name, names)
		if len(n.CIDRs) == 0 {
			p.add(k+".cidrs", "required")
		}
		for j, s := range n.CIDRs {
			pf, err := ParsePrefix(s)
			if err != nil {
				p.add(fmt.Sprintf("%s.cidrs[%d]", k, j), "%v", err)
				continue
			}
			v.res.NetworkPrefixes[i] = append(v.res.NetworkPrefixes[i], pf)
		}
		v.rules(k, n.SenderRules)
	}
	if v.usesCert && len(c.ClientCerts) == 0 {
		p.add("client_certs", "required: a listener accepts client-cert")
	}
	names = map[string]bool{}
	for i, cc := range c.ClientCerts {
		k := fmt.Sprintf("client_certs[%d]", i)
		v.name(k, cc.Name, names)
		switch {
		case (cc.Subject == "") == (cc.SHA256 == ""):
			p.add(k, "set exactly one of subject and sha256")
		case cc.SHA256 != "" && !isHexFingerprint(cc.SHA256):
			p.add(k+".sha256", "%q: want 64 hex digits (colons allowed)", cc.SHA256)
		}
		v.rules(k, cc.SenderRules)
	}
}

func (v *validation) name(k, name string, seen map[string]bool) {
	switch {
	case name == "":
		v.p.add(k+".name", "required")
	case seen[name]:
		v.p.add(k+".name", "%q used twice", name)
	case strings.IndexFunc(name, func(r rune) bool { return r <= ' ' || r == ';' }) >= 0:
		// The name appears in AAR smtp.auth (RFC 8601) and in replies.
		v.p.add(k+".name", "%q contains white space, controls or ';'", name)
	}
	seen[name] = true
}

func (v *validation) rules(k string, r SenderRules) {
	p := &v.p
	if len(r.MaySendAs) == 0 {
		p.add(k+".may_send_as", "required: at least one pattern")
	}
	for j, s := range r.MaySendAs {
		if _, err := addr.ParsePattern(s); err != nil {
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

func (v *validation) relay() {
	r, p := v.c.Relay, &v.p
	// Neither next_hop nor outbox: delivery to the recipients' MX hosts.
	if r.NextHop != "" && r.Outbox != "" {
		p.add("relay", "set relay.next_hop or relay.outbox, not both (neither: delivery to MX hosts)")
	}
	if r.Outbox != "" {
		v.directory("relay.outbox", r.Outbox)
	}
	v.routes()
}

func (v *validation) dns() {
	d, p := v.c.DNS, &v.p
	if d.Timeout <= 0 {
		p.add("dns.timeout", "must be a positive duration such as 5s")
		return
	}
	switch {
	case d.Server != "" && d.ZoneFile != "":
		p.add("dns", "set dns.server or dns.zone_file, not both")
		return
	case d.DNSSEC && d.ZoneFile != "":
		p.add("dns.dnssec", "needs a validating resolver (dns.server or /etc/resolv.conf), not dns.zone_file")
		return
	case d.ZoneFile != "":
		if !v.file("dns.zone_file", d.ZoneFile) {
			return
		}
	}
	r, err := resolver.New(resolver.Config{Server: d.Server, ZoneFile: d.ZoneFile, Timeout: d.Timeout, DNSSEC: d.DNSSEC})
	if err != nil {
		key := "dns"
		switch {
		case d.ZoneFile != "":
			key = "dns.zone_file"
		case d.Server != "":
			key = "dns.server"
		}
		p.add(key, "%s", strings.TrimPrefix(err.Error(), "resolver: "))
		return
	}
	v.res.Resolver = r
}

// ParsePrefix parses a client network range: a CIDR prefix without host bits, or a bare
// address meaning that one host.
func ParsePrefix(s string) (netip.Prefix, error) {
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
