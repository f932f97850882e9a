// Package submit is sealgate's submission side: the SMTP listeners and sessions, who a
// client is (login, client certificate or client network) and what it may send as, the
// checks that refuse anything else, and the per-message pipeline (pipeline.go) that takes an
// accepted message through sender policy, DKIM signing with the keys sign.KeyRing gives, ARC
// sealing and into the spool.
//
// It implements message submission rules from RFC 6409 (§4.3 authorization and
// "enforce submission rights", §8 sender checks), SMTP AUTH (RFC 4954) with the
// SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) mechanisms, and the
// originator-field rules of RFC 5322 §3.6.2 and §3.6.6 (RFC 6854 groups), and
// SMTPUTF8 (RFC 6531, RFC 6532): UTF-8 addresses and header fields in a transaction
// whose MAIL asked for it, refused with 5.6.7 otherwise.
//
// The core promise: a client never gets mail signed for an address or domain it
// may not use. Every envelope sender and every From, Sender, Resent-From and
// Resent-Sender mailbox must match one of the identity's MaySendAs patterns
// (addr.Pattern), and a display name may not show another address. Domains are compared
// as addr.Domain (U-label and A-label forms alike), and a domain that only looks like
// a permitted one is refused like any other (addr.LookalikeError: 5.7.1).
//
// Identities with the forwarder role (mailing lists and forwarders, forwarder.go) are the
// exception to the From rule: their mail's author is someone else, so it is verified first,
// signed as the forwarder's own domain and ARC-sealed, and its From (for DMARC) and envelope
// sender (SRS) are rewritten where the configuration says so.
//
// It deliberately does not: own the configuration (package internal/config loads and
// checks it, including the users file's format), rewrite a submitter's senders (a refusal
// is the only answer), support delegation ("send on behalf of"), apply sub-address or alias
// rules, or compare the envelope sender with the header From (each is checked on its own).
package submit

import (
	"strings"

	"sealgate/internal/addr"
	"sealgate/internal/config"
)

// IdentityKind says how a client proved who it is.
type IdentityKind int

// The kinds of identity.
const (
	// KindLogin is a SASL login (PLAIN or LOGIN) checked against the users file.
	KindLogin IdentityKind = iota + 1
	// KindClientCert is a TLS client certificate mapped by subject or fingerprint.
	KindClientCert
	// KindClientNetwork is a trusted client network (a client organisation's
	// smart host), matched by source address.
	KindClientNetwork
)

// String returns the words used in replies: "login", "client certificate",
// "client network".
func (k IdentityKind) String() string {
	switch k {
	case KindLogin:
		return "login"
	case KindClientCert:
		return "client certificate"
	case KindClientNetwork:
		return "client network"
	}
	return "identity"
}

// Identity is an authenticated client and what it may do. Build it with
// NewIdentity so that defaults apply; an Identity is read-only once in use.
type Identity struct {
	// Name is the login or the configured client name, used in logs, replies
	// and the AAR smtp.auth property.
	Name string
	// Kind says how the client was identified.
	Kind IdentityKind
	// MaySendAs lists the addresses the client may use. Empty means none.
	MaySendAs []addr.Pattern
	// AllowNullSender permits MAIL FROM:<> (bounces, auto-replies).
	AllowNullSender bool
	// Seal turns ARC sealing on for this client's mail (default true).
	Seal bool
	// RatePerMinute caps accepted messages per minute; 0 means no cap.
	RatePerMinute int
	// MaxRecipients caps RCPT TO per message; 0 means the listener's limit.
	MaxRecipients int
	// AllowUnsigned lets mail for a domain without DKIM keys be relayed
	// unsigned when that domain is configured "unsigned: relay".
	AllowUnsigned bool
	// RecordChecks records in our AAR what can be verified of how the client handed a
	// message over: the dkim= result of each of its signatures, and for a client network or
	// certificate SPF and iprev of its address (default true).
	RecordChecks bool
	// Forwarder, when set, makes the client a mailing list or forwarder: its messages take
	// forwarderSteps (forwarder.go) instead of submissionSteps.
	Forwarder *Forwarder
}

// NewIdentity returns an Identity with the defaults: sealing and recorded checks on, no
// null sender, no rate cap.
func NewIdentity(name string, kind IdentityKind, maySendAs []addr.Pattern) *Identity {
	return &Identity{Name: name, Kind: kind, MaySendAs: maySendAs, Seal: true, RecordChecks: true}
}

// String describes the identity for replies and logs: "login alice@client.example".
func (id *Identity) String() string {
	if id == nil {
		return "unauthenticated client"
	}
	return id.Kind.String() + " " + id.Name
}

// Permits reports whether the identity may use address a. Address literals and
// addresses without a domain are never permitted.
func (id *Identity) Permits(a addr.Address) bool {
	if id == nil || a.Domain == "" || a.AddressLiteral != "" {
		return false
	}
	for _, p := range id.MaySendAs {
		if p.Matches(a) {
			return true
		}
	}
	return false
}

// AllowedString lists the identity's patterns for replies:
// "*@client.example, bob@other.example", or "nothing".
func (id *Identity) AllowedString() string {
	if id == nil || len(id.MaySendAs) == 0 {
		return "nothing"
	}
	s := make([]string, len(id.MaySendAs))
	for i, p := range id.MaySendAs {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// IdentityFromRules returns the Identity of a configured client network
// (KindClientNetwork) or client certificate (KindClientCert) named name.
func IdentityFromRules(name string, kind IdentityKind, r config.SenderRules) (*Identity, error) {
	ps, err := r.Patterns()
	if err != nil {
		return nil, err
	}
	id := NewIdentity(name, kind, ps)
	id.AllowNullSender = r.AllowNullSender
	id.Seal = r.Sealed()
	id.RatePerMinute = r.RatePerMinute
	id.MaxRecipients = r.MaxRecipients
	id.AllowUnsigned = r.AllowUnsigned
	id.RecordChecks = r.RecordsChecks()
	if id.Forwarder, err = NewForwarder(r.ForwarderRules); err != nil {
		return nil, err
	}
	return id, nil
}
