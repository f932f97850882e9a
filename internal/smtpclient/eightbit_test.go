package smtpclient

import (
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
