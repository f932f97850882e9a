package verify

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"

	"blitiri.com.ar/go/spf"

	"sealgate/internal/resolver"
)

// SPF limits of RFC 7208 §4.6.4.
const (
	MaxSPFLookups     = 10
	MaxSPFVoidLookups = 2
)

// SPFResult is the outcome of one SPF check_host() evaluation (RFC 7208 §4).
type SPFResult struct {
	// Identity is "mailfrom" or "helo" (RFC 7208 §2.3, §2.4).
	Identity string `json:"identity"`
	// Domain is the domain checked: the MAIL FROM domain or the HELO name.
	Domain string `json:"domain"`
	// Sender is the <sender> of check_host(): the MAIL FROM address, or postmaster@HELO.
	Sender string `json:"sender"`
	// Result is one of none, neutral, pass, fail, softfail, temperror, permerror (RFC 7208
	// §2.6).
	Result string `json:"result"`
	// Reason says which mechanism matched, or what went wrong.
	Reason string `json:"reason,omitempty"`
	// Lookups counts the terms that caused DNS lookups (include, a, mx, ptr, exists,
	// redirect); VoidLookups the lookups among them that found nothing (RFC 7208 §4.6.4).
	Lookups     int `json:"lookups"`
	VoidLookups int `json:"void_lookups"`
}

// CheckSPF evaluates SPF (RFC 7208) for a client at ip: the MAIL FROM identity of sender,
// or with sender "" (the null reverse-path) the HELO identity of helo, whose <sender> is
// postmaster@helo (RFC 7208 §2.4). The DNS-querying terms and void lookups are counted
// against the limits of RFC 7208 §4.6.4, and the record is checked whole against the
// grammar of RFC 7208 §12. ctx bounds the evaluation: running out of time is temperror.
func CheckSPF(ctx context.Context, r resolver.Resolver, ip netip.Addr, helo, sender string) *SPFResult {
	nip := net.IP(ip.Unmap().AsSlice())
	if sender == "" {
		return checkSPF(ctx, r, nip, "helo", helo, "postmaster@"+helo, helo)
	}
	domain := sender[strings.LastIndexByte(sender, '@')+1:]
	return checkSPF(ctx, r, nip, "mailfrom", helo, sender, domain)
}

// checkSPF runs check_host(ip, domain, sender) through the project's resolver.
func checkSPF(ctx context.Context, r resolver.Resolver, ip net.IP, identity, helo, sender, domain string) *SPFResult {
	res := &SPFResult{Identity: identity, Domain: domain, Sender: sender}
	a := &spfResolver{r: r, v6: ip.To4() == nil}
	result, err := spf.CheckHostWithSender(ip, helo, sender, spf.WithResolver(a), spf.WithContext(ctx),
		spf.OverrideLookupLimit(MaxSPFLookups), spf.OverrideVoidLookupLimit(MaxSPFVoidLookups))
	res.Result = string(result)
	res.Lookups, res.VoidLookups = a.lookups, a.voids
	if ctx.Err() != nil && (result == spf.TempError || result == spf.PermError) {
		// The evaluation ran out of time: a DNS answer did not come (RFC 7208 §4.6.4 lets
		// a verifier bound the whole evaluation; the result is then temperror).
		res.Result = string(spf.TempError)
	}
	res.Reason = spfReason(result, err)
	return res
}

// spfReason explains a result from the library's error.
func spfReason(result spf.Result, err error) string {
	switch {
	case errors.Is(err, spf.ErrLookupLimitReached):
		return "more than 10 DNS-querying terms (include, a, mx, ptr, exists, redirect) (RFC 7208 §4.6.4)"
	case errors.Is(err, spf.ErrVoidLookupLimitReached):
		return "more than 2 void lookups (names with no record) (RFC 7208 §4.6.4)"
	case errors.Is(err, spf.ErrNoResult) && result == spf.None:
		return "no SPF record"
	case errors.Is(err, spf.ErrNoResult):
		return "an include or redirect target has no SPF record (RFC 7208 §5.2, §6.1)"
	case errors.Is(err, spf.ErrMultipleRecords):
		return "more than one v=spf1 record (RFC 7208 §3.2)"
	case errors.Is(err, spf.ErrUnknownField):
		return "unknown mechanism or malformed term (RFC 7208 §4.6)"
	case errors.Is(err, spf.ErrInvalidMacro), errors.Is(err, spf.ErrInvalidDomain),
		errors.Is(err, spf.ErrInvalidIP), errors.Is(err, spf.ErrInvalidMask):
		return "malformed record: " + err.Error()
	case errors.Is(err, spf.ErrTooManyMXRecords):
		return "an mx term names more than 10 MX hosts (RFC 7208 §4.6.4)"
	case errors.As(err, new(*spfSyntaxError)):
		return err.Error()
	case err == nil:
		if result == spf.Neutral {
			return "no mechanism matched and there is no redirect (RFC 7208 §4.7)"
		}
		return ""
	}
	return err.Error()
}

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
// *net.DNSError with IsNotFound for NXDOMAIN and NODATA, as the library tells error kinds
// apart by type assertion; address lookups ask only the client's address type (RFC 7208
// §5.3); and the DNS-querying terms and void lookups are counted (RFC 7208 §4.6.4).
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
}

func netError(err error) error {
	if err == nil {
		return nil
	}
	if ne := resolver.AsNetError(err); ne != err {
		return ne
	}
	var ne *net.DNSError
	if errors.As(err, &ne) {
		return ne
	}
	return &net.DNSError{Err: err.Error(), IsTemporary: resolver.IsTemporary(err), IsNotFound: resolver.IsNotFound(err)}
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
	txt, err := s.r.LookupTXT(ctx, name)
	if err != nil {
		return nil, netError(err)
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
	}
	return txt, nil
}

func (s *spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	s.lookups++
	mxs, err := s.r.LookupMX(ctx, name)
	s.void(len(mxs), err)
	s.pending = s.pending[:0]
	for _, mx := range mxs {
		s.pending = append(s.pending, mx.Host)
	}
	return mxs, netError(err)
}

func (s *spfResolver) LookupAddr(ctx context.Context, ip string) ([]string, error) {
	s.lookups++
	names, err := s.r.LookupAddr(ctx, ip)
	s.void(len(names), err)
	s.pending = append(s.pending[:0], names[:min(10, len(names))]...)
	return names, netError(err)
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
	ips, err := s.addresses(ctx, host)
	if counted {
		s.void(len(ips), err)
	}
	if err != nil {
		return nil, netError(err)
	}
	out := make([]net.IPAddr, len(ips))
	for i, ip := range ips {
		out[i] = net.IPAddr{IP: ip}
	}
	return out, nil
}
