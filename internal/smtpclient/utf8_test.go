package smtpclient

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// BODY=8BITMIME (RFC 6152 §3) goes only with EightBit and only to a server that
// offers 8BITMIME; SMTPUTF8 and BODY=8BITMIME go together when both are asked for.
func TestEightBitMIME(t *testing.T) {
	for _, tc := range []struct {
		name string
		ext  []string
		tx   Transaction
		mail string
	}{
		{"offered", []string{"8BITMIME"}, Transaction{From: "a@x.test", EightBit: true}, "MAIL FROM:<a@x.test> BODY=8BITMIME"},
		{"not offered", nil, Transaction{From: "a@x.test", EightBit: true}, "MAIL FROM:<a@x.test>"},
		{"not asked", []string{"8BITMIME"}, Transaction{From: "a@x.test"}, "MAIL FROM:<a@x.test>"},
		{"with SMTPUTF8", []string{"8BITMIME", "SMTPUTF8"}, Transaction{From: "jörg@x.test", EightBit: true, UTF8: true}, "MAIL FROM:<jörg@x.test> BODY=8BITMIME SMTPUTF8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, tc.ext...)
			c := dial(t, f.addr)
			tc.tx.Rcpts = rcpts("b@y.test")
			if _, err := c.Send(&tc.tx, strings.NewReader(testMessage)); err != nil {
				t.Fatal(err)
			}
			c.Quit()
			<-f.ended
			lines, _ := f.got()
			if want := []string{tc.mail, "RCPT TO:<b@y.test>", "DATA", "QUIT"}; !slices.Equal(lines, want) {
				t.Errorf("server got %q, want %q", lines, want)
			}
		})
	}
}

// A transaction that needs SMTPUTF8 fails on a server without it with
// ErrNoSMTPUTF8 (RFC 6531 §3.5: no downgrade), before anything is written.
func TestNoSMTPUTF8(t *testing.T) {
	for _, tx := range []Transaction{
		{From: "a@x.test", Rcpts: rcpts("jörg@y.test")},
		{From: "jörg@x.test", Rcpts: rcpts("b@y.test")},
		{From: "a@x.test", UTF8: true, Rcpts: rcpts("b@y.test")},
	} {
		f := startFake(t, "8BITMIME")
		c := dial(t, f.addr)
		_, err := c.Send(&tx, strings.NewReader(testMessage))
		var ue *UnsendableError
		if !errors.As(err, &ue) || !errors.Is(err, ErrNoSMTPUTF8) {
			t.Errorf("Send(%+v) = %v, want an UnsendableError with ErrNoSMTPUTF8", tx, err)
		}
		c.Quit()
		<-f.ended
		if lines, _ := f.got(); !slices.Equal(lines, []string{"QUIT"}) {
			t.Errorf("server got %q, want only QUIT", lines)
		}
	}
}
