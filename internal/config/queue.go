package config

import (
	"fmt"
	"time"

	"sealgate/internal/addr"
)

// RetryConfig is relay.retry: when a message that failed temporarily (a 4yz reply or
// a connection failure) is tried again, and when it is given up on (RFC 5321 §4.5.4.1
// suggests retrying for at least 4-5 days).
type RetryConfig struct {
	// Schedule are the delays before the first retries, in order; empty means
	// DefaultRetrySchedule.
	Schedule []time.Duration `mapstructure:"schedule"`
	// Every is the delay between retries once Schedule is used up.
	Every time.Duration `mapstructure:"every"`
	// GiveUpAfter is how long after acceptance a message still failing temporarily
	// is given up on (a DSN with Action: failed).
	GiveUpAfter time.Duration `mapstructure:"give_up_after"`
}

// DSNConfig is relay.dsn: the delivery status notifications (RFC 3464) the relay sends.
type DSNConfig struct {
	// Domain is the relay's own domain: the From of its DSNs (MAILER-DAEMON@Domain)
	// and the domain whose DKIM keys sign them. Empty means the hostname's
	// organisational domain (relay.example.com: example.com), see DSNDomain.
	Domain string `mapstructure:"domain"`
	// From replaces MAILER-DAEMON@Domain as the DSNs' From address.
	From string `mapstructure:"from"`
	// DelayWarning, when positive, sends one "delayed" DSN (Action: delayed) for a
	// message still undelivered this long after acceptance.
	DelayWarning time.Duration `mapstructure:"delay_warning"`
}

// DefaultRetrySchedule is the delays before the first retries when relay.retry.schedule
// is not set; relay.retry.every (default 2h) follows.
var DefaultRetrySchedule = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour}

// Backoff returns the delays before retry 1, 2, ...: Schedule (or DefaultRetrySchedule)
// followed by Every, which repeats. This is relay.Runner's Backoff.
func (r RetryConfig) Backoff() []time.Duration {
	s := r.Schedule
	if len(s) == 0 {
		s = DefaultRetrySchedule
	}
	every := r.Every
	if every <= 0 {
		every = 2 * time.Hour
	}
	return append(append([]time.Duration(nil), s...), every)
}

// DSNDomain returns relay.dsn.domain, or when it is not set the organisational domain
// (RFC 7489 §3.2) of the hostname; "" if neither is a valid domain.
func (c *Config) DSNDomain() addr.Domain {
	name := c.Relay.DSN.Domain
	if name == "" {
		name = c.Hostname
	}
	d, err := addr.ParseDomain(name)
	if err != nil {
		return ""
	}
	if c.Relay.DSN.Domain == "" {
		return addr.OrgDomain(d)
	}
	return d
}

// queue checks relay.retry and relay.dsn.
func (v *validation) queue() {
	r, d, p := v.c.Relay.Retry, v.c.Relay.DSN, &v.p
	for i, s := range r.Schedule {
		if s <= 0 {
			p.add(fmt.Sprintf("relay.retry.schedule[%d]", i), "must be a positive duration such as 5m")
		}
	}
	if r.Every < 0 {
		p.add("relay.retry.every", "must be a positive duration such as 2h")
	}
	if r.GiveUpAfter < 0 {
		p.add("relay.retry.give_up_after", "must be a positive duration such as 120h (5 days)")
	} else if r.GiveUpAfter > 0 && len(r.Schedule) > 0 && r.GiveUpAfter < r.Schedule[0] {
		p.add("relay.retry.give_up_after", "%v is shorter than the first retry delay %v: no message would be retried", r.GiveUpAfter, r.Schedule[0])
	}
	if d.Domain != "" {
		if _, err := addr.ParseDomain(d.Domain); err != nil {
			p.add("relay.dsn.domain", "%v", err)
		}
	}
	if d.From != "" {
		if _, err := addr.ParseAddress(d.From); err != nil {
			p.add("relay.dsn.from", "%v", err)
		}
	}
	switch {
	case d.DelayWarning < 0:
		p.add("relay.dsn.delay_warning", "must be a positive duration such as 4h, or 0 for no delay warnings")
	case d.DelayWarning > 0 && r.GiveUpAfter > 0 && d.DelayWarning >= r.GiveUpAfter:
		p.add("relay.dsn.delay_warning", "%v is not before relay.retry.give_up_after (%v): the warning would never be sent", d.DelayWarning, r.GiveUpAfter)
	}
}
