package relay

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"

	"sealgate/internal/smtpclient"
	"sealgate/internal/tlsrpt"
)

// handshakeError marks a failed STARTTLS handshake, a TLS session that failed (RFC 8460
// counts it); other connection failures are no TLS session at all.
type handshakeError struct{ err error }

func (e handshakeError) Error() string { return e.err.Error() }
func (e handshakeError) Unwrap() error { return e.err }

// errDANEName marks a DANE-TA certificate issued to another name than the MX host's.
var errDANEName = errors.New("the certificate is not issued to the MX host name")

// tlsPolicy is the RFC 8460 policy d is held to: the MX host's TLSA records when DANE
// applies, else the domain's MTA-STS policy, else none.
func tlsPolicy(domain string, d destination) tlsrpt.Policy {
	p := tlsrpt.Policy{Type: tlsrpt.PolicyNone, Domain: domain}
	switch {
	case d.dane.requiresTLS():
		p.Type, p.Strings = tlsrpt.PolicyTLSA, d.dane.records
	case d.sts != nil && d.sts.Mode != STSModeNone:
		p.Type, p.MXHosts = tlsrpt.PolicySTS, d.sts.MX
		p.Strings = []string{"version: STSv1", "mode: " + d.sts.Mode}
		for _, mx := range d.sts.MX {
			p.Strings = append(p.Strings, "mx: "+mx)
		}
		p.Strings = append(p.Strings, fmt.Sprintf("max_age: %d", int64(d.sts.MaxAge.Seconds())))
	}
	return p
}

// reportTLS counts a new session with MX host d for TLS reporting: c is the session (nil when
// connecting failed with err), err what refused it (nil: it may carry mail). Sessions with
// smart hosts and address literals, and connections that failed before TLS, are not counted.
func (t *Transport) reportTLS(domain string, d destination, c *smtpclient.Client, err error) {
	if t.TLSRPT == nil || d.dane == nil {
		return
	}
	var he handshakeError
	if c == nil && !errors.As(err, &he) {
		return
	}
	s := tlsrpt.Session{Policy: tlsPolicy(domain, d)}
	f := &tlsrpt.Failure{ReceivingMXHostname: d.host}
	if d.ip != nil {
		f.ReceivingIP = d.ip.String()
	}
	var info smtpclient.TLSInfo
	hasTLS := false
	if c != nil {
		if ip, _, e := net.SplitHostPort(c.LocalAddr().String()); e == nil {
			f.SendingMTAIP = ip
		}
		info, hasTLS = c.TLS()
	}
	switch {
	case c == nil:
		f.ResultType, f.AdditionalInfo = tlsrpt.ResultValidationFailure, "TLS handshake failed: "+he.err.Error()
	case !hasTLS:
		f.ResultType = tlsrpt.ResultSTARTTLSNotSupported
	case s.Policy.Type == tlsrpt.PolicyTLSA && err == nil:
		f = nil // DANE verified, or TLS with only unusable records (RFC 7672 §2.2)
	case s.Policy.Type == tlsrpt.PolicyTLSA && errors.Is(err, errDANEName):
		f.ResultType, f.AdditionalInfo = tlsrpt.ResultCertificateHostMismatch, err.Error()
	case s.Policy.Type == tlsrpt.PolicyTLSA:
		f.ResultType, f.AdditionalInfo = tlsrpt.ResultValidationFailure, err.Error()
	case info.Verified:
		f = nil
	case s.Policy.Type == tlsrpt.PolicySTS || err != nil:
		// An MTA-STS policy needs a verified certificate (in testing mode too, where
		// the mail still goes); without a policy only a refusal of ours is a failure.
		f.ResultType = tlsrpt.CertificateResult(info.VerifyError)
		if info.VerifyError != nil {
			f.AdditionalInfo = info.VerifyError.Error()
		}
	default:
		f = nil // opportunistic TLS without a policy: TLS was all it needed
	}
	s.Failure = f
	t.TLSRPT.Record(s)
}

// reportTLSALookup counts a failed TLSA lookup of an MX host (RFC 8460 §4.3 dnssec-invalid):
// no session was tried.
func (t *Transport) reportTLSALookup(domain, host string, err error) {
	if t.TLSRPT == nil {
		return
	}
	t.TLSRPT.Record(tlsrpt.Session{
		Policy: tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, Domain: domain},
		Failure: &tlsrpt.Failure{ResultType: tlsrpt.ResultDNSSECInvalid, ReceivingMXHostname: host,
			AdditionalInfo: err.Error()},
	})
}

// tlsaStrings is the presentation form of TLSA records, for a report's policy-string.
func tlsaStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if _, ok := rr.(*dns.TLSA); ok {
			out = append(out, strings.Join(strings.Fields(rr.String()), " "))
		}
	}
	return out
}
