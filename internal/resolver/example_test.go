package resolver_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/miekg/dns"

	"sealgate/internal/resolver"
)

// LookupSecure says whether an answer was DNSSEC-validated: only from a server marked
// validating (Config.DNSSEC) that set the AD bit. A zone file is never validated.
func ExampleLookupSecure() {
	r, err := resolver.NewZoneResolver(strings.NewReader("_25._tcp.mx.example.com. 300 IN TLSA 3 1 1 0123abcd\n"), "", "zone")
	if err != nil {
		log.Fatal(err)
	}
	a, err := resolver.LookupSecure(context.Background(), r, "_25._tcp.mx.example.com", dns.TypeTLSA)
	if err != nil {
		log.Fatal(err)
	}
	// With a validating resolver (unbound on loopback) it can be true:
	//   resolver.New(resolver.Config{Server: "127.0.0.1:53", DNSSEC: true})
	fmt.Println(len(a.Records), "TLSA record; secure:", a.Secure)

	// Output: 1 TLSA record; secure: false
}
