package submit

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"strings"
	"testing"
	"time"

	"sealgate/internal/addr"
	"sealgate/sign"
)

// startIDNServer is startHardServer whose client network may send as
// *@例子.广告, josé@exemple.fr and *@client.example, with keys for 例子.广告.
func startIDNServer(t *testing.T) *hardServer {
	t.Helper()
	s := startHardServer(t, Limits{}, nil, nil)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	idn, err := addr.ParseDomain("例子.广告")
	if err != nil {
		t.Fatal(err)
	}
	s.srv.Reload(Settings{
		Networks: []NetworkIdentity{{Prefixes: s.srv.Networks[0].Prefixes,
			Identity: NewIdentity("mta", KindClientNetwork, MustParsePatterns("*@例子.广告", "josé@exemple.fr", "*@client.example"))}},
		Pipeline: &Pipeline{Hostname: "relay.example.test", AuthServID: "relay.example.test", Spool: s.spool, Log: s.srv.Log,
			KeyRing: mustKeyRing(
				sign.DomainKeys{Domain: idn, Keys: []sign.Key{{Selector: "ed", Signer: edKey}}},
				sign.DomainKeys{Domain: "exemple.fr", Keys: []sign.Key{{Selector: "ed", Signer: edKey}}},
				sign.DomainKeys{Domain: "client.example", Keys: []sign.Key{{Selector: "ed", Signer: edKey}}})},
	})
	return s
}

// send runs one transaction and returns the reply to the message (or to the
// first command refused).
func sendRaw(c *rawClient, mail, rcpt, message string) string {
	for _, cmd := range []string{mail, rcpt, "DATA"} {
		if got := c.Cmd(cmd); !strings.HasPrefix(got, "250 ") && !strings.HasPrefix(got, "354 ") {
			if cmd != "DATA" {
				c.Cmd("RSET")
			}
			return got
		}
	}
	return c.Cmd(message + "\r\n.")
}

// With SMTPUTF8 on MAIL, UTF-8 addresses and header fields are accepted, the U-label
// and A-label forms of the IDN domain alike, and the envelope records that the
// message needs SMTPUTF8; without it they are refused with 5.6.7.
func TestSMTPUTF8Submission(t *testing.T) {
	s := startIDNServer(t)
	c := s.dialSmart(t)
	tests := []struct {
		name, mail, rcpt, msg, want string
	}{
		{"UTF-8 local part and U-label domain", "MAIL FROM:<用户@例子.广告> SMTPUTF8", "RCPT TO:<josé@exemple.fr>",
			"From: 用户 <用户@例子.广告>\r\nTo: josé@exemple.fr\r\nSubject: 你好\r\n\r\nbody", "250 "},
		{"A-label in the envelope, U-label in From", "MAIL FROM:<info@xn--fsqu00a.xn--4rr70v> SMTPUTF8", "RCPT TO:<b@partner.example>",
			"From: info@例子.广告\r\nSubject: t\r\n\r\nbody", "250 "},
		{"NFD local part matches the NFC pattern", "MAIL FROM:<jose\u0301@exemple.fr> SMTPUTF8", "RCPT TO:<b@partner.example>",
			"From: jose\u0301@exemple.fr\r\nSubject: t\r\n\r\nbody", "250 "},
		{"ASCII with SMTPUTF8 needs nothing", "MAIL FROM:<a@client.example> SMTPUTF8", "RCPT TO:<b@partner.example>",
			"From: a@client.example\r\nSubject: t\r\n\r\nbody", "250 "},
		{"UTF-8 MAIL FROM without SMTPUTF8", "MAIL FROM:<用户@例子.广告>", "", "",
			"553 5.6.7 MAIL FROM \"用户@例子.广告\" contains non-ASCII characters, which need SMTPUTF8"},
		{"UTF-8 RCPT TO without SMTPUTF8", "MAIL FROM:<a@client.example>", "RCPT TO:<josé@exemple.fr>", "",
			"553 5.6.7 RCPT TO \"josé@exemple.fr\" contains non-ASCII characters"},
		{"UTF-8 header without SMTPUTF8", "MAIL FROM:<a@client.example>", "RCPT TO:<b@partner.example>",
			"From: a@client.example\r\nSubject: Grüße\r\n\r\nbody", "550 5.6.7 Message header contains non-ASCII characters"},
		{"other UTF-8 local part at an allowed address's domain", "MAIL FROM:<jos\u00e8@exemple.fr> SMTPUTF8", "", "",
			"553 5.7.1 MAIL FROM <josè@exemple.fr> is not permitted"},
	}
	for _, tt := range tests {
		var got string
		if tt.rcpt == "" {
			got = c.Cmd(tt.mail)
		} else {
			got = sendRaw(c, tt.mail, tt.rcpt, tt.msg)
		}
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s:\n got %q\nwant %q...", tt.name, got, tt.want)
		}
		c.Cmd("RSET")
	}
	ids, err := s.spool.List()
	if err != nil || len(ids) != 4 {
		t.Fatalf("spool: %v, %v; want 4 messages", ids, err)
	}
	want := map[string]bool{"用户@xn--fsqu00a.xn--4rr70v": true, "info@xn--fsqu00a.xn--4rr70v": false,
		"jose\u0301@exemple.fr": true, "a@client.example": false}
	for _, id := range ids {
		env, err := s.spool.Envelope(id)
		if err != nil {
			t.Fatal(err)
		}
		utf8, ok := want[env.From]
		if !ok {
			t.Errorf("unexpected envelope from %q", env.From)
			continue
		}
		// info@… has a UTF-8 header (From: info@例子.广告) and so needs SMTPUTF8 too.
		if env.From == "info@xn--fsqu00a.xn--4rr70v" {
			utf8 = true
		}
		if env.UTF8 != utf8 {
			t.Errorf("envelope from %s: smtputf8 %v, want %v", env.From, env.UTF8, utf8)
		}
		_, body, err := s.spool.Open(id)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := io.ReadAll(body)
		body.Close()
		if err != nil {
			t.Fatal(err)
		}
		// RFC 6531 §3.7.3: the Received of a transaction with SMTPUTF8.
		if !strings.Contains(string(msg), "(sealgate) with UTF8SMTP id ") {
			t.Errorf("message from %s: Received lacks \"with UTF8SMTP\":\n%s", env.From, msg)
		}
	}
}

// The homographs an attacker would try against *@例子.广告, josé@exemple.fr and
// *@client.example: each refused with 5.7.1, at MAIL FROM (553) and in From (550).
func TestLookalikeSendersRefused(t *testing.T) {
	s := startIDNServer(t)
	c := s.dialSmart(t)
	domains := []struct{ name, domain string }{
		{"cyrillic а", "clie\u043et.ex\u0430mple"},
		{"cyrillic е and с", "\u0441li\u0435nt.example"},
		{"cyrillic р", "client.exam\u0440le"},
		{"mixed-script label", "cl\u0456ent.example"},
		{"greek ο", "client.exampl\u03bf"},
		{"dotless i", "cl\u0131ent.example"},
		{"fullwidth", "\uff43lient.example"},
		{"fullwidth full stop", "client\uff0eexample"},
		{"ideographic full stop", "client\u3002example"},
		{"zero-width joiner", "cli\u200dent.example"},
		{"zero-width space", "cli\u200bent.example"},
		{"soft hyphen", "cli\u00adent.example"},
		{"punycode of a look-alike", "xn--clent-o4a.example"},
		{"punycode of fullwidth", "xn--lient-op33a.example"},
		{"trailing dot", "client.example."},
		{"IDN: another Han character", "例字.广告"},
		{"IDN: fullwidth full stop", "例子．广告"},
		{"ß vs ss (no transitional processing)", "stra\u00dfe.client.example.other"},
	}
	for _, d := range domains {
		t.Run(d.name, func(t *testing.T) {
			if got := c.Cmd("MAIL FROM:<ceo@" + d.domain + "> SMTPUTF8"); !strings.HasPrefix(got, "553 5.7.1 ") {
				t.Errorf("MAIL FROM <ceo@%s>: %q, want 553 5.7.1", d.domain, got)
			}
			c.Cmd("RSET")
			got := sendRaw(c, "MAIL FROM:<a@client.example> SMTPUTF8", "RCPT TO:<b@partner.example>",
				"From: CEO <ceo@"+d.domain+">\r\nSubject: t\r\n\r\nbody")
			if !strings.HasPrefix(got, "550 5.7.1 ") {
				t.Errorf("From: <ceo@%s>: %q, want 550 5.7.1", d.domain, got)
			}
			c.Cmd("RSET")
		})
	}
	// Local parts: nothing but NFC is folded.
	for _, local := range []string{"jos\uff45", "jos\u00e9\u200b", "JOS\u00c9"} {
		if got := c.Cmd("MAIL FROM:<" + local + "@exemple.fr> SMTPUTF8"); !strings.HasPrefix(got, "553 5.7.1 ") {
			t.Errorf("MAIL FROM <%s@exemple.fr>: %q, want 553 5.7.1", local, got)
		}
		c.Cmd("RSET")
	}
	if !strings.Contains(s.log.String(), "reason=lookalike_domain") {
		t.Error("no refusal logged with reason=lookalike_domain")
	}
}

// A quoted UTF-8 local part (RFC 6531 §3.3 extends qtextSMTP) is read as written
// (smtpedge.WireScanner works on bytes) and stored quoted; BODY=8BITMIME is recorded
// for delivery.
func TestSMTPUTF8QuotedLocalPart(t *testing.T) {
	s := startIDNServer(t)
	c := s.dialSmart(t)
	got := sendRaw(c, "MAIL FROM:<用户@例子.广告> SMTPUTF8 BODY=8BITMIME", `RCPT TO:<"jo sé"@exemple.fr>`,
		"From: 用户@例子.广告\r\nSubject: t\r\n\r\nbody")
	if !strings.HasPrefix(got, "250 ") {
		t.Fatalf("message: %q", got)
	}
	ids, err := s.spool.List()
	if err != nil || len(ids) != 1 {
		t.Fatalf("spool: %v, %v", ids, err)
	}
	env, err := s.spool.Envelope(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(env.To) != 1 || env.To[0] != `"jo sé"@exemple.fr` || !env.UTF8 || !env.EightBit {
		t.Errorf("envelope to %q, smtputf8 %v, 8bitmime %v; want \"jo sé\"@exemple.fr, true, true", env.To, env.UTF8, env.EightBit)
	}
}

// Every listener offers SMTPUTF8 and 8BITMIME (RFC 6531 §3.1).
func TestSMTPUTF8Offered(t *testing.T) {
	s := startHardServer(t, Limits{}, nil, nil)
	for name, c := range map[string]*rawClient{"smarthost": s.dialSmart(t), "submission after STARTTLS": s.dialSTARTTLS(t), "submissions": s.dialImplicitTLS(t)} {
		c.Write("EHLO client.example\r\n")
		lines, err := c.ReadReply(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ehlo := strings.Join(lines, "\n")
		for _, ext := range []string{"SMTPUTF8", "8BITMIME"} {
			if !strings.Contains(ehlo, "250-"+ext+"\n") && !strings.HasSuffix(ehlo, "250 "+ext) {
				t.Errorf("%s: %s not offered:\n%s", name, ext, ehlo)
			}
		}
	}
}
