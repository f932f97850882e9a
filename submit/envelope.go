package submit

// The envelope addresses and SMTPUTF8 (RFC 6531): what a MAIL FROM or RCPT TO value
// may be, and whether a transaction needs SMTPUTF8 on its way on.

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"

	"sealgate/internal/addr"
	"sealgate/internal/dkimcore"
)

// envelopePath parses a MAIL FROM (verb "MAIL") or RCPT TO ("RCPT") value that
// go-smtp passed on, and refuses what could not be relayed as the client wrote it:
//
//   - a non-ASCII address in a transaction whose MAIL had no SMTPUTF8 parameter
//     (RFC 6531 §3.4: without it the client must not send one; RFC 6531 §3.5:
//     553 5.6.7);
//   - for MAIL, a sender domain that only looks like a valid one
//     (addr.LookalikeError: fullwidth, invisible characters, a trailing dot):
//     553 5.7.1 like every sender the identity may not use;
//   - a local part that is not a Dot-string and was not quoted, such as
//     <a@b@c.example> (RFC 5321 §4.1.2): go-smtp passes it on as it passes
//     <"a@b"@c.example>, so the argument as written (smtpedge.WireScanner) decides;
//   - without the argument as written, a local part that is not a Dot-string:
//     the client is asked to send the command again.
//
// The address returned is what is checked, stored (Path.String, quoting where the
// local part needs it) and sent on.
func (se *session) envelopePath(verb, value string) (addr.Path, *Refusal) {
	what, enh, code := "MAIL FROM", smtp.EnhancedCode{5, 1, 7}, 553
	if verb == "RCPT" {
		what, enh, code = "RCPT TO", smtp.EnhancedCode{5, 1, 3}, 501
	}
	if !addr.IsASCII(value) && !se.utf8 {
		return addr.Path{}, errNonASCIIAddress(what, value)
	}
	lookalike := func(err error) (*Refusal, bool) {
		var le *addr.LookalikeError
		if verb != "MAIL" || !errors.As(err, &le) {
			return nil, false
		}
		return errLookalike(553, what, le, se.identity), true
	}
	if written, ok := se.cc.takePath(verb, value); ok {
		if written == "" {
			return addr.Path{Null: true}, nil
		}
		a, err := addr.ParseAddress(written)
		if r, ok := lookalike(err); ok {
			return addr.Path{}, r
		}
		if err != nil {
			why := reason(err)
			if !strings.HasPrefix(written, `"`) && strings.Count(written, "@") > 1 {
				why = `the local part holds "@" but is not quoted; a local part that is not a dot-string must be a quoted string (RFC 5321 §4.1.2), as in "` +
					strings.ReplaceAll(written[:strings.LastIndexByte(written, '@')], `"`, `\"`) + `"` + written[strings.LastIndexByte(written, '@'):]
			}
			return addr.Path{}, refusal(ReasonAddressSyntax, 553, enh,
				fmt.Sprintf("%s <%s> cannot be relayed as written: %s", what, written, why))
		}
		return addr.Path{Addr: a}, nil
	}
	p, err := addr.ParsePath(value)
	if r, ok := lookalike(err); ok {
		return addr.Path{}, r
	}
	if err != nil {
		return addr.Path{}, refusal(ReasonAddressSyntax, code, enh,
			fmt.Sprintf("%s <%s> is not a valid address: %s", what, value, reason(err)))
	}
	if !p.Null && (p.Addr.Quoted || p.Route != "") {
		// The argument as written was not captured, and go-smtp's value has lost
		// any quoting: a local part that is not a Dot-string may have been quoted
		// or not, and a leading "@...:" (go-smtp removes source routes) is text of
		// a quoted local part. Only a Dot-string local part means the same either
		// way (RFC 5321 §4.1.2); anything else is refused rather than guessed.
		return addr.Path{}, refusal(ReasonAddressSyntax, code, enh,
			fmt.Sprintf("%s <%s> could not be read as written, and its local part is not a dot-string, so whether it was quoted decides what it means (RFC 5321 §4.1.2); send the command again", what, value))
	}
	return p, nil
}

func errNonASCIIAddress(what, value string) *Refusal {
	return refusal(ReasonNonASCIIAddress, 553, smtp.EnhancedCode{5, 6, 7},
		fmt.Sprintf("%s %q contains non-ASCII characters, which need SMTPUTF8 (RFC 6531 §3.4): give the SMTPUTF8 parameter on MAIL FROM", what, value))
}

// errNonASCIIHeader refuses a header with UTF-8 in a transaction without SMTPUTF8
// (RFC 6532 §3: UTF-8 header fields are for SMTPUTF8 transactions only).
var errNonASCIIHeader = refusal(ReasonNonASCIIHeader, 550, smtp.EnhancedCode{5, 6, 7},
	"Message header contains non-ASCII characters, which need SMTPUTF8 (RFC 6532): give the SMTPUTF8 parameter on MAIL FROM, or encode them (RFC 2047)")

func headerASCII(h dkimcore.Header) bool {
	for _, f := range h {
		if !addr.IsASCII(string(f)) {
			return false
		}
	}
	return true
}

// needsUTF8 reports whether an envelope, as stored (domains as A-labels), still
// holds UTF-8: a UTF-8 local part, which only SMTPUTF8 can carry (RFC 6531 §3.2).
func needsUTF8(from string, to []string) bool {
	if !addr.IsASCII(from) {
		return true
	}
	for _, t := range to {
		if !addr.IsASCII(t) {
			return true
		}
	}
	return false
}
