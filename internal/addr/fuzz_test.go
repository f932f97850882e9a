package addr

import (
	"errors"
	"testing"
)

// The seed corpora live in testdata/fuzz/<FuzzName>/.

func FuzzParseHeaderMailboxes(f *testing.F) {
	f.Fuzz(func(t *testing.T, value string) {
		ms, err := ParseHeaderMailboxes(value)
		if err != nil {
			if len(ms) != 0 {
				t.Fatalf("error %v with %d mailboxes", err, len(ms))
			}
			return
		}
		if len(ms) == 0 {
			t.Fatal("no mailboxes and no error")
		}
		for _, m := range ms {
			// Every mailbox we return must survive a round trip through the
			// envelope parser: the policy compares both kinds.
			b, err := ParseAddress(m.Addr.String())
			if err != nil {
				t.Fatalf("mailbox %q from %q does not reparse: %v", m.Addr.String(), value, err)
			}
			if !b.Equal(m.Addr) || b.Quoted != m.Addr.Quoted {
				t.Fatalf("mailbox %+v reparses as %+v", m.Addr, b)
			}
			for _, a := range AddressesInDisplayName(m.Name) {
				if a.Domain == "" || a.Local == "" {
					t.Fatalf("display-name address %+v incomplete", a)
				}
			}
		}
	})
}

func FuzzParsePath(f *testing.F) {
	f.Fuzz(func(t *testing.T, value string) {
		p, err := ParsePath(value)
		if err != nil || p.Null {
			return
		}
		s := p.Addr.String()
		if len(s)+2 > MaxPathLen {
			t.Fatalf("path %q longer than %d", s, MaxPathLen)
		}
		b, err := ParseAddress(s)
		if err != nil {
			t.Fatalf("path %q from %q does not reparse: %v", s, value, err)
		}
		if !b.Equal(p.Addr) || b.Quoted != p.Addr.Quoted {
			t.Fatalf("path %+v reparses as %+v", p.Addr, b)
		}
		if (p.Addr.Domain == "") == (p.Addr.AddressLiteral == "") {
			t.Fatalf("path %+v: exactly one of Domain and AddressLiteral must be set", p.Addr)
		}
	})
}

func FuzzParseDomain(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDomain(s)
		if err != nil {
			var le *LookalikeError
			if errors.As(err, &le) {
				if back, err := ParseDomain(string(le.LooksLike)); err != nil || back != le.LooksLike {
					t.Fatalf("%q looks like %q, which parses as %q, %v", s, le.LooksLike, back, err)
				}
			}
			return
		}
		for i := 0; i < len(d); i++ {
			if d[i] >= 0x80 || d[i] >= 'A' && d[i] <= 'Z' {
				t.Fatalf("%q parses as %q, not lower-case A-labels", s, d)
			}
		}
		// Both forms of the domain are the domain (RFC 5890 §2.3.2.1).
		for _, form := range []string{string(d), d.Unicode()} {
			if back, err := ParseDomain(form); err != nil || back != d {
				t.Fatalf("%q parses as %q, whose form %q parses as %q, %v", s, d, form, back, err)
			}
		}
	})
}
