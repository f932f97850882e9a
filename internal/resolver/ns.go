package resolver

import (
	"context"
	"errors"
	"strings"

	"github.com/miekg/dns"
)

// NSResolver is a Resolver that can also look up NS records. The resolvers New and
// NewZoneResolver return are NSResolvers; wrappers (Cache, counting resolvers) need not be.
type NSResolver interface {
	Resolver
	// LookupNS returns the name server host names of name's NS records (RFC 1035 §3.3.11)
	// as lower-case FQDNs with a trailing dot.
	LookupNS(ctx context.Context, name string) ([]string, error)
}

// ErrNoNSLookup is returned by LookupNS for a resolver that cannot look up NS records.
var ErrNoNSLookup = errors.New("resolver: this resolver cannot look up NS records")

// LookupNS looks up name's NS records through r when r is an NSResolver, and returns
// ErrNoNSLookup otherwise.
func LookupNS(ctx context.Context, r Resolver, name string) ([]string, error) {
	nr, ok := r.(NSResolver)
	if !ok {
		return nil, ErrNoNSLookup
	}
	return nr.LookupNS(ctx, name)
}

// LookupNS implements NSResolver.
func (l *lookups) LookupNS(ctx context.Context, name string) ([]string, error) {
	rrs, err := l.records(ctx, name, dns.TypeNS)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.ToLower(rr.(*dns.NS).Ns))
	}
	return out, nil
}
