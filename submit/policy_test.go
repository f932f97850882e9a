package submit

import (
	"net/textproto"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// header builds a HeaderLookup from "Name: value" lines, keeping order.
func header(lines ...string) textproto.MIMEHeader {
	h := textproto.MIMEHeader{}
	for _, l := range lines {
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			panic(l)
		}
		h.Add(name, strings.TrimLeft(value, " "))
	}
	return h
}

func alice() *Identity {
	return NewIdentity("alice", KindLogin, MustParsePatterns("*@client.example", "*@*.client.example", "bob@other.example", "*@bücher.example"))
}

func checkReply(t *testing.T, name string, got *Refusal, code int, enh smtp.EnhancedCode, parts ...string) {
	t.Helper()
	if code == 0 {
		if got != nil {
			t.Errorf("%s: got %d %v %q, want accepted", name, got.Code, got.EnhancedCode, got.Message)
		}
		return
	}
	if got == nil {
		t.Errorf("%s: accepted, want %d %v", name, code, enh)
		return
	}
	if got.Code != code || got.EnhancedCode != enh {
		t.Errorf("%s: got %d %v %q, want %d %v", name, got.Code, got.EnhancedCode, got.Message, code, enh)
	}
	for _, p := range parts {
		if !strings.Contains(got.Message, p) {
			t.Errorf("%s: message %q does not contain %q", name, got.Message, p)
		}
	}
}

func TestCheckEnvelopeSender(t *testing.T) {
	nullOK := alice()
	nullOK.AllowNullSender = true
	cert := NewIdentity("acme-mx", KindClientCert, MustParsePatterns("*@acme.example"))
	network := NewIdentity("acme-net", KindClientNetwork, MustParsePatterns("*@acme.example"))
	e553 := smtp.EnhancedCode{5, 7, 1}
	tests := []struct {
		name  string
		id    *Identity
		from  string
		code  int
		enh   smtp.EnhancedCode
		parts []string
	}{
		{name: "permitted", id: alice(), from: "alice@client.example"},
		{name: "case", id: alice(), from: "Alice@CLIENT.Example"},
		{name: "subdomain", id: alice(), from: "x@eu.client.example"},
		{name: "exact", id: alice(), from: "BOB@other.example"},
		{name: "idn unicode", id: alice(), from: "x@bücher.example"},
		{name: "idn a-label", id: alice(), from: "x@xn--bcher-kva.example"},
		{name: "route ignored", id: alice(), from: "@evil.example:alice@client.example"},
		{name: "null refused", id: alice(), from: "", code: 553, enh: e553, parts: []string{"MAIL FROM <>", "login alice", "allowed: *@client.example"}},
		{name: "null allowed", id: nullOK, from: ""},
		{name: "foreign", id: alice(), from: "ceo@bank.example", code: 553, enh: e553,
			parts: []string{"MAIL FROM <ceo@bank.example> is not permitted for login alice (allowed: *@client.example, *@*.client.example, bob@other.example, *@xn--bcher-kva.example)"}},
		{name: "other user at exact domain", id: alice(), from: "carol@other.example", code: 553, enh: e553},
		{name: "lookalike domain", id: alice(), from: "x@client.example.bank.example", code: 553, enh: e553},
		{name: "route to foreign", id: alice(), from: "@client.example:ceo@bank.example", code: 553, enh: e553, parts: []string{"<ceo@bank.example>"}},
		{name: "quoted foreign in local part", id: alice(), from: "alice@client.example@bank.example", code: 553, enh: e553},
		{name: "percent hack", id: alice(), from: "alice%client.example@bank.example", code: 553, enh: e553},
		{name: "bang path", id: alice(), from: "client.example!alice@bank.example", code: 553, enh: e553},
		{name: "ip literal", id: alice(), from: "alice@[192.0.2.1]", code: 553, enh: e553, parts: []string{"address literal", "[192.0.2.1]"}},
		{name: "trailing dot", id: alice(), from: "alice@client.example.", code: 553, enh: smtp.EnhancedCode{5, 1, 7}},
		{name: "syntax", id: alice(), from: "alice", code: 553, enh: smtp.EnhancedCode{5, 1, 7}, parts: []string{"not a valid address"}},
		{name: "apex of subdomain-only", id: NewIdentity("s", KindLogin, MustParsePatterns("*@*.corp.example")), from: "x@corp.example", code: 553, enh: e553},
		{name: "cert wording", id: cert, from: "x@bank.example", code: 553, enh: e553, parts: []string{"for client certificate acme-mx (allowed: *@acme.example)"}},
		{name: "network wording", id: network, from: "x@bank.example", code: 553, enh: e553, parts: []string{"for client network acme-net"}},
		{name: "no patterns", id: &Identity{Name: "empty", Kind: KindLogin}, from: "x@client.example", code: 553, enh: e553, parts: []string{"allowed: nothing"}},
		{name: "unauthenticated", id: nil, from: "x@client.example", code: 530, enh: smtp.EnhancedCode{5, 7, 0}},
	}
	for _, tt := range tests {
		checkReply(t, tt.name, CheckEnvelopeSender(tt.id, tt.from), tt.code, tt.enh, tt.parts...)
	}
}

func TestCheckHeaderSenders(t *testing.T) {
	e := smtp.EnhancedCode{5, 7, 1}
	tests := []struct {
		name  string
		hdr   []string
		code  int
		parts []string
	}{
		{name: "plain", hdr: []string{"From: Alice <alice@client.example>"}},
		{name: "case and idn", hdr: []string{"From: X <X@XN--BCHER-KVA.example>", "Sender: y@Bücher.Example"}},
		{name: "subdomain", hdr: []string{"From: a@eu.client.example"}},
		{name: "two from mailboxes with sender", hdr: []string{"From: a@client.example, bob@other.example", "Sender: a@client.example"}},
		{name: "group with permitted mailboxes", hdr: []string{"From: Team: a@client.example, b@client.example;", "Sender: a@client.example"}},
		{name: "resent does not excuse a foreign from", hdr: []string{"From: ceo@bank.example", "Resent-From: a@client.example"}, code: 550, parts: []string{"From <ceo@bank.example>"}},
		{name: "resent ok", hdr: []string{"From: a@client.example", "Resent-From: b@client.example", "Resent-Sender: c@client.example"}},
		{name: "display name is own address", hdr: []string{`From: "alice@client.example" <alice@client.example>`}},
		{name: "display name is a permitted address", hdr: []string{`From: "bob@other.example" <alice@client.example>`}},
		{name: "quoted local with @ inside, permitted domain", hdr: []string{`From: "ceo@bank.example"@client.example`}},
		{name: "folded value", hdr: []string{"From: Alice\r\n <alice@client.example>"}},
		{name: "windows-1252 display name", hdr: []string{"From: =?windows-1252?q?=93Caf=E9=94_=80?= <a@client.example>"}},
		{name: "koi8-r display name", hdr: []string{"From: =?koi8-r?b?6dfBzg==?= <a@client.example>"}},

		{name: "group name is a foreign address", hdr: []string{`From: "ceo@bank.example": a@client.example;`}, code: 550, parts: []string{"display name"}},
		{name: "encoded group name is a foreign address", hdr: []string{"From: =?utf-8?q?ceo=40bank.example?=: a@client.example;"}, code: 550, parts: []string{"display name"}},
		{name: "no from", hdr: []string{"Sender: a@client.example"}, code: 550, parts: []string{"message has no From header field"}},
		{name: "two from fields", hdr: []string{"From: a@client.example", "From: b@client.example"}, code: 550,
			parts: []string{"message has 2 From header fields; exactly one is allowed"}},
		{name: "second from foreign", hdr: []string{"From: a@client.example", "FROM: ceo@bank.example"}, code: 550, parts: []string{"2 From header fields"}},
		// maddy's gap: a permitted Sender must not vouch for a foreign From.
		{name: "foreign from with own sender", hdr: []string{"From: ceo@bank.example", "Sender: me@client.example"}, code: 550,
			parts: []string{"From <ceo@bank.example> is not permitted for login alice (allowed: *@client.example"}},
		{name: "foreign from same org", hdr: []string{"From: ceo@corp.example", "Sender: me@client.example"}, code: 550, parts: []string{"ceo@corp.example"}},
		{name: "foreign second mailbox", hdr: []string{"From: a@client.example, ceo@bank.example", "Sender: a@client.example"}, code: 550, parts: []string{"From <ceo@bank.example>"}},
		{name: "two mailboxes without sender", hdr: []string{"From: a@client.example, b@client.example"}, code: 550,
			parts: []string{"From header field has 2 mailboxes; a Sender header field", "login alice"}},
		{name: "foreign sender", hdr: []string{"From: a@client.example", "Sender: ceo@bank.example"}, code: 550, parts: []string{"Sender <ceo@bank.example> is not permitted"}},
		{name: "two sender fields", hdr: []string{"From: a@client.example", "Sender: a@client.example", "Sender: b@client.example"}, code: 550,
			parts: []string{"message has 2 Sender header fields; at most one is allowed"}},
		{name: "sender with two mailboxes", hdr: []string{"From: a@client.example, b@client.example", "Sender: a@client.example, b@client.example"}, code: 550,
			parts: []string{"Sender header field has 2 mailboxes; exactly one"}},
		{name: "resent-from foreign", hdr: []string{"From: a@client.example", "Resent-From: ceo@bank.example"}, code: 550, parts: []string{"Resent-From <ceo@bank.example>"}},
		{name: "second resent block foreign", hdr: []string{"From: a@client.example", "Resent-From: b@client.example", "Resent-From: ceo@bank.example"}, code: 550, parts: []string{"Resent-From <ceo@bank.example>"}},
		{name: "resent-sender foreign", hdr: []string{"From: a@client.example", "Resent-Sender: ceo@bank.example"}, code: 550, parts: []string{"Resent-Sender <ceo@bank.example>"}},
		{name: "resent-sender two mailboxes", hdr: []string{"From: a@client.example", "Resent-Sender: a@client.example, b@client.example"}, code: 550, parts: []string{"Resent-Sender header field has 2 mailboxes"}},
		{name: "subdomain not apex", hdr: []string{"From: x@evilclient.example"}, code: 550},
		{name: "lookalike suffix", hdr: []string{"From: x@client.example.bank.example"}, code: 550},
		{name: "exact pattern other local", hdr: []string{"From: carol@other.example"}, code: 550},
		{name: "quoted local with @ inside, foreign domain", hdr: []string{`From: "alice@client.example"@bank.example`}, code: 550,
			parts: []string{`From <"alice@client.example"@bank.example>`}},
		{name: "ip literal", hdr: []string{"From: a@[192.0.2.1]"}, code: 550, parts: []string{"address literal"}},
		{name: "empty group", hdr: []string{"From: undisclosed-recipients:;"}, code: 550, parts: []string{`From header field has group "undisclosed-recipients" without a mailbox`, "login alice"}},
		{name: "empty group and mailbox", hdr: []string{"From: a@client.example, Nobody:;", "Sender: a@client.example"}, code: 550, parts: []string{`group "Nobody"`}},
		{name: "group foreign", hdr: []string{"From: Team: ceo@bank.example;"}, code: 550, parts: []string{"From <ceo@bank.example>"}},
		{name: "unparsable", hdr: []string{"From: alice"}, code: 550, parts: []string{"From header field cannot be parsed:"}},
		{name: "unparsable empty", hdr: []string{"From: "}, code: 550, parts: []string{"From header field cannot be parsed"}},
		{name: "null from", hdr: []string{"From: <>"}, code: 550, parts: []string{"cannot be parsed"}},
		{name: "unquoted comma name", hdr: []string{"From: Doe, John <a@client.example>"}, code: 550, parts: []string{"cannot be parsed"}},
		{name: "unknown charset", hdr: []string{"From: =?x-nonsense?q?x?= <a@client.example>"}, code: 550, parts: []string{"cannot be parsed", `unsupported charset "x-nonsense"`}},
		{name: "unknown charset in quotes", hdr: []string{`From: "=?x-nonsense?q?x?=" <a@client.example>`}, code: 550, parts: []string{"cannot be parsed", `unsupported charset "x-nonsense"`}},
		{name: "sender unparsable", hdr: []string{"From: a@client.example", "Sender: <"}, code: 550, parts: []string{"Sender header field cannot be parsed"}},
		{name: "display name foreign", hdr: []string{`From: "ceo@bank.example" <x@client.example>`}, code: 550,
			parts: []string{`From display name "ceo@bank.example" looks like an address not permitted for login alice (allowed: *@client.example`}},
		{name: "display name fullwidth at", hdr: []string{"From: \"ceo\uff20bank.example\" <x@client.example>"}, code: 550, parts: []string{"display name"}},
		{name: "display name encoded word", hdr: []string{"From: =?utf-8?q?ceo=40bank.example?= <x@client.example>"}, code: 550, parts: []string{`From display name "ceo@bank.example"`}},
		{name: "display name base64 encoded word", hdr: []string{"From: =?UTF-8?B?Q0VPIDxjZW9AYmFuay5leGFtcGxlPg==?= <x@client.example>"}, code: 550, parts: []string{"display name"}},
		{name: "display name encoded in quotes", hdr: []string{`From: "=?utf-8?q?ceo=40bank.example?=" <x@client.example>`}, code: 550, parts: []string{"display name"}},
		{name: "display name other local at exact domain", hdr: []string{`From: "carol@other.example" <x@client.example>`}, code: 550, parts: []string{"display name"}},
		{name: "comment as display name", hdr: []string{"From: x@client.example (ceo@bank.example)"}, code: 550, parts: []string{"display name"}},
		{name: "sender display name", hdr: []string{"From: x@client.example", `Sender: "ceo@bank.example" <y@client.example>`}, code: 550, parts: []string{"Sender display name"}},
		// Encoded-words in other charsets: the decoded text is what is inspected.
		{name: "display name windows-1252", hdr: []string{"From: =?windows-1252?q?=93CEO=94_ceo=40bank.example?= <x@client.example>"}, code: 550,
			parts: []string{"From display name \"\u201cCEO\u201d ceo@bank.example\""}},
		{name: "display name windows-1252 in quotes", hdr: []string{`From: "=?windows-1252?q?=93CEO=94_ceo=40bank.example?=" <x@client.example>`}, code: 550, parts: []string{"display name"}},
		// Invisible and bidirectional characters, fillers and spaces do not hide an address.
		{name: "display name isolates", hdr: []string{"From: \"ceo@\u2066evil.example\u2069\" <x@client.example>"}, code: 550,
			parts: []string{`From display name "ceo@\u2066evil.example\u2069" looks like an address not permitted`}},
		{name: "display name right-to-left override", hdr: []string{"From: \"\u202eelpmaxe.live@oec\" <x@client.example>"}, code: 550, parts: []string{"From display name"}},
		{name: "display name hangul filler", hdr: []string{"From: \"ceo@evil.example\u3164\" <x@client.example>"}, code: 550, parts: []string{"From display name"}},
		{name: "display name spaces around at", hdr: []string{`From: "ceo @ evil.example" <x@client.example>`}, code: 550, parts: []string{"From display name"}},
		{name: "display name bidi in encoded word", hdr: []string{"From: =?utf-8?q?=E2=80=AEelpmaxe.live=40oec?= <x@client.example>"}, code: 550, parts: []string{"From display name"}},
		{name: "display name bidi own domain", hdr: []string{"From: \"\u202eelpmaxe.tneilc@ecila\" <alice@client.example>"}},
		{name: "ordinary name", hdr: []string{`From: "Alice Smith" <a@client.example>`}},
		{name: "name with comment-like parentheses", hdr: []string{`From: "Bob (Sales)" <a@client.example>`}},
		{name: "name with dots", hdr: []string{`From: "Dr. A. Smith, Jr." <a@client.example>`}},
		{name: "non-latin names", hdr: []string{"From: \"山田 太郎\" <a@client.example>", "Sender: =?utf-8?b?2YXYrdmF2K8g2LnYqNiv?= <b@client.example>"}},
		{name: "hebrew name with mark", hdr: []string{"From: \"\u05e9\u05dc\u05d5\u05dd\u200f Cohen\" <a@client.example>"}},
		// ISO-2022-JP "日本 ceo＠bank．example" (fullwidth '＠' and '．' from JIS X 0208).
		{name: "display name iso-2022-jp fullwidth", hdr: []string{"From: =?iso-2022-jp?b?GyRCRnxLXBsoQiBjZW8bJEIhdxsoQmJhbmsbJEIhJRsoQmV4YW1wbGU=?= <x@client.example>"}, code: 550, parts: []string{"From display name"}},
		{name: "display name iso-2022-jp in quotes", hdr: []string{`From: "=?ISO-2022-JP?B?GyRCRnxLXBsoQiBjZW8bJEIhdxsoQmJhbmsbJEIhJRsoQmV4YW1wbGU=?=" <x@client.example>`}, code: 550, parts: []string{"From display name"}},
	}
	for _, tt := range tests {
		checkReply(t, tt.name, CheckHeaderSenders(alice(), header(tt.hdr...)), tt.code, e, tt.parts...)
	}
	checkReply(t, "nil identity", CheckHeaderSenders(nil, header("From: a@client.example")), 530, smtp.EnhancedCode{5, 7, 0})
}

func TestCheckRecipientCount(t *testing.T) {
	id := alice()
	id.MaxRecipients = 2
	checkReply(t, "within", CheckRecipientCount(id, 2), 0, smtp.EnhancedCode{})
	checkReply(t, "over", CheckRecipientCount(id, 3), 452, smtp.EnhancedCode{4, 5, 3}, "login alice may use at most 2")
	checkReply(t, "no cap", CheckRecipientCount(alice(), 1000), 0, smtp.EnhancedCode{})
}
