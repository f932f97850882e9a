package arc

import (
	"encoding/base64"
	"strings"

	"sealgate/internal/dkimcore"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// ResultsFor returns the resinfo entries of every Authentication-Results field of hdr whose
// authserv-id is authservID (case-insensitive, trailing dot ignored), in header order:
// what RFC 8617 §4.1.1 says the AAR copies. "none" entries are dropped.
func ResultsFor(hdr dkimcore.Header, authservID string) []string {
	var out []string
	for _, v := range hdr.Values("Authentication-Results") {
		parts := splitResinfo(v)
		if len(parts) == 0 || !SameAuthServID(authservIDOf(parts[0]), authservID) {
			continue
		}
		for _, p := range parts[1:] {
			if p != "" && !strings.EqualFold(p, "none") {
				out = append(out, p)
			}
		}
	}
	return out
}

// AuthServIDOf returns the authserv-id of an Authentication-Results value.
func AuthServIDOf(value string) string {
	parts := splitResinfo(value)
	if len(parts) == 0 {
		return ""
	}
	return authservIDOf(parts[0])
}

func authservIDOf(first string) string {
	id, _, _ := strings.Cut(strings.TrimSpace(first), " ") // a version may follow (RFC 8601 §2.2)
	return id
}

// SameAuthServID compares authserv-ids case-insensitively, ignoring a trailing dot
// (standards §4.3).
func SameAuthServID(a, b string) bool {
	return a != "" && strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// splitResinfo splits an A-R value at the semicolons that are not inside a quoted string or
// a comment, trimming each part and removing comments at its ends.
func splitResinfo(v string) []string {
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
			parts = append(parts, strings.Join(strings.Fields(cur.String()), " "))
			cur.Reset()
			continue
		}
		cur.WriteByte(c)
	}
	parts = append(parts, strings.Join(strings.Fields(cur.String()), " "))
	return parts
}

// StripAuthResults returns hdr without the Authentication-Results fields that carry one of
// our authserv-ids: at the entry to our trust boundary they can only be forgeries (RFC 8601
// §5, standards §4.3). ARC-Authentication-Results are never touched.
func StripAuthResults(hdr dkimcore.Header, ours ...string) (dkimcore.Header, int) {
	out := hdr[:0:0]
	removed := 0
	for _, f := range hdr {
		if f.Is("Authentication-Results") {
			id := AuthServIDOf(strings.TrimSpace(f.Value()))
			drop := false
			for _, o := range ours {
				if SameAuthServID(id, o) {
					drop = true
				}
			}
			if drop {
				removed++
				continue
			}
		}
		out = append(out, f)
	}
	return out, removed
}
