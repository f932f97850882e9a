package config

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// SharedConfig is limits.shared: the Redis server several nodes count in.
type SharedConfig struct {
	// Redis is redis://[user@]host:port[/db] or rediss:// (TLS); empty: each node
	// counts alone.
	Redis string `mapstructure:"redis"`
	// PasswordFile holds the Redis password (mode 0600), instead of one in the URL.
	PasswordFile string `mapstructure:"password_file"`
	// Prefix goes before every key (default "sealgate:"), so that several clusters
	// can share one Redis.
	Prefix string `mapstructure:"prefix"`
	// Timeout bounds one Redis call (default 250ms); a node that cannot have an
	// answer in time counts on its own.
	Timeout time.Duration `mapstructure:"timeout"`
}

// TrustedProxyPrefixes parses a listener's trusted_proxies (validated by Open).
func (l ListenerConfig) TrustedProxyPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range l.TrustedProxies {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parsePrefix takes a CIDR or a single address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return p.Masked(), nil
}

// RedisPassword reads limits.shared.password_file (empty when none is set).
func (s SharedConfig) RedisPassword() (string, error) {
	if s.PasswordFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(s.PasswordFile)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// scaleOut checks the keys of running several nodes behind a load balancer.
func (v *validation) scaleOut() {
	p := &v.p
	for i, l := range v.c.Listeners {
		for j, s := range l.TrustedProxies {
			k := fmt.Sprintf("listeners[%d].trusted_proxies[%d]", i, j)
			pr, err := parsePrefix(s)
			if err != nil {
				p.add(k, "%q: want a CIDR such as 10.0.0.0/24 or an address", s)
				continue
			}
			if pr.Bits() == 0 {
				// Anyone could then write a header and claim any address.
				p.add(k, "%q trusts every address: name the load balancers' own addresses", s)
			}
		}
	}
	if d := v.c.Limits.DrainTimeout; d < 0 || d > time.Hour {
		p.add("limits.drain_timeout", "%s: want a duration from 0 (stop at once) to 1h, such as 60s", d)
	}
	sh := v.c.Limits.Shared
	if sh.Redis == "" {
		if sh.PasswordFile != "" {
			p.add("limits.shared.password_file", "set, but limits.shared.redis is not")
		}
		return
	}
	ro, err := redis.ParseURL(sh.Redis)
	if err != nil {
		// The parser's message quotes the URL, password and all.
		why := strings.ReplaceAll(err.Error(), sh.Redis, redactURL(sh.Redis))
		p.add("limits.shared.redis", "%q: %s (want redis://host:6379/0 or rediss://...)", redactURL(sh.Redis), why)
	} else if ro.Password != "" && sh.PasswordFile != "" {
		p.add("limits.shared.redis", "has a password and limits.shared.password_file is set too: keep one (the file)")
	}
	if sh.PasswordFile != "" {
		v.secretFile("limits.shared.password_file", sh.PasswordFile, "the Redis password")
	}
	if sh.Timeout < 0 || sh.Timeout > 5*time.Second {
		p.add("limits.shared.timeout", "%s: want a duration up to 5s, such as 250ms", sh.Timeout)
	}
}

// redactURL hides a URL's password, for messages.
func redactURL(s string) string {
	if at := strings.LastIndex(s, "@"); at > 0 {
		if i := strings.Index(s, "://"); i >= 0 && i+3 < at {
			return s[:i+3] + "***" + s[at:]
		}
	}
	return s
}
