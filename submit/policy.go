package submit

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"

	"sealgate/internal/addr"
)

// HeaderLookup gives the header fields of a message. Values returns every
// instance of the named field, matched case-insensitively, in message order, with
// the raw value (after the colon) of each; folding may be left in, it is removed
// here. net/textproto.MIMEHeader satisfies it.
type HeaderLookup interface {
	Values(name string) []string
}

// The replies of the sender policy, one constructor per rule. Envelope refusals
// use 553 (RFC 5321 §4.2.2 "mailbox name not allowed"), refusals after DATA use
// 550; both carry 5.7.1 "delivery not authorized" (RFC 3463, RFC 6409 §8).
//
// An unparsable originator field also gets 5.7.1 rather than a 5.6.x content
// code: the message is refused because nobody can tell whose address it carries,
// which is an authorization decision; one status class for every sender-policy
// refusal also keeps client handling and monitoring simple.

func policyError(r Reason, code int, format string, a ...any) *Refusal {
	return refusal(r, code, smtp.EnhancedCode{code / 100, 7, 1}, fmt.Sprintf(format, a...))
}

func errUnauthenticated() *Refusal {
	// RFC 4954 §6: 530 5.7.0 Authentication required.
	return refusal(ReasonAuthRequired, 530, smtp.EnhancedCode{5, 7, 0}, "authentication required")
}

func errEnvelopeSyntax(from string, err error) *Refusal {
	// RFC 3463 X.1.7: bad sender's mailbox address syntax.
	return refusal(ReasonSenderSyntax, 553, smtp.EnhancedCode{5, 1, 7},
		fmt.Sprintf("MAIL FROM <%s> is not a valid address: %s", from, reason(err)))
}

func errNullSender(id *Identity) *Refusal {
	return policyError(ReasonNullSender, 553, "MAIL FROM <> (null sender) is not permitted for %s (allowed: %s)", id, id.AllowedString())
}

func errAddressLiteral(code int, what string, a addr.Address, id *Identity) *Refusal {
	return policyError(ReasonAddressLiteral, code, "%s <%s> uses an address literal, which is never permitted; %s may use: %s", what, a, id, id.AllowedString())
}

func errNotPermitted(code int, what string, a addr.Address, id *Identity) *Refusal {
	return policyError(ReasonSenderNotPermitted, code, "%s <%s> is not permitted for %s (allowed: %s)", what, a, id, id.AllowedString())
}

func errLookalike(code int, what string, le *addr.LookalikeError, id *Identity) *Refusal {
	return policyError(ReasonLookalikeDomain, code, "%s domain %q looks like %s but is not it (%s); a look-alike is not permitted for %s (allowed: %s)",
		what, le.Domain, le.LooksLike.Unicode(), le.Why(), id, id.AllowedString())
}

func errNoFrom() *Refusal {
	return policyError(ReasonNoFrom, 550, "message has no From header field")
}

func errFieldCount(field string, n int, allowed string) *Refusal {
	return policyError(ReasonHeaderFieldCount, 550, "message has %d %s header fields; %s is allowed", n, field, allowed)
}

func errUnparsable(field string, err error) *Refusal {
	return policyError(ReasonUnparsableHeader, 550, "%s header field cannot be parsed: %s", field, reason(err))
}

func errEmptyGroup(field, group string, id *Identity) *Refusal {
	return policyError(ReasonEmptyGroup, 550, "%s header field has group %q without a mailbox; %s must name a permitted address (allowed: %s)", field, group, id, id.AllowedString())
}

func errNotOneMailbox(field string, n int) *Refusal {
	return policyError(ReasonNotOneMailbox, 550, "%s header field has %d mailboxes; exactly one is allowed", field, n)
}

func errSenderRequired(n int, id *Identity) *Refusal {
	return policyError(ReasonSenderFieldRequired, 550, "From header field has %d mailboxes; a Sender header field with an address permitted for %s is required (allowed: %s)", n, id, id.AllowedString())
}

func errDisplayName(field, name string, id *Identity) *Refusal {
	return policyError(ReasonDisplayNameAddress, 550, "%s display name %q looks like an address not permitted for %s (allowed: %s)", field, name, id, id.AllowedString())
}

func errTooManyRecipients(id *Identity) *Refusal {
	// RFC 5321 §4.5.3.1.10 and go-smtp's own limit use 452 4.5.3.
	return refusal(ReasonTooManyRecipients, 452, smtp.EnhancedCode{4, 5, 3},
		fmt.Sprintf("too many recipients: %s may use at most %d per message", id, id.MaxRecipients))
}

func reason(err error) string {
	return strings.TrimPrefix(err.Error(), "addr: ")
}

// CheckEnvelopeSender checks a MAIL FROM value as go-smtp passes it to
// Session.Mail ("" for <>) (RFC 6409 §4.3): it parses
// it with addr.ParsePath and calls CheckEnvelopePath. A nil identity gets 530
// 5.7.0.
func CheckEnvelopeSender(id *Identity, from string) *Refusal {
	if id == nil {
		return errUnauthenticated()
	}
	p, err := addr.ParsePath(from)
	if err != nil {
		return errEnvelopeSyntax(from, err)
	}
	return CheckEnvelopePath(id, p)
}

// CheckEnvelopePath checks a parsed MAIL FROM reverse-path (RFC 6409 §4.3).
// It returns nil when the identity may use it. The null
// sender needs AllowNullSender; address literals are refused; every other
// address must match MaySendAs. A nil identity gets 530 5.7.0.
//
// Callers must store and send on p.String(), the address that was checked.
func CheckEnvelopePath(id *Identity, p addr.Path) *Refusal {
	if id == nil {
		return errUnauthenticated()
	}
	if p.Null {
		if id.AllowNullSender {
			return nil
		}
		return errNullSender(id)
	}
	if p.Addr.AddressLiteral != "" {
		return errAddressLiteral(553, "MAIL FROM", p.Addr, id)
	}
	if id.Forwarder != nil && id.Forwarder.SRS {
		// The sender is rewritten into the forwarder's own domain (forwarder.go), and that
		// address is checked against MaySendAs there.
		return nil
	}
	if !id.Permits(p.Addr) {
		return errNotPermitted(553, "MAIL FROM", p.Addr, id)
	}
	return nil
}

// CheckHeaderSenders checks the originator fields of a message after DATA
// (RFC 5322 §3.6.2, §3.6.6). It returns nil when the identity may send the
// message:
//
//   - exactly one From field (RFC 5322 §3.6), every mailbox in it parseable and
//     permitted; a group without a mailbox is refused (RFC 6854 allows it only
//     where no reply is expected, and it names nobody we could check);
//   - at most one Sender field, holding exactly one mailbox (RFC 5322 §3.6.2),
//     permitted; several From mailboxes require a Sender;
//   - every Resent-From and Resent-Sender mailbox permitted (RFC 5322 §3.6.6);
//   - no display name of those mailboxes may look like an address the identity
//     may not use.
//
// Because every one of these mailboxes must be permitted, the Purported
// Responsible Address (RFC 4407 §2) is permitted too whenever the checks pass.
// A nil identity gets 530 5.7.0.
func CheckHeaderSenders(id *Identity, hdr HeaderLookup) *Refusal {
	if id == nil {
		return errUnauthenticated()
	}
	froms := hdr.Values("From")
	switch {
	case len(froms) == 0:
		return errNoFrom()
	case len(froms) > 1:
		return errFieldCount("From", len(froms), "exactly one")
	}
	from, e := checkField(id, "From", froms[0])
	if e != nil {
		return e
	}

	senders := hdr.Values("Sender")
	if len(senders) > 1 {
		return errFieldCount("Sender", len(senders), "at most one")
	}
	if len(senders) == 1 {
		s, e := checkField(id, "Sender", senders[0])
		if e != nil {
			return e
		}
		if len(s) != 1 {
			return errNotOneMailbox("Sender", len(s))
		}
	} else if len(from) > 1 {
		// RFC 5322 §3.6.2: with more than one From mailbox the Sender field
		// MUST appear. Letting a Sender vouch for a From is NOT enough on its
		// own (maddy's gap): each From mailbox was already checked above.
		return errSenderRequired(len(from), id)
	}

	for _, field := range []string{"Resent-From", "Resent-Sender"} {
		for _, v := range hdr.Values(field) {
			ms, e := checkField(id, field, v)
			if e != nil {
				return e
			}
			if field == "Resent-Sender" && len(ms) != 1 {
				return errNotOneMailbox(field, len(ms)) // RFC 5322 §3.6.6
			}
		}
	}
	return nil
}

// checkField parses one originator field and checks each of its mailboxes.
func checkField(id *Identity, field, value string) ([]addr.Mailbox, *Refusal) {
	ms, err := addr.ParseHeaderMailboxes(value)
	if err != nil {
		var ge *addr.EmptyGroupError
		if errors.As(err, &ge) {
			return nil, errEmptyGroup(field, ge.Group, id)
		}
		var le *addr.LookalikeError
		if errors.As(err, &le) {
			return nil, errLookalike(550, field, le, id)
		}
		return nil, errUnparsable(field, err)
	}
	for _, m := range ms {
		if m.Addr.AddressLiteral != "" {
			return nil, errAddressLiteral(550, field, m.Addr, id)
		}
		if !id.Permits(m.Addr) {
			return nil, errNotPermitted(550, field, m.Addr, id)
		}
		// Display names are not compared with the address (rule 4), but one
		// that shows a reader an address the identity may not use is
		// impersonation. The whole address is checked, not just its domain.
		// A group's display name (RFC 6854) is shown like a mailbox's.
		for _, name := range []string{m.Name, m.Group} {
			for _, a := range addr.AddressesInDisplayName(name) {
				if !id.Permits(a) {
					return nil, errDisplayName(field, name, id)
				}
			}
		}
	}
	return ms, nil
}

// CheckRecipientCount is called with the number of recipients a message would
// have after accepting one more RCPT TO. It returns 452 4.5.3 when that exceeds
// the identity's MaxRecipients (0 = no per-identity cap).
func CheckRecipientCount(id *Identity, n int) *Refusal {
	if id != nil && id.MaxRecipients > 0 && n > id.MaxRecipients {
		return errTooManyRecipients(id)
	}
	return nil
}
