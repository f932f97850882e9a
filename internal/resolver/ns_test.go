package resolver_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
)

func TestLookupNS(t *testing.T) {
	const zone = `
example.com.     3600 IN NS ns1.example.com.
example.com.     3600 IN NS NS2.Example.NET.
ns1.example.com. 3600 IN A  192.0.2.53
`
	srv := resolvertest.Start(t, zone)
	net, err := resolver.New(resolver.Config{Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, r := range map[string]resolver.Resolver{"net": net, "zone": resolvertest.NewZone(t, zone)} {
		t.Run(name, func(t *testing.T) {
			got, err := resolver.LookupNS(ctx, r, "Example.COM")
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			if want := []string{"ns1.example.com.", "ns2.example.net."}; !slices.Equal(got, want) {
				t.Errorf("LookupNS = %q, want %q", got, want)
			}
			if _, err := resolver.LookupNS(ctx, r, "ns1.example.com"); !resolver.IsNotFound(err) {
				t.Errorf("LookupNS of a name without NS: err %v, want not found", err)
			}
		})
	}
	c := resolver.NewCache(net, 0, 0)
	if _, err := resolver.LookupNS(ctx, c, "example.com"); !errors.Is(err, resolver.ErrNoNSLookup) {
		t.Errorf("LookupNS through a Cache: err %v, want ErrNoNSLookup", err)
	}
}

func TestLiveZone(t *testing.T) {
	l := resolvertest.StartLive(t, "a.example. 60 IN TXT \"one\"\n")
	r, err := resolver.New(resolver.Config{Server: l.Addr})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got, err := r.LookupTXT(ctx, "a.example"); err != nil || len(got) != 1 || got[0] != "one" {
		t.Fatalf("before SetZone: %q, %v", got, err)
	}
	l.SetZone(t, "b.example. 60 IN TXT \"two\"\n")
	if _, err := r.LookupTXT(ctx, "a.example"); !resolver.IsNotFound(err) {
		t.Errorf("a record SetZone removed: err %v, want not found", err)
	}
	if got, err := r.LookupTXT(ctx, "b.example"); err != nil || len(got) != 1 || got[0] != "two" {
		t.Errorf("after SetZone: %q, %v", got, err)
	}
}
