// Package resolvertest gives tests DNS without the internet: an in-process DNS server on
// 127.0.0.1 (UDP and TCP on one port) answering from a zone or from any handler, and a
// zone-backed resolver.Resolver.
//
// The server answers like an authoritative server for the zone: records of the exact name,
// CNAME chains inside the zone, NXDOMAIN and NODATA (RFC 2308), and it truncates UDP answers
// larger than the client's EDNS0 buffer (512 octets without EDNS0) so that TCP fallback is
// exercised as in real life. It does not do wildcards, delegation or DNSSEC.
package resolvertest

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/internal/resolver"
	"sealgate/internal/resolver/internal/zonedb"
)

// Start serves zone (RFC 1035 master format; names absolute or after $ORIGIN) on 127.0.0.1 over
// UDP and TCP until the test ends, and returns the server's "127.0.0.1:port" address. A zone
// syntax error fails the test.
func Start(t testing.TB, zone string) (addr string) {
	t.Helper()
	db, err := zonedb.Parse(strings.NewReader(zone), "", "zone")
	if err != nil {
		t.Fatalf("resolvertest: %v", err)
	}
	return StartHandler(t, zoneHandler(db))
}

// zoneHandler is a dns.Handler answering from db, as Start's server does.
func zoneHandler(db *zonedb.DB) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(req)
		resp.Authoritative = true
		resp.RecursionAvailable = true
		if len(req.Question) != 1 {
			resp.Rcode = dns.RcodeFormatError
		} else {
			q := req.Question[0]
			resp.Answer, resp.Rcode = db.Lookup(q.Name, q.Qtype)
		}
		Reply(w, req, resp)
	})
}

// Reply writes resp to w, truncating it as a server must when it came over UDP and does not fit
// the client's buffer (RFC 6891 §6.2.5; 512 octets without EDNS0), and echoing EDNS0.
func Reply(w dns.ResponseWriter, req, resp *dns.Msg) {
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		if opt.UDPSize() > uint16(size) {
			size = int(opt.UDPSize())
		}
		resp.SetEdns0(opt.UDPSize(), false)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		resp.Truncate(size)
	}
	_ = w.WriteMsg(resp)
}

// StartHandler serves h on 127.0.0.1 over UDP and TCP, on the same port, until the test ends
// and returns "127.0.0.1:port". It returns once both listeners are serving.
func StartHandler(t testing.TB, h dns.Handler) (addr string) {
	t.Helper()
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	// The UDP port picked by the kernel may be taken for TCP; try a few.
	for range 20 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("resolvertest: listen udp: %v", err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("resolvertest: listen tcp next to udp: %v", err)
	}
	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: h},
		{Listener: ln, Handler: h},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan error, 1)
		go func() { done <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("resolvertest: serve: %v", err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.ShutdownContext(ctx)
		})
	}
	return pc.LocalAddr().String()
}

// NewZone returns a resolver.Resolver answering from zone (master format) without any network.
// A zone syntax error fails the test.
func NewZone(t testing.TB, zone string) resolver.Resolver {
	t.Helper()
	r, err := resolver.NewZoneResolver(strings.NewReader(zone), "", "zone")
	if err != nil {
		t.Fatalf("resolvertest: %v", err)
	}
	return r
}
