package submit

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/internal/smtpedge"
	"sealgate/internal/smtptest"
	"sealgate/relay"
)

// listenerDials returns a function per kind of listener of s that connects, says
// EHLO and, on the submission listeners, authenticates as billing@client.example
// (s must have been started with newGatedAuth("pw")).
func (s *hardServer) listenerDials(t *testing.T) []struct {
	name string
	dial func() *rawClient
} {
	auth := func(c *rawClient) *rawClient {
		t.Helper()
		if got := c.Cmd(plainAuth("billing@client.example", "pw")); !strings.HasPrefix(got, "235 ") {
			t.Fatalf("AUTH: %q", got)
		}
		return c
	}
	return []struct {
		name string
		dial func() *rawClient
	}{
		{"smart host", func() *rawClient {
			t.Helper()
			conn, err := dialFrom(t, "", s.smart)
			if err != nil {
				t.Fatal(err)
			}
			c := smtptest.NewClient(t, conn)
			c.Greet("mta.client.example")
			return c
		}},
		{"STARTTLS", func() *rawClient { t.Helper(); return auth(s.dialSTARTTLS(t)) }},
		{"implicit TLS", func() *rawClient { t.Helper(); return auth(s.dialImplicitTLS(t)) }},
	}
}

// newEnvelopes returns the envelopes of the messages spooled since the last call
// (seen holds the ids already returned).
func newEnvelopes(t *testing.T, spool *relay.Spool, seen map[string]bool) []*relay.Envelope {
	t.Helper()
	ids, err := spool.List()
	if err != nil {
		t.Fatal(err)
	}
	var envs []*relay.Envelope
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		env, err := spool.Envelope(id)
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, env)
	}
	return envs
}

// splitCommand writes first, which ends with a complete command followed by the
// start of the next one, reads the reply to the complete command (so that the
// server has written it before it reads the rest), then writes rest and returns
// the reply to the second command.
func splitCommand(c *rawClient, first, firstReply, rest string) string {
	c.T.Helper()
	c.Write(first)
	if got := c.Reply(5 * time.Second); !strings.HasPrefix(got, firstReply) {
		c.T.Fatalf("%q: %q, want %q", first, got, firstReply)
	}
	c.Write(rest)
	return c.Reply(5 * time.Second)
}

// TestSplitCommandAroundReply checks that a MAIL or RCPT command whose bytes
// arrive on both sides of our reply to the command pipelined before it is read as
// the client wrote it: our reply does not land in the middle of the argument as
// written, so a quoted local part keeps its meaning (one starting with "@" is not
// taken for a source route) and an unquoted local part holding "@" is refused.
func TestSplitCommandAroundReply(t *testing.T) {
	s := startHardServer(t, Limits{}, newGatedAuth("pw"), nil)
	seen := map[string]bool{}
	for _, l := range s.listenerDials(t) {
		c := l.dial()
		if got := splitCommand(c, "RSET\r\nMAIL FR", "250 ", "OM:<ceo@evil.example@client.example>\r\n"); !strings.HasPrefix(got,
			`553 5.1.7 MAIL FROM <ceo@evil.example@client.example> cannot be relayed as written: the local part holds "@" but is not quoted`) {
			t.Errorf("%s: split unquoted MAIL: %q, want 553 5.1.7 ... cannot be relayed as written", l.name, got)
		}
		if got := splitCommand(c, "RSET\r\nMAIL FR", "250 ", "OM:<\"a b\"@client.example>\r\n"); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("%s: split quoted MAIL: %q", l.name, got)
		}
		for _, step := range []struct{ line, want string }{
			{"RCPT TO:<ops@partner.example>", "250 "},
			{"DATA", "354 "},
			{bareHeader + "\r\nbody\r\n.", "250 "},
		} {
			if got := c.Cmd(step.line); !strings.HasPrefix(got, step.want) {
				t.Fatalf("%s: %q: %q", l.name, step.line, got)
			}
		}
		if envs := newEnvelopes(t, s.spool, seen); len(envs) != 1 || envs[0].From != `"a b"@client.example` {
			t.Errorf("%s: spooled %d messages, want 1 from \"a b\"@client.example", l.name, len(envs))
			for _, env := range envs {
				t.Errorf("  from %s", env.From)
			}
		}
		if got := splitCommand(c, "RSET\r\nMAIL FR", "250 ", "OM:<\"@hop.example:ceo\"@client.example>\r\n"); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("%s: split quoted MAIL: %q", l.name, got)
		}
		if got := splitCommand(c, "NOOP\r\nRCPT T", "250 ", "O:<a@b@partner.example>\r\n"); !strings.HasPrefix(got,
			`553 5.1.3 RCPT TO <a@b@partner.example> cannot be relayed as written`) {
			t.Errorf("%s: split unquoted RCPT: %q, want 553 5.1.3 ... cannot be relayed as written", l.name, got)
		}
		if got := splitCommand(c, "NOOP\r\nRCPT T", "250 ", "O:<\"@hop.example:ops\"@partner.example>\r\n"); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("%s: split quoted RCPT: %q", l.name, got)
		}
		// The same with the split inside the quoted string, and more than one
		// reply between the parts.
		if got := splitCommand(c, "NOOP\r\nRCPT TO:<\"a ", "250 ", "b\"@partner.example>\r\n"); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("%s: RCPT split in its quoted string: %q", l.name, got)
		}
		c.Write("NOOP\r\nNOOP\r\nRCPT TO:<\"x@y\"@part")
		for i := 0; i < 2; i++ {
			if got := c.Reply(5 * time.Second); !strings.HasPrefix(got, "250 ") {
				t.Fatalf("%s: NOOP: %q", l.name, got)
			}
		}
		c.Write("ner.example>\r\n")
		if got := c.Reply(5 * time.Second); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("%s: RCPT split after two replies: %q", l.name, got)
		}
		if got := c.Cmd("DATA"); !strings.HasPrefix(got, "354 ") {
			t.Fatalf("%s: DATA: %q", l.name, got)
		}
		if got := c.Cmd(bareHeader + "\r\nbody\r\n."); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("%s: message: %q", l.name, got)
		}
		envs := newEnvelopes(t, s.spool, seen)
		if len(envs) != 1 {
			t.Fatalf("%s: %d messages spooled, want 1", l.name, len(envs))
		}
		wantTo := `"@hop.example:ops"@partner.example "a b"@partner.example "x@y"@partner.example`
		if got := strings.Join(envs[0].To, " "); envs[0].From != `"@hop.example:ceo"@client.example` || got != wantTo {
			t.Errorf("%s: envelope %s -> %s, want \"@hop.example:ceo\"@client.example -> %s", l.name, envs[0].From, got, wantTo)
		}
	}
}

// TestDotBareCRSplitAroundReply checks that a line "." followed by a bare CR is
// refused when our 354 reply is written between the "." and the CR: the client
// sends DATA, the message up to the ".", waits for the 354, then sends the CR.
func TestDotBareCRSplitAroundReply(t *testing.T) {
	s := startHardServer(t, Limits{}, newGatedAuth("pw"), nil)
	for _, l := range s.listenerDials(t) {
		c := l.dial()
		for _, step := range []struct{ line, want string }{
			{"MAIL FROM:<billing@client.example>", "250 "},
			{"RCPT TO:<ops@partner.example>", "250 "},
		} {
			if got := c.Cmd(step.line); !strings.HasPrefix(got, step.want) {
				t.Fatalf("%s: %s: %q", l.name, step.line, got)
			}
		}
		c.Write("DATA\r\n" + bareHeader + "\r\nhello\r\n.")
		if got := c.Reply(5 * time.Second); !strings.HasPrefix(got, "354 ") {
			t.Fatalf("%s: DATA: %q", l.name, got)
		}
		c.Write("\rX-Smuggled: yes\r\n.\r\n")
		c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := c.R.ReadString('\n')
		if !strings.HasPrefix(line, "550 5.6.0 ") && !(line == "" && err != nil && !isTimeout(err)) {
			t.Errorf("%s: %q, %v; want 550 5.6.0 or a closed connection", l.name, line, err)
		}
	}
	if ids, _ := s.spool.List(); len(ids) != 0 {
		t.Errorf("spool holds %d messages, want none", len(ids))
	}
}

// TestPipelinedSessionReplies checks that a session that pipelines whole commands
// (RFC 2920), quoted local parts among them, gets its 250s and its envelope as
// written.
func TestPipelinedSessionReplies(t *testing.T) {
	s := startHardServer(t, Limits{}, newGatedAuth("pw"), nil)
	seen := map[string]bool{}
	for _, l := range s.listenerDials(t) {
		c := l.dial()
		c.Write("RSET\r\nMAIL FROM:<\"a b\"@client.example>\r\nRCPT TO:<\"x@y\"@partner.example>\r\n" +
			"RCPT TO:<ops@partner.example>\r\nNOOP\r\nDATA\r\n")
		for _, want := range []string{"250 ", "250 ", "250 ", "250 ", "250 ", "354 "} {
			if got := c.Reply(5 * time.Second); !strings.HasPrefix(got, want) {
				t.Fatalf("%s: pipelined reply %q, want %q", l.name, got, want)
			}
		}
		c.Write(bareHeader + "\r\nbody\r\n.\r\nMAIL FROM:<billing@client.example>\r\nRCPT TO:<\"p q\"@partner.example>\r\nDATA\r\n")
		for _, want := range []string{"250 ", "250 ", "250 ", "354 "} {
			if got := c.Reply(5 * time.Second); !strings.HasPrefix(got, want) {
				t.Fatalf("%s: pipelined reply %q, want %q", l.name, got, want)
			}
		}
		if got := c.Cmd(bareHeader + "\r\nbody\r\n."); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("%s: second message: %q", l.name, got)
		}
		// BDAT (RFC 3030): the chunks hold lines that look like commands, and
		// the next transaction follows the last chunk at once.
		msg := bareHeader + "\r\nMAIL FROM:<\"x@y\"@client.example>\r\n.\rRCPT TO:<a@b@partner.example>\r\n"
		next := bareHeader + "\r\nbody\r\n"
		c.Write(fmt.Sprintf("MAIL FROM:<billing@client.example>\r\nRCPT TO:<ops@partner.example>\r\nBDAT 10\r\n%sBDAT %d LAST\r\n%s", msg[:10], len(msg)-10, msg[10:]) +
			fmt.Sprintf("MAIL FROM:<\"r s\"@client.example>\r\nRCPT TO:<\"t@u\"@partner.example>\r\nBDAT %d LAST\r\n%s", len(next), next))
		for _, want := range []string{"250 ", "250 ", "250 ", "550 5.6.0 ", "250 ", "250 ", "250 "} {
			if got := c.Reply(5 * time.Second); !strings.HasPrefix(got, want) {
				t.Fatalf("%s: pipelined BDAT reply %q, want %q", l.name, got, want)
			}
		}
		envs := newEnvelopes(t, s.spool, seen)
		var got []string
		for _, env := range envs {
			got = append(got, env.From+" -> "+strings.Join(env.To, " "))
		}
		want := []string{`"a b"@client.example -> "x@y"@partner.example ops@partner.example`, `billing@client.example -> "p q"@partner.example`,
			`"r s"@client.example -> "t@u"@partner.example`}
		if strings.Join(got, "; ") != strings.Join(want, "; ") {
			t.Errorf("%s: envelopes %q, want %q", l.name, got, want)
		}
	}
}

// TestEnvelopePathNotCaptured checks MAIL and RCPT values whose argument as
// written was not captured: a local part that is a Dot-string means the same
// quoted or not and is accepted; one that is not (go-smtp removed its quoting,
// or it was never valid) is refused with a request to send the command again,
// and logged with its reason code, never stored in a form the client may not
// have meant.
func TestEnvelopePathNotCaptured(t *testing.T) {
	logs := &lockedLog{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	cc := &clientConn{s: &Server{Log: log}}
	se := &session{s: cc.s, cc: cc, log: log,
		identity: NewIdentity("mta", KindClientNetwork, MustParsePatterns("*@client.example"))}
	for _, tc := range []struct{ verb, value, want string }{
		{"MAIL", "billing@client.example", "billing@client.example"},
		{"RCPT", "o.p.s@partner.example", "o.p.s@partner.example"},
		{"MAIL", "a b@client.example", "553 5.1.7 "},
		{"MAIL", "ceo@evil.example@client.example", "553 5.1.7 "},
		{"MAIL", "@hop.example:ceo@client.example", "553 5.1.7 "},
		{"RCPT", "a..b@partner.example", "501 5.1.3 "},
		{"RCPT", "x@y@partner.example", "501 5.1.3 "},
		{"RCPT", `a"b@partner.example`, "501 5.1.3 "},
	} {
		se.resetTransaction()
		var err error
		if tc.verb == "MAIL" {
			err = se.Mail(tc.value, nil)
		} else {
			err = se.Rcpt(tc.value, nil)
		}
		stored := se.from
		if tc.verb == "RCPT" && len(se.to) > 0 {
			stored = se.to[0]
		}
		switch {
		case strings.Contains(tc.want, " ") && err == nil:
			t.Errorf("%s %q: accepted as %q, want %s", tc.verb, tc.value, stored, tc.want)
		case strings.Contains(tc.want, " "):
			var e *smtp.SMTPError
			if !errors.As(err, &e) {
				t.Fatalf("%s %q: %v is not an *smtp.SMTPError", tc.verb, tc.value, err)
			}
			got := fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
			if !strings.HasPrefix(got, tc.want) || !strings.HasSuffix(got, "send the command again") {
				t.Errorf("%s %q: %q, want %s... send the command again", tc.verb, tc.value, got, tc.want)
			}
			if !strings.Contains(logs.String(), "level=WARN msg=\""+map[string]string{"MAIL": "MAIL FROM", "RCPT": "RCPT TO"}[tc.verb]+" refused\" reason=address_syntax") {
				t.Errorf("%s %q: refusal not logged with reason=address_syntax:\n%s", tc.verb, tc.value, logs.String())
			}
		case err != nil:
			t.Errorf("%s %q: %v, want %q", tc.verb, tc.value, err, tc.want)
		case stored != tc.want:
			t.Errorf("%s %q: stored %q, want %q", tc.verb, tc.value, stored, tc.want)
		}
	}
	// With the argument as written captured, it decides.
	wp, ok := smtpedge.ParseWirePath("MAIL", `"a b"@client.example`)
	if !ok {
		t.Fatal("ParseWirePath failed")
	}
	cc.AddPath(wp)
	if err := se.Mail("a b@client.example", nil); err != nil || se.from != `"a b"@client.example` {
		t.Errorf("captured quoted MAIL: %q, %v", se.from, err)
	}
}
