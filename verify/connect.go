package verify

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"sealgate/internal/addr"
	"sealgate/internal/resolver"
)

// maxIPRevNames is how many PTR names iprev confirms at most (RFC 8601 §3 leaves the bound
// to the verifier; RFC 7208 §4.6.4 uses 10 for the same walk).
const maxIPRevNames = 10

// IPRevResult is the iprev check (RFC 8601 §3): the PTR names of the IP, confirmed by an
// address lookup of the same type.
type IPRevResult struct {
	// Result is pass, fail, temperror or permerror.
	Result string `json:"result"`
	Reason string `json:"reason,omitempty"`
	// Names are the PTR names; Confirmed the one that resolves back to the IP.
	Names     []string `json:"names,omitempty"`
	Confirmed string   `json:"confirmed,omitempty"`
}

// CheckIPRev checks forward-confirmed reverse DNS of ip (RFC 8601 §3): a PTR name whose
// addresses of the same type include ip.
func CheckIPRev(ctx context.Context, r resolver.Resolver, ip netip.Addr) *IPRevResult {
	res := &IPRevResult{}
	names, err := r.LookupAddr(ctx, ip.String())
	switch {
	case resolver.IsNotFound(err):
		res.Result, res.Reason = "fail", fmt.Sprintf("%s has no PTR record", ip)
		return res
	case resolver.IsTemporary(err):
		res.Result, res.Reason = "temperror", err.Error()
		return res
	case err != nil:
		res.Result, res.Reason = "permerror", err.Error()
		return res
	}
	res.Names = names
	temps := 0
	checked := names[:min(maxIPRevNames, len(names))]
	for _, n := range checked {
		ips, err := resolver.LookupIPFamily(ctx, r, n, ip.Is6())
		if err != nil {
			if resolver.IsTemporary(err) {
				temps++
			}
			continue
		}
		for _, a := range ips {
			if got, ok := netip.AddrFromSlice(a); ok && got.Unmap() == ip.Unmap() {
				res.Confirmed = strings.TrimSuffix(n, ".")
				res.Result = "pass"
				res.Reason = fmt.Sprintf("%s -> %s -> %s", ip, res.Confirmed, ip)
				return res
			}
		}
	}
	if temps == len(checked) {
		res.Result, res.Reason = "temperror", fmt.Sprintf("the addresses of %s could not be fetched", strings.Join(checked, ", "))
		return res
	}
	res.Result = "fail"
	res.Reason = fmt.Sprintf("%s has PTR %s, which does not resolve back to it", ip, strings.Join(checked, ", "))
	return res
}

// DNSBLResult is one DNS blocklist query (RFC 5782).
type DNSBLResult struct {
	Zone string `json:"zone"`
	// Result is "listed", "not listed", "error" (the list refused or failed the query: an
	// answer in 127.255.255.0/24, or outside 127.0.0.0/8) or "temperror".
	Result string `json:"result"`
	// Codes are the A answers; Text the TXT record explaining a listing.
	Codes  []string `json:"codes,omitempty"`
	Text   string   `json:"text,omitempty"`
	Reason string   `json:"reason,omitempty"`
}

// dnsblErrorCodes are the answers by which a list says it did not answer (Spamhaus
// conventions); other 127.255.255.x answers are errors too.
var dnsblErrorCodes = map[string]string{
	"127.255.255.252": "the zone name is wrong",
	"127.255.255.254": "the query came through a public or open resolver",
	"127.255.255.255": "too many queries",
}

// dnsblName is the query name of ip in zone: the IPv4 octets or the 32 IPv6 nibbles
// reversed (RFC 5782 §2.1, §2.4).
func dnsblName(ip netip.Addr, zone string) string {
	var parts []string
	if ip.Is4() || ip.Is4In6() {
		b := ip.Unmap().As4()
		for i := 3; i >= 0; i-- {
			parts = append(parts, fmt.Sprint(b[i]))
		}
	} else {
		b := ip.As16()
		for i := 15; i >= 0; i-- {
			parts = append(parts, fmt.Sprintf("%x", b[i]&0xf), fmt.Sprintf("%x", b[i]>>4))
		}
	}
	return strings.Join(parts, ".") + "." + strings.TrimSuffix(zone, ".")
}

// CheckDNSBL looks ip up in the DNS blocklist zone (RFC 5782). Answers in
// 127.255.255.0/24, and answers outside 127.0.0.0/8, are the list's errors, not listings.
func CheckDNSBL(ctx context.Context, r resolver.Resolver, ip netip.Addr, zone string) DNSBLResult {
	res := DNSBLResult{Zone: zone}
	name := dnsblName(ip, zone)
	ips, err := resolver.LookupIPFamily(ctx, r, name, false)
	switch {
	case resolver.IsNotFound(err):
		res.Result = "not listed"
		return res
	case err != nil:
		res.Result, res.Reason = "temperror", err.Error()
		return res
	}
	listed := false
	for _, a := range ips {
		s := a.String()
		res.Codes = append(res.Codes, s)
		loop := netip.MustParsePrefix("127.0.0.0/8")
		p, _ := netip.AddrFromSlice(a)
		p = p.Unmap()
		switch {
		case netip.MustParsePrefix("127.255.255.0/24").Contains(p):
			why := dnsblErrorCodes[s]
			if why == "" {
				why = "an error code, not a listing"
			}
			res.Result, res.Reason = "error", fmt.Sprintf("%s answered %s: %s", zone, s, why)
			return res
		case !loop.Contains(p):
			res.Result, res.Reason = "error", fmt.Sprintf("%s answered %s, outside 127.0.0.0/8: not a DNSBL answer (an expired or wildcarded zone?)", zone, s)
			return res
		}
		listed = true
	}
	if listed {
		res.Result = "listed"
		if txt, err := r.LookupTXT(ctx, name); err == nil {
			res.Text = strings.Join(txt, " ")
		}
	}
	return res
}

// HELOResult is the check of the HELO/EHLO argument (RFC 5321 §4.1.1.1, §4.1.4).
type HELOResult struct {
	// Result is pass (the name resolves to the IP, or the literal is the IP), fail,
	// temperror, or "invalid" (neither a domain name of two or more labels nor an address
	// literal).
	Result string `json:"result"`
	Reason string `json:"reason,omitempty"`
}

// CheckHELO checks the HELO/EHLO argument given by a client at ip: a fully qualified name
// that resolves to ip, or an address literal equal to it. With the zero ip only the syntax
// is checked.
func CheckHELO(ctx context.Context, r resolver.Resolver, ip netip.Addr, helo string) *HELOResult {
	haveIP := ip.IsValid()
	if addr.IsAddressLiteral(helo) {
		s := strings.TrimSuffix(strings.TrimPrefix(helo, "["), "]")
		if v6, ok := strings.CutPrefix(s, "IPv6:"); ok {
			s = v6
		} else if len(s) > 5 && strings.EqualFold(s[:5], "ipv6:") {
			s = s[5:]
		}
		lit, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			return &HELOResult{Result: "invalid", Reason: fmt.Sprintf("%s is not a valid address literal", helo)}
		case !haveIP:
			return &HELOResult{Result: "pass", Reason: "an address literal; not compared: no client IP"}
		case lit.Unmap() == ip.Unmap():
			return &HELOResult{Result: "pass", Reason: fmt.Sprintf("the address literal is the client IP %s", ip)}
		}
		return &HELOResult{Result: "fail", Reason: fmt.Sprintf("the address literal %s is not the client IP %s", helo, ip)}
	}
	d, err := addr.ParseDomain(helo)
	if err != nil {
		return &HELOResult{Result: "invalid", Reason: fmt.Sprintf("%q is neither a domain name nor an address literal such as [%s]", helo, ip)}
	}
	if !strings.Contains(string(d), ".") {
		return &HELOResult{Result: "invalid", Reason: fmt.Sprintf("%s is not a fully qualified domain name", d)}
	}
	if !haveIP {
		return &HELOResult{Result: "pass", Reason: "a fully qualified name; not resolved: no client IP"}
	}
	ips, err := resolver.LookupIPFamily(ctx, r, string(d), ip.Is6())
	switch {
	case resolver.IsNotFound(err):
		return &HELOResult{Result: "fail", Reason: fmt.Sprintf("%s has no %s record", d, map[bool]string{false: "A", true: "AAAA"}[ip.Is6()])}
	case err != nil:
		return &HELOResult{Result: "temperror", Reason: err.Error()}
	}
	var got []string
	for _, a := range ips {
		if p, ok := netip.AddrFromSlice(a); ok && p.Unmap() == ip.Unmap() {
			return &HELOResult{Result: "pass", Reason: fmt.Sprintf("%s resolves to %s", d, ip)}
		}
		got = append(got, a.String())
	}
	return &HELOResult{Result: "fail", Reason: fmt.Sprintf("%s resolves to %s, not to %s", d, strings.Join(got, ", "), ip)}
}

// DomainExists reports whether d exists for DMARC purposes (RFC 9989 np=, RFC 9091 §2.1):
// it does not when its MX or address lookup says NXDOMAIN, or when it has none of MX, A and
// AAAA. A temporary failure is returned as err.
func DomainExists(ctx context.Context, r resolver.Resolver, d addr.Domain) (bool, string, error) {
	mx, err := r.LookupMX(ctx, string(d))
	if err != nil && !resolver.IsNotFound(err) {
		return true, "", err
	}
	if len(mx) > 0 {
		return true, fmt.Sprintf("%s has MX records", d), nil
	}
	ips, err2 := r.LookupIP(ctx, string(d))
	if err2 != nil && !resolver.IsNotFound(err2) {
		return true, "", err2
	}
	if len(ips) > 0 {
		return true, fmt.Sprintf("%s has address records", d), nil
	}
	if isNXDOMAIN(err) || isNXDOMAIN(err2) {
		return false, fmt.Sprintf("%s does not exist (NXDOMAIN)", d), nil
	}
	return false, fmt.Sprintf("%s has no MX, A or AAAA record", d), nil
}

func isNXDOMAIN(err error) bool { return errors.Is(err, resolver.ErrNXDOMAIN) }
