package submit

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sealgate/internal/smtptest"
	"sealgate/relay"
	"sealgate/sign"
)

// hardServer is an in-process server with a smart-host listener trusting
// 127.0.0.0/8, a STARTTLS submission listener and an implicit-TLS submission
// listener, in that order.
type hardServer struct {
	srv                       *Server
	spool                     *relay.Spool
	log                       *lockedLog
	pool                      *x509.CertPool
	smart, starttls, implicit string
}

func startHardServer(t *testing.T, limits Limits, users Authenticator, throttle *AuthThrottle) *hardServer {
	t.Helper()
	h := buildHardServer(t, limits, users, throttle)
	h.listen(t)
	return h
}

// buildHardServer is the server startHardServer serves, not yet listening, for tests
// that change its listeners or networks first.
func buildHardServer(t *testing.T, limits Limits, users Authenticator, throttle *AuthThrottle) *hardServer {
	t.Helper()
	spool, err := relay.OpenSpool(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spool.Close() })
	ca := newTestCA(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "relay.example.test", x509.ExtKeyUsageServerAuth)}, MinVersion: tls.VersionTLS12}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	logs := &lockedLog{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	if limits.MaxMessageBytes == 0 {
		limits.MaxMessageBytes = 4 << 20
	}
	switch {
	case limits.CommandTimeout == 0:
		limits.CommandTimeout = 20 * time.Second
	case limits.CommandTimeout < 0:
		limits.CommandTimeout = 0 // no command timeout
	}
	if limits.DataTimeout == 0 {
		limits.DataTimeout = bareDataTimeout
	}
	srv := &Server{
		Hostname: "relay.example.test",
		Listeners: []Listener{
			{Name: "smarthost", Address: "127.0.0.1:0", Mode: ModeSmartHost, Network: true},
			{Name: "submission", Address: "127.0.0.1:0", Mode: ModeSubmission, SASL: true, TLS: tlsCfg},
			{Name: "submissions", Address: "127.0.0.1:0", Mode: ModeSubmissions, SASL: true, TLS: tlsCfg},
		},
		Limits:       limits,
		Users:        users,
		AuthThrottle: throttle,
		Networks: []NetworkIdentity{{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			Identity: NewIdentity("mta", KindClientNetwork, MustParsePatterns("*@client.example"))}},
		Pipeline: &Pipeline{Hostname: "relay.example.test", AuthServID: "relay.example.test", Spool: spool, Log: log,
			KeyRing: mustKeyRing(sign.DomainKeys{Domain: "client.example", Keys: []sign.Key{{Selector: "ed", Signer: edKey}}})},
		Log: log,
	}
	return &hardServer{srv: srv, spool: spool, log: logs, pool: pool}
}

// listen starts serving h.srv and records the address of each of its listeners.
func (h *hardServer) listen(t *testing.T) {
	t.Helper()
	if err := h.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go h.srv.Serve()
	t.Cleanup(func() { h.srv.Close() })
	for i, a := range h.srv.Addrs() {
		switch h.srv.Listeners[i].Mode {
		case ModeSmartHost:
			h.smart = a.String()
		case ModeSubmission:
			h.starttls = a.String()
		case ModeSubmissions:
			h.implicit = a.String()
		}
	}
}

// dialFrom connects from the loopback address local ("" for the default).
func dialFrom(t *testing.T, local, address string) (net.Conn, error) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	return d.Dial("tcp", address)
}

// dialSmart connects to the smart host listener, reads the greeting and says EHLO.
func (s *hardServer) dialSmart(t *testing.T) *rawClient {
	t.Helper()
	raw, err := dialFrom(t, "", s.smart)
	if err != nil {
		t.Fatal(err)
	}
	c := smtptest.NewClient(t, raw)
	c.Greet("mta.client.example")
	return c
}

// dialImplicitTLS connects to the implicit-TLS listener and reads the greeting.
func (s *hardServer) dialImplicitTLS(t *testing.T) *rawClient {
	t.Helper()
	c, err := tls.Dial("tcp", s.implicit, &tls.Config{RootCAs: s.pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	rc := smtptest.NewClient(t, c)
	rc.Greet("mta.client.example")
	return rc
}

// dialSTARTTLS connects to the STARTTLS listener and upgrades.
func (s *hardServer) dialSTARTTLS(t *testing.T) *rawClient {
	t.Helper()
	raw, err := dialFrom(t, "", s.starttls)
	if err != nil {
		t.Fatal(err)
	}
	rc := smtptest.NewClient(t, raw)
	rc.Greet("mta.client.example")
	rc.StartTLS(&tls.Config{RootCAs: s.pool, ServerName: "127.0.0.1"})
	if got := rc.Cmd("EHLO mta.client.example"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("EHLO after STARTTLS: %q", got)
	}
	return rc
}

// gatedAuth is an Authenticator that counts password checks and holds each one
// until released, so that checks are in flight together.
type gatedAuth struct {
	password string
	checks   atomic.Int32
	gated    atomic.Bool // hold checks until release is closed
	started  chan string
	release  chan struct{}
}

func newGatedAuth(password string) *gatedAuth {
	return &gatedAuth{password: password, started: make(chan string, 100), release: make(chan struct{})}
}

func (a *gatedAuth) Authenticate(login, password string) (*Identity, error) {
	a.checks.Add(1)
	if a.gated.Load() {
		a.started <- password
		<-a.release
	}
	if password != a.password {
		return nil, errors.New("wrong password")
	}
	return NewIdentity(login, KindLogin, MustParsePatterns("*@client.example")), nil
}

func plainAuth(login, password string) string {
	return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+login+"\x00"+password))
}

// TestAuthThrottleConcurrentAttempts sends 59 wrong passwords on 59 connections
// from one address at once, then the right one: attempts are counted before their
// password is checked, so no more than the limit of checks run, the attempts past
// the limit wait without a check and are refused with 421 4.7.0 once the checked
// ones have failed, and so is the right password.
func TestAuthThrottleConcurrentAttempts(t *testing.T) {
	const limit = 5
	auth := newGatedAuth("right horse battery")
	s := startHardServer(t, Limits{MaxConnectionsPerIP: 100}, auth, NewAuthThrottle(limit, time.Minute))

	// Control: the right password alone logs in, several times, as a client
	// logging in on every connection does: successes are not counted.
	for i := 0; i < 2*limit; i++ {
		c := s.dialImplicitTLS(t)
		if got := c.Cmd(plainAuth("alice@client.example", auth.password)); !strings.HasPrefix(got, "235 ") {
			t.Fatalf("right password alone, login %d: %q", i+1, got)
		}
		c.Conn.Close()
	}
	auth.checks.Store(0)
	auth.gated.Store(true)

	conns := make([]*rawClient, 60)
	for i := range conns {
		conns[i] = s.dialImplicitTLS(t)
	}
	replies := make(chan string, 60)
	var wg sync.WaitGroup
	send := func(i int, password string) {
		defer wg.Done()
		conns[i].Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conns[i].Conn, plainAuth("alice@client.example", password)+"\r\n")
		conns[i].Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		line, _ := conns[i].R.ReadString('\n')
		replies <- strings.TrimRight(line, "\r\n")
	}
	for i := 0; i < 59; i++ {
		wg.Add(1)
		go send(i, fmt.Sprintf("guess %d", i))
	}
	// limit checks are now in flight, held by the authenticator.
	for i := 0; i < limit; i++ {
		select {
		case <-auth.started:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d password checks started", i)
		}
	}
	rightReply := make(chan string, 1)
	go func() {
		conns[59].Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conns[59].Conn, plainAuth("alice@client.example", auth.password)+"\r\n")
		conns[59].Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		line, _ := conns[59].R.ReadString('\n')
		rightReply <- strings.TrimRight(line, "\r\n")
	}()
	select {
	case got := <-replies:
		t.Fatalf("an attempt was answered while the limit of checks is in flight: %q", got)
	case got := <-rightReply:
		t.Fatalf("the right password was answered while the limit of checks is in flight: %q", got)
	case <-time.After(300 * time.Millisecond):
		// The others wait for a place (a bounded wait for something not to happen).
	}
	close(auth.release)
	wg.Wait()
	var refused, checkedRefusals int
	for i := 0; i < 59; i++ {
		switch got := <-replies; {
		case strings.HasPrefix(got, "421 4.7.0 "):
			refused++
		case strings.HasPrefix(got, "535 "):
			checkedRefusals++
		default:
			t.Errorf("wrong password: %q, want 421 4.7.0 or 535", got)
		}
	}
	if got := <-rightReply; !strings.HasPrefix(got, "421 4.7.0 ") {
		t.Errorf("right password once the limit is reached: %q, want 421 4.7.0", got)
	}
	if n := auth.checks.Load(); n != limit || refused+checkedRefusals != 59 || checkedRefusals > limit {
		t.Errorf("%d password checks for 60 attempts (%d refused with 421, %d with 535), want %d checks", n, refused, checkedRefusals, limit)
	}
	if strings.Contains(s.log.String(), "guess ") || strings.Contains(s.log.String(), auth.password) {
		t.Errorf("a password reached the log:\n%s", s.log.String())
	}
}

// TestAuthThrottleConcurrentLogins checks that logins from one address that come
// together, more than the limit of them, all succeed: those past the limit wait
// for a place, and successes give theirs back.
func TestAuthThrottleConcurrentLogins(t *testing.T) {
	const limit, logins = 5, 12
	auth := newGatedAuth("pw")
	auth.gated.Store(true)
	s := startHardServer(t, Limits{}, auth, NewAuthThrottle(limit, time.Minute))
	replies := make(chan string, logins)
	for i := 0; i < logins; i++ {
		c := s.dialImplicitTLS(t)
		go func() {
			io.WriteString(c.Conn, plainAuth(fmt.Sprintf("user%d@client.example", i), "pw")+"\r\n")
			c.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			line, _ := c.R.ReadString('\n')
			replies <- strings.TrimRight(line, "\r\n")
		}()
	}
	for i := 0; i < limit; i++ {
		<-auth.started
	}
	close(auth.release)
	for i := 0; i < logins; i++ {
		if got := <-replies; !strings.HasPrefix(got, "235 ") {
			t.Errorf("concurrent login: %q, want 235", got)
		}
	}
	if n := auth.checks.Load(); n != logins {
		t.Errorf("%d checks, want %d", n, logins)
	}
}

// TestFailedLoginRedacted checks that a failed login is not logged as typed: users
// type their password into the login field.
func TestFailedLoginRedacted(t *testing.T) {
	auth := newGatedAuth("x")
	s := startHardServer(t, Limits{}, auth, nil)
	c := s.dialImplicitTLS(t)
	const typed = "Tr0ub4dor&3-typed-as-login"
	if got := c.Cmd(plainAuth(typed, "wrong")); !strings.HasPrefix(got, "535 ") {
		t.Fatalf("wrong password: %q", got)
	}
	logs := s.log.String()
	if !strings.Contains(logs, "authentication failed") {
		t.Fatalf("failure not logged:\n%s", logs)
	}
	if strings.Contains(logs, typed) || strings.Contains(logs, "typed-as-login") {
		t.Errorf("the login as typed is in the log:\n%s", logs)
	}
	if !strings.Contains(logs, `"\"Tr0\"... (26 chars, tag `) {
		t.Errorf("the log does not hold the redacted form:\n%s", logs)
	}
	if redactLogin(typed) != redactLogin(typed) || redactLogin(typed) == redactLogin(typed+"x") {
		t.Error("tags do not tell logins apart")
	}
}

// TestRefusalsLoggedOnce checks that a client repeating a refused command gets a
// few log lines and one count at the end, not a line per refusal.
func TestRefusalsLoggedOnce(t *testing.T) {
	s := startHardServer(t, Limits{}, nil, nil)
	c := s.dialSmart(t)
	var b strings.Builder
	for i := 0; i < 1000; i++ {
		b.WriteString("MAIL FROM:<ceo@bank.example>\r\n")
	}
	go io.WriteString(c.Conn, b.String())
	for i := 0; i < 1000; i++ {
		if got := c.Reply(5 * time.Second); !strings.HasPrefix(got, "553 5.7.1 ") {
			t.Fatalf("refusal %d: %q", i, got)
		}
	}
	if got := c.Cmd("QUIT"); !strings.HasPrefix(got, "221 ") {
		t.Fatalf("QUIT: %q", got)
	}
	c.AssertClosed()
	var lines, summaries int
	deadline := time.Now().Add(5 * time.Second)
	for summaries == 0 && time.Now().Before(deadline) {
		lines = strings.Count(s.log.String(), "MAIL FROM refused")
		summaries = strings.Count(s.log.String(), "refused commands not logged one by one")
		if summaries == 0 {
			time.Sleep(10 * time.Millisecond) // the summary is logged as the server closes its side
		}
	}
	if lines != refusalsLogged || summaries != 1 || !strings.Contains(s.log.String(), fmt.Sprintf("count=%d", 1000-refusalsLogged)) {
		t.Errorf("%d refusal lines and %d summaries, want %d and 1 with count=%d:\n%s", lines, summaries, refusalsLogged, 1000-refusalsLogged, s.log.String())
	}
}

// TestConnectionsPerAddress holds 500 idle connections from 127.0.0.2: it gets at
// most MaxConnectionsPerIP of them, the rest are refused with 421 4.7.0, and a
// client at 127.0.0.1 is still greeted and delivers a message.
func TestConnectionsPerAddress(t *testing.T) {
	s := startHardServer(t, Limits{MaxConnections: 200, MaxConnectionsPerIP: 20, PreAuthTimeout: time.Minute}, nil, nil)
	probe, err := dialFrom(t, "127.0.0.2", s.smart)
	if err != nil {
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			t.Skipf("cannot bind 127.0.0.2: %v", err)
		}
		t.Fatal(err)
	}
	probe.Close()
	var attacker []net.Conn
	defer func() {
		for _, c := range attacker {
			c.Close()
		}
	}()
	for i := 0; i < 500; i++ {
		c, err := dialFrom(t, "127.0.0.2", s.smart)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		attacker = append(attacker, c)
	}
	greeted, refused := 0, 0
	for _, c := range attacker {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		switch {
		case strings.HasPrefix(line, "220 "):
			greeted++
		case strings.HasPrefix(line, "421 4.7.0 ") && strings.Contains(line, "from your address (at most 20)"):
			refused++
		}
	}
	// Refusals beyond those in progress at once are closed without a reply.
	if greeted != 20 || refused == 0 {
		t.Errorf("of 500 connections from one address, %d greeted and %d refused with 421 4.7.0; want 20 greeted", greeted, refused)
	}

	conn, err := dialFrom(t, "127.0.0.1", s.smart)
	if err != nil {
		t.Fatal(err)
	}
	c := smtptest.NewClient(t, conn)
	c.Greet("mta.client.example")
	startData(c)
	if got := c.Cmd(bareHeader + "\r\nbody\r\n."); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("message from the other address: %q", got)
	}
	if ids, _ := s.spool.List(); len(ids) != 1 {
		t.Errorf("spool holds %d messages, want 1", len(ids))
	}
}

// TestImplicitTLSRefusalInsideTLS checks that a connection over the limit on the
// implicit-TLS port gets its 421 inside TLS, not a TLS error.
func TestImplicitTLSRefusalInsideTLS(t *testing.T) {
	s := startHardServer(t, Limits{MaxConnectionsPerIP: 1}, nil, nil)
	first := s.dialImplicitTLS(t)
	_ = first
	c, err := tls.Dial("tcp", s.implicit, &tls.Config{RootCAs: s.pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS to a connection over the limit: %v", err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "421 4.7.0 relay.example.test Too many connections from your address (at most 1)") {
		t.Errorf("over the limit: %q, %v; want 421 4.7.0 inside TLS", line, err)
	}

	// The limit on all connections together, from another address.
	g := startHardServer(t, Limits{MaxConnections: 1}, nil, nil)
	g.dialImplicitTLS(t)
	raw, err := dialFrom(t, "127.0.0.2", g.implicit)
	if err != nil {
		t.Skipf("cannot connect from 127.0.0.2: %v", err)
	}
	tc := tls.Client(raw, &tls.Config{RootCAs: g.pool, ServerName: "127.0.0.1"})
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	line, err = bufio.NewReader(tc).ReadString('\n')
	if line != "421 4.7.0 relay.example.test Too many connections, try again later\r\n" {
		t.Errorf("over the global limit: %q, %v; want 421 4.7.0 inside TLS", line, err)
	}
}

// TestPreAuthTimeout checks that a client that does not authenticate (or, known by
// its address, start a transaction) within PreAuthTimeout gets 421 4.4.2 and is
// disconnected, on every kind of listener, while a client that did is not.
func TestPreAuthTimeout(t *testing.T) {
	const preAuth = time.Second
	auth := newGatedAuth("pw")
	s := startHardServer(t, Limits{PreAuthTimeout: preAuth}, auth, nil)

	// Each client below is connected before any is waited for, so the test
	// waits for one timeout, not one per client.
	smart := s.dialSmart(t)
	// NOOPs restart go-smtp's command timeout, not the pre-authentication one.
	for i := 0; i < 3; i++ {
		if got := smart.Cmd("NOOP"); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("NOOP: %q", got)
		}
	}
	conn, err := dialFrom(t, "", s.starttls)
	if err != nil {
		t.Fatal(err)
	}
	silent := smtptest.NewClient(t, conn)
	if got := silent.Reply(5 * time.Second); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("greeting: %q", got)
	}
	clients := []struct {
		what string
		c    *rawClient
	}{
		{"smart host without MAIL", smart},
		{"STARTTLS port, silent after the greeting", silent},
		{"STARTTLS port, after STARTTLS without AUTH", s.dialSTARTTLS(t)},
		{"implicit TLS without AUTH", s.dialImplicitTLS(t)},
	}

	// After AUTH, or MAIL on the smart host, the ordinary command timeout applies.
	authed := s.dialImplicitTLS(t)
	if got := authed.Cmd(plainAuth("alice@client.example", "pw")); !strings.HasPrefix(got, "235 ") {
		t.Fatalf("AUTH: %q", got)
	}
	conn, err = dialFrom(t, "", s.smart)
	if err != nil {
		t.Fatal(err)
	}
	mail := smtptest.NewClient(t, conn)
	mail.Greet("mta.client.example")
	if got := mail.Cmd("MAIL FROM:<billing@client.example>"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("MAIL: %q", got)
	}

	for _, tc := range clients {
		tc.c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := tc.c.R.ReadString('\n')
		if !strings.HasPrefix(line, "421 4.4.2 relay.example.test no ") {
			t.Errorf("%s: %q, %v; want 421 4.4.2", tc.what, line, err)
		}
		tc.c.AssertClosed()
	}
	if got := authed.Cmd("NOOP"); !strings.HasPrefix(got, "250 ") {
		t.Errorf("authenticated client after the pre-authentication timeout: %q", got)
	}
	if got := mail.Cmd("NOOP"); !strings.HasPrefix(got, "250 ") {
		t.Errorf("smart-host client in a transaction after the pre-authentication timeout: %q", got)
	}
}

// TestPreAuthTimeoutWithoutCommandTimeout checks that without a command timeout,
// when go-smtp sets no deadline of its own, the pre-authentication deadline does
// not outlive the pre-authentication period.
func TestPreAuthTimeoutWithoutCommandTimeout(t *testing.T) {
	const preAuth = 300 * time.Millisecond
	s := startHardServer(t, Limits{PreAuthTimeout: preAuth, CommandTimeout: -1}, nil, nil)
	mail := s.dialSmart(t)
	if got := mail.Cmd("MAIL FROM:<billing@client.example>"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("MAIL: %q", got)
	}
	// Nothing may arrive within twice the pre-authentication timeout.
	mail.Conn.SetReadDeadline(time.Now().Add(3 * preAuth))
	if line, err := mail.R.ReadString('\n'); !isTimeout(err) {
		t.Fatalf("client in a transaction got %q, %v after the pre-authentication timeout; want nothing", line, err)
	}
	if got := mail.Cmd("NOOP"); !strings.HasPrefix(got, "250 ") {
		t.Errorf("NOOP: %q", got)
	}
}

// TestPartialLineAtTimeout checks that half a command line is never run when the
// command timeout expires: the client gets 421 4.4.2 and the connection is closed,
// with no reply to the half line.
func TestPartialLineAtTimeout(t *testing.T) {
	s := startHardServer(t, Limits{CommandTimeout: 400 * time.Millisecond, PreAuthTimeout: time.Minute}, newGatedAuth("pw"), nil)
	for i, half := range []string{"RCPT TO:<ops@partner.example>", "NOOP", "RSET", "RCPT TO:<ops@partner.example>"} {
		var c *rawClient
		if i < 3 {
			conn, err := dialFrom(t, "", s.smart)
			if err != nil {
				t.Fatal(err)
			}
			c = smtptest.NewClient(t, conn)
			c.Greet("mta.client.example")
		} else {
			// Under TLS, where nothing beneath go-smtp sees lines.
			c = s.dialImplicitTLS(t)
			if got := c.Cmd(plainAuth("billing@client.example", "pw")); !strings.HasPrefix(got, "235 ") {
				t.Fatalf("AUTH: %q", got)
			}
		}
		if got := c.Cmd("MAIL FROM:<billing@client.example>"); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("MAIL: %q", got)
		}
		c.Write(half)
		c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := c.R.ReadString('\n')
		if !strings.HasPrefix(line, "421 4.4.2 relay.example.test timeout") {
			t.Errorf("half line %q at the timeout: %q, %v; want only 421 4.4.2", half, line, err)
		}
		c.AssertClosed()
	}
}

// TestEnvelopeAddressesAsWritten checks that envelope addresses are stored in
// canonical RFC 5321 form, quoting kept where the local part needs it, and that
// what could not be relayed as written is refused at MAIL or RCPT.
func TestEnvelopeAddressesAsWritten(t *testing.T) {
	s := startHardServer(t, Limits{}, nil, nil)
	c := s.dialSmart(t)
	c.Cmd("EHLO again.client.example")
	refusals := []struct{ cmd, want string }{
		{"MAIL FROM:<ceo@evil.example@client.example>", `553 5.1.7 MAIL FROM <ceo@evil.example@client.example> cannot be relayed as written: the local part holds "@" but is not quoted`},
		{"MAIL FROM:<a..b@client.example>", "553 5.1.7 MAIL FROM <a..b@client.example> cannot be relayed as written:"},
		{"MAIL FROM:<b\u00efll@client.example>", "553 5.6.7 MAIL FROM \"b\u00efll@client.example\" contains non-ASCII characters"},
		{"MAIL FROM:<billing@b\u00fccher.example>", "553 5.6.7 "},
	}
	for _, r := range refusals {
		if got := c.Cmd(r.cmd); !strings.HasPrefix(got, r.want) {
			t.Errorf("%s:\n got %q\nwant %q...", r.cmd, got, r.want)
		}
	}
	if got := c.Cmd(`MAIL FROM:<"ceo@evil.example"@client.example>`); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("quoted local part with @: %q", got)
	}
	for _, r := range []struct{ cmd, want string }{
		{"RCPT TO:<a@b@partner.example>", `553 5.1.3 RCPT TO <a@b@partner.example> cannot be relayed as written: the local part holds "@" but is not quoted`},
		{"RCPT TO:<ops@p\u00e4rtner.example>", "553 5.6.7 RCPT TO \"ops@p\u00e4rtner.example\" contains non-ASCII characters"},
		{`RCPT TO:<"a b"@partner.example>`, "250 "},
		{`RCPT TO:<"x> RET=HDRS"@partner.example>`, "250 "},
		{`RCPT TO:<"plain"@partner.example>`, "250 "},
		{"RCPT TO:<@hop.example:route@partner.example>", "250 "},
		{"DATA", "354 "},
	} {
		if got := c.Cmd(r.cmd); !strings.HasPrefix(got, r.want) {
			t.Errorf("%s:\n got %q\nwant %q...", r.cmd, got, r.want)
		}
	}
	if got := c.Cmd("From: billing@client.example\r\nSubject: t\r\n\r\nbody\r\n."); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("message: %q", got)
	}
	if got := c.Cmd(`MAIL FROM:<"x> RET=HDRS"@client.example>`); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("quoted local part with '>': %q", got)
	}
	c.Cmd("RCPT TO:<ops@partner.example>")
	c.Cmd("DATA")
	if got := c.Cmd("From: billing@client.example\r\nSubject: t\r\n\r\nbody\r\n."); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("message: %q", got)
	}

	ids, err := s.spool.List()
	if err != nil || len(ids) != 2 {
		t.Fatalf("spool: %v, %v; want 2 messages", ids, err)
	}
	got := map[string]string{}
	for _, id := range ids {
		env, err := s.spool.Envelope(id)
		if err != nil {
			t.Fatal(err)
		}
		got[env.From] = strings.Join(env.To, " ")
	}
	want := map[string]string{
		`"ceo@evil.example"@client.example`: `"a b"@partner.example "x> RET=HDRS"@partner.example plain@partner.example route@partner.example`,
		`"x> RET=HDRS"@client.example`:      "ops@partner.example",
	}
	for from, to := range want {
		if got[from] != to {
			t.Errorf("envelope from %s: to %q, want %q (all: %q)", from, got[from], to, got)
		}
	}
}

// TestHeaderFieldCap checks that a message with more header fields than
// MaxHeaderFields is refused with 552 5.3.4 and the session stays in step, and
// that one at the limit is accepted.
func TestHeaderFieldCap(t *testing.T) {
	s := startHardServer(t, Limits{}, nil, nil)
	c := s.dialSmart(t)
	startData(c)
	go io.WriteString(c.Conn, bareHeader+strings.Repeat("Subject: x\r\n", 80000)+"\r\nbody\r\n.\r\n")
	if got := c.Reply(20 * time.Second); !strings.HasPrefix(got, "552 5.3.4 Message header has more than 1000 header fields") {
		t.Fatalf("80,000 fields: %q", got)
	}
	startData(c)
	// bareHeader has 5 fields.
	if got := c.Cmd(bareHeader + strings.Repeat("Subject: x\r\n", DefaultMaxHeaderFields-5) + "\r\nbody\r\n."); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("%d fields: %q", DefaultMaxHeaderFields, got)
	}
	if ids, _ := s.spool.List(); len(ids) != 1 {
		t.Errorf("spool holds %d messages, want 1", len(ids))
	}
}

// TestDotBareCR checks that a line "." followed by a bare CR, whose "." and CR
// go-smtp's DATA reader drops, is refused on every kind of listener and never
// accepted two bytes short.
func TestDotBareCR(t *testing.T) {
	s := startHardServer(t, Limits{}, newGatedAuth("pw"), nil)
	dials := map[string]func() *rawClient{
		"smart host": func() *rawClient {
			conn, err := dialFrom(t, "", s.smart)
			if err != nil {
				t.Fatal(err)
			}
			c := smtptest.NewClient(t, conn)
			c.Greet("mta.client.example")
			return c
		},
		"STARTTLS": func() *rawClient {
			c := s.dialSTARTTLS(t)
			c.Cmd(plainAuth("billing@client.example", "pw"))
			return c
		},
		"implicit TLS": func() *rawClient {
			c := s.dialImplicitTLS(t)
			c.Cmd(plainAuth("billing@client.example", "pw"))
			return c
		},
	}
	for name, dial := range dials {
		for _, payload := range []string{
			bareHeader + "\r\nline one\r\n.\rX\r\nmore\r\n.\r\n",
			bareHeader + "\r\nline one\r\n.\r\r\n.\r\n",
			bareHeader + ".\rX-Smuggled: yes\r\n\r\nbody\r\n.\r\n",
		} {
			c := dial()
			startData(c)
			c.Write(payload)
			c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err := c.R.ReadString('\n')
			if !strings.HasPrefix(line, "550 5.6.0 ") && !(line == "" && err != nil && !isTimeout(err)) {
				t.Errorf("%s, %q: %q, %v; want 550 5.6.0 or a closed connection", name, payload[len(bareHeader):], line, err)
			}
		}
		// Outside DATA the same line ends the connection.
		c := dial()
		c.Write(".\rX\r\nNOOP\r\n")
		c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if line, err := c.R.ReadString('\n'); !strings.HasPrefix(line, "550 5.6.0 ") {
			t.Errorf("%s, command: %q, %v; want 550 5.6.0", name, line, err)
		}
		c.AssertClosed()
	}
	if ids, _ := s.spool.List(); len(ids) != 0 {
		t.Errorf("spool holds %d messages, want none", len(ids))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestSTARTTLSInjectionForgotten checks that a MAIL argument injected in plain
// text after STARTTLS, which go-smtp discards, does not stand for the client's
// MAIL inside TLS.
func TestSTARTTLSInjectionForgotten(t *testing.T) {
	s := startHardServer(t, Limits{}, newGatedAuth("pw"), nil)
	raw, err := dialFrom(t, "", s.starttls)
	if err != nil {
		t.Fatal(err)
	}
	c := smtptest.NewClient(t, raw)
	c.Greet("mta.client.example")
	c.Write("STARTTLS\r\nMAIL FROM:<\"x@y\"@client.example>\r\n")
	if got := c.Reply(5 * time.Second); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("STARTTLS: %q", got)
	}
	c.UpgradeTLS(&tls.Config{RootCAs: s.pool, ServerName: "127.0.0.1"})
	if got := c.Cmd("EHLO mta.client.example"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("EHLO: %q", got)
	}
	if got := c.Cmd(plainAuth("billing@client.example", "pw")); !strings.HasPrefix(got, "235 ") {
		t.Fatalf("AUTH: %q", got)
	}
	if got := c.Cmd("MAIL FROM:<x@y@client.example>"); !strings.HasPrefix(got, "553 5.1.7 ") {
		t.Errorf("unquoted MAIL after an injected quoted one: %q, want 553 5.1.7", got)
	}
}
