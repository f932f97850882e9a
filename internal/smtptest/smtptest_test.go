package smtptest_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"sealgate/internal/smtptest"
)

// The two ends talk to each other: greeting, EHLO with extensions, a multi-line reply,
// dot-stuffed data, and the server's close.
func TestClientAndServer(t *testing.T) {
	addr, done := smtptest.ServeGreeting(t, "hop.test", []string{"PIPELINING", "8BITMIME"}, func(c *smtptest.Conn) error {
		cmds, err := c.ReadLines(2)
		if err != nil {
			return err
		}
		if !slices.Equal(cmds, []string{"MAIL FROM:<a@x.test>", "DATA"}) {
			return fmt.Errorf("commands %q", cmds)
		}
		if err := c.Reply("250 ok", "354 go ahead"); err != nil {
			return err
		}
		body, err := c.ReadData()
		if err != nil {
			return err
		}
		if body != ".leading dot\r\nend\r\n" {
			return fmt.Errorf("data %q", body)
		}
		return c.Reply("250-queued", "250 as Q1")
	})
	c := smtptest.Dial(t, addr)
	if got := c.Reply(time.Second); got != "220 hop.test ESMTP" {
		t.Fatalf("greeting %q", got)
	}
	c.Write("EHLO client.test\r\n")
	ehlo, err := c.ReadReply(time.Second)
	if err != nil || !slices.Equal(ehlo, []string{"250-hop.test", "250-PIPELINING", "250 8BITMIME"}) {
		t.Fatalf("EHLO reply %q, %v", ehlo, err)
	}
	c.Write("MAIL FROM:<a@x.test>\r\nDATA\r\n")
	if got := c.Reply(time.Second); got != "250 ok" {
		t.Errorf("MAIL: %q", got)
	}
	if got := c.Reply(time.Second); !strings.HasPrefix(got, "354 ") {
		t.Errorf("DATA: %q", got)
	}
	if got := c.Cmd("..leading dot\r\nend\r\n."); got != "250 as Q1" {
		t.Errorf("end of data: %q", got)
	}
	if err := <-done; err != nil {
		t.Fatal("server:", err)
	}
	c.AssertClosed()
}
