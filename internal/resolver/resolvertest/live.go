package resolvertest

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"

	"sealgate/internal/resolver/internal/zonedb"
)

// Live is a DNS server like Start's whose zone a test replaces while it runs (a record
// being published, changed or removed).
type Live struct {
	// Addr is the server's "127.0.0.1:port".
	Addr string
	db   atomic.Pointer[zonedb.DB]
}

// StartLive serves zone as Start does, until the test ends; SetZone replaces it.
func StartLive(t testing.TB, zone string) *Live {
	t.Helper()
	l := &Live{}
	l.SetZone(t, zone)
	l.Addr = StartHandler(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		zoneHandler(l.db.Load()).ServeDNS(w, req)
	}))
	return l
}

// SetZone makes zone the whole zone served from now on. A syntax error fails the test.
func (l *Live) SetZone(t testing.TB, zone string) {
	t.Helper()
	db, err := zonedb.Parse(strings.NewReader(zone), "", "zone")
	if err != nil {
		t.Fatalf("resolvertest: %v", err)
	}
	l.db.Store(db)
}
