package main

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"sealgate/internal/metrics"
	"sealgate/relay"
	"sealgate/submit"
)

// scrape returns the /metrics page of m.
func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	return rec.Body.String()
}

// hasLine reports whether page has the sample line want.
func hasLine(page, want string) bool {
	return slices.Contains(strings.Split(page, "\n"), want)
}

// The adapters give package metrics submit's reason codes and relay's attempts: every
// reason has a series from the start, auth refusals count in their own counters too, and a
// sent attempt's delay is observed.
func TestMetricsAdapters(t *testing.T) {
	m := newMetrics()
	page := scrape(t, m)
	for _, r := range submit.AllReasons {
		if want := `sealgate_refused_total{reason="` + string(r) + `"} 0`; !hasLine(page, want) {
			t.Errorf("no %s", want)
		}
	}
	var sm submit.Metrics = submitMetrics{m}
	sm.Refused(submit.ReasonAuthFailed)
	sm.Refused(submit.ReasonAuthThrottled)
	sm.Refused(submit.ReasonSenderNotPermitted)

	var passed []relay.AttemptEvent
	on := countAttempts(m, func(ev relay.AttemptEvent) { passed = append(passed, ev) })
	on(relay.AttemptEvent{Status: relay.StatusSent, Host: "mx.example.net", TLSVersion: "TLS1.3", Delay: time.Second})
	on(relay.AttemptEvent{Status: relay.StatusDeferred})
	countAttempts(m, nil)(relay.AttemptEvent{Status: relay.StatusBounced}) // no next: no panic
	if len(passed) != 2 {
		t.Errorf("next saw %d attempts, want 2", len(passed))
	}
	page = scrape(t, m)
	for _, want := range []string{
		"sealgate_auth_failures_total 1",
		"sealgate_auth_throttled_total 1",
		`sealgate_refused_total{reason="` + string(submit.ReasonSenderNotPermitted) + `"} 1`,
		"sealgate_delivery_delay_seconds_count 1", // the sent attempt only
		`sealgate_delivery_attempts_total{class="unreached",status="deferred"} 1`,
		`sealgate_delivery_attempts_total{class="unreached",status="bounced"} 1`,
	} {
		if !hasLine(page, want) {
			t.Errorf("no %s", want)
		}
	}
}
