// Package authres reads and writes the Authentication-Results header field (RFC 8601): it
// parses a field value into its authserv-id and results (comments and quoted strings
// included, which a naive split at ';' gets wrong), formats results into a folded field
// (RFC 5322 §2.2.3), quotes property values, and removes fields that forge our own
// authserv-id at the entry to our trust boundary (RFC 8601 §5).
//
// ARC-Authentication-Results (RFC 8617 §4.1.1) carries the same payload behind an "i=N;"
// instance tag; FormatField formats it too, and package arc copies results with ResultsFor.
//
// This package does not evaluate authentication methods or decide whom to trust: it only
// reads and writes the field.
package authres

import (
	"fmt"
	"strings"

	"sealgate/internal/dkimcore"
)

// FieldName is the name of the Authentication-Results header field.
const FieldName = "Authentication-Results"

// Result is one resinfo of an Authentication-Results field (RFC 8601 §2.2): the method, its
// result, an optional reason and the properties, such as
// dkim=pass header.d=example.com header.s=sel.
type Result struct {
	Method        string // lower-case method name, such as "dkim", "spf", "auth", "arc"
	MethodVersion string // the digits after "/" in "dkim/1", or ""
	Value         string // lower-case result, such as "pass", "fail", "none"
	Reason        string // the reason= value, unquoted, or ""
	Props         []Prop
}

// Prop is one property of a result: ptype.property=pvalue (RFC 8601 §2.3).
type Prop struct {
	Type     string // lower-case ptype: "smtp", "header", "body", "policy"
	Property string // as written, such as "mailfrom", "d", "auth"
	Value    string // unquoted; comments removed
}

// String formats the result as a resinfo (without the leading ';'), quoting the reason and
// the property values where RFC 8601 §2.2 requires it.
func (r Result) String() string {
	var b strings.Builder
	b.WriteString(r.Method)
	if r.MethodVersion != "" {
		b.WriteString("/" + r.MethodVersion)
	}
	b.WriteString("=" + r.Value)
	if r.Reason != "" {
		b.WriteString(" reason=" + quoteReason(r.Reason))
	}
	for _, p := range r.Props {
		b.WriteString(" " + p.Type + "." + p.Property + "=" + QuoteValue(p.Value))
	}
	return b.String()
}

// Get returns the value of property typ.property (ptype case-insensitive, property
// case-insensitive) and whether it is present.
func (r Result) Get(typ, property string) (string, bool) {
	for _, p := range r.Props {
		if strings.EqualFold(p.Type, typ) && strings.EqualFold(p.Property, property) {
			return p.Value, true
		}
	}
	return "", false
}

// QuoteValue returns v as a pvalue (RFC 8601 §2.2): unchanged when it is a MIME token
// (RFC 2045 §5.1) or an address local-part@domain (or @domain) of dot-atoms, and a
// quoted-string otherwise. Control characters, which no header field may carry, are replaced
// by '?'.
func QuoteValue(v string) string {
	if isToken(v) || isAddressValue(v) {
		return v
	}
	return quoteString(v)
}

// quoteReason quotes a reason= value or an authserv-id, which are values (token or
// quoted-string) with no address form.
func quoteReason(v string) string {
	if isToken(v) {
		return v
	}
	return quoteString(v)
}

func quoteString(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range v {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 && r != '\t' || r == 0x7f:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// isToken reports whether s is an RFC 2045 token: printable US-ASCII except space and
// tspecials.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// isAddressValue reports whether s is [local-part] "@" domain-name with a dot-atom local
// part and an LDH domain, the unquoted address form of a pvalue (RFC 8601 §2.2).
func isAddressValue(s string) bool {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return false
	}
	local, domain := s[:at], s[at+1:]
	if local != "" && !isDotAtom(local, isAtext) {
		return false
	}
	return domain != "" && isDotAtom(domain, func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	})
}

func isDotAtom(s string, ok func(byte) bool) bool {
	for part := range strings.SplitSeq(s, ".") {
		if part == "" {
			return false
		}
		for i := 0; i < len(part); i++ {
			if !ok(part[i]) {
				return false
			}
		}
	}
	return true
}

// isAtext reports whether c is atext (RFC 5322 §3.2.3).
func isAtext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// SameAuthServID compares authserv-ids case-insensitively, ignoring a trailing dot: both
// are normally host names (RFC 8601 §2.5).
func SameAuthServID(a, b string) bool {
	return a != "" && strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// AuthServIDOf returns the authserv-id of an Authentication-Results value: the first value
// after any comments, unquoted; "" when there is none. It reads no further, so a field whose
// results are malformed still has its authserv-id recognised (and a forgery stripped).
func AuthServIDOf(value string) string {
	p := &parser{s: value}
	if p.skipCFWS() != nil {
		return ""
	}
	id, err := p.value(";")
	if err != nil {
		return ""
	}
	return id
}

// Strip returns hdr without the Authentication-Results fields whose authserv-id is one of
// ours, and how many it removed: at the entry to our trust boundary they can only be
// forgeries (RFC 8601 §5). hdr itself is not modified. ARC-Authentication-Results fields are
// never touched: they are signed by their sealers.
func Strip(hdr dkimcore.Header, ours ...string) (dkimcore.Header, int) {
	out := make(dkimcore.Header, 0, len(hdr))
	removed := 0
	for _, f := range hdr {
		if f.Is(FieldName) && isOurs(AuthServIDOf(f.Value()), ours) {
			removed++
			continue
		}
		out = append(out, f)
	}
	return out, removed
}

func isOurs(id string, ours []string) bool {
	for _, o := range ours {
		if SameAuthServID(id, o) {
			return true
		}
	}
	return false
}

// ResultsFor returns the resinfo entries of every Authentication-Results field of hdr whose
// authserv-id is authservID, in header order and as written (comments kept, white space
// collapsed): what RFC 8617 §4.1.1 says the ARC-Authentication-Results copies. "none"
// entries are dropped.
func ResultsFor(hdr dkimcore.Header, authservID string) []string {
	var out []string
	for _, v := range hdr.Values(FieldName) {
		if !SameAuthServID(AuthServIDOf(v), authservID) {
			continue
		}
		parts := SplitResinfo(v)
		for _, p := range parts[1:] {
			if p != "" && !strings.EqualFold(p, "none") {
				out = append(out, p)
			}
		}
	}
	return out
}

// SplitResinfo splits a field value at the semicolons outside quoted strings and comments,
// collapsing white space in each part. The first part holds the authserv-id (and version);
// the others are resinfos as written.
func SplitResinfo(v string) []string {
	var parts []string
	var cur strings.Builder
	depth, quoted, escaped := 0, false, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\' && (quoted || depth > 0):
			escaped = true
		case quoted:
			if c == '"' {
				quoted = false
			}
		case c == '"' && depth == 0:
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == ';' && depth == 0:
			parts = append(parts, collapseFWS(cur.String()))
			cur.Reset()
			continue
		}
		cur.WriteByte(c)
	}
	return append(parts, collapseFWS(cur.String()))
}

// FormatField returns the field "name: head; r1; r2" ending in CRLF, with each resinfo
// starting a new folded line and a resinfo longer than a line folded at its white space
// (outside quoted strings and comments), so that lines stay within 78 columns wherever a
// resinfo has white space to fold at (RFC 5322 §2.2.3). With no results the field says
// "none" (RFC 8601 §2.2). head is the authserv-id, or for ARC-Authentication-Results
// "i=N; authserv-id".
func FormatField(name, head string, resinfos []string) dkimcore.Field {
	var b strings.Builder
	b.WriteString(name + ": " + head)
	if len(resinfos) == 0 {
		b.WriteString("; none\r\n")
		return dkimcore.Field(b.String())
	}
	for i, r := range resinfos {
		b.WriteString(";\r\n ")
		writeFolded(&b, collapseFWS(r), i < len(resinfos)-1)
	}
	b.WriteString("\r\n")
	return dkimcore.Field(b.String())
}

// maxLine is the line length RFC 5322 §2.2.3 asks folding to keep to, CRLF excluded.
const maxLine = 78

// writeFolded writes s on a line that starts with one space (the fold before it), moving a
// space outside quoted strings and comments to a new line (CRLF SP) wherever the line would
// otherwise pass maxLine columns; semicolon reserves room for the ';' that follows s. A piece
// longer than a line is written whole: a field may exceed 78 columns where it has no white
// space to fold at.
func writeFolded(b *strings.Builder, s string, semicolon bool) {
	col := 1
	first := true
	for len(s) > 0 {
		next := foldPoint(s)
		piece := s[:next]
		s = strings.TrimPrefix(s[next:], " ")
		need := len(piece)
		if s == "" && semicolon {
			need++
		}
		switch {
		case first:
		case col+1+need > maxLine:
			b.WriteString("\r\n ")
			col = 1
		default:
			b.WriteByte(' ')
			col++
		}
		first = false
		b.WriteString(piece)
		col += len(piece)
	}
}

// collapseFWS unfolds s and collapses each run of white space outside quoted strings to one
// space, trimming both ends; quoted strings keep their spaces (RFC 5322 §3.2.4).
func collapseFWS(s string) string {
	var b strings.Builder
	quoted, escaped, space := false, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !quoted && (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		}
		if quoted && (c == '\r' || c == '\n') {
			continue // folding inside a quoted string is removed, its white space kept
		}
		b.WriteByte(c)
	}
	return b.String()
}

// foldPoint returns the index of the first space of s outside quoted strings and comments,
// or len(s).
func foldPoint(s string) int {
	depth, quoted, escaped := 0, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\' && (quoted || depth > 0):
			escaped = true
		case quoted:
			quoted = c != '"'
		case c == '"' && depth == 0:
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == ' ' && depth == 0:
			return i
		}
	}
	return len(s)
}

// ParseError says where an Authentication-Results value stopped making sense.
type ParseError struct {
	Offset int
	Msg    string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("authres: %s at offset %d", e.Msg, e.Offset)
}
