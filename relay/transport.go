package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/resolver"
	"sealgate/internal/smtpclient"
	"sealgate/internal/tlsrpt"
)

// TLSMode says how a route uses TLS.
type TLSMode string

// The TLS modes of a Route.
const (
	// TLSOpportunistic uses STARTTLS whenever the server offers it, accepting
	// any certificate (whether it verified is logged), and plain text otherwise
	// (RFC 7435). A message or policy that needs verified TLS (REQUIRETLS,
	// MTA-STS enforce) still gets it or is not sent.
	TLSOpportunistic TLSMode = "opportunistic"
	// TLSRequired needs STARTTLS and a certificate that verifies for the host
	// name; otherwise nothing is sent (deferred).
	TLSRequired TLSMode = "required"
	// TLSImplicit starts TLS on connection (RFC 8314 §3, port 465), with a
	// certificate that verifies for the host name.
	TLSImplicit TLSMode = "implicit"
)

// Route says how mail for a group of recipients leaves.
type Route struct {
	// NextHop is a smart host as host:port; "" means the recipients' MX hosts
	// (RFC 5321 §5.1), on Transport.MXPort. A smart host's name is resolved by
	// the system (so /etc/hosts applies); MX lookups use Transport.Resolver.
	NextHop string
	// TLS is how TLS is used; "" means TLSOpportunistic.
	TLS TLSMode
	// Auth, when set, logs in to the smart host; it needs TLSRequired or
	// TLSImplicit (credentials never cross the network in plain text).
	Auth *Credentials
	// HeloName is the EHLO name; "" means Transport.HeloName.
	HeloName string
	// SourceIP is the address to connect from (net.Dialer.LocalAddr); nil lets
	// the system choose. With it, only servers of its address family are tried.
	SourceIP net.IP
}

func (r Route) tlsMode() TLSMode {
	if r.TLS == "" {
		return TLSOpportunistic
	}
	return r.TLS
}

// Transport is the Deliverer for the Internet: each recipient's route is the
// route of its domain in Domains (a transport map), else the route of the
// message's identity in Identities (a client organisation's own smart host,
// credentials, HELO name or source address), else Default. Recipients sharing a
// route and, for MX delivery, a domain go in one transaction, with a result per
// recipient (see RecipientsError); groups of one message are delivered at the
// same time.
//
// Delivery to MX hosts (RFC 5321 §5.1): the MX records through Resolver,
// tried in preference order with equal preferences shuffled, every address of
// a host before the next host; the domain's own addresses when it has no MX;
// a null MX (RFC 7505) fails its recipients at once with 556 5.1.10. STARTTLS
// is used whenever offered and the certificate checked against the MX host
// name, the result logged. An MTA-STS policy (RFC 8461, when MTASTS is set)
// in enforce mode limits delivery to the MX hosts it names, over verified TLS;
// in testing mode a violation is only logged. A message submitted with
// REQUIRETLS (RFC 8689) goes only over verified TLS to servers that offer
// REQUIRETLS, passing it on, and to MX hosts only when an MTA-STS policy names
// them or DANE authenticates them (RFC 8689 §4.1). With a Resolver that reports
// DNSSEC status (resolver.SecureResolver, dns.dnssec), DANE (RFC 7672) applies
// to MX hosts with validated MX, address and TLSA records, and outranks
// MTA-STS: see transport_dane.go.
//
// Sessions are kept after a transaction and reused (see Transport's pool: keyed
// by address, TLS name and mode, source address, HELO name and credentials),
// with at most MaxConnections sessions carrying a transaction at once, and
// MaxPerDestination to one server address; a kept session that died meanwhile
// is replaced as often as needed, without deferring the message.
//
// A message with several groups is read into memory once so that each group
// can send it; a message with one group is streamed from the spool.
type Transport struct {
	// Resolver answers MX and address lookups (and MTA-STS TXT lookups);
	// required when any route delivers to MX hosts.
	Resolver resolver.Resolver
	// HeloName is the default EHLO name; "" means the host name.
	HeloName string

	Default    Route
	Identities map[string]Route      // by Envelope.Identity
	Domains    map[addr.Domain]Route // by recipient domain; overrides Identities

	// MXPort is the port of MX hosts; 0 means 25. Tests set another.
	MXPort int
	// Timeout bounds each dial and each command; 0 means smtpclient.DefaultTimeout.
	Timeout time.Duration
	// RootCAs verifies server certificates; nil means the system's roots.
	RootCAs *x509.CertPool
	// MTASTS, when set, applies the MTA-STS policies of recipient domains to
	// MX delivery.
	MTASTS *MTASTS
	// TLSRPT, when set, counts each new TLS session with an MX host (RFC 8460).
	TLSRPT *tlsrpt.Recorder

	// MaxConnections bounds the sessions carrying a transaction at once (0: 100);
	// MaxPerDestination bounds them per server address (0: 10); MaxIdle is
	// how many sessions are kept per pool key between messages (0:
	// DefaultWorkers, negative: none).
	MaxConnections    int
	MaxPerDestination int
	MaxIdle           int

	Logger *slog.Logger // default slog.Default()

	poolOnce sync.Once
	pool     *pool
}

// Close ends every kept session.
func (t *Transport) Close() {
	if p := t.sessions(); p != nil {
		p.closeIdle()
	}
}

func (t *Transport) sessions() *pool {
	t.poolOnce.Do(func() {
		t.pool = newPool(cmpOr(t.MaxConnections, 100), cmpOr(t.MaxPerDestination, 10), t.MaxIdle)
	})
	return t.pool
}

func (t *Transport) logger() *slog.Logger {
	if t.Logger != nil {
		return t.Logger
	}
	return slog.Default()
}

// routeGroup is the recipients of a message that share a route and, for MX
// delivery, a domain.
type routeGroup struct {
	route  Route
	domain string // the recipients' domain, or address literal (MX delivery); first recipient's for a smart host
	rcpts  []int  // indexes into Envelope.To
}

// RouteFor returns the route of a recipient of a message submitted by identity.
func (t *Transport) RouteFor(identity, rcpt string) Route {
	if a, err := addr.ParseAddress(rcpt); err == nil && a.Domain != "" {
		if r, ok := t.Domains[a.Domain]; ok {
			return r
		}
	}
	if r, ok := t.Identities[identity]; ok {
		return r
	}
	return t.Default
}

func (t *Transport) groups(env *Envelope) []*routeGroup {
	var groups []*routeGroup
	byKey := map[string]*routeGroup{}
	for i, rcpt := range env.To {
		rt := t.RouteFor(env.Identity, rcpt)
		dom := rcptDomain(rcpt)
		key := fmt.Sprintf("%s|%s|%p|%s|%s", rt.NextHop, rt.tlsMode(), rt.Auth, rt.HeloName, rt.SourceIP)
		if rt.NextHop == "" {
			key += "|" + dom
		}
		g := byKey[key]
		if g == nil {
			g = &routeGroup{route: rt, domain: dom}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.rcpts = append(g.rcpts, i)
	}
	return groups
}

// rcptDomain returns the normalised domain of rcpt, its address literal, or
// its lower-cased domain part when it does not parse.
func rcptDomain(rcpt string) string {
	if a, err := addr.ParseAddress(rcpt); err == nil {
		if a.AddressLiteral != "" {
			return a.AddressLiteral
		}
		return string(a.Domain)
	}
	return domainOf(rcpt)
}

// Deliver delivers env to each recipient's route; see Transport.
func (t *Transport) Deliver(ctx context.Context, env *Envelope, msg io.Reader) error {
	groups := t.groups(env)
	if len(groups) == 0 {
		return nil
	}
	bodies := func() io.Reader { return msg }
	if len(groups) > 1 {
		data, err := io.ReadAll(msg)
		if err != nil {
			return fmt.Errorf("relay: read queued message %s: %w", env.ID, err)
		}
		bodies = func() io.Reader { return bytes.NewReader(data) }
	}
	results := make([]groupResult, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = t.deliverGroup(ctx, env, g, bodies())
		}()
	}
	wg.Wait()

	var accepted []string
	var failed []RecipientError
	for _, r := range results {
		accepted = append(accepted, r.accepted...)
		failed = append(failed, r.failed...)
	}
	if len(failed) == 0 {
		return nil
	}
	rerr := &RecipientsError{Accepted: accepted, Failed: failed}
	if len(accepted) == 0 {
		permanent := true
		for _, f := range failed {
			permanent = permanent && IsPermanent(f.Err)
		}
		if permanent {
			return &PermanentError{Err: rerr}
		}
	}
	return rerr
}

// groupResult is the outcome of one group: each recipient accepted or failed.
type groupResult struct {
	accepted []string
	failed   []RecipientError
}

// failAll fails every recipient of g with err.
func failAll(env *Envelope, g *routeGroup, err error) groupResult {
	var r groupResult
	for _, i := range g.rcpts {
		r.failed = append(r.failed, RecipientError{Rcpt: env.To[i], Err: err})
	}
	return r
}

// destination is one server address to try, with what its TLS must be.
type destination struct {
	host    string // name: TLS server name and log
	ip      net.IP // nil: dial host by name (a smart host)
	port    int
	mode    TLSMode
	sts     *STSPolicy // the domain's MTA-STS policy, nil if none
	needTLS string     // why verified TLS is needed ("" if not)
	dane    *daneHost  // the MX host's DANE status (RFC 7672); nil for a smart host
	rt      Route
}

func (d destination) addr() string {
	h := d.host
	if d.ip != nil {
		h = d.ip.String()
	}
	return net.JoinHostPort(h, fmt.Sprint(d.port))
}

// deliverGroup delivers msg to the recipients of g.
func (t *Transport) deliverGroup(ctx context.Context, env *Envelope, g *routeGroup, msg io.Reader) groupResult {
	// Refuse an unsendable envelope before looking anything up: the whole group
	// for a bad reverse-path, each recipient that cannot be written on its own.
	hop := Hop{Domain: g.domain}
	for _, i := range g.rcpts {
		hop.Rcpts = append(hop.Rcpts, env.To[i])
	}
	defer func() { ReportHop(ctx, hop) }()
	tx := transaction(env)
	if _, err := smtpclient.ReversePath(tx.From); err != nil {
		return failAll(env, g, &PermanentError{Err: err})
	}
	var unsendable []RecipientError
	all := tx.Rcpts
	tx.Rcpts = make([]smtpclient.Recipient, 0, len(g.rcpts))
	rcpts := make([]string, 0, len(g.rcpts))
	sendable := &routeGroup{route: g.route, domain: g.domain}
	for _, i := range g.rcpts {
		if _, err := smtpclient.ForwardPath(all[i].Addr); err != nil {
			unsendable = append(unsendable, RecipientError{Rcpt: env.To[i], Err: &PermanentError{Err: err}})
			continue
		}
		tx.Rcpts = append(tx.Rcpts, all[i])
		rcpts = append(rcpts, env.To[i])
		sendable.rcpts = append(sendable.rcpts, i)
	}
	if len(rcpts) == 0 {
		return groupResult{failed: unsendable}
	}
	r := t.deliverSendable(ctx, env, sendable, tx, rcpts, msg, &hop)
	r.failed = append(r.failed, unsendable...)
	return r
}

// deliverSendable delivers msg to the recipients of g (rcpts, in tx), trying
// its destinations in order.
func (t *Transport) deliverSendable(ctx context.Context, env *Envelope, g *routeGroup, tx *smtpclient.Transaction, rcpts []string, msg io.Reader, hop *Hop) groupResult {
	dests, err := t.destinations(ctx, env, g)
	if err != nil {
		return failAll(env, g, err)
	}
	var lastErr, noUTF8 error
	body := &readCounter{r: msg}
	for _, d := range dests {
		res, err := t.tryDestination(ctx, env, d, tx, body, hop)
		if err == nil {
			return t.results(rcpts, res)
		}
		if errors.Is(err, smtpclient.ErrNoSMTPUTF8) {
			// This server cannot take a message that needs SMTPUTF8 (nothing was
			// sent); another MX host may. If none can, the recipients fail with
			// 5.6.7, never a downgrade (RFC 6531 §3.5).
			noUTF8 = err
			continue
		}
		var perm *PermanentError
		if errors.As(err, &perm) {
			return failAll(env, g, err)
		}
		lastErr = err
		// Once some of the message was read, the rest cannot go to another
		// server: the next attempt reads it again from the spool.
		if ctx.Err() != nil || errors.Is(err, errMessageSent) || body.n > 0 {
			break
		}
	}
	if lastErr == nil && noUTF8 != nil {
		return failAll(env, g, noUTF8)
	}
	if lastErr == nil {
		lastErr = errors.New("no server to deliver to")
	}
	return failAll(env, g, lastErr)
}

// readCounter counts what was read of a message.
type readCounter struct {
	r io.Reader
	n int64
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// results turns a transaction's per-recipient replies into a groupResult.
func (t *Transport) results(rcpts []string, res *smtpclient.Result) groupResult {
	var r groupResult
	for i, rerr := range res.Rcpts {
		var re *smtpclient.ReplyError
		switch {
		case rerr == nil:
			r.accepted = append(r.accepted, rcpts[i])
		case errors.As(rerr, &re) && re.Permanent():
			r.failed = append(r.failed, RecipientError{Rcpt: rcpts[i], Err: &PermanentError{Err: rerr}})
		default:
			r.failed = append(r.failed, RecipientError{Rcpt: rcpts[i], Err: rerr})
		}
	}
	return r
}

// errMessageSent marks a failure after the whole message was written: the
// server may have taken it, so no other server is tried in this attempt.
var errMessageSent = errors.New("the connection failed while the message was being sent")

// tryDestination runs tx on a session with d: a kept one or a new one. A nil
// error means the transaction ran to its end (res has the per-recipient
// replies). A *PermanentError fails the group; any other error means trying the
// next destination.
func (t *Transport) tryDestination(ctx context.Context, env *Envelope, d destination, tx *smtpclient.Transaction, msg io.Reader, hop *Hop) (*smtpclient.Result, error) {
	p := t.sessions()
	release, err := p.acquire(ctx, d.addr())
	if err != nil {
		return nil, err
	}
	defer release()
	key := t.poolKey(env, d)
	hop.Host, hop.IP, hop.SourceIP, hop.TLS, hop.Reply, hop.DANE = d.host, "", "", nil, nil, d.dane.before()
	if d.ip != nil {
		hop.IP = d.ip.String()
	}
	fresh := false // a new session, even when one is kept
	for {
		var c *smtpclient.Client
		reused := false
		if !fresh {
			c, reused = p.take(key)
		}
		if c == nil {
			var err error
			c, err = t.connect(ctx, env, d)
			if err != nil {
				hop.DANE = d.dane.outcome(err)
				t.reportTLS(hop.Domain, d, nil, err)
				return nil, err
			}
		}
		if ip, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
			hop.IP = ip
		}
		if ip, _, err := net.SplitHostPort(c.LocalAddr().String()); err == nil {
			hop.SourceIP = ip
		}
		if info, ok := c.TLS(); ok {
			hop.TLS = &info
		} else {
			hop.TLS = nil
		}
		err := t.checkTLS(env, d, c)
		hop.DANE = d.dane.outcome(err)
		if !reused {
			t.reportTLS(hop.Domain, d, c, err)
		}
		if err != nil {
			if reused {
				p.put(key, c) // fine for other messages
				fresh = true
				continue
			}
			c.Quit()
			return nil, err
		}
		res, err := t.send(ctx, c, tx, msg)
		switch {
		case errors.Is(err, smtpclient.ErrStaleSession) && reused:
			continue // it died before it took anything: the next kept one, or a new one
		case err == nil:
			hop.Reply = res.Data
			_, dsn := c.Extension("DSN")
			hop.NoDSN = !dsn
			if c.Reusable() {
				p.put(key, c)
			} else {
				c.Close()
			}
			return res, nil
		}
		if c.Reusable() { // refused before anything was written
			p.put(key, c)
		} else {
			c.Close()
		}
		return nil, t.transactionError(err)
	}
}

// send runs tx on c, bounded by ctx.
func (t *Transport) send(ctx context.Context, c *smtpclient.Client, tx *smtpclient.Transaction, msg io.Reader) (*smtpclient.Result, error) {
	stop := c.CloseOnDone(ctx)
	defer stop() // the delivery's context no longer governs the session
	return c.Send(tx, msg)
}

// transactionError classifies a failed transaction: permanent when the server
// refused it with 5yz or it cannot be sent anywhere; errMessageSent when the
// connection failed during or after the content; otherwise worth another server.
func (t *Transport) transactionError(err error) error {
	var re *smtpclient.ReplyError
	var ue *smtpclient.UnsendableError
	switch {
	case errors.As(err, &ue):
		return &PermanentError{Err: err}
	case errors.As(err, &re) && re.Permanent():
		return &PermanentError{Err: err}
	case errors.As(err, &re):
		return err
	case errors.Is(err, smtpclient.ErrRequireTLS):
		return err
	case errors.Is(err, smtpclient.ErrInDoubt):
		// The server may have taken the message: no other server now.
		return fmt.Errorf("%w: %w", errMessageSent, err)
	}
	return err
}

// poolKey says which kept sessions may carry a message to d.
func (t *Transport) poolKey(env *Envelope, d destination) poolKey {
	rt := d.rt
	k := poolKey{addr: d.addr(), server: d.host, mode: d.mode, helo: t.helo(rt), auth: rt.Auth}
	if rt.SourceIP != nil {
		k.source = rt.SourceIP.String()
	}
	return k
}

func (t *Transport) helo(rt Route) string {
	if rt.HeloName != "" {
		return rt.HeloName
	}
	return t.HeloName
}

// tlsConfig is the TLS configuration for a server named host: any certificate
// is accepted by the handshake, and the session's TLSInfo says whether it
// verified for host against RootCAs; checkTLS decides what that means.
func (t *Transport) tlsConfig(host string) *tls.Config {
	return &tls.Config{ServerName: host, RootCAs: t.RootCAs, InsecureSkipVerify: true}
}

// connect opens a new session with d: dial, TLS as d's mode says (falling back
// to plain text when an opportunistic STARTTLS fails and nothing needs TLS),
// and AUTH when the route has credentials.
func (t *Transport) connect(ctx context.Context, env *Envelope, d destination) (*smtpclient.Client, error) {
	rt := d.rt
	dialer := smtpclient.Dialer{HeloName: t.helo(rt), Timeout: t.Timeout}
	if rt.SourceIP != nil {
		dialer.LocalAddr = &net.TCPAddr{IP: rt.SourceIP}
	}
	if d.mode == TLSImplicit {
		dialer.ImplicitTLS = t.tlsConfig(d.host)
	}
	plain := false
	for {
		c, err := dialer.Dial(ctx, d.addr())
		if err != nil {
			return nil, err
		}
		if d.mode != TLSImplicit && !plain {
			if _, offered := c.Extension("STARTTLS"); offered {
				stop := c.CloseOnDone(ctx)
				err := c.StartTLS(t.tlsConfig(d.serverName()))
				stop()
				if err != nil {
					if d.mode == TLSOpportunistic && d.needTLS == "" && !d.dane.requiresTLS() && !env.RequireTLS && ctx.Err() == nil {
						// RFC 7435 §3: opportunistic TLS falls back to plain text.
						t.logger().Info("STARTTLS failed; retrying without TLS", "queue_id", env.ID, "host", d.host, "addr", d.addr(), "error", err)
						plain = true
						continue
					}
					return nil, handshakeError{err}
				}
			}
		}
		if rt.Auth != nil {
			if err := t.auth(ctx, c, rt.Auth); err != nil {
				c.Quit()
				return nil, err
			}
		}
		return c, nil
	}
}

// checkTLS decides whether session c may carry env to d: the TLS the route's
// mode, the message (REQUIRETLS) and the domain's MTA-STS policy need. A
// testing-mode MTA-STS policy only logs what enforce would refuse.
//
// DANE (RFC 7672) comes first: an MX host with validated TLSA records needs
// TLS, and with usable ones a certificate matching them, which then stands for
// a verified one (DANE outranks MTA-STS; RFC 8689 §4.1 accepts it for REQUIRETLS).
func (t *Transport) checkTLS(env *Envelope, d destination, c *smtpclient.Client) error {
	info, hasTLS := c.TLS()
	verified := hasTLS && info.Verified
	if d.dane.requiresTLS() {
		ok, err := t.checkDANE(d, c)
		if err != nil || ok {
			return err
		}
	}
	describe := func() string {
		switch {
		case !hasTLS:
			return "no TLS (STARTTLS not offered)"
		case !info.Verified:
			return fmt.Sprintf("the certificate does not verify for %s: %v", info.ServerName, info.VerifyError)
		}
		return ""
	}
	switch {
	case (d.mode == TLSRequired || d.mode == TLSImplicit) && !verified:
		return fmt.Errorf("TLS %s for %s: %s", d.mode, d.host, describe())
	case d.needTLS != "" && !verified:
		return fmt.Errorf("%s needs verified TLS with %s: %s", d.needTLS, d.host, describe())
	case env.RequireTLS && !verified:
		return fmt.Errorf("REQUIRETLS (RFC 8689 §4.1) needs verified TLS with %s: %s", d.host, describe())
	}
	if d.sts != nil && d.sts.Mode == STSModeTesting && !verified {
		t.logger().Warn("MTA-STS testing policy not met (delivering anyway)", "queue_id", env.ID,
			"host", d.host, "policy_id", d.sts.ID, "problem", describe())
	}
	return nil
}

// destinations lists the servers to try for g, in order: its smart host, or
// the MX hosts of its domain with each host's addresses.
func (t *Transport) destinations(ctx context.Context, env *Envelope, g *routeGroup) ([]destination, error) {
	rt := g.route
	if rt.NextHop != "" {
		host, port, err := splitHostPort(rt.NextHop)
		if err != nil {
			return nil, &PermanentError{Err: err}
		}
		d := destination{host: host, port: port, mode: rt.tlsMode(), rt: rt}
		if ip := net.ParseIP(host); ip != nil {
			d.ip = ip
		}
		return []destination{d}, nil
	}
	return t.mxDestinations(ctx, env, g)
}

func splitHostPort(hp string) (string, int, error) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil || host == "" {
		return "", 0, fmt.Errorf("next hop %q: want host:port", hp)
	}
	var n int
	if _, err := fmt.Sscan(port, &n); err != nil || n <= 0 || n > 65535 {
		return "", 0, fmt.Errorf("next hop %q: bad port", hp)
	}
	return host, n, nil
}
