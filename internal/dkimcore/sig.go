package dkimcore

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Signature algorithms (RFC 6376 §3.3, RFC 8463). rsa-sha1 is not supported (RFC 8301).
const (
	RSASHA256     = "rsa-sha256"
	Ed25519SHA256 = "ed25519-sha256"
)

// MinVerifyRSABits is the smallest RSA key a signature is verified with (RFC 8301 §3.2).
const MinVerifyRSABits = 1024

// AlgorithmFor returns the signing algorithm for key, or an error for key types DKIM has no
// algorithm for.
func AlgorithmFor(key crypto.Signer) (string, error) {
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinVerifyRSABits {
			return "", fmt.Errorf("RSA key of %d bits is too short to sign with", k.N.BitLen())
		}
		return RSASHA256, nil
	case ed25519.PublicKey:
		return Ed25519SHA256, nil
	default:
		return "", fmt.Errorf("unsupported key type %T (want RSA or Ed25519)", k)
	}
}

// AppendHeaderHashInput appends the canonical form of the fields named in names, each name
// taking the bottom-most instance not yet used; a name with no instance left adds nothing,
// which is what makes oversigning work (RFC 6376 §5.4.2). Empty names select nothing.
//
// It runs in time linear in the number of fields and names: the fields are indexed by name
// once, and each name takes the next instance of its list from the bottom, so a header of
// many same-named fields costs no more per field than a small one.
func AppendHeaderHashInput(dst []byte, h Header, names []string, c Canonicalization) []byte {
	if len(names) == 0 {
		return dst
	}
	idx := IndexHeader(h)
	for _, name := range names {
		if f := idx.Next(name); f != nil {
			dst = AppendCanonicalField(dst, f, c)
		}
	}
	return dst
}

// HeaderIndex finds fields by name bottom-up without rescanning the header. Build it with
// IndexHeader; each Next call consumes one instance.
type HeaderIndex struct {
	h   Header
	pos map[string][]int // lower-case name -> field indexes, top first; consumed from the end
}

// IndexHeader indexes the fields of h by lower-case name, in one pass.
func IndexHeader(h Header) *HeaderIndex {
	idx := &HeaderIndex{h: h, pos: make(map[string][]int, 32)}
	var buf []byte
	for i, f := range h {
		buf = appendLowerName(buf[:0], f)
		if len(buf) == 0 {
			continue
		}
		l, ok := idx.pos[string(buf)] // no allocation for the lookup
		if !ok {
			idx.pos[string(buf)] = []int{i}
			continue
		}
		idx.pos[string(buf)] = append(l, i)
	}
	return idx
}

// Count returns how many fields named name (any case) are left unconsumed.
func (x *HeaderIndex) Count(name string) int {
	return len(x.pos[lowerTrim(name)])
}

// Next returns the bottom-most field named name (any case, surrounding white space ignored)
// not yet returned, or nil when none is left.
func (x *HeaderIndex) Next(name string) Field {
	key := lowerTrim(name)
	l := x.pos[key]
	if len(l) == 0 {
		return nil
	}
	x.pos[key] = l[:len(l)-1]
	return x.h[l[len(l)-1]]
}

// appendLowerName appends the lower-cased name of f (white space before ':' removed).
func appendLowerName(dst []byte, f Field) []byte {
	i := bytes.IndexByte(f, ':')
	if i < 0 {
		return dst
	}
	for _, c := range bytes.TrimRight(f[:i], " \t") {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// lowerTrim lower-cases an ASCII field name and trims white space, without allocating when
// it is already in that form.
func lowerTrim(s string) string {
	s = strings.TrimSpace(s)
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j, c := range b {
				if 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b) // ASCII only: field names are ASCII (RFC 5322 §2.2)
		}
	}
	return s
}

// SignField completes a DKIM-syntax field: it formats name with tags and an empty b=,
// hashes hashInput followed by that field canonicalised with c and without its final CRLF
// (RFC 6376 §3.7), signs the digest with key and returns the field with b= filled in.
// tags must not contain b.
func SignField(name string, tags []Tag, hashInput []byte, c Canonicalization, key crypto.Signer) (Field, error) {
	alg, err := AlgorithmFor(key)
	if err != nil {
		return nil, err
	}
	unsigned := FormatField(name, append(tags[:len(tags):len(tags)], Tag{Name: "b"}))
	digest := fieldDigest(hashInput, unsigned, c)
	var sig []byte
	if alg == Ed25519SHA256 {
		sig, err = key.Sign(rand.Reader, digest, crypto.Hash(0)) // RFC 8463 §3: sign the SHA-256 digest
	} else {
		sig, err = key.Sign(rand.Reader, digest, crypto.SHA256)
	}
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", name, err)
	}
	f := bytes.TrimSuffix(unsigned, crlf)
	f = appendFoldedBase64(f, base64.StdEncoding.EncodeToString(sig), lastLineLen(f))
	return append(f, crlf...), nil
}

func fieldDigest(hashInput []byte, unsignedField Field, c Canonicalization) []byte {
	h := sha256.New()
	h.Write(hashInput)
	cf := AppendCanonicalField(nil, unsignedField, c)
	h.Write(bytes.TrimSuffix(cf, crlf))
	return h.Sum(nil)
}

// FormatField formats a header field from tags, folding lines before 78 columns at tag
// boundaries and inside h= at colons. The result ends in CRLF.
func FormatField(name string, tags []Tag) Field {
	var b []byte
	b = append(b, name...)
	b = append(b, ':')
	col := len(b)
	for i, t := range tags {
		piece := t.Name + "=" + t.Value
		if i < len(tags)-1 {
			piece += ";"
		}
		if t.Name == "h" && col+1+len(piece) > 78 {
			// Fold inside the colon list.
			b = append(b, "\r\n "...)
			col = 1
			for j, part := range strings.Split(piece, ":") {
				if j > 0 {
					part = ":" + part
				}
				if col+len(part) > 78 && col > 1 {
					b = append(b, "\r\n "...)
					col = 1
					if j > 0 {
						b = append(b, ':')
						col++
						part = part[1:]
					}
				}
				b = append(b, part...)
				col += len(part)
			}
			continue
		}
		if col+1+len(piece) > 78 {
			b = append(b, "\r\n "...)
			col = 1
		} else {
			b = append(b, ' ')
			col++
		}
		b = append(b, piece...)
		col += len(piece)
	}
	return append(b, crlf...)
}

func lastLineLen(b []byte) int {
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return len(b) - i - 1
	}
	return len(b)
}

// appendFoldedBase64 appends s, folding with CRLF SP so no line passes 78 columns.
func appendFoldedBase64(dst []byte, s string, col int) []byte {
	for len(s) > 0 {
		room := 78 - col
		if room < 8 {
			dst = append(dst, "\r\n "...)
			col = 1
			continue
		}
		n := min(room, len(s))
		dst = append(dst, s[:n]...)
		s = s[n:]
		col += n
	}
	return dst
}

// StripSignatureValue returns f with the value of its b= tag removed (RFC 6376 §3.7: the b=
// value and the white space around it treated as empty), other tags such as bh= untouched.
func StripSignatureValue(f Field) Field {
	colon := bytes.IndexByte(f, ':')
	if colon < 0 {
		return f
	}
	out := make(Field, 0, len(f))
	out = append(out, f[:colon+1]...)
	rest := f[colon+1:]
	for len(rest) > 0 {
		end := bytes.IndexByte(rest, ';')
		seg := rest
		if end >= 0 {
			seg = rest[:end]
		}
		eq := bytes.IndexByte(seg, '=')
		if eq >= 0 && string(bytes.Trim(seg[:eq], " \t\r\n")) == "b" {
			seg = seg[:eq+1]
			if end < 0 && bytes.HasSuffix(rest, crlf) {
				seg = append(seg[:len(seg):len(seg)], crlf...)
			}
		}
		out = append(out, seg...)
		if end < 0 {
			break
		}
		out = append(out, ';')
		rest = rest[end+1:]
	}
	return out
}

// Kind says which of the three DKIM-syntax fields a signature is; the tags each requires and
// their defaults differ.
type Kind int

// The kinds of signature field.
const (
	DKIMSignature       Kind = iota // DKIM-Signature (RFC 6376 §3.5)
	ARCMessageSignature             // ARC-Message-Signature (RFC 8617 §4.1.2)
	ARCSeal                         // ARC-Seal (RFC 8617 §4.1.3)
)

// KindOf returns the kind of f by its name, and false for other fields.
func KindOf(f Field) (Kind, bool) {
	switch {
	case f.Is("DKIM-Signature"):
		return DKIMSignature, true
	case f.Is("ARC-Message-Signature"):
		return ARCMessageSignature, true
	case f.Is("ARC-Seal"):
		return ARCSeal, true
	}
	return 0, false
}

// Signature is a parsed DKIM-syntax signature field (DKIM-Signature, ARC-Message-Signature
// or ARC-Seal).
type Signature struct {
	Field       Field
	Kind        Kind
	Tags        Tags
	Algorithm   string
	Domain      string // d=, lower-cased, trailing dot removed
	Selector    string
	HeaderCanon Canonicalization
	BodyCanon   Canonicalization
	Headers     []string // h=, as written, empty names left out
	BodyHash    []byte   // bh=, nil when absent
	Sig         []byte   // b=
	Identifier  string   // i= as written (for ARC fields, the instance)
	Timestamp   int64    // t=, -1 when absent
	Expiration  int64    // x=, -1 when absent
}

// ParseSignature parses a DKIM-Signature, ARC-Message-Signature or ARC-Seal (told apart by
// the field name; any other name is read as a DKIM-Signature) and checks the syntax RFC 6376
// §6.1.1 and RFC 8617 §4.1 give each:
//
//   - every kind: a, b, d, s present; a= is rsa-sha256 or ed25519-sha256 (rsa-sha1 is a
//     policy error, RFC 8301 §3.1; others are permanent); c=, t=, x= well-formed; l= is a
//     policy error: sealgate does not verify signatures over part of a body, since anything
//     may be appended after the signed length (RFC 6376 §8.2).
//   - DKIM-Signature: v=1, bh= and h= present; h= names From and no empty name; i=, if
//     present, is in d= or a subdomain; x= not before t=. c= defaults to simple/simple.
//   - ARC-Message-Signature: i=, bh= and h= present; empty names in h= are skipped, as
//     dkimpy and the ARC test suite do; c= defaults to relaxed/relaxed, the only
//     canonicalisation ARC uses.
//   - ARC-Seal: i= present; c= defaults to relaxed/relaxed. h= is refused by the caller.
//
// Errors are *Error values.
func ParseSignature(f Field) (*Signature, error) {
	kind, ok := KindOf(f)
	if !ok {
		kind = DKIMSignature
	}
	tags, err := ParseTags(f.Value())
	if err != nil {
		return nil, err
	}
	s := &Signature{Field: f, Kind: kind, Tags: tags, Timestamp: -1, Expiration: -1}
	required := []string{"a", "b", "d", "s"}
	switch kind {
	case DKIMSignature:
		required = append([]string{"v"}, append(required, "bh", "h")...)
	case ARCMessageSignature:
		required = append([]string{"i"}, append(required, "bh", "h")...)
	case ARCSeal:
		required = append([]string{"i"}, required...)
	}
	for _, req := range required {
		if _, ok := tags.Get(req); !ok {
			return nil, permErr("signature has no %s= tag", req)
		}
	}
	if kind == DKIMSignature {
		if v, _ := tags.Get("v"); v != "1" {
			return nil, permErr("signature has v=%s; only v=1 exists (RFC 6376 §3.5)", shorten(v))
		}
	}
	s.Algorithm, _ = tags.Get("a")
	s.Algorithm = strings.ToLower(s.Algorithm)
	switch s.Algorithm {
	case RSASHA256, Ed25519SHA256:
	case "rsa-sha1":
		return nil, policyErr("signature uses rsa-sha1, which verifiers must not accept (RFC 8301 §3.1)")
	default:
		return nil, permErr("unsupported signature algorithm a=%s", shorten(s.Algorithm))
	}
	d, _ := tags.Get("d")
	s.Domain = strings.ToLower(strings.TrimSuffix(d, "."))
	if s.Domain == "" {
		return nil, permErr("signature has an empty d= tag")
	}
	s.Selector, _ = tags.Get("s")
	if s.Selector == "" {
		return nil, permErr("signature has an empty s= tag")
	}
	c, hasC := tags.Get("c")
	if !hasC && kind != DKIMSignature {
		c = "relaxed/relaxed" // ARC uses relaxed canonicalisation (RFC 8617 §4.1.2, §4.1.3)
	}
	if s.HeaderCanon, s.BodyCanon, err = ParseCanonicalization(c); err != nil {
		return nil, err
	}
	if h, ok := tags.Get("h"); ok {
		for name := range strings.SplitSeq(h, ":") {
			if name = strings.TrimSpace(name); name == "" {
				if kind == DKIMSignature {
					return nil, permErr("signature h= tag has an empty field name")
				}
				continue
			}
			s.Headers = append(s.Headers, name)
		}
	}
	if kind == DKIMSignature && !slices.ContainsFunc(s.Headers, func(n string) bool { return strings.EqualFold(n, "From") }) {
		return nil, permErr("signature h= does not include From (RFC 6376 §5.4)")
	}
	if bh, ok := tags.Get("bh"); ok {
		if s.BodyHash, err = base64.StdEncoding.DecodeString(StripFWS(bh)); err != nil {
			return nil, permErr("signature bh= is not valid base64")
		}
	}
	b, _ := tags.Get("b")
	if s.Sig, err = base64.StdEncoding.DecodeString(StripFWS(b)); err != nil || len(s.Sig) == 0 {
		return nil, permErr("signature b= is not valid base64")
	}
	if _, ok := tags.Get("l"); ok {
		return nil, policyErr("signature has l= (it signs only part of the body); not accepted")
	}
	for name, dst := range map[string]*int64{"t": &s.Timestamp, "x": &s.Expiration} {
		if v, ok := tags.Get(name); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, permErr("signature %s= is not a timestamp", name)
			}
			*dst = n
		}
	}
	s.Identifier, _ = tags.Get("i")
	if kind == DKIMSignature {
		if s.Expiration >= 0 && s.Timestamp >= 0 && s.Expiration < s.Timestamp {
			return nil, permErr("signature x= is before t= (RFC 6376 §3.5)")
		}
		if s.Identifier != "" && !identifierInDomain(s.Identifier, s.Domain, false) {
			return nil, permErr("signature i=%s is not in d=%s or a subdomain of it (RFC 6376 §3.5)", shorten(s.Identifier), s.Domain)
		}
	}
	return s, nil
}

// identifierInDomain reports whether the domain of the AUID i= (after its last '@') is d or,
// unless strict (key record t=s, RFC 6376 §3.6.1), a subdomain of d.
func identifierInDomain(i, d string, strict bool) bool {
	at := strings.LastIndexByte(i, '@')
	if at < 0 {
		return false
	}
	id := strings.ToLower(strings.TrimSuffix(i[at+1:], "."))
	return id == d || !strict && strings.HasSuffix(id, "."+d)
}

// AUID returns the signature's agent or user identifier: i= when present, else "@" + d=
// (RFC 6376 §3.5).
func (s *Signature) AUID() string {
	if s.Identifier != "" {
		return s.Identifier
	}
	return "@" + s.Domain
}

// CheckBodyHash compares bh= with the body hash for the signature's body canonicalisation.
func (s *Signature) CheckBodyHash(bodies BodyHashes) error {
	got, err := bodies.BodyHash(s.BodyCanon)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, s.BodyHash) {
		return failErr("body hash did not verify")
	}
	return nil
}

// VerifyWithKey checks b= with a key already at hand: the key type must match a=, and an RSA
// key must have at least MinVerifyRSABits. Verifier.Verify adds the rest of the key record's
// rules.
func (s *Signature) VerifyWithKey(key *KeyRecord, hashInput []byte, c Canonicalization) error {
	digest := fieldDigest(hashInput, StripSignatureValue(s.Field), c)
	switch pub := key.PublicKey.(type) {
	case *rsa.PublicKey:
		if s.Algorithm != RSASHA256 {
			return permErr("key type rsa does not match a=%s", s.Algorithm)
		}
		if pub.N.BitLen() < MinVerifyRSABits {
			return permErr("RSA key of %d bits is too short", pub.N.BitLen())
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, s.Sig); err != nil {
			return failErr("signature did not verify")
		}
	case ed25519.PublicKey:
		if s.Algorithm != Ed25519SHA256 {
			return permErr("key type ed25519 does not match a=%s", s.Algorithm)
		}
		if !ed25519.Verify(pub, digest, s.Sig) {
			return failErr("signature did not verify")
		}
	default:
		return permErr("unusable key")
	}
	return nil
}
