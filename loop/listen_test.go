package loop

import (
	"context"
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

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
