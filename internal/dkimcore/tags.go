package dkimcore

import (
	"strings"
)

// Tag is one name=value pair of a tag list (RFC 6376 §3.2).
type Tag struct {
	Name, Value string
}

// Tags is a parsed tag list in the order the tags appeared.
type Tags []Tag

// Get returns the value of tag name and whether it was present. Tag names are case-sensitive.
func (t Tags) Get(name string) (string, bool) {
	for _, tag := range t {
		if tag.Name == name {
			return tag.Value, true
		}
	}
	return "", false
}

// ParseTags parses a DKIM tag list: tag=value pairs separated by ';', with folding white space
// allowed around names, '=' and values. White space inside a value is kept, unfolded to single
// spaces; callers strip it where the tag's syntax says so (b=, bh=, p=). A repeated tag, a tag
// without '=', an invalid tag name or an empty tag-spec is an error (RFC 6376 §3.2):
//
//	tag-list = tag-spec *( ";" tag-spec ) [ ";" ]
//
// so one ';' may end the list ("a=b;"), but an empty element between two ';' ("a=b;;c=d",
// "a=b;;") or before the first ("; a=b") is not a tag-spec. dkimpy refuses these the same way.
func ParseTags(s string) (Tags, error) {
	var tags Tags
	var seen map[string]bool // for long lists, so that checking for repeats stays linear
	rest := s
	for {
		part, after, more := strings.Cut(rest, ";")
		rest = after
		part = trimFWS(part)
		if part == "" {
			if !more && len(tags) > 0 {
				break // what follows the ';' that ends the list
			}
			if !more && trimFWS(s) == "" {
				break // an empty list
			}
			if len(tags) == 0 {
				return nil, permErr("malformed tag list: empty tag-spec before the first tag (RFC 6376 §3.2)")
			}
			return nil, permErr("malformed tag list: empty tag-spec after %s= (\";;\"; RFC 6376 §3.2)", tags[len(tags)-1].Name)
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return nil, permErr("malformed tag list: %q has no '='", shorten(part))
		}
		name = trimFWS(name)
		if !validTagName(name) {
			return nil, permErr("malformed tag list: invalid tag name %q", shorten(name))
		}
		if len(tags) == 16 {
			seen = make(map[string]bool, 32)
			for _, t := range tags {
				seen[t.Name] = true
			}
		}
		repeated := false
		if seen != nil {
			repeated = seen[name]
			seen[name] = true
		} else {
			for _, t := range tags {
				repeated = repeated || t.Name == name
			}
		}
		if repeated {
			return nil, permErr("malformed tag list: tag %q repeated", name)
		}
		tags = append(tags, Tag{Name: name, Value: unfold(trimFWS(value))})
		if !more {
			break
		}
	}
	return tags, nil
}

// validTagName reports whether s is ALPHA *ALNUMPUNC (RFC 6376 §3.2).
func validTagName(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '_' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

func isFWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func trimFWS(s string) string {
	i, j := 0, len(s)
	for i < j && isFWS(s[i]) {
		i++
	}
	for j > i && isFWS(s[j-1]) {
		j--
	}
	return s[i:j]
}

// unfold removes CRLF and collapses runs of white space to one space.
func unfold(s string) string {
	if !strings.ContainsAny(s, "\r\n\t") && !strings.Contains(s, "  ") {
		return s
	}
	var b strings.Builder
	space := false
	for i := 0; i < len(s); i++ {
		if isFWS(s[i]) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteByte(s[i])
	}
	return b.String()
}

// StripFWS removes all white space, as base64 tag values (b=, bh=, p=) require.
func StripFWS(s string) string {
	if !strings.ContainsAny(s, " \t\r\n") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if !isFWS(s[i]) {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
