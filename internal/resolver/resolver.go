package resolver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"sealgate/internal/resolver/internal/zonedb"
)

// Resolver answers the DNS questions sealgate asks. Names are absolute (a trailing dot is
// optional) and compared case-insensitively. A name that does not exist or has no record of the
// type gives an error for which IsNotFound is true, never an empty result without an error.
type Resolver interface {
	// LookupTXT returns one string per TXT record: the record's character-strings joined with
	// nothing between them (RFC 6376 §3.6.2.2, RFC 7208 §3.3). Separate records are kept apart.
	LookupTXT(ctx context.Context, name string) ([]string, error)
	// LookupMX returns the MX records, sorted by preference (lowest first). Hosts are FQDNs with
	// a trailing dot; a null MX (RFC 7505) is returned as host ".".
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	// LookupIP returns the A and AAAA addresses of name.
	LookupIP(ctx context.Context, name string) ([]net.IP, error)
	// LookupAddr returns the PTR names of an IPv4 or IPv6 address, as FQDNs with a trailing dot.
	LookupAddr(ctx context.Context, ip string) ([]string, error)
}

// Config chooses where a Resolver gets its answers.
type Config struct {
	// Server is the recursive server as "host:port" (":53" is assumed without a port).
	// Empty means the nameservers of /etc/resolv.conf, tried in order.
	Server string
	// ZoneFile is an RFC 1035 master file to answer from instead of the network: only its
	// records exist. Names in it must be absolute or follow an $ORIGIN line. Mutually exclusive
	// with Server.
	ZoneFile string
	// Timeout bounds each query to one server (default 5s). A deadline on the context passed to
	// a lookup bounds the whole lookup.
	Timeout time.Duration
	// DNSSEC marks the recursive server(s) as validating (RFC 4035 §3.2): queries carry the DO
	// bit and the AD bit of their answers is believed (RFC 6840 §5.7), so that LookupSecure can
	// call an answer secure. Without it every answer is insecure. The path to the server must
	// be trusted (loopback or the same host): AD is not signed. Not with ZoneFile.
	DNSSEC bool
}

// DefaultTimeout is the per-query timeout when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// ednsBufferSize is the EDNS0 UDP payload size we advertise: large enough for a DKIM record
// with an RSA-2048 or RSA-3072 key, small enough to avoid IP fragmentation (DNS flag day 2020).
const ednsBufferSize = 1232

// maxCNAMEHops bounds the CNAME chain followed inside one answer.
const maxCNAMEHops = 16

// resolvConf is where the system nameservers are read from.
const resolvConf = "/etc/resolv.conf"

// New returns a Resolver for cfg: answering from cfg.ZoneFile if set, otherwise asking
// cfg.Server or the servers of /etc/resolv.conf.
func New(cfg Config) (Resolver, error) {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	switch {
	case cfg.Server != "" && cfg.ZoneFile != "":
		return nil, errors.New("resolver: a DNS server and a zone file are mutually exclusive; give one")
	case cfg.DNSSEC && cfg.ZoneFile != "":
		return nil, errors.New("resolver: DNSSEC needs a validating DNS server; a zone file is never validated")
	case cfg.ZoneFile != "":
		f, err := os.Open(cfg.ZoneFile)
		if err != nil {
			return nil, fmt.Errorf("resolver: zone file: %w", err)
		}
		defer f.Close()
		return NewZoneResolver(f, "", cfg.ZoneFile)
	case cfg.Server != "":
		server, err := serverAddr(cfg.Server)
		if err != nil {
			return nil, err
		}
		return newNetResolver([]string{server}, timeout, cfg.DNSSEC), nil
	}
	cc, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("resolver: read %s: %w", resolvConf, err)
	}
	if len(cc.Servers) == 0 {
		return nil, fmt.Errorf("resolver: %s lists no nameserver", resolvConf)
	}
	var servers []string
	for _, s := range cc.Servers {
		servers = append(servers, net.JoinHostPort(s, cc.Port))
	}
	return newNetResolver(servers, timeout, cfg.DNSSEC), nil
}

// serverAddr checks a "host:port" server address, adding port 53 when there is none.
func serverAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// "192.0.2.1", "::1", "[::1]" or "dns.example": no port given.
		host, port = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), "53"
	}
	if host == "" || strings.ContainsAny(host, " /") {
		return "", fmt.Errorf("resolver: DNS server %q is not HOST:PORT", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("resolver: DNS server %q: bad port %q", s, port)
	}
	return net.JoinHostPort(host, port), nil
}

// NewZoneResolver returns a Resolver answering from the master file read from r, without using
// the network. origin is the initial $ORIGIN ("" for none); filename names the file in syntax
// errors, which read "filename:line:column: message". $INCLUDE is refused.
func NewZoneResolver(r io.Reader, origin, filename string) (Resolver, error) {
	db, err := zonedb.Parse(r, origin, filename)
	if err != nil {
		return nil, fmt.Errorf("resolver: zone file %w", err)
	}
	return &lookups{q: zoneQuerier{db: db}}, nil
}

// querier asks one question and returns the whole response; the lookups built on it
// interpret rcodes and follow CNAMEs the same way for the network and for zone files.
type querier interface {
	query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error)
}

type zoneQuerier struct{ db *zonedb.DB }

func (z zoneQuerier) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Response = true
	m.Answer, m.Rcode = z.db.Lookup(name, qtype)
	return m, nil
}

// netQuerier asks recursive servers over UDP, then TCP when the answer is truncated.
type netQuerier struct {
	servers  []string
	timeout  time.Duration
	dnssec   bool // ask with DO and AD set (RFC 6840 §5.7); see Config.DNSSEC
	udp, tcp *dns.Client
}

func newNetResolver(servers []string, timeout time.Duration, dnssec bool) Resolver {
	return &lookups{dnssec: dnssec, q: &netQuerier{
		servers: servers,
		timeout: timeout,
		dnssec:  dnssec,
		udp:     &dns.Client{Net: "udp", Timeout: timeout},
		tcp:     &dns.Client{Net: "tcp", Timeout: timeout},
	}}
}

// query tries each server in turn until one gives an answer (NOERROR or NXDOMAIN). Failures of
// every server give a temporary error naming the last one.
func (n *netQuerier) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.SetEdns0(ednsBufferSize, n.dnssec)
	// RFC 6840 §5.7: AD in a query asks for it in the answer, even without DO.
	m.AuthenticatedData = n.dnssec

	var lastErr error
	for _, server := range n.servers {
		if err := ctx.Err(); err != nil {
			return nil, temporary(name, qtype, err)
		}
		resp, err := n.exchange(ctx, m, server)
		if err == nil && resp.Rcode == dns.RcodeFormatError && resp.IsEdns0() == nil {
			// An old server that does not understand EDNS0 (RFC 6891 §7): ask again without it.
			plain := m.Copy()
			plain.Extra = nil
			resp, err = n.exchange(ctx, plain, server)
		}
		if err != nil {
			lastErr = err
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			return resp, nil
		case dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeNotImplemented, dns.RcodeFormatError:
			lastErr = fmt.Errorf("%s from %s", rcodeText(resp.Rcode), server)
		default:
			return nil, permanent(name, qtype, fmt.Errorf("unexpected %s from %s", rcodeText(resp.Rcode), server))
		}
	}
	return nil, temporary(name, qtype, lastErr)
}

// exchange asks one server, over TCP too if the UDP answer is truncated, and checks that the
// response answers the question.
func (n *netQuerier) exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	qctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	resp, _, err := n.udp.ExchangeContext(qctx, m, server)
	if err == nil && resp.Truncated {
		// RFC 7766 §5: a truncated UDP answer is asked again over TCP, with a fresh timeout.
		tctx, tcancel := context.WithTimeout(ctx, n.timeout)
		defer tcancel()
		resp, _, err = n.tcp.ExchangeContext(tctx, m, server)
		if err == nil && resp.Truncated {
			return nil, fmt.Errorf("answer from %s truncated even over TCP", server)
		}
	}
	if err != nil {
		var de *dns.Error
		if errors.As(err, &de) && !errors.Is(err, dns.ErrId) {
			return nil, fmt.Errorf("malformed answer from %s: %w", server, err)
		}
		return nil, fmt.Errorf("query %s: %w", server, err)
	}
	q := m.Question[0]
	if !resp.Response || len(resp.Question) != 1 || resp.Question[0].Qtype != q.Qtype ||
		!strings.EqualFold(resp.Question[0].Name, q.Name) {
		return nil, fmt.Errorf("malformed answer from %s: it does not answer the question asked", server)
	}
	return resp, nil
}

func rcodeText(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return "rcode " + strconv.Itoa(rcode)
}

func typeString(qtype uint16) string {
	if s, ok := dns.TypeToString[qtype]; ok {
		return s
	}
	return "TYPE" + strconv.Itoa(int(qtype))
}

// lookups implements Resolver on top of a querier. dnssec says whether the AD bit of answers
// is believed (Config.DNSSEC).
type lookups struct {
	q      querier
	dnssec bool
}

// normalize makes name a lower-case FQDN and checks its syntax.
func normalize(name string, qtype uint16) (string, error) {
	fqdn := strings.ToLower(dns.Fqdn(strings.TrimSpace(name)))
	if _, ok := dns.IsDomainName(fqdn); !ok || fqdn == "." || strings.ContainsAny(fqdn, " \t\r\n") {
		return "", permanent(fqdn, qtype, fmt.Errorf("invalid domain name %q", name))
	}
	return fqdn, nil
}

// records asks for qtype at name and returns the records of that type at the end of the CNAME
// chain in the answer (RFC 1034 §3.6.2).
func (l *lookups) records(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	a, err := l.answer(ctx, name, qtype)
	return a.Records, err
}

// answer is records with the name at the end of the CNAME chain and the answer's DNSSEC
// status; Secure is set on not-found errors too (an authenticated denial).
func (l *lookups) answer(ctx context.Context, name string, qtype uint16) (SecureAnswer, error) {
	fqdn, err := normalize(name, qtype)
	if err != nil {
		return SecureAnswer{}, err
	}
	resp, err := l.q.query(ctx, fqdn, qtype)
	if err != nil {
		return SecureAnswer{}, err
	}
	if resp.Rcode == dns.RcodeServerFailure {
		return SecureAnswer{}, temporary(fqdn, qtype, errors.New(rcodeText(resp.Rcode)))
	}
	secure := l.dnssec && resp.AuthenticatedData
	target := fqdn
	for hop := 0; ; hop++ {
		if hop > maxCNAMEHops {
			return SecureAnswer{}, permanent(fqdn, qtype, fmt.Errorf("CNAME chain longer than %d (a loop?)", maxCNAMEHops))
		}
		var found []dns.RR
		next := ""
		for _, rr := range resp.Answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, target) {
				continue
			}
			if h.Rrtype == qtype {
				found = append(found, rr)
			} else if c, ok := rr.(*dns.CNAME); ok && next == "" {
				next = c.Target
			}
		}
		if len(found) > 0 {
			return SecureAnswer{Records: found, Name: target, Secure: secure}, nil
		}
		if next == "" {
			break
		}
		target = strings.ToLower(next)
	}
	return SecureAnswer{Name: target, Secure: secure}, notFound(fqdn, qtype, resp.Rcode == dns.RcodeNameError)
}

// LookupTXT implements Resolver.
func (l *lookups) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := l.records(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		var b strings.Builder
		for _, s := range rr.(*dns.TXT).Txt {
			// miekg/dns keeps character-strings in presentation form; undo its escapes.
			b.WriteString(unescapeTXT(s))
		}
		out = append(out, b.String())
	}
	return out, nil
}

// LookupMX implements Resolver.
func (l *lookups) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := l.records(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: strings.ToLower(mx.Mx), Pref: mx.Preference})
	}
	slices.SortStableFunc(out, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	return out, nil
}

// LookupIP implements Resolver. A and AAAA are asked in parallel; a temporary failure of either
// fails the lookup, so that a caller never acts on half the addresses.
func (l *lookups) LookupIP(ctx context.Context, name string) ([]net.IP, error) {
	var (
		wg            sync.WaitGroup
		aRRs, aaaaRRs []dns.RR
		aErr, aaaaErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		aaaaRRs, aaaaErr = l.records(ctx, name, dns.TypeAAAA)
	}()
	aRRs, aErr = l.records(ctx, name, dns.TypeA)
	wg.Wait()
	for _, err := range []error{aErr, aaaaErr} {
		if err != nil && !IsNotFound(err) {
			return nil, err
		}
	}
	var ips []net.IP
	for _, rr := range aRRs {
		ips = append(ips, rr.(*dns.A).A)
	}
	for _, rr := range aaaaRRs {
		ips = append(ips, rr.(*dns.AAAA).AAAA)
	}
	if len(ips) == 0 {
		var e *Error
		errors.As(aErr, &e)
		nx := errors.Is(aErr, ErrNXDOMAIN) || errors.Is(aaaaErr, ErrNXDOMAIN)
		nf := notFound(e.Name, dns.TypeA, nx)
		nf.Type = "A/AAAA"
		return nil, nf
	}
	return ips, nil
}

// LookupAddr implements Resolver.
func (l *lookups) LookupAddr(ctx context.Context, ip string) ([]string, error) {
	arpa, err := dns.ReverseAddr(ip)
	if err != nil || net.ParseIP(ip) == nil {
		return nil, permanent(ip, dns.TypePTR, fmt.Errorf("%q is not an IP address", ip))
	}
	rrs, err := l.records(ctx, arpa, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.ToLower(rr.(*dns.PTR).Ptr))
	}
	return out, nil
}

// unescapeTXT turns a character-string from miekg/dns's presentation form (\" \\ \DDD) back into
// its octets.
func unescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b = append(b, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			if v, err := strconv.Atoi(s[i+1 : i+4]); err == nil && v <= 255 {
				b = append(b, byte(v))
				i += 3
				continue
			}
		}
		i++
		b = append(b, s[i])
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
