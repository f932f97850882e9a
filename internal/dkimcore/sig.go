package dkimcore

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"sealgate/internal/resolver"
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
// which is what makes oversigning work (RFC 6376 §5.4.2).
func AppendHeaderHashInput(dst []byte, h Header, names []string, c Canonicalization) []byte {
	used := make([]bool, len(h))
	for _, name := range names {
		name = strings.TrimSpace(name)
		for i := len(h) - 1; i >= 0; i-- {
			if !used[i] && h[i].Is(name) {
				used[i] = true
				dst = AppendCanonicalField(dst, h[i], c)
				break
			}
		}
	}
	return dst
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

// Signature is a parsed DKIM-syntax signature field (DKIM-Signature, ARC-Message-Signature
// or ARC-Seal).
type Signature struct {
	Field       Field
	Tags        Tags
	Algorithm   string
	Domain      string // d=, lower-cased
	Selector    string
	HeaderCanon Canonicalization
	BodyCanon   Canonicalization
	Headers     []string // h=, as written
	BodyHash    []byte   // bh=, nil when absent
	Sig         []byte   // b=
	Timestamp   int64    // t=, -1 when absent
	Expiration  int64    // x=, -1 when absent
}

// ParseSignature parses the tags every DKIM-syntax signature shares: a, b, d, s (required),
// c, h, bh, t, x. l= is refused. Fields whose form requires h= and bh= are checked by the
// caller.
func ParseSignature(f Field) (*Signature, error) {
	tags, err := ParseTags(f.Value())
	if err != nil {
		return nil, err
	}
	s := &Signature{Field: f, Tags: tags, Timestamp: -1, Expiration: -1}
	for _, req := range []string{"a", "b", "d", "s"} {
		if _, ok := tags.Get(req); !ok {
			return nil, permErr("signature has no %s= tag", req)
		}
	}
	s.Algorithm, _ = tags.Get("a")
	s.Algorithm = strings.ToLower(s.Algorithm)
	if s.Algorithm != RSASHA256 && s.Algorithm != Ed25519SHA256 {
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
	c, _ := tags.Get("c")
	if s.HeaderCanon, s.BodyCanon, err = ParseCanonicalization(c); err != nil {
		return nil, err
	}
	if h, ok := tags.Get("h"); ok {
		for name := range strings.SplitSeq(h, ":") {
			if name = strings.TrimSpace(name); name == "" {
				return nil, permErr("signature h= tag has an empty field name")
			}
			s.Headers = append(s.Headers, name)
		}
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
		return nil, permErr("signature has l= (partial body); refused")
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
	return s, nil
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

// VerifyHeaders looks up the signer's key and verifies b= over hashInput followed by the
// signature field itself, b= emptied, canonicalised with c.
func (s *Signature) VerifyHeaders(ctx context.Context, r resolver.Resolver, hashInput []byte, c Canonicalization) error {
	key, err := LookupKey(ctx, r, s.Selector, s.Domain)
	if err != nil {
		return err
	}
	return s.VerifyWithKey(key, hashInput, c)
}

// VerifyWithKey is VerifyHeaders with a key already at hand.
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
