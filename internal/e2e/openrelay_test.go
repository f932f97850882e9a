package e2e

import (
	"strings"
	"testing"
	"time"
)

// relayRecipients are the open-relay probes of standards.md §8.7, with our relay's
// own name where a relay host appears.
var relayRecipients = []struct{ name, rcpt string }{
	{"plain foreign recipient", "ops@partner.example"},
	{"percent hack", "ops%partner.example@relay.example.test"},
	{"source route", "@relay.example.test:ops@partner.example"},
	{"quoted local part", `"ops@partner.example"@relay.example.test`},
	{"bang path", "partner.example!ops@relay.example.test"},
	{"IP literal", "ops@[192.0.2.99]"},
	{"IPv6 literal", "ops@[IPv6:2001:db8::99]"},
	{"trailing dot", "ops@partner.example."},
	{"case variant", "OPS@PARTNER.EXAMPLE"},
	{"local domain", "demo@example.test"},
}

// relaySenders are envelope senders an unauthenticated client tries.
var relaySenders = []struct{ name, from string }{
	{"customer domain", devLogin},
	{"foreign", "ceo@bank.example"},
	{"null sender", ""},
}

// TestOpenRelayBattery: a client that has not authenticated (submission ports) or
// comes from an untrusted address (smart-host port) gets no MAIL and no RCPT
// accepted, whatever the address form.
func TestOpenRelayBattery(t *testing.T) {
	r := startRelay(t, "")
	type conn struct {
		name string
		dial func(t *testing.T) *smtpClient
		// acceptable MAIL refusals
		mail [][2]any
	}
	unauth := [][2]any{{530, "5.7.0"}, {554, "5.7.1"}}
	conns := []conn{
		{"submission plaintext", func(t *testing.T) *smtpClient {
			c := dial(t, r.Submission, dialOpts{})
			c.ehlo()
			return c
		}, unauth},
		{"submission after STARTTLS without AUTH", func(t *testing.T) *smtpClient {
			c := dial(t, r.Submission, dialOpts{})
			c.ehlo()
			c.startTLS()
			c.ehlo()
			return c
		}, unauth},
		{"submissions implicit TLS without AUTH", func(t *testing.T) *smtpClient {
			c := dial(t, r.Submissions, dialOpts{implicitTLS: true})
			c.ehlo()
			return c
		}, unauth},
		// 127.0.0.1/32 is the trusted network in dev mode; 127.0.0.2 is loopback too
		// on Linux but not trusted: the "wrong network" case.
		{"smarthost from untrusted 127.0.0.2", func(t *testing.T) *smtpClient {
			c, err := dialErr(t, r.SmartHost, dialOpts{localAddr: "127.0.0.2"})
			if err != nil {
				t.Skipf("cannot connect from 127.0.0.2 (%v); the untrusted-network case needs it", err)
			}
			c.ehlo()
			return c
		}, [][2]any{{550, "5.7.1"}, {554, "5.7.1"}, {530, "5.7.0"}}},
	}
	for _, cn := range conns {
		t.Run(cn.name, func(t *testing.T) {
			before := r.snapshot()
			for _, s := range relaySenders {
				c := cn.dial(t)
				m := c.cmd("MAIL FROM:<" + s.from + ">")
				ok := false
				for _, w := range cn.mail {
					ok = ok || m.is(w[0].(int), w[1].(string))
				}
				if !ok {
					t.Errorf("MAIL FROM:<%s> (%s): want one of %v, got %s\ntranscript:\n%s", s.from, s.name, cn.mail, m, c.Transcript())
				}
				for _, rc := range relayRecipients {
					rp := c.cmd("RCPT TO:<" + rc.rcpt + ">")
					if rp.Code < 400 {
						t.Errorf("RCPT TO:<%s> (%s) after MAIL FROM:<%s>: got %s, must be refused\ntranscript:\n%s", rc.rcpt, rc.name, s.from, rp, c.Transcript())
					}
				}
				if d := c.cmd("DATA"); d.Code < 400 {
					t.Errorf("DATA: got %s, must be refused", d)
					c.rawData([]byte("From: demo@example.test\r\n\r\nx\r\n.\r\n"))
				}
				c.quit()
			}
			r.assertNothingSpooled(t, before, cn.name)
		})
	}

	// Control: the trusted network (127.0.0.1) may use the smart host, so the
	// refusal above is about the address and not a broken listener.
	t.Run("smarthost from trusted 127.0.0.1 accepts", func(t *testing.T) {
		c := dial(t, r.SmartHost, dialOpts{})
		defer c.quit()
		c.ehlo()
		stage, rp := c.send(devLogin, []string{"ops@partner.example"}, msg("From: demo@example.test\n"+stdTail, "Hello.\n"))
		if stage != "END" || rp.Code != 250 {
			t.Fatalf("want 250, got %s at %s\ntranscript:\n%s", rp, stage, c.Transcript())
		}
	})
}

// TestAuthRequiresTLS: AUTH is neither offered nor accepted on the plaintext
// submission connection, and sending credentials there leaves no trace after
// STARTTLS.
func TestAuthRequiresTLS(t *testing.T) {
	r := startRelay(t, "")

	t.Run("not advertised before STARTTLS, advertised after", func(t *testing.T) {
		c := dial(t, r.Submission, dialOpts{})
		defer c.quit()
		e := c.ehlo()
		if hasExt(e, "AUTH") {
			t.Errorf("EHLO on the plaintext connection advertises AUTH: %s", e)
		}
		if !hasExt(e, "STARTTLS") {
			t.Errorf("EHLO on the plaintext connection does not advertise STARTTLS: %s", e)
		}
		c.startTLS()
		e = c.ehlo()
		if !hasExt(e, "AUTH") || !strings.Contains(strings.Join(e.Lines, " "), "PLAIN") || !strings.Contains(strings.Join(e.Lines, " "), "LOGIN") {
			t.Errorf("EHLO after STARTTLS: want AUTH PLAIN LOGIN, got %s", e)
		}
		if hasExt(e, "STARTTLS") {
			t.Errorf("EHLO after STARTTLS still advertises STARTTLS: %s", e)
		}
	})

	refusedPlainAuth := func(rp reply) bool { return rp.is(538, "5.7.11") || rp.is(530, "5.7.0") }
	t.Run("AUTH PLAIN on plaintext refused", func(t *testing.T) {
		c := dial(t, r.Submission, dialOpts{})
		defer c.quit()
		c.ehlo()
		if rp := c.authPlain(devLogin, r.password); !refusedPlainAuth(rp) {
			t.Errorf("AUTH PLAIN before STARTTLS: want 538 5.7.11 or 530 5.7.0, got %s\ntranscript:\n%s", rp, c.Transcript())
		}
		// and the connection is not authenticated afterwards
		if m := c.cmd("MAIL FROM:<" + devLogin + ">"); !m.is(530, "5.7.0") {
			t.Errorf("MAIL after refused AUTH: want 530 5.7.0, got %s", m)
		}
	})
	t.Run("AUTH LOGIN on plaintext refused", func(t *testing.T) {
		c := dial(t, r.Submission, dialOpts{})
		defer c.quit()
		c.ehlo()
		if rp := c.cmd("AUTH LOGIN"); !refusedPlainAuth(rp) {
			t.Errorf("AUTH LOGIN before STARTTLS: want 538 5.7.11 or 530 5.7.0, got %s\ntranscript:\n%s", rp, c.Transcript())
		}
	})
	t.Run("AUTH on the smart-host port refused", func(t *testing.T) {
		c := dial(t, r.SmartHost, dialOpts{})
		defer c.quit()
		e := c.ehlo()
		if hasExt(e, "AUTH") {
			t.Errorf("smart host advertises AUTH on plaintext: %s", e)
		}
		if rp := c.authPlain(devLogin, r.password); rp.Code/100 != 5 {
			t.Errorf("AUTH on the plaintext smart-host port: want a 5xx refusal, got %s", rp)
		}
	})
	t.Run("auth state does not survive STARTTLS", func(t *testing.T) {
		c := dial(t, r.Submission, dialOpts{})
		defer c.quit()
		c.ehlo()
		c.authPlain(devLogin, r.password) // refused, tested above
		c.startTLS()
		c.ehlo()
		if m := c.cmd("MAIL FROM:<" + devLogin + ">"); !m.is(530, "5.7.0") {
			t.Errorf("MAIL after STARTTLS without AUTH over TLS: want 530 5.7.0, got %s\ntranscript:\n%s", m, c.Transcript())
		}
	})
	t.Run("STARTTLS command injection is not executed", func(t *testing.T) {
		// CVE-2011-0411 style: a command pipelined after STARTTLS in plaintext must be
		// discarded, not run inside the TLS session.
		c := dial(t, r.Submission, dialOpts{})
		defer c.quit()
		c.ehlo()
		c.logf("C: STARTTLS + injected RSET in one write")
		if err := c.write([]byte("STARTTLS\r\nRSET\r\n")); err != nil {
			t.Fatal(err)
		}
		rp, err := c.readReply()
		if err != nil || rp.Code != 220 {
			t.Fatalf("STARTTLS: %v %s", err, rp)
		}
		tc := tlsClient(c)
		if err := tc.Handshake(); err != nil {
			t.Logf("TLS handshake failed after the injected bytes (%v): the command was not executed", err)
			return
		}
		c.useTLS(tc)
		// The first reply inside TLS must answer our EHLO, not the injected RSET.
		e := c.cmd("EHLO client.e2e.test")
		if e.Code != 250 || len(e.Lines) < 2 {
			t.Errorf("first reply inside TLS is %s: the injected plaintext command was executed\ntranscript:\n%s", e, c.Transcript())
		}
		if c.r.Buffered() > 0 {
			t.Errorf("extra data after EHLO reply inside TLS: the injected command was answered")
		}
	})
	t.Run("reconnect is unauthenticated", func(t *testing.T) {
		c := dialAuth(t, r)
		c.quit()
		c = dial(t, r.Submission, dialOpts{})
		defer c.quit()
		c.ehlo()
		c.startTLS()
		c.ehlo()
		if m := c.cmd("MAIL FROM:<" + devLogin + ">"); !m.is(530, "5.7.0") {
			t.Errorf("MAIL on a new connection: want 530 5.7.0, got %s", m)
		}
	})
	t.Run("RSET and EHLO clear the transaction, policy still applies", func(t *testing.T) {
		// RSET and a repeated EHLO end the mail transaction (RFC 5321 §4.1.1.5,
		// §4.1.4); the SASL identity stays, as RFC 4954 and real clients (connection
		// caching with RSET between messages) expect, and it keeps being checked.
		before := r.snapshot()
		c := dialAuth(t, r)
		defer c.quit()
		for _, reset := range []string{"RSET", "EHLO client.e2e.test"} {
			c.expect("MAIL FROM:<"+devLogin+">", 250)
			c.expect("RCPT TO:<ops@partner.example>", 250)
			c.expect(reset, 250)
			// go-smtp answers 502 5.5.1 where 503 would be exact; any 5xx proves the
			// transaction is gone.
			if d := c.cmd("DATA"); d.Code/100 != 5 {
				t.Errorf("DATA after %s: want a 5xx (no transaction), got %s", reset, d)
				if d.Code == 354 {
					c.rawData(msg("From: demo@example.test\n"+stdTail, "x\n"))
				}
			}
			if m := c.cmd("MAIL FROM:<ceo@bank.example>"); !m.is(553, "5.7.1") {
				t.Errorf("foreign MAIL FROM after %s: want 553 5.7.1, got %s", reset, m)
			}
			c.expect("RSET", 250)
		}
		r.assertNothingSpooled(t, before, "RSET")
	})
	t.Run("authenticated client, IP literal recipients refused", func(t *testing.T) {
		before := r.snapshot()
		for _, rc := range []string{"ops@[192.0.2.99]", "ops@[IPv6:2001:db8::99]", "@relay.example.test:ops@[192.0.2.99]"} {
			c := dialAuth(t, r)
			c.expect("MAIL FROM:<"+devLogin+">", 250)
			rp := c.cmd("RCPT TO:<" + rc + ">")
			if rc == "ops@[192.0.2.99]" && !rp.is(550, "5.7.1") || rp.Code/100 != 5 {
				t.Errorf("RCPT TO:<%s>: want 550 5.7.1 (5xx at least), got %s", rc, rp)
			}
			c.quit()
		}
		r.assertNothingSpooled(t, before, "IP literal")
	})
}

// TestAuthFailureThrottle: a wrong password gets 535 5.7.8; after 5 failures from
// one address AUTH gets 421 4.7.0, even with the right password.
func TestAuthFailureThrottle(t *testing.T) {
	r := startRelay(t, "") // its own relay: the throttle state is per process
	var got []string
	for i := 1; i <= 5; i++ {
		c := dial(t, r.Submission, dialOpts{})
		c.ehlo()
		c.startTLS()
		c.ehlo()
		var rp reply
		if i%2 == 1 {
			rp = c.authPlain(devLogin, "wrong-password")
		} else {
			rp = c.authLogin(devLogin, "wrong-password")
		}
		got = append(got, rp.String())
		switch {
		case i < 5 && !rp.is(535, "5.7.8"):
			t.Errorf("failure %d: want 535 5.7.8, got %s", i, rp)
		case i == 5 && !rp.is(535, "5.7.8") && !rp.is(421, "4.7.0"):
			t.Errorf("failure %d: want 535 5.7.8 or 421 4.7.0, got %s", i, rp)
		}
		c.quit()
	}
	t.Logf("replies to the 5 failed AUTHs: %q", got)
	// Now blocked: the right password is refused too, with 421 4.7.0.
	c := dial(t, r.Submission, dialOpts{})
	c.ehlo()
	c.startTLS()
	c.ehlo()
	rp := c.authPlain(devLogin, r.password)
	if !rp.is(421, "4.7.0") {
		t.Errorf("AUTH after 5 failures: want 421 4.7.0, got %s (earlier: %q)", rp, got)
	}
	t.Run("421 closes the connection", func(t *testing.T) {
		// RFC 5321 §3.8 and §4.2.2: 421 means "closing transmission channel"; the
		// server must close after sending it.
		if rp.Code == 421 && !c.closedByServer(3*time.Second) {
			t.Errorf("connection still open 3 s after 421 4.7.0\ntranscript:\n%s", c.Transcript())
		}
	})
	c.conn.Close()
	// The demo login is not locked for other sources (only 127.0.0.1 is throttled):
	// checked only when 127.0.0.2 is usable.
	if c2, err := dialErr(t, r.Submission, dialOpts{localAddr: "127.0.0.2"}); err == nil {
		c2.ehlo()
		c2.startTLS()
		c2.ehlo()
		if rp := c2.authPlain(devLogin, r.password); rp.Code != 235 {
			t.Errorf("AUTH from 127.0.0.2 while 127.0.0.1 is throttled: want 235, got %s", rp)
		}
		c2.quit()
	}
}
