package verify_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"strings"

	"sealgate/internal/resolver"
	"sealgate/verify"
)

// Verify a message as a receiver that saw it come from 192.0.2.25, with DNS answered from a
// zone (resolver.New with a server, or the system resolver, in real use).
func ExampleVerify() {
	zone := `
relay.corp.example.      300 A   192.0.2.25
25.2.0.192.in-addr.arpa. 300 PTR relay.corp.example.
corp.example.            300 MX  10 relay.corp.example.
bounce.corp.example.     300 TXT "v=spf1 ip4:192.0.2.25 -all"
_dmarc.corp.example.     300 TXT "v=DMARC1; p=reject"
`
	r, err := resolver.NewZoneResolver(strings.NewReader(zone), "", "example.zone")
	if err != nil {
		log.Fatal(err)
	}
	msg := "From: ana@corp.example\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nHello.\r\n"
	env := verify.Envelope{
		IP:       netip.MustParseAddr("192.0.2.25"),
		HELO:     "relay.corp.example",
		MailFrom: "b+1@bounce.corp.example",
	}
	rep, err := verify.Verify(context.Background(), env, strings.NewReader(msg),
		&verify.Options{Resolver: r, AuthServID: "mx.example.net"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(strings.ReplaceAll(rep.AuthenticationResults, "\r\n", "\n"))
	fmt.Println(rep.Verdict.Action, rep.Verdict.Reason)
	// Output:
	// Authentication-Results: mx.example.net;
	//  spf=pass smtp.mailfrom=b+1@bounce.corp.example;
	//  spf=none smtp.helo=relay.corp.example (no SPF record);
	//  dkim=none;
	//  dmarc=pass header.from=corp.example policy.dmarc=none;
	//  arc=none smtp.remote-ip=192.0.2.25;
	//  iprev=pass policy.iprev=192.0.2.25 (relay.corp.example)
	// accept DMARC passes: spf of bounce.corp.example is aligned (relaxed)
}
