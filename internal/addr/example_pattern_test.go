package addr_test

import (
	"fmt"

	"sealgate/internal/addr"
)

// A may_send_as pattern matches addresses; its Domain and Subdomains say which domain's
// DKIM keys its mail needs.
func ExampleParsePattern() {
	p, err := addr.ParsePattern("*@*.Client.Example")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range []string{"x@news.client.example", "x@client.example"} {
		a, _ := addr.ParseAddress(s)
		fmt.Println(s, p.Matches(a))
	}
	fmt.Println(p, p.Domain(), p.Subdomains())

	_, err = addr.ParsePattern("*@*.co.uk")
	fmt.Println(err != nil)
	// Output:
	// x@news.client.example true
	// x@client.example false
	// *@*.client.example client.example true
	// true
}

// OrgDomain is the public suffix plus one label (RFC 7489 §3.2).
func ExampleOrgDomain() {
	for _, d := range []addr.Domain{"news.client.example.co.uk", "alice.github.io", "co.uk"} {
		fmt.Println(d, addr.OrgDomain(d), addr.IsPublicSuffix(d))
	}
	// Output:
	// news.client.example.co.uk example.co.uk false
	// alice.github.io alice.github.io false
	// co.uk co.uk true
}
