package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"sealgate/internal/resolver"
)

// dnsFlags are the flags choosing where a command's DNS answers come from: the system resolver,
// one recursive server (--dns) or a zone file (--zone), which lets an admin try records before
// publishing them.
type dnsFlags struct {
	server  string
	zone    string
	timeout time.Duration
}

// addDNSFlags adds --dns, --zone and --dns-timeout to cmd.
func addDNSFlags(cmd *cobra.Command) *dnsFlags {
	f := &dnsFlags{}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "dns", "", "ask this recursive DNS server (`HOST:PORT`) instead of those in /etc/resolv.conf")
	fl.StringVar(&f.zone, "zone", "", "answer DNS lookups from this zone `FILE` (RFC 1035 master format) instead of the network")
	fl.DurationVar(&f.timeout, "dns-timeout", resolver.DefaultTimeout, "timeout of each DNS query")
	return f
}

// resolver returns the resolver the flags ask for.
func (f *dnsFlags) resolver() (resolver.Resolver, error) {
	if f.server != "" && f.zone != "" {
		return nil, errors.New("--dns and --zone are mutually exclusive: --dns asks a DNS server, --zone answers from a file; give one")
	}
	if f.timeout <= 0 {
		return nil, fmt.Errorf("--dns-timeout %v: must be positive", f.timeout)
	}
	return resolver.New(resolver.Config{Server: f.server, ZoneFile: f.zone, Timeout: f.timeout})
}
