package libcrypto

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"sealgate/arc"
	"sealgate/internal/dkimcore"
	"sealgate/sign"
)

// The benchmarks compare, in one run, Go's crypto/rsa with the libcrypto signer. Without
// -tags openssl the libcrypto cases are skipped; with GOEXPERIMENT=boringcrypto the Go case
// is BoringCrypto's RSA ("crypto-rsa-boringcrypto"):
//
//	go test -tags openssl -run '^$' -bench . ./internal/libcrypto
//	GOEXPERIMENT=boringcrypto go test -run '^$' -bench . ./internal/libcrypto

type benchSigner struct {
	name string
	rsa  crypto.Signer
}

// benchSigners returns the committed RSA-2048 test key as crypto/rsa signs it and, in a
// build with libcrypto, as libcrypto does.
func benchSigners(b *testing.B) []benchSigner {
	key := testKey(b, 2048)
	goName := "crypto-rsa"
	if goRSA != "crypto/rsa" {
		goName = "crypto-rsa-boringcrypto"
	}
	out := []benchSigner{{goName, key}, {"libcrypto", nil}}
	if Enabled {
		s, err := NewRSASigner(key)
		if err != nil {
			b.Fatal(err)
		}
		out[1].rsa = s
	}
	return out
}

func skipWithoutLibcrypto(b *testing.B, s benchSigner) {
	if s.rsa == nil {
		b.Skip("built without libcrypto: go test -tags openssl (needs cgo and libssl-dev)")
	}
}

// BenchmarkRSA2048Sign is the cost of one RSA-2048 PKCS #1 v1.5 signature of a SHA-256
// digest, what DKIM and ARC sign three times per relayed message.
func BenchmarkRSA2048Sign(b *testing.B) {
	digest := sha256.Sum256([]byte("sealgate"))
	for _, s := range benchSigners(b) {
		b.Run(s.name, func(b *testing.B) {
			skipWithoutLibcrypto(b, s)
			for b.Loop() {
				if _, err := s.rsa.Sign(nil, digest[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRSA2048SignParallel is BenchmarkRSA2048Sign from GOMAXPROCS goroutines sharing
// one key, as the relay's sessions do.
func BenchmarkRSA2048SignParallel(b *testing.B) {
	digest := sha256.Sum256([]byte("sealgate"))
	for _, s := range benchSigners(b) {
		b.Run(s.name, func(b *testing.B) {
			skipWithoutLibcrypto(b, s)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.rsa.Sign(nil, digest[:], crypto.SHA256); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSignSeal2KB is the relay's signing work per 2 KB message: hash the body once,
// DKIM-sign with RSA-2048 and Ed25519, ARC-seal with RSA-2048 (ARC-Message-Signature and
// ARC-Seal), with the RSA key signing through crypto/rsa or libcrypto.
func BenchmarkSignSeal2KB(b *testing.B) {
	msg := benchMessage(2 << 10)
	ed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	when := time.Unix(1791278100, 0)
	for _, s := range benchSigners(b) {
		b.Run(s.name, func(b *testing.B) {
			skipWithoutLibcrypto(b, s)
			dk := &sign.Options{Domain: "corp.example", Time: when,
				Keys: []sign.Key{{Selector: "rsa", Signer: s.rsa}, {Selector: "ed", Signer: ed}}}
			so := &arc.SealOptions{Domain: "relay.example", Selector: "arc", Signer: s.rsa,
				AuthServID: "relay.example", Results: []string{"auth=pass smtp.auth=ana@corp.example"},
				Time: when, Chain: &arc.Result{Status: arc.None}}
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				hdr, body, err := sign.ReadMessage(bytes.NewReader(msg))
				if err != nil {
					b.Fatal(err)
				}
				bodies := dkimcore.HashBody(body, arc.RequiredCanonicalizations(hdr)...)
				sigs, err := sign.Sign(hdr, bodies, dk)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := arc.Seal(context.Background(), append(sigs, hdr...), bodies, so); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchMessage builds a mail-like message of about size bytes: a typical header and
// 72-column text lines, a few with trailing white space.
func benchMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: Ana Ruiz <ana@corp.example>\r\nTo: ops@partner.example\r\n" +
		"Subject: Quarterly numbers\r\nDate: Tue, 06 Oct 2026 09:15:00 +0000\r\n" +
		"Message-ID: <q3-7f2a@corp.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	line := strings.TrimSpace(strings.Repeat("lorem ipsum ", 6))
	for i := 0; b.Len() < size; i++ {
		b.WriteString(line)
		if i%11 == 0 {
			b.WriteString("  ")
		}
		b.WriteString("\r\n")
	}
	return b.Bytes()
}
