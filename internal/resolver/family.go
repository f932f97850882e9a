package resolver

import (
	"context"
	"net"

	"github.com/miekg/dns"
)

// LookupIPFamily returns the addresses of name of one family only: the A records when v6 is
// false, the AAAA records when it is true. Checks that compare a name's addresses with one
// client address ask only that address's type (RFC 7208 §5.3, forward-confirmed reverse DNS
// of RFC 8601 §3), so a failure of the other type does not turn their answer into an error.
// With a Resolver of this package one query is made (a Cache keeps each family apart); with
// another Resolver LookupIP is filtered. No address of the family is an error for which
// IsNotFound is true.
func LookupIPFamily(ctx context.Context, r Resolver, name string, v6 bool) ([]net.IP, error) {
	qtype := dns.TypeA
	if v6 {
		qtype = dns.TypeAAAA
	}
	if c, ok := r.(*Cache); ok {
		return c.lookupIPFamily(ctx, name, v6)
	}
	if l, ok := r.(*lookups); ok {
		rrs, err := l.records(ctx, name, qtype)
		if err != nil {
			return nil, err
		}
		ips := make([]net.IP, 0, len(rrs))
		for _, rr := range rrs {
			switch a := rr.(type) {
			case *dns.A:
				ips = append(ips, a.A)
			case *dns.AAAA:
				ips = append(ips, a.AAAA)
			}
		}
		return ips, nil
	}
	all, err := r.LookupIP(ctx, name)
	if err != nil {
		return nil, err
	}
	var ips []net.IP
	for _, ip := range all {
		if (ip.To4() == nil) == v6 {
			ips = append(ips, ip)
		}
	}
	if len(ips) == 0 {
		return nil, notFound(dns.Fqdn(name), qtype, false)
	}
	return ips, nil
}
