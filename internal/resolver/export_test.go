package resolver

import "time"

// NewWithServers returns a network resolver asking the given servers in order, as one built
// from /etc/resolv.conf would.
func NewWithServers(servers []string, timeout time.Duration) Resolver {
	return newNetResolver(servers, timeout, false)
}

// UnescapeTXT exposes unescapeTXT to the tests.
var UnescapeTXT = unescapeTXT
