package submit

import (
	"strings"
	"testing"
)

// An AUTH response that is not base64: RFC 4954 §4 wants 501, but go-smtp decodes the
// responses itself and answers 454 4.7.0 before any callback of ours (see the package
// comment of internal/smtpedge). This pins what a client gets today, checks that no
// password is checked and that the session goes on, and fails once go-smtp answers 501, so
// that the note there is revisited.
func TestAuthUndecodableBase64(t *testing.T) {
	auth := newGatedAuth("right")
	s := startHardServer(t, Limits{}, auth, NewAuthThrottle(5, 0))
	c := s.dialSTARTTLS(t)
	for _, line := range []string{"AUTH PLAIN !!!", "AUTH PLAIN"} {
		got := c.Cmd(line)
		if line == "AUTH PLAIN" {
			if !strings.HasPrefix(got, "334") {
				t.Fatalf("AUTH PLAIN without an initial response: %q", got)
			}
			got = c.Cmd("!!!")
		}
		if !strings.HasPrefix(got, "454 4.7.0") {
			t.Errorf("%s with !!! as the response: %q; want go-smtp's 454 4.7.0 (501 5.5.2 would be RFC 4954 §4: update internal/smtpedge's note)", line, got)
		}
	}
	if n := auth.checks.Load(); n != 0 {
		t.Errorf("%d password checks for undecodable responses, want 0", n)
	}
	if got := c.Cmd(plainAuth("alice@client.example", "right")); !strings.HasPrefix(got, "235 ") {
		t.Errorf("AUTH after the undecodable ones: %q, want 235", got)
	}
}
