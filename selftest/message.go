package selftest

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sealgate/verify"
	"strings"
	"time"

	"sealgate/keys"
)

// Egress is one way mail leaves the relay: the source address receivers see and the name
// it gives in EHLO.
type Egress struct {
	IP   netip.Addr `json:"ip"`
	HELO string     `json:"helo"`
	// Note says where the pair came from when it was not configured ("the host's address").
	Note string `json:"note,omitempty"`
}

// LocalKey is a DKIM key the relay signs with, for the fixes that publish its record.
type LocalKey struct {
	Domain, Selector string
	Signer           crypto.Signer
}

// MessageOptions configures Message.
type MessageOptions struct {
	// Options configure the inbound verifier run on what the receiving server got.
	verify.Options
	// Egress are the addresses and names the message is verified as coming from; at least
	// one.
	Egress []Egress
	// Send hands the message to the relay and has the relay deliver it to the SMTP server
	// at server (host:port), as it would to a real receiver: through the pipeline, the spool
	// and the outbound client. An error is the relay's refusal or a failed delivery.
	Send func(ctx context.Context, server string) error
	// Keys are the relay's DKIM keys, used to print the record a missing key needs.
	Keys []LocalKey
	// Forwarder, when the identity is a forwarder, adds the forwarder section to each
	// egress: what receivers see of the author's domain, From rewriting and ARC.
	Forwarder *Forwarder
}

// MessageReport is the outcome of Message.
type MessageReport struct {
	// Refused is the relay's refusal or the failed delivery; the rest is then empty.
	Refused string `json:"refused,omitempty"`
	// The envelope and size as the receiving server got them.
	MailFrom  string          `json:"mail_from,omitempty"`
	Submitter string          `json:"submitter,omitempty"`
	Rcpts     []string        `json:"rcpts,omitempty"`
	Size      int             `json:"size,omitempty"`
	Egress    []EgressVerdict `json:"egress,omitempty"`
	// Ready: for every egress a strict receiver accepts the message, DMARC passes under
	// both RFCs through an aligned identifier (so p=reject would lose none of this mail),
	// and no check failed.
	Ready bool `json:"ready"`
	// SPFTimedOut: for some egress SPF could not be checked (its DNS timed out), and no
	// other egress failed: the report says "could not check SPF (DNS timed out)" rather
	// than NOT READY.
	SPFTimedOut bool `json:"spf_timed_out,omitempty"`
}

// EgressVerdict is the message as seen from one egress.
type EgressVerdict struct {
	Egress   Egress    `json:"egress"`
	Findings []Finding `json:"findings"`
	// DMARCPass: an aligned identifier passes under both RFCs; Through names it
	// ("dkim d=client.example (strict)").
	DMARCPass bool   `json:"dmarc_pass"`
	Through   string `json:"through,omitempty"`
	// LostAtReject: a receiver applying p=reject would refuse this mail.
	LostAtReject bool `json:"lost_at_reject"`
	// Ready: DMARC passes, a strict receiver accepts, and no finding failed.
	Ready bool `json:"ready"`
	// SPFTimedOut: SPF could not be checked (its DNS timed out), so the verdict neither
	// passes nor fails the domain.
	SPFTimedOut bool `json:"spf_timed_out,omitempty"`
	// Verdict is the line summing it up.
	Verdict string `json:"verdict"`
	// Forwarder is the forwarder section, for a forwarder identity.
	Forwarder *ForwarderView `json:"forwarder,omitempty"`
	Report    *verify.Report `json:"report"`
}

// Message sends a message through the relay (o.Send) to an in-process receiving server that
// offers SUBMITTER, and verifies exactly the bytes and envelope it received as a strict
// receiver would, from each egress. Every check gets a status, its reason and a fix. The
// error is for a test that could not run (no Send, no egress, a broken verifier input); a
// relay that refuses the message is a report with Refused set.
func Message(ctx context.Context, o *MessageOptions) (*MessageReport, error) {
	if o == nil || o.Send == nil {
		return nil, errors.New("selftest: MessageOptions.Send is required")
	}
	if len(o.Egress) == 0 {
		return nil, errors.New("selftest: no egress to verify from")
	}
	if o.Resolver == nil {
		return nil, errors.New("selftest: Options.Resolver is required")
	}
	name := o.AuthServID
	if name == "" {
		name = "localhost"
	}
	rv, err := startReceiver(name)
	if err != nil {
		return nil, err
	}
	sendErr := o.Send(ctx, rv.addr())
	got := rv.close()
	rep := &MessageReport{}
	if sendErr != nil {
		rep.Refused = sendErr.Error()
		return rep, nil
	}
	if len(got) == 0 {
		rep.Refused = "the relay reported the message sent, but the receiving server got none"
		return rep, nil
	}
	rx := got[0]
	rep.MailFrom, rep.Submitter, rep.Rcpts, rep.Size = rx.MailFrom, rx.Submitter, rx.Rcpts, len(rx.Message)
	mailFrom := rx.MailFrom
	if mailFrom == "" {
		mailFrom = "<>"
	}
	rep.Ready = true
	for _, eg := range o.Egress {
		env := verify.Envelope{IP: eg.IP, HELO: eg.HELO, MailFrom: mailFrom, Submitter: rx.Submitter}
		r, err := verify.Verify(ctx, env, bytes.NewReader(rx.Message), &o.Options)
		if err != nil {
			return nil, err
		}
		ev := judge(ctx, o, eg, r)
		if o.Forwarder != nil {
			ev.Forwarder = viewForwarded(ctx, o, rx.Message, r)
			ev.Verdict += "; forwarded: " + ev.Forwarder.Verdict
		}
		rep.Ready = rep.Ready && ev.Ready
		rep.Egress = append(rep.Egress, ev)
	}
	failed := false
	for _, ev := range rep.Egress {
		rep.SPFTimedOut = rep.SPFTimedOut || ev.SPFTimedOut
		failed = failed || !ev.Ready && !ev.SPFTimedOut
	}
	rep.SPFTimedOut = rep.SPFTimedOut && !failed
	return rep, nil
}

// judge turns a verifier report into findings with fixes and the verdict line.
func judge(ctx context.Context, o *MessageOptions, eg Egress, r *verify.Report) EgressVerdict {
	ev := EgressVerdict{Egress: eg, Report: r}
	add := func(f Finding) { ev.Findings = append(ev.Findings, f) }
	tctx, cancel := context.WithTimeout(ctx, timeoutOf(&o.Options))
	defer cancel()
	res := o.Resolver

	for _, d := range r.DNSBL {
		f := Finding{Check: "dnsbl", Result: d.Result, Status: StatusPass, Reason: fmt.Sprintf("%s in %s", eg.IP, d.Zone)}
		switch d.Result {
		case "listed":
			f.Status, f.Fix = StatusFail, fmt.Sprintf("%s is listed (%s %s): ask %s for delisting, and find why it was listed", eg.IP, strings.Join(d.Codes, ","), d.Text, d.Zone)
		case "not listed":
		default:
			f.Status, f.Reason = StatusWarn, f.Reason+": "+d.Reason
		}
		add(f)
	}
	if ir := r.IPRev; ir != nil {
		f := Finding{Check: "iprev", Result: ir.Result, Status: StatusPass, Reason: ir.Reason}
		if ir.Result != "pass" {
			f.Status = StatusWarn
			f.Fix = fmt.Sprintf("have the owner of %s publish a PTR record naming %s (which must resolve back to it)", eg.IP, eg.HELO)
			f.Record = reverseName(eg.IP) + ". IN PTR " + strings.TrimSuffix(eg.HELO, ".") + "."
		}
		add(f)
	}
	if h := r.HELOCheck; h != nil {
		f := Finding{Check: "helo", Result: h.Result, Status: StatusPass, Reason: h.Reason}
		if h.Result != "pass" {
			f.Status, f.Fix = StatusWarn, fmt.Sprintf("make the HELO name %s resolve to %s", eg.HELO, eg.IP)
			f.Record = addressRecord(eg.HELO, eg.IP)
		}
		add(f)
	}
	if s := r.SPF; s != nil {
		f := Finding{Check: "spf", Result: s.Result, Status: StatusPass, Reason: s.Explain(eg.IP)}
		switch s.Result {
		case "pass":
		case "permerror":
			f.Status, f.Fix = StatusFail, fmt.Sprintf("repair the SPF record of %s: %s", s.Domain, s.Reason)
		case "temperror":
			f.Status, f.Fix = StatusFail, fmt.Sprintf("the DNS of %s did not answer: check its name servers", s.Domain)
			if s.TimedOut {
				f.Status = StatusUnknown
				f.Fix = fmt.Sprintf("the DNS of %s did not answer in time: check its name servers, then run the selftest again", s.Domain)
			}
		default:
			f.Status = StatusFail
			f.Fix, f.Record = spfFix(tctx, res, s.Domain, eg.IP)
		}
		add(f)
	}
	if s := r.SPFHELO; s != nil && s.Result != "pass" && s.Result != "none" {
		f := Finding{Check: "spf-helo", Result: s.Result, Status: StatusWarn, Reason: s.Explain(eg.IP)}
		f.Fix, f.Record = spfFix(tctx, res, s.Domain, eg.IP)
		add(f)
	}
	from := ""
	if len(r.From.Domains) == 1 && r.From.Problem == "" {
		from = r.From.Domains[0]
	}
	if r.From.Problem != "" {
		add(Finding{Check: "from", Status: StatusFail, Result: "invalid", Reason: r.From.Problem,
			Fix: "give the message exactly one From field with one address"})
	}
	if r.From.Exists != nil && !*r.From.Exists {
		add(Finding{Check: "from-domain", Status: StatusFail, Result: "does not exist", Reason: r.From.ExistsDetail,
			Fix: fmt.Sprintf("publish an MX record (or an address) for %s: receivers refuse mail from domains that do not exist", from)})
	}
	alignedDKIM := false
	for _, d := range r.DKIM {
		f := Finding{Check: "dkim", Result: d.Result, Status: StatusPass, Reason: fmt.Sprintf("d=%s s=%s", d.Domain, d.Selector)}
		if d.Reason != "" {
			f.Reason += ": " + d.Reason
		}
		if d.Result != "pass" {
			f.Status = StatusFail
			f.Fix, f.Record = dkimFix(tctx, o, d)
		} else if d.Testing {
			f.Status, f.Fix = StatusWarn, fmt.Sprintf("remove t=y from %s._domainkey.%s once testing is over", d.Selector, d.Domain)
		}
		if d.Result == "pass" && from != "" {
			aligned := aligns(r, "dkim", d.Domain)
			alignedDKIM = alignedDKIM || aligned
			if !aligned {
				f.Status = StatusFail
				f.Reason += fmt.Sprintf(": d=%s does not align with the From domain %s", d.Domain, from)
				f.Fix = fmt.Sprintf("sign with d=%s, not d=%s: add a domains entry for %s with its own keys", from, d.Domain, from)
			}
		}
		add(f)
	}
	if len(r.DKIM) == 0 && from != "" {
		add(Finding{Check: "dkim", Status: StatusFail, Result: "none", Reason: "the message arrived without a DKIM signature",
			Fix: fmt.Sprintf("sign with d=%s: add a domains entry for %s with keys", from, from)})
	}
	if r.ARC.Result == "fail" {
		add(Finding{Check: "arc", Status: StatusFail, Result: "fail", Reason: r.ARC.Reason,
			Fix: "publish the ARC key record of arc.selector under arc.domain (sealgate dns records prints it)"})
	} else if r.ARC.Result == "pass" {
		add(Finding{Check: "arc", Status: StatusPass, Result: "pass", Reason: fmt.Sprintf("%d set(s)", r.ARC.Instances)})
	}
	for _, d := range []*verify.DMARCResult{r.DMARC9989, r.DMARC7489} {
		if d == nil || from == "" {
			continue
		}
		f := Finding{Check: "dmarc", Result: d.Result, Status: StatusPass, Reason: d.Explain()}
		switch d.Result {
		case "pass":
		case "none":
			f.Status = StatusWarn
			if anyAligned(d) {
				f.Fix = fmt.Sprintf("publish a DMARC record for %s: an aligned identifier passes, so start at p=none with reports and move to p=reject once they show nothing else sends as %s", from, from)
			} else {
				f.Status = StatusFail
				f.Fix = fmt.Sprintf("no identifier aligned with %s passes: see the dkim and spf lines, then publish a DMARC record", from)
			}
			f.Record = dmarcStarter(from)
		default:
			f.Status = StatusFail
			if !alignedDKIM {
				f.Fix = fmt.Sprintf("have a DKIM signature with d=%s (or its organisational domain) pass: see the dkim lines", from)
			}
		}
		add(f)
	}
	if sr := r.SubmitterAt; sr != nil && !sr.MatchesHeader {
		add(Finding{Check: "pra", Status: StatusFail, Result: "mismatch",
			Reason: fmt.Sprintf("SUBMITTER=%s, but the header's purported responsible address is %q (RFC 4407)", sr.Submitter, sr.HeaderPRA),
			Fix:    "the relay sends the PRA of the header as it leaves: a header changed after the relay would cause this"})
	}
	if r.Disagreement != "" {
		add(Finding{Check: "dmarc", Status: StatusWarn, Result: "disagree", Reason: r.Disagreement})
	}

	ev.DMARCPass = r.DMARC9989 != nil && r.DMARC7489 != nil && anyAligned(r.DMARC9989) && anyAligned(r.DMARC7489)
	if ev.DMARCPass {
		for _, a := range r.DMARC9989.Alignments {
			if a.Aligned {
				ev.Through = fmt.Sprintf("%s %s (%s)", a.Method, a.Domain, a.ModeName())
				break
			}
		}
	}
	ev.LostAtReject = !ev.DMARCPass
	failed := 0
	for _, f := range ev.Findings {
		if f.Status == StatusFail {
			failed++
		}
	}
	ev.Ready = ev.DMARCPass && r.Verdict.Action == "accept" && failed == 0
	spf := r.SPF
	if spf == nil {
		spf = r.SPFHELO // the null reverse-path: HELO stands for it (RFC 7208 §2.4)
	}
	switch {
	case spf != nil && spf.TimedOut:
		// Neither ready nor not: a receiver would defer, and what it decides once the DNS
		// answers is not known.
		ev.Ready, ev.SPFTimedOut = false, true
		ev.Verdict = fmt.Sprintf("%s for %s: a strict receiver would %s at %s (%s); run the selftest again once its DNS answers",
			spfTimedOutVerdict, spf.Domain, r.Verdict.Action, r.Verdict.Stage, r.Verdict.Reason)
	case ev.Ready:
		ev.Verdict = fmt.Sprintf("ready: DMARC passes under RFC 9989 and RFC 7489 through %s; p=reject would not lose this mail", ev.Through)
	case ev.DMARCPass && r.Verdict.Action == "accept":
		ev.Verdict = fmt.Sprintf("not ready: DMARC passes through %s, so p=reject would not lose this mail, but %d check(s) failed: see their fixes", ev.Through, failed)
	case ev.DMARCPass:
		ev.Verdict = fmt.Sprintf("not ready: DMARC passes through %s, but a strict receiver would %s at %s: %s", ev.Through, r.Verdict.Action, r.Verdict.Stage, r.Verdict.Reason)
	default:
		ev.Verdict = fmt.Sprintf("not ready: no identifier aligned with the From domain passes, so DMARC fails; p=reject would lose this mail (a strict receiver would %s at %s: %s)", r.Verdict.Action, r.Verdict.Stage, r.Verdict.Reason)
	}
	return ev
}

// aligns reports whether the identifier of method and domain is aligned in a DMARC result
// of both evaluations.
func aligns(r *verify.Report, method, domain string) bool {
	for _, d := range []*verify.DMARCResult{r.DMARC9989, r.DMARC7489} {
		if d == nil {
			return false
		}
		ok := false
		for _, a := range d.Alignments {
			ok = ok || a.Method == method && strings.EqualFold(a.Domain, domain) && a.Aligned
		}
		if !ok {
			return false
		}
	}
	return true
}

func anyAligned(d *verify.DMARCResult) bool {
	for _, a := range d.Alignments {
		if a.Aligned {
			return true
		}
	}
	return false
}

// dkimFix says what makes a failing signature pass: publishing the local key when its
// record is missing or different.
func dkimFix(ctx context.Context, o *MessageOptions, d verify.DKIMResult) (fix, record string) {
	for _, k := range o.Keys {
		if !strings.EqualFold(k.Domain, d.Domain) || !strings.EqualFold(k.Selector, d.Selector) {
			continue
		}
		c, err := keys.Check(ctx, o.Resolver, k.Signer, k.Selector, k.Domain)
		if err != nil {
			return fmt.Sprintf("the key record %s could not be checked: %v", keys.RecordName(k.Selector, k.Domain), err), ""
		}
		if c.OK() {
			return "the published key matches: the message was changed after signing (a header field it covers, or its body)", ""
		}
		return fmt.Sprintf("%s; publish this record", c.Detail), keys.DNSRecord(k.Signer.Public(), k.Selector, k.Domain)
	}
	return fmt.Sprintf("check the key record %s", keys.RecordName(d.Selector, d.Domain)), ""
}

func timeoutOf(o *verify.Options) time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return verify.DefaultTimeout
}

// WriteText writes the report for people: per egress, one line per finding with its fix,
// then the verdict.
func (m *MessageReport) WriteText(w io.Writer) error {
	var b strings.Builder
	if m.Refused != "" {
		fmt.Fprintf(&b, "NOT READY: the relay did not deliver the message: %s\n", m.Refused)
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "received: MAIL FROM:<%s>", m.MailFrom)
	if m.Submitter != "" {
		fmt.Fprintf(&b, " SUBMITTER=%s", m.Submitter)
	}
	fmt.Fprintf(&b, ", %d recipient(s), %d bytes\n", len(m.Rcpts), m.Size)
	for _, ev := range m.Egress {
		fmt.Fprintf(&b, "\nfrom %s as %s", ev.Egress.IP, ev.Egress.HELO)
		if ev.Egress.Note != "" {
			fmt.Fprintf(&b, " (%s)", ev.Egress.Note)
		}
		b.WriteString(":\n")
		b.WriteString("  " + strings.ReplaceAll(strings.TrimRight(ev.Report.AuthenticationResults, "\r\n"), "\r\n", "\n  ") + "\n")
		writeFindings(&b, ev.Findings)
		if ev.Forwarder != nil {
			writeForwarder(&b, ev.Forwarder)
		}
		fmt.Fprintf(&b, "  verdict: %s\n", ev.Verdict)
	}
	switch {
	case m.Ready:
		b.WriteString("\nREADY\n")
	case m.SPFTimedOut:
		b.WriteString("\nNOT CHECKED: " + spfTimedOutVerdict + "\n")
	default:
		b.WriteString("\nNOT READY\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeFindings writes one line per finding in columns as wide as their widest value
// (statuses are 4 or 7 characters, results such as "temperror" or "does not exist" longer
// than most), with the fix and record indented under it.
func writeFindings(b *strings.Builder, fs []Finding) {
	ws, wc, wr := 4, 10, 10
	for _, f := range fs {
		ws, wc, wr = max(ws, len(f.Status)), max(wc, len(f.Check)), max(wr, len(f.Result))
	}
	indent := strings.Repeat(" ", 2+ws+2)
	for _, f := range fs {
		line := fmt.Sprintf("  %-*s  %-*s %-*s %s", ws, f.Status, wc, f.Check, wr, f.Result, f.Reason)
		b.WriteString(strings.TrimRight(line, " ") + "\n")
		if f.Fix != "" {
			fmt.Fprintf(b, "%sfix: %s\n", indent, f.Fix)
		}
		if f.Record != "" {
			fmt.Fprintf(b, "%s%s\n", indent, f.Record)
		}
	}
}
