package loop

import (
	"bufio"
	"bytes"
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
// process listens on its port (ErrPortInUse), checked once the first
// listener is bound and before any loop accepts.
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

// foreignListener reports whether a socket of another process listens on
// port (TCP, any address). Called in OnBoot, when the first listener is
// bound and the loops' are not yet: with SO_REUSEPORT the bind itself
// succeeds next to another process's SO_REUSEPORT listener, so this is what
// refuses a port in use when Config.ReusePort is off.
func foreignListener(port int) (bool, error) {
	ours, err := ownSockets()
	if err != nil {
		return false, err
	}
	return listenerOn(port, func(inode string) bool { return !ours[inode] })
}

// listenerOn reports whether a listening TCP socket on port (any address)
// satisfies match, given its inode number.
func listenerOn(port int, match func(inode string) bool) (bool, error) {
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		found, err := scanListeners(name, port, match)
		if err != nil || found {
			return found, err
		}
	}
	return false, nil
}

// scanListeners reads one /proc/net/tcp file line by line (it lists every
// socket of the network namespace, tens of thousands on a busy machine).
func scanListeners(name string, port int, match func(inode string) bool) (bool, error) {
	f, err := os.Open(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), []byte(" 0A ")) { // cheap pre-check, no allocation
			continue
		}
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
			continue
		}
		i := strings.LastIndexByte(fs[1], ':')
		p, err := strconv.ParseUint(fs[1][i+1:], 16, 16)
		if err != nil || int(p) != port {
			continue
		}
		if match(fs[9]) {
			return true, nil
		}
	}
	return false, sc.Err()
}

// ownSockets returns the inode numbers of this process's sockets.
func ownSockets() (map[string]bool, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	m := make(map[string]bool, len(ents))
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		m[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
	}
	return m, nil
}

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
	a, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, nil, err
	}
	family, sa := syscall.AF_INET, syscall.Sockaddr(&syscall.SockaddrInet4{})
	if ip4 := a.IP.To4(); ip4 != nil {
		s4 := &syscall.SockaddrInet4{}
		copy(s4.Addr[:], ip4)
		sa = s4
	} else if a.IP != nil {
		family = syscall.AF_INET6
		s6 := &syscall.SockaddrInet6{}
		copy(s6.Addr[:], a.IP.To16())
		sa = s6
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

// soReusePort is SO_REUSEPORT on Linux.
const soReusePort = 0xf
