package authres

import (
	"strings"
)

// maxCommentDepth bounds comment nesting, so hostile input cannot make the parser track an
// unbounded depth (RFC 5322 §3.2.2 sets no limit; real fields nest one level at most).
const maxCommentDepth = 50

// Parse parses the value of an Authentication-Results field (everything after the colon,
// folding allowed) following the grammar of RFC 8601 §2.2: the authserv-id, an optional
// version, then "none" or one or more resinfos, with comments (nested, with quoted pairs)
// and quoted strings anywhere CFWS may appear. Method, result and ptype names are returned
// lower-case; values unquoted. "none" gives no results and no error. A trailing ';' is
// tolerated. Errors are *ParseError values.
func Parse(value string) (authservID string, results []Result, err error) {
	p := &parser{s: value}
	if err := p.skipCFWS(); err != nil {
		return "", nil, err
	}
	if authservID, err = p.value(";"); err != nil {
		return "", nil, err
	}
	if authservID == "" {
		return "", nil, p.errorf("no authserv-id")
	}
	if err := p.skipCFWS(); err != nil {
		return "", nil, err
	}
	// authres-version = 1*DIGIT [CFWS]
	if p.more() && isDigit(p.peek()) {
		v := p.run(isDigit)
		if v == "" || (p.more() && !p.at(';') && !isWSP(p.peek()) && !p.at('(')) {
			return "", nil, p.errorf("malformed authres-version")
		}
		if err := p.skipCFWS(); err != nil {
			return "", nil, err
		}
	}
	none := false
	for {
		if err := p.skipCFWS(); err != nil {
			return "", nil, err
		}
		if !p.more() {
			break
		}
		if !p.at(';') {
			return "", nil, p.errorf("expected ';'")
		}
		p.i++
		if err := p.skipCFWS(); err != nil {
			return "", nil, err
		}
		if !p.more() {
			break // a trailing ';'
		}
		if none {
			return "", nil, p.errorf("results after \"none\"")
		}
		r, isNone, err := p.resinfo(len(results) == 0)
		if err != nil {
			return "", nil, err
		}
		if isNone {
			none = true
			continue
		}
		results = append(results, r)
	}
	// An authserv-id alone should have said "; none" (RFC 8601 §2.2); it is read as no
	// results, which is what it says.
	return authservID, results, nil
}

// resinfo parses methodspec [reasonspec] [propspecs] after the ';'. first says whether
// "none" is allowed here.
func (p *parser) resinfo(first bool) (Result, bool, error) {
	var r Result
	start := p.i
	method := p.run(isKeywordChar)
	if method == "" {
		return r, false, p.errorf("expected a method name")
	}
	if err := p.skipCFWS(); err != nil {
		return r, false, err
	}
	if strings.EqualFold(method, "none") && !p.at('=') && !p.at('/') {
		if !first {
			return r, false, &ParseError{Offset: start, Msg: "\"none\" after results"}
		}
		return r, true, nil
	}
	r.Method = strings.ToLower(method)
	if p.at('/') {
		p.i++
		if err := p.skipCFWS(); err != nil {
			return r, false, err
		}
		if r.MethodVersion = p.run(isDigit); r.MethodVersion == "" {
			return r, false, p.errorf("expected a method version")
		}
		if err := p.skipCFWS(); err != nil {
			return r, false, err
		}
	}
	if !p.at('=') {
		return r, false, p.errorf("expected '=' after method " + quoteForError(r.Method))
	}
	p.i++
	if err := p.skipCFWS(); err != nil {
		return r, false, err
	}
	if r.Value = strings.ToLower(p.run(isKeywordChar)); r.Value == "" {
		return r, false, p.errorf("expected a result for method " + quoteForError(r.Method))
	}
	for {
		if err := p.skipCFWS(); err != nil {
			return r, false, err
		}
		if !p.more() || p.at(';') {
			return r, false, nil
		}
		nameStart := p.i
		name := p.run(func(c byte) bool { return isKeywordChar(c) || c == '.' })
		if name == "" {
			return r, false, p.errorf("expected a property")
		}
		if err := p.skipCFWS(); err != nil {
			return r, false, err
		}
		if !p.at('=') {
			return r, false, p.errorf("expected '=' after " + quoteForError(name))
		}
		p.i++
		if err := p.skipCFWS(); err != nil {
			return r, false, err
		}
		if strings.EqualFold(name, "reason") {
			if r.Reason != "" || len(r.Props) > 0 {
				return r, false, &ParseError{Offset: nameStart, Msg: "reason must come once, before the properties"}
			}
			v, err := p.value(";")
			if err != nil {
				return r, false, err
			}
			r.Reason = v
			continue
		}
		typ, prop, ok := strings.Cut(name, ".")
		if !ok || !isKeyword(typ) || prop == "" || strings.Contains(prop, ".") {
			return r, false, &ParseError{Offset: nameStart, Msg: "property " + quoteForError(name) + " is not ptype.property"}
		}
		v, err := p.pvalue()
		if err != nil {
			return r, false, err
		}
		r.Props = append(r.Props, Prop{Type: strings.ToLower(typ), Property: prop, Value: v})
	}
}

// parser walks a field value.
type parser struct {
	s string
	i int
}

func (p *parser) more() bool     { return p.i < len(p.s) }
func (p *parser) peek() byte     { return p.s[p.i] }
func (p *parser) at(c byte) bool { return p.i < len(p.s) && p.s[p.i] == c }

func (p *parser) errorf(msg string) error { return &ParseError{Offset: p.i, Msg: msg} }

// run consumes and returns the longest run of bytes for which ok holds.
func (p *parser) run(ok func(byte) bool) string {
	start := p.i
	for p.i < len(p.s) && ok(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// skipCFWS skips white space, line folding and comments (RFC 5322 §3.2.2).
func (p *parser) skipCFWS() error {
	for p.i < len(p.s) {
		switch c := p.s[p.i]; {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			p.i++
		case c == '(':
			if err := p.comment(); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return nil
}

// comment skips a comment, nested comments and quoted pairs included.
func (p *parser) comment() error {
	start := p.i
	depth := 0
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch c {
		case '\\':
			if p.i < len(p.s) {
				p.i++
			}
		case '(':
			if depth++; depth > maxCommentDepth {
				return &ParseError{Offset: p.i - 1, Msg: "comments nested too deeply"}
			}
		case ')':
			if depth--; depth == 0 {
				return nil
			}
		}
	}
	return &ParseError{Offset: start, Msg: "unterminated comment"}
}

// quoted reads a quoted-string at p.i and returns its content with quoted pairs resolved
// and folding removed.
func (p *parser) quoted() (string, error) {
	start := p.i
	p.i++ // the opening quote
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if p.i < len(p.s) {
				b.WriteByte(p.s[p.i])
				p.i++
			}
		case '\r', '\n':
			// folding inside a quoted string: the CRLF goes, the white space after it stays
		default:
			b.WriteByte(c)
		}
	}
	return "", &ParseError{Offset: start, Msg: "unterminated quoted string"}
}

// value reads a value (RFC 2045 token or quoted-string); stop lists further bytes that end
// an unquoted value.
func (p *parser) value(stop string) (string, error) {
	if p.at('"') {
		return p.quoted()
	}
	v := p.run(func(c byte) bool {
		return c > ' ' && c != 0x7f && c != '(' && c != '"' && strings.IndexByte(stop, c) < 0
	})
	if v == "" && p.more() {
		return "", p.errorf("expected a value")
	}
	return v, nil
}

// pvalue reads a property value: a quoted-string, or an unquoted run that may hold an
// address ("local@domain", "@domain"), a token or a domain name (RFC 8601 §2.2).
func (p *parser) pvalue() (string, error) {
	if p.at('"') {
		v, err := p.quoted()
		if err != nil {
			return "", err
		}
		if p.at('@') { // a quoted local-part: "a b"@example.com
			p.i++
			return `"` + v + `"@` + p.run(isDomainChar), nil
		}
		return v, nil
	}
	return p.value(";")
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isWSP(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// isKeywordChar reports whether c may appear in a Keyword (ldh-str, RFC 8601 §2.2); '_' is
// accepted too, as some implementations write it in property names.
func isKeywordChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func isKeyword(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isKeywordChar(s[i]) {
			return false
		}
	}
	return true
}

func isDomainChar(c byte) bool { return isKeywordChar(c) || c == '.' }

func quoteForError(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return `"` + s + `"`
}
