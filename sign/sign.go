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
// Verification (Verify, VerifyHeader) checks DKIM signatures with the key lookup and
// signature primitives of internal/dkimcore that ARC validation uses too, and gives typed
// results for Authentication-Results (RFC 8601).
//
// A KeyRing holds the keys of every domain sealgate signs for and answers which keys, with
// which d=, sign for a From domain, including a subdomain signed by its parent's keys when the
// parent allows it. This package does not decide which domains a sender may use: that is the
// submission policy's job.
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

	"sealgate/internal/addr"
	"sealgate/internal/dkimcore"
)

// MinRSABits is the smallest RSA key sealgate signs with unless a lower minimum is
// configured (Options.MinRSABits, a domain's min_rsa_bits, --min-rsa-bits). RFC 8301 §3.2
// says signers SHOULD use at least 2048 bits; 1024-bit keys are within reach of factoring.
// keys.Load applies the same minimum, so there is one number.
const MinRSABits = 2048

// LowestMinRSABits is the lowest minimum that may be configured: RFC 8301 §3.2 says signers
// MUST use keys of at least 1024 bits. It lets an organisation move an existing 1024-bit
// selector onto sealgate before it rotates to a stronger key.
const LowestMinRSABits = 1024

// CheckMinRSABits checks a configured minimum RSA key size: 0 (meaning MinRSABits) or a
// number from LowestMinRSABits up.
func CheckMinRSABits(n int) error {
	if n != 0 && n < LowestMinRSABits {
		return fmt.Errorf("%d: RSA signing keys must have at least %d bits (RFC 8301 §3.2); the default minimum is %d", n, LowestMinRSABits, MinRSABits)
	}
	return nil
}

// CheckRSAKeySize refuses an RSA key of bits bits under the minimum min (0 meaning
// MinRSABits). The error says how to opt in to a lower minimum where RFC 8301 allows it.
func CheckRSAKeySize(bits, min int) error {
	if min == 0 {
		min = MinRSABits
	}
	if min < LowestMinRSABits {
		min = LowestMinRSABits
	}
	if bits >= min {
		return nil
	}
	if bits >= LowestMinRSABits {
		return fmt.Errorf("RSA key is %d bits; signing needs at least %d (RFC 8301 §3.2): generate a new one with 'sealgate keys generate', "+
			"or accept it until you rotate with min_rsa_bits: %d (--min-rsa-bits %d on the command line)", bits, min, bits, bits)
	}
	return fmt.Errorf("RSA key is %d bits; signing needs at least %d, and RFC 8301 §3.2 forbids signing with fewer than %d: generate a new one with 'sealgate keys generate'",
		bits, min, LowestMinRSABits)
}

// DefaultHeaderKeys are the fields signed when present (RFC 6376 §5.4.1 recommends them).
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
	Signer   crypto.Signer // *rsa.PrivateKey (MinRSABits or the configured minimum) or ed25519.PrivateKey
}

// Options says how to sign.
type Options struct {
	// Domain is the signing domain (d=), normally the domain of the From address;
	// given as U-labels or A-labels, it is signed as A-labels (RFC 8616 §4).
	Domain string
	// Keys sign the message, one DKIM-Signature each, in this order.
	Keys []Key
	// Identifier is the optional AUID (i=); it must be in Domain or a subdomain of it.
	// Its domain is signed as A-labels, its local part as given (RFC 8616 §4).
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
	// MinRSABits is the smallest RSA key accepted; 0 means MinRSABits. It may not be set
	// below LowestMinRSABits.
	MinRSABits int
}

// Validate checks the options before any signing work is done.
func (o *Options) Validate() error {
	if o.Domain == "" {
		return errors.New("sign: no signing domain")
	}
	if len(o.Keys) == 0 {
		return fmt.Errorf("sign: no keys for %s", o.Domain)
	}
	if err := CheckMinRSABits(o.MinRSABits); err != nil {
		return fmt.Errorf("sign: minimum RSA key size %w", err)
	}
	for _, k := range o.Keys {
		if err := addr.CheckSelector(k.Selector); err != nil {
			return fmt.Errorf("sign: invalid selector %w", err)
		}
		if k.Signer == nil {
			return fmt.Errorf("sign: selector %s has no key", k.Selector)
		}
		if pub, ok := k.Signer.Public().(*rsa.PublicKey); ok {
			if err := CheckRSAKeySize(pub.N.BitLen(), o.MinRSABits); err != nil {
				return fmt.Errorf("sign: selector %s: %w", k.Selector, err)
			}
		}
		if _, err := dkimcore.AlgorithmFor(k.Signer); err != nil {
			return fmt.Errorf("sign: selector %s: %w", k.Selector, err)
		}
	}
	_, _, err := o.tagDomains()
	return err
}

// tagDomains returns the d= and i= values: the signing domain and the
// identifier's domain as A-labels, whichever form they were given in (RFC 8616
// §4); the identifier's local part is kept as it is, UTF-8 included (RFC 8616
// §4 lets dkim-quoted-printable carry UTF-8 unquoted).
func (o *Options) tagDomains() (d, i string, err error) {
	dom, err := addr.ParseDomain(o.Domain)
	if err != nil {
		return "", "", fmt.Errorf("sign: signing domain: %w", err)
	}
	if o.Identifier == "" {
		return string(dom), "", nil
	}
	at := strings.LastIndexByte(o.Identifier, '@')
	if at < 0 {
		return "", "", fmt.Errorf("sign: identifier %q is not in domain %s", o.Identifier, o.Domain)
	}
	idom, err := addr.ParseDomain(o.Identifier[at+1:])
	if err != nil || (idom != dom && !idom.IsSubdomainOf(dom)) {
		return "", "", fmt.Errorf("sign: identifier %q is not in domain %s", o.Identifier, o.Domain)
	}
	return string(dom), o.Identifier[:at+1] + string(idom), nil
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
	idx := dkimcore.IndexHeader(hdr) // one pass over the fields, however many keys
	add := func(k string) {
		lk := strings.ToLower(strings.TrimSpace(k))
		if lk == "" || seen[lk] {
			return
		}
		seen[lk] = true
		n := idx.Count(lk)
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
	if !seen["from"] || idx.Count("from") == 0 {
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
	dTag, iTag, _ := o.tagDomains() // checked by Validate
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
			{Name: "d", Value: dTag},
			{Name: "s", Value: k.Selector},
		}
		if iTag != "" {
			tags = append(tags, dkimcore.Tag{Name: "i", Value: iTag})
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
