package bench

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT on a socket dialed from a chosen
// source address, so that the kernel picks its port at connect time, by the
// whole 4-tuple, instead of at bind time from the ports still free on that
// address: the bind-time search scans the port range and grows slow as a
// million-connection run fills it.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// reuseAddr sets SO_REUSEADDR on a socket about to bind a chosen source
// port, so that a TIME_WAIT left on that port by an earlier run does not
// refuse the bind (the kernel still refuses a 4-tuple in use).
func reuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
