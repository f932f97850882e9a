package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"sealgate/internal/resolver"
)

// MTA-STS policy modes (RFC 8461 §3.2).
const (
	STSModeEnforce = "enforce"
	STSModeTesting = "testing"
	STSModeNone    = "none"
)

// Limits of MTA-STS policy fetches.
const (
	// maxSTSPolicySize caps a policy body; RFC 8461 §3.3 lets senders limit it
	// and suggests 64 KiB.
	maxSTSPolicySize = 64 << 10
	// maxSTSMaxAge is the largest max_age allowed (RFC 8461 §3.2: about a year).
	maxSTSMaxAge = 31557600
	// DefaultSTSFetchTimeout bounds one policy fetch (RFC 8461 §3.3 suggests a
	// minute at most; a fetch is on the delivery path).
	DefaultSTSFetchTimeout = 30 * time.Second
)

// STSPolicy is a domain's MTA-STS policy (RFC 8461 §3.2).
type STSPolicy struct {
	ID      string // the id of the TXT record it was fetched for
	Mode    string // STSModeEnforce, STSModeTesting or STSModeNone
	MX      []string
	MaxAge  time.Duration
	Fetched time.Time
}

// MatchesMX reports whether host is one of the policy's mx patterns (RFC 8461
// §4.1): equal ignoring case, or under a "*." pattern that stands for exactly
// one leftmost label.
func (p *STSPolicy) MatchesMX(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		pat = strings.ToLower(strings.TrimSuffix(pat, "."))
		if suffix, ok := strings.CutPrefix(pat, "*."); ok {
			label, rest, found := strings.Cut(host, ".")
			if found && label != "" && rest == suffix {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// ParseSTSPolicy parses a policy body (RFC 8461 §3.2): "key: value" lines,
// version STSv1, a mode, max_age in seconds and, unless the mode is none, at
// least one mx pattern. Unknown keys are ignored.
func ParseSTSPolicy(body string) (*STSPolicy, error) {
	p := &STSPolicy{}
	seen := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("mta-sts policy: line %q is not key: value", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k != "mx" && seen[k] {
			continue // the first of a repeated key counts
		}
		seen[k] = true
		switch k {
		case "version":
			if v != "STSv1" {
				return nil, fmt.Errorf("mta-sts policy: version %q, want STSv1", v)
			}
		case "mode":
			switch v {
			case STSModeEnforce, STSModeTesting, STSModeNone:
				p.Mode = v
			default:
				return nil, fmt.Errorf("mta-sts policy: mode %q, want enforce, testing or none", v)
			}
		case "max_age":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || n > maxSTSMaxAge || strings.Trim(v, "0123456789") != "" {
				return nil, fmt.Errorf("mta-sts policy: max_age %q, want 0 to %d seconds", v, maxSTSMaxAge)
			}
			p.MaxAge = time.Duration(n) * time.Second
		case "mx":
			if v == "" {
				return nil, errors.New("mta-sts policy: empty mx")
			}
			p.MX = append(p.MX, v)
		}
	}
	switch {
	case !seen["version"]:
		return nil, errors.New("mta-sts policy: no version")
	case p.Mode == "":
		return nil, errors.New("mta-sts policy: no mode")
	case !seen["max_age"]:
		return nil, errors.New("mta-sts policy: no max_age")
	case p.Mode != STSModeNone && len(p.MX) == 0:
		return nil, errors.New("mta-sts policy: no mx")
	}
	return p, nil
}

// parseSTSRecord returns the id of an MTA-STS TXT record (RFC 8461 §3.1), and
// false when txt is not one (it does not start with v=STSv1).
func parseSTSRecord(txt string) (id string, ok bool, err error) {
	fields := strings.Split(txt, ";")
	if strings.TrimSpace(fields[0]) != "v=STSv1" {
		return "", false, nil
	}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		if k == "id" {
			if v == "" || len(v) > 32 || strings.Trim(v, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
				return "", true, fmt.Errorf("mta-sts record: id %q, want 1 to 32 letters and digits", v)
			}
			id = v
		}
	}
	if id == "" {
		return "", true, errors.New("mta-sts record: no id")
	}
	return id, true, nil
}

// MTASTS finds the MTA-STS policies of recipient domains (RFC 8461): the TXT
// record at _mta-sts.<domain>, then the policy over HTTPS from
// https://mta-sts.<domain>/.well-known/mta-sts.txt (status 200 only, no
// redirects, text/plain, at most 64 KiB, a timeout), cached until its max_age.
// The cache is in memory: after a restart policies are fetched again (RFC 8461
// §10.3 notes what a first fetch exposes to an active attacker).
//
// Without a usable policy (none published, a fetch or lookup failure and
// nothing cached) Policy returns nil and delivery goes on as for a domain
// without MTA-STS (RFC 8461 §5.1).
type MTASTS struct {
	Resolver resolver.Resolver
	// RootCAs verifies the policy servers' certificates; nil means the system's.
	RootCAs *x509.CertPool
	// DialAddr, when set, is the host:port every fetch connects to whatever the
	// policy host (tests); the certificate is still checked for the policy host.
	DialAddr string
	// Timeout bounds one fetch; 0 means DefaultSTSFetchTimeout.
	Timeout time.Duration
	Logger  *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	once   sync.Once
	client *http.Client
	mu     sync.Mutex
	cache  map[string]*STSPolicy
	// failed holds, per domain, when a failed fetch may be tried again, so that
	// a policy host that does not answer delays one message, not every one.
	failed map[string]time.Time
}

// stsRetryAfterFailure is how long a failed policy fetch is not repeated.
const stsRetryAfterFailure = 5 * time.Minute

func (m *MTASTS) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *MTASTS) logger() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.Default()
}

func (m *MTASTS) httpClient() *http.Client {
	m.once.Do(func() {
		tr := &http.Transport{
			TLSClientConfig:       &tls.Config{RootCAs: m.RootCAs},
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 20 * time.Second,
			DisableKeepAlives:     true,
			Proxy:                 nil,
		}
		if m.DialAddr != "" {
			var d net.Dialer
			tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, m.DialAddr)
			}
		}
		m.client = &http.Client{
			Transport: tr,
			Timeout:   cmpOr(m.Timeout, DefaultSTSFetchTimeout),
			// RFC 8461 §3.3: redirects must not be followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	})
	return m.client
}

// Policy returns domain's policy, fetched or cached; nil when there is none to
// apply.
func (m *MTASTS) Policy(ctx context.Context, domain string) *STSPolicy {
	domain = strings.ToLower(domain)
	now := m.now()
	m.mu.Lock()
	cached := m.cache[domain]
	m.mu.Unlock()
	if cached != nil && !now.Before(cached.Fetched.Add(cached.MaxAge)) {
		cached = nil // expired
	}
	log := m.logger().With("domain", domain)

	id, err := m.recordID(ctx, domain)
	switch {
	case err != nil:
		// RFC 8461 §5.1: without a record, or when its lookup fails, an
		// unexpired cached policy still applies.
		if !resolver.IsNotFound(err) {
			log.Warn("MTA-STS: TXT lookup failed", "error", err)
		}
		return cached
	case cached != nil && cached.ID == id:
		return cached
	}
	m.mu.Lock()
	retry, failedBefore := m.failed[domain]
	m.mu.Unlock()
	if failedBefore && now.Before(retry) {
		return cached
	}
	p, err := m.fetch(ctx, domain)
	if err != nil {
		log.Warn("MTA-STS: policy fetch failed", "policy_id", id, "error", err, "using_cached", cached != nil,
			"retry_after", stsRetryAfterFailure)
		m.mu.Lock()
		if m.failed == nil {
			m.failed = map[string]time.Time{}
		}
		m.failed[domain] = now.Add(stsRetryAfterFailure)
		m.mu.Unlock()
		return cached
	}
	p.ID, p.Fetched = id, now
	m.mu.Lock()
	if m.cache == nil {
		m.cache = map[string]*STSPolicy{}
	}
	m.cache[domain] = p
	delete(m.failed, domain)
	m.mu.Unlock()
	log.Info("MTA-STS policy fetched", "policy_id", id, "mode", p.Mode, "mx", strings.Join(p.MX, ","), "max_age", p.MaxAge)
	if p.Mode == STSModeNone {
		return nil
	}
	return p
}

// recordID looks up _mta-sts.<domain> and returns the id of its one STSv1
// record; several such records count as none (RFC 8461 §3.1).
func (m *MTASTS) recordID(ctx context.Context, domain string) (string, error) {
	txts, err := m.Resolver.LookupTXT(ctx, "_mta-sts."+domain)
	if err != nil {
		return "", err
	}
	var ids []string
	for _, txt := range txts {
		id, ok, err := parseSTSRecord(txt)
		if err != nil {
			return "", err
		}
		if ok {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		return "", fmt.Errorf("_mta-sts.%s: %d STSv1 records, want exactly 1", domain, len(ids))
	}
	return ids[0], nil
}

// fetch gets and parses the policy of domain.
func (m *MTASTS) fetch(ctx context.Context, domain string) (*STSPolicy, error) {
	url := "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := m.httpClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %s (only 200 counts; redirects are not followed)", url, resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("GET %s: content type %q, want text/plain (RFC 8461 §3.2)", url, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSTSPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if len(body) > maxSTSPolicySize {
		return nil, fmt.Errorf("GET %s: policy larger than %d bytes", url, maxSTSPolicySize)
	}
	return ParseSTSPolicy(string(body))
}
