package relay

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"sealgate/internal/resolver"
	"sealgate/internal/smtpclient"
)

// What DANE (RFC 7672) made of an MX host, AttemptEvent.DANE.
const (
	// DANEVerified: the host's certificate matched one of its usable TLSA records.
	DANEVerified = "verified"
	// DANEInsecure: the MX records, the host's addresses or its TLSA records are not
	// DNSSEC-validated (or the resolver is not marked validating, dns.dnssec), so DANE does not
	// apply (RFC 7672 §2.2): TLS as without it.
	DANEInsecure = "insecure"
	// DANENoTLSA: validated, and the host has no TLSA records: TLS as without DANE.
	DANENoTLSA = "no-tlsa"
	// DANEUnusable: the host has validated TLSA records but none usable for SMTP (PKIX-TA/EE,
	// unknown selector or matching type, RFC 7672 §3.1.3): TLS is required, unauthenticated.
	DANEUnusable = "unusable"
	// DANEFailedPrefix starts the status of a host DANE refused: "failed: " and the reason.
	DANEFailedPrefix = "failed: "
)

// daneUsable is the status of a host with usable TLSA records, before the session.
const daneUsable = "usable"

// daneHost is what DNS said of one MX host for DANE: its status (DANEInsecure, DANENoTLSA,
// DANEUnusable or daneUsable) and, with usable records, the records and the names a DANE-TA
// certificate may be issued to.
type daneHost struct {
	status string
	tlsa   []*dns.TLSA // the usable records
	// records are all the validated TLSA records, as text, for TLS reports (RFC 8460).
	records []string
	// names are the reference identifiers (RFC 7672 §3.2.2): the TLSA base domain and the MX
	// host name, without the trailing dot.
	names []string
}

// requiresTLS says whether the host must be reached over TLS (RFC 7672 §2.2): it has
// validated TLSA records, usable or not.
func (h *daneHost) requiresTLS() bool {
	return h != nil && (h.status == daneUsable || h.status == DANEUnusable)
}

// before is the host's status before a session: "" without DANE (smart hosts).
func (h *daneHost) before() string {
	if h == nil {
		return ""
	}
	return h.status
}

// outcome is the host's status after a session (or a failure to set one up): err is what
// refused it, nil when it may carry mail.
func (h *daneHost) outcome(err error) string {
	switch {
	case h == nil:
		return ""
	case h.requiresTLS() && err != nil:
		return DANEFailedPrefix + err.Error()
	case h.status == daneUsable:
		return DANEVerified
	}
	return h.status
}

// usableTLSA reports whether an SMTP client can use r (RFC 7672 §3.1): DANE-TA(2) or
// DANE-EE(3), selector Cert(0) or SPKI(1), matching Full(0), SHA2-256(1) or SHA2-512(2).
func usableTLSA(r *dns.TLSA) bool {
	return (r.Usage == 2 || r.Usage == 3) && r.Selector <= 1 && r.MatchingType <= 2 && r.Certificate != ""
}

// tlsaMatches reports whether r's data is cert's (its whole DER or its SPKI, hashed as r says).
func tlsaMatches(r *dns.TLSA, cert *x509.Certificate) bool {
	want, err := dns.CertificateToDANE(r.Selector, r.MatchingType, cert)
	return err == nil && strings.EqualFold(want, r.Certificate)
}

// errDANELookup marks a failed TLSA lookup: the host is not tried (RFC 7672 §2.1.1).
var errDANELookup = errors.New("DANE: TLSA lookup failed")

// lookupDANE finds the TLSA records of MX host host (RFC 7672 §2.2), whose MX RRset and
// addresses (ips) were looked up with their DNSSEC status. Without validated MX records and
// addresses, DANE does not apply. The TLSA records are looked for at the end of the host's
// CNAME chain first, then at the host name (§2.2.2). A lookup that fails (SERVFAIL, also the
// answer of a validating resolver to a bogus one) is an error wrapping errDANELookup: the host
// must not be used, not even in the clear.
func lookupDANE(ctx context.Context, r resolver.Resolver, host string, mxSecure bool, ips resolver.IPAnswer) (*daneHost, error) {
	if !mxSecure || !ips.Secure {
		return &daneHost{status: DANEInsecure}, nil
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	bases := []string{strings.TrimSuffix(ips.Name, ".")}
	if bases[0] == "" || bases[0] == host {
		bases = []string{host}
	} else {
		bases = append(bases, host)
	}
	for _, base := range bases {
		a, err := resolver.LookupSecure(ctx, r, "_25._tcp."+base+".", dns.TypeTLSA)
		switch {
		case resolver.IsNotFound(err) && a.Secure:
			continue // validated: none here
		case resolver.IsNotFound(err):
			return &daneHost{status: DANEInsecure}, nil
		case err != nil:
			return nil, fmt.Errorf("%w for %s: %w", errDANELookup, host, err)
		case !a.Secure:
			// §2.2: TLSA records that are not validated are not used.
			return &daneHost{status: DANEInsecure}, nil
		}
		h := &daneHost{status: DANEUnusable, names: []string{base}, records: tlsaStrings(a.Records)}
		if base != host {
			h.names = append(h.names, host)
		}
		for _, rr := range a.Records {
			if t, ok := rr.(*dns.TLSA); ok && usableTLSA(t) {
				h.tlsa = append(h.tlsa, t)
			}
		}
		if len(h.tlsa) > 0 {
			h.status = daneUsable
		}
		return h, nil
	}
	return &daneHost{status: DANENoTLSA}, nil
}

// verifyDANE checks a server's chain (leaf first) against h's usable TLSA records: a DANE-EE
// record matches the leaf alone, with no check of names or dates (RFC 7672 §3.1.1); a DANE-TA
// record matches a certificate of the chain that the leaf must chain to, and the leaf must be
// issued to one of h.names (§3.1.2, §3.2.2).
func verifyDANE(h *daneHost, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("the server sent no certificate")
	}
	leaf := chain[0]
	var taErr error
	for _, r := range h.tlsa {
		if r.Usage == 3 {
			if tlsaMatches(r, leaf) {
				return nil
			}
			continue
		}
		for i, ta := range chain {
			if !tlsaMatches(r, ta) {
				continue
			}
			roots := x509.NewCertPool()
			roots.AddCert(ta)
			inter := x509.NewCertPool()
			for _, c := range chain[1:i] {
				inter.AddCert(c)
			}
			if i > 0 {
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
					KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
					taErr = fmt.Errorf("the chain does not verify to the DANE-TA certificate: %w", err)
					continue
				}
			}
			if slices.ContainsFunc(h.names, func(n string) bool { return leaf.VerifyHostname(n) == nil }) {
				return nil
			}
			taErr = fmt.Errorf("%w (DANE-TA, %s)", errDANEName, strings.Join(h.names, " or "))
		}
	}
	if taErr != nil {
		return taErr
	}
	return errors.New("the certificate chain matches none of the TLSA records")
}

// checkDANE decides, for a host whose validated TLSA records require TLS, whether session c may
// carry mail: TLS at all, and with usable records a certificate matching them (RFC 7672 §2.2,
// §3). ok is false for a host with only unusable records that has TLS: checkTLS then applies
// what the route and message need beyond that.
func (t *Transport) checkDANE(d destination, c *smtpclient.Client) (ok bool, err error) {
	info, hasTLS := c.TLS()
	switch {
	case !hasTLS:
		return false, fmt.Errorf("DANE (RFC 7672 §2.2): %s has TLSA records but did not offer STARTTLS", d.host)
	case d.dane.status != daneUsable:
		return false, nil
	}
	if err := verifyDANE(d.dane, info.PeerCertificates); err != nil {
		return false, fmt.Errorf("DANE (RFC 7672 §3): %s: %w", d.host, err)
	}
	c.SetDANEVerified()
	return true, nil
}

// serverName is the name to send in SNI and check a certificate against: the TLSA base
// domain for a host with usable TLSA records (RFC 7672 §8.1), else the MX host name.
func (d destination) serverName() string {
	if d.dane != nil && d.dane.status == daneUsable && len(d.dane.names) > 0 {
		return d.dane.names[0]
	}
	return d.host
}
