package keys

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"strings"

	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
)

// maxCharString is the longest character-string a TXT record can hold (RFC 1035 §3.3).
const maxCharString = 255

// RecordName returns the name of the key record, "<selector>._domainkey.<domain>" (RFC 6376
// §3.6.2.1), without a trailing dot.
func RecordName(selector, domain string) string {
	return selector + "._domainkey." + strings.TrimSuffix(domain, ".")
}

// DNSRecord returns the key record for pub as one zone-file line:
//
//	<selector>._domainkey.<domain>. IN TXT ( "v=DKIM1; k=rsa; p=..." "..." )
//
// The text is split into 255-octet strings, which receivers join with nothing between them;
// a text that fits in one string is written as a single quoted string without parentheses. It
// returns "" if pub is neither an RSA nor an Ed25519 key.
func DNSRecord(pub crypto.PublicKey, selector, domain string) string {
	text, err := dkimcore.KeyRecordText(pub)
	if err != nil {
		return ""
	}
	var quoted []string
	for len(text) > maxCharString {
		quoted = append(quoted, quote(text[:maxCharString]))
		text = text[maxCharString:]
	}
	quoted = append(quoted, quote(text))
	rdata := quoted[0]
	if len(quoted) > 1 {
		rdata = "( " + strings.Join(quoted, " ") + " )"
	}
	return RecordName(selector, domain) + ". IN TXT " + rdata
}

// quote makes s a zone-file character-string. Key record text is base64 and ASCII tags, so
// escaping is a precaution.
func quote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// Status is the verdict of Check.
type Status string

// Verdicts of Check. Only StatusPublished means the key can be used.
const (
	StatusPublished      Status = "published"       // one record, this key, not in testing mode
	StatusMissing        Status = "missing"         // NXDOMAIN or no TXT record at the name
	StatusOtherKey       Status = "other-key"       // a valid record with a different key
	StatusTesting        Status = "testing"         // this key, but t=y is set
	StatusRevoked        Status = "revoked"         // empty p=
	StatusBadSyntax      Status = "bad-syntax"      // the record does not parse
	StatusSeveralRecords Status = "several-records" // more than one TXT record at the name
	StatusDNSFailure     Status = "dns-failure"     // the lookup failed; see the error
)

// CheckResult says whether a key is published at its selector and how it differs if not.
type CheckResult struct {
	Name    string              // the record's name, "<selector>._domainkey.<domain>"
	Status  Status              // the verdict
	Detail  string              // one or more sentences an admin can act on
	Records []string            // the TXT records found, strings of each joined
	Record  *dkimcore.KeyRecord // the parsed record, when there was exactly one that parsed
	Want    string              // the record text that should be published
}

// OK reports whether the key is published, matching, and not in testing mode.
func (r *CheckResult) OK() bool { return r.Status == StatusPublished }

// Check looks up the key record for selector and domain and compares it with key's public key.
// The verdict is in the result. The error is non-nil only when no verdict could be reached: an
// unusable key, or a DNS failure other than "not found"; the result then has StatusDNSFailure
// and resolver.IsTemporary(err) tells whether trying later may help.
func Check(ctx context.Context, r resolver.Resolver, key crypto.Signer, selector, domain string) (*CheckResult, error) {
	want, err := dkimcore.KeyRecordText(key.Public())
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	res := &CheckResult{Name: RecordName(selector, domain), Want: want}

	txts, err := r.LookupTXT(ctx, res.Name)
	switch {
	case resolver.IsNotFound(err):
		res.Status = StatusMissing
		res.Detail = fmt.Sprintf("no TXT record at %s (%s); publish the key record there", res.Name, notFoundKind(err))
		return res, nil
	case err != nil:
		res.Status = StatusDNSFailure
		if resolver.IsTemporary(err) {
			res.Detail = fmt.Sprintf("could not look up %s: the DNS failed temporarily; try again later", res.Name)
		} else {
			res.Detail = fmt.Sprintf("could not look up %s", res.Name)
		}
		return res, fmt.Errorf("keys: check %s: %w", res.Name, err)
	}
	res.Records = txts
	if len(txts) > 1 {
		// RFC 6376 §3.6.2.2 leaves several records undefined; verifiers return permerror.
		res.Status = StatusSeveralRecords
		res.Detail = fmt.Sprintf("%d TXT records at %s; receivers treat that as an error: keep exactly one", len(txts), res.Name)
		return res, nil
	}
	rec, err := dkimcore.ParseKeyRecord(txts[0])
	if err != nil {
		res.Status = StatusBadSyntax
		res.Detail = fmt.Sprintf("the record at %s is invalid: %s", res.Name, strings.TrimPrefix(err.Error(), "key record: "))
		return res, nil
	}
	res.Record = rec
	switch {
	case rec.Revoked:
		res.Status = StatusRevoked
		res.Detail = fmt.Sprintf("the key at %s is revoked (empty p=); publish this key or use another selector", res.Name)
	case !samePublicKey(key.Public(), rec.PublicKey):
		res.Status = StatusOtherKey
		res.Detail = fmt.Sprintf("%s publishes a different %s key, not this one", res.Name, keyTypeName(rec.KeyType))
	case rec.Testing:
		res.Status = StatusTesting
		res.Detail = fmt.Sprintf("%s publishes this key with t=y (testing): receivers may treat failures as unsigned mail; remove t=y when done testing", res.Name)
	default:
		res.Status = StatusPublished
		res.Detail = fmt.Sprintf("%s publishes this key", res.Name)
	}
	return res, nil
}

func notFoundKind(err error) string {
	if errors.Is(err, resolver.ErrNXDOMAIN) {
		return "the name does not exist"
	}
	return "the name exists without a TXT record"
}

func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && b != nil && k.Equal(b)
}

func keyTypeName(k string) string {
	if k == "ed25519" {
		return "Ed25519"
	}
	return strings.ToUpper(k)
}
