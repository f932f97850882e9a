//go:build !unix

package relay

import (
	"fmt"
	"os"
)

// lockDir only opens the lock file: without flock, keeping two processes off one
// spool is left to the operator.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: open lock %s: %w", path, err)
	}
	return f, nil
}
