package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestScaleOutKeys(t *testing.T) {
	c, err, _ := loadWith(t, map[string]string{"redis.pw": "s3cret\n"},
		"    mode: smarthost\n", "    mode: smarthost\n    trusted_proxies: [10.0.0.5, 10.1.0.0/24, \"2001:db8::1\"]\n",
		"dns:\n", "limits:\n  drain_timeout: 5s\n  shared:\n    redis: redis://127.0.0.1:6379/2\n    password_file: redis.pw\n    timeout: 100ms\ndns:\n")
	if err != nil {
		t.Fatal(err)
	}
	got := c.Listeners[1].TrustedProxyPrefixes()
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.5/32"), netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("2001:db8::1/128")}
	if len(got) != len(want) {
		t.Fatalf("trusted proxies %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("trusted proxy %d: %v, want %v", i, got[i], want[i])
		}
	}
	if pw, err := c.Limits.Shared.RedisPassword(); err != nil || pw != "s3cret" {
		t.Errorf("redis password %q, %v", pw, err)
	}
	if c.Limits.DrainTimeout != 5*time.Second || c.Limits.Shared.Timeout != 100*time.Millisecond {
		t.Errorf("limits %+v", c.Limits)
	}

	_, err, _ = loadWith(t, map[string]string{"redis.pw": "s3cret\n"},
		"    mode: smarthost\n", "    mode: smarthost\n    trusted_proxies: [0.0.0.0/0, not-an-address]\n",
		"dns:\n", "limits:\n  drain_timeout: 2h\n  shared:\n    redis: http://127.0.0.1:6379\n    timeout: 10s\ndns:\n")
	onlyProblems(t, err,
		`listeners[1].trusted_proxies[0]: "0.0.0.0/0" trusts every address`,
		`listeners[1].trusted_proxies[1]: "not-an-address": want a CIDR`,
		`limits.drain_timeout: 2h0m0s: want a duration from 0`,
		`limits.shared.redis: "http://127.0.0.1:6379": `,
		`limits.shared.timeout: 10s: want a duration up to 5s`)

	// The password stays out of messages, and a file of secrets must be ours alone.
	_, err, _ = loadWith(t, nil, "dns:\n", "limits:\n  shared:\n    redis: \"redis://:hunter2@[::1\"\n    password_file: nowhere\ndns:\n")
	if err == nil {
		t.Fatal("no problem for a bad URL and a missing password file")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the problem names the password: %v", err)
	}
	wantProblems(t, err, "limits.shared.redis: ", "limits.shared.password_file: ")
}
