package config

import (
	"path/filepath"
	"strings"
	"time"
)

// TLSRPTConfig is the tlsrpt section: TLS reporting (RFC 8460) of delivery to MX hosts.
// serve counts each TLS session with an MX host in DIR/tlsrpt (package internal/tlsrpt);
// "sealgate tlsrpt report" writes a day's reports. Nothing is sent.
type TLSRPTConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// OrganizationName names the reporter in the reports (RFC 8460 §4.4); "" means hostname.
	OrganizationName string `mapstructure:"organization_name"`
	// ContactInfo is how a domain reaches the reporter ("mailto:..."), optional.
	ContactInfo string `mapstructure:"contact_info"`
	// FlushInterval is how often the counts are saved (and at shutdown).
	FlushInterval time.Duration `mapstructure:"flush_interval"`
}

func init() {
	Defaults["tlsrpt.enabled"] = false
	Defaults["tlsrpt.organization_name"] = ""
	Defaults["tlsrpt.contact_info"] = ""
	Defaults["tlsrpt.flush_interval"] = "5m"
}

// TLSRPTDir is where serve keeps the TLS reporting counts: DIR/tlsrpt.
func (c *Config) TLSRPTDir() string { return filepath.Join(c.Dir, "tlsrpt") }

// TLSRPTOrganization is tlsrpt.organization_name, or the hostname without it.
func (c *Config) TLSRPTOrganization() string {
	if c.TLSRPT.OrganizationName != "" {
		return c.TLSRPT.OrganizationName
	}
	return c.Hostname
}

func (v *validation) tlsrpt() {
	t, p := v.c.TLSRPT, &v.p
	if t.FlushInterval < time.Second {
		p.add("tlsrpt.flush_interval", "must be a duration of at least 1s, such as 5m")
	}
	if strings.ContainsAny(t.OrganizationName, "\r\n") {
		p.add("tlsrpt.organization_name", "must be one line")
	}
	if c := t.ContactInfo; c != "" && strings.ContainsAny(c, "\r\n ") {
		p.add("tlsrpt.contact_info", "must be one address or URI, such as mailto:tls-reports@example.com")
	}
}
