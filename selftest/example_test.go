package selftest_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"strings"

	"sealgate/internal/resolver"
	"sealgate/selftest"
)

// Check a domain's DNS before publishing p=reject, from a zone of the planned records: here
// the egress address is missing from SPF, so the report says what to publish.
func ExampleDomain() {
	zone := `
corp.example.            300 TXT "v=spf1 ip4:192.0.2.25 -all"
corp.example.            300 MX  10 mx.corp.example.
mx.corp.example.         300 A   192.0.2.80
_dmarc.corp.example.     300 TXT "v=DMARC1; p=none; rua=mailto:dmarc@corp.example"
out.corp.example.        300 A   198.51.100.7
7.100.51.198.in-addr.arpa. 300 PTR out.corp.example.
`
	r, err := resolver.NewZoneResolver(strings.NewReader(zone), "", "planned.zone")
	if err != nil {
		log.Fatal(err)
	}
	rep, err := selftest.Domain(context.Background(), "corp.example", &selftest.DomainOptions{
		Resolver: r,
		Egress:   []selftest.Egress{{IP: netip.MustParseAddr("198.51.100.7"), HELO: "out.corp.example"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("ready:", rep.Ready)
	for _, f := range rep.Findings {
		if f.Check == "spf" {
			fmt.Println(f.Status, f.Fix)
		}
	}
	fmt.Println(rep.Records[len(rep.Records)-1])
	// Output:
	// ready: false
	// fail add ip4:198.51.100.7 to the SPF record of corp.example
	// corp.example. IN TXT "v=spf1 ip4:192.0.2.25 ip4:198.51.100.7 -all"
}
