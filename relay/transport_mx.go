package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"sealgate/internal/resolver"
	"sealgate/internal/smtpclient"
)

// DefaultMXPort is the SMTP port of MX hosts (RFC 5321 §4.5.4.2 relays use 25).
const DefaultMXPort = 25

// mxDestinations lists the servers for the recipients of g's domain (RFC 5321
// §5.1): its MX hosts in preference order, each host's addresses before the
// next host, limited and marked by the domain's MTA-STS policy.
func (t *Transport) mxDestinations(ctx context.Context, env *Envelope, g *routeGroup) ([]destination, error) {
	rt := g.route
	port := cmpOr(t.MXPort, DefaultMXPort)
	mode := rt.tlsMode()
	if lit, ok := strings.CutPrefix(g.domain, "["); ok {
		// An address literal (RFC 5321 §4.1.3) names the server itself.
		lit = strings.TrimSuffix(strings.TrimPrefix(lit, "IPv6:"), "]")
		ip, err := netip.ParseAddr(lit)
		if err != nil {
			return nil, &PermanentError{Err: fmt.Errorf("address literal %s: %w", g.domain, err)}
		}
		return []destination{{host: ip.String(), ip: net.IP(ip.AsSlice()), port: port, mode: mode, rt: rt}}, nil
	}
	if t.Resolver == nil {
		return nil, errors.New("relay: delivery to MX hosts needs a resolver")
	}
	hosts, implicit, mxSecure, err := t.mxHosts(ctx, g.domain)
	if err != nil {
		return nil, err
	}
	dane, addrs := t.daneHosts(ctx, env, g.domain, hosts, mxSecure)

	var sts *STSPolicy
	if t.MTASTS != nil && !daneApplies(dane) {
		sts = t.MTASTS.Policy(ctx, g.domain)
	}
	needTLS := ""
	if env.RequireTLS {
		// RFC 8689 §4.1: the MX hosts must be validated, by DNSSEC or by an MTA-STS
		// policy, as well as their certificates: MX hosts with usable DANE records
		// (validated MX records, checkTLS checks the certificate), or named by a policy.
		stsNone := sts == nil || sts.Mode == STSModeNone
		if stsNone && !daneApplies(dane) {
			return nil, fmt.Errorf("REQUIRETLS (RFC 8689 §4.1): the MX hosts of %s cannot be validated: it has no MTA-STS policy and no DANE TLSA records", g.domain)
		}
		var named []string
		for _, h := range hosts {
			if dane[h].before() == daneUsable || (!stsNone && sts.MatchesMX(h)) {
				named = append(named, h)
			}
		}
		if len(named) == 0 && stsNone {
			return nil, fmt.Errorf("REQUIRETLS (RFC 8689 §4.1): no MX host of %s (%s) has usable DANE TLSA records", g.domain, strings.Join(hosts, ", "))
		}
		if len(named) == 0 {
			return nil, fmt.Errorf("REQUIRETLS (RFC 8689 §4.1): the MTA-STS policy %s of %s names none of its MX hosts (%s)", sts.ID, g.domain, strings.Join(hosts, ", "))
		}
		hosts = named
	}
	if sts != nil && sts.Mode != STSModeNone {
		var allowed, refused []string
		for _, h := range hosts {
			if sts.MatchesMX(h) {
				allowed = append(allowed, h)
			} else {
				refused = append(refused, h)
			}
		}
		switch {
		case len(refused) == 0:
		case sts.Mode == STSModeEnforce:
			// RFC 8461 §5.1: only MX hosts the policy names are candidates.
			t.logger().Warn("MTA-STS: MX hosts not in the policy skipped", "queue_id", env.ID,
				"domain", g.domain, "policy_id", sts.ID, "skipped", strings.Join(refused, ","))
			hosts = allowed
		default:
			t.logger().Warn("MTA-STS testing policy not met: MX hosts not in the policy (delivering anyway)",
				"queue_id", env.ID, "domain", g.domain, "policy_id", sts.ID, "hosts", strings.Join(refused, ","))
		}
		if sts.Mode == STSModeEnforce {
			needTLS = "the MTA-STS policy (enforce) of " + g.domain
			if len(hosts) == 0 {
				return nil, fmt.Errorf("MTA-STS policy %s of %s (enforce) names none of its MX hosts (%s)",
					sts.ID, g.domain, strings.Join(refused, ", "))
			}
		}
	}

	var dests []destination
	var lastErr error
	for _, h := range hosts {
		ips, err := addrs[h].ips, addrs[h].err
		if _, looked := addrs[h]; !looked {
			ips, err = t.Resolver.LookupIP(ctx, h)
		}
		if errors.Is(err, errDANELookup) {
			lastErr = err // not this host, not even in the clear (RFC 7672 §2.1.1)
			continue
		}
		if err != nil {
			lastErr = fmt.Errorf("addresses of %s: %w", h, err)
			if implicit && resolver.IsNotFound(err) {
				// RFC 5321 §5.1: no MX and no address: the domain takes no mail.
				return nil, &PermanentError{Err: &smtpclient.ReplyError{Command: "address lookup", Code: 550,
					Message: fmt.Sprintf("5.1.2 recipient domain %s has no MX and no address record", g.domain)}}
			}
			continue
		}
		for _, ip := range ips {
			if rt.SourceIP != nil && (rt.SourceIP.To4() == nil) != (ip.To4() == nil) {
				continue // unreachable from the source address
			}
			dests = append(dests, destination{host: h, ip: ip, port: port, mode: mode, sts: sts, needTLS: needTLS, dane: dane[h], rt: rt})
		}
	}
	if len(dests) == 0 {
		if lastErr == nil {
			lastErr = fmt.Errorf("no address of %s's mail servers (%s) to connect to", g.domain, strings.Join(hosts, ", "))
		}
		return nil, lastErr
	}
	return dests, nil
}

// mxHosts returns the names of the servers for domain, in the order to try
// them (RFC 5321 §5.1): the MX hosts by preference, equal preferences in random
// order to spread the load; the domain itself (implicit is true) when it has no
// MX. A domain that does not exist, or publishes a null MX (RFC 7505), is a
// *PermanentError. secure says whether the MX records (or their absence) were
// DNSSEC-validated, for DANE (RFC 7672 §2.2.1).
func (t *Transport) mxHosts(ctx context.Context, domain string) (hosts []string, implicit, secure bool, err error) {
	ans, err := resolver.LookupSecure(ctx, t.Resolver, domain, dns.TypeMX)
	switch {
	case err == nil:
	case errors.Is(err, resolver.ErrNXDOMAIN):
		return nil, false, false, &PermanentError{Err: &smtpclient.ReplyError{Command: "MX lookup", Code: 550,
			Message: fmt.Sprintf("5.1.2 recipient domain %s does not exist", domain)}}
	case resolver.IsNotFound(err):
		return []string{domain}, true, ans.Secure, nil
	default:
		return nil, false, false, fmt.Errorf("MX lookup for %s: %w", domain, err)
	}
	var real []*net.MX
	for _, rr := range ans.Records {
		if mx, ok := rr.(*dns.MX); ok && mx.Mx != "." && mx.Mx != "" {
			real = append(real, &net.MX{Host: strings.ToLower(mx.Mx), Pref: mx.Preference})
		}
	}
	if len(real) == 0 {
		// RFC 7505 §3, §4.1: a null MX; 556 5.1.10 is the reply it prescribes.
		return nil, false, false, &PermanentError{Err: &smtpclient.ReplyError{Command: "MX lookup", Code: 556,
			Message: fmt.Sprintf("5.1.10 recipient domain %s accepts no mail (null MX, RFC 7505)", domain)}}
	}
	return orderMX(real), false, ans.Secure, nil
}

// hostAddrs is the outcome of an MX host's address lookup, or of its TLSA lookup when that
// failed.
type hostAddrs struct {
	ips []net.IP
	err error
}

// daneHosts finds the DANE status of each MX host (RFC 7672 §2.2): with validated MX records,
// each host's addresses with their status and then its TLSA records. The addresses looked up
// are returned for the destinations; a host whose TLSA lookup failed has that error instead.
// With MX records that are not validated no lookup is made: every host is DANEInsecure.
func (t *Transport) daneHosts(ctx context.Context, env *Envelope, domain string, hosts []string, mxSecure bool) (map[string]*daneHost, map[string]hostAddrs) {
	dane := map[string]*daneHost{}
	addrs := map[string]hostAddrs{}
	for _, h := range hosts {
		if !mxSecure {
			dane[h] = &daneHost{status: DANEInsecure}
			continue
		}
		ans, err := resolver.LookupIPSecure(ctx, t.Resolver, h)
		if err != nil {
			addrs[h] = hostAddrs{err: err}
			dane[h] = &daneHost{status: DANEInsecure}
			continue
		}
		dh, err := lookupDANE(ctx, t.Resolver, h, true, ans)
		if err != nil {
			t.logger().Warn("DANE: TLSA lookup failed; host not tried", "queue_id", env.ID, "domain", domain, "host", h, "error", err)
			t.reportTLSALookup(domain, h, err)
			addrs[h] = hostAddrs{err: err}
			dane[h] = &daneHost{status: DANEFailedPrefix + err.Error()}
			continue
		}
		addrs[h] = hostAddrs{ips: ans.IPs}
		dane[h] = dh
	}
	return dane, addrs
}

// daneApplies reports whether some MX host has validated TLSA records (or a failed TLSA
// lookup): DANE then outranks the domain's MTA-STS policy (RFC 8461 §2).
func daneApplies(dane map[string]*daneHost) bool {
	for _, h := range dane {
		if h.requiresTLS() || strings.HasPrefix(h.status, DANEFailedPrefix) {
			return true
		}
	}
	return false
}

// orderMX sorts mxs by preference, shuffling each run of equal preferences
// (RFC 5321 §5.1), and returns the host names without the trailing dot.
func orderMX(mxs []*net.MX) []string {
	mxs = append([]*net.MX(nil), mxs...)
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	// A stable sort keeps the shuffled order among equal preferences.
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return cmp.Compare(a.Pref, b.Pref) })
	hosts := make([]string, 0, len(mxs))
	seen := map[string]bool{}
	for _, mx := range mxs {
		h := strings.ToLower(strings.TrimSuffix(mx.Host, "."))
		if !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	return hosts
}
