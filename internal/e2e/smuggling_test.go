package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSMTPSmuggling sends the published SMTP smuggling payloads (SEC Consult,
// Dec 2023; standards.md §8.6) over an authenticated session: a first message whose
// body holds a lenient end-of-data sequence, followed by the commands and content of
// a second message, and only then the real CRLF.CRLF. The relay must refuse the
// whole DATA (550 5.6.0) at once and hang up, or at most accept exactly one message
// without a bare CR or LF; the smuggled second message must never be accepted.
func TestSMTPSmuggling(t *testing.T) {
	r := startRelay(t, "")
	ends := []struct{ name, seq string }{
		{"LF.LF", "\n.\n"},
		{"LF.CRLF", "\n.\r\n"},
		{"CRLF.LF", "\r\n.\n"},
		{"CR.CR", "\r.\r"},
		{"CRLF.CR", "\r\n.\r"},
		{"CR.CRLF", "\r.\r\n"},
		{"CR.LF", "\r.\n"},
		{"LF.CR", "\n.\r"},
		{"CRLF.CR.CRLF", "\r\n.\r\r\n"},
		{"CRLF.LF.CRLF", "\r\n\n.\r\n"},
	}
	type variant struct{ name, payload string }
	var variants []variant
	for i, e := range ends {
		smuggled := fmt.Sprintf("MAIL FROM:<%s>\r\nRCPT TO:<victim@partner.example>\r\nDATA\r\n"+
			"From: %s\r\nTo: victim@partner.example\r\nSubject: SMUGGLED %d\r\nMessage-ID: <smuggled-%d@e2e.test>\r\n\r\n"+
			"smuggled body\r\n", devLogin, devLogin, i, i)
		variants = append(variants, variant{"smuggle " + e.name,
			carrierHeader(i) + "\r\ncarrier body line" + e.seq + smuggled + ".\r\n"})
	}
	variants = append(variants,
		variant{"bare LF lines in body", carrierHeader(100) + "\r\nline one\nline two\nline three\r\n.\r\n"},
		variant{"bare CR in body", carrierHeader(101) + "\r\nline one\rline two\r\n.\r\n"},
		variant{"bare CR at end of body", carrierHeader(102) + "\r\nline one\r\r\n.\r\n"},
		variant{"bare LF in header", strings.Replace(carrierHeader(103), "Subject: smuggling carrier\r\n", "Subject: smuggling carrier\nX-Injected: yes\r\n", 1) + "\r\nbody\r\n.\r\n"},
		variant{"bare CR in header", strings.Replace(carrierHeader(104), "Subject: smuggling carrier\r\n", "Subject: smuggling\rcarrier\r\n", 1) + "\r\nbody\r\n.\r\n"},
		variant{"bare LF ends header", carrierHeader(105) + "\nbody\r\n.\r\n"},
	)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			before := r.snapshot()
			c := dialAuth(t, r)
			defer c.quit()
			c.expect("MAIL FROM:<"+devLogin+">", 250)
			c.expect("RCPT TO:<ops@partner.example>", 250)
			c.expect("DATA", 354)
			// The relay answers in milliseconds; a missing reply means it did not see
			// the real CRLF.CRLF at the end and is still reading DATA.
			c.logf("C: <payload %q>", v.payload)
			if err := c.write([]byte(v.payload)); err != nil {
				t.Fatalf("writing the payload: %v", err)
			}
			// This holds also for CR CR LF . CR LF, in which go-smtp v0.25.1's DATA reader
			// does not see the end (its state machine is mid-line after CR CR): the relay
			// refuses the bare CR when the bytes arrive, without waiting for an end.
			rp, err := c.readReplyTimeout(5 * time.Second)
			if err != nil {
				t.Fatalf("no reply within 5 s after the payload, which ends in a valid CRLF.CRLF (%v): the relay did not see the end of DATA and keeps reading the session as message data until its DATA timeout\ntranscript:\n%s", err, c.Transcript())
			}
			// Any further reply means the server read our smuggled commands as SMTP.
			if extra, err := c.readReplyTimeout(300 * time.Millisecond); err == nil {
				t.Errorf("server sent another reply after the end of DATA (%s): the smuggled commands were executed\ntranscript:\n%s", extra, c.Transcript())
			}
			hungUp := false
			switch {
			case rp.is(550, "5.6.0"):
				r.assertNothingSpooled(t, before, v.name)
				// After a bare CR or LF, where the data ends is ambiguous, so the relay
				// hangs up instead of looking for the end (as Postfix does with
				// smtpd_forbid_bare_newline).
				if !c.closedByServer(5 * time.Second) {
					t.Errorf("connection still open 5 s after 550 5.6.0 for a bare CR/LF; want it closed\ntranscript:\n%s", c.Transcript())
				}
				hungUp = true
			case rp.Code == 250:
				// Allowed by the smuggling criterion only as exactly one clean message.
				body := r.waitOutbox(t, queueID(t, rp))
				if off := bareLineEnds(body); off >= 0 {
					t.Errorf("accepted message carries a bare CR or LF at offset %d: %q", off, body[max(0, off-20):min(len(body), off+20)])
				}
				time.Sleep(200 * time.Millisecond)
				if n := newFiles(before, r.snapshot()); len(n) != 1 {
					t.Errorf("want exactly one new message, got files %v", n)
				}
				if s := headerFields(body, "Subject"); len(s) != 1 || s[0] != "smuggling carrier" {
					t.Errorf("accepted message has Subject %q, want the carrier's", s)
				}
				// Issue 3 and standards.md §8.6 rule 2 go further: a bare CR or LF in
				// DATA is refused, never silently repaired.
				// go-smtp v0.25.1's DATA reader drops ".\r" at the start of a line before
				// sealgate sees the bytes, so these variants cannot be refused; what is
				// stored is the message without them (checked above: no bare CR/LF, one
				// message, the carrier's). Every other variant must be refused.
				if goSMTPDropsDotCR[v.name] {
					t.Logf("known go-smtp limitation: %q dropped by the DATA reader; accepted as one clean message", ".\r")
					break
				}
				t.Run("refused not repaired", func(t *testing.T) {
					_, gotBody, _ := bytes.Cut(body, []byte("\r\n\r\n"))
					_, sentBody, _ := strings.Cut(v.payload, "\r\n\r\n")
					sentBody = strings.TrimSuffix(sentBody, ".\r\n")
					t.Errorf("DATA with a bare CR/LF was accepted (%s) instead of 550 5.6.0; stored body differs from the bytes sent: %v\nsent:   %q\nstored: %q",
						rp, string(gotBody) != sentBody, truncate(sentBody, 120), truncate(string(gotBody), 120))
				})
			default:
				t.Errorf("end of DATA: want 550 5.6.0, got %s\ntranscript:\n%s", rp, c.Transcript())
			}
			// The relay must then take a normal message: on a new session after hanging
			// up, otherwise on the same session, which must still be in step with us
			// (the next command gets its own reply).
			if hungUp {
				c = dialAuth(t, r)
				defer c.quit()
			} else if n := c.cmd("NOOP"); n.Code != 250 {
				t.Errorf("NOOP after the payload: want 250, got %s (session out of step)\ntranscript:\n%s", n, c.Transcript())
			}
			stage, ok := c.send(devLogin, []string{"ops@partner.example"}, msg("From: demo@example.test\n"+stdTail, "after "+v.name+"\n"))
			if stage != "END" || ok.Code != 250 {
				t.Errorf("normal message after the payload: want 250, got %s at %s", ok, stage)
				return
			}
			delivered := r.waitOutbox(t, queueID(t, ok))
			if bytes.Contains(delivered, []byte("SMUGGLED")) || bytes.Contains(delivered, []byte("smuggled body")) {
				t.Errorf("the normal message carries smuggled content:\n%s", delivered)
			}
		})
	}
	// Finally, no delivered message is the smuggled one (its own header).
	for f := range r.snapshot() {
		if !strings.HasPrefix(f, "outbox/") {
			continue
		}
		b := r.readFile(t, f)
		for _, s := range headerFields(b, "Subject") {
			if strings.HasPrefix(s, "SMUGGLED") {
				t.Errorf("%s is a smuggled message:\n%s", f, b)
			}
		}
	}
}

// Payloads whose bare CR the relay cannot see, because go-smtp v0.25.1's DATA reader
// drops ".\r" at the start of a line before the relay reads the bytes (see
// libraries.md §1); the test checks the safety properties that still hold for them.
var goSMTPDropsDotCR = map[string]bool{"smuggle CRLF.CR": true, "smuggle CRLF.CR.CRLF": true}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func carrierHeader(i int) string {
	return fmt.Sprintf("From: %s\r\nTo: ops@partner.example\r\nSubject: smuggling carrier\r\n"+
		"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <carrier-%d@e2e.test>\r\n", devLogin, i)
}
