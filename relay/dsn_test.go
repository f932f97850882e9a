package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/internal/smtpclient"
	"sealgate/sign"
)

// dsnSink is a Deliverer standing for the Internet: the original messages'
// recipients answer with reply (per recipient; nil accepts), and mail to
// sender@example.com (the DSNs) is kept.
type dsnSink struct {
	mu      sync.Mutex
	reply   map[string]*smtpclient.ReplyError
	got     [][]byte
	gotEnvs []*Envelope
}

func (k *dsnSink) Deliver(ctx context.Context, env *Envelope, msg io.Reader) error {
	data, err := io.ReadAll(msg)
	if err != nil {
		return err
	}
	if env.Identity == DSNIdentity {
		k.mu.Lock()
		k.got = append(k.got, data)
		k.gotEnvs = append(k.gotEnvs, env)
		k.mu.Unlock()
		return nil
	}
	ReportHop(ctx, Hop{Rcpts: slices.Clone(env.To), Domain: "example.net", Host: "mx.example.net", IP: "192.0.2.1"})
	var accepted []string
	var failed []RecipientError
	perm := true
	for _, rcpt := range env.To {
		re := k.reply[rcpt]
		switch {
		case re == nil:
			accepted = append(accepted, rcpt)
		case re.Permanent():
			failed = append(failed, RecipientError{Rcpt: rcpt, Err: &PermanentError{Err: re}})
		default:
			perm = false
			failed = append(failed, RecipientError{Rcpt: rcpt, Err: re})
		}
	}
	if len(failed) == 0 {
		return nil
	}
	rerr := &RecipientsError{Accepted: accepted, Failed: failed}
	if len(accepted) == 0 && perm {
		return &PermanentError{Err: rerr}
	}
	return rerr
}

func (k *dsnSink) dsns() [][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([][]byte(nil), k.got...)
}

// dsnKeys returns an Ed25519 DKIM key for example.org (selector dsn) and its TXT record.
func dsnKeys(t *testing.T) (*sign.DomainKeys, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &sign.DomainKeys{Domain: "example.org", Keys: []sign.Key{{Selector: "dsn", Signer: priv}}},
		"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
}

const dsnOrigHeader = "From: Sender <sender@example.com>\r\nTo: a@example.net\r\nSubject: quarterly report\r\nMessage-ID: <orig-1@example.com>\r\n"

// runDSN queues env with the original message and runs a Runner with a
// DSNSender until cond holds.
func runDSN(t *testing.T, sink *dsnSink, env *Envelope, tune func(*Runner, *DSNSender)) (*Spool, string, string) {
	t.Helper()
	s := testSpool(t, t.TempDir())
	keys, txt := dsnKeys(t)
	ds := &DSNSender{Spool: s, Hostname: "relay.example.org", From: "MAILER-DAEMON@example.org", Keys: keys, Logger: quietLogger()}
	r := &Runner{Spool: s, Deliverer: sink, Logger: quietLogger(), Bouncer: ds, PollInterval: time.Hour}
	if tune != nil {
		tune(r, ds)
	}
	id := commit(t, s, env, dsnOrigHeader, "Hello,\r\nthe report.\r\n")
	runRunner(t, r)
	return s, id, txt
}

// failedEnvelope returns the envelope of failed/<id>, nil while it is not there.
func failedEnvelope(s *Spool, id string) *Envelope {
	m, err := s.readMessage(dirFailed, id, false)
	if err != nil {
		return nil
	}
	return m.env
}

// reportParts checks that raw is a multipart/report of reportType with three parts
// (RFC 6522) and returns its header, its parts and their bodies.
func reportParts(t *testing.T, raw []byte, reportType string) (mail.Header, []*multipart.Part, [][]byte) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != reportType {
		t.Fatalf("Content-Type %q (%v): want multipart/report; report-type=%s", m.Header.Get("Content-Type"), err, reportType)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var parts []*multipart.Part
	var bodies [][]byte
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		parts, bodies = append(parts, p), append(bodies, b)
	}
	if len(parts) != 3 {
		t.Fatalf("%d parts, want 3", len(parts))
	}
	return m.Header, parts, bodies
}

// parseDSN checks the structure of a DSN and returns its header, its
// per-message fields, its per-recipient fields and the third part.
func parseDSN(t *testing.T, raw []byte) (mail.Header, textproto.MIMEHeader, []textproto.MIMEHeader, string, []byte) {
	t.Helper()
	header, parts, bodies := reportParts(t, raw, "delivery-status")
	if ct := parts[0].Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("part 1 is %q, want text/plain", ct)
	}
	if ct := parts[1].Header.Get("Content-Type"); ct != "message/delivery-status" {
		t.Fatalf("part 2 is %q, want message/delivery-status", ct)
	}
	// RFC 3464 §2.1: a per-message block, then one block per recipient, each
	// like a header.
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(bodies[1])))
	perMsg, err := tr.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("per-message fields: %v", err)
	}
	var perRcpt []textproto.MIMEHeader
	for {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			perRcpt = append(perRcpt, h)
		}
		if err != nil {
			break
		}
	}
	return header, perMsg, perRcpt, parts[2].Header.Get("Content-Type"), bodies[2]
}

func TestDSNForPermanentFailure(t *testing.T) {
	sink := &dsnSink{reply: map[string]*smtpclient.ReplyError{
		"a@example.net": {Command: "RCPT TO:<a@example.net>", Code: 550, Message: "5.1.1 no such user here"},
	}}
	env := &Envelope{From: "sender@example.com", To: []string{"a@example.net", "b@example.net"},
		EnvID: "env-42", Notify: []string{"FAILURE", ""}, ORcpt: []string{"rfc822;A@Example.NET", ""}}
	s, id, txt := runDSN(t, sink, env, nil)
	waitFor(t, "the DSN delivered", func() bool { return len(sink.dsns()) == 1 })
	waitFor(t, "the spool empty", spoolEmpty(s))

	raw := sink.dsns()[0]
	denv := sink.gotEnvs[0]
	if denv.From != "" || len(denv.To) != 1 || denv.To[0] != "sender@example.com" {
		t.Errorf("DSN envelope from <%s> to %v, want from <> to sender@example.com", denv.From, denv.To)
	}
	hdr, perMsg, perRcpt, part3, orig := parseDSN(t, raw)
	if got := hdr.Get("From"); !strings.Contains(got, "<MAILER-DAEMON@example.org>") {
		t.Errorf("From: %q", got)
	}
	if hdr.Get("In-Reply-To") != "<orig-1@example.com>" || hdr.Get("Auto-Submitted") != "auto-replied" {
		t.Errorf("In-Reply-To %q, Auto-Submitted %q", hdr.Get("In-Reply-To"), hdr.Get("Auto-Submitted"))
	}
	for k, want := range map[string]string{"Reporting-MTA": "dns; relay.example.org", "Original-Envelope-Id": "env-42"} {
		if got := perMsg.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if _, err := mail.ParseDate(perMsg.Get("Arrival-Date")); err != nil {
		t.Errorf("Arrival-Date %q: %v", perMsg.Get("Arrival-Date"), err)
	}
	if len(perRcpt) != 1 {
		t.Fatalf("%d recipient blocks, want 1 (b@example.net was delivered): %v", len(perRcpt), perRcpt)
	}
	want := map[string]string{
		"Final-Recipient":    "rfc822; a@example.net",
		"Original-Recipient": "rfc822; A@Example.NET",
		"Action":             "failed",
		"Status":             "5.1.1",
		"Remote-MTA":         "dns; mx.example.net",
		"Diagnostic-Code":    "smtp; 550 5.1.1 no such user here",
	}
	for k, v := range want {
		if got := perRcpt[0].Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if _, err := mail.ParseDate(perRcpt[0].Get("Last-Attempt-Date")); err != nil {
		t.Errorf("Last-Attempt-Date %q: %v", perRcpt[0].Get("Last-Attempt-Date"), err)
	}
	if part3 != "text/rfc822-headers" || !bytes.Contains(orig, []byte("Subject: quarterly report")) || bytes.Contains(orig, []byte("the report.")) {
		t.Errorf("part 3 %q: %q; want the original header only", part3, orig)
	}

	fenv := failedEnvelope(s, id)
	if fenv == nil || len(fenv.Failed) != 1 {
		t.Fatalf("failed/%s: %+v", id, fenv)
	}
	if f := fenv.Failed[0]; f.Status != "5.1.1" || f.RemoteMTA != "mx.example.net" || !validID(f.DSN) {
		t.Errorf("failed recipient record %+v: want status 5.1.1, remote mx.example.net, the DSN's queue id", f)
	}
	verifyDKIMpy(t, raw, txt)
}

// verifyDKIMpy checks the DSN's signature with dkimpy (python3-dkim), as a
// receiver would.
func verifyDKIMpy(t *testing.T, raw []byte, txt string) {
	t.Helper()
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import dkim, nacl").Run(); err != nil {
		t.Skipf("dkimpy with Ed25519 (python3-dkim, python3-nacl) not installed: %v", err)
	}
	if !bytes.Contains(raw, []byte("DKIM-Signature:")) {
		t.Fatal("DSN is not DKIM-signed")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "dsn.eml")
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	script := `import sys, dkim
msg = open(sys.argv[1], "rb").read()
txt = sys.argv[2].encode()
def dnsfunc(name, timeout=5):
    return txt if name == b"dsn._domainkey.example.org." else None
ok = dkim.DKIM(msg).verify(dnsfunc=dnsfunc)
print("pass" if ok else "fail")
sys.exit(0 if ok else 1)
`
	out, err := exec.Command(python, "-c", script, p, txt).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "pass" {
		t.Fatalf("dkimpy: %v: %s\n%s", err, out, raw)
	}
}

func TestDSNNotifyNever(t *testing.T) {
	sink := &dsnSink{reply: map[string]*smtpclient.ReplyError{
		"a@example.net": {Command: "RCPT TO:<a@example.net>", Code: 550, Message: "5.1.1 no such user"},
	}}
	env := &Envelope{From: "sender@example.com", To: []string{"a@example.net"}, Notify: []string{"NEVER"}}
	s, id, _ := runDSN(t, sink, env, nil)
	waitFor(t, "the message in failed/", func() bool { return failedEnvelope(s, id) != nil })
	waitFor(t, "the spool empty", spoolEmpty(s))
	if f := failedEnvelope(s, id).Failed[0]; f.DSN != DSNNotRequested {
		t.Errorf("DSN record %q, want %q", f.DSN, DSNNotRequested)
	}
	if ids, _ := s.List(); len(ids) != 0 || len(sink.dsns()) != 0 {
		t.Errorf("queued %v, delivered %d DSNs; want none", ids, len(sink.dsns()))
	}
}

func TestDSNNeverToNullSender(t *testing.T) {
	sink := &dsnSink{reply: map[string]*smtpclient.ReplyError{
		"a@example.net": {Command: "RCPT TO:<a@example.net>", Code: 550, Message: "5.7.1 refused"},
	}}
	env := &Envelope{From: "", To: []string{"a@example.net"}}
	s, id, _ := runDSN(t, sink, env, nil)
	waitFor(t, "the message in failed/", func() bool { return failedEnvelope(s, id) != nil })
	waitFor(t, "the spool empty", spoolEmpty(s))
	if f := failedEnvelope(s, id).Failed[0]; f.DSN != DSNNullSender {
		t.Errorf("DSN record %q, want %q", f.DSN, DSNNullSender)
	}
	if ids, _ := s.List(); len(ids) != 0 || len(sink.dsns()) != 0 {
		t.Errorf("queued %v, delivered %d DSNs; want none", ids, len(sink.dsns()))
	}
}

func TestDSNRetFullAndDelayWarning(t *testing.T) {
	sink := &dsnSink{reply: map[string]*smtpclient.ReplyError{
		"a@example.net": {Command: "RCPT TO:<a@example.net>", Code: 451, Message: "4.3.0 try later"},
	}}
	env := &Envelope{From: "sender@example.com", To: []string{"a@example.net"}, Ret: "FULL"}
	s, id, _ := runDSN(t, sink, env, func(r *Runner, d *DSNSender) {
		r.DelayWarning = time.Nanosecond
		r.Backoff = []time.Duration{time.Hour}
		d.RetryUntil = 5 * 24 * time.Hour
	})
	waitFor(t, "the delay warning delivered", func() bool { return len(sink.dsns()) == 1 })
	_, _, perRcpt, part3, _ := parseDSN(t, sink.dsns()[0])
	if len(perRcpt) != 1 || perRcpt[0].Get("Action") != "delayed" || perRcpt[0].Get("Status") != "4.3.0" ||
		perRcpt[0].Get("Will-Retry-Until") == "" {
		t.Errorf("recipient blocks %v: want one, Action delayed, Status 4.3.0, Will-Retry-Until", perRcpt)
	}
	if part3 != "text/rfc822-headers" {
		t.Errorf("delay warning part 3 is %q: a delay warning returns the header only", part3)
	}
	waitFor(t, "the deferral recorded", func() bool {
		e, err := s.Envelope(id)
		return err == nil && !e.DelayWarned.IsZero()
	})

	// Now the recipient refuses for good: the failure DSN returns the whole message (RET=FULL).
	sink.mu.Lock()
	sink.reply["a@example.net"] = &smtpclient.ReplyError{Command: "RCPT TO:<a@example.net>", Code: 550, Message: "5.2.1 mailbox disabled"}
	sink.mu.Unlock()
	e, _ := s.Envelope(id)
	e.NextAttempt = time.Time{}
	if err := s.Update(e); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.committed = append(s.committed, id) // wake the Runner for it
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	waitFor(t, "the failure DSN delivered", func() bool { return len(sink.dsns()) == 2 })
	_, _, perRcpt, part3, orig := parseDSN(t, sink.dsns()[1])
	if len(perRcpt) != 1 || perRcpt[0].Get("Action") != "failed" || perRcpt[0].Get("Status") != "5.2.1" {
		t.Errorf("recipient blocks %v", perRcpt)
	}
	if part3 != "message/rfc822" || !bytes.Contains(orig, []byte("the report.")) {
		t.Errorf("part 3 %q: %q; want the whole original (RET=FULL)", part3, orig)
	}
}

func TestFailureDetail(t *testing.T) {
	for _, tt := range []struct {
		err            error
		status, remote string
	}{
		{&PermanentError{Err: &smtpclient.ReplyError{Code: 550, Message: "5.1.1 unknown"}}, "5.1.1", "550 5.1.1 unknown"},
		{&PermanentError{Err: &smtpclient.ReplyError{Code: 554, Message: "no"}}, "5.0.0", "554 no"},
		{&PermanentError{Err: &smtpclient.ReplyError{Code: 550, Message: "4.1.1 wrong class"}}, "5.0.0", "550 4.1.1 wrong class"},
		{&smtpclient.ReplyError{Code: 421, Message: "4.3.2 shutting down"}, "4.3.2", "421 4.3.2 shutting down"},
		{errors.New("dial tcp: connection refused"), "4.4.7", ""},
		{&PermanentError{Err: errors.New("bare LF")}, "5.0.0", ""},
	} {
		status, reply := failureDetail(tt.err)
		if status != tt.status || reply != tt.remote {
			t.Errorf("failureDetail(%v) = %q, %q; want %q, %q", tt.err, status, reply, tt.status, tt.remote)
		}
	}
	for _, tt := range []struct {
		notify, kind string
		want         bool
	}{
		{"", "FAILURE", true}, {"", "DELAY", true}, {"", "SUCCESS", false},
		{"NEVER", "FAILURE", false}, {"SUCCESS,DELAY", "FAILURE", false}, {"success,failure", "FAILURE", true},
	} {
		if got := notifyWants(tt.notify, tt.kind); got != tt.want {
			t.Errorf("notifyWants(%q, %q) = %v", tt.notify, tt.kind, got)
		}
	}
}

// TestDSNOverSMTP: a recipient refused with 550 by a real SMTP next hop gets a
// DSN naming that server, and the DSN itself goes out over SMTP from <>.
func TestDSNOverSMTP(t *testing.T) {
	h := startNextHop(t)
	s := testSpool(t, t.TempDir())
	keys, txt := dsnKeys(t)
	ds := &DSNSender{Spool: s, Hostname: "relay.example.org", From: "MAILER-DAEMON@example.org", Keys: keys, Logger: quietLogger()}
	r := &Runner{Spool: s, Deliverer: nextHop(h), Logger: quietLogger(), Bouncer: ds, PollInterval: time.Hour}
	commit(t, s, &Envelope{From: "sender@example.com", To: []string{"ok@example.net", "perm@example.net"}},
		dsnOrigHeader, "Hello,\r\nthe report.\r\n")
	runRunner(t, r)
	var dsn received
	for dsn.from == "" || dsn.data == nil {
		select {
		case got := <-h.arrived:
			if got.from == "" {
				dsn = got
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no DSN arrived at the next hop")
		}
		if dsn.data != nil {
			break
		}
	}
	if len(dsn.to) != 1 || dsn.to[0] != "sender@example.com" {
		t.Errorf("DSN sent to %v, want sender@example.com", dsn.to)
	}
	_, _, perRcpt, _, _ := parseDSN(t, dsn.data)
	if len(perRcpt) != 1 {
		t.Fatalf("%d recipient blocks, want 1: %v", len(perRcpt), perRcpt)
	}
	for k, want := range map[string]string{
		"Final-Recipient": "rfc822; perm@example.net", "Action": "failed", "Status": "5.1.1",
		"Remote-MTA": "dns; 127.0.0.1", "Diagnostic-Code": "smtp; 550 5.1.1 no such user",
	} {
		if got := perRcpt[0].Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	verifyDKIMpy(t, dsn.data, txt)
}

// startNextHopWithoutDSN is startNextHop with a server that does not offer DSN.
func startNextHopWithoutDSN(t *testing.T) *nextHopServer {
	t.Helper()
	h := &nextHopServer{arrived: make(chan received, 100)}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &hopSession{h: h}, nil
	}))
	srv.Domain = "nodsn.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr, h.srv = l.Addr().String(), srv
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return h
}

// TestDSNRelayed: a recipient that asked NOTIFY=SUCCESS, delivered to a server
// without DSN, gets a "relayed" DSN (RFC 3461 §6.2.1); one that did not ask, and
// one delivered to a server with DSN (which reports it itself), get none.
func TestDSNRelayed(t *testing.T) {
	for _, tt := range []struct {
		name    string
		withDSN bool
		notify  []string
		want    []string // recipients in the relayed DSN; nil: no DSN
	}{
		{"server without DSN", false, []string{"SUCCESS,FAILURE", "", "NEVER"}, []string{"rfc822; a@example.net"}},
		{"server with DSN", true, []string{"SUCCESS,FAILURE", "", "NEVER"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := startNextHop(t)
			if !tt.withDSN {
				h = startNextHopWithoutDSN(t)
			}
			s := testSpool(t, t.TempDir())
			ds := &DSNSender{Spool: s, Hostname: "relay.example.org", From: "MAILER-DAEMON@example.org", Logger: quietLogger()}
			r := &Runner{Spool: s, Deliverer: nextHop(h), Logger: quietLogger(), Bouncer: ds, PollInterval: time.Hour}
			commit(t, s, &Envelope{From: "sender@example.com", To: []string{"a@example.net", "b@example.net", "c@example.net"},
				Notify: tt.notify, ORcpt: []string{"rfc822;A@example.net", "", ""}}, dsnOrigHeader, "Hello\r\n")
			runRunner(t, r)
			waitFor(t, "the spool empty", spoolEmpty(s))
			var dsns []received
			for _, got := range h.transactions() {
				if got.from == "" {
					dsns = append(dsns, got)
				}
			}
			if tt.want == nil {
				if len(dsns) != 0 {
					t.Errorf("%d DSNs, want none", len(dsns))
				}
				return
			}
			if len(dsns) != 1 {
				t.Fatalf("%d DSNs, want 1", len(dsns))
			}
			hdr, _, perRcpt, part3, _ := parseDSN(t, dsns[0].data)
			var got []string
			for _, b := range perRcpt {
				got = append(got, b.Get("Final-Recipient"))
				if b.Get("Action") != "relayed" || !strings.HasPrefix(b.Get("Status"), "2.") ||
					b.Get("Remote-MTA") != "dns; 127.0.0.1" || b.Get("Original-Recipient") != "rfc822; A@example.net" ||
					!strings.HasPrefix(b.Get("Diagnostic-Code"), "smtp; 250") {
					t.Errorf("recipient block %v", b)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("relayed DSN for %v, want %v", got, tt.want)
			}
			if part3 != "text/rfc822-headers" || !strings.HasPrefix(hdr.Get("Subject"), "Relayed") {
				t.Errorf("part 3 %q, Subject %q", part3, hdr.Get("Subject"))
			}
		})
	}
}

// TestDSNExpired: a recipient still refused with 4xx after MaxAge is reported as
// failed with the server's last reply and status.
func TestDSNExpired(t *testing.T) {
	sink := &dsnSink{reply: map[string]*smtpclient.ReplyError{
		"a@example.net": {Command: "RCPT TO:<a@example.net>", Code: 451, Message: "4.3.0 try later"},
	}}
	env := &Envelope{From: "sender@example.com", To: []string{"a@example.net", "b@example.net"}}
	s, id, _ := runDSN(t, sink, env, func(r *Runner, _ *DSNSender) { r.MaxAge = time.Nanosecond })
	waitFor(t, "the DSN delivered", func() bool { return len(sink.dsns()) == 1 })
	waitFor(t, "the spool empty", spoolEmpty(s))
	_, _, perRcpt, _, _ := parseDSN(t, sink.dsns()[0])
	if len(perRcpt) != 1 {
		t.Fatalf("%d recipient blocks, want 1", len(perRcpt))
	}
	for k, want := range map[string]string{
		"Final-Recipient": "rfc822; a@example.net", "Action": "failed", "Status": "4.3.0",
		"Diagnostic-Code": "smtp; 451 4.3.0 try later", "Remote-MTA": "dns; mx.example.net",
	} {
		if got := perRcpt[0].Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if f := failedEnvelope(s, id); f == nil || len(f.Failed) != 1 || !strings.Contains(f.Failed[0].Error, "still failing after 1 attempts") {
		t.Errorf("failed/ record: %+v", f)
	}
}

// SetKeys (a reload, a key rotation's switch) changes the selector of the next
// DSN; SetKeys(nil) sends them unsigned.
func TestDSNSetKeys(t *testing.T) {
	oldKeys, _ := dsnKeys(t)
	newKeys, _ := dsnKeys(t)
	newKeys.Keys[0].Selector = "dsn2"
	ds := &DSNSender{Hostname: "relay.example.org", From: "MAILER-DAEMON@example.org", Keys: oldKeys, Logger: quietLogger()}
	env := &Envelope{From: "sender@example.com", To: []string{"a@example.net"}}
	rcpts := []dsnRcpt{{rcpt: "a@example.net", action: "failed", status: "5.1.1", failedIndex: -1}}
	selector := func() string {
		t.Helper()
		hdr, _, err := ds.build(env, strings.NewReader(dsnOrigHeader+"\r\nbody\r\n"), rcpts, false)
		if err != nil {
			t.Fatal(err)
		}
		unfolded := strings.NewReplacer("\r\n\t", " ", "\r\n ", " ").Replace(string(hdr))
		for _, f := range strings.Split(unfolded, "\r\n") {
			if strings.HasPrefix(f, "DKIM-Signature:") {
				for _, tag := range strings.Split(f, ";") {
					if k, v, ok := strings.Cut(strings.TrimSpace(tag), "="); ok && k == "s" {
						return v
					}
				}
			}
		}
		return ""
	}
	if s := selector(); s != "dsn" {
		t.Errorf("before SetKeys: s=%q, want dsn", s)
	}
	ds.SetKeys(newKeys)
	if s := selector(); s != "dsn2" {
		t.Errorf("after SetKeys: s=%q, want dsn2", s)
	}
	ds.SetKeys(nil)
	if s := selector(); s != "" {
		t.Errorf("after SetKeys(nil): s=%q, want no signature", s)
	}
}
