// Package secretfile is sealgate's one rule for files holding secrets (DKIM and ARC keys,
// TLS private keys, the users file, the pseudonym and SRS secrets, smart host passwords):
// such a file must be a regular file that neither group nor other users can read or change,
// so that a key or password is never readable by another account on the host.
//
// It checks a file's mode only; it does not read, create or chmod files.
package secretfile

import (
	"fmt"
	"io/fs"
)

// CheckMode applies the rule to the file at path, described by fi. what names the contents
// in the error ("the private key"), which names the file and says how to fix it.
func CheckMode(path string, fi fs.FileInfo, what string) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		verb := "read"
		if perm&0o044 == 0 {
			verb = "change"
		}
		return fmt.Errorf("%s: mode %04o lets others %s %s; chmod 600 it", path, perm, verb, what)
	}
	return nil
}
