package secretfile_test

import (
	"fmt"
	"os"
	"path/filepath"

	"sealgate/internal/secretfile"
)

// Check a key file before reading it.
func ExampleCheckMode() {
	path := filepath.Join(os.TempDir(), "secretfile-example.pem")
	os.WriteFile(path, nil, 0o600)
	defer os.Remove(path)
	os.Chmod(path, 0o644)
	fi, _ := os.Stat(path)
	fmt.Println(secretfile.CheckMode(path, fi, "the private key") != nil)
	// Output: true
}
