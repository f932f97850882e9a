package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// msg builds a message from header lines and a body written with "\n"; the
// result uses CRLF. The default Date and Message-ID keep the pipeline from adding any.
func msg(header, body string) []byte {
	return crlf(strings.TrimRight(header, "\n") + "\n\n" + body)
}

const stdTail = "To: ops@partner.example\nSubject: policy test\nDate: Sun, 22 Nov 2026 10:00:00 +0000\nMessage-ID: <policy@e2e.test>\n"

// TestSenderPolicyRefusals sends, over an authenticated STARTTLS session as
// demo@example.test (may send as *@example.test), every message the sender policy
// must refuse, and checks the exact reply and that nothing was spooled.
func TestSenderPolicyRefusals(t *testing.T) {
	r := startRelay(t, "")
	cases := []struct {
		name     string
		mailFrom string
		header   string // without the stdTail
		stage    string // where the refusal is expected: MAIL or END (after DATA)
		code     int
		enh      string
	}{
		{"envelope sender outside may_send_as", "ceo@bank.example", "From: demo@example.test\n", "MAIL", 553, "5.7.1"},
		{"envelope sender in a subdomain", "demo@sub.example.test", "From: demo@example.test\n", "MAIL", 553, "5.7.1"},
		{"envelope sender lookalike domain", "demo@example.test.bank.example", "From: demo@example.test\n", "MAIL", 553, "5.7.1"},
		{"envelope sender address literal", "demo@[127.0.0.1]", "From: demo@example.test\n", "MAIL", 553, "5.7.1"},
		{"null envelope sender for a login", "", "From: demo@example.test\n", "MAIL", 553, "5.7.1"},
		{"From outside may_send_as", devLogin, "From: ceo@bank.example\n", "END", 550, "5.7.1"},
		{"From outside, display name ours", devLogin, "From: Demo <ceo@bank.example>\n", "END", 550, "5.7.1"},
		{"no From", devLogin, "Sender: demo@example.test\n", "END", 550, "5.7.1"},
		{"two From fields", devLogin, "From: demo@example.test\nFrom: demo@example.test\n", "END", 550, "5.7.1"},
		{"two From fields, second foreign", devLogin, "From: demo@example.test\nFrom: ceo@bank.example\n", "END", 550, "5.7.1"},
		{"unparsable From", devLogin, "From: demo@@example.test\n", "END", 550, "5.7.1"},
		{"unparsable From, unclosed angle", devLogin, "From: Demo <demo@example.test\n", "END", 550, "5.7.1"},
		{"empty From", devLogin, "From:\n", "END", 550, "5.7.1"},
		{"group syntax without mailbox", devLogin, "From: undisclosed-recipients:;\n", "END", 550, "5.7.1"},
		{"From mailbox list with a foreign mailbox", devLogin, "From: demo@example.test, ceo@bank.example\nSender: demo@example.test\n", "END", 550, "5.7.1"},
		{"From address literal", devLogin, "From: demo@[127.0.0.1]\n", "END", 550, "5.7.1"},
		{"Sender outside may_send_as", devLogin, "From: demo@example.test\nSender: ceo@bank.example\n", "END", 550, "5.7.1"},
		{"display name is a foreign address", devLogin, "From: \"ceo@bank.example\" <demo@example.test>\n", "END", 550, "5.7.1"},
		{"display name is a foreign address, unquoted angle", devLogin, "From: \"CEO <ceo@bank.example>\" <demo@example.test>\n", "END", 550, "5.7.1"},
		{"encoded-word display name is a foreign address", devLogin, "From: =?utf-8?q?ceo=40bank=2Eexample?= <demo@example.test>\n", "END", 550, "5.7.1"},
		{"Resent-From foreign", devLogin, "From: demo@example.test\nResent-From: ceo@bank.example\n", "END", 550, "5.7.1"},
		{"Resent-Sender foreign", devLogin, "From: demo@example.test\nResent-From: demo@example.test\nResent-Sender: ceo@bank.example\n", "END", 550, "5.7.1"},
		// maddy's gap: a permitted Sender must not vouch for a foreign From.
		{"foreign From with our Sender", devLogin, "From: ceo@corp.example\nSender: demo@example.test\n", "END", 550, "5.7.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialAuth(t, r)
			defer c.quit()
			before := r.snapshot()
			stage, rp := c.send(tc.mailFrom, []string{"ops@partner.example"}, msg(tc.header+stdTail, "Hello.\n"))
			if stage != tc.stage || !rp.is(tc.code, tc.enh) {
				t.Errorf("want %d %s at %s, got %s at %s\ntranscript:\n%s", tc.code, tc.enh, tc.stage, rp, stage, c.Transcript())
			}
			r.assertNothingSpooled(t, before, tc.name)
		})
	}

	// The smart host's network identity (127.0.0.1/32, *@example.test) is held to
	// the same rules.
	smart := []struct {
		name, mailFrom, header, stage string
		code                          int
	}{
		{"MAIL FROM outside", "ceo@bank.example", "From: demo@example.test\n", "MAIL", 553},
		{"From outside", devLogin, "From: ceo@bank.example\n", "END", 550},
		{"foreign From with our Sender", devLogin, "From: ceo@corp.example\nSender: demo@example.test\n", "END", 550},
		{"display name is a foreign address", devLogin, "From: \"ceo@bank.example\" <demo@example.test>\n", "END", 550},
	}
	for _, tc := range smart {
		t.Run("smarthost/"+tc.name, func(t *testing.T) {
			c := dial(t, r.SmartHost, dialOpts{})
			defer c.quit()
			c.ehlo()
			before := r.snapshot()
			stage, rp := c.send(tc.mailFrom, []string{"ops@partner.example"}, msg(tc.header+stdTail, "Hello.\n"))
			if stage != tc.stage || !rp.is(tc.code, "5.7.1") {
				t.Errorf("want %d 5.7.1 at %s, got %s at %s\ntranscript:\n%s", tc.code, tc.stage, rp, stage, c.Transcript())
			}
			r.assertNothingSpooled(t, before, tc.name)
		})
	}

	// Positive controls: the same session kind does accept permitted mail, so the
	// refusals above are the policy and not a broken session or harness.
	accepted := []struct{ name, mailFrom, header string }{
		{"own address", devLogin, "From: Demo <demo@example.test>\n"},
		{"other local part, domain case", "info@EXAMPLE.test", "From: info@Example.Test\nSender: demo@example.test\n"},
		{"display name with our own address", devLogin, "From: \"demo@example.test\" <demo@example.test>\n"},
		{"Resent-From permitted", devLogin, "From: demo@example.test\nResent-From: other@example.test\n"},
	}
	for _, tc := range accepted {
		t.Run("accepted/"+tc.name, func(t *testing.T) {
			c := dialAuth(t, r)
			defer c.quit()
			stage, rp := c.send(tc.mailFrom, []string{"ops@partner.example"}, msg(tc.header+stdTail, "Hello.\n"))
			if stage != "END" || rp.Code != 250 {
				t.Fatalf("permitted message: want 250 after DATA, got %s at %s\ntranscript:\n%s", rp, stage, c.Transcript())
			}
			r.waitOutbox(t, queueID(t, rp))
		})
	}
}

var swaksErrRE = regexp.MustCompile(`(?m)^<[-~]\*\s+(\d{3})[ -](\S+)`)

// TestSenderPolicySwaks repeats a few refusals with swaks as the client.
func TestSenderPolicySwaks(t *testing.T) {
	requireTool(t, "swaks", "swaks")
	r := startRelay(t, "")
	cases := []struct {
		name string
		args []string
		code int
		enh  string
	}{
		{"MAIL FROM outside", []string{"--from", "ceo@bank.example", "--header", "From: demo@example.test"}, 553, "5.7.1"},
		{"From outside", []string{"--from", devLogin, "--header", "From: ceo@bank.example"}, 550, "5.7.1"},
		{"display-name trick", []string{"--from", devLogin, "--header", `From: "ceo@bank.example" <demo@example.test>`}, 550, "5.7.1"},
		{"foreign From with our Sender", []string{"--from", devLogin, "--header", "From: ceo@corp.example", "--header", "Sender: demo@example.test"}, 550, "5.7.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := r.snapshot()
			args := append([]string{"--server", r.Submission, "--tls", "--auth", "PLAIN",
				"--auth-user", devLogin, "--auth-password", r.password, "--to", "ops@partner.example"}, tc.args...)
			tr := swaks(t, args...)
			m := swaksErrRE.FindStringSubmatch(tr)
			if m == nil || m[1] != fmt.Sprint(tc.code) || m[2] != tc.enh {
				t.Errorf("want the first refusal to be %d %s; transcript:\n%s", tc.code, tc.enh, tr)
			}
			r.assertNothingSpooled(t, before, tc.name)
		})
	}
}
