package loop

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/reverbgo/reverb/internal/testkit"
	"github.com/reverbgo/reverb/pusher"
)

// listenersOn returns this process's listening TCP sockets on port with
// their TCP_DEFER_ACCEPT values.
func listenersOn(t *testing.T, port int) []int {
	t.Helper()
	var defers []int
	for fd := range 4096 {
		if v, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err != nil || v != 1 {
			continue
		}
		sa, err := syscall.Getsockname(fd)
		if err != nil {
			continue
		}
		if a, ok := sa.(*syscall.SockaddrInet4); !ok || a.Port != port {
			continue
		}
		d, err := syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT)
		if err != nil {
			t.Fatal(err)
		}
		defers = append(defers, d)
	}
	return defers
}

// Every loop listens on the same port (picked when the configured port is
// 0), each socket defers accepting until the first bytes, and every loop
// accepts connections.
func TestEveryLoopHasItsOwnListener(t *testing.T) {
	srv, addr := startServer(t, pusher.Options{}, Config{Loops: 3})
	port := testkit.Port(t, addr)
	defers := listenersOn(t, port)
	if len(defers) != 3 {
		t.Fatalf("%d listeners on port %d, want 3", len(defers), port)
	}
	for _, d := range defers {
		if d == 0 {
			t.Fatalf("TCP_DEFER_ACCEPT not set: %v", defers)
		}
	}
	// Connections from many source ports land on every loop.
	var clients []*wsClient
	for range 60 {
		c := connect(t, addr, testKey, "")
		c.established()
		clients = append(clients, c)
	}
	// A loop's shard is made on its first connection.
	srv.mu.Lock()
	busy := len(srv.list)
	srv.mu.Unlock()
	if busy < 2 {
		t.Fatalf("connections reached %d of 3 loops", busy)
	}
	for _, c := range clients {
		c.conn.Close()
	}
}

// A second server on a port another one listens on refuses to start unless
// both share it with ReusePort.
func TestPortInUseIsRefusedWithoutReusePort(t *testing.T) {
	for round := range 3 {
		_, addr := startServer(t, pusher.Options{}, Config{})
		port := testkit.Port(t, addr)
		px, err := pusher.NewServer(pusher.Options{Apps: []*pusher.App{testApp()}}, 2)
		if err != nil {
			t.Fatal(err)
		}
		second := New(px, Config{Host: "127.0.0.1", Port: port, Loops: 2})
		done := make(chan error, 1)
		go func() { done <- second.Run() }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrPortInUse) {
				t.Fatalf("round %d: Run = %v, want ErrPortInUse", round, err)
			}
		case <-time.After(10 * time.Second):
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = second.Stop(ctx)
			cancel()
			t.Fatalf("round %d: the second server started on a port in use", round)
		}
	}
}

// With ReusePort on both, two servers share the port and both serve.
func TestReusePortSharesThePort(t *testing.T) {
	_, addr := startServer(t, pusher.Options{}, Config{ReusePort: true})
	port := testkit.Port(t, addr)
	px, err := pusher.NewServer(pusher.Options{Apps: []*pusher.App{testApp()}}, 2)
	if err != nil {
		t.Fatal(err)
	}
	second := New(px, Config{Host: "127.0.0.1", Port: port, Loops: 2, ReusePort: true})
	addr2 := testkit.Serve(t, second)
	if addr2 != net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) {
		t.Fatalf("second server on %s", addr2)
	}
	if n := len(listenersOn(t, port)); n != 4 {
		t.Fatalf("%d listeners on the shared port, want 4", n)
	}
	c := connect(t, addr2, testKey, "")
	c.established()
}

// Regression: a draining server sharing its port (reuse_port) kept its
// listeners in the port's SO_REUSEPORT group, so the kernel kept handing it
// a share of the new connections, its own clients' reconnects among them:
// each was told to reconnect (4200) again, and once the server was too busy
// to accept, its share of SYNs overflowed its accept queue and was dropped.
func TestDrainLeavesTheSharedPort(t *testing.T) {
	first, addr := startServer(t, pusher.Options{}, Config{ReusePort: true, Loops: 2})
	port := testkit.Port(t, addr)
	joinPort(t, port)
	if n := len(listenersOn(t, port)); n != 4 {
		t.Fatalf("%d listeners on the shared port, want 4", n)
	}
	// A client of the first server that does not answer its close keeps the
	// first server draining.
	var held *wsClient
	for range 100 {
		c := connect(t, addr, testKey, "")
		c.established()
		if first.eng.CountConnections() > 0 {
			held = c
			break
		}
	}
	if held == nil {
		t.Fatal("no connection reached the first server in 100")
	}
	// The 4200 is sent after the listeners left the group.
	done := drainHeld(t, first, held)
	// Every new connection is established by the second server (about half
	// of them met the draining one before, which refuses them).
	onlySecondServer(t, addr, port)
	endDrain(t, held, done)
}

// A server alone on its port keeps listening while it drains (a client
// meets a 4200, not a refused connection), and leaves the port once another
// process starts listening on it, as a replacement started after the
// SIGTERM does.
func TestDrainAloneLeavesOnceAnotherServerListens(t *testing.T) {
	first, addr := startServer(t, pusher.Options{}, Config{ReusePort: true, Loops: 2})
	port := testkit.Port(t, addr)
	held := connect(t, addr, testKey, "")
	held.established()
	done := drainHeld(t, first, held)
	// Alone on the port, it keeps listening.
	if n := len(listenersOn(t, port)); n != 2 {
		t.Fatalf("%d listeners while the lone server drains, want its 2", n)
	}
	joinPort(t, port)
	onlySecondServer(t, addr, port)
	endDrain(t, held, done)
}

// onlySecondServer waits until only the second server's two listeners are
// on port, then checks that 40 new connections are all established.
func onlySecondServer(t *testing.T, addr string, port int) {
	t.Helper()
	waitListeners(t, port, 2)
	for range 40 {
		c := connect(t, addr, testKey, "")
		c.established()
		c.conn.Close()
	}
}

// Regression: a draining server took its listeners out of the shared port
// only after every task queued on its loops before it had run, and a
// draining loop's queue holds the closes of all its connections: under load
// it stayed in the port's group for seconds, and the connections the kernel
// kept handing it were reset when it left.
func TestDrainLeavesThePortBeforeQueuedTasks(t *testing.T) {
	first, addr := startServer(t, pusher.Options{}, Config{ReusePort: true, Loops: 1})
	port := testkit.Port(t, addr)
	held := connect(t, addr, testKey, "")
	held.established()
	joinPort(t, port)
	waitListeners(t, port, 3)
	first.mu.Lock()
	if len(first.list) != 1 {
		first.mu.Unlock()
		t.Fatalf("%d shards, want 1", len(first.list))
	}
	el := first.list[0].el
	first.mu.Unlock()
	// Three seconds of ordinary tasks ahead of the drain's, more than gnet
	// keeps in its urgent queue.
	const queued = 3000
	var ran atomic.Int64
	for range queued {
		if err := el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			time.Sleep(time.Millisecond)
			ran.Add(1)
			return nil
		})); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- first.Drain(context.Background(), 10*time.Second) }()
	waitListeners(t, port, 2) // the second server's
	if n := ran.Load(); n >= queued {
		t.Fatalf("the listener left after all %d queued tasks had run", n)
	}
	endDrain(t, held, done)
}

// Regression: a draining server on an IPv4 address read /proc/net/tcp6 as
// well, to its end, and so made the kernel walk every socket of the machine
// (two million at the million-connection run) each time it asked whether
// another server listened on its port: it left the port 5-18 s after its
// replacement started listening.
func TestProcNetFiles(t *testing.T) {
	for _, c := range []struct {
		ip   string
		want []string
	}{
		{"127.0.0.1", []string{"/proc/net/tcp"}},
		{"0.0.0.0", []string{"/proc/net/tcp"}},
		{"::ffff:127.0.0.1", []string{"/proc/net/tcp"}},
		{"::1", []string{"/proc/net/tcp6"}},
		{"::", []string{"/proc/net/tcp6"}},
		{"", []string{"/proc/net/tcp", "/proc/net/tcp6"}},
	} {
		if got := procNetFiles(net.ParseIP(c.ip)); !slices.Equal(got, c.want) {
			t.Errorf("procNetFiles(%q) = %v, want %v", c.ip, got, c.want)
		}
	}
}

func TestProcNetIP(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the vectors are a little-endian machine's")
	}
	for _, c := range []struct{ in, want string }{
		{"0100007F", "127.0.0.1"},
		{"0200007F", "127.0.0.2"},
		{"00000000", "0.0.0.0"},
		{"00000000000000000000000001000000", "::1"},
		{"00000000000000000000000000000000", "::"},
		{"0000000000000000FFFF00000100007F", "127.0.0.1"},
		{"zz", "<nil>"},
		{"01000000FF", "<nil>"},
	} {
		if got := procNetIP(c.in).String(); got != c.want {
			t.Errorf("procNetIP(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

// waitListeners waits until this process listens on port with n sockets.
func waitListeners(t *testing.T, port, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := len(listenersOn(t, port))
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d listeners on port %d after 5 s, want %d", got, port, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// joinPort starts a second server on port, sharing it (ReusePort).
func joinPort(t *testing.T, port int) *Server {
	t.Helper()
	px, err := pusher.NewServer(pusher.Options{Apps: []*pusher.App{testApp()}}, 2)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(px, Config{Host: "127.0.0.1", Port: port, Loops: 2, ReusePort: true})
	testkit.Serve(t, srv)
	return srv
}

// drainHeld starts srv's drain and waits until held, a client of srv that
// does not answer its close (and so keeps the drain going), gets the 4200.
// The channel gets what Drain returns.
func drainHeld(t *testing.T, srv *Server, held *wsClient) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.Drain(context.Background(), 10*time.Second) }()
	if e := held.expectEvent("pusher:error"); !strings.Contains(e.DataString(), `"code":4200`) {
		t.Fatalf("held client: %s", e.DataString())
	}
	return done
}

// endDrain closes held and waits for the drain to return.
func endDrain(t *testing.T, held *wsClient, done <-chan error) {
	t.Helper()
	held.conn.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Drain did not return")
	}
}
