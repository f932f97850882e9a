package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"sealgate/internal/resolver"
)

// addresses asks A records for an IPv4 client. For an IPv6 client it asks AAAA and A: the
// exists term always asks A (RFC 7208 §5.7), and the library asks for addresses the same
// way for every term, so both are asked and a failure of one type is ignored when the other
// answered.
func (s *spfResolver) addresses(ctx context.Context, host string) ([]net.IP, error) {
	if !s.v6 {
		return resolver.LookupIPFamily(ctx, s.r, host, false)
	}
	six, err6 := resolver.LookupIPFamily(ctx, s.r, host, true)
	four, err4 := resolver.LookupIPFamily(ctx, s.r, host, false)
	if ips := append(six, four...); len(ips) > 0 {
		return ips, nil
	}
	if err6 != nil && !resolver.IsNotFound(err6) {
		return nil, err6
	}
	return nil, err4
}

// spfResolver adapts a resolver.Resolver to the library: errors become unwrapped
// *net.DNSError with IsNotFound for NXDOMAIN and NODATA and IsTimeout for a query that got
// no answer, as the library tells error kinds apart by type assertion; address lookups ask
// only the client's address type (RFC 7208 §5.3); and the DNS-querying terms and void
// lookups are counted (RFC 7208 §4.6.4).
//
// Names reach the adapter as the library made them, octet strings after macro expansion
// (RFC 7208 §7.3). One that cannot be a DNS name (an empty label, a label over 63 octets, a
// name over 253) is not asked and does not exist, so its mechanism does not match (RFC 7208
// §4.3, §4.8; RFC 7208 tests invalid-domain-empty-label, invalid-domain-long,
// invalid-domain-long-via-macro). Octets that are not letters, digits, '-' or '_' are asked
// as \DDD escapes (macro-mania-in-domain asks for a name with spaces), and names from
// answers (MX hosts, PTR names) are handed back unescaped, so the library compares octets.
//
// The library asks TXT once per check_host() (the first, then one per include and
// redirect), MX once per mx term, PTR once per evaluation for ptr terms, and addresses for
// a and exists terms, then for each MX host of an mx term and each PTR name, which RFC 7208
// §4.6.4 does not count: those names are remembered in pending and not counted. A second
// ptr term reuses the first one's answer without asking, so it is not counted here.
type spfResolver struct {
	r       resolver.Resolver
	v6      bool
	txts    int
	lookups int
	voids   int
	pending []string
	// ip is the client; pNames its validated PTR names once the p macro needed them.
	ip     net.IP
	pNames []string
	// aliases maps the stand-in names of aliasSlashes to the names they stand for.
	aliases map[string]string
	// timedOut is the last error handed to the library for a query that got no answer.
	timedOut error
}

// netError converts an error of the resolver for the library and remembers a timeout.
func (s *spfResolver) netError(err error) error {
	if err == nil {
		return nil
	}
	var ne *net.DNSError
	if c := resolver.AsNetError(err); c != err {
		ne = c.(*net.DNSError)
	} else if !errors.As(err, &ne) {
		ne = &net.DNSError{Err: err.Error(), IsTemporary: resolver.IsTemporary(err), IsNotFound: resolver.IsNotFound(err)}
	}
	if ne.IsTimeout || errors.Is(err, context.DeadlineExceeded) {
		ne.IsTimeout, ne.IsTemporary = true, true
		s.timedOut = err
	}
	return ne
}

// queryName checks a name the library asks for and writes it for the resolver.
func queryName(name string) (string, error) {
	if why := dnsNameProblem(name); why != "" {
		return "", &net.DNSError{Err: "not a valid domain name: " + why, Name: name, IsNotFound: true}
	}
	// The name in wire form, labels of octets, read back by miekg/dns into the presentation
	// form the resolver takes and compares answers with.
	var wire []byte
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		wire = append(append(wire, byte(len(l))), l...)
	}
	q, _, err := dns.UnpackDomainName(append(wire, 0), 0)
	if err != nil {
		return "", &net.DNSError{Err: "not a valid domain name: " + err.Error(), Name: name, IsNotFound: true}
	}
	return q, nil
}

// dnsNameProblem says why name (octets, an optional trailing dot) cannot be a DNS name
// (RFC 1035 §2.3.4), or "".
func dnsNameProblem(name string) string {
	n := strings.TrimSuffix(name, ".")
	switch {
	case n == "":
		return "empty name"
	case len(n) > 253:
		return fmt.Sprintf("%d octets, at most 253", len(n))
	}
	for _, l := range strings.Split(n, ".") {
		switch {
		case l == "":
			return "empty label"
		case len(l) > 63:
			return fmt.Sprintf("a label of %d octets, at most 63", len(l))
		}
	}
	return ""
}

// answerName turns a name of an answer from presentation form (\DDD and \X escapes) back
// into its octets.
func answerName(name string) string {
	if !strings.Contains(name, `\`) {
		return name
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '\\' && i+3 < len(name) && isDigits(name[i+1:i+4]) {
			n, _ := strconv.Atoi(name[i+1 : i+4])
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		if c == '\\' && i+1 < len(name) {
			i++
			c = name[i]
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (s *spfResolver) void(n int, err error) {
	if (err == nil && n == 0) || resolver.IsNotFound(err) {
		s.voids++
	}
}

func (s *spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	s.txts++
	if s.txts > 1 {
		s.lookups++
	}
	q, err := queryName(name)
	if err != nil {
		return nil, err
	}
	txt, err := s.r.LookupTXT(ctx, q)
	if err != nil {
		return nil, s.netError(err)
	}
	var recs []string
	for _, t := range txt {
		if l := strings.ToLower(t); l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ") {
			recs = append(recs, t)
		}
	}
	if len(recs) == 1 {
		if msg := CheckSPFSyntax(recs[0]); msg != "" {
			// Not a *net.DNSError: the library gives permerror for it.
			return nil, &spfSyntaxError{domain: strings.TrimSuffix(name, "."), msg: msg}
		}
		for i, t := range txt {
			if t == recs[0] {
				txt[i] = s.expandP(ctx, s.aliasSlashes(t), name)
			}
		}
	}
	return txt, nil
}

// aliasSlashes rewrites the a and mx terms of rec whose domain-spec holds a '/', which RFC
// 7208 §7.1 allows (macro-literal) but the library cannot parse (it ends the domain-spec at
// the first '/'), with a stand-in name that LookupIPAddr and LookupMX map back (RFC 7208
// tests a-colon-domain, mx-colon-domain). A domain-spec with macros is left alone: the
// library expands those itself.
func (s *spfResolver) aliasSlashes(rec string) string {
	terms := strings.Split(rec, " ")
	for i, term := range terms {
		qual, t := "", term
		if t != "" && strings.IndexByte("+-~?", t[0]) >= 0 {
			qual, t = t[:1], t[1:]
		}
		mech, arg, ok := strings.Cut(t, ":")
		if !ok || !strings.EqualFold(mech, "a") && !strings.EqualFold(mech, "mx") {
			continue
		}
		spec, cidr := cutDualCIDR(arg)
		if !strings.Contains(spec, "/") || strings.Contains(spec, "%") {
			continue
		}
		if s.aliases == nil {
			s.aliases = map[string]string{}
		}
		alias := fmt.Sprintf("spf-term-%d.sealgate.invalid", len(s.aliases)+1)
		s.aliases[alias] = spec
		terms[i] = qual + mech + ":" + alias + cidr
	}
	return strings.Join(terms, " ")
}

// unalias is the name a stand-in of aliasSlashes stands for, or name.
func (s *spfResolver) unalias(name string) string {
	if n, ok := s.aliases[name]; ok {
		return n
	}
	return name
}

func (s *spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	s.lookups++
	q, err := queryName(s.unalias(name))
	if err != nil {
		s.void(0, err)
		return nil, err
	}
	mxs, err := s.r.LookupMX(ctx, q)
	s.void(len(mxs), err)
	s.pending = s.pending[:0]
	for _, mx := range mxs {
		mx.Host = answerName(mx.Host)
		s.pending = append(s.pending, mx.Host)
	}
	return mxs, s.netError(err)
}

func (s *spfResolver) LookupAddr(ctx context.Context, ip string) ([]string, error) {
	s.lookups++
	names, err := s.r.LookupAddr(ctx, ip)
	s.void(len(names), err)
	for i, n := range names {
		names[i] = answerName(n)
	}
	s.pending = append(s.pending[:0], names[:min(10, len(names))]...)
	return names, s.netError(err)
}

func (s *spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	counted := true
	if len(s.pending) > 0 && strings.EqualFold(strings.TrimSuffix(s.pending[0], "."), strings.TrimSuffix(host, ".")) {
		s.pending = s.pending[1:]
		counted = false
	} else {
		s.lookups++
	}
	if host == "." || host == "" {
		// A null MX (RFC 7505) names no host.
		return nil, &net.DNSError{Err: "null MX: no host", Name: host, IsNotFound: true}
	}
	q, err := queryName(s.unalias(host))
	var ips []net.IP
	if err == nil {
		ips, err = s.addresses(ctx, q)
	}
	if counted {
		s.void(len(ips), err)
	}
	if err != nil {
		return nil, s.netError(err)
	}
	out := make([]net.IPAddr, len(ips))
	for i, ip := range ips {
		out[i] = net.IPAddr{IP: ip}
	}
	return out, nil
}
