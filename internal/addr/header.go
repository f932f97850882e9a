package addr

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"unicode"

	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/unicode/norm"
)

// Mailbox is one mailbox from an address header field (RFC 5322 §3.4).
type Mailbox struct {
	// Name is the display name with RFC 2047 encoded-words decoded; "" if none.
	Name string
	// Addr is the mailbox address.
	Addr Address
	// Group is the display name of the RFC 6854 / RFC 5322 §3.4 group the
	// mailbox was listed in, "" if it was not in a group.
	Group string
}

// EmptyGroupError reports a group with no mailbox ("undisclosed-recipients:;").
// In an originator field it names nobody, so sealgate refuses it.
type EmptyGroupError struct {
	// Group is the group's display name as written.
	Group string
}

func (e *EmptyGroupError) Error() string {
	return fmt.Sprintf("addr: group %q has no mailbox", e.Group)
}

// SyntaxError reports a header field value that is not a valid mailbox or group list.
type SyntaxError struct {
	Err error
}

func (e *SyntaxError) Error() string { return "addr: " + strings.TrimPrefix(e.Err.Error(), "mail: ") }
func (e *SyntaxError) Unwrap() error { return e.Err }

// wordDecoder decodes RFC 2047 encoded-words. mime.WordDecoder handles UTF-8,
// US-ASCII and ISO-8859-1 itself and asks charsetReader for every other charset.
var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

// charsetReader decodes an encoded-word's text from charset, looked up among the
// labels of the WHATWG Encoding Standard (golang.org/x/text/encoding/htmlindex):
// windows-1252, iso-8859-15, koi8-r, shift_jis, iso-2022-jp, gb2312, big5,
// euc-kr... Those labels and their mappings are what browser-engine mail readers
// (Thunderbird) use, so the decoded display name, which the sender policy
// searches for addresses, is what a reader is shown. The Standard's supersets
// (gb2312 read as GBK, tis-620 as windows-874) only add characters, so they hide
// nothing a stricter reader would show.
//
// A charset it does not know, and the Standard's "replacement" encoding (labels
// such as iso-2022-kr and hz-gb-2312, which the Standard decodes to a single
// U+FFFD although other readers still decode them) and x-user-defined (not a
// mail charset), are errors: the display name, and so the field, is then
// unparsable, because we would not know what a reader is shown.
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	// RFC 2231 §5: an encoded-word's charset may carry a language, "utf-8*en".
	label, _, _ := strings.Cut(charset, "*")
	enc, err := htmlindex.Get(label)
	if name, _ := htmlindex.Name(enc); err != nil || name == "replacement" || name == "x-user-defined" {
		return nil, fmt.Errorf("unsupported charset %q in encoded-word", charset)
	}
	// Bytes that are invalid in the charset decode to U+FFFD.
	return enc.NewDecoder().Reader(input), nil
}

var headerParser = &mail.AddressParser{WordDecoder: wordDecoder}

// ParseHeaderMailboxes parses the value of an address header field (From, Sender,
// Resent-From, Resent-Sender, ...): a comma-separated list of mailboxes and groups
// (RFC 5322 §3.4, RFC 6854). Folding (CRLF before white space) is removed first
// (RFC 5322 §2.2.3). Mailboxes listed inside a group are returned with Group set.
//
// It returns a *SyntaxError if the value does not parse, and an *EmptyGroupError
// for a group without mailboxes (net/mail would silently drop it, so groups are
// found here by scanning for ':' outside quoted strings, comments, angle brackets
// and domain literals).
func ParseHeaderMailboxes(value string) ([]Mailbox, error) {
	value = strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(value)
	items, err := splitAddressList(value)
	if err != nil {
		return nil, &SyntaxError{Err: err}
	}
	var out []Mailbox
	for _, it := range items {
		if !it.group {
			a, err := headerParser.Parse(it.text)
			if err != nil {
				return nil, &SyntaxError{Err: err}
			}
			m, err := toMailbox(a, "")
			if err != nil {
				return nil, err
			}
			out = append(out, m)
			continue
		}
		// DecodeHeader leaves text that only looks like an encoded-word (bad
		// base64, unknown encoding letter) as it is; it fails only on a charset
		// that charsetReader refuses.
		name, err := wordDecoder.DecodeHeader(strings.TrimSpace(it.name))
		if err != nil {
			return nil, &SyntaxError{Err: fmt.Errorf("group name: %w", err)}
		}
		if onlyCFWS(it.text) {
			return nil, &EmptyGroupError{Group: name}
		}
		list, err := headerParser.ParseList(it.text)
		if err != nil {
			return nil, &SyntaxError{Err: err}
		}
		if len(list) == 0 {
			return nil, &EmptyGroupError{Group: name}
		}
		for _, a := range list {
			m, err := toMailbox(a, name)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, &SyntaxError{Err: errors.New("no mailbox")}
	}
	return out, nil
}

func toMailbox(a *mail.Address, group string) (Mailbox, error) {
	// net/mail returns local part (unquoted) "@" domain; the domain never contains
	// '@' except inside a domain literal, which contains no '['.
	s := a.Address
	var at int
	if strings.HasSuffix(s, "]") {
		at = strings.LastIndex(s, "@[")
	} else {
		at = strings.LastIndexByte(s, '@')
	}
	if at < 0 {
		return Mailbox{}, &SyntaxError{Err: fmt.Errorf("no @ in %q", s)}
	}
	// net/mail has decoded the encoded-words of a phrase, but leaves those inside
	// a quoted string, which readers decode anyway (AddressesInDisplayName looks
	// at both forms): one in a charset we cannot decode is refused like one in a
	// phrase.
	if _, err := wordDecoder.DecodeHeader(a.Name); err != nil {
		return Mailbox{}, &SyntaxError{Err: fmt.Errorf("display name: %w", err)}
	}
	m := Mailbox{Name: a.Name, Group: group}
	var err error
	if m.Addr.Quoted, err = checkLocal(s[:at]); err != nil {
		return Mailbox{}, &SyntaxError{Err: fmt.Errorf("%s: %w", s, err)}
	}
	m.Addr.Local = s[:at]
	if err := parseDomainPart(&m.Addr, s[at+1:]); err != nil {
		return Mailbox{}, &SyntaxError{Err: fmt.Errorf("%s: %w", s, err)}
	}
	return m, nil
}

// onlyCFWS reports whether s holds nothing but white space and comments.
func onlyCFWS(s string) bool {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && depth > 0:
			i++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0 && c != ' ' && c != '\t':
			return false
		}
	}
	return true
}

type listItem struct {
	group bool
	name  string // group display name (raw)
	text  string // the mailbox, or the group's member list
}

// splitAddressList splits an address-list at top-level commas and finds groups
// (display-name ":" [group-list] ";"), ignoring specials inside quoted strings,
// comments (which nest, RFC 5322 §3.2.2), angle brackets and domain literals.
func splitAddressList(s string) ([]listItem, error) {
	var (
		items      []listItem
		start      int
		inGroup    bool
		groupName  string
		groupStart int
		afterGroup bool // a group just closed; only CFWS may follow before ','
		comment    int
		quoted     bool
		angle      bool
		literal    bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted:
			if c == '\\' {
				i++
			} else if c == '"' {
				quoted = false
			}
			continue
		case comment > 0:
			if c == '\\' {
				i++
			} else if c == '(' {
				comment++
			} else if c == ')' {
				comment--
			}
			continue
		case literal:
			if c == '\\' {
				i++
			} else if c == ']' {
				literal = false
			}
			continue
		}
		if c == '(' {
			comment++
			continue
		}
		if afterGroup && c != ' ' && c != '\t' && c != ',' {
			return nil, fmt.Errorf("unexpected %q after group", c)
		}
		switch c {
		case '"':
			quoted = true
		case '[':
			literal = true
		case '<':
			if angle {
				return nil, errors.New("nested '<'")
			}
			angle = true
		case '>':
			if !angle {
				return nil, errors.New("unbalanced '>'")
			}
			angle = false
		case ':':
			if angle {
				continue // obs-route inside an angle-addr
			}
			if inGroup {
				return nil, errors.New("group inside a group")
			}
			inGroup, groupName, groupStart = true, s[start:i], i+1
		case ';':
			if angle {
				continue
			}
			if !inGroup {
				return nil, errors.New("';' outside a group")
			}
			items = append(items, listItem{group: true, name: groupName, text: s[groupStart:i]})
			inGroup, afterGroup = false, true
		case ',':
			if angle || inGroup {
				continue
			}
			if !afterGroup {
				if strings.Trim(s[start:i], " \t") == "" {
					return nil, errors.New("empty list element")
				}
				items = append(items, listItem{text: s[start:i]})
			}
			afterGroup, start = false, i+1
		}
	}
	switch {
	case quoted:
		return nil, errors.New("unterminated quoted string")
	case comment > 0:
		return nil, errors.New("unterminated comment")
	case literal:
		return nil, errors.New("unterminated domain literal")
	case angle:
		return nil, errors.New("unterminated '<'")
	case inGroup:
		return nil, errors.New("group without closing ';'")
	}
	if !afterGroup {
		if strings.Trim(s[start:], " \t") == "" {
			if len(items) == 0 {
				return nil, errors.New("no mailbox")
			}
			return nil, errors.New("empty list element")
		}
		items = append(items, listItem{text: s[start:]})
	}
	return items, nil
}

// DisplayNameLooksLikeAddress reports whether the display name contains text that
// a reader would take for an address, such as `"ceo@bank.example" <x@client.example>`,
// and returns the first such address. See AddressesInDisplayName.
func (m Mailbox) DisplayNameLooksLikeAddress() (Address, bool) {
	as := AddressesInDisplayName(m.Name)
	if len(as) == 0 {
		return Address{}, false
	}
	return as[0], true
}

// AddressesInDisplayName returns every address-like "local@domain.tld" in a
// display name: what a reader could take for the sender's address. The domain
// must be a valid domain name (IDN allowed) with at least two labels.
//
// The name is examined as written and, if it still holds RFC 2047 encoded-words
// (inside a quoted string net/mail leaves them), as decoded. Each form is first
// brought to what a reader sees (see displayForms): characters that render as
// nothing are removed (default-ignorable code points such as zero-width
// characters, bidirectional controls, and the Hangul fillers U+115F, U+1160,
// U+3164, U+FFA0), compatibility forms are folded (NFKC: the fullwidth '＠'
// U+FF20 and small '﹫' U+FE6B count as '@', fullwidth and ideographic full
// stops as '.'), and spaces around '@' and '.' are dropped ("ceo @ evil.example").
// When the name holds bidirectional controls, which make a reader show
// characters in another order ("\u202eelpmaxe.live@oec" is shown as
// ceo@evil.example), the text is also examined reversed: whole, and with each
// right-to-left run reversed in place.
func AddressesInDisplayName(name string) []Address {
	if name == "" {
		return nil
	}
	forms := []string{name}
	if dec, err := wordDecoder.DecodeHeader(name); err == nil && dec != name {
		forms = append(forms, dec)
	}
	var out []Address
	for _, f := range forms {
		for _, v := range displayForms(f) {
			out = append(out, findAddresses(v)...)
		}
	}
	return out
}

// displayForms returns the texts a reader may be shown for s: s cleaned (see
// AddressesInDisplayName) and, if s holds bidirectional controls, that text
// reversed and with each right-to-left run reversed.
func displayForms(s string) []string {
	forms := []string{showable(s)}
	if strings.ContainsFunc(s, isBidiControl) {
		forms = append(forms, showable(reverseRunes(s)), showable(reverseRTLRuns(s)))
	}
	return forms
}

// showable removes what renders as nothing, folds compatibility forms and drops
// spaces around '@' and '.'.
func showable(s string) string {
	s = strings.Map(dropInvisible, s)
	s = norm.NFKC.String(s)
	s = strings.Map(dropInvisible, s) // NFKC may expose more
	s = strings.NewReplacer("\u3002", ".", "\uff61", ".").Replace(s)
	return collapseSpaces(s)
}

// dropInvisible maps a character that renders as nothing to -1 (removed):
// default-ignorable code points (Unicode's Default_Ignorable_Code_Point is
// Other_Default_Ignorable_Code_Point, which holds the Hangul fillers, plus the
// format characters (Cf, with every bidirectional control, zero-width character,
// soft hyphen and tag) and the variation selectors), and the braille blank
// U+2800, which renders as a space without being one.
func dropInvisible(r rune) rune {
	if unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector) || r == '\u2800' {
		return -1
	}
	return r
}

// isBidiControl reports the characters that change the order in which text is
// shown (Unicode Bidi_Control: embeddings, overrides, isolates and marks).
func isBidiControl(r rune) bool { return unicode.Is(unicode.Bidi_Control, r) }

// collapseSpaces drops white space next to '@' or '.'.
func collapseSpaces(s string) string {
	if !strings.ContainsFunc(s, unicode.IsSpace) {
		return s
	}
	rs := []rune(s)
	out := make([]rune, 0, len(rs))
	for i := 0; i < len(rs); i++ {
		if !unicode.IsSpace(rs[i]) {
			out = append(out, rs[i])
			continue
		}
		j := i
		for j < len(rs) && unicode.IsSpace(rs[j]) {
			j++
		}
		prevSep := len(out) > 0 && (out[len(out)-1] == '@' || out[len(out)-1] == '.')
		nextSep := j < len(rs) && (rs[j] == '@' || rs[j] == '.')
		if !prevSep && !nextSep {
			out = append(out, ' ')
		}
		i = j - 1
	}
	return string(out)
}

func reverseRunes(s string) string {
	rs := []rune(s)
	for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
		rs[i], rs[j] = rs[j], rs[i]
	}
	return string(rs)
}

// reverseRTLRuns reverses in place each run that a right-to-left override,
// embedding or isolate starts (U+202E, U+202B, U+2067, U+200F), up to the
// control that ends it (U+202C, U+2069) or the end of the text.
func reverseRTLRuns(s string) string {
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		switch rs[i] {
		case '\u202e', '\u202b', '\u2067', '\u200f':
			j := i + 1
			for j < len(rs) && rs[j] != '\u202c' && rs[j] != '\u2069' {
				j++
			}
			for a, b := i+1, j-1; a < b; a, b = a+1, b-1 {
				rs[a], rs[b] = rs[b], rs[a]
			}
			i = j
		}
	}
	return string(rs)
}

func findAddresses(s string) []Address {
	var out []Address
	rs := []rune(s)
	for i, r := range rs {
		if r != '@' {
			continue
		}
		j := i
		for j > 0 && isNameLocalRune(rs[j-1]) {
			j--
		}
		k := i + 1
		for k < len(rs) && (unicode.IsLetter(rs[k]) || unicode.IsDigit(rs[k]) || unicode.Is(unicode.Mn, rs[k]) || rs[k] == '-' || rs[k] == '.') {
			k++
		}
		local := string(rs[j:i])
		dom := strings.TrimRight(string(rs[i+1:k]), ".-")
		if local == "" || !strings.Contains(dom, ".") {
			continue
		}
		d, err := ParseDomain(dom)
		if err != nil {
			continue
		}
		out = append(out, Address{Local: local, Domain: d, Quoted: !isDotString(local)})
	}
	return out
}

func isNameLocalRune(r rune) bool {
	if unicode.IsSpace(r) || unicode.IsControl(r) {
		return false
	}
	return !strings.ContainsRune(`<>()[]",;:@`, r)
}
