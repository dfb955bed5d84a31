package loop

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/reverbgo/reverb/internal/looptls"
	"github.com/reverbgo/reverb/pusher"
)

// Config is the transport's configuration. Zero values mean the documented
// defaults.
type Config struct {
	// Host is the address to bind. Default: "0.0.0.0".
	Host string
	// Port to bind; 0 picks a free port (see Server.Addr). Default: 0.
	Port int
	// Loops is the number of event loops. Default: runtime.GOMAXPROCS(0).
	Loops int
	// HandshakeTimeout closes connections that have not completed an HTTP
	// request (or the WebSocket upgrade) within it. Default: 10 s.
	HandshakeTimeout time.Duration
	// TCPKeepAlive, when positive, turns TCP keepalive on for accepted
	// connections with this idle time. Default: 0 (off).
	TCPKeepAlive time.Duration
	// APIWorkers is the number of goroutines serving HTTP API requests.
	// Default: 4 x GOMAXPROCS.
	APIWorkers int
	// APIQueue is how many API requests may wait for a worker; past it
	// requests get 503. Default: 1024.
	APIQueue int
	// ReusePort lets several processes share the port (SO_REUSEPORT).
	// Whatever it says, on Linux every loop has its own listener (see
	// listen.go); without it, a port another process listens on is refused
	// at start. With it, Drain takes the listeners out of the port's
	// SO_REUSEPORT group once another process listens on the port (see
	// "Leaving the port" in listen.go). Default: false.
	ReusePort bool
	// MaxConnections caps the open TCP connections of the node; connections
	// past it are closed as soon as they are accepted. 0 means no cap.
	// Default: 0.
	MaxConnections int
	// MaxFragments caps the frames of one fragmented message (1008 past it).
	// Default: 128.
	MaxFragments int
	// TLS, when set, serves wss:// and HTTPS on the public address, with
	// TLS on the event loops (see tls.go). Default: nil.
	TLS *tls.Config
	// TLSHandshakeWorkers caps the TLS handshakes running at once, each on
	// its own goroutine. Default: 256.
	TLSHandshakeWorkers int
	// TLSHandshakeQueue caps the TLS handshakes waiting for a worker; past
	// it connections are closed (Stats.TLS.Refused). Default: 4096.
	TLSHandshakeQueue int
	// Logger for transport events. Default: slog.Default().
	Logger *slog.Logger
}

func (c *Config) normalize() {
	if c.Host == "" {
		c.Host = "0.0.0.0"
	}
	if c.Loops <= 0 {
		c.Loops = runtime.GOMAXPROCS(0)
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.APIWorkers <= 0 {
		c.APIWorkers = 4 * runtime.GOMAXPROCS(0)
	}
	if c.MaxFragments <= 0 {
		c.MaxFragments = 128
	}
	if c.APIQueue <= 0 {
		c.APIQueue = 1024
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// ErrStopped is returned by Run when the engine stopped without Stop being
// called (gnet shuts the whole engine down when accept fails, for example
// with EMFILE); the process should treat it as fatal.
var ErrStopped = errors.New("loop: engine stopped unexpectedly")

// ErrPortInUse is returned by Run when another process listens on the port
// and Config.ReusePort is off.
var ErrPortInUse = errors.New("loop: address already in use")

// Server runs the gnet engine for a pusher.Server. Its methods are
// goroutine-safe (Addr once Ready is closed); gnet's event callbacks are on
// an unexported type.
type Server struct {
	cfg       Config
	px        *pusher.Server
	pool      *pool
	log       *slog.Logger
	maxReq    int
	eng       gnet.Engine
	ready     chan struct{}
	addr      string
	stopped   atomic.Bool
	readyOnce sync.Once

	refused atomic.Int64 // connections closed at once because of MaxConnections
	hsFail  [numReasons]atomic.Int64
	apiBusy atomic.Int64 // API requests refused with 503
	ticks   int          // onTick calls; touched only by the ticker goroutine
	port    int          // the port the loops listen on (picked when Config.Port is 0)
	lfds    []int        // the loops' listening sockets, set once ready (claimListeners)
	burst   burstState   // TLS handshake bursts (tls.go); ticker goroutine only

	memReleases atomic.Int64 // memory returned to the OS after handshake bursts

	tls *looptls.Server // nil without TLS; see tls.go

	mu     sync.Mutex
	shards map[gnet.EventLoop]*shard
	list   []*shard
}

// shard is the loop-local state of one event loop.
type shard struct {
	el   gnet.EventLoop
	px   *pusher.Shard
	http map[*connState]struct{} // connections not upgraded yet, for the handshake timeout

	// batch is the connection whose input onTraffic is handling; its writes
	// gather in wbuf until onTraffic writes them at once.
	batch *connState
	wbuf  []byte

	tlsConns []*tlsConn // the TLS connections past their handshake (tls.go)

	// anchor is the loop's first connection, open or long closed: gnet
	// always queues a task of a connection's AsyncWrite, on that
	// connection's loop, as urgent (see barrier). Set once on the loop, read
	// from any goroutine.
	anchor atomic.Pointer[anchorConn]
}

// anchorConn is a shard's anchor.
type anchorConn struct{ c gnet.Conn }

// barrier runs done on the loop once the events it polled before the call
// have been handled: gnet runs its tasks after every event of the batch it
// polled. gnet queues an ordinary task (Execute, a connection's Close) in
// its urgent queue while that holds fewer than 1,024, else in a second
// queue that it works through 256 at a time after the urgent one; an
// AsyncWrite always goes in the urgent queue. Through the anchor (an empty
// AsyncWrite writes nothing; on a closed connection it fails) done waits
// behind at most ~1,300 tasks, not behind all of them: a draining loop's
// queue holds the closes of all its connections. It returns an error when
// the task could not be queued (the engine is stopping); done then never
// runs. Goroutine-safe.
func (sh *shard) barrier(done func()) error {
	if a := sh.anchor.Load(); a != nil {
		if a.c.AsyncWrite(nil, func(gnet.Conn, error) error { done(); return nil }) == nil {
			return nil
		}
	}
	return sh.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		done()
		return nil
	}))
}

// New creates a transport for px.
func New(px *pusher.Server, cfg Config) *Server {
	cfg.normalize()
	return &Server{
		cfg:    cfg,
		px:     px,
		log:    cfg.Logger,
		maxReq: px.Options().MaxRequestSize,
		ready:  make(chan struct{}),
		shards: make(map[gnet.EventLoop]*shard),
	}
}

// Refused returns how many connections were closed on accept because the
// node was at MaxConnections. Goroutine-safe.
func (s *Server) Refused() int64 { return s.refused.Load() }

// Handshake failure reasons, the label values of Stats.HandshakeFailures.
const (
	ReasonBadRequest = iota // malformed HTTP
	ReasonTooLarge          // head or body over max_request_size
	ReasonTimeout           // no complete request within handshake_timeout
	ReasonBadUpgrade        // invalid WebSocket handshake
	ReasonNotFound          // upgrade on a path that is not /app/{key}
	numReasons
)

// ReasonNames are the names of the handshake failure reasons.
var ReasonNames = [numReasons]string{"bad_request", "too_large", "timeout", "bad_upgrade", "not_found"}

// Stats are the node's figures: the protocol's (pusher.Stats) and the
// transport's.
type Stats struct {
	pusher.Stats
	// Connections is the number of open TCP connections (WebSocket and HTTP).
	Connections int
	// Loops is the number of event loops.
	Loops int
	// HandshakeFailures counts failed requests and upgrades, by ReasonNames.
	HandshakeFailures map[string]int64
	// Refused counts connections closed on accept at max_connections.
	Refused int64
	// APIBusy counts HTTP API requests refused with 503 (queue full).
	APIBusy int64
	// Draining is true once a graceful shutdown began.
	Draining bool
	// TLS has the TLS handshake figures (zero without TLS).
	TLS TLSStats
}

// Stats gathers the node's figures, visiting each loop. Goroutine-safe;
// never call it from a loop.
func (s *Server) Stats(ctx context.Context) Stats {
	st := Stats{Stats: s.px.Stats(ctx), Loops: s.cfg.Loops, HandshakeFailures: map[string]int64{}}
	select {
	case <-s.ready:
		st.Connections = max(s.eng.CountConnections(), 0) // gnet's count dips below 0 while stopping
	default:
	}
	for i := range s.hsFail {
		st.HandshakeFailures[ReasonNames[i]] = s.hsFail[i].Load()
	}
	st.Refused = s.refused.Load()
	st.APIBusy = s.apiBusy.Load()
	st.Draining = s.px.Draining()
	st.TLS = s.tlsStats()
	return st
}

// Loops returns the number of event loops the server runs.
func (s *Server) Loops() int { return s.cfg.Loops }

// Ready is closed once the server accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the bound "host:port" (with the port picked when Config.Port
// is 0). Call it after Ready is closed; it is goroutine-safe from then on.
func (s *Server) Addr() string { return s.addr }

// Run serves until Stop is called. It returns nil after Stop and ErrStopped
// (or gnet's error) when the engine ended by itself.
func (s *Server) Run() error {
	s.pool = newPool(s.cfg.APIWorkers, s.cfg.APIQueue)
	defer s.pool.close()
	reusePort := s.cfg.ReusePort || perLoopListeners()
	port := s.cfg.Port
	if reusePort && port == 0 {
		p, release, err := reservePort(s.cfg.Host)
		if err != nil {
			return err
		}
		defer release()
		port = p
	}
	if reusePort && !s.cfg.ReusePort && port != 0 {
		// Nothing may listen on the port yet, in this process or another:
		// the loops' listeners share the port with SO_REUSEPORT, and so
		// would another process's that set it too.
		if busy, err := portBusy(s.cfg.Host, port); err != nil {
			s.log.Warn("could not check for other listeners on the port", "err", err)
		} else if busy {
			return fmt.Errorf("%w: %s (another server listens on it; set reuse_port to share it)", ErrPortInUse, net.JoinHostPort(s.cfg.Host, strconv.Itoa(port)))
		}
	}
	s.port = port
	addr := "tcp://" + net.JoinHostPort(s.cfg.Host, strconv.Itoa(port))
	stopTLS := s.startTLS() // TLS hook (tls.go)
	defer stopTLS()
	defer func() { unclaimListeners(s.lfds) }()
	err := gnet.Run(&events{s: s}, addr,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.Loops),
		gnet.WithLoadBalancing(gnet.LeastConnections),
		gnet.WithReusePort(reusePort),
		gnet.WithReuseAddr(true),
		gnet.WithTicker(true),
		gnet.WithTCPKeepAlive(s.cfg.TCPKeepAlive),
		gnet.WithLogger(gnetLogger{s.log}),
	)
	if err != nil {
		return err
	}
	if !s.stopped.Load() {
		return ErrStopped
	}
	return nil
}

// Stop closes the listener and every connection and makes Run return.
func (s *Server) Stop(ctx context.Context) error {
	s.stopped.Store(true)
	<-s.ready
	return s.eng.Stop(ctx)
}

// Drain shuts down gracefully: with Config.ReusePort it takes the listeners
// out of the shared port as soon as another process listens on it too (new
// connections go to the other processes),
// it stops accepting WebSocket upgrades, closes every session with 4200 in jittered batches spread over half of
// timeout, answers HTTP requests with Connection: close, waits until no
// connection is left or timeout passes, then stops the engine. Goroutine-safe.
func (s *Server) Drain(ctx context.Context, timeout time.Duration) error {
	<-s.ready
	// Leave the shared port once another process listens on it too, now or
	// later in the drain (a replacement started after the SIGTERM); alone
	// on it, keep answering (with 4200) rather than have the kernel refuse.
	leave := s.cfg.ReusePort && len(s.lfds) > 0
	var ip net.IP
	if h, _, err := net.SplitHostPort(s.addr); err == nil {
		ip = net.ParseIP(h)
	}
	shouldLeave := func() bool {
		n, err := listenersOnPort(ip, s.port)
		return err == nil && n > len(s.lfds)
	}
	if leave && shouldLeave() {
		s.leavePort(ctx)
		leave = false
	}
	s.px.Drain(timeout / 2)
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; s.eng.CountConnections() > 0 && time.Now().Before(deadline); i++ {
		select {
		case <-ctx.Done():
			deadline = time.Now()
		case <-tick.C:
		}
		if leave && i%5 == 4 && shouldLeave() {
			s.leavePort(ctx)
			leave = false
		}
	}
	left := s.eng.CountConnections()
	if left > 0 {
		s.log.Warn("drain timeout: closing the remaining connections", "connections", left)
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.Stop(stopCtx)
}

// leavePort takes the loops' listeners out of the port's SO_REUSEPORT group
// (see "Leaving the port" in listen.go), so that new connections go to the
// other servers on the port. Called once, by Drain. If ctx ends before every
// loop has run its task, the listeners stay in the group.
func (s *Server) leavePort(ctx context.Context) {
	if len(s.lfds) == 0 {
		return
	}
	if _, err := unwatchListeners(s.lfds); err != nil {
		s.log.Warn("could not take the listeners out of their loops; they keep listening", "err", err)
		return
	}
	// Every loop that has handled a connection runs a task: an accept event
	// it polled before the removal has been handled by then. A loop that
	// never had one (no shard) has no such event in flight in practice.
	s.mu.Lock()
	list := append([]*shard(nil), s.list...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, sh := range list {
		wg.Add(1)
		if sh.barrier(wg.Done) != nil {
			wg.Done()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("drain cut short before the listeners left the shared port")
		return
	}
	n, err := stopListening(s.lfds)
	if err != nil {
		s.log.Warn("could not stop listening on every socket", "err", err)
	}
	s.log.Info("Left the shared port: new connections go to the other servers on it", "listeners", n)
}

// events is the gnet event handler of a Server. Its callbacks run on gnet's
// goroutines (OnTick on the ticker's, the others on the connection's loop);
// keeping them on their own type keeps them off Server's API.
type events struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (e *events) OnBoot(eng gnet.Engine) gnet.Action   { return e.s.onBoot(eng) }
func (e *events) OnTick() (time.Duration, gnet.Action) { return e.s.onTick() }

// OnOpen also makes the loop's first connection its shard's anchor.
func (e *events) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	out, action := e.s.onOpen(c)
	if st, _ := c.Context().(*connState); st != nil && action == gnet.None && st.sh.anchor.Load() == nil {
		st.sh.anchor.Store(&anchorConn{c})
	}
	return out, action
}

func (e *events) OnClose(c gnet.Conn, _ error) gnet.Action {
	if st, _ := c.Context().(*connState); st != nil {
		e.s.onClose(st)
	}
	return gnet.None
}

func (e *events) OnTraffic(c gnet.Conn) gnet.Action {
	st, _ := c.Context().(*connState)
	if st == nil {
		return gnet.Close
	}
	return e.s.onTraffic(st)
}

// onBoot records the engine and the bound address.
func (s *Server) onBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	s.addr = net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.port))
	if fd, err := eng.Dup(); err == nil {
		if sa, err := syscall.Getsockname(fd); err == nil {
			switch a := sa.(type) {
			case *syscall.SockaddrInet4:
				s.addr = net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
			case *syscall.SockaddrInet6:
				s.addr = net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
			}
		}
		syscall.Close(fd)
	}
	// Ready closes on the first tick: gnet starts the ticker after it has
	// registered its event loops, so the engine is fully usable then.
	return gnet.None
}

// shardOf returns the loop's shard, creating it on the loop's first
// connection. Called on the loop.
func (s *Server) shardOf(el gnet.EventLoop) *shard {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.shards[el]
	if sh == nil {
		sh = &shard{el: el, http: make(map[*connState]struct{})}
		exec := func(f func()) {
			_ = el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
				f()
				return nil
			}))
		}
		sh.px = s.px.NewShard(exec)
		// gnet runs the tasks a task queues in the same pass, before it polls
		// the sockets again: the rest of a chunked fan-out is queued from
		// another goroutine, so that the loop reads requests and writes the
		// answers queued meanwhile first.
		sh.px.SetResume(func(f func()) { go exec(f) })
		s.shards[el] = sh
		s.list = append(s.list, sh)
	}
	return sh
}

// onTick sweeps every loop once a second: pings, pong timeouts and handshake
// timeouts. It runs on gnet's ticker goroutine and reaches the loops through
// Execute.
func (s *Server) onTick() (time.Duration, gnet.Action) {
	s.readyOnce.Do(func() {
		fds, err := claimListeners(s.port)
		if err != nil {
			s.log.Warn("could not list the listening sockets", "err", err)
		}
		s.lfds = fds
		if _, err := tuneListeners(fds); err != nil {
			s.log.Warn("could not set TCP_DEFER_ACCEPT on the listeners", "err", err)
		}
		close(s.ready)
	})
	s.mu.Lock()
	list := append([]*shard(nil), s.list...)
	s.mu.Unlock()
	now := time.Now()
	if s.ticks++; s.ticks%60 == 0 {
		s.px.SweepCaches(now)
	}
	s.releaseAfterBurst()
	for _, sh := range list {
		_ = sh.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			sh.px.Sweep(now)
			s.sweepHandshakes(sh, now)
			shrinkIdleTLS(sh)
			return nil
		}))
	}
	return time.Second, gnet.None
}

func (s *Server) sweepHandshakes(sh *shard, now time.Time) {
	limit := now.Add(-s.cfg.HandshakeTimeout).UnixNano()
	draining := s.px.Draining()
	for st := range sh.http {
		if st.since < limit || draining {
			if !draining {
				s.hsFail[ReasonTimeout].Add(1)
			}
			delete(sh.http, st)
			st.phase = phaseClosed
			_ = st.c.Close()
		}
	}
}

// gnetLogger routes gnet's logs to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Info(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
