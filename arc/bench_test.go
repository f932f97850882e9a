package arc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"

	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver/resolvertest"
	"sealgate/sign"
)

// benchMessage builds a mail-like message of about size bytes: a typical header and
// 72-column text lines, a few with trailing white space.
func benchMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: Ana Ruiz <ana@corp.example>\r\nTo: ops@partner.example\r\nCc: team@corp.example\r\n" +
		"Subject: Quarterly numbers\r\nDate: Tue, 06 Oct 2026 09:15:00 +0000\r\n" +
		"Message-ID: <q3-7f2a@corp.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	for i := 0; b.Len() < size; i++ {
		line := strings.TrimSpace(strings.Repeat("lorem ipsum ", 6))
		if i%11 == 0 {
			line += "  "
		}
		b.WriteString(line + "\r\n")
	}
	return b.Bytes()
}

// signSeal is the relay's per-message signing work: hash the body once, DKIM-sign with
// RSA-2048 and Ed25519, ARC-seal with RSA-2048 (AMS + AS).
func signSeal(b *testing.B, msg []byte, dk *sign.Options, so *SealOptions) {
	hdr, body, err := sign.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		b.Fatal(err)
	}
	bodies := dkimcore.HashBody(body, RequiredCanonicalizations(hdr)...)
	sigs, err := sign.Sign(hdr, bodies, dk)
	if err != nil {
		b.Fatal(err)
	}
	hdr = append(sigs, hdr...)
	if _, _, err := Seal(context.Background(), hdr, bodies, so); err != nil {
		b.Fatal(err)
	}
}

// rawSignatures is the cryptography alone: three RSA-2048 signatures (DKIM, AMS, AS) and one
// Ed25519 signature, each over a SHA-256 digest.
func rawSignatures(rk *rsa.PrivateKey, ek ed25519.PrivateKey) {
	d := sha256.Sum256([]byte("digest"))
	for range 3 {
		rk.Sign(rand.Reader, d[:], crypto.SHA256)
	}
	ek.Sign(rand.Reader, d[:], crypto.Hash(0))
}

// BenchmarkSignSeal measures sign+seal of a 2 KB and a 100 KB message and, in the same run,
// the raw cost of the four signatures, reporting the share of everything else as
// overhead-%. The target is at most 10% for 2 KB and 25% for 100 KB.
func BenchmarkSignSeal(b *testing.B) {
	r, rk, ek := testKeys(&testing.T{})
	_ = r
	dk := &sign.Options{Domain: "corp.example", Keys: []sign.Key{{Selector: "rsa", Signer: rk}, {Selector: "ed", Signer: ek}}, Time: time.Unix(1791278100, 0)}
	so := &SealOptions{Domain: "relay.example", Selector: "rsa", Signer: rk, AuthServID: "relay.example",
		Results: []string{"auth=pass smtp.auth=ana@corp.example"}, Time: time.Unix(1791278100, 0), Chain: &Result{Status: None}}

	var rawNs float64
	b.Run("signatures-only", func(b *testing.B) {
		for b.Loop() {
			rawSignatures(rk, ek)
		}
		rawNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	for _, size := range []int{2 << 10, 100 << 10} {
		msg := benchMessage(size)
		b.Run(fmt.Sprintf("sign+seal-%dKB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			// Interleave raw-signature rounds with the measured loop's own timing so both
			// see the same machine load; report the overhead against them.
			start := time.Now()
			for range 20 {
				rawSignatures(rk, ek)
			}
			localRaw := float64(time.Since(start).Nanoseconds()) / 20
			b.ResetTimer()
			for b.Loop() {
				signSeal(b, msg, dk, so)
			}
			total := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			raw := localRaw
			if rawNs > 0 {
				raw = min(rawNs, localRaw)
			}
			b.ReportMetric(raw/1e6, "raw-sig-ms/op")
			b.ReportMetric(100*(total-raw)/total, "overhead-%")
		})
	}
}

// BenchmarkValidate measures validating a 3-set chain with keys from an in-process zone.
func BenchmarkValidate(b *testing.B) {
	t := &testing.T{}
	r, rk, ek := testKeys(t)
	msg := benchMessage(2 << 10)
	for i, k := range []crypto.Signer{rk, ek, rk} {
		sel := map[int]string{0: "rsa", 1: "ed", 2: "rsa"}[i]
		hdr, body, _ := sign.ReadMessage(bytes.NewReader(msg))
		bodies := dkimcore.HashBody(body, dkimcore.Relaxed)
		f, _, err := Seal(context.Background(), hdr, bodies, &SealOptions{Domain: "relay.example", Selector: sel, Signer: k, AuthServID: "relay.example", Resolver: r})
		if err != nil {
			b.Fatal(err)
		}
		var out bytes.Buffer
		sign.WriteMessage(&out, append(f, hdr...), body)
		msg = out.Bytes()
	}
	hdr, body, _ := sign.ReadMessage(bytes.NewReader(msg))
	for b.Loop() {
		bodies := dkimcore.HashBody(body, dkimcore.Relaxed)
		if res := Validate(context.Background(), hdr, bodies, ValidateOptions{Resolver: r}); res.Status != Pass {
			b.Fatal(res)
		}
	}
}

var _ = resolvertest.NewZone
