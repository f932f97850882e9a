//go:build !unix

package keys

// LockRotations is a no-op where flock(2) is missing: run one `keys rotate` at a time.
func LockRotations(path string) (unlock func(), err error) { return func() {}, nil }
