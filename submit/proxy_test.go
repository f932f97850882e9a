package submit

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// startProxiedServer serves a smart-host listener that trusts 127.0.0.1 as a proxy
// and 127.0.0.2 as a client network: a connection from 127.0.0.1 must carry a PROXY
// header, and is then the client it names.
func startProxiedServer(t *testing.T) (addr string, logs *lockedLog) {
	addrs, logs, _ := startProxiedServers(t)
	return addrs[0], logs
}

// startProxiedServers is startProxiedServer with a second listener, implicit TLS
// (submissions) behind the same proxy; it returns both addresses and the CA.
func startProxiedServers(t *testing.T) (addrs []string, logs *lockedLog, pool *x509.CertPool) {
	t.Helper()
	h := buildHardServer(t, Limits{MaxMessageBytes: 1 << 20, CommandTimeout: 10 * time.Second, DataTimeout: 10 * time.Second}, nil, nil)
	proxy := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	tlsCfg := h.srv.Listeners[2].TLS
	h.srv.Listeners = []Listener{
		{Name: "smarthost", Address: "127.0.0.1:0", Mode: ModeSmartHost, Network: true, TrustedProxies: proxy},
		{Name: "submissions", Address: "127.0.0.1:0", Mode: ModeSubmissions, SASL: true, TLS: tlsCfg, TrustedProxies: proxy}}
	h.srv.Networks = []NetworkIdentity{{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
		Identity: NewIdentity("mta", KindClientNetwork, MustParsePatterns("*@client.example"))}}
	h.listen(t)
	return []string{h.smart, h.implicit}, h.log, h.pool
}

// headerFirst sends a PROXY header in the same write as the first bytes of the
// connection (the TLS ClientHello), as a proxy relaying a fast client does, so that the
// server reads part of the handshake with the header.
type headerFirst struct {
	net.Conn
	header []byte
}

func (c *headerFirst) Write(p []byte) (int, error) {
	if h := c.header; h != nil {
		c.header = nil
		if _, err := c.Conn.Write(append(h, p...)); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// Implicit TLS through a proxy: the handshake that follows the header (in the same
// segment) completes, and the session is the header's client.
func TestProxyProtocolImplicitTLS(t *testing.T) {
	addrs, logs, pool := startProxiedServers(t)
	raw, err := dialFrom(t, "127.0.0.1", addrs[1])
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c := tls.Client(&headerFirst{Conn: raw, header: []byte(v2Header(t, proxyproto.PROXY, "127.0.0.7"))},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if got, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(got, "220 ") {
		t.Fatalf("greeting over TLS after a PROXY header: %q, %v", got, err)
	}
	c.Write([]byte("EHLO mta.client.example\r\n" + plainAuth("alice@client.example", "wrong") + "\r\n"))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "250 ") {
			break
		}
	}
	if got, _ := r.ReadString('\n'); !strings.HasPrefix(got, "5") && !strings.HasPrefix(got, "4") {
		t.Errorf("AUTH with no users configured: %q", got)
	}
	waitUntil(t, func() bool { return strings.Contains(logs.String(), "client_ip=127.0.0.7") })
}

func v2Header(t *testing.T, cmd proxyproto.ProtocolVersionAndCommand, src string) string {
	t.Helper()
	h := &proxyproto.Header{Version: 2, Command: cmd, TransportProtocol: proxyproto.TCPv4,
		SourceAddr:      &net.TCPAddr{IP: net.ParseIP(src), Port: 40000},
		DestinationAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 25}}
	if cmd == proxyproto.LOCAL {
		h.TransportProtocol = proxyproto.UNSPEC
		h.SourceAddr, h.DestinationAddr = nil, nil
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestProxyProtocol(t *testing.T) {
	addr, logs := startProxiedServer(t)
	v1 := func(src string) string { return "PROXY TCP4 " + src + " 127.0.0.1 40000 25\r\n" }
	for _, tc := range []struct {
		name, from string
		header     string // sent before the greeting
		after      string // sent after the greeting, before EHLO
		greeting   string // prefix of the first reply
		mail       string // prefix of the reply to MAIL, when greeted
		reason     string // logged reason code, when refused
	}{
		{name: "v1 header names a client network", from: "127.0.0.1", header: v1("127.0.0.2"), greeting: "220 ", mail: "250 "},
		{name: "v2 header names a client network", from: "127.0.0.1", header: v2Header(t, proxyproto.PROXY, "127.0.0.2"), greeting: "220 ", mail: "250 "},
		{name: "header names an unknown client, though the proxy's address is trusted", from: "127.0.0.1",
			header: v1("127.0.0.9"), greeting: "220 ", mail: "5"},
		{name: "trusted proxy without a header", from: "127.0.0.1", header: "EHLO mta.client.example\r\n",
			greeting: "421 4.7.0 relay.example.test a PROXY protocol header is required", reason: "proxy_header_missing"},
		{name: "malformed header", from: "127.0.0.1", header: "PROXY TCP4 127.0.0.2 nonsense\r\n",
			greeting: "421 4.7.0 relay.example.test malformed PROXY protocol header", reason: "proxy_header_invalid"},
		{name: "LOCAL header (a health check)", from: "127.0.0.1", header: v2Header(t, proxyproto.LOCAL, ""),
			greeting: "421 4.7.0 relay.example.test a PROXY LOCAL connection carries no client", reason: "proxy_local"},
		{name: "header from an untrusted address", from: "127.0.0.3", after: v1("127.0.0.2"),
			greeting: "220 ", mail: "554 5.7.1 PROXY protocol header refused", reason: "proxy_untrusted"},
		{name: "client's own header behind the proxy's", from: "127.0.0.1", header: v1("127.0.0.3"), after: v1("127.0.0.2"),
			greeting: "220 ", mail: "554 5.7.1 PROXY protocol header refused", reason: "proxy_untrusted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialFrom(t, tc.from, addr)
			if err != nil {
				t.Skipf("cannot connect from %s: %v", tc.from, err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			line := func() string {
				s, _ := r.ReadString('\n')
				return strings.TrimRight(s, "\r\n")
			}
			reply := func() string { // the last line of a reply
				for {
					s := line()
					if len(s) < 4 || s[3] != '-' {
						return s
					}
				}
			}
			if tc.header != "" {
				c.Write([]byte(tc.header))
			}
			if got := reply(); !strings.HasPrefix(got, tc.greeting) {
				t.Fatalf("greeting %q, want %q...", got, tc.greeting)
			}
			if tc.mail != "" {
				var got string
				if tc.after != "" {
					c.Write([]byte(tc.after))
					got = reply()
				} else {
					c.Write([]byte("EHLO mta.client.example\r\n"))
					reply()
					c.Write([]byte("MAIL FROM:<a@client.example>\r\n"))
					got = reply()
				}
				if !strings.HasPrefix(got, tc.mail) {
					t.Fatalf("reply %q, want %q...", got, tc.mail)
				}
			}
			if tc.reason != "" {
				waitUntil(t, func() bool { return strings.Contains(logs.String(), "reason="+tc.reason) })
			}
		})
	}
	// The client named by the header is the one logged, not the proxy.
	if !strings.Contains(logs.String(), "client_ip=127.0.0.9") {
		t.Errorf("the header's client address is not in the log:\n%s", logs)
	}
}

func TestLooksLikeProxyHeader(t *testing.T) {
	for in, want := range map[string]bool{
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n": true,
		"PROXY":                              true,
		"\r\n\r\n\x00\r\nQUIT\n\x21":         true,
		"\r\n\r\n\x00":                       true,
		"EHLO proxy.example\r\n":             false,
		"PROX":                               false, // too short to tell; no SMTP verb starts so
		"\x16\x03\x01\x02\x00":               false, // a TLS ClientHello
		"\r\n":                               false,
	} {
		if got := looksLikeProxyHeader([]byte(in)); got != want {
			t.Errorf("looksLikeProxyHeader(%q) = %v, want %v", in, got, want)
		}
	}
}

// A trusted proxy that opens connections and sends no header holds at most
// maxProxyHeadersInProgress of them; the next is closed at once, unread.
func TestProxyHeadersInProgressBounded(t *testing.T) {
	addr, logs := startProxiedServer(t)
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for range maxProxyHeadersInProgress {
		c, err := dialFrom(t, "127.0.0.1", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	extra, err := dialFrom(t, "127.0.0.1", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(4 * time.Second)) // under proxyHeaderTimeout
	if n, err := extra.Read(make([]byte, 64)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("connection beyond the bound: read %d bytes, %v; want it closed unread", n, err)
	}
	if !strings.Contains(logs.String(), "PROXY headers awaited at once") {
		t.Errorf("no refusal logged:\n%s", logs.String())
	}
}
