package smtpedge

import "testing"

func TestLineEndCheck(t *testing.T) {
	cases := []struct {
		name   string
		chunks []string
		write  bool // what the last Write reports
		end    bool
	}{
		{"clean", []string{"a\r\nb\r\n"}, false, false},
		{"bare LF", []string{"a\nb\r\n"}, true, true},
		{"bare CR", []string{"a\rb\r\n"}, true, true},
		{"CR CR LF", []string{"a\r\r\n"}, true, true},
		{"LF first", []string{"\nb"}, true, true},
		{"CRLF across chunks", []string{"a\r", "\nb\r\n"}, false, false},
		{"CR then not LF across chunks", []string{"a\r", "b\r\n"}, true, true},
		{"CR at the end", []string{"a\r\n", "b\r"}, false, true},
		{"found stays found", []string{"a\n", "b\r\n"}, true, true},
	}
	for _, tc := range cases {
		var c LineEndCheck
		var w bool
		for _, ch := range tc.chunks {
			w = c.Write([]byte(ch))
		}
		if w != tc.write || c.End() != tc.end {
			t.Errorf("%s: Write = %v, End = %v; want %v, %v", tc.name, w, c.End(), tc.write, tc.end)
		}
	}
}

func TestParseWirePath(t *testing.T) {
	for _, tc := range []struct {
		verb, in      string
		ok            bool
		value, mailbx string
	}{
		{"MAIL", "<>", true, "", ""},
		{"MAIL", `<"a@b"@c.example>`, true, "a@b@c.example", `"a@b"@c.example`},
		{"MAIL", "<a@b@c.example>", true, "a@b@c.example", "a@b@c.example"},
		{"RCPT", "<@relay.example:bob@d.example>", true, "bob@d.example", "bob@d.example"},
		{"RCPT", `<"a\"b"@d.example>`, true, `a"b@d.example`, `"a\"b"@d.example`},
		{"RCPT", "<Postmaster>", true, "Postmaster", "Postmaster"},
		{"MAIL", "<Postmaster>", false, "", ""}, // a reverse-path needs a domain
		{"RCPT", "<a b@d.example>", false, "", ""},
		{"RCPT", "<@d.example>", false, "", ""},
	} {
		wp, ok := ParseWirePath(tc.verb, tc.in)
		if ok != tc.ok || ok && (wp.Value != tc.value || wp.Mailbox != tc.mailbx) {
			t.Errorf("ParseWirePath(%s, %q) = %+v, %v; want value %q mailbox %q, %v", tc.verb, tc.in, wp, ok, tc.value, tc.mailbx, tc.ok)
		}
	}
}
