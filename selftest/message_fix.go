package selftest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"sealgate/internal/resolver"
)

// Finding is one check of a readiness test (Message, Domain): its result, why, and what to
// change when it is not ready.
type Finding struct {
	// Check names what was checked: spf, dkim, dmarc, iprev, helo, dnsbl...
	Check string `json:"check"`
	// Status is pass, warn (works, but worth changing), fail (mail is at risk) or unknown
	// (the check could not be made: its DNS timed out).
	Status string `json:"status"`
	// Result is the check's own result (pass, softfail, missing...).
	Result string `json:"result,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Fix says what to publish or change; Record is the zone-file line to publish, if any.
	Fix    string `json:"fix,omitempty"`
	Record string `json:"record,omitempty"`
}

// Finding statuses.
const (
	StatusPass = "pass"
	StatusWarn = "warn"
	StatusFail = "fail"
	// StatusUnknown is a check that could not be made, neither passed nor failed: SPF
	// whose DNS timed out (verify.SPFResult.TimedOut).
	StatusUnknown = "unknown"
)

// isTimeout reports whether a lookup failed because no answer came in time.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// spfTimedOutVerdict is the verdict when SPF could not be checked: its DNS timed out, so
// whether a strict receiver accepts the mail is not known.
const spfTimedOutVerdict = "could not check SPF (DNS timed out)"

// spfRecordOf returns the SPF record of domain (RFC 7208 §4.5), "" when it has none, or an
// error when the lookup failed.
func spfRecordOf(ctx context.Context, r resolver.Resolver, domain string) (string, error) {
	txts, err := r.LookupTXT(ctx, domain)
	if resolver.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	for _, t := range txts {
		if strings.EqualFold(t, "v=spf1") || len(t) > 7 && strings.EqualFold(t[:7], "v=spf1 ") {
			return t, nil
		}
	}
	return "", nil
}

// ipMechanism is the SPF mechanism that authorises exactly ip.
func ipMechanism(ip netip.Addr) string {
	if ip.Unmap().Is4() {
		return "ip4:" + ip.Unmap().String()
	}
	return "ip6:" + ip.String()
}

// spfFix says how to let ip send for domain: the record to publish, with ip added before
// the record's last term (the all mechanism or redirect=), or a new record.
func spfFix(ctx context.Context, r resolver.Resolver, domain string, ip netip.Addr) (fix, record string) {
	mech := ipMechanism(ip)
	cur, err := spfRecordOf(ctx, r, domain)
	switch {
	case err != nil:
		return fmt.Sprintf("add %s to the SPF record of %s (its record could not be read: %v)", mech, domain, err), ""
	case cur == "":
		rec := "v=spf1 " + mech + " -all"
		return fmt.Sprintf("publish an SPF record for %s that allows %s", domain, ip), zoneTXT(domain, rec)
	}
	return fmt.Sprintf("add %s to the SPF record of %s", mech, domain), zoneTXT(domain, insertSPF(cur, mech))
}

// zoneTXT is a zone-file TXT line for name, split into strings of at most 255 octets.
func zoneTXT(name, text string) string {
	var parts []string
	for len(text) > 255 {
		parts = append(parts, text[:255])
		text = text[255:]
	}
	parts = append(parts, text)
	for i, p := range parts {
		parts[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(p) + `"`
	}
	return strings.TrimSuffix(name, ".") + ". IN TXT " + strings.Join(parts, " ")
}

// reverseName is the PTR name of ip (RFC 1035 §3.5, RFC 3596 §2.5).
func reverseName(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa", b[3], b[2], b[1], b[0])
	}
	b := ip.As16()
	var s strings.Builder
	for i := len(b) - 1; i >= 0; i-- {
		fmt.Fprintf(&s, "%x.%x.", b[i]&0xf, b[i]>>4)
	}
	return s.String() + "ip6.arpa"
}

// addressRecord is the A or AAAA line for name.
func addressRecord(name string, ip netip.Addr) string {
	t := "A"
	if !ip.Unmap().Is4() {
		t = "AAAA"
	}
	return fmt.Sprintf("%s. IN %s %s", strings.TrimSuffix(name, "."), t, ip.Unmap())
}

// dmarcStarter is the DMARC record to publish first: monitoring, with aggregate reports.
func dmarcStarter(domain string) string {
	return zoneTXT("_dmarc."+domain, "v=DMARC1; p=none; rua=mailto:dmarc-reports@"+domain)
}
