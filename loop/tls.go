package loop

import (
	"context"
	"io"
	"math"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/reverbgo/reverb/internal/looptls"
)

// TLS: when Config.TLS is set, gnet listens on the public address itself and
// TLS runs inside the event loops (internal/looptls): handshakes on a bounded
// pool of workers (Config.TLSHandshakeWorkers, Config.TLSHandshakeQueue),
// then the record layer on the connection's loop. A TLS connection's state
// has a tlsConn as its conn: the HTTP and WebSocket handlers read the
// decrypted input and write plaintext through it, unchanged.
//
// Life of a TLS connection:
//   - onOpen (openTLS): a looptls.Conn is made; the loop's HTTP handshake
//     timeout is suspended while the TLS handshake runs, which looptls
//     bounds by HandshakeTimeout itself (failures, timeouts and refusals are
//     counted in Stats.TLS).
//   - the handshake's records, made on a worker, are written by tasks on
//     the loop; at its end a last task writes what is left, marks the
//     connection ready and wakes it (done).
//   - onTraffic (tlsInput): ciphertext goes to the handshake; once the
//     connection is ready, everything is decrypted into the tlsConn's
//     plaintext buffer and the handlers run over it. The HTTP handshake
//     timeout starts again from there.
//   - writes on the loop encrypt at once and put the records in gnet's
//     outbound buffer; AsyncWrite (API responses from the worker pool) hops
//     onto the loop first, so records reach the socket in order.
//   - onClose (release): the looptls.Conn is closed.

// TLSStats are the figures of TLS handshakes (zero without TLS).
type TLSStats struct {
	// InProgress is the number of TLS handshakes under way (gauge); each of
	// them is an open connection too.
	InProgress int64
	// Failed counts handshakes that failed (not TLS, bad messages, alerts,
	// too much input), timeouts excluded.
	Failed int64
	// TimedOut counts handshakes that did not finish within
	// HandshakeTimeout.
	TimedOut int64
	// Refused counts connections closed because every handshake worker was
	// busy and the queue was full.
	Refused int64
	// MemoryReleases counts the times free memory was returned to the OS
	// after a burst of handshakes (releaseAfterBurst).
	MemoryReleases int64
}

// startTLS makes the looptls server when TLS is configured and returns the
// function that stops it. Called by Run before the engine starts.
func (s *Server) startTLS() (stop func()) {
	if s.cfg.TLS == nil {
		return func() {}
	}
	s.tls = looptls.NewServer(s.cfg.TLS, looptls.Options{
		Workers:          s.cfg.TLSHandshakeWorkers,
		Queue:            s.cfg.TLSHandshakeQueue,
		HandshakeTimeout: s.cfg.HandshakeTimeout,
	})
	return s.tls.Close
}

// tlsStats returns the handshake figures. Goroutine-safe.
func (s *Server) tlsStats() TLSStats {
	if s.tls == nil {
		return TLSStats{}
	}
	st := s.tls.Stats()
	return TLSStats{InProgress: st.InProgress, Failed: st.Failed, TimedOut: st.TimedOut, Refused: st.Refused, MemoryReleases: s.memReleases.Load()}
}

// openTLS puts a new connection's state behind TLS. Runs on the loop, in
// onOpen.
func (s *Server) openTLS(st *connState, c gnet.Conn) {
	t := &tlsConn{gc: c, sh: st.sh, idx: -1}
	t.tc = s.tls.NewConn(c.RemoteAddr(), t.out, t.done)
	st.c = t
	st.tls = t
	// The sweep of HTTP handshakes leaves the connection alone (except when
	// draining) until the TLS handshake ended: looptls times it out.
	st.since = math.MaxInt64
}

// tlsInput takes the ciphertext gnet read: it feeds the handshake, or
// decrypts it (and what the handshake left buffered) into the plaintext
// buffer. It reports whether the handlers should run over that buffer; if
// not, onTraffic returns the action. Runs on the loop, first in onTraffic.
func (s *Server) tlsInput(st *connState) (gnet.Action, bool) {
	t := st.tls
	buf, _ := t.gc.Next(-1)
	if !t.ready {
		// Handshake (or its end not seen on the loop yet: the input waits in
		// tc, decrypted below once ready). Feed copies buf.
		if len(buf) > 0 {
			if err := t.tc.Feed(buf); err != nil {
				return gnet.Close, false
			}
		}
		return gnet.None, false
	}
	if st.since == math.MaxInt64 {
		// First input after the handshake: the HTTP request's own timeout
		// starts.
		st.since = time.Now().UnixNano()
	}
	if t.plain == nil {
		t.getPlain()
	}
	t.used = true
	var err error
	t.plain, err = t.tc.Decrypt(t.plain, buf)
	if err != nil {
		// close_notify (io.EOF) or a bad record: the connection is over.
		t.dropPlain()
		return gnet.Close, false
	}
	if len(t.plain) == 0 {
		t.putPlain()
		return gnet.None, false
	}
	return gnet.None, true
}

// maxRecord is the most plaintext one TLS record carries.
const maxRecord = 16 << 10

// Plaintext buffers: a connection holds one only while decrypted input waits
// to be consumed (a partial frame or request, or input behind an API call).
const (
	plainBufSize = 4 << 10  // initial capacity
	maxPooledBuf = 64 << 10 // larger buffers are left to the garbage collector
)

var (
	plainBufs   = sync.Pool{New: func() any { b := make([]byte, 0, plainBufSize); return &b }}
	scratchBufs = sync.Pool{New: func() any { b := make([]byte, 0, maxRecord); return &b }}
)

// tlsConn is the conn of a TLS connection: a gnet.Conn with a looptls.Conn
// over it. Reads (Peek, Discard, InboundBuffered) see the decrypted input;
// Write and Writev encrypt. Loop-only, except AsyncWrite, Wake and Close
// (goroutine-safe) and the looptls callbacks out and done.
type tlsConn struct {
	gc     gnet.Conn
	tc     *looptls.Conn
	plain  []byte  // decrypted input not consumed yet; nil at rest
	box    *[]byte // plainBufs entry plain came from
	ready  bool    // the handshake ended and its records were written
	closed bool    // onClose ran: nothing more goes to gc
	used   bool    // a record went in or out since the last idle sweep
	idx    int32   // position in sh.tlsConns; -1 when not listed
	sh     *shard

	mu sync.Mutex // guards hs
	hs []byte     // handshake records from the worker, not written yet
}

// out sends ciphertext. During the handshake it runs on a worker: the
// records are kept in hs (p is only valid during the call) and written by a
// task on the loop (gnet's Write is loop-only). Afterwards it runs on the
// loop, inside tc's Write, Read or CloseNotify, and goes straight to gnet's
// outbound path. gnet's Write may close the connection inside the call:
// release then sets closed, and the records that follow are dropped (the
// file descriptor may already belong to another connection).
func (t *tlsConn) out(p []byte) {
	if !t.tc.Ready() {
		t.mu.Lock()
		first := len(t.hs) == 0
		t.hs = append(t.hs, p...)
		t.mu.Unlock()
		if first {
			t.onLoop(t.flushHandshake)
		}
		return
	}
	if t.closed {
		return
	}
	_, _ = t.gc.Write(p)
}

// flushHandshake writes the handshake records the worker left. Loop-only.
func (t *tlsConn) flushHandshake() {
	t.mu.Lock()
	b := t.hs
	t.hs = nil
	t.mu.Unlock()
	if len(b) > 0 && !t.closed {
		_, _ = t.gc.Write(b)
	}
}

// done ends the handshake. On success, a task on the loop writes the last
// handshake records, marks the connection ready and wakes it: its onTraffic
// then decrypts what is buffered. Doing both in one task keeps the records
// in order: no record encrypted on the loop can overtake the handshake's
// (as it could if the loop saw tc ready before the worker's writes ran).
// On failure it closes the connection (looptls counted why). Runs on a
// worker or timer goroutine.
func (t *tlsConn) done(err error) {
	if err != nil {
		_ = t.gc.Close()
		return
	}
	t.onLoop(func() {
		t.flushHandshake()
		if t.closed {
			return
		}
		t.ready = true
		t.used = true
		t.idx = int32(len(t.sh.tlsConns))
		t.sh.tlsConns = append(t.sh.tlsConns, t)
		_ = t.gc.Wake(nil)
	})
}

// onLoop runs f on the connection's loop. Goroutine-safe.
func (t *tlsConn) onLoop(f func()) {
	_ = t.gc.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		f()
		return nil
	}))
}

// release runs in onClose, on the loop, possibly inside one of gc's writes.
// The plaintext buffer is dropped, not pooled: a handler up the stack may
// still hold a slice of it.
func (t *tlsConn) release() {
	t.closed = true
	if i := t.idx; i >= 0 {
		l := t.sh.tlsConns
		last := l[len(l)-1]
		l[i], last.idx = last, i
		l[len(l)-1] = nil
		t.sh.tlsConns = l[:len(l)-1]
		t.idx = -1
	}
	t.tc.Close()
	t.plain, t.box = nil, nil
}

func (t *tlsConn) getPlain() {
	t.box = plainBufs.Get().(*[]byte)
	t.plain = (*t.box)[:0]
}

// putPlain returns the plaintext buffer to the pool.
func (t *tlsConn) putPlain() {
	if t.box != nil && cap(t.plain) <= maxPooledBuf {
		*t.box = t.plain[:0]
		plainBufs.Put(t.box)
	}
	t.plain, t.box = nil, nil
}

// dropPlain forgets the plaintext buffer without pooling it.
func (t *tlsConn) dropPlain() { t.plain, t.box = nil, nil }

// Peek returns the first n bytes of decrypted input, all of it for n <= 0.
// The slice is valid until the next Discard.
func (t *tlsConn) Peek(n int) ([]byte, error) {
	switch {
	case n <= 0:
		return t.plain, nil
	case n > len(t.plain):
		return nil, io.ErrShortBuffer
	}
	return t.plain[:n], nil
}

// Discard drops the first n bytes of decrypted input, all of it for n <= 0
// (as gnet does). The buffer goes back to the pool once empty.
func (t *tlsConn) Discard(n int) (int, error) {
	if n <= 0 || n >= len(t.plain) {
		n = len(t.plain)
		t.putPlain()
		return n, nil
	}
	m := copy(t.plain, t.plain[n:])
	t.plain = t.plain[:m]
	return n, nil
}

// InboundBuffered is the decrypted input waiting.
func (t *tlsConn) InboundBuffered() int { return len(t.plain) }

// Write encrypts b and queues the records on the socket. An encryption
// error closes the connection.
func (t *tlsConn) Write(b []byte) (int, error) {
	if t.closed {
		return 0, net.ErrClosed
	}
	t.used = true
	if err := t.tc.Write(b); err != nil {
		_ = t.gc.Close()
		return 0, err
	}
	if t.closed {
		return 0, net.ErrClosed
	}
	return len(b), nil
}

// Writev encrypts bs in order; consecutive small slices share a record
// (a broadcast's frames, for one: one record instead of one per frame).
func (t *tlsConn) Writev(bs [][]byte) (int, error) {
	if len(bs) == 1 {
		return t.Write(bs[0])
	}
	sp := scratchBufs.Get().(*[]byte)
	acc := (*sp)[:0]
	total := 0
	var err error
	for _, b := range bs {
		if len(acc) > 0 && len(acc)+len(b) > maxRecord {
			if _, err = t.Write(acc); err != nil {
				break
			}
			acc = acc[:0]
		}
		if len(b) >= maxRecord {
			if _, err = t.Write(b); err != nil {
				break
			}
		} else {
			acc = append(acc, b...)
		}
		total += len(b)
	}
	if err == nil && len(acc) > 0 {
		_, err = t.Write(acc)
	}
	*sp = acc[:0]
	scratchBufs.Put(sp)
	if err != nil {
		return 0, err
	}
	return total, nil
}

// OutboundBuffered is gnet's: ciphertext bytes not sent yet.
func (t *tlsConn) OutboundBuffered() int { return t.gc.OutboundBuffered() }

// AsyncWrite writes plaintext b from any goroutine: it hops onto the
// connection's loop, encrypts there (records must reach the socket in the
// order they are made) and then runs cb, like gnet's AsyncWrite, with the
// write's error. Goroutine-safe; b must not change afterwards.
func (t *tlsConn) AsyncWrite(b []byte, cb gnet.AsyncCallback) error {
	return t.gc.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		var err error
		if t.closed {
			err = net.ErrClosed
		} else {
			_, err = t.Write(b)
		}
		if cb != nil {
			_ = cb(t.gc, err)
		}
		return nil
	}))
}

// Wake runs onTraffic on the loop (the plaintext waiting is parsed again),
// then cb. Goroutine-safe.
func (t *tlsConn) Wake(cb gnet.AsyncCallback) error { return t.gc.Wake(cb) }

// Close closes the connection after what is buffered is written.
// Goroutine-safe.
func (t *tlsConn) Close() error { return t.gc.Close() }

// shrinkIdleTLS frees the cipher state of the shard's TLS connections that
// neither received nor sent a record since the previous sweep (a second or
// two): an idle connection then keeps only its keys, and its next record
// rebuilds the rest (looptls.Conn.Shrink). Runs on the loop, once a second.
func shrinkIdleTLS(sh *shard) {
	for _, t := range sh.tlsConns {
		if t.used {
			t.used = false
			continue
		}
		t.tc.Shrink()
	}
}

// After a burst of TLS handshakes (a deploy, a reconnect storm) the heap
// holds the handshakes' garbage, about 65 KB each, and the cipher state the
// idle sweep has since freed: Go keeps such memory for reuse, so the
// process would stay at its peak size. Once a burst of at least
// burstHandshakes is followed by burstQuiet seconds without a handshake, the
// server returns the free memory to the OS, once per burst.
var (
	burstHandshakes int64 = 1000 // a variable for tests
	burstQuiet            = 3
)

// burstState is touched only by the ticker goroutine (onTick).
type burstState struct {
	completed int64 // handshakes completed at the last tick
	burst     int64 // handshakes since the last release
	quiet     int   // ticks without a handshake
}

// releaseAfterBurst runs once a second on the ticker goroutine.
func (s *Server) releaseAfterBurst() {
	if s.tls == nil {
		return
	}
	b := &s.burst
	c := s.tls.Stats().Completed
	d := c - b.completed
	b.completed = c
	if d > 0 {
		b.burst += d
		b.quiet = 0
		return
	}
	b.quiet++
	if b.burst >= burstHandshakes && b.quiet >= burstQuiet {
		n := b.burst
		b.burst = 0
		s.memReleases.Add(1)
		go func() {
			debug.FreeOSMemory()
			s.log.Debug("returned free memory to the OS after a burst of TLS handshakes", "handshakes", n)
		}()
	}
}
