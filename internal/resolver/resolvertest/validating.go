package resolvertest

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"sealgate/internal/resolver/internal/zonedb"
)

// Validating describes a stand-in for a validating recursive resolver (RFC 4035 §3.2), for unit
// tests of what uses DNSSEC status (DANE): it answers from Zone as Start does, with the AD bit
// set on every answer (and denial) except those touching a name under Insecure, and SERVFAIL
// (what a validating resolver answers for bogus data, RFC 4035 §5.5) for names under Bogus. It
// sets AD only when the query had DO or AD, as a validating resolver does (RFC 6840 §5.7). It
// does not sign anything: tests against real DNSSEC use unbound (sealgatetest.StartUnbound).
type Validating struct {
	Zone     string
	Insecure []string // names whose answers, and those of their subdomains, are insecure
	Bogus    []string // names whose answers, and those of their subdomains, fail validation
}

// StartValidating serves v on 127.0.0.1 (UDP and TCP) until the test ends and returns its
// "127.0.0.1:port". A zone syntax error fails the test.
func StartValidating(t testing.TB, v Validating) (addr string) {
	t.Helper()
	db, err := zonedb.Parse(strings.NewReader(v.Zone), "", "zone")
	if err != nil {
		t.Fatalf("resolvertest: %v", err)
	}
	under := func(name string, list []string) bool {
		for _, n := range list {
			if dns.IsSubDomain(dns.Fqdn(strings.ToLower(n)), strings.ToLower(name)) {
				return true
			}
		}
		return false
	}
	return StartHandler(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(req)
		resp.RecursionAvailable = true
		if len(req.Question) != 1 {
			resp.Rcode = dns.RcodeFormatError
			Reply(w, req, resp)
			return
		}
		q := req.Question[0]
		resp.Answer, resp.Rcode = db.Lookup(q.Name, q.Qtype)
		secure := !under(q.Name, v.Insecure)
		for _, rr := range resp.Answer {
			if under(rr.Header().Name, v.Bogus) {
				resp.Answer, resp.Rcode = nil, dns.RcodeServerFailure
				break
			}
			secure = secure && !under(rr.Header().Name, v.Insecure)
			if c, ok := rr.(*dns.CNAME); ok {
				secure = secure && !under(c.Target, v.Insecure)
			}
		}
		if under(q.Name, v.Bogus) {
			resp.Answer, resp.Rcode = nil, dns.RcodeServerFailure
		}
		opt := req.IsEdns0()
		askedAD := req.AuthenticatedData || (opt != nil && opt.Do())
		resp.AuthenticatedData = askedAD && secure && resp.Rcode != dns.RcodeServerFailure
		Reply(w, req, resp)
	}))
}
