package smtpclient

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"sealgate/internal/smtptest"
)

const testMessage = "From: a@example.com\r\nSubject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\n\xc3\xa9 8-bit\r\nend.\r\n"

// fakeServer is a raw SMTP server on 127.0.0.1:0 for one session. It greets,
// answers EHLO with its extensions, records every line it receives after EHLO,
// answers each command with answer(line) (default "250 ok"), and takes DATA
// (354, the dot-stuffed body up to ".", then dataReply, default "250 queued").
type fakeServer struct {
	addr      string
	ext       []string
	answer    func(line string) string
	dataReply string

	mu     sync.Mutex
	lines  []string // commands received after EHLO, without CRLF
	bodies []string // messages received, un-dot-stuffed
	ended  chan struct{}
}

func startFake(t *testing.T, ext ...string) *fakeServer {
	t.Helper()
	f := &fakeServer{ext: ext, ended: make(chan struct{})}
	var done <-chan error
	f.addr, done = smtptest.Serve(t, func(c *smtptest.Conn) error { f.serve(c); return nil })
	go func() { <-done; close(f.ended) }()
	return f
}

func (f *fakeServer) serve(c *smtptest.Conn) {
	c.Reply("220 fake.test ESMTP")
	for {
		line, err := c.ReadLine()
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		if verb == "EHLO" {
			c.Reply(smtptest.EHLOReply("fake.test", f.ext...)...)
			continue
		}
		f.mu.Lock()
		f.lines = append(f.lines, line)
		answer := f.answer
		f.mu.Unlock()
		switch {
		case verb == "QUIT":
			c.Reply("221 bye")
			return
		case verb == "DATA" && (answer == nil || answer(line)[0] < '4'):
			c.Reply("354 go ahead")
			body, err := c.ReadData()
			if err != nil {
				f.mu.Lock()
				f.bodies = append(f.bodies, "UNTERMINATED:"+body)
				f.mu.Unlock()
				return
			}
			f.mu.Lock()
			f.bodies = append(f.bodies, body)
			f.mu.Unlock()
			reply := f.dataReply
			if reply == "" {
				reply = "250 2.0.0 queued as FAKE1"
			}
			c.Reply(reply)
		case answer != nil:
			c.Reply(answer(line))
		default:
			c.Reply("250 ok")
		}
	}
}

func (f *fakeServer) got() ([]string, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.lines), slices.Clone(f.bodies)
}

func dial(t *testing.T, addr string) *Client {
	t.Helper()
	d := Dialer{HeloName: "client.test", Timeout: 5 * time.Second}
	c, err := d.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func rcpts(addrs ...string) []Recipient {
	var rs []Recipient
	for _, a := range addrs {
		rs = append(rs, Recipient{Addr: a})
	}
	return rs
}

func TestSendPerRecipientResults(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprint("pipelining=", pipelining), func(t *testing.T) {
			var ext []string
			if pipelining {
				ext = append(ext, "PIPELINING")
			}
			f := startFake(t, ext...)
			f.answer = func(line string) string {
				switch {
				case strings.Contains(line, "<gone@"):
					return "550 5.1.1 no such user"
				case strings.Contains(line, "<busy@"):
					return "451 4.2.0 try later"
				}
				return "250 ok"
			}
			c := dial(t, f.addr)
			tx := &Transaction{From: "a@x.test", Rcpts: rcpts("ok@y.test", "gone@y.test", "busy@y.test")}
			res, err := c.Send(tx, strings.NewReader(testMessage))
			if err != nil {
				t.Fatal(err)
			}
			var re *ReplyError
			if res.Rcpts[0] != nil || !errors.As(res.Rcpts[1], &re) || !re.Permanent() ||
				!errors.As(res.Rcpts[2], &re) || re.Permanent() || re.Code != 451 || res.Accepted() != 1 {
				t.Errorf("per-recipient results %v, want accepted, 550, 451", res.Rcpts)
			}
			if res.Data == nil || res.Data.Code != 250 || !strings.Contains(res.Data.Message, "FAKE1") {
				t.Errorf("data reply %v, want 250 ... FAKE1", res.Data)
			}
			if !c.Reusable() {
				t.Error("session not reusable after a clean transaction")
			}
			// A second transaction on the session starts with RSET.
			if _, err := c.Send(&Transaction{From: "", Rcpts: rcpts("ok@y.test")}, strings.NewReader(testMessage)); err != nil {
				t.Fatal(err)
			}
			c.Quit()
			<-f.ended
			lines, bodies := f.got()
			want := []string{"MAIL FROM:<a@x.test>", "RCPT TO:<ok@y.test>", "RCPT TO:<gone@y.test>", "RCPT TO:<busy@y.test>", "DATA",
				"RSET", "MAIL FROM:<>", "RCPT TO:<ok@y.test>", "DATA", "QUIT"}
			if !slices.Equal(lines, want) {
				t.Errorf("server got\n%q\nwant\n%q", lines, want)
			}
			if len(bodies) != 2 || bodies[0] != testMessage {
				t.Errorf("bodies %q, want the message byte for byte twice", bodies)
			}
		})
	}
}

// Two addresses a submitter may quote: quoted local parts go out quoted; their unquoted
// forms (which would make the next hop read another address) are refused before
// anything is written, and the session stays usable.
func TestEnvelopeAddressesQuotedOrRefused(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`"ceo@evil.example"@example.test`, `<"ceo@evil.example"@example.test>`},
		{`"a b"@example.test`, `<"a b"@example.test>`},
		{`"bob"@Example.TEST`, `<bob@example.test>`},
		{`"a\"b"@example.test`, `<"a\"b"@example.test>`},
		{`user@bücher.example`, `<user@xn--bcher-kva.example>`},
		{`x@[192.0.2.1]`, `<x@[192.0.2.1]>`},
	} {
		got, err := ForwardPath(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ForwardPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		`ceo@evil.example@example.test`, `a b@example.test`, `"unbalanced@example.test`, `a"b@example.test`,
		"a@example.test\r\nRCPT TO:<victim@example.net>", "a\n@example.test", `a@example.test>`, `<a@example.test>`,
		`a@example.test SIZE=1`, `noat`, `a..b@example.test`, `"a"b"@example.test`,
	} {
		if got, err := ForwardPath(bad); err == nil {
			t.Errorf("ForwardPath(%q) = %q, want a refusal", bad, got)
		} else if ue := (*UnsendableError)(nil); !errors.As(err, &ue) {
			t.Errorf("ForwardPath(%q): error %v is not an *UnsendableError", bad, err)
		}
	}
	if got, err := ReversePath(""); err != nil || got != "<>" {
		t.Errorf("ReversePath(\"\") = %q, %v; want <>", got, err)
	}
	if _, err := ForwardPath(""); err == nil {
		t.Error("ForwardPath(\"\") accepted: the null path is no recipient")
	}

	f := startFake(t, "PIPELINING")
	c := dial(t, f.addr)
	for _, tx := range []*Transaction{
		{From: `ceo@evil.example@example.test`, Rcpts: rcpts("b@y.test")},
		{From: "a@x.test", Rcpts: rcpts("ok@y.test", `a b@example.test`)},
	} {
		_, err := c.Send(tx, strings.NewReader(testMessage))
		var ue *UnsendableError
		if !errors.As(err, &ue) {
			t.Errorf("Send(%+v) = %v, want *UnsendableError", tx, err)
		}
		if !c.Reusable() {
			t.Error("session unusable after a refusal that wrote nothing")
		}
	}
	tx := &Transaction{From: `"ceo@evil.example"@example.test`, Rcpts: rcpts(`"a b"@example.test`)}
	if _, err := c.Send(tx, strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	<-f.ended
	lines, _ := f.got()
	want := []string{`MAIL FROM:<"ceo@evil.example"@example.test>`, `RCPT TO:<"a b"@example.test>`, "DATA", "QUIT"}
	if !slices.Equal(lines, want) {
		t.Errorf("server got %q, want %q (nothing of the refused transactions)", lines, want)
	}
}

func TestMailAndRcptParameters(t *testing.T) {
	tx := &Transaction{
		From: "a@x.test", Size: 1234, Ret: "hdrs", EnvID: "id+1 x=y", Submitter: `"sec retary"@x.test`,
		MailParams: []Param{{Keyword: "X-TRACE", Value: "abc"}, {Keyword: "X-FLAG"}},
		Rcpts: []Recipient{
			{Addr: "b@y.test", Notify: "SUCCESS,failure", ORcpt: "rfc822;b+tag@y.test"},
			{Addr: "c@y.test", ORcpt: "c@y.test", Params: []Param{{Keyword: "X-R", Value: "1"}}},
		},
	}
	for _, tc := range []struct {
		name  string
		ext   []string
		mail  string
		rcpts []string
	}{
		{"all offered", []string{"SIZE 10000", "DSN", "SUBMITTER"},
			`MAIL FROM:<a@x.test> SIZE=1234 RET=HDRS ENVID=id+2B1+20x+3Dy SUBMITTER="sec+20retary"@x.test X-TRACE=abc X-FLAG`,
			[]string{`RCPT TO:<b@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Btag@y.test`, `RCPT TO:<c@y.test> ORCPT=rfc822;c@y.test X-R=1`}},
		{"none offered", nil,
			`MAIL FROM:<a@x.test> X-TRACE=abc X-FLAG`,
			[]string{`RCPT TO:<b@y.test>`, `RCPT TO:<c@y.test> X-R=1`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, tc.ext...)
			c := dial(t, f.addr)
			if _, err := c.Send(tx, strings.NewReader(testMessage)); err != nil {
				t.Fatal(err)
			}
			c.Quit()
			<-f.ended
			lines, _ := f.got()
			want := append(append([]string{tc.mail}, tc.rcpts...), "DATA", "QUIT")
			if !slices.Equal(lines, want) {
				t.Errorf("server got\n%q\nwant\n%q", lines, want)
			}
		})
	}
}

// Whatever cannot go out as asked is refused with nothing written.
func TestUnsendableWritesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		ext  []string
		tx   Transaction
	}{
		{"over SIZE", []string{"SIZE 100"}, Transaction{From: "a@x.test", Size: 101, Rcpts: rcpts("b@y.test")}},
		{"UTF-8 local part without SMTPUTF8", nil, Transaction{From: "a@x.test", Rcpts: rcpts("jörg@y.test")}},
		{"UTF-8 header without SMTPUTF8", nil, Transaction{From: "a@x.test", UTF8: true, Rcpts: rcpts("b@y.test")}},
		{"bad RET", []string{"DSN"}, Transaction{From: "a@x.test", Ret: "ALL", Rcpts: rcpts("b@y.test")}},
		{"bad NOTIFY", []string{"DSN"}, Transaction{From: "a@x.test", Rcpts: []Recipient{{Addr: "b@y.test", Notify: "SUCCESS NEVER"}}}},
		{"bad submitter", []string{"SUBMITTER"}, Transaction{From: "a@x.test", Submitter: "a@b@c", Rcpts: rcpts("b@y.test")}},
		{"param value with space", nil, Transaction{From: "a@x.test", MailParams: []Param{{Keyword: "X", Value: "a b"}}, Rcpts: rcpts("b@y.test")}},
		{"param value with =", nil, Transaction{From: "a@x.test", MailParams: []Param{{Keyword: "X", Value: "a=b"}}, Rcpts: rcpts("b@y.test")}},
		{"param keyword", nil, Transaction{From: "a@x.test", Rcpts: []Recipient{{Addr: "b@y.test", Params: []Param{{Keyword: "-X"}}}}}},
		{"no recipients", nil, Transaction{From: "a@x.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, tc.ext...)
			c := dial(t, f.addr)
			_, err := c.Send(&tc.tx, strings.NewReader(testMessage))
			var ue *UnsendableError
			if !errors.As(err, &ue) {
				t.Fatalf("Send = %v, want *UnsendableError", err)
			}
			c.Quit()
			<-f.ended
			if lines, _ := f.got(); !slices.Equal(lines, []string{"QUIT"}) {
				t.Errorf("server got %q, want only QUIT", lines)
			}
		})
	}
	// With SMTPUTF8 offered the same non-ASCII recipient goes out; a U-label
	// domain alone needs no SMTPUTF8 (it is sent as its A-label).
	f := startFake(t, "SMTPUTF8")
	c := dial(t, f.addr)
	if _, err := c.Send(&Transaction{From: "a@x.test", Rcpts: rcpts("jörg@y.test")}, strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(&Transaction{From: "a@bücher.example", Rcpts: rcpts("b@y.test")}, strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	<-f.ended
	lines, _ := f.got()
	want := []string{"MAIL FROM:<a@x.test> SMTPUTF8", "RCPT TO:<jörg@y.test>", "DATA",
		"RSET", "MAIL FROM:<a@xn--bcher-kva.example>", "RCPT TO:<b@y.test>", "DATA", "QUIT"}
	if !slices.Equal(lines, want) {
		t.Errorf("server got\n%q\nwant\n%q", lines, want)
	}
}

// A bare LF stops the data without the final ".", and the connection is closed,
// so the server discards the transaction.
func TestBareLineEndNeverEndsData(t *testing.T) {
	f := startFake(t, "PIPELINING")
	c := dial(t, f.addr)
	_, err := c.Send(&Transaction{From: "a@x.test", Rcpts: rcpts("b@y.test")}, strings.NewReader("Subject: x\r\n\r\nbare\nLF\r\n"))
	var ue *UnsendableError
	if !errors.As(err, &ue) || !errors.Is(err, ErrBareLineEnd) {
		t.Fatalf("Send = %v, want *UnsendableError wrapping ErrBareLineEnd", err)
	}
	if c.Reusable() {
		t.Error("session reusable after an unterminated DATA")
	}
	<-f.ended
	if _, bodies := f.got(); len(bodies) != 1 || !strings.HasPrefix(bodies[0], "UNTERMINATED:") {
		t.Errorf("server bodies %q, want one cut off without the final dot", bodies)
	}
}

func TestAllRecipientsRefused(t *testing.T) {
	f := startFake(t, "PIPELINING")
	f.answer = func(line string) string {
		if strings.HasPrefix(line, "RCPT") {
			return "550 5.1.1 no"
		}
		if line == "DATA" {
			return "554 5.5.1 no valid recipients"
		}
		return "250 ok"
	}
	c := dial(t, f.addr)
	res, err := c.Send(&Transaction{From: "a@x.test", Rcpts: rcpts("b@y.test", "c@y.test")}, strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted() != 0 || res.Data != nil || len(res.Rcpts) != 2 {
		t.Errorf("result %+v, want both refused and no data", res)
	}
	c.Quit()
	<-f.ended
	if _, bodies := f.got(); len(bodies) != 0 {
		t.Errorf("server got a message: %q", bodies)
	}
}

func TestVerifyNeverSendsData(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprint("pipelining=", pipelining), func(t *testing.T) {
			var ext []string
			if pipelining {
				ext = []string{"PIPELINING"}
			}
			f := startFake(t, ext...)
			f.answer = func(line string) string {
				if strings.Contains(line, "<nobody@") {
					return "550 5.1.1 no such user"
				}
				return "250 ok"
			}
			c := dial(t, f.addr)
			results, err := c.Verify("", "someone@y.test", "nobody@y.test")
			if err != nil {
				t.Fatal(err)
			}
			var re *ReplyError
			if len(results) != 2 || results[0] != nil || !errors.As(results[1], &re) || re.Code != 550 {
				t.Errorf("Verify = %v, want accepted and 550", results)
			}
			c.Quit()
			<-f.ended
			lines, _ := f.got()
			want := []string{"MAIL FROM:<>", "RCPT TO:<someone@y.test>", "RCPT TO:<nobody@y.test>", "QUIT"}
			if !slices.Equal(lines, want) {
				t.Errorf("server got %q, want %q", lines, want)
			}
		})
	}
}

// A session whose server went away answers the next transaction's RSET with
// nothing: ErrStaleSession, and nothing of the transaction was taken.
func TestStaleSession(t *testing.T) {
	addr, dropped := smtptest.ServeGreeting(t, "x", []string{"PIPELINING"}, func(c *smtptest.Conn) error {
		for {
			line, err := c.ReadLine()
			if err != nil {
				return err
			}
			if !strings.HasPrefix(line, "DATA") {
				c.Reply("250 ok")
				continue
			}
			c.Reply("354 go")
			if _, err := c.ReadData(); err != nil {
				return err
			}
			return c.Reply("250 queued") // and the server restarts: Serve closes the session
		}
	})
	c := dial(t, addr)
	tx := &Transaction{From: "a@x.test", Rcpts: rcpts("b@y.test")}
	if _, err := c.Send(tx, strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	if err := <-dropped; err != nil {
		t.Fatal("server:", err)
	}
	_, err := c.Send(tx, strings.NewReader(testMessage))
	if !errors.Is(err, ErrStaleSession) {
		t.Fatalf("second Send = %v, want ErrStaleSession", err)
	}
	if c.Reusable() {
		t.Error("stale session still reusable")
	}
}

func TestHeloFallback(t *testing.T) {
	got := make(chan []string, 1)
	addr, _ := smtptest.Serve(t, func(c *smtptest.Conn) error {
		c.Reply("220 old")
		var lines []string
		defer func() { got <- lines }()
		for {
			line, err := c.ReadLine()
			if err != nil {
				return err
			}
			lines = append(lines, line)
			switch {
			case strings.HasPrefix(line, "EHLO"):
				c.Reply("500 what?")
			case strings.HasPrefix(line, "QUIT"):
				return c.Reply("221 bye")
			default:
				c.Reply("250 old")
			}
		}
	})
	c := dial(t, addr)
	if _, ok := c.Extension("PIPELINING"); ok {
		t.Error("extensions after HELO")
	}
	c.Quit()
	if lines := <-got; !slices.Equal(lines, []string{"EHLO client.test", "HELO client.test", "QUIT"}) {
		t.Errorf("server got %q", lines)
	}
}

func TestGreetingRefused(t *testing.T) {
	addr, _ := smtptest.Serve(t, func(c *smtptest.Conn) error { return c.Reply("554 5.7.1 go away") })
	d := Dialer{Timeout: 5 * time.Second}
	_, err := d.Dial(context.Background(), addr)
	var re *ReplyError
	if !errors.As(err, &re) || !re.Permanent() || re.Command != "greeting" {
		t.Errorf("Dial = %v, want a permanent *ReplyError for the greeting", err)
	}
}

// The source address is the one asked for.
func TestDialerLocalAddr(t *testing.T) {
	// A port that was free a moment ago, to tell our source address from the system's choice.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := probe.Addr().(*net.TCPAddr)
	probe.Close()
	seen := make(chan net.Addr, 1)
	addr, _ := smtptest.Serve(t, func(c *smtptest.Conn) error {
		seen <- c.RemoteAddr()
		c.Reply("220 x")
		c.ReadLine()
		return c.Reply("250 x")
	})
	d := Dialer{Timeout: 5 * time.Second, LocalAddr: local}
	c, err := d.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := <-seen; got.String() != local.String() {
		t.Errorf("server saw the client at %s, want %s", got, local)
	}
}

// tlsServer is a go-smtp server with STARTTLS and AUTH PLAIN (user "u",
// password "secret pass"), whose certificate is for 127.0.0.1 and signed by
// itself; pool trusts it.
type tlsServer struct {
	addr string
	pool *x509.CertPool

	mu    sync.Mutex
	tls   []bool // per message: did it arrive under TLS
	authn []string
}

func startTLSServer(t *testing.T) *tlsServer {
	t.Helper()
	pki := smtptest.NewPKI(t, "mx.test")
	s := &tlsServer{pool: pki.Pool}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &tlsSession{s: s, c: c}, nil
	}))
	srv.Domain = "mx.test"
	srv.TLSConfig = pki.ServerConfig()
	s.addr = smtptest.ServeSMTP(t, srv, false)
	return s
}

type tlsSession struct {
	s *tlsServer
	c *smtp.Conn
}

func (s *tlsSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *tlsSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != "u" || pass != "secret pass" {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		s.s.mu.Lock()
		s.s.authn = append(s.s.authn, user)
		s.s.mu.Unlock()
		return nil
	}), nil
}
func (s *tlsSession) Reset()                               {}
func (s *tlsSession) Logout() error                        { return nil }
func (s *tlsSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *tlsSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *tlsSession) Data(r io.Reader) error {
	io.Copy(io.Discard, r)
	_, isTLS := s.c.TLSConnectionState()
	s.s.mu.Lock()
	s.s.tls = append(s.s.tls, isTLS)
	s.s.mu.Unlock()
	return nil
}

func TestStartTLS(t *testing.T) {
	s := startTLSServer(t)
	tx := &Transaction{From: "a@x.test", Rcpts: rcpts("b@y.test")}

	// Trusted: verified, and the message travels under TLS.
	c := dial(t, s.addr)
	if _, ok := c.TLS(); ok {
		t.Error("TLS reported before STARTTLS")
	}
	if err := c.StartTLS(&tls.Config{RootCAs: s.pool}); err != nil {
		t.Fatal(err)
	}
	info, ok := c.TLS()
	if !ok || !info.Verified || info.VerifyError != nil || info.ServerName != "127.0.0.1" || info.Version < tls.VersionTLS12 {
		t.Errorf("TLS() = %+v, %v; want verified for 127.0.0.1", info, ok)
	}
	if _, err := c.Send(tx, strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	if err := c.StartTLS(nil); err == nil {
		t.Error("a second STARTTLS was attempted")
	}
	c.Quit()

	// Opportunistic: an untrusted certificate is accepted, and reported unverified.
	c = dial(t, s.addr)
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true, RootCAs: x509.NewCertPool()}); err != nil {
		t.Fatal(err)
	}
	if info, _ := c.TLS(); info.Verified || info.VerifyError == nil {
		t.Errorf("TLS() = %+v; want unverified with the reason", info)
	}
	if _, err := c.Send(tx, strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	c.Quit()

	// The wrong name does not verify either.
	c = dial(t, s.addr)
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true, RootCAs: s.pool, ServerName: "other.test"}); err != nil {
		t.Fatal(err)
	}
	if info, _ := c.TLS(); info.Verified {
		t.Errorf("TLS() = %+v; want unverified for a name not in the certificate", info)
	}
	c.Quit()

	// Verification required and failing: the handshake fails, the session is closed.
	c = dial(t, s.addr)
	if err := c.StartTLS(&tls.Config{RootCAs: x509.NewCertPool()}); err == nil {
		t.Error("StartTLS with an untrusted certificate succeeded without InsecureSkipVerify")
	}
	if c.Reusable() {
		t.Error("session reusable after a failed handshake")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Equal(s.tls, []bool{true, true}) {
		t.Errorf("messages arrived under TLS: %v, want both", s.tls)
	}
}

func TestStartTLSNotOffered(t *testing.T) {
	f := startFake(t, "PIPELINING")
	c := dial(t, f.addr)
	if err := c.StartTLS(nil); err == nil {
		t.Error("StartTLS succeeded with a server not offering it")
	}
	c.Quit()
	<-f.ended
	if lines, _ := f.got(); !slices.Equal(lines, []string{"QUIT"}) {
		t.Errorf("server got %q, want only QUIT", lines)
	}
}

func TestAuthPlain(t *testing.T) {
	s := startTLSServer(t)
	c := dial(t, s.addr)
	if err := c.Auth(sasl.NewPlainClient("", "u", "secret pass")); err == nil {
		t.Error("AUTH ran outside TLS")
	}
	if err := c.StartTLS(&tls.Config{RootCAs: s.pool}); err != nil {
		t.Fatal(err)
	}
	err := c.Auth(sasl.NewPlainClient("", "u", "wrong pass"))
	var re *ReplyError
	if !errors.As(err, &re) || re.Code != 535 {
		t.Errorf("wrong password: %v, want 535", err)
	}
	b64 := base64.StdEncoding.EncodeToString([]byte("\x00u\x00wrong pass"))
	if err != nil && (strings.Contains(err.Error(), "wrong pass") || strings.Contains(err.Error(), b64)) {
		t.Errorf("error %q contains the credentials", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "u", "secret pass")); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewLoginClient("u", "secret pass")); err == nil || !strings.Contains(err.Error(), "does not offer LOGIN") {
		t.Errorf("LOGIN not offered: %v", err)
	}
	c.Quit()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Equal(s.authn, []string{"u"}) {
		t.Errorf("server authenticated %q, want u once", s.authn)
	}
}

// AUTH LOGIN answers the server's challenges (RFC 4954 §4) in turn.
func TestAuthLoginChallenges(t *testing.T) {
	// A TLS server by hand: STARTTLS, then AUTH LOGIN with two challenges.
	srvConf := smtptest.NewPKI(t).ServerConfig()
	got := make(chan []string, 1)
	addr, _ := smtptest.Serve(t, func(c *smtptest.Conn) error {
		var lines []string
		defer func() { got <- lines }()
		c.Reply("220 x")
		for {
			line, err := c.ReadLine()
			if err != nil {
				return err
			}
			lines = append(lines, line)
			switch {
			case strings.HasPrefix(line, "EHLO"):
				c.Reply(smtptest.EHLOReply("x", "STARTTLS", "AUTH LOGIN")...)
			case line == "STARTTLS":
				c.Reply("220 go")
				if err := c.StartTLS(srvConf); err != nil {
					return err
				}
			case strings.HasPrefix(line, "AUTH LOGIN"):
				// go-sasl's LOGIN client sends the user name as initial response.
				c.Reply("334 " + base64.StdEncoding.EncodeToString([]byte("Password:")))
			case line == base64.StdEncoding.EncodeToString([]byte("pw")):
				c.Reply("235 2.7.0 ok")
			case line == "QUIT":
				return c.Reply("221 bye")
			default:
				c.Reply("500 unexpected")
			}
		}
	})
	c := dial(t, addr)
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewLoginClient("user", "pw")); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	want := []string{"EHLO client.test", "STARTTLS", "EHLO client.test",
		"AUTH LOGIN " + base64.StdEncoding.EncodeToString([]byte("user")), base64.StdEncoding.EncodeToString([]byte("pw")), "QUIT"}
	if lines := <-got; !slices.Equal(lines, want) {
		t.Errorf("server got %q, want %q", lines, want)
	}
}

// A context that ends while a command waits for its reply closes the session.
func TestCloseOnDone(t *testing.T) {
	mailSeen := make(chan struct{})
	addr, _ := smtptest.ServeGreeting(t, "x", nil, func(c *smtptest.Conn) error {
		c.ReadLine() // MAIL: never answered
		close(mailSeen)
		_, err := c.ReadLine()
		return err
	})
	c := dial(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer c.CloseOnDone(ctx)()
	go func() { <-mailSeen; cancel() }()
	_, err := c.Send(&Transaction{From: "a@x.test", Rcpts: rcpts("b@y.test")}, strings.NewReader(testMessage))
	if err == nil || c.Reusable() {
		t.Errorf("Send = %v, reusable %v; want an error and a closed session", err, c.Reusable())
	}
}

func TestDotWriter(t *testing.T) {
	tests := []struct {
		in      []string // written in these chunks
		want    string
		wantErr bool
	}{
		{[]string{"a\r\n.b\r\n"}, "a\r\n..b\r\n.\r\n", false},
		{[]string{".", "\r\n"}, "..\r\n.\r\n", false},
		{[]string{"a\r", "\n", ".", ".x\r\n"}, "a\r\n...x\r\n.\r\n", false},
		{[]string{"a.b\r\n"}, "a.b\r\n.\r\n", false},
		{[]string{""}, ".\r\n", false},
		{[]string{"x"}, "x\r\n.\r\n", false},
		{[]string{"a\nb\r\n"}, "", true},
		{[]string{"a\rb\r\n"}, "", true},
		{[]string{"a\r", "b"}, "", true},
		{[]string{"a\r"}, "", true},
		{[]string{"a\r\n\n"}, "", true},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		dw := &dotWriter{w: bufio.NewWriter(&buf), lineStart: true}
		var err error
		for _, c := range tt.in {
			if _, err = dw.Write([]byte(c)); err != nil {
				break
			}
		}
		if err == nil {
			err = dw.close()
		}
		if tt.wantErr {
			if !errors.Is(err, ErrBareLineEnd) {
				t.Errorf("%q: err = %v, want bare line end", tt.in, err)
			}
			continue
		}
		if err != nil || buf.String() != tt.want {
			t.Errorf("%q: wrote %q, %v; want %q", tt.in, buf.String(), err, tt.want)
		}
	}
}

func TestXText(t *testing.T) {
	for in, want := range map[string]string{"abc": "abc", "a+b=c": "a+2Bb+3Dc", "a b\xe9": "a+20b+E9"} {
		if got := XText(in); got != want {
			t.Errorf("XText(%q) = %q, want %q", in, got, want)
		}
	}
}
