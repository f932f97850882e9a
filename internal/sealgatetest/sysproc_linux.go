package sealgatetest

import "syscall"

// sysProcAttr makes the kernel send the relay SIGTERM if the process that
// started it dies first (a test binary killed by its timeout), so no relay
// outlives its test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
