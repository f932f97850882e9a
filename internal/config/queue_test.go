package config

import (
	"slices"
	"testing"
	"time"
)

func TestRetryDefaults(t *testing.T) {
	c, err, _ := loadWith(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour}
	if got := c.Relay.Retry.Backoff(); !slices.Equal(got, want) {
		t.Errorf("Backoff() = %v, want %v", got, want)
	}
	if c.Relay.Retry.GiveUpAfter != 120*time.Hour {
		t.Errorf("give_up_after = %v, want 120h", c.Relay.Retry.GiveUpAfter)
	}
	if c.Relay.DSN.DelayWarning != 0 {
		t.Errorf("delay_warning = %v, want 0 (off)", c.Relay.DSN.DelayWarning)
	}
}

func TestRetryConfigured(t *testing.T) {
	c, err, _ := loadWith(t, nil, "relay:\n", `relay:
  retry:
    schedule: [30s, 2m]
    every: 1h
    give_up_after: 72h
  dsn:
    domain: bounces.example.org
    from: postmaster@example.org
    delay_warning: 4h
`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Relay.Retry.Backoff(), []time.Duration{30 * time.Second, 2 * time.Minute, time.Hour}; !slices.Equal(got, want) {
		t.Errorf("Backoff() = %v, want %v", got, want)
	}
	if c.Relay.Retry.GiveUpAfter != 72*time.Hour || c.Relay.DSN.DelayWarning != 4*time.Hour {
		t.Errorf("give_up_after %v, delay_warning %v", c.Relay.Retry.GiveUpAfter, c.Relay.DSN.DelayWarning)
	}
	if d := c.DSNDomain(); d != "bounces.example.org" {
		t.Errorf("DSNDomain() = %q", d)
	}
}

func TestRetryConfigProblems(t *testing.T) {
	_, err, _ := loadWith(t, nil, "relay:\n", `relay:
  retry:
    schedule: [1m, -5m]
    give_up_after: 5d
  dsn:
    domain: "bad domain"
    from: "not an address"
    delay_warning: -1h
`)
	onlyProblems(t, err,
		`relay.retry.give_up_after: "5d" is not a duration; there is no day unit: write days as hours (5 days: 120h)`,
		`relay.retry.schedule[1]: must be a positive duration such as 5m`,
		`relay.dsn.domain: `,
		`relay.dsn.from: `,
		`relay.dsn.delay_warning: must be a positive duration such as 4h, or 0 for no delay warnings`,
	)
	_, err, _ = loadWith(t, nil, "relay:\n", `relay:
  retry:
    give_up_after: 2h
  dsn:
    delay_warning: 3h
`)
	onlyProblems(t, err,
		`relay.dsn.delay_warning: 3h0m0s is not before relay.retry.give_up_after (2h0m0s): the warning would never be sent`)
}

func TestDSNDomainFromHostname(t *testing.T) {
	c := &Config{Hostname: "relay.mail.example.co.uk"}
	if d := c.DSNDomain(); d != "example.co.uk" {
		t.Errorf("DSNDomain() = %q, want example.co.uk", d)
	}
}
