package srs

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

func TestForwardReverse(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	s := &SRS{Secrets: [][]byte{[]byte("first secret")}, Now: fixed(now)}
	a, err := s.Forward("alice@orig.example", "fwd.example")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(strings.TrimSuffix(a, "@fwd.example"), "=")
	if len(f) != 5 || f[0] != "SRS0" || len(f[1]) != 4 || len(f[2]) != 2 || f[3] != "orig.example" || f[4] != "alice" {
		t.Fatalf("Forward = %q, want SRS0=HHHH=TT=orig.example=alice@fwd.example", a)
	}
	back, err := s.Reverse(a)
	if err != nil || back != "alice@orig.example" {
		t.Fatalf("Reverse(%q) = %q, %v", a, back, err)
	}
	// Case smashed by an MTA on the way still verifies.
	if back, err := s.Reverse(strings.ToLower(a)); err != nil || back != "alice@orig.example" {
		t.Errorf("Reverse(lower-case) = %q, %v", back, err)
	}
	// Our own domain is not rewritten.
	if same, _ := s.Forward("bob@FWD.example", "fwd.example"); same != "bob@FWD.example" {
		t.Errorf("Forward of a sender in the alias domain = %q", same)
	}

	// A second forwarder makes SRS1 pointing at the first; reversing it gives the SRS0.
	s2 := &SRS{Secrets: [][]byte{[]byte("second")}, Now: fixed(now)}
	b, err := s2.Forward(a, "second.example")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b, "SRS1=") || !strings.Contains(b, "=fwd.example==") {
		t.Fatalf("second Forward = %q, want SRS1=HHHH=fwd.example==...", b)
	}
	if back, err := s2.Reverse(b); err != nil || back != a {
		t.Fatalf("Reverse(%q) = %q, %v; want %q", b, back, err, a)
	}
	// A third forwarder keeps the first forwarder in SRS1.
	c, _ := (&SRS{Secrets: [][]byte{[]byte("third")}, Now: fixed(now)}).Forward(b, "third.example")
	if !strings.HasPrefix(c, "SRS1=") || !strings.Contains(c, "=fwd.example==") {
		t.Errorf("third Forward = %q", c)
	}
}

func TestReverseRefuses(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	s := &SRS{Secrets: [][]byte{[]byte("k")}, Now: fixed(now)}
	a, _ := s.Forward("alice@orig.example", "fwd.example")
	tampered := "SRS0=" + flip(a[5:9]) + a[9:]
	other := strings.Replace(a, "=alice@", "=mallory@", 1)
	for _, tc := range []struct {
		addr string
		want error
	}{
		{tampered, ErrHash},
		{other, ErrHash},
		{"SRS0=abc=JS=orig.example=alice@fwd.example", ErrHash}, // shorter than HashLength
		{"alice@fwd.example", ErrNotSRS},
		{"SRS0=only=two@fwd.example", ErrNotSRS},
		{"SRS1=HHHH=fwd.example@x.example", ErrNotSRS},
	} {
		if _, err := s.Reverse(tc.addr); !errors.Is(err, tc.want) {
			t.Errorf("Reverse(%q) = %v, want %v", tc.addr, err, tc.want)
		}
	}
	// MaxAge days later still valid; one more day is expired.
	s.Now = fixed(now.Add(21 * 24 * time.Hour))
	if _, err := s.Reverse(a); err != nil {
		t.Errorf("Reverse after 21 days: %v", err)
	}
	s.Now = fixed(now.Add(22 * 24 * time.Hour))
	if _, err := s.Reverse(a); !errors.Is(err, ErrTimestamp) {
		t.Errorf("Reverse after 22 days = %v, want ErrTimestamp", err)
	}
	s.MaxAge = 30
	if _, err := s.Reverse(a); err != nil {
		t.Errorf("Reverse after 22 days with MaxAge 30: %v", err)
	}
	// A stamp from the future (a day ahead) is as good as 1023 days old.
	s.MaxAge, s.Now = 0, fixed(now.Add(-24*time.Hour))
	if _, err := s.Reverse(a); !errors.Is(err, ErrTimestamp) {
		t.Errorf("Reverse of a stamp from tomorrow = %v, want ErrTimestamp", err)
	}
}

func TestRotation(t *testing.T) {
	old := &SRS{Secrets: [][]byte{[]byte("old")}}
	a, _ := old.Forward("alice@orig.example", "fwd.example")
	rotated := &SRS{Secrets: [][]byte{[]byte("new"), []byte("old")}}
	if back, err := rotated.Reverse(a); err != nil || back != "alice@orig.example" {
		t.Errorf("Reverse with the old secret second = %q, %v", back, err)
	}
	b, _ := rotated.Forward("alice@orig.example", "fwd.example")
	if _, err := old.Reverse(b); !errors.Is(err, ErrHash) {
		t.Errorf("the new secret signs: old-only Reverse = %v, want ErrHash", err)
	}
	if _, err := (&SRS{}).Forward("a@b.example", "c.example"); err == nil {
		t.Error("Forward without a secret succeeded")
	}
}

func TestForwardRefuses(t *testing.T) {
	s := &SRS{Secrets: [][]byte{[]byte("k")}}
	for _, in := range []string{"nodomain", "@x.example", "a@", `"a@b"@x.example`, "a b@x.example"} {
		if got, err := s.Forward(in, "fwd.example"); err == nil {
			t.Errorf("Forward(%q) = %q, want an error", in, got)
		}
	}
}

func flip(h string) string {
	b := []byte(h)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

// perlSRS runs Mail::SRS (Debian's libmail-srs-perl) with secrets: op is forward (args:
// sender, alias) or reverse (args: address). It fails the test under CI when the module is
// missing, as internal/interop does, and skips it otherwise.
func perlSRS(t *testing.T, secrets []string, op string, args ...string) (string, error) {
	t.Helper()
	if exec.Command("perl", "-MMail::SRS", "-e1").Run() != nil {
		msg := "Mail::SRS not installed (apt-get install libmail-srs-perl)"
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (CI=true, so this is a failure: run `make deps`)", msg)
		}
		t.Skip(msg)
	}
	script := `use Mail::SRS; my ($n, $op, @rest) = @ARGV; my @secrets = splice(@rest, 0, $n);
my $srs = Mail::SRS->new(Secret => [@secrets]);
my $out = $op eq 'forward' ? $srs->forward(@rest) : $srs->reverse(@rest); print $out;`
	cmd := exec.Command("perl", append([]string{"-e", script, "--", strconv.Itoa(len(secrets)), op}, append(secrets, args...)...)...)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return "", errors.New(strings.TrimSpace(string(ee.Stderr)))
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), nil
}

func TestMailSRSInterop(t *testing.T) {
	s := &SRS{Secrets: [][]byte{[]byte("shared secret")}}
	senders := []string{"alice@orig.example", "Bob.Smith+tag@Sub.Orig.example", "x=y@orig.example"}
	for _, sender := range senders {
		ours, err := s.Forward(sender, "fwd.example")
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := perlSRS(t, []string{"shared secret"}, "forward", sender, "fwd.example")
		if err != nil {
			t.Fatal(err)
		}
		if ours != theirs {
			t.Errorf("Forward(%q) = %q, Mail::SRS says %q", sender, ours, theirs)
		}
		if back, err := perlSRS(t, []string{"shared secret"}, "reverse", ours); err != nil || back != sender {
			t.Errorf("Mail::SRS reverse(%q) = %q, %v", ours, back, err)
		}
		if back, err := s.Reverse(theirs); err != nil || back != sender {
			t.Errorf("Reverse(Mail::SRS's %q) = %q, %v", theirs, back, err)
		}
	}

	// SRS1 both ways: Mail::SRS forwards our SRS0 again, we reverse its SRS1, and the other way.
	first, _ := s.Forward("alice@orig.example", "fwd.example")
	second := &SRS{Secrets: [][]byte{[]byte("second")}}
	ours1, _ := second.Forward(first, "second.example")
	theirs1, err := perlSRS(t, []string{"second"}, "forward", first, "second.example")
	if err != nil || ours1 != theirs1 {
		t.Errorf("SRS1: ours %q, Mail::SRS %q (%v)", ours1, theirs1, err)
	}
	if back, err := perlSRS(t, []string{"second"}, "reverse", ours1); err != nil || back != first {
		t.Errorf("Mail::SRS reverse(%q) = %q, %v; want %q", ours1, back, err, first)
	}
	if back, err := second.Reverse(theirs1); err != nil || back != first {
		t.Errorf("Reverse(%q) = %q, %v; want %q", theirs1, back, err, first)
	}

	// Rotation: Mail::SRS holding [new, old] reverses what the old secret signed, as we do.
	if back, err := perlSRS(t, []string{"new", "shared secret"}, "reverse", first); err != nil || back != "alice@orig.example" {
		t.Errorf("Mail::SRS with a rotated secret: %q, %v", back, err)
	}
	// Mail::SRS refuses a forged hash as we do.
	forged := "SRS0=" + flip(first[5:9]) + first[9:]
	if _, err := perlSRS(t, []string{"shared secret"}, "reverse", forged); err == nil || !strings.Contains(err.Error(), "Invalid hash") {
		t.Errorf("Mail::SRS reverse of a forged hash: %v", err)
	}
	if _, err := s.Reverse(forged); !errors.Is(err, ErrHash) {
		t.Errorf("Reverse of a forged hash: %v", err)
	}
}
