package authres_test

import (
	"fmt"
	"strings"

	"sealgate/internal/authres"
)

func ExampleParse() {
	id, results, err := authres.Parse(` mx.example.net; dkim=pass (2048-bit key) header.d=example.com header.s=sel;
 spf=fail reason="not permitted; see policy" smtp.mailfrom=ana@example.com`)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(id)
	for _, r := range results {
		d, _ := r.Get("header", "d")
		fmt.Printf("%s=%s reason=%q header.d=%q\n", r.Method, r.Value, r.Reason, d)
	}
	// Output:
	// mx.example.net
	// dkim=pass reason="" header.d="example.com"
	// spf=fail reason="not permitted; see policy" header.d=""
}

func ExampleFormatField() {
	results := []authres.Result{
		{Method: "auth", Value: "pass", Props: []authres.Prop{{Type: "smtp", Property: "auth", Value: "ana@corp.example"}}},
		{Method: "dkim", Value: "pass", Props: []authres.Prop{{Type: "header", Property: "d", Value: "corp.example"}, {Type: "header", Property: "b", Value: "Ab/9+x"}}},
	}
	var infos []string
	for _, r := range results {
		infos = append(infos, r.String())
	}
	f := authres.FormatField(authres.FieldName, "relay.example", infos)
	fmt.Print(strings.ReplaceAll(string(f), "\r\n", "\n")) // the field's lines end in CRLF
	// Output:
	// Authentication-Results: relay.example;
	//  auth=pass smtp.auth=ana@corp.example;
	//  dkim=pass header.d=corp.example header.b="Ab/9+x"
}
