package e2e

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDisplayNameDisguises sends, through the real binary, From fields of the
// login's own domain whose display names hide a foreign address behind invisible
// or bidirectional characters, a Hangul filler or spaces: each is refused with 550
// 5.7.1, and names without an address still pass.
func TestDisplayNameDisguises(t *testing.T) {
	r := startRelay(t, "")
	refused := map[string]string{
		"isolates":        "\"ceo@\u2066evil.example\u2069\" <demo@example.test>",
		"RTL override":    "\"\u202eelpmaxe.live@oec\" <demo@example.test>",
		"Hangul filler":   "\"ceo@evil.example\u3164\" <demo@example.test>",
		"spaces around @": "\"ceo @ evil.example\" <demo@example.test>",
	}
	for name, from := range refused {
		t.Run(name, func(t *testing.T) {
			c := dialAuth(t, r)
			defer c.quit()
			before := r.snapshot()
			stage, rp := c.sendUTF8(devLogin, []string{"ops@partner.example"}, msg("From: "+from+"\n"+stdTail, "Hello.\n"))
			if stage != "END" || !rp.is(550, "5.7.1") || !strings.Contains(rp.Text(), "display name") {
				t.Errorf("want 550 5.7.1 (display name) after DATA, got %s at %s\ntranscript:\n%s", rp, stage, c.Transcript())
			}
			r.assertNothingSpooled(t, before, name)
		})
	}
	for _, name := range []string{"Alice Smith", "Bob (Sales)", "山田 太郎", "Ζωή Παπαδοπούλου"} {
		c := dialAuth(t, r)
		stage, rp := c.sendUTF8(devLogin, []string{"ops@partner.example"}, msg("From: \""+name+"\" <demo@example.test>\n"+stdTail, "Hello.\n"))
		if stage != "END" || rp.Code != 250 {
			t.Errorf("display name %q: want 250, got %s at %s", name, rp, stage)
		}
		c.quit()
	}
}

// recordingHop is a minimal next hop that answers every command with success and
// records the MAIL and RCPT lines exactly as the relay sends them.
type recordingHop struct {
	ln    net.Listener
	mu    sync.Mutex
	lines []string
}

func startRecordingHop(t *testing.T) *recordingHop {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &recordingHop{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go h.serve(c)
		}
	}()
	return h
}

func (h *recordingHop) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	reply := func(s string) { c.Write([]byte(s + "\r\n")) }
	reply("220 hop.example ESMTP")
	for {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		switch verb := strings.ToUpper(line[:min(4, len(line))]); verb {
		case "EHLO", "HELO":
			reply("250 hop.example")
		case "MAIL", "RCPT":
			h.mu.Lock()
			h.lines = append(h.lines, line)
			h.mu.Unlock()
			reply("250 OK")
		case "DATA":
			reply("354 go ahead")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			reply("250 OK")
		case "QUIT":
			reply("221 bye")
			return
		default:
			reply("250 OK")
		}
	}
}

func (h *recordingHop) recorded() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.lines...)
}

// TestEnvelopeQuotingToNextHop checks, through the real binary and a next hop that
// records what it is sent, that envelope addresses whose local part needs quoting
// are sent on quoted, and that what could not be relayed as written is refused at
// MAIL or RCPT.
func TestEnvelopeQuotingToNextHop(t *testing.T) {
	hop := startRecordingHop(t)
	r := startRelay(t, "", "--next-hop", hop.ln.Addr().String())
	c := dial(t, r.SmartHost, dialOpts{})
	defer c.quit()
	if rp := c.ehlo(); !hasExt(rp, "SMTPUTF8") {
		t.Errorf("SMTPUTF8 not advertised: %s", rp)
	}
	for _, tc := range []struct {
		line string
		code int
		enh  string
	}{
		{"MAIL FROM:<demo@evil.example@example.test>", 553, "5.1.7"},
		{"MAIL FROM:<d\u00e9mo@example.test>", 553, "5.6.7"}, // UTF-8 without SMTPUTF8
		{`MAIL FROM:<"demo@evil.example"@example.test>`, 250, "2.0.0"},
		{"RCPT TO:<a@b@partner.example>", 553, "5.1.3"},
		{"RCPT TO:<ops@p\u00e4rtner.example>", 553, "5.6.7"},
		{`RCPT TO:<"a b"@partner.example>`, 250, "2.0.0"},
		{`RCPT TO:<"x> RET=HDRS"@partner.example>`, 250, "2.0.0"},
	} {
		if rp := c.cmd(tc.line); !rp.is(tc.code, tc.enh) {
			t.Errorf("%s: got %s, want %d %s", tc.line, rp, tc.code, tc.enh)
		}
	}
	if rp := c.cmd("DATA"); rp.Code != 354 {
		t.Fatalf("DATA: %s", rp)
	}
	rp := c.rawData(append(dotStuff(msg("From: demo@example.test\n"+stdTail, "Hello.\n")), ".\r\n"...))
	queueID(t, rp)

	deadline := time.Now().Add(15 * time.Second)
	var got []string
	for time.Now().Before(deadline) {
		if got = hop.recorded(); len(got) >= 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := []string{
		`MAIL FROM:<"demo@evil.example"@example.test>`,
		`RCPT TO:<"a b"@partner.example>`,
		`RCPT TO:<"x> RET=HDRS"@partner.example>`,
	}
	if len(got) != len(want) {
		t.Fatalf("next hop got %q, want %q\nrelay log:\n%s", got, want, r.logs)
	}
	for i := range want {
		// The relay may add parameters (SIZE, BODY) after the path.
		if got[i] != want[i] && !strings.HasPrefix(got[i], want[i]+" ") {
			t.Errorf("next hop line %d: %q, want %q", i, got[i], want[i])
		}
	}
}

// TestConnectionsPerAddressLimit holds idle connections from 127.0.0.2 to the
// real binary: past its per-address limit (20 by default) they are refused with
// 421 4.7.0, and 127.0.0.1 is still greeted and delivers.
func TestConnectionsPerAddressLimit(t *testing.T) {
	r := startRelay(t, "")
	var held []*smtpClient
	refused := 0
	for i := 0; i < 40; i++ {
		c, err := dialErr(t, r.SmartHost, dialOpts{localAddr: "127.0.0.2"})
		switch {
		case err == nil:
			held = append(held, c)
		case strings.Contains(err.Error(), "421 4.7.0"):
			refused++
		case i == 0:
			t.Skipf("cannot connect from 127.0.0.2: %v", err)
		default:
			t.Fatalf("connection %d: %v", i+1, err)
		}
	}
	if len(held) != 20 || refused != 20 {
		t.Errorf("of 40 connections from one address, %d greeted and %d refused with 421 4.7.0; want 20 and 20", len(held), refused)
	}
	c := dialAuth(t, r)
	defer c.quit()
	stage, rp := c.send(devLogin, []string{"ops@partner.example"}, msg("From: demo@example.test\n"+stdTail, "Hello.\n"))
	if stage != "END" || rp.Code != 250 {
		t.Fatalf("from another address: %s at %s\n%s", rp, stage, c.Transcript())
	}
	r.waitOutbox(t, queueID(t, rp))
}
