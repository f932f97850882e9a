package keys

import (
	"context"
	"crypto"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/resolver"
)

// PublishOptions say where CheckPublished looks for a key record.
type PublishOptions struct {
	// Resolver is the configured resolver, the view of receivers. It is asked first, and
	// for the zone's NS records and their addresses.
	Resolver resolver.Resolver
	// SkipAuthoritative leaves the authoritative servers out, for a resolver that answers
	// from a zone file (dns.zone_file): the file is then the whole truth.
	SkipAuthoritative bool
	// NSPort is the port authoritative servers are asked on; 0 means 53.
	NSPort int
	// Timeout bounds each query to an authoritative server; 0 means 5s.
	Timeout time.Duration
}

// ServerCheck is the verdict of one server.
type ServerCheck struct {
	// Server is "resolver", or an authoritative server as "ns1.example.com. (192.0.2.53:53)".
	Server string `json:"server"`
	// Status is Check's verdict there; "" when the server could not be asked.
	Status Status `json:"status,omitempty"`
	// Unreachable is set when no answer came (no address, timeout, refused): reported,
	// not held against publication.
	Unreachable bool   `json:"unreachable,omitempty"`
	Detail      string `json:"detail"`
}

// PublishResult is the verdict of CheckPublished.
type PublishResult struct {
	// Published is true when the configured resolver and every authoritative server that
	// answered publish exactly this key, not in testing mode.
	Published bool `json:"published"`
	// Servers holds each server's verdict, the resolver first.
	Servers []ServerCheck `json:"servers"`
	// Detail sums the verdict up in a sentence an admin can act on.
	Detail string `json:"detail"`
}

// CheckPublished says whether the key record of selector and domain publishes key
// everywhere a receiver may look: through the configured resolver (Check) and at each
// authoritative server of the zone holding the record, asked directly so that a
// resolver's cache or a lagging secondary cannot make an unpublished key look
// published. The zone is found by asking for NS records from the record's name upwards
// (RFC 1034 §4.2.1), never at or above a public suffix. An authoritative server that
// cannot be reached is reported, not fatal; one that answers with anything but this key
// means the key is not published. The error is non-nil only when the key is unusable.
func CheckPublished(ctx context.Context, o PublishOptions, key crypto.Signer, selector, domain string) (*PublishResult, error) {
	res := &PublishResult{}
	first, err := Check(ctx, o.Resolver, key, selector, domain)
	if first == nil {
		return nil, err
	}
	res.Servers = append(res.Servers, ServerCheck{Server: "resolver", Status: first.Status, Detail: first.Detail})
	if !first.OK() {
		res.Detail = "not published: " + first.Detail
		return res, nil
	}
	if o.SkipAuthoritative {
		res.Published = true
		res.Detail = first.Detail + " (zone file; no authoritative servers asked)"
		return res, nil
	}
	zone, hosts, err := zoneServers(ctx, o.Resolver, RecordName(selector, domain))
	if err != nil {
		res.Servers = append(res.Servers, ServerCheck{Server: "authoritative", Unreachable: true, Detail: err.Error()})
		res.Published = true
		res.Detail = first.Detail + " through the resolver; the authoritative servers could not be found: " + err.Error()
		return res, nil
	}
	port := o.NSPort
	if port == 0 {
		port = 53
	}
	var mismatch []string
	asked := 0
	for _, h := range hosts {
		ips, err := o.Resolver.LookupIP(ctx, h)
		if err != nil || len(ips) == 0 {
			res.Servers = append(res.Servers, ServerCheck{Server: h, Unreachable: true,
				Detail: fmt.Sprintf("name server %s of %s has no address we could look up: %v", h, zone, err)})
			continue
		}
		for _, ip := range ips {
			sc := askAuthoritative(ctx, o, key, selector, domain, h, net.JoinHostPort(ip.String(), strconv.Itoa(port)))
			res.Servers = append(res.Servers, sc)
			if sc.Unreachable {
				continue
			}
			asked++
			if sc.Status != StatusPublished {
				mismatch = append(mismatch, sc.Server+": "+sc.Detail)
			}
		}
	}
	switch {
	case len(mismatch) > 0:
		res.Detail = "not published at every authoritative server of " + zone + ": " + strings.Join(mismatch, "; ")
	case asked == 0:
		res.Published = true
		res.Detail = first.Detail + " through the resolver; no authoritative server of " + zone + " answered"
	default:
		res.Published = true
		res.Detail = fmt.Sprintf("%s through the resolver and at %d authoritative server(s) of %s", first.Detail, asked, zone)
	}
	return res, nil
}

// askAuthoritative checks the record at one authoritative server.
func askAuthoritative(ctx context.Context, o PublishOptions, key crypto.Signer, selector, domain, host, hostport string) ServerCheck {
	name := host + " (" + hostport + ")"
	r, err := resolver.New(resolver.Config{Server: hostport, Timeout: o.Timeout})
	if err != nil {
		return ServerCheck{Server: name, Unreachable: true, Detail: err.Error()}
	}
	cr, err := Check(ctx, r, key, selector, domain)
	if err != nil || cr == nil {
		return ServerCheck{Server: name, Unreachable: true, Detail: fmt.Sprintf("no answer: %v", err)}
	}
	return ServerCheck{Server: name, Status: cr.Status, Detail: cr.Detail}
}

// zoneServers finds the zone holding name, the nearest enclosing name with NS records,
// and returns it with its name servers, sorted.
func zoneServers(ctx context.Context, r resolver.Resolver, name string) (zone string, hosts []string, err error) {
	d := addr.Domain(strings.ToLower(strings.TrimSuffix(name, ".")))
	for ; d != "" && !addr.IsPublicSuffix(d); d = d.Parent() {
		ns, err := resolver.LookupNS(ctx, r, string(d))
		switch {
		case err == nil && len(ns) > 0:
			slices.Sort(ns)
			return string(d), ns, nil
		case err != nil && !resolver.IsNotFound(err):
			return "", nil, fmt.Errorf("NS lookup of %s: %w", d, err)
		}
	}
	return "", nil, fmt.Errorf("no NS records found for %s or a parent below its public suffix", name)
}
