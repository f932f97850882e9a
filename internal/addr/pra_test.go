package addr_test

import (
	"strings"
	"testing"

	"sealgate/internal/addr"
)

// field is a header field for PRA tests: "Name: value".
type field string

func (f field) Is(name string) bool {
	n, _, _ := strings.Cut(string(f), ":")
	return strings.EqualFold(strings.TrimSpace(n), name)
}

func (f field) Value() string {
	_, v, _ := strings.Cut(string(f), ":")
	return v
}

func TestPRA(t *testing.T) {
	tests := []struct {
		name  string
		hdr   []field
		want  string // "" for none
		field string
	}{
		{"From only", []field{"From: Alice <alice@example.com>", "To: b@example.net"}, "alice@example.com", "From"},
		{"Sender wins over From", []field{"From: a@example.com", "Sender: Bob <bob@example.org>"}, "bob@example.org", "Sender"},
		{"Resent-Sender first", []field{"Resent-Sender: rs@resend.example", "Resent-From: rf@resend.example", "Sender: s@x.example", "From: f@x.example"}, "rs@resend.example", "Resent-Sender"},
		{"Resent-From without Resent-Sender", []field{"Resent-From: rf@resend.example", "Sender: s@x.example", "From: f@x.example"}, "rf@resend.example", "Resent-From"},
		{"Resent-Sender of an older block", []field{"Resent-From: new@resend.example", "Received: from a by b", "Resent-Sender: old@resend.example", "From: f@x.example"}, "new@resend.example", "Resent-From"},
		{"empty Resent-From skipped", []field{"Resent-From:  ", "From: f@x.example"}, "f@x.example", "From"},
		{"malformed Sender", []field{"Sender: not an address", "From: f@x.example"}, "", "Sender"},
		{"two Senders", []field{"Sender: a@x.example", "Sender: b@x.example", "From: f@x.example"}, "", "Sender"},
		{"two From mailboxes", []field{"From: a@x.example, b@x.example"}, "", "From"},
		{"two From fields", []field{"From: a@x.example", "From: b@x.example"}, "", "From"},
		{"no From", []field{"To: a@x.example"}, "", "From"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, f, ok := addr.PRA(tc.hdr)
			got := ""
			if ok {
				got = a.String()
			}
			if got != tc.want || f != tc.field || ok != (tc.want != "") {
				t.Errorf("PRA = %q from %s (ok %v), want %q from %s", got, f, ok, tc.want, tc.field)
			}
		})
	}
}
