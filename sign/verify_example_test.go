package sign_test

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/sign"
)

// Verify a whole message: the RFC 8463 example, signed with Ed25519 and a 1024-bit RSA key,
// with its keys answered from a zone file.
func ExampleVerify() {
	zone, _ := os.Open("testdata/rfc8463.zone")
	defer zone.Close()
	r, err := resolver.NewZoneResolver(zone, "", "rfc8463.zone")
	if err != nil {
		fmt.Println(err)
		return
	}
	msg, _ := os.Open("testdata/rfc8463.eml")
	defer msg.Close()
	results, err := sign.Verify(context.Background(), msg, &sign.VerifyOptions{Resolver: r})
	if err != nil {
		fmt.Println(err) // the message could not be read
		return
	}
	for _, res := range results {
		fmt.Println(res.Status, res.Domain, res.Selector, res.Algorithm, res.KeyBits)
	}
	// Output:
	// pass football.example.com brisbane ed25519-sha256 256
	// pass football.example.com test rsa-sha256 1024
}

// VerifyHeader fits a pipeline that has already split the message and hashed its body: here a
// verifier that wants RSA keys of 2048 bits reports the 1024-bit signature as policy.
func ExampleVerifyHeader() {
	zone, _ := os.ReadFile("testdata/rfc8463.zone")
	r, _ := resolver.NewZoneResolver(bytes.NewReader(zone), "", "rfc8463.zone")
	raw, _ := os.ReadFile("testdata/rfc8463.eml")
	hdr, body, err := sign.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		fmt.Println(err)
		return
	}
	bodies := dkimcore.HashBody(body, sign.BodyCanonicalizations(hdr)...)
	for _, res := range sign.VerifyHeader(context.Background(), hdr, bodies, &sign.VerifyOptions{Resolver: r, MinRSABits: 2048}) {
		ar := res.AuthResult()
		fmt.Println(ar.Method + "=" + ar.Value + " header.s=" + res.Selector + " reason=" + ar.Reason)
	}
	// Output:
	// dkim=pass header.s=brisbane reason=
	// dkim=policy header.s=test reason=RSA key of 1024 bits is under the 2048 bits required here
}
