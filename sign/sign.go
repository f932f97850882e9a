// Package sign makes and checks DKIM signatures (RFC 6376) with RSA-SHA256 and
// Ed25519-SHA256 (RFC 8463, RFC 8301).
//
// A message is signed with one signature per key, all for the same d= domain, so RSA-2048
// and Ed25519 signatures can stand side by side and keys can rotate by selector. Signing
// always uses c=relaxed/relaxed, writes t= and never l=, and oversigns the fields most
// worth protecting so that a copy of them added later breaks the signature (RFC 6376 §8.15).
//
// The body is not read here: callers hash it once with dkimcore.BodyHasher and pass the
// result, so that DKIM and ARC (package arc) share one pass over the body. SignMessage is the
// convenience for a whole message in a reader.
//
// Verification (Verify) is go-msgauth's verifier behind our DNS resolver, for the inbound
// verifier and the command-line tools. This package does not decide which domain a sender may
// sign for: that is the submission policy's job.
package sign

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"sealgate/internal/dkimcore"
)

// MinSignRSABits is the smallest RSA key we sign with (RFC 8301 §3.2 says SHOULD 2048).
const MinSignRSABits = 2048

// DefaultHeaderKeys are the fields signed when present (standards.md §1.3).
var DefaultHeaderKeys = []string{
	"From", "Sender", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"List-Id", "List-Help", "List-Subscribe", "List-Unsubscribe", "List-Unsubscribe-Post",
	"List-Post", "List-Owner", "List-Archive",
	"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Message-ID",
}

// DefaultOversign are the fields listed once more than they occur, so that adding one after
// signing breaks the signature.
var DefaultOversign = []string{
	"From", "To", "Cc", "Subject", "Date", "Reply-To", "Sender", "Message-ID", "Content-Type", "MIME-Version",
}

// Key is one signing key and the selector its public key is published under.
type Key struct {
	Selector string
	Signer   crypto.Signer // *rsa.PrivateKey (2048 bits or more) or ed25519.PrivateKey
}

// Options says how to sign.
type Options struct {
	// Domain is the signing domain (d=), normally the domain of the From address.
	Domain string
	// Keys sign the message, one DKIM-Signature each, in this order.
	Keys []Key
	// Identifier is the optional AUID (i=); it must be in Domain or a subdomain of it.
	Identifier string
	// HeaderKeys are the fields to sign, each as many times as it occurs; nil means
	// DefaultHeaderKeys. From is always signed.
	HeaderKeys []string
	// Oversign are the fields signed once more than they occur; nil means DefaultOversign.
	// Only fields also in HeaderKeys (or From) are oversigned.
	Oversign []string
	// Time is the signing time (t=); zero means now.
	Time time.Time
	// Expiration, when positive, adds x= that far after Time.
	Expiration time.Duration
}

// Validate checks the options before any signing work is done.
func (o *Options) Validate() error {
	if o.Domain == "" {
		return errors.New("sign: no signing domain")
	}
	if len(o.Keys) == 0 {
		return fmt.Errorf("sign: no keys for %s", o.Domain)
	}
	for _, k := range o.Keys {
		if !validSelector(k.Selector) {
			return fmt.Errorf("sign: invalid selector %q", k.Selector)
		}
		if k.Signer == nil {
			return fmt.Errorf("sign: selector %s has no key", k.Selector)
		}
		if pub, ok := k.Signer.Public().(*rsa.PublicKey); ok && pub.N.BitLen() < MinSignRSABits {
			return fmt.Errorf("sign: selector %s: RSA key of %d bits is too weak; DKIM keys must be %d bits or more", k.Selector, pub.N.BitLen(), MinSignRSABits)
		}
		if _, err := dkimcore.AlgorithmFor(k.Signer); err != nil {
			return fmt.Errorf("sign: selector %s: %w", k.Selector, err)
		}
	}
	if o.Identifier != "" {
		_, dom, ok := strings.Cut(o.Identifier, "@")
		dom = strings.ToLower(dom)
		d := strings.ToLower(o.Domain)
		if !ok || (dom != d && !strings.HasSuffix(dom, "."+d)) {
			return fmt.Errorf("sign: identifier %q is not in domain %s", o.Identifier, o.Domain)
		}
	}
	return nil
}

// validSelector reports whether s is a selector: dot-separated labels of letters, digits
// and hyphens (RFC 6376 §3.1).
func validSelector(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// SignedHeaderNames returns the h= list for hdr: every field of HeaderKeys as often as it
// occurs, plus one more for each oversigned field (RFC 6376 §5.4.2).
func (o *Options) SignedHeaderNames(hdr dkimcore.Header) []string {
	keys := o.HeaderKeys
	if keys == nil {
		keys = DefaultHeaderKeys
	}
	over := o.Oversign
	if over == nil {
		over = DefaultOversign
	}
	var names []string
	seen := map[string]bool{}
	add := func(k string) {
		lk := strings.ToLower(strings.TrimSpace(k))
		if lk == "" || seen[lk] {
			return
		}
		seen[lk] = true
		n := hdr.Count(lk)
		for _, ov := range over {
			if strings.EqualFold(ov, lk) {
				n++
				break
			}
		}
		for range n {
			names = append(names, lk)
		}
	}
	add("from")
	if !seen["from"] || hdr.Count("from") == 0 {
		names = append(names, "from") // From must be in h= even when absent (RFC 6376 §5.4)
	}
	for _, k := range keys {
		add(k)
	}
	return names
}

// Sign returns one DKIM-Signature field per key for a message whose header is hdr and whose
// body hashes are bodies (which must include the relaxed hash). Prepend the fields, in the
// order returned, to the header.
func Sign(hdr dkimcore.Header, bodies dkimcore.BodyHashes, o *Options) ([]dkimcore.Field, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	bh, err := bodies.BodyHash(dkimcore.Relaxed)
	if err != nil {
		return nil, err
	}
	t := o.Time
	if t.IsZero() {
		t = time.Now()
	}
	names := o.SignedHeaderNames(hdr)
	hashInput := dkimcore.AppendHeaderHashInput(nil, hdr, names, dkimcore.Relaxed)
	fields := make([]dkimcore.Field, 0, len(o.Keys))
	for _, k := range o.Keys {
		alg, _ := dkimcore.AlgorithmFor(k.Signer)
		tags := []dkimcore.Tag{
			{Name: "v", Value: "1"},
			{Name: "a", Value: alg},
			{Name: "c", Value: "relaxed/relaxed"},
			{Name: "d", Value: o.Domain},
			{Name: "s", Value: k.Selector},
		}
		if o.Identifier != "" {
			tags = append(tags, dkimcore.Tag{Name: "i", Value: o.Identifier})
		}
		tags = append(tags, dkimcore.Tag{Name: "t", Value: strconv.FormatInt(t.Unix(), 10)})
		if o.Expiration > 0 {
			tags = append(tags, dkimcore.Tag{Name: "x", Value: strconv.FormatInt(t.Add(o.Expiration).Unix(), 10)})
		}
		tags = append(tags,
			dkimcore.Tag{Name: "h", Value: strings.Join(names, ":")},
			dkimcore.Tag{Name: "bh", Value: encodeBase64(bh)},
		)
		f, err := dkimcore.SignField("DKIM-Signature", tags, hashInput, dkimcore.Relaxed, k.Signer)
		if err != nil {
			return nil, fmt.Errorf("sign: selector %s: %w", k.Selector, err)
		}
		fields = append(fields, f)
	}
	return fields, nil
}

// ReadMessage reads a whole message, accepting CRLF or bare-LF line ends, and returns its
// header and its body with every line end made CRLF.
func ReadMessage(r io.Reader) (dkimcore.Header, []byte, error) {
	br := bufio.NewReaderSize(r, 64*1024)
	hdr, err := dkimcore.ReadHeader(br, false)
	if err != nil {
		return nil, nil, fmt.Errorf("malformed message: %w", err)
	}
	body, err := io.ReadAll(br)
	if err != nil {
		return nil, nil, err
	}
	return hdr, ToCRLF(body), nil
}

// ToCRLF turns every bare LF into CRLF; CRLF and lone CR are left as they are.
func ToCRLF(b []byte) []byte {
	n := bytes.Count(b, []byte("\n"))
	if n == 0 || n == bytes.Count(b, []byte("\r\n")) {
		return b
	}
	out := make([]byte, 0, len(b)+n)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// SignMessage reads a message from r, signs it and writes it to w with the signatures
// prepended and every line ending in CRLF. The body is not changed otherwise.
func SignMessage(w io.Writer, r io.Reader, o *Options) error {
	hdr, body, err := ReadMessage(r)
	if err != nil {
		return err
	}
	fields, err := Sign(hdr, dkimcore.HashBody(body, dkimcore.Relaxed), o)
	if err != nil {
		return err
	}
	return WriteMessage(w, append(fields, hdr...), body)
}

// WriteMessage writes header, the blank line and body.
func WriteMessage(w io.Writer, hdr dkimcore.Header, body []byte) error {
	bw := bufio.NewWriter(w)
	hdr.WriteTo(bw)
	bw.Write(body)
	return bw.Flush()
}
