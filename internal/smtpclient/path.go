package smtpclient

import (
	"fmt"
	"strconv"
	"strings"

	"sealgate/internal/addr"
)

// ForwardPath returns the RCPT TO argument for mailbox: "<" Mailbox ">" (RFC
// 5321 §4.1.2), written as Mailbox writes it. It is the one way an address gets
// into a command, so a refused address never reaches the wire.
func ForwardPath(mailbox string) (string, error) {
	m, err := Mailbox(mailbox)
	if err != nil {
		return "", err
	}
	return "<" + m + ">", nil
}

// ReversePath returns the MAIL FROM argument: "<>" for "" (the null
// reverse-path, RFC 5321 §4.5.5), else as ForwardPath.
func ReversePath(mailbox string) (string, error) {
	if mailbox == "" {
		return "<>", nil
	}
	return ForwardPath(mailbox)
}

// Mailbox checks that s is an RFC 5321 §4.1.2 Mailbox (a Dot-string or
// Quoted-string local part, "@", a domain or an address literal, within the
// lengths of §4.5.3.1) and returns its canonical form: the local part quoted
// exactly when it must be (`"a b"@example.test` stays quoted, `"bob"@x` is
// bob@x, the same mailbox) and the domain as a lower-case A-label. What is not a
// Mailbox (a CR or LF, an unbalanced quote, an unquoted special such as the
// second "@" of ceo@evil.example@example.test) is a *UnsendableError: sending it
// on would make the next hop read another address than the one we accepted.
func Mailbox(s string) (string, error) {
	a, err := addr.ParseAddress(s)
	if err != nil {
		return "", &UnsendableError{Err: fmt.Errorf("envelope address cannot be sent faithfully: %w", err)}
	}
	return a.String(), nil
}

// Param is an ESMTP parameter of MAIL or RCPT (RFC 5321 §4.1.2: esmtp-keyword
// ["=" esmtp-value]).
type Param struct {
	Keyword string
	// Value is "" for a keyword alone. It must already be encoded as its
	// extension says (XText for most): it is checked, never changed.
	Value string
}

// formatParams checks params against RFC 5321 §4.1.2 and writes them.
func formatParams(params []Param) ([]string, error) {
	var out []string
	for _, p := range params {
		if !validKeyword(p.Keyword) {
			return nil, &UnsendableError{Err: fmt.Errorf("invalid ESMTP parameter keyword %q (RFC 5321 §4.1.2: letters, digits, '-')", p.Keyword)}
		}
		if p.Value == "" {
			out = append(out, p.Keyword)
			continue
		}
		for i := 0; i < len(p.Value); i++ {
			if c := p.Value[i]; c < '!' || c > '~' || c == '=' {
				return nil, &UnsendableError{Err: fmt.Errorf("ESMTP parameter %s: value %q has a byte outside esmtp-value (RFC 5321 §4.1.2); encode it first", p.Keyword, p.Value)}
			}
		}
		out = append(out, p.Keyword+"="+p.Value)
	}
	return out, nil
}

func validKeyword(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '-') {
			return false
		}
	}
	return true
}

// UTF8AddrXText encodes an address as RFC 6533 §3 utf-8-addr-xtext, the form of
// an ORCPT of type utf-8: QCHAR (printable ASCII but '+', '=' and backslash) as it
// is, every other character as EmbeddedUnicodeChar `\x{HEX}` of its code point.
func UTF8AddrXText(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '!' && r <= '~' && r != '+' && r != '=' && r != '\\' {
			b.WriteRune(r)
			continue
		}
		b.WriteString(`\x{` + strings.ToUpper(strconv.FormatInt(int64(r), 16)) + "}")
	}
	return b.String()
}

// XText encodes s as RFC 3461 §4 xtext: "+", "=" and every byte outside '!'..'~'
// as "+" and two upper-case hex digits.
func XText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			b.WriteString("+" + strings.ToUpper(strconv.FormatUint(uint64(c)|0x100, 16)[1:]))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
