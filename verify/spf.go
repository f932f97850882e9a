package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"blitiri.com.ar/go/spf"

	"sealgate/internal/addr"
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
	// TimedOut is set when the result is temperror because a DNS query got no answer in
	// time, rather than a server failure: the domain's policy is then unknown, not wrong.
	TimedOut bool `json:"timed_out,omitempty"`
}

// CheckSPF evaluates SPF (RFC 7208) for a client at ip: the MAIL FROM identity of sender,
// or with sender "" (the null reverse-path) the HELO identity of helo, whose <sender> is
// postmaster@helo (RFC 7208 §2.4). sender is the reverse-path as the client gave it,
// without angle brackets; it is not refused for its syntax, since the initial processing
// of RFC 7208 §4.3 says what a malformed one gives (none). The DNS-querying terms and void
// lookups are counted against the limits of RFC 7208 §4.6.4, and the record is checked
// whole against the grammar of RFC 7208 §12. ctx bounds the evaluation: running out of
// time, or any DNS timeout on the way, is temperror with TimedOut set.
func CheckSPF(ctx context.Context, r resolver.Resolver, ip netip.Addr, helo, sender string) *SPFResult {
	nip := net.IP(ip.Unmap().AsSlice())
	if sender == "" {
		return checkSPF(ctx, r, nip, "helo", helo, "postmaster@"+helo, helo)
	}
	domain := ""
	if at := strings.LastIndexByte(sender, '@'); at >= 0 {
		domain = sender[at+1:]
		if at == 0 {
			// "<@example.net>": a <sender> without a local part is postmaster (RFC 7208
			// §4.3; RFC 7208 test nolocalpart).
			sender = "postmaster" + sender
		}
	}
	return checkSPF(ctx, r, nip, "mailfrom", helo, sender, domain)
}

// checkSPF runs check_host(ip, domain, sender) through the project's resolver, after the
// initial processing of RFC 7208 §4.3.
func checkSPF(ctx context.Context, r resolver.Resolver, ip net.IP, identity, helo, sender, domain string) *SPFResult {
	res := &SPFResult{Identity: identity, Domain: domain, Sender: sender}
	if why := spfDomainProblem(domain); why != "" {
		res.Result, res.Reason = string(spf.None), why
		return res
	}
	// The library takes the domain after the first '@' of sender, and a local part may
	// hold one (go-smtp removes the quotes of "a@b"@example.com): the domain checked must
	// be the one after the last '@', so the local part's are written %40 for the library.
	libSender := sender
	if at := strings.LastIndexByte(sender, '@'); at > 0 {
		libSender = strings.ReplaceAll(sender[:at], "@", "%40") + sender[at:]
	}
	a := &spfResolver{r: r, v6: ip.To4() == nil, ip: ip}
	result, err := spf.CheckHostWithSender(ip, helo, libSender, spf.WithResolver(a), spf.WithContext(ctx),
		spf.OverrideLookupLimit(MaxSPFLookups), spf.OverrideVoidLookupLimit(MaxSPFVoidLookups))
	res.Result = string(result)
	res.Lookups, res.VoidLookups = a.lookups, a.voids
	res.Reason = spfReason(result, err)
	switch {
	case ctx.Err() != nil && (result == spf.TempError || result == spf.PermError):
		// The evaluation ran out of time: a DNS answer did not come (RFC 7208 §4.6.4 lets
		// a verifier bound the whole evaluation; the result is then temperror).
		res.Result, res.TimedOut = string(spf.TempError), true
		res.Reason = "DNS timed out: " + ctx.Err().Error()
	case a.timedOut != nil && result == spf.TempError:
		// A query on the way timed out (RFC 7208 §4.4, §5; RFC 7208 tests txttimeout,
		// alltimeout, include-temperror).
		res.TimedOut = true
		res.Reason = "DNS timed out: " + a.timedOut.Error()
	}
	return res
}

// spfDomainProblem says why domain cannot be an SPF identity, or "". A malformed name (a
// label over 63 octets, an empty label, an address literal) or one that is not a
// multi-label domain name gives none without any lookup (RFC 7208 §4.3; RFC 7208 tests
// toolonglabel, emptylabel, helo-not-fqdn, helo-domain-literal).
func spfDomainProblem(domain string) string {
	switch {
	case domain == "":
		return "no domain to check (RFC 7208 §4.3)"
	case addr.IsAddressLiteral(domain):
		return fmt.Sprintf("%s is an address literal, not a domain: it has no SPF record (RFC 7208 §2.3)", domain)
	}
	if why := dnsNameProblem(domain); why != "" {
		return fmt.Sprintf("%q is not a valid domain name (%s): no SPF record can be looked up (RFC 7208 §4.3)", domain, why)
	}
	if !strings.Contains(strings.TrimSuffix(domain, "."), ".") {
		return fmt.Sprintf("%s is not a multi-label domain name: no SPF record (RFC 7208 §4.3)", domain)
	}
	return ""
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
