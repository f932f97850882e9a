// Package metrics counts what sealgate does, for Prometheus, and serves the admin
// endpoints: /metrics (the Prometheus text format), /healthz (the process is up) and
// /readyz (the relay can take mail: every readiness check passes).
//
// Every metric is named sealgate_* and lives on a private registry (Metrics.Registry), not
// on prometheus.DefaultRegisterer, so nothing else in the process adds to it. Metrics has
// the methods of submit.Metrics, with counters resolved in advance, so that the per-message
// path does a map lookup and an atomic add; delivery attempts are counted through Attempt
// (from relay.Runner.OnAttempt), DNS lookup errors through Resolver, and the queue is read
// from the spool at scrape time (WatchQueue).
//
// It knows submit, relay and the spool only through the plain values and small interfaces
// defined here (Reasons, Attempt, Queue), which cmd/sealgate adapts: internal/ imports no
// top-level package. It does not push metrics anywhere, and keeps no history: that is the
// scraper's job.
package metrics

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"sealgate/internal/resolver"
)

// Metrics holds sealgate's metrics. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	accepted      prometheus.Counter
	acceptLatency prometheus.Observer
	refusedVec    *prometheus.CounterVec
	refused       map[string]prometheus.Counter
	reasons       Reasons
	authFailures  prometheus.Counter
	authThrottled prometheus.Counter
	signedVec     *prometheus.CounterVec
	signed        sync.Map // domain -> prometheus.Counter
	sealedVec     *prometheus.CounterVec
	sealed        sync.Map
	tlsInVec      *prometheus.CounterVec
	tlsIn         map[uint16]prometheus.Counter
	tlsOutVec     *prometheus.CounterVec
	attempts      *prometheus.CounterVec
	endToEnd      prometheus.Observer
	dnsErrors     *prometheus.CounterVec
	reloads       *prometheus.CounterVec
}

// Reasons are the refusal reason codes (submit.AllReasons, docs/reason-codes.md) that New
// makes series for.
type Reasons struct {
	// All are every code: each sealgate_refused_total series exists at 0 from the start, so
	// that a graph or an alert on it has a series before the first refusal.
	All []string
	// AuthFailed and AuthThrottled are the codes also counted in sealgate_auth_failures_total
	// and sealgate_auth_throttled_total.
	AuthFailed, AuthThrottled string
}

// New makes the metrics on a new private registry, with Go runtime and process metrics.
func New(reasons Reasons) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg, reasons: reasons}
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.accepted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sealgate_messages_accepted_total", Help: "Messages accepted: checked, signed, sealed and durably spooled (answered 250)."})
	f(m.accepted)
	acceptLatency := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "sealgate_accept_duration_seconds", Help: "Time from DATA (or the first BDAT) to the 250 reply of an accepted message.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}})
	f(acceptLatency)
	m.acceptLatency = acceptLatency
	m.refusedVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealgate_refused_total", Help: "Refusals and deferrals, by reason code (docs/reason-codes.md)."}, []string{"reason"})
	f(m.refusedVec)
	m.refused = make(map[string]prometheus.Counter, len(reasons.All))
	for _, r := range reasons.All {
		m.refused[r] = m.refusedVec.WithLabelValues(r)
	}
	m.authFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sealgate_auth_failures_total", Help: "Failed SMTP AUTH attempts (wrong login or password)."})
	f(m.authFailures)
	m.authThrottled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sealgate_auth_throttled_total", Help: "SMTP AUTH attempts refused by the per-address throttle."})
	f(m.authThrottled)
	m.signedVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealgate_messages_signed_total", Help: "Messages DKIM-signed, by signing domain (d=)."}, []string{"domain"})
	f(m.signedVec)
	m.sealedVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealgate_messages_sealed_total", Help: "Messages ARC-sealed, by sealing domain (d=)."}, []string{"domain"})
	f(m.sealedVec)
	m.tlsInVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealgate_tls_sessions_in_total", Help: "SMTP sessions from clients over TLS, by TLS version."}, []string{"version"})
	f(m.tlsInVec)
	m.tlsIn = map[uint16]prometheus.Counter{}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13} {
		m.tlsIn[v] = m.tlsInVec.WithLabelValues(tlsVersionLabel(v))
	}
	m.tlsOutVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealgate_tls_sessions_out_total", Help: "Delivery attempts that reached a server, by TLS version (\"none\" without TLS)."}, []string{"version"})
	f(m.tlsOutVec)
	m.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealgate_delivery_attempts_total",
		Help: "Delivery attempts per recipient group, by outcome (sent, deferred, bounced, expired) and destination class (the receiving provider, from the server's name)."},
		[]string{"status", "class"})
	f(m.attempts)
	endToEnd := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "sealgate_delivery_delay_seconds", Help: "Time from acceptance to delivery of a recipient group.",
		Buckets: []float64{.1, .5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600}})
	f(endToEnd)
	m.endToEnd = endToEnd
	m.dnsErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealgate_dns_lookup_errors_total", Help: "DNS lookups that got no answer, by record type and kind (temporary: SERVFAIL, timeout, network; permanent: anything else). NXDOMAIN and NODATA are answers and not counted."},
		[]string{"type", "kind"})
	f(m.dnsErrors)
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealgate_config_reloads_total", Help: "Configuration reloads, by result (ok, failed)."}, []string{"result"})
	f(m.reloads)
	return m
}

// Registry is the private registry holding every metric.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Refused counts one refusal or deferral with reason code r (submit.Metrics.Refused).
func (m *Metrics) Refused(r string) {
	c, ok := m.refused[r]
	if !ok {
		c = m.refusedVec.WithLabelValues(r)
	}
	c.Inc()
	switch {
	case r == "": // a Reasons field left empty names no code
	case r == m.reasons.AuthFailed:
		m.authFailures.Inc()
	case r == m.reasons.AuthThrottled:
		m.authThrottled.Inc()
	}
}

// Accepted implements submit.Metrics.Accepted.
func (m *Metrics) Accepted(d time.Duration) {
	m.accepted.Inc()
	m.acceptLatency.Observe(d.Seconds())
}

// Signed implements submit.Metrics.Signed.
func (m *Metrics) Signed(domain string) { child(&m.signed, m.signedVec, domain).Inc() }

// Sealed implements submit.Metrics.Sealed.
func (m *Metrics) Sealed(domain string) { child(&m.sealed, m.sealedVec, domain).Inc() }

// child returns vec's counter for label, resolved once per label: domains are the
// configured ones, so the cache stays small.
func child(cache *sync.Map, vec *prometheus.CounterVec, label string) prometheus.Counter {
	if c, ok := cache.Load(label); ok {
		return c.(prometheus.Counter)
	}
	c, _ := cache.LoadOrStore(label, vec.WithLabelValues(label))
	return c.(prometheus.Counter)
}

// TLSIn implements submit.Metrics.TLSIn.
func (m *Metrics) TLSIn(version uint16) {
	c, ok := m.tlsIn[version]
	if !ok {
		c = m.tlsInVec.WithLabelValues(tlsVersionLabel(version))
	}
	c.Inc()
}

func tlsVersionLabel(v uint16) string {
	return strings.ReplaceAll(tls.VersionName(v), " ", "")
}

// Reloaded counts a configuration reload.
func (m *Metrics) Reloaded(ok bool) {
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
	} else {
		m.reloads.WithLabelValues("failed").Inc()
	}
}

// Attempt is one delivery attempt of a recipient group, as relay.Runner.OnAttempt reports it
// (relay.AttemptEvent).
type Attempt struct {
	// Status is the outcome: sent, deferred, bounced or expired.
	Status string
	// Sent is whether the group was delivered (Status sent).
	Sent bool
	// Host is the server reached; "" when none was.
	Host string
	// TLSVersion is the session's TLS version ("TLS1.3"); "" without TLS.
	TLSVersion string
	// Delay is the time from acceptance to this attempt.
	Delay time.Duration
}

// Attempt counts one delivery attempt of a recipient group.
func (m *Metrics) Attempt(ev Attempt) {
	m.attempts.WithLabelValues(ev.Status, DestinationClass(ev.Host)).Inc()
	if ev.Host != "" {
		v := ev.TLSVersion
		if v == "" {
			v = "none"
		}
		m.tlsOutVec.WithLabelValues(v).Inc()
	}
	if ev.Sent {
		m.endToEnd.Observe(ev.Delay.Seconds())
	}
}

// providers maps the name suffixes of the MX hosts of large mailbox providers to a class:
// enough to tell "Gmail is deferring us" from "one small domain is down" without a label
// per domain.
var providers = []struct{ suffix, class string }{
	{".google.com", "google"},
	{".googlemail.com", "google"},
	{".outlook.com", "microsoft"},
	{".hotmail.com", "microsoft"},
	{".yahoodns.net", "yahoo"},
	{".icloud.com", "apple"},
	{".mail.ru", "mailru"},
	{".yandex.net", "yandex"},
	{".protonmail.ch", "proton"},
	{".messagingengine.com", "fastmail"},
}

// DestinationClass is the class of a delivery's server, by its host name: a large provider's
// name, "other", or "unreached" when no server was reached.
func DestinationClass(host string) string {
	if host == "" {
		return "unreached"
	}
	h := "." + strings.TrimSuffix(strings.ToLower(host), ".")
	for _, p := range providers {
		if strings.HasSuffix(h, p.suffix) {
			return p.class
		}
	}
	return "other"
}

// Queue is what WatchQueue reads of the spool (relay.Spool): the ids of the queued messages,
// and for each its delivery attempts so far and when it was accepted.
type Queue interface {
	List() ([]string, error)
	Entry(id string) (QueueEntry, error)
}

// QueueEntry is what WatchQueue needs of one queued message (relay.Envelope).
type QueueEntry struct {
	Attempts   int
	ReceivedAt time.Time
}

// WatchQueue adds sealgate_queue_messages{state} (queued: not yet tried; deferred: tried and
// waiting for a retry; failed: given up on, kept in the spool's failed/ directory) and
// sealgate_queue_oldest_seconds, read from q and spoolDir at each scrape.
func (m *Metrics) WatchQueue(q Queue, spoolDir string) {
	m.reg.MustRegister(&queueCollector{q: q, failedDir: filepath.Join(spoolDir, "failed"), now: time.Now})
}

var (
	queueSizeDesc = prometheus.NewDesc("sealgate_queue_messages", "Messages in the spool, by state (queued, deferred, failed).", []string{"state"}, nil)
	queueAgeDesc  = prometheus.NewDesc("sealgate_queue_oldest_seconds", "Age of the oldest message waiting for delivery (0 when none).", nil, nil)
	queueErrDesc  = prometheus.NewDesc("sealgate_queue_read_errors", "1 when the last scrape could not read the spool.", nil, nil)
)

type queueCollector struct {
	q         Queue
	failedDir string
	now       func() time.Time
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueSizeDesc
	ch <- queueAgeDesc
	ch <- queueErrDesc
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	var queued, deferred, failed float64
	var oldest time.Time
	readErr := 0.0
	ids, err := c.q.List()
	if err != nil {
		readErr = 1
	}
	for _, id := range ids {
		env, err := c.q.Entry(id)
		if err != nil {
			continue // delivered or moved meanwhile
		}
		if env.Attempts > 0 {
			deferred++
		} else {
			queued++
		}
		if oldest.IsZero() || env.ReceivedAt.Before(oldest) {
			oldest = env.ReceivedAt
		}
	}
	if entries, err := os.ReadDir(c.failedDir); err == nil {
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".msg") {
				failed++
			}
		}
	} else if !os.IsNotExist(err) {
		readErr = 1
	}
	age := 0.0
	if !oldest.IsZero() {
		age = max(0, c.now().Sub(oldest).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(queueSizeDesc, prometheus.GaugeValue, queued, "queued")
	ch <- prometheus.MustNewConstMetric(queueSizeDesc, prometheus.GaugeValue, deferred, "deferred")
	ch <- prometheus.MustNewConstMetric(queueSizeDesc, prometheus.GaugeValue, failed, "failed")
	ch <- prometheus.MustNewConstMetric(queueAgeDesc, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(queueErrDesc, prometheus.GaugeValue, readErr)
}

// Resolver wraps r so that every failed lookup is counted in
// sealgate_dns_lookup_errors_total{type,kind}.
func (m *Metrics) Resolver(r resolver.Resolver) resolver.Resolver {
	if r == nil {
		return nil
	}
	return &countingResolver{r: r, m: m}
}

type countingResolver struct {
	r resolver.Resolver
	m *Metrics
}

func (c *countingResolver) count(qtype string, err error) {
	// NXDOMAIN and NODATA are answers, not failures to get one.
	if err == nil || resolver.IsNotFound(err) {
		return
	}
	kind := "permanent"
	if resolver.IsTemporary(err) {
		kind = "temporary"
	}
	c.m.dnsErrors.WithLabelValues(qtype, kind).Inc()
}

func (c *countingResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	v, err := c.r.LookupTXT(ctx, name)
	c.count("TXT", err)
	return v, err
}

func (c *countingResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	v, err := c.r.LookupMX(ctx, name)
	c.count("MX", err)
	return v, err
}

func (c *countingResolver) LookupIP(ctx context.Context, name string) ([]net.IP, error) {
	v, err := c.r.LookupIP(ctx, name)
	c.count("A/AAAA", err)
	return v, err
}

// LookupSecure passes resolver.SecureResolver on (DANE needs the DNSSEC status).
func (c *countingResolver) LookupSecure(ctx context.Context, name string, qtype uint16) (resolver.SecureAnswer, error) {
	v, err := resolver.LookupSecure(ctx, c.r, name, qtype)
	c.count(dns.TypeToString[qtype], err)
	return v, err
}

func (c *countingResolver) LookupAddr(ctx context.Context, ip string) ([]string, error) {
	v, err := c.r.LookupAddr(ctx, ip)
	c.count("PTR", err)
	return v, err
}
