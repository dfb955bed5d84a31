package looptls

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Errors reported by Feed or to a Conn's done callback.
var (
	// ErrOverloaded: every worker is busy and the queue is full; the
	// connection was refused (counted in Stats.Refused).
	ErrOverloaded = errors.New("looptls: too many TLS handshakes in progress")
	// ErrHandshakeTimeout: the handshake did not finish within
	// Options.HandshakeTimeout (counted in Stats.TimedOut).
	ErrHandshakeTimeout = errors.New("looptls: TLS handshake timed out")
	// ErrInputTooLarge: more than Options.MaxPending bytes of input were
	// buffered while the handshake was in progress.
	ErrInputTooLarge = errors.New("looptls: too much input during the TLS handshake")
	// ErrNotReady: Write or CloseNotify before the handshake finished.
	ErrNotReady = errors.New("looptls: TLS handshake not finished")
	// ErrServerClosed: the Server was closed.
	ErrServerClosed = errors.New("looptls: server closed")
)

// Options tune a Server. Zero values take the defaults.
type Options struct {
	// Workers caps the handshakes running at once, each on its own
	// goroutine (started on demand, gone when there is no more work).
	// A handshake holds its worker from the client's first complete record
	// until it finishes, including the client's round trip. Default 256.
	Workers int
	// Queue caps the handshakes waiting for a worker; beyond it a
	// connection is refused (ErrOverloaded). Default 4096.
	Queue int
	// HandshakeTimeout bounds the handshake, counted from NewConn (TCP
	// accept) to the end of the handshake, waiting in the queue included.
	// Default 10s.
	HandshakeTimeout time.Duration
	// MaxPending caps the input buffered during the handshake (the
	// ClientHello and whatever the client sends before the handshake
	// ends). Default 64 KiB.
	MaxPending int
}

func (o *Options) defaults() {
	if o.Workers <= 0 {
		o.Workers = 256
	}
	if o.Queue < 0 {
		o.Queue = 0
	} else if o.Queue == 0 {
		o.Queue = 4096
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 64 << 10
	}
}

// Stats are a Server's counters. Cumulative counters only grow.
type Stats struct {
	InProgress int64 // Conns accepted whose handshake has not ended (gauge)
	Running    int64 // handshakes on a worker now (gauge)
	Queued     int64 // handshakes waiting for a worker (gauge)
	Completed  int64 // handshakes that succeeded
	Failed     int64 // handshakes that failed (bad input, alerts), timeouts excluded
	TimedOut   int64 // handshakes that hit HandshakeTimeout
	Refused    int64 // connections refused because the pool was full
	// Lean counts the completed handshakes whose record layer runs on this
	// package's TLS 1.3 code (record13.go); Completed-Lean stay on
	// crypto/tls's (TLS 1.2, or a TLS 1.3 session that could not switch).
	Lean int64
	// HandshakeCPU is the time workers spent running handshakes, not
	// waiting for input: an estimate of the handshakes' CPU time.
	HandshakeCPU time.Duration
}

// Server runs TLS handshakes on a bounded pool of worker goroutines and
// makes Conns. Its methods are goroutine-safe.
type Server struct {
	cfg  *tls.Config
	opts Options
	// stdlibOnly keeps every session on crypto/tls's record layer (for
	// comparisons in benchmarks).
	stdlibOnly bool

	mu      sync.Mutex
	queue   []*Conn // FIFO: queue[head:]
	head    int
	running int
	closed  bool

	inProgress atomic.Int64
	queued     atomic.Int64
	completed  atomic.Int64
	failed     atomic.Int64
	timedOut   atomic.Int64
	refused    atomic.Int64
	lean       atomic.Int64
	busy       atomic.Int64 // ns
}

// NewServer returns a Server that answers handshakes with cfg, which must
// not be modified afterwards. The Server hands crypto/tls a clone of cfg
// whose GetConfigForClient wraps cfg's own (see doc.go, "Secrets"); cfg's
// KeyLogWriter and GetConfigForClient keep working.
func NewServer(cfg *tls.Config, opts Options) *Server {
	opts.defaults()
	return &Server{cfg: leanConfig(cfg), opts: opts}
}

// Options returns the options in force (defaults filled in).
func (s *Server) Options() Options { return s.opts }

// Stats returns the counters. Goroutine-safe.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	return Stats{
		InProgress:   s.inProgress.Load(),
		Running:      int64(running),
		Queued:       s.queued.Load(),
		Completed:    s.completed.Load(),
		Failed:       s.failed.Load(),
		TimedOut:     s.timedOut.Load(),
		Refused:      s.refused.Load(),
		Lean:         s.lean.Load(),
		HandshakeCPU: time.Duration(s.busy.Load()),
	}
}

// Close refuses new handshakes and fails the queued ones (ErrServerClosed);
// running handshakes finish or time out. Established Conns are not touched.
// Goroutine-safe.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	q := s.queue[s.head:]
	s.queue, s.head = nil, 0
	s.mu.Unlock()
	for _, c := range q {
		s.queued.Add(-1)
		c.fail(ErrServerClosed, stQueued, nil)
	}
}

// submit hands c to a worker or queues it. It fails with ErrOverloaded if
// the pool is full, ErrServerClosed if it is closed.
func (s *Server) submit(c *Conn) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.running < s.opts.Workers {
		s.running++
		s.mu.Unlock()
		go s.work(c)
		return nil
	}
	if len(s.queue)-s.head >= s.opts.Queue {
		s.mu.Unlock()
		return ErrOverloaded
	}
	if s.head > 0 && len(s.queue) == cap(s.queue) {
		// Compact instead of growing.
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue, s.head = s.queue[:n], 0
	}
	s.queue = append(s.queue, c)
	s.queued.Add(1)
	s.mu.Unlock()
	return nil
}

// next pops the next queued Conn, or retires the worker.
func (s *Server) next() *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head < len(s.queue) {
		c := s.queue[s.head]
		s.queue[s.head] = nil
		s.head++
		if s.head == len(s.queue) {
			s.queue, s.head = s.queue[:0], 0
		}
		s.queued.Add(-1)
		return c
	}
	s.running--
	return nil
}

// work runs handshakes until the queue is empty.
func (s *Server) work(c *Conn) {
	for ; c != nil; c = s.next() {
		c.handshake()
	}
}

// NewConn starts a server-side connection: the handshake begins once the
// client's first TLS record has been fed. remote may be nil; it is what
// tls.ClientHelloInfo.Conn.RemoteAddr reports.
//
// out receives ciphertext to send. During the handshake it is called on a
// worker goroutine (route it through gnet's AsyncWrite, copying p); after
// done(nil) it is called inside Conn.Write, Conn.Read and Conn.CloseNotify,
// on the caller's goroutine (the loop: gnet's Conn.Write). p is only valid
// during the call.
//
// done is called at most once, never inside a Conn method: from a worker
// or timer goroutine, with nil when the handshake succeeded, or the error
// that ended it. It is not called if Close (or a failing Feed) ended the
// Conn first.
//
// Goroutine-safe.
func (s *Server) NewConn(remote net.Addr, out func(p []byte), done func(err error)) *Conn {
	c := &Conn{srv: s, done: done}
	p := &pipe{out: out, remote: remote}
	c.pp.Store(p)
	s.inProgress.Add(1)
	c.tmu.Lock()
	c.timer = time.AfterFunc(s.opts.HandshakeTimeout, c.expire)
	c.tmu.Unlock()
	return c
}
