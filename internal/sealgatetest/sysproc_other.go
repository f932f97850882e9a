//go:build !linux

package sealgatetest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
