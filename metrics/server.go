package metrics

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/reverbgo/reverb/loop"
	"github.com/reverbgo/reverb/pusher"
)

//go:embed web
var webFS embed.FS

// processStart approximates the process start time for the uptime shown on
// the dashboard.
var processStart = time.Now()

// Options configure a metrics Server. Zero values mean the documented
// defaults.
type Options struct {
	// Addr is the "host:port" to listen on; port 0 picks a free one (see
	// Server.Addr). Default: "127.0.0.1:9090".
	Addr string
	// NodeID names this node on the dashboard and in /api/stats; the cluster
	// node id when there is one. Default: the host name.
	NodeID string
	// Version is the build version, for reverb_build_info and the dashboard.
	// Default: "dev".
	Version string
	// PProf serves net/http/pprof under /debug/pprof/. Default: false.
	PProf bool
	// API is the HTTP API metrics installed as pusher.Options.APIObserver;
	// nil leaves them out. Default: nil.
	API *API
	// StatsTimeout bounds how long one gathering of the loops' counters may
	// wait; past it the previous figures are served and
	// reverb_stats_timeouts_total grows. Default: 2 s.
	StatsTimeout time.Duration
	// CacheFor is how long one gathering is reused by other scrapes and
	// dashboard polls. Negative means never reuse. Default: 250 ms.
	CacheFor time.Duration
	// Logger receives the listener's errors. Default: slog.Default().
	Logger *slog.Logger
}

func (o *Options) normalize() {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:9090"
	}
	if o.NodeID == "" {
		o.NodeID = hostname()
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.StatsTimeout <= 0 {
		o.StatsTimeout = 2 * time.Second
	}
	if o.CacheFor == 0 {
		o.CacheFor = 250 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// Node describes one node of the deployment on the dashboard and in
// /api/stats. This node is always first (Self); the cluster adds its peers
// through SetPeers, filling in what it knows: string fields may be empty,
// Loops and Connections -1, and StartedAt zero when unknown.
type Node struct {
	ID            string    `json:"id"`
	Hostname      string    `json:"hostname,omitempty"`
	Address       string    `json:"address,omitempty"` // the WebSocket listener, once bound
	Self          bool      `json:"self"`
	Version       string    `json:"version,omitempty"`
	GoVersion     string    `json:"go_version,omitempty"`
	StartedAt     time.Time `json:"started_at,omitzero"`
	UptimeSeconds float64   `json:"uptime_seconds,omitempty"`
	LastSeen      time.Time `json:"last_seen,omitzero"` // peers: when this node last heard of it
	Loops         int       `json:"loops"`
	Connections   int       `json:"connections"`
	// Status is "starting", "ready", "draining" or "degraded" for this node
	// (see /readyz); "alive" or the peer's own for peers.
	Status string `json:"status"`
}

// Server is the metrics, health and dashboard listener of one node. Its
// methods are goroutine-safe.
type Server struct {
	opts     Options
	srv      *loop.Server
	px       *pusher.Server
	reg      *prometheus.Registry
	handler  http.Handler
	hostname string

	snapMu   sync.Mutex // held while gathering, so concurrent callers share one visit of the loops
	snap     loop.Stats
	snapAt   time.Time
	haveSnap bool
	timeouts atomic.Int64

	degraded atomic.Pointer[func() bool]
	cluster  atomic.Pointer[func() ClusterStats]
	webhooks atomic.Pointer[func() WebhookStats]
	peers    atomic.Pointer[func(context.Context) []Node]

	mu     sync.Mutex
	hs     *http.Server
	ln     net.Listener
	served chan struct{}
}

// New builds the listener for the node made of srv and px and registers its
// collectors (reverb_*, the Go runtime's and the process's) in a registry of
// its own. It does not listen yet: see Start. It may be called before
// srv.Run; until srv is ready, /readyz answers 503 "starting".
func New(srv *loop.Server, px *pusher.Server, opts Options) (*Server, error) {
	opts.normalize()
	s := &Server{opts: opts, srv: srv, px: px, reg: prometheus.NewRegistry(), hostname: hostname()}
	for _, c := range []prometheus.Collector{
		collector{s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := s.reg.Register(c); err != nil {
			return nil, err
		}
	}
	if opts.API != nil {
		if err := opts.API.register(s.reg); err != nil {
			return nil, err
		}
	}
	s.handler = s.routes()
	return s, nil
}

// Register adds a collector to /metrics, for metrics that SetCluster does
// not cover. Names must start with reverb_ and must not repeat ours.
// Goroutine-safe.
func (s *Server) Register(c prometheus.Collector) error { return s.reg.Register(c) }

// SetDegraded installs the check that makes /readyz say "degraded" (with
// 200, or 503 for /readyz?strict) and the dashboard show "degraded" while
// it returns true; the cluster uses it while Redis is unreachable. It is called on every probe, so it must be
// fast and goroutine-safe. nil removes it.
func (s *Server) SetDegraded(f func() bool) {
	if f == nil {
		s.degraded.Store(nil)
		return
	}
	s.degraded.Store(&f)
}

// SetCluster installs the source of the reverb_redis_* metrics and of the
// "cluster" object of /api/stats; it is called once per scrape and must be
// goroutine-safe. nil removes it.
func (s *Server) SetCluster(f func() ClusterStats) {
	if f == nil {
		s.cluster.Store(nil)
		return
	}
	s.cluster.Store(&f)
}

// SetPeers installs the source of the other nodes listed after this one in
// /api/stats and on the dashboard. It is called once per poll with a
// context bounded by StatsTimeout and must be goroutine-safe. nil removes it.
func (s *Server) SetPeers(f func(context.Context) []Node) {
	if f == nil {
		s.peers.Store(nil)
		return
	}
	s.peers.Store(&f)
}

// Handler returns the listener's routes, for tests or for mounting
// elsewhere.
func (s *Server) Handler() http.Handler { return s.handler }

// Start binds Options.Addr and serves in the background. A bind error is
// returned. Start may be called once.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelWarn),
	}
	served := make(chan struct{})
	s.mu.Lock()
	s.hs, s.ln, s.served = hs, ln, served
	s.mu.Unlock()
	go func() {
		defer close(served)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error("metrics listener stopped", "err", err)
		}
	}()
	return nil
}

// Addr returns the bound "host:port" after Start, or "" before.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops the listener, letting requests in flight finish until ctx
// ends.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	hs, served := s.hs, s.served
	s.mu.Unlock()
	if hs == nil {
		return nil
	}
	err := hs.Shutdown(ctx)
	if err != nil {
		_ = hs.Close()
	}
	<-served
	return err
}

// snapshot returns the node's figures and when they were gathered, sharing
// a recent gathering with concurrent callers.
func (s *Server) snapshot() (loop.Stats, time.Time) {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	if s.haveSnap && s.opts.CacheFor > 0 && time.Since(s.snapAt) < s.opts.CacheFor {
		return s.snap, s.snapAt
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.StatsTimeout)
	st := s.srv.Stats(ctx)
	timedOut := ctx.Err() != nil
	cancel()
	if timedOut && s.haveSnap {
		// A partial sum would make counters go backwards: keep the last
		// complete figures, with the cheap live ones refreshed.
		s.timeouts.Add(1)
		s.snap.Connections, s.snap.Draining = st.Connections, st.Draining
		return s.snap, s.snapAt
	}
	if timedOut {
		s.timeouts.Add(1)
	}
	s.snap, s.snapAt, s.haveSnap = st, time.Now(), true
	return st, s.snapAt
}

// status is the node's readiness: "starting" until the WebSocket listener
// accepts, "draining" once a graceful shutdown began, "degraded" while the
// SetDegraded check says so, else "ready".
func (s *Server) status() string {
	select {
	case <-s.srv.Ready():
	default:
		return "starting"
	}
	if s.px.Draining() {
		return "draining"
	}
	if f := s.degraded.Load(); f != nil && (*f)() {
		return "degraded"
	}
	return "ready"
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelWarn),
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		plain(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		switch st := s.status(); {
		case st == "ready":
			plain(w, http.StatusOK, "ready\n")
		case st == "degraded" && !r.URL.Query().Has("strict"):
			// Redis is unreachable for every node at once: taking them all
			// out of the load balancer would stop local service too. The
			// node still serves its own clients; ?strict makes it 503.
			plain(w, http.StatusOK, "degraded: scaling unavailable (Redis unreachable), serving local clients\n")
		default:
			plain(w, http.StatusServiceUnavailable, st+"\n")
		}
	})
	mux.HandleFunc("GET /api/stats", s.handleStats)
	mux.HandleFunc("GET /api/channels", s.handleChannels)

	web, _ := fs.Sub(webFS, "web")
	index, _ := fs.ReadFile(web, "index.html")
	dashboard := func(w http.ResponseWriter, r *http.Request) {
		secureHeaders(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(index)
	}
	mux.HandleFunc("GET /{$}", dashboard)
	mux.HandleFunc("GET /dashboard", dashboard)
	static := http.StripPrefix("/static/", http.FileServerFS(web))
	mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		secureHeaders(w)
		w.Header().Set("Cache-Control", "no-cache")
		static.ServeHTTP(w, r)
	})

	if s.opts.PProf {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func secureHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

func plain(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// Limits of /api/channels.
const (
	defaultChannelLimit = 100
	maxChannelLimit     = 1000
)
