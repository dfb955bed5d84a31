package loop

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// Listeners.
//
// On Linux every event loop has its own listening socket (SO_REUSEPORT), so a
// connection is accepted by the loop that will own it: no main reactor
// accepting and handing the socket over, which costs a cross-thread wake-up
// (an eventfd write and an extra epoll round) per connection. The kernel
// spreads connections over the loops' sockets by a hash of the addresses.
//
// SO_REUSEPORT also lets another process bind the same port. Unless
// Config.ReusePort asks for that, the server refuses to start when another
// process listens on its port (ErrPortInUse), checked before the listeners
// are bound by binding a probe socket without SO_REUSEPORT (portBusy).
//
// The listeners also get TCP_DEFER_ACCEPT: the kernel reports a connection
// once its first bytes (the HTTP request or the TLS ClientHello) have
// arrived, so accepting it and reading its request happen in one wake-up of
// the loop instead of two. A client that connects and sends nothing is
// accepted after deferAcceptSeconds anyway and then meets the handshake
// timeout.

// deferAcceptSeconds is the TCP_DEFER_ACCEPT timeout set on the listeners.
const deferAcceptSeconds = 5

// perLoopListeners reports whether the loops get one listener each: on
// Linux, where SO_REUSEPORT balances connections over the sockets.
func perLoopListeners() bool { return runtime.GOOS == "linux" }

// tuneListeners sets TCP_DEFER_ACCEPT on every listening TCP socket of this
// process bound to port. gnet creates the loops' listeners itself and
// exposes only the first, so they are found through /proc/self/fd. It
// returns how many sockets it tuned.
func tuneListeners(port int) (int, error) {
	if runtime.GOOS != "linux" || port == 0 {
		return 0, nil
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || !strings.HasPrefix(link, "socket:") {
			continue
		}
		if v, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err != nil || v != 1 {
			continue
		}
		if typ, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE); err != nil || typ != syscall.SOCK_STREAM {
			continue
		}
		sa, err := syscall.Getsockname(fd)
		if err != nil {
			continue
		}
		var p int
		switch a := sa.(type) {
		case *syscall.SockaddrInet4:
			p = a.Port
		case *syscall.SockaddrInet6:
			p = a.Port
		default:
			continue
		}
		if p != port {
			continue
		}
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, deferAcceptSeconds); err != nil {
			errs = append(errs, fmt.Errorf("fd %d: %w", fd, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// reservePort picks a free port on host for the loops' listeners to share:
// with port 0 each loop's listener would get a port of its own. It binds
// (without listening, so it takes no connections) a SO_REUSEPORT socket to
// host:0 and keeps it until release, so that no other program takes the
// port before the loops have bound it.
func reservePort(host string) (port int, release func(), err error) {
	family, sa, err := sockaddrOf(host, 0)
	if err != nil {
		return 0, nil, err
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, err
	}
	release = func() { _ = syscall.Close(fd) }
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		release()
		return 0, nil, err
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, soReusePort, 1); err != nil {
		release()
		return 0, nil, err
	}
	if err := syscall.Bind(fd, sa); err != nil {
		release()
		return 0, nil, err
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		release()
		return 0, nil, err
	}
	switch g := got.(type) {
	case *syscall.SockaddrInet4:
		port = g.Port
	case *syscall.SockaddrInet6:
		port = g.Port
	}
	return port, release, nil
}

// sockaddrOf resolves host:port for a raw socket.
func sockaddrOf(host string, port int) (family int, sa syscall.Sockaddr, err error) {
	a, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return 0, nil, err
	}
	if ip4 := a.IP.To4(); ip4 != nil {
		s4 := &syscall.SockaddrInet4{Port: a.Port}
		copy(s4.Addr[:], ip4)
		return syscall.AF_INET, s4, nil
	}
	if a.IP != nil {
		s6 := &syscall.SockaddrInet6{Port: a.Port}
		copy(s6.Addr[:], a.IP.To16())
		return syscall.AF_INET6, s6, nil
	}
	return syscall.AF_INET, &syscall.SockaddrInet4{Port: a.Port}, nil
}

// portBusy reports whether another socket holds host:port: it binds (without
// listening) a socket without SO_REUSEPORT there, which any listener on the
// port refuses, with or without SO_REUSEPORT, while connections left in
// TIME_WAIT do not (SO_REUSEADDR). Unlike a scan of /proc/net/tcp, it costs
// the same on a machine holding a million sockets.
func portBusy(host string, port int) (bool, error) {
	family, sa, err := sockaddrOf(host, port)
	if err != nil {
		return false, err
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer syscall.Close(fd)
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return false, err
	}
	if err := syscall.Bind(fd, sa); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return true, nil
		}
		return false, err
	}
	return false, nil
}

// soReusePort is SO_REUSEPORT on Linux.
const soReusePort = 0xf
