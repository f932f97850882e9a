//go:build unix

package keys

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// LockRotations takes the lock of the rotation state file at path (an flock(2) on
// path+".lock"), so that `keys rotate` and a running serve do not overwrite each other's
// changes; unlock releases it. It waits while another process holds it.
func LockRotations(path string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keys: rotation lock: %w", err)
	}
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keys: rotation lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("keys: rotation lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}
