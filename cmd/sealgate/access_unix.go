//go:build unix

package main

import "golang.org/x/sys/unix"

// canWrite reports whether this process may create files in dir (access(2)).
func canWrite(dir string) error { return unix.Access(dir, unix.W_OK|unix.X_OK) }
