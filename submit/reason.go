package submit

import (
	"github.com/emersion/go-smtp"
)

// Reason is the stable code of a refusal or deferral: one short name per rule, in the log
// line (reason=) and in the sealgate_refused_total metric's label, so that an admin can grep
// and graph why mail was refused. The reply text a client sees may change wording; a Reason
// does not. docs/reason-codes.md lists every code with its reply; AllReasons lists them for
// code.
type Reason string

// The reason codes. Refusals (5xx) and deferrals (4xx) alike.
const (
	// Sender policy (policy.go).
	ReasonAuthRequired        Reason = "auth_required"
	ReasonSenderSyntax        Reason = "sender_syntax"
	ReasonNullSender          Reason = "null_sender_not_permitted"
	ReasonAddressLiteral      Reason = "address_literal"
	ReasonSenderNotPermitted  Reason = "sender_not_permitted"
	ReasonNoFrom              Reason = "no_from"
	ReasonHeaderFieldCount    Reason = "header_field_count"
	ReasonUnparsableHeader    Reason = "unparsable_header"
	ReasonEmptyGroup          Reason = "empty_group"
	ReasonNotOneMailbox       Reason = "not_one_mailbox"
	ReasonSenderFieldRequired Reason = "sender_field_required"
	ReasonDisplayNameAddress  Reason = "display_name_address"
	ReasonTooManyRecipients   Reason = "too_many_recipients"
	ReasonLookalikeDomain     Reason = "lookalike_domain"

	// Session (session.go, sasl_login.go).
	ReasonAuthUnavailable      Reason = "auth_unavailable"
	ReasonEncryptionRequired   Reason = "encryption_required"
	ReasonAuthFailed           Reason = "auth_failed"
	ReasonAuthzidNotPermitted  Reason = "authzid_not_permitted"
	ReasonSASLSequence         Reason = "sasl_sequence"
	ReasonUnknownClient        Reason = "unknown_client"
	ReasonRelayDenied          Reason = "relay_denied"
	ReasonAddressSyntax        Reason = "address_syntax"
	ReasonNonASCIIAddress      Reason = "non_ascii_address"
	ReasonNonASCIIHeader       Reason = "non_ascii_header"
	ReasonNullRecipient        Reason = "null_recipient"
	ReasonRecipientLiteral     Reason = "recipient_address_literal"
	ReasonBadSequence          Reason = "bad_sequence"
	ReasonBareLF               Reason = "bare_lf"
	ReasonSmuggling            Reason = "smuggling"
	ReasonTooManyHeaderFields  Reason = "too_many_header_fields"
	ReasonMalformedMessage     Reason = "malformed_message"
	ReasonMessageTooLarge      Reason = "message_too_large"
	ReasonPreAuthTimeout       Reason = "pre_auth_timeout"
	ReasonIdleTimeout          Reason = "idle_timeout"
	ReasonShuttingDown         Reason = "shutting_down"
	ReasonTooManyConnections   Reason = "too_many_connections"
	ReasonTooManyConnectionsIP Reason = "too_many_connections_ip"
	ReasonAuthThrottled        Reason = "auth_throttled"
	ReasonAuthBusy             Reason = "auth_busy"
	ReasonRateLimited          Reason = "rate_limited"
	ReasonFromDomainUnparsable Reason = "from_domain_unparsable"
	ReasonNoDKIMKeys           Reason = "no_dkim_keys"
	ReasonSigningFailed        Reason = "signing_failed"
	ReasonSealingFailed        Reason = "sealing_failed"
	ReasonSpoolFailed          Reason = "spool_failed"

	// Load balancers and draining (proxy.go, Server.Drain).
	ReasonProxyUntrusted     Reason = "proxy_untrusted"
	ReasonProxyHeaderMissing Reason = "proxy_header_missing"
	ReasonProxyHeaderInvalid Reason = "proxy_header_invalid"
	ReasonProxyLocal         Reason = "proxy_local"
	ReasonDraining           Reason = "draining"

	// DMARC report intake (reportintake.go).
	ReasonReportRefused Reason = "report_refused"
)

// AllReasons lists every reason code, in the order of docs/reason-codes.md.
var AllReasons = []Reason{
	ReasonAuthRequired, ReasonSenderSyntax, ReasonNullSender, ReasonAddressLiteral,
	ReasonSenderNotPermitted, ReasonNoFrom, ReasonHeaderFieldCount, ReasonUnparsableHeader,
	ReasonEmptyGroup, ReasonNotOneMailbox, ReasonSenderFieldRequired, ReasonDisplayNameAddress,
	ReasonTooManyRecipients, ReasonLookalikeDomain,
	ReasonAuthUnavailable, ReasonEncryptionRequired, ReasonAuthFailed, ReasonAuthzidNotPermitted,
	ReasonSASLSequence, ReasonUnknownClient, ReasonRelayDenied, ReasonAddressSyntax,
	ReasonNonASCIIAddress, ReasonNonASCIIHeader, ReasonNullRecipient, ReasonRecipientLiteral, ReasonBadSequence,
	ReasonBareLF, ReasonSmuggling, ReasonTooManyHeaderFields, ReasonMalformedMessage,
	ReasonMessageTooLarge, ReasonPreAuthTimeout, ReasonIdleTimeout, ReasonShuttingDown,
	ReasonTooManyConnections, ReasonTooManyConnectionsIP, ReasonAuthThrottled, ReasonAuthBusy,
	ReasonRateLimited, ReasonFromDomainUnparsable, ReasonNoDKIMKeys, ReasonSigningFailed,
	ReasonSealingFailed, ReasonSpoolFailed,
	ReasonProxyUntrusted, ReasonProxyHeaderMissing, ReasonProxyHeaderInvalid, ReasonProxyLocal,
	ReasonDraining,
	ReasonReportRefused,
}

// Refusal is a reply that refuses (5xx) or defers (4xx) a command or message, with its Reason.
// It is made by the constructors of each rule; what goes to go-smtp, which recognises only an
// *smtp.SMTPError, is its SMTPError (see session.refuse).
type Refusal struct {
	*smtp.SMTPError
	Reason Reason
}

// Unwrap gives the reply, for errors.As.
func (r *Refusal) Unwrap() error { return r.SMTPError }

func refusal(reason Reason, code int, enh smtp.EnhancedCode, msg string) *Refusal {
	return &Refusal{SMTPError: &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}, Reason: reason}
}
