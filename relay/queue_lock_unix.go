//go:build unix

package relay

import (
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive flock on path, so a second process cannot open the
// same spool and delete the first one's temporary files during recovery.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: lock %s (is another sealgate using this spool?): %w", path, err)
	}
	return f, nil
}
