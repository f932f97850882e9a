package config

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"sealgate/internal/addr"
)

// RouteConfig is how mail leaves for a group of recipients: the relay section's
// defaults, and each entry of relay.identities and relay.domains.
type RouteConfig struct {
	// NextHop is a smart host, host:port; "" means MX delivery.
	NextHop string `mapstructure:"next_hop"`
	// NextHopTLS is opportunistic (default), required or implicit (NextHopTLSOpportunistic ...).
	NextHopTLS string `mapstructure:"next_hop_tls"`
	// Auth logs in to the smart host (needs next_hop_tls required or implicit).
	Auth AuthConfig `mapstructure:"auth"`
	// HeloName is the EHLO name; "" means hostname.
	HeloName string `mapstructure:"helo_name"`
	// SourceIP is the local address to connect from; it must be one of this host's.
	SourceIP string `mapstructure:"source_ip"`
}

// AuthConfig holds the credentials for a smart host: the password inline, from an
// environment variable or from a file (mode 0600, like every secret file).
type AuthConfig struct {
	Mechanism    string `mapstructure:"mechanism"` // PLAIN (default) or LOGIN
	Username     string `mapstructure:"username"`
	Password     string `mapstructure:"password"`
	PasswordEnv  string `mapstructure:"password_env"`
	PasswordFile string `mapstructure:"password_file"`
}

func (a AuthConfig) set() bool {
	return a != AuthConfig{}
}

// IdentityRouteConfig is one entry of relay.identities: the route of one client
// organisation (identity name). Fields left empty are the relay section's, and
// an empty next_hop with them its next_hop_tls and auth.
type IdentityRouteConfig struct {
	Name        string `mapstructure:"name"`
	RouteConfig `mapstructure:",squash"`
}

// DomainRouteConfig is one entry of relay.domains (a transport map): the route
// of the recipients of one domain, whoever sent the message. An empty next_hop
// means the domain's MX hosts; an empty helo_name or source_ip is the relay
// section's.
type DomainRouteConfig struct {
	Domain      string `mapstructure:"domain"`
	RouteConfig `mapstructure:",squash"`
}

// The values of next_hop_tls: relay.TLSMode's, which cmd/sealgate converts them to.
const (
	// NextHopTLSOpportunistic (the default) uses STARTTLS when the server offers it.
	NextHopTLSOpportunistic = "opportunistic"
	// NextHopTLSRequired refuses to deliver without STARTTLS and a verified certificate.
	NextHopTLSRequired = "required"
	// NextHopTLSImplicit speaks TLS from the first byte (RFC 8314 §3), to a next_hop only.
	NextHopTLSImplicit = "implicit"
)

// Route is one checked route of the relay section, with its credentials loaded; cmd/sealgate
// makes a relay.Route of it.
type Route struct {
	// NextHop is a smart host as host:port; "" means the recipients' MX hosts.
	NextHop string
	// TLS is next_hop_tls: "" (opportunistic) or one of the NextHopTLS values.
	TLS string
	// Auth holds the smart host credentials; nil for none.
	Auth *Credentials
	// HeloName is the EHLO name; "" means hostname.
	HeloName string
	// SourceIP is the local address to connect from, one of this host's; nil for any.
	SourceIP net.IP
}

// Credentials are a route's smart host login, the password read from where auth says.
type Credentials struct {
	Mechanism string // PLAIN or LOGIN, upper case; "" means PLAIN
	Username  string
	Password  string
}

// String names the login without its password, for logs and errors.
func (c *Credentials) String() string {
	if c == nil {
		return "none"
	}
	return fmt.Sprintf("%s as %q", orDefault(c.Mechanism, "PLAIN"), c.Username)
}

// Routes is what the relay section says about delivery, checked and loaded by
// Open: the routes and trusted roots of relay.Transport.
type Routes struct {
	Default    Route
	Identities map[string]Route
	Domains    map[addr.Domain]Route
	// RootCAs verifies servers' certificates (and MTA-STS policy hosts'); nil
	// means the system's roots.
	RootCAs *x509.CertPool
}

// maxWorkers bounds relay.workers: each is a goroutine with a message open and,
// under relay.max_connections, a session.
const maxWorkers = 1000

// routes checks the routing keys of the relay section and loads Resources.Routes.
func (v *validation) routes() {
	r, p := v.c.Relay, &v.p
	routes := &Routes{Identities: map[string]Route{}, Domains: map[addr.Domain]Route{}}
	var ok bool
	routes.Default, ok = v.route("relay", r.RouteConfig, nil)
	if r.MXPort <= 0 || r.MXPort > 65535 {
		p.add("relay.mx_port", "%d: want a port from 1 to 65535", r.MXPort)
	}
	if r.MaxConnections < 0 {
		p.add("relay.max_connections", "must not be negative")
	}
	if r.MaxPerDestination < 0 {
		p.add("relay.max_per_destination", "must not be negative")
	}
	if r.Workers < 1 || r.Workers > maxWorkers {
		p.add("relay.workers", "%d: want from 1 to %d", r.Workers, maxWorkers)
	}
	if r.CAFile != "" && v.file("relay.ca_file", r.CAFile) {
		pem, err := os.ReadFile(r.CAFile)
		pool := x509.NewCertPool()
		switch {
		case err != nil:
			p.add("relay.ca_file", "%v", err)
		case !pool.AppendCertsFromPEM(pem):
			p.add("relay.ca_file", "%s holds no PEM certificate", r.CAFile)
		default:
			routes.RootCAs = pool
		}
	}
	names := map[string]bool{}
	known := v.identityNames()
	for i, ir := range r.Identities {
		k := fmt.Sprintf("relay.identities[%d]", i)
		switch {
		case ir.Name == "":
			p.add(k+".name", "required: the identity (client network, certificate or login name)")
		case names[ir.Name]:
			p.add(k+".name", "%q listed twice", ir.Name)
		case !known[ir.Name]:
			// A misspelt name would leave the organisation on the default route.
			p.add(k+".name", "%q is not the name of a client network, a client certificate or a login of the users file", ir.Name)
		}
		names[ir.Name] = true
		rc := ir.RouteConfig
		if rc.NextHop == "" {
			rc.NextHop, rc.NextHopTLS = r.NextHop, orDefault(rc.NextHopTLS, r.NextHopTLS)
			if !rc.Auth.set() {
				rc.Auth = r.Auth
			}
		}
		rc.HeloName = orDefault(rc.HeloName, r.HeloName)
		rc.SourceIP = orDefault(rc.SourceIP, r.SourceIP)
		rt, good := v.route(k, rc, &ir.RouteConfig)
		ok = ok && good
		routes.Identities[ir.Name] = rt
	}
	domains := map[addr.Domain]bool{}
	for i, dr := range r.Domains {
		k := fmt.Sprintf("relay.domains[%d]", i)
		d, err := addr.ParseDomain(dr.Domain)
		switch {
		case dr.Domain == "":
			p.add(k+".domain", "required")
		case err != nil:
			p.add(k+".domain", "%v", err)
		case domains[d]:
			p.add(k+".domain", "%s listed twice", d)
		}
		domains[d] = true
		rc := dr.RouteConfig
		rc.HeloName = orDefault(rc.HeloName, r.HeloName)
		rc.SourceIP = orDefault(rc.SourceIP, r.SourceIP)
		rt, good := v.route(k, rc, &dr.RouteConfig)
		ok = ok && good
		if err == nil {
			routes.Domains[d] = rt
		}
	}
	if ok {
		v.res.Routes = routes
	}
}

// identityNames returns every identity name the configuration defines.
func (v *validation) identityNames() map[string]bool {
	known := map[string]bool{}
	for _, nc := range v.c.ClientNetworks {
		known[nc.Name] = true
	}
	for _, cc := range v.c.ClientCerts {
		known[cc.Name] = true
	}
	for _, u := range v.res.Users {
		known[u.Login] = true
	}
	return known
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// route checks one route at key k and returns it. own is the entry as written
// (nil for the relay section itself): problems with inherited values are
// reported once, at the relay section's keys.
func (v *validation) route(k string, rc RouteConfig, own *RouteConfig) (Route, bool) {
	p := &v.p
	before := len(*p)
	mine := func(field string) bool {
		if own == nil {
			return true
		}
		switch field {
		case "next_hop":
			return own.NextHop != ""
		case "next_hop_tls":
			return own.NextHopTLS != "" || own.NextHop != ""
		case "auth":
			return own.Auth.set() || own.NextHop != ""
		case "helo_name":
			return own.HeloName != ""
		case "source_ip":
			return own.SourceIP != ""
		}
		return false
	}
	rt := Route{NextHop: rc.NextHop, TLS: rc.NextHopTLS, HeloName: rc.HeloName}
	if rc.NextHop != "" && mine("next_hop") {
		if host, port, err := net.SplitHostPort(rc.NextHop); err != nil || host == "" || port == "" {
			p.add(k+".next_hop", "%q: want host:port", rc.NextHop)
		} else if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			p.add(k+".next_hop", "%q: bad port", rc.NextHop)
		}
	}
	switch rt.TLS {
	case NextHopTLSImplicit:
		if rc.NextHop == "" && mine("next_hop_tls") {
			p.add(k+".next_hop_tls", "implicit applies to a next_hop only (MX hosts take STARTTLS on port 25)")
		}
	case "", NextHopTLSOpportunistic, NextHopTLSRequired:
	default:
		if mine("next_hop_tls") {
			p.add(k+".next_hop_tls", "%q: want opportunistic, required or implicit", rc.NextHopTLS)
		}
	}
	if rc.HeloName != "" && mine("helo_name") {
		if _, err := addr.ParseDomain(rc.HeloName); err != nil {
			p.add(k+".helo_name", "%v", err)
		}
	}
	if rc.SourceIP != "" {
		ip, err := localAddress(rc.SourceIP)
		if err != nil && mine("source_ip") {
			p.add(k+".source_ip", "%v", err)
		}
		rt.SourceIP = ip
	}
	if rc.Auth.set() && mine("auth") {
		rt.Auth = v.credentials(k+".auth", rc)
	} else if rc.Auth.set() {
		rt.Auth = v.credentialsQuiet(rc)
	}
	return rt, len(*p) == before
}

// credentials checks and loads the password of a route's auth section.
func (v *validation) credentials(k string, rc RouteConfig) *Credentials {
	p, a := &v.p, rc.Auth
	if rc.NextHop == "" {
		p.add(k, "AUTH needs a next_hop (MX hosts take no credentials)")
	}
	if rc.NextHopTLS != NextHopTLSRequired && rc.NextHopTLS != NextHopTLSImplicit {
		p.add(k, "AUTH needs next_hop_tls: required or implicit, so that the password never crosses the network in plain text (next_hop_tls is %q)", orDefault(rc.NextHopTLS, NextHopTLSOpportunistic))
	}
	switch strings.ToUpper(a.Mechanism) {
	case "", "PLAIN", "LOGIN":
	default:
		p.add(k+".mechanism", "%q: want PLAIN or LOGIN", a.Mechanism)
	}
	if a.Username == "" {
		p.add(k+".username", "required")
	}
	n := 0
	for _, s := range []string{a.Password, a.PasswordEnv, a.PasswordFile} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		p.add(k, "give exactly one of password, password_env and password_file")
		return nil
	}
	if a.PasswordFile != "" && !v.secretFile(k+".password_file", a.PasswordFile, "the smart host password") {
		return nil
	}
	pw, err := readPassword(a)
	if err != nil {
		key := k + ".password_env"
		if a.PasswordFile != "" {
			key = k + ".password_file"
		}
		p.add(key, "%v", err)
		return nil
	}
	return &Credentials{Mechanism: strings.ToUpper(a.Mechanism), Username: a.Username, Password: pw}
}

// credentialsQuiet loads inherited credentials, whose problems were reported at
// the relay section's keys.
func (v *validation) credentialsQuiet(rc RouteConfig) *Credentials {
	pw, err := readPassword(rc.Auth)
	if err != nil {
		return nil
	}
	return &Credentials{Mechanism: strings.ToUpper(rc.Auth.Mechanism), Username: rc.Auth.Username, Password: pw}
}

// readPassword returns the password of a, never in an error.
func readPassword(a AuthConfig) (string, error) {
	switch {
	case a.PasswordEnv != "":
		pw, ok := os.LookupEnv(a.PasswordEnv)
		if !ok || pw == "" {
			return "", fmt.Errorf("environment variable %s is not set or empty", a.PasswordEnv)
		}
		return pw, nil
	case a.PasswordFile != "":
		b, err := os.ReadFile(a.PasswordFile)
		if err != nil {
			return "", err
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" || strings.ContainsAny(pw, "\r\n") {
			return "", fmt.Errorf("%s: want the password alone on one line", a.PasswordFile)
		}
		return pw, nil
	}
	return a.Password, nil
}

// localAddress parses s and checks that this host has it (net.InterfaceAddrs),
// so that serve can connect from it; any address of a loopback network counts
// (Linux answers on all of 127.0.0.0/8).
func localAddress(s string) (net.IP, error) {
	ip := net.ParseIP(s)
	if ip == nil {
		return nil, fmt.Errorf("%q is not an IP address", s)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list this host's addresses: %w", err)
	}
	var have []string
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if n.IP.Equal(ip) || (n.IP.IsLoopback() && ip.IsLoopback() && n.Contains(ip)) {
			return ip, nil
		}
		have = append(have, n.IP.String())
	}
	return nil, fmt.Errorf("%s is not an address of this host (it has %s)", s, strings.Join(have, ", "))
}
