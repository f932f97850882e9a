package submit

import (
	"strings"
	"testing"
)

// The spooled envelope records the header's purported responsible address
// (RFC 4407) for SUBMITTER, MAIL's REQUIRETLS (RFC 8689), and the header From
// domain and DKIM signatures the send log keeps.
func TestEnvelopeRecordsPRAAndRequireTLS(t *testing.T) {
	s := startHardServer(t, Limits{}, newGatedAuth("pw"), nil)
	c := s.dialImplicitTLS(t)
	if got := c.Cmd(plainAuth("billing@client.example", "pw")); !strings.HasPrefix(got, "235 ") {
		t.Fatalf("AUTH: %q", got)
	}
	send := func(mail, header string) {
		t.Helper()
		for _, cmd := range []string{mail, "RCPT TO:<ops@partner.example>", "DATA"} {
			if got := c.Cmd(cmd); !strings.HasPrefix(got, "250 ") && !strings.HasPrefix(got, "354 ") {
				t.Fatalf("%s: %q", cmd, got)
			}
		}
		if got := c.Cmd(header + "Subject: t\r\n\r\nbody\r\n."); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("message: %q", got)
		}
	}
	send("MAIL FROM:<a@client.example> REQUIRETLS", "From: Billing <billing@client.example>\r\nSender: agent@client.example\r\n")
	send("MAIL FROM:<b@client.example>", "From: billing@client.example\r\n")

	ids, err := s.spool.List()
	if err != nil || len(ids) != 2 {
		t.Fatalf("spool: %v, %v; want 2 messages", ids, err)
	}
	for _, id := range ids {
		env, err := s.spool.Envelope(id)
		if err != nil {
			t.Fatal(err)
		}
		// The send log's keys (DMARC reports): header From domain, our d= and s=.
		if env.HeaderFrom != "client.example" || len(env.DKIM) != 1 || env.DKIM[0].Domain != "client.example" || env.DKIM[0].Selector != "ed" {
			t.Errorf("%s: header_from %q, dkim %+v; want client.example, [client.example ed]", env.From, env.HeaderFrom, env.DKIM)
		}
		switch env.From {
		case "a@client.example":
			if env.Submitter != "agent@client.example" || !env.RequireTLS {
				t.Errorf("first message: submitter %q, requiretls %v; want agent@client.example, true", env.Submitter, env.RequireTLS)
			}
		case "b@client.example":
			if env.Submitter != "billing@client.example" || env.RequireTLS {
				t.Errorf("second message: submitter %q, requiretls %v; want billing@client.example, false", env.Submitter, env.RequireTLS)
			}
		}
	}
}

// REQUIRETLS is not offered outside TLS, and refused there: the message could
// otherwise reach us in plain text although its sender asked for TLS all the way.
func TestRequireTLSRefusedInPlainText(t *testing.T) {
	s := startHardServer(t, Limits{}, nil, nil)
	c := s.dialSmart(t)
	if got := c.Cmd("MAIL FROM:<a@client.example> REQUIRETLS"); !strings.HasPrefix(got, "530 5.7.10 ") {
		t.Errorf("REQUIRETLS in plain text: %q, want 530 5.7.10", got)
	}
	if got := c.Cmd("MAIL FROM:<a@client.example>"); !strings.HasPrefix(got, "250 ") {
		t.Errorf("MAIL without REQUIRETLS after the refusal: %q", got)
	}
}
