package redistest

import "syscall"

// sysProcAttr makes the kernel kill a child when the test binary dies
// without running its cleanups, for instance when `go test -timeout`
// panics. Go only ends an OS thread when a goroutine locked to it returns,
// which this package never does, so the signal is not sent early.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
