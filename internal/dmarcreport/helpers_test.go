package dmarcreport

import (
	"path/filepath"
	"testing"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/resolver"
	"sealgate/internal/resolver/resolvertest"
)

// The fixtures' reports cover 2026-12-01 (UTC).
var (
	fixtureDay = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	fixtureNow = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
)

// testZone publishes rsa2026 but not ed2026, and PTR names for two foreign sources.
const testZone = `
rsa2026._domainkey.example.test. 300 IN TXT "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"
10.2.0.192.in-addr.arpa. 300 IN PTR relay.example.test.
7.100.51.198.in-addr.arpa. 300 IN PTR mail.spammer.example.
5.113.0.203.in-addr.arpa. 300 IN PTR fwd.lists.forwarder.example.
`

// testResolver is a real resolver asking an in-process DNS server serving testZone.
func testResolver(t *testing.T) resolver.Resolver {
	t.Helper()
	r, err := resolver.New(resolver.Config{Server: resolvertest.Start(t, testZone), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testImporter(t *testing.T) *Importer {
	t.Helper()
	return &Importer{
		Store:   &Store{Path: filepath.Join(t.TempDir(), "dmarc", "reports.db")},
		Domains: []addr.Domain{"example.test"},
		Now:     func() time.Time { return fixtureNow },
	}
}

// ourSends is what the send log has for the fixture day: 192.0.2.10 is ours, signing with
// rsa2026 and ed2026.
func ourSends(t *testing.T, dir string) {
	t.Helper()
	l := NewSendLog(dir)
	for _, rcpt := range []string{"gmail.example", "outlook.example", "yahoo.example", "partner.example"} {
		for range 3 {
			l.Record(Send{Time: fixtureDay.Add(10 * time.Hour), SourceIP: "192.0.2.10", HeaderFrom: "Example.Test",
				DKIM: []string{"d=example.test s=rsa2026", "d=example.test s=ed2026"}, RcptDomain: rcpt})
		}
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
}

func sourceByIP(s *Summary, ip string) *Source {
	for i := range s.Sources {
		if s.Sources[i].IP == ip {
			return &s.Sources[i]
		}
	}
	return nil
}
