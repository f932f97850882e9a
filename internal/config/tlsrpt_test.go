package config

import (
	"path/filepath"
	"testing"
	"time"
)

// The test configuration answers DNS from a zone file: dns.dnssec is refused there.
func TestTLSRPTAndDNSSECKeys(t *testing.T) {
	c, err, dir := loadWith(t, nil, "dns:\n", "tlsrpt:\n  enabled: true\n  contact_info: mailto:tls@example.com\n  flush_interval: 1m\ndns:\n")
	if err != nil {
		t.Fatal(err)
	}
	if !c.TLSRPT.Enabled || c.TLSRPT.FlushInterval != time.Minute || c.TLSRPT.ContactInfo != "mailto:tls@example.com" || c.DNS.DNSSEC {
		t.Errorf("tlsrpt %+v, dns %+v", c.TLSRPT, c.DNS)
	}
	if c.TLSRPTOrganization() != c.Hostname || c.TLSRPTDir() != filepath.Join(c.Dir, "tlsrpt") {
		t.Errorf("organization %q, dir %q (state dir %s, test dir %s)", c.TLSRPTOrganization(), c.TLSRPTDir(), c.Dir, dir)
	}

	_, err, _ = loadWith(t, nil, "dns:\n", "tlsrpt:\n  flush_interval: 10ms\n  contact_info: two words\ndns:\n  dnssec: true\n")
	onlyProblems(t, err,
		"tlsrpt.flush_interval: must be a duration of at least 1s",
		"tlsrpt.contact_info: must be one address or URI",
		"dns.dnssec: needs a validating resolver")
}
