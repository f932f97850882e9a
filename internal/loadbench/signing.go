//go:build linux

package main

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// ---- signing cost ----

// measureSigning measures the CPU time (CLOCK_THREAD_CPUTIME_ID, on a locked thread, so
// time the machine gives to others does not count, as it does not in the relay's
// utime+stime) of the four signatures of one message.
func measureSigning(iters int) (signingCost, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return signingCost{}, err
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return signingCost{}, err
	}
	// Distinct digests per signature, as for distinct header sets.
	var digests [4][32]byte
	one := func(i int) error {
		for k := range digests {
			digests[k] = sha256.Sum256([]byte(fmt.Sprintf("message %d signature %d", i, k)))
		}
		for k := range 3 {
			if _, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, digests[k][:]); err != nil {
				return err
			}
		}
		// DKIM ed25519-sha256 (RFC 8463) signs the SHA-256 hash of the header data.
		_ = ed25519.Sign(edKey, digests[3][:])
		return nil
	}
	for i := range 10 { // warm up
		if err := one(i); err != nil {
			return signingCost{}, err
		}
	}
	per := make([]time.Duration, iters)
	var total time.Duration
	for i := range iters {
		t := threadCPU()
		if err := one(i); err != nil {
			return signingCost{}, err
		}
		per[i] = threadCPU() - t
		total += per[i]
	}
	slices.Sort(per)
	// Component split, for the report only.
	t := threadCPU()
	for range 50 {
		rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, digests[0][:])
	}
	rsaEach := (threadCPU() - t) / 50
	t = threadCPU()
	for range 500 {
		ed25519.Sign(edKey, digests[3][:])
	}
	edEach := (threadCPU() - t) / 500
	return signingCost{
		Iterations: iters,
		MedianMS:   ms(per[len(per)/2]),
		MeanMS:     ms(total / time.Duration(iters)),
		RSAMS:      ms(rsaEach),
		Ed25519MS:  ms(edEach),
	}, nil
}

// threadCPU is the CPU time the calling thread has used.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err) // Linux has had this clock since 2.6.12
	}
	return time.Duration(ts.Nano())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
