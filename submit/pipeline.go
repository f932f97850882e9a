package submit

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/arc"
	"sealgate/internal/addr"
	"sealgate/internal/authres"
	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/relay"
	"sealgate/sign"
)

// Pipeline holds what the per-message steps need. Accept runs the steps, in order, for one
// message; it is the one place that order is written down.
type Pipeline struct {
	// Hostname names us in Received and Message-ID.
	Hostname string
	// AuthServID is our authserv-id (RFC 8601 §2.5) in Authentication-Results and AARs.
	AuthServID string
	// Domains maps each From domain we sign for to its keys.
	Domains map[addr.Domain]*DomainSigning
	// ARC, when set, seals messages of identities with Seal set.
	ARC *ARCSealer
	// Spool receives accepted messages: the one hand-off to delivery.
	Spool *relay.Spool
	// Resolver fetches keys to validate ARC chains a message already carries.
	Resolver resolver.Resolver
	// DKIMExpiration, when positive, adds x= to DKIM signatures.
	DKIMExpiration time.Duration
	Log            *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DomainSigning is the DKIM configuration of one From domain.
type DomainSigning struct {
	Keys []sign.Key
	// RelayUnsigned relays mail for this domain unsigned when it has no keys, for
	// identities that allow it. Otherwise such mail is refused.
	RelayUnsigned bool
}

// ARCSealer is the relay's ARC key and what its AAR may say about submitters.
type ARCSealer struct {
	Domain, Selector string
	Signer           crypto.Signer
	// PseudonymKey, when set, replaces the login in smtp.auth by a keyed hash of it, so that
	// recipients learn which account sent a message only if we tell them.
	PseudonymKey []byte
	// RecordClientIP adds the client's IP address to the AAR as a comment.
	RecordClientIP bool
}

// Submission is one message on its way through the pipeline: the session has checked the
// envelope, read the header, and streamed the body into the spool and a body hasher.
type Submission struct {
	Identity *Identity
	// Authenticated is true when the client used SMTP AUTH (RFC 3848 "A").
	Authenticated bool
	From          string // MAIL FROM, "" for <>
	To            []string
	ClientIP      net.IP
	HELO          string
	TLS           *tls.ConnectionState
	Header        dkimcore.Header
	Body          *relay.Incoming
	Bodies        dkimcore.BodyHashes
	// DSN parameters to pass on (RFC 3461).
	EnvID, Ret    string
	Notify, ORcpt []string
}

// BodyCanonicalizations says which body hashes Accept will need for a message with this
// header: relaxed for our signatures, plus whatever an existing ARC chain uses.
func (p *Pipeline) BodyCanonicalizations(hdr dkimcore.Header) []dkimcore.Canonicalization {
	return arc.RequiredCanonicalizations(hdr)
}

func (p *Pipeline) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Accept runs every per-message step for s and returns the queue id once the message is
// durably spooled. A refusal is an *smtp.SMTPError for the client; the body is then removed
// from the spool and nothing was signed. The steps, in order:
//
//  1. sender policy: every From, Sender, Resent-From and Resent-Sender address against what
//     the identity may send as (credential upgrade is refused here, before any signing);
//  2. remove Authentication-Results claiming our authserv-id (forgeries, RFC 8601 §5);
//  3. add Received (RFC 5321 §4.4, RFC 3848), and Date and Message-ID if missing (RFC 6409 §8);
//  4. DKIM-sign for the From domain with its keys (refuse if it has none, unless allowed);
//  5. ARC-seal with our AAR (auth=pass smtp.auth=...) and cv from the existing chain;
//  6. commit to the spool: fsynced before we answer 250.
func (p *Pipeline) Accept(ctx context.Context, s *Submission) (queueID string, err error) {
	id := s.Identity
	qid := s.Body.ID()
	log := p.Log.With("queue_id", qid, "identity", id.Name, "client_ip", s.ClientIP.String())
	committed := false
	defer func() {
		if !committed {
			s.Body.Abort()
		}
	}()

	// 1. Sender policy.
	if serr := CheckHeaderSenders(id, s.Header); serr != nil {
		log.Warn("message refused by sender policy", "reason", serr.Message)
		return "", serr
	}
	fromDomains, err := headerFromDomains(s.Header)
	if err != nil {
		return "", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: err.Error()}
	}

	// 2. Forged Authentication-Results.
	hdr, removed := authres.Strip(s.Header, p.AuthServID, p.Hostname)
	if removed > 0 {
		log.Info("removed Authentication-Results claiming our authserv-id", "count", removed)
	}

	// 3. Trace and RFC 6409 fixes; all edits happen before signing.
	now := p.now()
	var added []dkimcore.Field
	if !hdr.Has("Date") {
		added = append(added, dkimcore.Field("Date: "+now.Format(time.RFC1123Z)+"\r\n"))
	}
	if !hdr.Has("Message-ID") {
		added = append(added, dkimcore.Field("Message-ID: <"+randomToken()+"@"+p.Hostname+">\r\n"))
	}
	hdr = append(hdr, added...)
	hdr = append(dkimcore.Header{p.received(s, qid, now)}, hdr...)

	// 4. DKIM, one signature per key of each From domain.
	var sigs []dkimcore.Field
	for _, d := range fromDomains {
		ds := p.Domains[d]
		if ds == nil || len(ds.Keys) == 0 {
			if ds != nil && ds.RelayUnsigned && id.AllowUnsigned {
				log.Info("relaying unsigned: domain has no DKIM keys", "domain", d)
				continue
			}
			log.Warn("message refused: no DKIM keys for From domain", "domain", d)
			return "", errNotConfigured(d)
		}
		fields, err := sign.Sign(hdr, s.Bodies, &sign.Options{Domain: string(d), Keys: ds.Keys, Time: now, Expiration: p.DKIMExpiration})
		if err != nil {
			log.Error("DKIM signing failed", "domain", d, "err", err)
			return "", errTemporary("signing failed")
		}
		sigs = append(sigs, fields...)
	}
	hdr = append(sigs, hdr...)

	// 5. ARC.
	if p.ARC != nil && id.Seal {
		fields, chain, err := arc.Seal(ctx, hdr, s.Bodies, &arc.SealOptions{
			Domain: p.ARC.Domain, Selector: p.ARC.Selector, Signer: p.ARC.Signer,
			AuthServID: p.AuthServID, Results: []string{p.authResult(s)}, Time: now, Resolver: p.Resolver,
		})
		var ns *arc.NoSealError
		switch {
		case errors.As(err, &ns):
			log.Info("not ARC-sealed", "reason", ns.Reason)
		case err != nil:
			log.Error("ARC sealing failed", "err", err)
			return "", errTemporary("sealing failed")
		default:
			hdr = append(fields, hdr...)
			if chain.Status != arc.None {
				log.Info("sealed existing ARC chain", "cv", chain.Status, "reason", chain.Reason)
			}
		}
	}

	// 6. Spool.
	env := &relay.Envelope{
		From: s.From, To: s.To, Identity: id.Name, ReceivedAt: now,
		EnvID: s.EnvID, Ret: s.Ret, Notify: s.Notify, ORcpt: s.ORcpt,
	}
	committed = true // Commit cleans up after itself on failure
	queueID, err = s.Body.Commit(env, hdr.Bytes())
	if err != nil {
		log.Error("spool commit failed", "err", err)
		return "", errTemporary("could not queue the message")
	}
	log.Info("message accepted", "from", s.From, "rcpts", len(s.To), "size", env.Size, "dkim_signatures", len(sigs))
	return queueID, nil
}

// headerFromDomains returns the distinct domains of the From mailboxes, in order.
func headerFromDomains(hdr dkimcore.Header) ([]addr.Domain, error) {
	var out []addr.Domain
	for _, v := range hdr.Values("From") {
		mbs, err := addr.ParseHeaderMailboxes(v)
		if err != nil {
			return nil, fmt.Errorf("From header field cannot be parsed: %v", err)
		}
		for _, mb := range mbs {
			dup := false
			for _, d := range out {
				dup = dup || d == mb.Addr.Domain
			}
			if !dup {
				out = append(out, mb.Addr.Domain)
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("message has no From address")
	}
	return out, nil
}

// authResult is the AAR entry describing how the submitter authenticated (RFC 8601 §2.7.4).
func (p *Pipeline) authResult(s *Submission) string {
	name := s.Identity.Name
	if len(p.ARC.PseudonymKey) > 0 {
		name = pseudonym(p.ARC.PseudonymKey, name)
	}
	r := "auth=pass"
	if p.ARC.RecordClientIP && s.ClientIP != nil {
		r += " (client [" + s.ClientIP.String() + "])"
	}
	return r + " smtp.auth=" + authValue(name)
}

// authValue quotes a pvalue that is not a plain token or address (RFC 8601 §2.2).
func authValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\"\\;()=/,[]:<>") {
		return v
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// pseudonym is a keyed hash of a login: stable per login, meaningless without the key.
func pseudonym(key []byte, login string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strings.ToLower(login)))
	return "u-" + hex.EncodeToString(m.Sum(nil)[:12])
}

// received builds our Received field (RFC 5321 §4.4; "with" keyword per RFC 3848).
func (p *Pipeline) received(s *Submission, qid string, now time.Time) dkimcore.Field {
	proto := "ESMTP"
	if s.TLS != nil {
		proto += "S"
	}
	if s.Authenticated {
		proto += "A"
	}
	var b strings.Builder
	b.WriteString("Received: from ")
	helo := s.HELO
	if helo == "" || strings.ContainsAny(helo, " \t\r\n()") {
		helo = "unknown"
	}
	b.WriteString(helo)
	if s.ClientIP != nil {
		b.WriteString(" ([" + s.ClientIP.String() + "])")
	}
	b.WriteString("\r\n\tby " + p.Hostname + " (sealgate) with " + proto + " id " + qid)
	if s.TLS != nil {
		b.WriteString("\r\n\t(" + tls.VersionName(s.TLS.Version) + " " + tls.CipherSuiteName(s.TLS.CipherSuite) + ")")
	}
	name := s.Identity.Name
	if p.ARC != nil && len(p.ARC.PseudonymKey) > 0 {
		name = pseudonym(p.ARC.PseudonymKey, name)
	}
	b.WriteString("\r\n\t(" + s.Identity.Kind.String() + " " + strings.NewReplacer("(", "", ")", "", "\\", "").Replace(name) + ")")
	if len(s.To) == 1 {
		b.WriteString("\r\n\tfor <" + s.To[0] + ">")
	}
	b.WriteString(";\r\n\t" + now.Format(time.RFC1123Z) + "\r\n")
	return dkimcore.Field(b.String())
}

func randomToken() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// errNotConfigured refuses mail for a From domain we have no keys for: signing with another
// domain's key would not align, and relaying unsigned was not allowed.
func errNotConfigured(d addr.Domain) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: fmt.Sprintf("From domain %s is not configured for DKIM signing on this relay", d.Unicode())}
}

// errTemporary is a local failure the client should retry; the detail is logged, not sent.
func errTemporary(what string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error: " + what + "; try again later"}
}
