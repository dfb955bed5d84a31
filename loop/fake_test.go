package loop

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/reverbgo/reverb/pusher"
	"github.com/reverbgo/reverb/wsproto"
)

// harness runs the connection handlers of a Server on one shard without
// gnet and without sockets: the test is the event loop. Every read is
// exactly the bytes the test feeds, and writes fail exactly where the test
// says, so the tests are deterministic where real sockets need resets and
// timing.
type harness struct {
	t  *testing.T
	s  *Server
	sh *shard

	mu      sync.Mutex
	pending []func() // run on "the loop" by settle, like EventLoop.Execute
	conns   []*fakeConn
}

// newHarness builds a pusher server with one shard and a transport around
// it (not started).
func newHarness(t *testing.T, opts pusher.Options) *harness {
	t.Helper()
	if len(opts.Apps) == 0 {
		opts.Apps = []*pusher.App{testApp()}
	}
	px, err := pusher.NewServer(opts, 1)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, s: New(px, Config{Loops: 1})}
	h.sh = &shard{http: make(map[*connState]struct{})}
	h.sh.px = px.NewShard(func(f func()) {
		h.mu.Lock()
		h.pending = append(h.pending, f)
		h.mu.Unlock()
	})
	return h
}

// settle runs what was queued for the loop and the closes that were asked
// for, until nothing is left: what gnet does after a handler returns.
func (h *harness) settle() {
	for {
		h.mu.Lock()
		jobs := h.pending
		h.pending = nil
		h.mu.Unlock()
		for _, f := range jobs {
			f()
		}
		closed := false
		for _, f := range h.conns {
			if f.closeAsked && !f.closed {
				f.closeNow()
				closed = true
			}
		}
		if len(jobs) == 0 && !closed {
			return
		}
	}
}

// connections returns the app's open sessions on the node.
func (h *harness) connections(key string) int64 {
	for _, a := range h.s.px.Apps() {
		if a.Key == key {
			return h.s.px.Connections(a)
		}
	}
	h.t.Fatalf("no app with key %q", key)
	return 0
}

// fakeConn is a connection as the handlers see it (conn), behaving as
// gnet.Conn does where they depend on it: Peek(-1) returns everything
// buffered, Discard(n) with n <= 0 drops everything buffered, a write that
// fails closes the connection inside the call (onClose runs before Write
// returns), and Close only asks for a close that happens after the handler
// returned. It fails the test when the handlers touch the connection after
// it closed, as gnet's buffers and fd are gone (or reused) by then.
type fakeConn struct {
	h  *harness
	st *connState

	in     []byte
	out    bytes.Buffer // what was written, not yet taken by the test
	writes int          // write calls so far
	failAt int          // the write call that fails (1-based); 0: none

	closeAsked bool
	closed     bool
}

// dial opens a connection whose failAt-th write fails (0: none).
func (h *harness) dial(failAt int) *fakeConn {
	f := &fakeConn{h: h, failAt: failAt}
	f.st = h.s.newConn(h.sh, f)
	h.conns = append(h.conns, f)
	return f
}

// feed delivers b as one read and runs the loop until it is idle.
func (f *fakeConn) feed(b []byte) {
	f.h.t.Helper()
	if f.closed {
		f.h.t.Fatalf("feeding a closed connection")
	}
	f.in = append(f.in, b...)
	defer func() {
		if r := recover(); r != nil {
			f.h.t.Fatalf("the handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	if f.h.s.onTraffic(f.st) == gnet.Close {
		f.closeNow()
	}
	f.h.settle()
}

// closeNow closes the connection as gnet does: once, calling onClose.
func (f *fakeConn) closeNow() {
	if !f.closed {
		f.closed = true
		f.in = nil
		f.h.s.onClose(f.st)
	}
}

func (f *fakeConn) afterClose(op string) {
	f.h.t.Helper()
	f.h.t.Errorf("%s on a closed connection", op)
}

func (f *fakeConn) Peek(n int) ([]byte, error) {
	if f.closed {
		f.afterClose("Peek")
		return nil, errClosed
	}
	if n <= 0 || n > len(f.in) {
		return f.in, nil
	}
	return f.in[:n], nil
}

func (f *fakeConn) Discard(n int) (int, error) {
	if f.closed {
		f.afterClose("Discard")
		return 0, errClosed
	}
	if n <= 0 || n > len(f.in) {
		n = len(f.in)
	}
	f.in = f.in[n:]
	return n, nil
}

func (f *fakeConn) InboundBuffered() int { return len(f.in) }

func (f *fakeConn) Write(b []byte) (int, error) {
	return f.Writev([][]byte{b})
}

func (f *fakeConn) Writev(bs [][]byte) (int, error) {
	if f.closed {
		f.afterClose(fmt.Sprintf("Write of %q", bytes.Join(bs, nil)))
		return 0, errClosed
	}
	f.writes++
	if f.writes == f.failAt {
		f.closeNow()
		return 0, syscall.ECONNRESET
	}
	n := 0
	for _, b := range bs {
		n += len(b)
		f.out.Write(b)
	}
	return n, nil
}

func (f *fakeConn) OutboundBuffered() int { return 0 }

func (f *fakeConn) AsyncWrite([]byte, gnet.AsyncCallback) error {
	f.h.t.Error("AsyncWrite: the harness serves no API requests")
	return errors.ErrUnsupported
}

func (f *fakeConn) Wake(gnet.AsyncCallback) error {
	f.h.t.Error("Wake: the harness serves no API requests")
	return errors.ErrUnsupported
}

func (f *fakeConn) Close() error {
	f.closeAsked = true
	return nil
}

// takeResponse removes an HTTP response head (and its body, by
// Content-Length) from the output and returns its status.
func (f *fakeConn) takeResponse() int {
	f.h.t.Helper()
	b := f.out.Bytes()
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 || !bytes.HasPrefix(b, []byte("HTTP/1.1 ")) || len(b) < 12 {
		f.h.t.Fatalf("no HTTP response in %q", b)
	}
	status, _ := strconv.Atoi(string(b[9:12]))
	n := end + 4
	for _, line := range strings.Split(string(b[:end]), "\r\n") {
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			k, _ := strconv.Atoi(v)
			n += k
		}
	}
	f.out.Next(n)
	return status
}

// takeFrame removes the next server frame from the output.
func (f *fakeConn) takeFrame() frame {
	f.h.t.Helper()
	h, n, err := wsproto.ParseHeader(f.out.Bytes())
	if err != nil || n == 0 || int64(f.out.Len()-n) < h.Length || h.Masked {
		f.h.t.Fatalf("no complete server frame in %q", f.out.Bytes())
	}
	f.out.Next(n)
	return frame{op: h.OpCode, payload: append([]byte(nil), f.out.Next(int(h.Length))...)}
}

// takeEvent removes the next frame, which must be a Pusher event.
func (f *fakeConn) takeEvent() event {
	f.h.t.Helper()
	fr := f.takeFrame()
	var e event
	if fr.op != ws.OpText || json.Unmarshal(fr.payload, &e) != nil {
		f.h.t.Fatalf("expected an event, got opcode %d %q", fr.op, fr.payload)
	}
	return e
}

// expectEvent removes the next frame, which must be the event name.
func (f *fakeConn) expectEvent(name string) event {
	f.h.t.Helper()
	e := f.takeEvent()
	if e.Event != name {
		f.h.t.Fatalf("expected %s, got %s %s", name, e.Event, e.Data)
	}
	return e
}

// expectNothing checks that nothing more was written.
func (f *fakeConn) expectNothing() {
	f.h.t.Helper()
	if f.out.Len() > 0 {
		f.h.t.Fatalf("unexpected output %q", f.out.Bytes())
	}
}

// fakeUpgrade is the upgrade request of the fake connections.
func fakeUpgrade(key string) []byte {
	return fmt.Appendf(nil, upgradeReq, "/app/"+key+"?protocol=7", "fake", "")
}

// connect upgrades a new connection (whose failAt-th write fails) to app
// key and, unless the 101 or connection_established could not be written,
// returns its socket id.
func (h *harness) connect(key string, failAt int) (*fakeConn, string) {
	h.t.Helper()
	f := h.dial(failAt)
	f.feed(fakeUpgrade(key))
	if f.closed {
		return f, ""
	}
	if status := f.takeResponse(); status != 101 {
		h.t.Fatalf("upgrade: status %d", status)
	}
	e := f.expectEvent("pusher:connection_established")
	var d struct {
		SocketID string `json:"socket_id"`
	}
	_ = json.Unmarshal([]byte(e.DataString()), &d)
	return f, d.SocketID
}

// clientFrame is a masked client text frame.
func clientFrame(msg string) []byte {
	return wsproto.AppendClientFrame(nil, ws.OpText, true, []byte(msg), testMask)
}
