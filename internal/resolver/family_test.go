package resolver_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
)

// TestLookupIPFamily: one address type at a time, from a zone file and over the network;
// no address of the type is NotFound even when the other type exists.
func TestLookupIPFamily(t *testing.T) {
	zone := `$TTL 300
dual.example. A 192.0.2.1
dual.example. AAAA 2001:db8::1
six.example.  AAAA 2001:db8::6
`
	net1, err := resolver.New(resolver.Config{Server: resolvertest.Start(t, zone)})
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]resolver.Resolver{"zone": resolvertest.NewZone(t, zone), "network": net1} {
		ctx := context.Background()
		for _, tc := range []struct {
			host string
			v6   bool
			want string
		}{
			{"dual.example", false, "192.0.2.1"},
			{"dual.example", true, "2001:db8::1"},
			{"six.example", true, "2001:db8::6"},
			{"six.example", false, "not found"},
			{"nx.example", false, "not found"},
		} {
			ips, err := resolver.LookupIPFamily(ctx, r, tc.host, tc.v6)
			got := ""
			switch {
			case resolver.IsNotFound(err):
				got = "not found"
			case err != nil:
				got = err.Error()
			default:
				var s []string
				for _, ip := range ips {
					s = append(s, ip.String())
				}
				got = strings.Join(s, ",")
			}
			if got != tc.want {
				t.Errorf("%s: %s v6=%v: %q, want %q", name, tc.host, tc.v6, got, tc.want)
			}
		}
	}
	// Another Resolver implementation: LookupIP filtered.
	ips, err := resolver.LookupIPFamily(context.Background(), fakeResolver{}, "x.example", true)
	if err != nil || len(ips) != 1 || !ips[0].Equal(net.ParseIP("2001:db8::9")) {
		t.Errorf("filtered: %v %v", ips, err)
	}
	if _, err := resolver.LookupIPFamily(context.Background(), fakeResolver{v4only: true}, "x.example", true); !resolver.IsNotFound(err) {
		t.Errorf("filtered, no IPv6: %v", err)
	}
}

type fakeResolver struct {
	resolver.Resolver
	v4only bool
}

func (f fakeResolver) LookupIP(context.Context, string) ([]net.IP, error) {
	if f.v4only {
		return []net.IP{net.ParseIP("192.0.2.9")}, nil
	}
	return []net.IP{net.ParseIP("192.0.2.9"), net.ParseIP("2001:db8::9")}, nil
}
