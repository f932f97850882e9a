package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/miekg/dns"
)

// SecureAnswer is an answer with its DNSSEC status, for the lookups whose use depends on it
// (DANE, RFC 7672 §2.1).
type SecureAnswer struct {
	// Records are the records of the type asked at the end of the CNAME chain; nil with a
	// not-found error.
	Records []dns.RR
	// Name is the owner of Records: the name asked, or where its CNAME chain ends (lower-case
	// FQDN). RFC 7672 §2.2.2 looks up TLSA records there first.
	Name string
	// Secure is set when the answer, or the denial of a not-found error, was validated: the
	// resolver is marked validating (Config.DNSSEC) and its answer had the AD bit. Insecure
	// and "cannot tell" are the same here; a bogus answer is a validating resolver's SERVFAIL,
	// a temporary error.
	Secure bool
}

// SecureResolver is a Resolver that can say whether an answer was DNSSEC-validated. The
// resolvers of this package, Cache and wrappers that pass it on implement it.
type SecureResolver interface {
	Resolver
	// LookupSecure asks for qtype at name. Not-found errors come with the SecureAnswer of the
	// denial (Name and Secure set).
	LookupSecure(ctx context.Context, name string, qtype uint16) (SecureAnswer, error)
}

// LookupSecure implements SecureResolver.
func (l *lookups) LookupSecure(ctx context.Context, name string, qtype uint16) (SecureAnswer, error) {
	return l.answer(ctx, name, qtype)
}

// LookupSecure asks r for qtype at name with the answer's DNSSEC status. A Resolver that is not
// a SecureResolver answers insecurely, for MX, A and AAAA only (what it can be asked); other
// types are a permanent error.
func LookupSecure(ctx context.Context, r Resolver, name string, qtype uint16) (SecureAnswer, error) {
	if s, ok := r.(SecureResolver); ok {
		return s.LookupSecure(ctx, name, qtype)
	}
	fqdn := dns.Fqdn(name)
	a := SecureAnswer{Name: fqdn}
	hdr := func(t uint16) dns.RR_Header { return dns.RR_Header{Name: fqdn, Rrtype: t, Class: dns.ClassINET} }
	switch qtype {
	case dns.TypeMX:
		mxs, err := r.LookupMX(ctx, name)
		for _, mx := range mxs {
			a.Records = append(a.Records, &dns.MX{Hdr: hdr(qtype), Preference: mx.Pref, Mx: mx.Host})
		}
		return a, err
	case dns.TypeA, dns.TypeAAAA:
		ips, err := LookupIPFamily(ctx, r, name, qtype == dns.TypeAAAA)
		for _, ip := range ips {
			if qtype == dns.TypeA {
				a.Records = append(a.Records, &dns.A{Hdr: hdr(qtype), A: ip})
			} else {
				a.Records = append(a.Records, &dns.AAAA{Hdr: hdr(qtype), AAAA: ip})
			}
		}
		return a, err
	}
	return a, permanent(fqdn, qtype, fmt.Errorf("%T cannot look up %s records", r, typeString(qtype)))
}

// IPAnswer is the addresses of a host with their DNSSEC status (LookupIPSecure).
type IPAnswer struct {
	IPs []net.IP
	// Name is where the host's CNAME chain ends (the name itself without one).
	Name string
	// Secure is set when every answer (A and AAAA, or their denials) was validated.
	Secure bool
}

// LookupIPSecure returns the A and AAAA addresses of name, as Resolver.LookupIP, with their
// DNSSEC status (RFC 7672 §2.2.2: DANE applies to a host whose addresses are secure). A
// temporary failure of either type fails the lookup; no address at all is a not-found error.
func LookupIPSecure(ctx context.Context, r Resolver, name string) (IPAnswer, error) {
	type result struct {
		a   SecureAnswer
		err error
	}
	six := make(chan result, 1)
	go func() {
		a, err := LookupSecure(ctx, r, name, dns.TypeAAAA)
		six <- result{a, err}
	}()
	v4, err4 := LookupSecure(ctx, r, name, dns.TypeA)
	v6 := <-six
	out := IPAnswer{Name: v4.Name, Secure: v4.Secure && v6.a.Secure}
	for _, err := range []error{err4, v6.err} {
		if err != nil && !IsNotFound(err) {
			return IPAnswer{}, err
		}
	}
	for _, rr := range append(v4.Records, v6.a.Records...) {
		switch a := rr.(type) {
		case *dns.A:
			out.IPs = append(out.IPs, a.A)
		case *dns.AAAA:
			out.IPs = append(out.IPs, a.AAAA)
		}
	}
	if len(out.IPs) == 0 {
		nf := notFound(dns.Fqdn(name), dns.TypeA, errors.Is(err4, ErrNXDOMAIN) || errors.Is(v6.err, ErrNXDOMAIN))
		nf.Type = "A/AAAA"
		return out, nf
	}
	if out.Name == "" || len(v4.Records) == 0 {
		out.Name = v6.a.Name
	}
	return out, nil
}

// LookupSecure implements SecureResolver: answers are kept with their DNSSEC status, each
// type apart.
func (c *Cache) LookupSecure(ctx context.Context, name string, qtype uint16) (SecureAnswer, error) {
	k := cacheKey{kind: 's', qtype: qtype, name: normName(name)}
	if e, ok := c.get(k); ok {
		a := e.sec
		a.Records = slices.Clone(a.Records)
		return a, e.err
	}
	a, err := LookupSecure(ctx, c.r, name, qtype)
	e := &cacheEntry{key: k, sec: a, err: err}
	e.sec.Records = slices.Clone(a.Records)
	c.put(e)
	return a, err
}
