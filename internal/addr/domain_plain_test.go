package addr

import (
	"math/rand/v2"
	"testing"
)

// The ASCII fast path of parseDomain (plainLDH) gives what the IDNA path gives for every
// name it takes: the same domain, or the same error.
func TestPlainLDHAgreesWithIDNA(t *testing.T) {
	const alphabet = "abzAZ09-.x"
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []string{"example.com", "example.com.", "EXAMPLE.com", "xn--bcher-kva.example", "a--b.example",
		"ab--c.example", "-a.example", "a-.example", "1.2.3.4", "123.example", "example.123", "a.b", "a"}
	for range 200000 {
		b := make([]byte, 1+rng.IntN(20))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	taken := 0
	for _, s := range cases {
		l := lowerASCIIString(s)
		a, ok := plainLDH(l)
		if !ok {
			continue
		}
		taken++
		fast, ferr := finishDomain(s, a)
		slow, serr := parseDomainIDNA(s, l)
		if fast != slow || (ferr == nil) != (serr == nil) || ferr != nil && ferr.Error() != serr.Error() {
			t.Errorf("%q: fast path %q, %v; IDNA path %q, %v", s, fast, ferr, slow, serr)
		}
	}
	if taken < 1000 {
		t.Errorf("only %d of %d names took the fast path", taken, len(cases))
	}
}

// The two paths of parseDomain on the same plain name.
func BenchmarkParseDomainPlain(b *testing.B) {
	for b.Loop() {
		parseDomain("mail.client.example")
	}
}

func BenchmarkParseDomainIDNAPath(b *testing.B) {
	for b.Loop() {
		parseDomainIDNA("mail.client.example", "mail.client.example")
	}
}
