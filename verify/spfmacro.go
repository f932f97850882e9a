package verify

import (
	"context"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"sealgate/internal/resolver"
)

// The p macro, which the library does not look up: it always expands it to "unknown". The
// adapter expands it in the records it hands over, so that a record using it is evaluated
// as RFC 7208 §7.3 says (RFC 7208 test p-macro-multiple). The macro SHOULD NOT be used
// (RFC 7208 §5.5); where it is, this costs one PTR lookup and at most 10 address lookups
// per evaluation, made once.

// expandP replaces the p macros of the terms of rec (not of exp=, which the library does not
// use) with the validated domain name of the client for domain.
func (s *spfResolver) expandP(ctx context.Context, rec, domain string) string {
	if !strings.Contains(rec, "%{p") && !strings.Contains(rec, "%{P") {
		return rec
	}
	terms := strings.Split(rec, " ")
	for i, t := range terms {
		if len(t) > 4 && strings.EqualFold(t[:4], "exp=") {
			continue
		}
		terms[i] = s.expandPTerm(ctx, t, domain)
	}
	return strings.Join(terms, " ")
}

// expandPTerm expands the p macros of one term, leaving every other macro (and the
// escapes %%, %_ and %-) for the library. The record passed CheckSPFSyntax, so each macro is
// well-formed.
func (s *spfResolver) expandPTerm(ctx context.Context, t, domain string) string {
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		if t[i] != '%' || i+1 == len(t) {
			b.WriteByte(t[i])
			continue
		}
		if t[i+1] != '{' {
			b.WriteString(t[i : i+2])
			i++
			continue
		}
		end := strings.IndexByte(t[i:], '}')
		if end < 0 {
			b.WriteString(t[i:]) // unterminated: the library's permerror
			break
		}
		body := t[i+2 : i+end]
		if body == "" || body[0] != 'p' && body[0] != 'P' {
			b.WriteString(t[i : i+end+1])
			i += end
			continue
		}
		b.WriteString(transformMacro(s.validatedName(ctx, domain), body))
		i += end
	}
	return b.String()
}

// transformMacro applies the transformers of a macro body (letter, digits, "r", delimiters;
// RFC 7208 §7.3) to value: split at the delimiters ("." by default), reversed with "r", the
// right-hand digits parts kept, joined with "."; an upper-case letter URL-encodes the result.
func transformMacro(value, body string) string {
	upper := body[0] >= 'A' && body[0] <= 'Z'
	j := 1
	for j < len(body) && body[j] >= '0' && body[j] <= '9' {
		j++
	}
	digits, _ := strconv.Atoi(body[1:j])
	reverse := j < len(body) && (body[j] == 'r' || body[j] == 'R')
	if reverse {
		j++
	}
	delims := body[j:]
	if delims == "" {
		delims = "."
	}
	parts := strings.FieldsFunc(value, func(r rune) bool { return strings.ContainsRune(delims, r) })
	if reverse {
		slices.Reverse(parts)
	}
	if digits > 0 && digits < len(parts) {
		parts = parts[len(parts)-digits:]
	}
	out := strings.Join(parts, ".")
	if upper {
		out = url.QueryEscape(out)
	}
	return out
}

// validatedName is the p macro's value for domain (RFC 7208 §7.3): of the client's PTR names
// (at most 10, RFC 7208 §4.6.4) that resolve back to it, domain itself, else a subdomain of
// domain, else any; "unknown" when none validates or the lookups fail.
func (s *spfResolver) validatedName(ctx context.Context, domain string) string {
	if s.pNames == nil {
		s.pNames = []string{}
		names, err := s.r.LookupAddr(ctx, s.ip.String())
		if err == nil {
			for _, n := range names[:min(10, len(names))] {
				ips, err := resolver.LookupIPFamily(ctx, s.r, n, s.v6)
				if err == nil && slices.ContainsFunc(ips, func(ip net.IP) bool { return ip.Equal(s.ip) }) {
					s.pNames = append(s.pNames, strings.ToLower(strings.TrimSuffix(answerName(n), ".")))
				}
			}
		}
	}
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	switch {
	case slices.Contains(s.pNames, d):
		return d
	case len(s.pNames) == 0:
		return "unknown"
	}
	for _, n := range s.pNames {
		if strings.HasSuffix(n, "."+d) {
			return n
		}
	}
	return s.pNames[0]
}
