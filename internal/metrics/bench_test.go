package metrics

import (
	"crypto/tls"
	"testing"
	"time"
)

// BenchmarkPerMessage is what an accepted, signed and sealed message and one refusal
// cost in counting: it must stay negligible beside signing (tens of microseconds).
func BenchmarkPerMessage(b *testing.B) {
	m := New(testReasons)
	b.ReportAllocs()
	for b.Loop() {
		m.TLSIn(tls.VersionTLS13)
		m.Signed("client.example")
		m.Sealed("relay.example")
		m.Accepted(3 * time.Millisecond)
		m.Refused("sender_not_permitted")
	}
}
