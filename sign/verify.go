package sign

import (
	"bytes"
	"context"
	"strings"

	"github.com/emersion/go-msgauth/dkim"

	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
)

// DefaultMaxVerifications caps the signatures verified per message, so a message carrying
// hundreds of signatures cannot make us do hundreds of key lookups (RFC 6376 §8.4).
const DefaultMaxVerifications = 8

// Result is the outcome of verifying one DKIM-Signature, with the properties an
// Authentication-Results dkim entry reports (RFC 8601 §2.7.1).
type Result struct {
	Status     string // pass, fail, neutral, temperror, permerror
	Domain     string // header.d
	Selector   string // header.s
	Algorithm  string // header.a
	Identifier string // header.i
	B          string // header.b: the first 12 characters of b=
	Err        error  // why, when Status is not pass
}

// VerifyOptions tunes Verify.
type VerifyOptions struct {
	Resolver         resolver.Resolver
	MaxVerifications int // 0 means DefaultMaxVerifications
}

// Verify checks every DKIM-Signature of a message (CRLF or bare-LF line ends), top first,
// up to the cap. A message without signatures gives no results and no error.
func Verify(ctx context.Context, msg []byte, o VerifyOptions) ([]Result, error) {
	hdr, body, err := ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return nil, err
	}
	max := o.MaxVerifications
	if max <= 0 {
		max = DefaultMaxVerifications
	}
	var full bytes.Buffer
	if err := WriteMessage(&full, hdr, body); err != nil {
		return nil, err
	}
	verifs, err := dkim.VerifyWithOptions(&full, &dkim.VerifyOptions{
		MaxVerifications: max,
		LookupTXT: func(name string) ([]string, error) {
			txts, err := o.Resolver.LookupTXT(ctx, name)
			return txts, resolver.AsNetError(err)
		},
	})
	if err != nil && len(verifs) == 0 {
		return nil, err
	}
	var sigs []dkimcore.Field
	for _, f := range hdr {
		if f.Is("DKIM-Signature") {
			sigs = append(sigs, f)
		}
	}
	results := make([]Result, 0, len(verifs))
	for i, v := range verifs {
		r := Result{Domain: v.Domain, Identifier: v.Identifier, Err: v.Err}
		switch {
		case v.Err == nil:
			r.Status = "pass"
		case dkim.IsTempFail(v.Err):
			r.Status = "temperror"
		case dkim.IsPermFail(v.Err):
			r.Status = "permerror"
		default:
			r.Status = "fail"
		}
		if i < len(sigs) {
			if tags, err := dkimcore.ParseTags(sigs[i].Value()); err == nil {
				r.Selector, _ = tags.Get("s")
				r.Algorithm, _ = tags.Get("a")
				b, _ := tags.Get("b")
				b = dkimcore.StripFWS(b)
				r.B = b[:min(12, len(b))]
				if r.Domain == "" {
					r.Domain, _ = tags.Get("d")
				}
			}
		}
		r.Domain = strings.ToLower(r.Domain)
		results = append(results, r)
	}
	return results, nil
}
