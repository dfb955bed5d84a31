package loop

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
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

// listenerFDs returns the listening TCP sockets of this process bound to
// port. gnet creates the loops' listeners itself and exposes only the first,
// so they are found through /proc/self/fd.
func listenerFDs(port int) ([]int, error) {
	if runtime.GOOS != "linux" || port == 0 {
		return nil, nil
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	var fds []int
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
		if p == port {
			fds = append(fds, fd)
		}
	}
	return fds, nil
}

// claimed holds the listener fds a Server of this process has claimed
// (claimListeners), so that two Servers sharing a port in one process (as
// tests run them) each find their own.
var (
	claimedMu sync.Mutex
	claimed   = map[int]bool{}
)

// claimListeners returns the listeners on port that no other Server of this
// process has claimed, and claims them. A Server calls it once its loops
// listen; Servers sharing a port in one process must become ready one after
// another for each to claim only its own.
func claimListeners(port int) ([]int, error) {
	claimedMu.Lock()
	defer claimedMu.Unlock()
	all, err := listenerFDs(port)
	var mine []int
	for _, fd := range all {
		if !claimed[fd] {
			claimed[fd] = true
			mine = append(mine, fd)
		}
	}
	return mine, err
}

// unclaimListeners forgets fds, closed with their Server.
func unclaimListeners(fds []int) {
	claimedMu.Lock()
	defer claimedMu.Unlock()
	for _, fd := range fds {
		delete(claimed, fd)
	}
}

// tuneListeners sets TCP_DEFER_ACCEPT on the listening sockets fds. It
// returns how many sockets it tuned.
func tuneListeners(fds []int) (int, error) {
	n := 0
	var errs []error
	for _, fd := range fds {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, deferAcceptSeconds); err != nil {
			errs = append(errs, fmt.Errorf("fd %d: %w", fd, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// Leaving the port.
//
// A draining server that shares its port with others (reuse_port) takes its
// listeners out of the port's SO_REUSEPORT group once another process listens
// on the port too (listenersOnPort), so that the kernel sends
// new connections, its own clients' reconnects above all, to the other
// servers only. Otherwise the kernel would keep handing the draining server
// its share of them: each would be told to go away (4200) and reconnect
// again, and once the server is too busy to accept, or has stopped, its
// share of SYNs would overflow its accept queue and be dropped, leaving
// those clients to retransmit for a minute (TcpExtListenDrops).
//
// shutdown(SHUT_RD) on a listening socket stops it listening and unhashes it
// from the group (the same call HAProxy pauses a listener with); the fd stays
// open, for gnet to close at the end. A connection already in its accept
// queue is reset (the client reconnects elsewhere). The listener is taken
// out of its loop's epoll first and a task is run on every loop before the
// shutdown: a loop must never accept() on the socket after it (EINVAL stops
// a gnet loop), and an event for it returned by an epoll_wait before the
// removal is handled before the loop runs tasks.

// listenersOnPort counts the listening TCP sockets bound to port in this
// network namespace, every process's, on ip or on the wildcard address (ip
// nil: on any address). The kernel lists the listening sockets first in
// /proc/net/tcp and tcp6, so only that part is read: with a million
// connections on the machine the whole file takes seconds. Only the file of
// ip's family is read (see procNetFiles). The listing has been seen to miss
// listeners now and then (during test runs that open and close many), so a
// count may come out low: Drain asks again every 100 ms.
func listenersOnPort(ip net.IP, port int) (int, error) {
	n := 0
	for _, name := range procNetFiles(ip) {
		f, err := os.Open(name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return 0, err
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			// "  0: 0100007F:4774 00000000:0000 0A ..."
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 {
				continue
			}
			if fields[3] != "0A" { // past the listening sockets
				break
			}
			local := fields[1]
			i := strings.LastIndexByte(local, ':')
			p, err := strconv.ParseUint(local[i+1:], 16, 32)
			if err != nil || int(p) != port {
				continue
			}
			if a := procNetIP(local[:i]); ip == nil || a == nil || a.IsUnspecified() || a.Equal(ip) {
				n++
			}
		}
		f.Close()
	}
	return n, nil
}

// procNetFiles are the listings of /proc/net that can hold a listener on
// ip: tcp for an IPv4 address, tcp6 for an IPv6 one, both for nil. Reading
// the other family's listing costs what reading the whole file costs: with
// no socket of that family, no line ends the listening part early, and the
// kernel walks every socket of the machine to reach the end (at 2,000,000
// sockets, seconds of CPU per read, every 100 ms of a drain).
func procNetFiles(ip net.IP) []string {
	switch {
	case ip == nil:
		return []string{"/proc/net/tcp", "/proc/net/tcp6"}
	case ip.To4() != nil:
		return []string{"/proc/net/tcp"}
	default:
		return []string{"/proc/net/tcp6"}
	}
}

// procNetIP decodes an address of /proc/net/tcp or tcp6: 32-bit words in
// hex, each in the machine's byte order. It returns nil if it cannot.
func procNetIP(h string) net.IP {
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return nil
	}
	ip := make(net.IP, len(b))
	for i := 0; i < len(b); i += 4 {
		binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(b[i:]))
	}
	return ip
}

// epollWatchers maps every fd watched by an epoll instance of this process
// to that instance's fd, read from /proc/self/fdinfo.
func epollWatchers() (map[int]int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	w := map[int]int{}
	for _, e := range ents {
		ep, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		b, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			// "tfd:       12 events:       19 data: ..."
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "tfd:" {
				if fd, err := strconv.Atoi(f[1]); err == nil {
					w[fd] = ep
				}
			}
		}
	}
	return w, nil
}

// unwatchListeners takes fds out of the epoll instances that watch them. It
// returns how many it took out.
func unwatchListeners(fds []int) (int, error) {
	w, err := epollWatchers()
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, fd := range fds {
		ep, ok := w[fd]
		if !ok {
			continue
		}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_DEL, fd, nil); err != nil {
			errs = append(errs, fmt.Errorf("epoll %d, fd %d: %w", ep, fd, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// stopListening shuts fds down for reading, which on a listening socket
// stops it listening and takes it out of its SO_REUSEPORT group. It returns
// how many it stopped.
func stopListening(fds []int) (int, error) {
	n := 0
	var errs []error
	for _, fd := range fds {
		if err := syscall.Shutdown(fd, syscall.SHUT_RD); err != nil {
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
