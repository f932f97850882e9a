package arc

import (
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/authres"
	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/sign"
)

// SealOptions says how to seal.
type SealOptions struct {
	// Domain and Selector name the sealer's key (d=, s=); Signer is its private key.
	Domain, Selector string
	Signer           crypto.Signer
	// AuthServID is the authserv-id of the AAR (RFC 8601 §2.5), normally our host name.
	AuthServID string
	// Results are the AAR's resinfo entries, such as "auth=pass smtp.auth=ana@corp.example".
	// When nil they are taken from the message's Authentication-Results fields that carry
	// AuthServID, in order. An arc= entry with the chain status is added unless present.
	Results []string
	// HeaderKeys are the fields the AMS signs as they occur; nil means sign.DefaultHeaderKeys
	// plus DKIM-Signature. ARC-Seal may not be listed (RFC 8617 §4.1.2).
	HeaderKeys []string
	// Time is the signing time (t=); zero means now.
	Time time.Time
	// Resolver fetches keys to validate the existing chain.
	Resolver resolver.Resolver
	// Chain, when set, is the already validated status of the message's chain, and Seal does
	// not validate again.
	Chain *Result
}

// NoSealError says why no set may be added to a message (RFC 8617 §5.1.2): the newest seal
// says cv=fail, the chain already has MaxInstances sets, or its instances cannot be told.
// The message should be passed on unchanged.
type NoSealError struct{ Reason string }

func (e *NoSealError) Error() string { return "not sealed: " + e.Reason }

// Seal validates the message's chain and returns the new set's fields, to prepend to the
// header in the order returned (ARC-Seal, ARC-Message-Signature,
// ARC-Authentication-Results), together with the chain status it found. bodies must hold
// the relaxed body hash and whatever RequiredCanonicalizations(hdr) asks for.
//
// Seal after every other change to the header, DKIM signing included, so the AMS covers it.
func Seal(ctx context.Context, hdr dkimcore.Header, bodies dkimcore.BodyHashes, o *SealOptions) ([]dkimcore.Field, *Result, error) {
	if o.Domain == "" || o.Selector == "" || o.Signer == nil || o.AuthServID == "" {
		return nil, nil, errors.New("arc: seal needs a domain, selector, key and authserv-id")
	}
	if _, err := dkimcore.AlgorithmFor(o.Signer); err != nil {
		return nil, nil, fmt.Errorf("arc: %w", err)
	}
	// d= is written as A-labels, whichever form the domain was given in (RFC 8616
	// §4 for DKIM, which the AMS and AS tags follow, RFC 8617 §4.1.2).
	dom, err := addr.ParseDomain(o.Domain)
	if err != nil {
		return nil, nil, fmt.Errorf("arc: sealing domain: %w", err)
	}
	for _, h := range o.HeaderKeys {
		if strings.EqualFold(strings.TrimSpace(h), ASField) {
			return nil, nil, errors.New("arc: the ARC-Message-Signature may not sign ARC-Seal")
		}
	}
	c, reason := collect(hdr)
	if reason != "" {
		// A chain we cannot even group may still carry a newest seal with cv=fail; either
		// way its instance cannot be told reliably, so nothing may be added.
		return nil, &Result{Status: Fail, Reason: reason}, &NoSealError{Reason: reason}
	}
	n := len(c.sets)
	if n >= MaxInstances {
		return nil, nil, &NoSealError{Reason: fmt.Sprintf("chain already has %d sets", n)}
	}
	if n > 0 {
		if tags, err := dkimcore.ParseTags(c.sets[n-1].as.Value()); err == nil {
			if cv, _ := tags.Get("cv"); strings.EqualFold(cv, string(Fail)) {
				return nil, &Result{Status: Fail, Instances: n, Reason: "newest ARC-Seal says cv=fail"},
					&NoSealError{Reason: fmt.Sprintf("newest ARC-Seal (i=%d) says cv=fail", n)}
			}
		}
	}
	chainRes := o.Chain
	if chainRes == nil {
		chainRes = Validate(ctx, hdr, bodies, ValidateOptions{Resolver: o.Resolver})
	}
	cv := chainRes.Status
	i := n + 1
	t := o.Time
	if t.IsZero() {
		t = time.Now()
	}
	ts := strconv.FormatInt(t.Unix(), 10)
	alg, _ := dkimcore.AlgorithmFor(o.Signer)
	inst := strconv.Itoa(i)

	// AAR (RFC 8617 §4.1.1).
	results := o.Results
	if results == nil {
		results = authres.ResultsFor(hdr, o.AuthServID)
	}
	aar := formatAAR(i, o.AuthServID, withChainResult(results, chainRes))

	// AMS (RFC 8617 §4.1.2): DKIM hashing of the body and the chosen fields.
	bh, err := bodies.BodyHash(dkimcore.Relaxed)
	if err != nil {
		return nil, nil, err
	}
	names := amsHeaderNames(hdr, o.HeaderKeys)
	hashInput := dkimcore.AppendHeaderHashInput(nil, hdr, names, dkimcore.Relaxed)
	ams, err := dkimcore.SignField(AMSField, []dkimcore.Tag{
		{Name: "i", Value: inst},
		{Name: "a", Value: alg},
		{Name: "c", Value: "relaxed/relaxed"},
		{Name: "d", Value: string(dom)},
		{Name: "s", Value: o.Selector},
		{Name: "t", Value: ts},
		{Name: "h", Value: strings.Join(names, ":")},
		{Name: "bh", Value: b64(bh)},
	}, hashInput, dkimcore.Relaxed, o.Signer)
	if err != nil {
		return nil, nil, fmt.Errorf("arc: %w", err)
	}

	// AS (RFC 8617 §4.1.3, §5.1.1): with cv=fail only this set is covered.
	var sealInput []byte
	if cv != Fail {
		sealInput = appendSealInput(sealInput, c.sets)
	}
	sealInput = dkimcore.AppendCanonicalField(sealInput, aar, dkimcore.Relaxed)
	sealInput = dkimcore.AppendCanonicalField(sealInput, ams, dkimcore.Relaxed)
	as, err := dkimcore.SignField(ASField, []dkimcore.Tag{
		{Name: "i", Value: inst},
		{Name: "a", Value: alg},
		{Name: "t", Value: ts},
		{Name: "cv", Value: string(cv)},
		{Name: "d", Value: string(dom)},
		{Name: "s", Value: o.Selector},
	}, sealInput, dkimcore.Relaxed, o.Signer)
	if err != nil {
		return nil, nil, fmt.Errorf("arc: %w", err)
	}
	return []dkimcore.Field{as, ams, aar}, chainRes, nil
}

// amsHeaderNames lists the fields the AMS signs, each as often as it occurs.
func amsHeaderNames(hdr dkimcore.Header, keys []string) []string {
	if keys == nil {
		keys = append(append([]string(nil), sign.DefaultHeaderKeys...), "DKIM-Signature")
	}
	var names []string
	seen := map[string]bool{}
	idx := dkimcore.IndexHeader(hdr) // one pass over the fields, however many keys
	for _, k := range keys {
		lk := strings.ToLower(strings.TrimSpace(k))
		if lk == "" || seen[lk] {
			continue
		}
		seen[lk] = true
		for range idx.Count(lk) {
			names = append(names, lk)
		}
	}
	if !seen["from"] || len(names) == 0 {
		names = append([]string{"from"}, names...)
	}
	return names
}

// withChainResult adds "arc=<status>" to results unless an arc entry is already there.
func withChainResult(results []string, r *Result) []string {
	for _, res := range results {
		if method, _, _ := strings.Cut(res, "="); strings.EqualFold(strings.TrimSpace(method), "arc") {
			return results
		}
	}
	return append(results[:len(results):len(results)], "arc="+string(r.Status))
}

// formatAAR formats "ARC-Authentication-Results: i=N; authserv-id; r1; r2", one result per
// folded line (RFC 8617 §4.1.1).
func formatAAR(i int, authservID string, results []string) dkimcore.Field {
	return authres.FormatField(AARField, "i="+strconv.Itoa(i)+"; "+authservID, results)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
