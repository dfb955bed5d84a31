//go:build !linux

package bench

import "syscall"

// bindNoPort does nothing where IP_BIND_ADDRESS_NO_PORT does not exist.
func bindNoPort(_, _ string, _ syscall.RawConn) error { return nil }

// reuseAddr does nothing where the bench does not choose source ports.
func reuseAddr(_, _ string, _ syscall.RawConn) error { return nil }
