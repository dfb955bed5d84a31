//go:build !linux

package redistest

import "syscall"

// sysProcAttr returns nil: outside Linux there is no parent-death signal,
// and children are only stopped by the test's cleanups.
func sysProcAttr() *syscall.SysProcAttr { return nil }
