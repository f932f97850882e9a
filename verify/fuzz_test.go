package verify

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"sealgate/internal/authres"
	"sealgate/internal/resolver/resolvertest"
)

// FuzzParseDMARCRecord: any TXT string parses or fails without panicking, by either RFC,
// and what parses has a policy and valid alignment modes.
func FuzzParseDMARCRecord(f *testing.F) {
	for _, s := range []string{"v=DMARC1; p=reject", "v=DMARC1", "v=DMARC1;p=none;sp=quarantine;np=reject;psd=y;t=y;pct=5;rua=mailto:a@b.example",
		"v=DMARC1; p=bogus; rua=mailto:x@y", "v=DMARC1 ; ; = ; p", "v = DMARC1;p=reject;p=none"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, spec := range []RFC{RFC9989, RFC7489} {
			rec, err := ParseDMARCRecord(s, spec)
			if err != nil {
				continue
			}
			if !isPolicy(rec.P) || rec.ADKIM != "r" && rec.ADKIM != "s" || rec.ASPF != "r" && rec.ASPF != "s" || rec.Pct < 0 || rec.Pct > 100 {
				t.Fatalf("%s %q: %+v", spec, s, rec)
			}
		}
	})
}

// FuzzSPFSyntax: the grammar check never panics.
func FuzzSPFSyntax(f *testing.F) {
	for _, s := range []string{"v=spf1 -all", "v=spf1 a:%{d}/24//64 exists:%{ir}.%{l1r+-}._spf.%{d} redirect=x.example",
		"v=spf1 ip6:2001:db8::/32 ip4:192.0.2.1/0", "v=spf1 %{", "v=spf1 exists:%{d0r}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		CheckSPFSyntax("v=spf1 " + s)
	})
}

// FuzzSPFAdapter: what the SPF adapter does to records and names never panics: the p macro
// and the stand-ins of aliasSlashes on any record that passes the syntax check, and the
// conversion of any name to and from a query.
func FuzzSPFAdapter(f *testing.F) {
	for _, s := range []string{"a:foo:bar/baz.example.com/24 exists:%{p2r-}.%{P}.%%{p}.x.example", "mx:%{p}.example/32//64 -all",
		"exp=%{p}.example %{", "include:%{p}%-%_.example"} {
		f.Add(s, "mx.example.com")
	}
	f.Fuzz(func(t *testing.T, rec, name string) {
		s := &spfResolver{pNames: []string{name}}
		if CheckSPFSyntax("v=spf1 "+rec) == "" {
			s.expandP(context.Background(), s.aliasSlashes("v=spf1 "+rec), name)
		}
		s.expandPTerm(context.Background(), rec, name)
		if q, err := queryName(name); err == nil {
			answerName(q)
		}
		answerName(name)
	})
}

// FuzzVerify: any message is verified without panicking, and the Authentication-Results
// field made for it parses.
func FuzzVerify(f *testing.F) {
	f.Add("From: a@corp.example\r\nSubject: x\r\n\r\nbody\r\n", "ana@corp.example")
	f.Add("From: a@corp.example, b@other.example\r\nFrom: c@[192.0.2.1]\r\nDKIM-Signature: v=1; d=corp.example; s=s1; a=ed25519-sha256; h=from; bh=; b=\r\n\r\n", "")
	f.Add("From: undisclosed:;\r\nSender: a@x\r\nResent-Sender: b@y.example\r\n\r\n", "b@y.example")
	r := resolvertest.NewZone(f, "$TTL 300\n"+stagedZone())
	f.Fuzz(func(t *testing.T, msg, submitter string) {
		env := Envelope{IP: netip.MustParseAddr("192.0.2.25"), HELO: "relay.corp.example", MailFrom: "b@bounce.corp.example", Submitter: submitter}
		rep, err := Verify(context.Background(), env, strings.NewReader(msg), &Options{Resolver: r, AuthServID: "mx.test.example"})
		if err != nil {
			return
		}
		v := strings.TrimPrefix(strings.TrimSuffix(rep.AuthenticationResults, "\r\n"), authres.FieldName+":")
		if _, _, err := authres.Parse(v); err != nil {
			t.Fatalf("Authentication-Results does not parse: %v\n%s", err, rep.AuthenticationResults)
		}
	})
}
