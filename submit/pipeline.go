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
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/arc"
	"sealgate/internal/addr"
	"sealgate/internal/authres"
	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver"
	"sealgate/internal/srs"
	"sealgate/relay"
	"sealgate/sign"
)

// Pipeline holds what the per-message steps need. Accept runs the submission role's steps,
// in order, for one message; submissionSteps is the one place that order is written down.
type Pipeline struct {
	// Hostname names us in Received and Message-ID.
	Hostname string
	// AuthServID is our authserv-id (RFC 8601 §2.5) in Authentication-Results and AARs.
	AuthServID string
	// KeyRing says which keys sign for each From domain.
	KeyRing *sign.KeyRing
	// ARC, when set, seals messages of identities with Seal set.
	ARC *ARCSealer
	// Spool receives accepted messages: the one hand-off to delivery.
	Spool *relay.Spool
	// Resolver fetches keys to validate ARC chains a message already carries.
	Resolver resolver.Resolver
	// CheckResolver answers the recorded checks of clients (SPF, iprev, the keys of their
	// signatures); a resolver.Cache, since a client sends many messages. nil means Resolver.
	CheckResolver resolver.Resolver
	// DKIMExpiration, when positive, adds x= to DKIM signatures.
	DKIMExpiration time.Duration
	Log            *slog.Logger
	// Metrics counts signatures and seals; nil counts nothing.
	Metrics Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SRS rewrites the envelope senders of forwarders with srs on; nil when no secret is
	// configured.
	SRS *srs.SRS
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
	// RequireTLS is MAIL's REQUIRETLS (RFC 8689 §3).
	RequireTLS bool
	// SMTPUTF8 is MAIL's SMTPUTF8 parameter (RFC 6531 §3.4).
	SMTPUTF8 bool
	// EightBit is MAIL's BODY=8BITMIME (RFC 6152).
	EightBit bool
	// UTF8 says the message needs SMTPUTF8 on its way on: the client gave it,
	// and a local part or the header holds UTF-8.
	UTF8 bool
}

// BodyCanonicalizations says which body hashes Accept will need for a message with this
// header: relaxed for our signatures, plus whatever an existing ARC chain uses.
func (p *Pipeline) BodyCanonicalizations(hdr dkimcore.Header) []dkimcore.Canonicalization {
	return arc.RequiredCanonicalizations(hdr)
}

// BodyCanonicalizationsFor is BodyCanonicalizations for a message from id: a forwarder, and
// an identity whose checks are recorded, verifies every DKIM-Signature first, so their
// canonicalisations are hashed too while DATA streams.
func (p *Pipeline) BodyCanonicalizationsFor(id *Identity, hdr dkimcore.Header) []dkimcore.Canonicalization {
	canons := p.BodyCanonicalizations(hdr)
	if id != nil && (id.Forwarder != nil || id.RecordChecks) {
		canons = append(canons, sign.BodyCanonicalizations(hdr)...)
	}
	return canons
}

func (p *Pipeline) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// message is one message on its way through a role's steps: the submission, and what the
// steps have made of it so far.
type message struct {
	*Submission
	qid string
	log *slog.Logger
	now time.Time
	// hdr is the header as the steps have changed it; fields are prepended or appended,
	// never edited in place.
	hdr dkimcore.Header
	// fromDomains are the From domains of hdr, set by the policy step; a step that
	// changes From (rewriteFrom) sets it to nil.
	fromDomains []addr.Domain
	signatures  int
	// dkim names the signatures the sign step added, for the send log (Envelope.DKIM).
	dkim []relay.DKIMSignature
	// committed is set once the spool step hands the message to the spool, which from
	// then on cleans up after itself.
	committed bool
	queueID   string
	// fwd is what a forwarder's verify step found (forwarder.go); nil for submissions.
	fwd *forwarded
	// client is what the "verify client signatures" step found (clientchecks.go); nil
	// when the identity does not record checks.
	client *clientChecks
}

// step is one named per-message step. A step returns an *smtp.SMTPError for the client to
// refuse the message.
type step struct {
	name string
	run  func(p *Pipeline, ctx context.Context, m *message) error
}

// submissionSteps are the steps of the submission role, in order. The forwarder role
// composes its own list from the same kind of steps: forwarderSteps, below.
//
//  1. policy: every From, Sender, Resent-From and Resent-Sender address against what the
//     identity may send as (credential upgrade is refused here, before any signing);
//  2. verify client signatures: for identities with RecordChecks, the dkim= result of each
//     DKIM-Signature the client made and, for client networks and certificates, SPF and
//     iprev of the client's address, for our AAR (clientchecks.go); never a refusal;
//  3. strip forged results: remove Authentication-Results claiming our authserv-id (RFC 8601
//     §5);
//  4. trace: add Received (RFC 5321 §4.4, RFC 3848), and Date and Message-ID if missing (RFC
//     6409 §8), unless a client signature that verified covers the missing field (it signed
//     its absence); every edit of the header happens before signing, and is logged;
//  5. sign: DKIM-sign for each From domain with the keys the key ring gives (refuse if there
//     are none, unless the domain and the identity allow unsigned mail);
//  6. seal: ARC-seal with our AAR (auth=pass smtp.auth=..., and the recorded checks) and cv
//     from the existing chain;
//  7. spool: commit to the spool, fsynced before we answer 250.
//
// The body is streamed into the spool and the body hasher, and bare CR or LF refused, while
// DATA is read (session.go), before the steps run: the steps work on the header and the body
// hashes.
var submissionSteps = []step{
	{"policy", (*Pipeline).checkPolicy},
	{"verify client signatures", (*Pipeline).verifyClient},
	{"strip forged results", (*Pipeline).stripForgedResults},
	{"trace", (*Pipeline).addTrace},
	{"sign", (*Pipeline).signDKIM},
	{"seal", (*Pipeline).sealARC},
	{"spool", (*Pipeline).spool},
}

// forwarderSteps are the steps of the forwarder role (a mailing list or forwarder relaying
// mail whose author is someone else), in order; the steps are in forwarder.go.
//
//  1. verify: every DKIM-Signature (sign.VerifyHeader) and the ARC chain (arc.Validate) of
//     the message as it came, before anything changes it; the Authentication-Results of
//     the forwarder's trusted authserv-ids are kept for our AAR. A chain that failed only
//     for want of a key is refused for now (451), to be sealed once it can be told;
//  2. strip forged results, as for submissions; there is no From check: the author is
//     someone else;
//  3. from rewrite: with from_rewrite always, or auto when the author's domain publishes
//     p=quarantine or p=reject (RFC 9989) and no aligned DKIM signature verified, From
//     becomes "Author via List <list address>", Reply-To the author (unless one is there)
//     and X-Original-From the original From;
//  4. srs: a plain forwarder's envelope sender becomes an SRS address in its own domain,
//     which must be within may_send_as;
//  5. trace, as for submissions;
//  6. sign: one DKIM signature per key of the forwarder's sign_as domain, never the author's;
//  7. seal: ARC-seal with the chain status found in step 1, our dkim= and arc= results,
//     the trusted results and auth=pass; a failed chain gets no new set, and the log says so;
//  8. spool, as for submissions.
var forwarderSteps = []step{
	{"verify", (*Pipeline).verifyForwarded},
	{"strip forged results", (*Pipeline).stripForgedResults},
	{"from rewrite", (*Pipeline).rewriteFrom},
	{"srs", (*Pipeline).rewriteSender},
	{"trace", (*Pipeline).addTrace},
	{"sign", (*Pipeline).signAsForwarder},
	{"seal", (*Pipeline).sealForwarded},
	{"spool", (*Pipeline).spool},
}

// Accept runs the steps of s's identity's role (submissionSteps or forwarderSteps) and
// returns the queue id once the message is durably spooled. A refusal is an
// *smtp.SMTPError for the client; the body is then removed from the spool and nothing was
// signed.
func (p *Pipeline) Accept(ctx context.Context, s *Submission) (queueID string, err error) {
	m := &message{Submission: s, qid: s.Body.ID(), hdr: s.Header, now: p.now()}
	m.log = p.Log.With("queue_id", m.qid, "identity", s.Identity.Name, "client_ip", s.ClientIP.String())
	steps := submissionSteps
	if s.Identity.Forwarder != nil {
		steps = forwarderSteps
	}
	if err := p.run(ctx, steps, m); err != nil {
		return "", err
	}
	return m.queueID, nil
}

// run runs steps in order over m, stopping at the first error; unless the message was handed
// to the spool, its body is then removed from the spool.
func (p *Pipeline) run(ctx context.Context, steps []step, m *message) error {
	for _, st := range steps {
		if err := st.run(p, ctx, m); err != nil {
			m.log.Debug("message stopped", "step", st.name, "err", err)
			if !m.committed {
				m.Body.Abort()
			}
			return err
		}
	}
	return nil
}

func (p *Pipeline) checkPolicy(_ context.Context, m *message) error {
	if serr := CheckHeaderSenders(m.Identity, m.hdr); serr != nil {
		m.log.Warn("message refused by sender policy", "reason", string(serr.Reason), "reply", serr.Code, "reply_text", serr.Message)
		return serr
	}
	var err error
	if m.fromDomains, err = headerFromDomains(m.hdr); err != nil {
		m.log.Warn("message refused: From domain", "reason", string(ReasonFromDomainUnparsable), "err", err)
		return refusal(ReasonFromDomainUnparsable, 550, smtp.EnhancedCode{5, 6, 0}, err.Error())
	}
	return nil
}

func (p *Pipeline) stripForgedResults(_ context.Context, m *message) error {
	var removed int
	m.hdr, removed = authres.Strip(m.hdr, p.AuthServID, p.Hostname)
	if removed > 0 {
		m.log.Info("removed Authentication-Results claiming our authserv-id", "count", removed)
	}
	return nil
}

func (p *Pipeline) addTrace(_ context.Context, m *message) error {
	var added []dkimcore.Field
	var names, kept []string
	if !m.hdr.Has("Date") {
		if m.mayAdd("Date") {
			added = append(added, dkimcore.Field("Date: "+m.now.Format(time.RFC1123Z)+"\r\n"))
			names = append(names, "Date")
		} else {
			kept = append(kept, "Date")
		}
	}
	if !m.hdr.Has("Message-ID") {
		if m.mayAdd("Message-ID") {
			added = append(added, dkimcore.Field("Message-ID: <"+randomToken()+"@"+p.Hostname+">\r\n"))
			names = append(names, "Message-ID")
		} else {
			kept = append(kept, "Message-ID")
		}
	}
	if len(names) > 0 {
		m.log.Info("added missing header fields", "fields", strings.Join(names, ","))
	}
	if len(kept) > 0 {
		m.log.Info("missing header fields not added: a client signature that verifies covers their absence", "fields", strings.Join(kept, ","))
	}
	hdr := make(dkimcore.Header, 0, len(m.hdr)+len(added)+1)
	hdr = append(hdr, p.received(m.Submission, m.qid, m.now))
	hdr = append(hdr, m.hdr...)
	m.hdr = append(hdr, added...)
	return nil
}

// signDKIM adds one signature per key for each From domain, with the signing domain the key
// ring gives (the From domain, or a parent that signs for its subdomains); a signing domain
// shared by several From domains signs once.
func (p *Pipeline) signDKIM(_ context.Context, m *message) error {
	var sigs []dkimcore.Field
	var signed []addr.Domain
	for _, d := range m.fromDomains {
		dk, ok := p.KeyRing.Lookup(d)
		if !ok || len(dk.Keys) == 0 {
			if ok && dk.RelayUnsigned && m.Identity.AllowUnsigned {
				m.log.Info("relaying unsigned: domain has no DKIM keys", "domain", d)
				continue
			}
			m.log.Warn("message refused: no DKIM keys for From domain", "reason", string(ReasonNoDKIMKeys), "domain", d)
			return errNotConfigured(d)
		}
		if slices.Contains(signed, dk.Domain) {
			continue
		}
		signed = append(signed, dk.Domain)
		o := dk.Options()
		o.Time, o.Expiration = m.now, p.DKIMExpiration
		fields, err := sign.Sign(m.hdr, m.Bodies, o)
		if err != nil {
			m.log.Error("DKIM signing failed", "reason", string(ReasonSigningFailed), "domain", dk.Domain, "err", err)
			return errTemporary(ReasonSigningFailed, "signing failed")
		}
		sigs = append(sigs, fields...)
		m.dkim = append(m.dkim, signatureIDs(o)...)
	}
	m.hdr = append(sigs, m.hdr...)
	m.signatures = len(sigs)
	for _, d := range signed {
		p.metrics().Signed(d.String())
	}
	return nil
}

func (p *Pipeline) sealARC(ctx context.Context, m *message) error {
	if p.ARC == nil || !m.Identity.Seal {
		return nil
	}
	results := append([]string{p.authResult(m.Submission)}, m.recordedResults()...)
	chain, sealed, err := p.arcSeal(ctx, m, results, nil, slog.LevelInfo)
	if sealed && chain.Status != arc.None {
		m.log.Info("sealed existing ARC chain", "cv", chain.Status, "reason", chain.Reason)
	}
	return err
}

// arcSeal is the one ARC sealing of both pipelines: it adds an ARC set (RFC 8617 §4.1)
// with results in its AAR in front of m's header and counts it. chain is the incoming
// chain as the step before validated it (the forwarder's verify step), or nil to let
// arc.Seal validate it. It returns the chain and whether a set was added. A message
// arc.Seal declines to seal (NoSealError) goes on unsealed, logged at noSealLevel; any
// other failure defers it (4.3.0).
func (p *Pipeline) arcSeal(ctx context.Context, m *message, results []string, chain *arc.Result, noSealLevel slog.Level) (*arc.Result, bool, error) {
	fields, chain, err := arc.Seal(ctx, m.hdr, m.Bodies, &arc.SealOptions{
		Domain: p.ARC.Domain, Selector: p.ARC.Selector, Signer: p.ARC.Signer,
		AuthServID: p.AuthServID, Results: results, Time: m.now, Resolver: p.Resolver, Chain: chain,
	})
	var ns *arc.NoSealError
	switch {
	case errors.As(err, &ns):
		m.log.Log(ctx, noSealLevel, "not ARC-sealed", "arc_reason", ns.Reason)
		return chain, false, nil
	case err != nil:
		m.log.Error("ARC sealing failed", "reason", string(ReasonSealingFailed), "err", err)
		return chain, false, errTemporary(ReasonSealingFailed, "sealing failed")
	}
	m.hdr = append(fields, m.hdr...)
	p.metrics().Sealed(p.ARC.Domain)
	return chain, true, nil
}

func (p *Pipeline) spool(_ context.Context, m *message) error {
	env := &relay.Envelope{
		From: m.From, To: m.To, Identity: m.Identity.Name, ReceivedAt: m.now,
		EnvID: m.EnvID, Ret: m.Ret, Notify: m.Notify, ORcpt: m.ORcpt, RequireTLS: m.RequireTLS,
		DKIM: m.dkim,
	}
	from := m.fromDomains // the policy step's; the forwarder's steps leave it nil
	if len(from) == 0 {
		from, _ = headerFromDomains(m.hdr)
	}
	if len(from) > 0 {
		env.HeaderFrom = from[0].String()
	}
	// The PRA (RFC 4407 §2) of the header as it leaves us, for SUBMITTER (RFC 4405).
	if pra, _, ok := addr.PRA(m.hdr); ok {
		env.Submitter = pra.String()
	}
	env.UTF8, env.EightBit = m.UTF8, m.EightBit // RFC 6531 §3.4, RFC 6152
	m.committed = true                          // Commit cleans up after itself on failure
	qid, err := m.Body.Commit(env, m.hdr.Bytes())
	if err != nil {
		m.log.Error("spool commit failed", "reason", string(ReasonSpoolFailed), "err", err)
		return errTemporary(ReasonSpoolFailed, "could not queue the message")
	}
	m.queueID = qid
	m.log.Info("message accepted", "from", m.From, "rcpts", len(m.To), "size", env.Size, "dkim_signatures", m.signatures)
	return nil
}

// signatureIDs names the signatures sign.Sign makes with o: one per key.
func signatureIDs(o *sign.Options) []relay.DKIMSignature {
	out := make([]relay.DKIMSignature, 0, len(o.Keys))
	for _, k := range o.Keys {
		out = append(out, relay.DKIMSignature{Domain: o.Domain, Selector: k.Selector})
	}
	return out
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
	return r + " smtp.auth=" + authres.QuoteValue(name)
}

// pseudonym is a keyed hash of a login: stable per login, meaningless without the key.
func pseudonym(key []byte, login string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strings.ToLower(login)))
	return "u-" + hex.EncodeToString(m.Sum(nil)[:12])
}

// received builds our Received field (RFC 5321 §4.4; "with" keyword per RFC 3848,
// UTF8SMTP... for a transaction with SMTPUTF8, RFC 6531 §3.7.3).
func (p *Pipeline) received(s *Submission, qid string, now time.Time) dkimcore.Field {
	proto := "ESMTP"
	if s.SMTPUTF8 {
		proto = "UTF8SMTP"
	}
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
func errNotConfigured(d addr.Domain) *Refusal {
	return refusal(ReasonNoDKIMKeys, 550, smtp.EnhancedCode{5, 7, 1},
		fmt.Sprintf("From domain %s is not configured for DKIM signing on this relay", d.Unicode()))
}

// errTemporary is a local failure the client should retry; the detail is logged, not sent.
func errTemporary(r Reason, what string) *Refusal {
	return refusal(r, 451, smtp.EnhancedCode{4, 3, 0}, "Local error: "+what+"; try again later")
}
