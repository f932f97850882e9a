package tlsrpt

import (
	"crypto/x509"
	"errors"
	"strings"
	"time"
)

// Policy types (RFC 8460 §4.4, "policy-type").
const (
	PolicySTS  = "sts"             // an MTA-STS policy (RFC 8461)
	PolicyTLSA = "tlsa"            // the MX host's DANE TLSA records (RFC 7672)
	PolicyNone = "no-policy-found" // neither
)

// Result types of failed sessions (RFC 8460 §4.3).
const (
	ResultSTARTTLSNotSupported    = "starttls-not-supported"
	ResultCertificateHostMismatch = "certificate-host-mismatch"
	ResultCertificateExpired      = "certificate-expired"
	ResultCertificateNotTrusted   = "certificate-not-trusted"
	ResultValidationFailure       = "validation-failure"
	ResultTLSAInvalid             = "tlsa-invalid"
	ResultDNSSECInvalid           = "dnssec-invalid"
	ResultDANERequired            = "dane-required"
	ResultSTSPolicyFetchError     = "sts-policy-fetch-error"
	ResultSTSPolicyInvalid        = "sts-policy-invalid"
	ResultSTSWebPKIInvalid        = "sts-webpki-invalid"
)

// Policy is the policy a session was held to (RFC 8460 §4.4).
type Policy struct {
	Type   string `json:"policy-type"`
	Domain string `json:"policy-domain"`
	// Strings is the policy: the MTA-STS policy's lines, or the TLSA records in presentation
	// form; none for PolicyNone.
	Strings []string `json:"policy-string,omitempty"`
	// MXHosts are the MX patterns of an MTA-STS policy.
	MXHosts []string `json:"mx-host,omitempty"`
}

func (p Policy) key() string {
	return p.Type + "\x00" + p.Domain + "\x00" + strings.Join(p.Strings, "\x01") + "\x00" + strings.Join(p.MXHosts, "\x01")
}

// Failure says why a session failed (RFC 8460 §4.4, "failure-details").
type Failure struct {
	ResultType          string `json:"result-type"`
	SendingMTAIP        string `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname string `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP         string `json:"receiving-ip,omitempty"`
	// AdditionalInfo is a short text (at most MaxAdditionalInfo bytes) saying more.
	AdditionalInfo string `json:"additional-information,omitempty"`
}

// MaxAdditionalInfo bounds Failure.AdditionalInfo, so that varied error texts cannot grow a
// day's file without bound.
const MaxAdditionalInfo = 200

func (f Failure) key() string {
	return f.ResultType + "\x00" + f.SendingMTAIP + "\x00" + f.ReceivingMXHostname + "\x00" + f.ReceivingIP + "\x00" + f.AdditionalInfo
}

// Session is the outcome of one TLS session, or of one attempt to set one up.
type Session struct {
	Time    time.Time // when; its UTC day is the report's
	Policy  Policy
	Failure *Failure // nil: the session succeeded
}

// CertificateResult is the result type for a certificate that failed PKIX validation (err as
// crypto/x509 reports it): host mismatch, expired, not trusted, or validation-failure.
func CertificateResult(err error) string {
	var host x509.HostnameError
	var inv x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	switch {
	case errors.As(err, &host):
		return ResultCertificateHostMismatch
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return ResultCertificateExpired
	case errors.As(err, &unknown):
		return ResultCertificateNotTrusted
	}
	return ResultValidationFailure
}
