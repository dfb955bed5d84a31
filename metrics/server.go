package metrics

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"slices"
	"strconv"
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// appJSON is one app's figures in /api/stats (and the totals, without
// app_id).
type appJSON struct {
	AppID            string `json:"app_id,omitempty"`
	Connections      int64  `json:"connections"`
	Subscribed       int64  `json:"subscribed"`
	Channels         int    `json:"channels"`
	MessagesReceived int64  `json:"messages_received"`
	MessagesSent     int64  `json:"messages_sent"`
	BytesReceived    int64  `json:"bytes_received"`
	BytesSent        int64  `json:"bytes_sent"`
}

func (a *appJSON) add(b appJSON) {
	a.Connections += b.Connections
	a.Subscribed += b.Subscribed
	a.Channels += b.Channels
	a.MessagesReceived += b.MessagesReceived
	a.MessagesSent += b.MessagesSent
	a.BytesReceived += b.BytesReceived
	a.BytesSent += b.BytesSent
}

type countersJSON struct {
	HandshakeFailures       map[string]int64 `json:"handshake_failures"`
	ServerCloses            map[string]int64 `json:"server_closes"`
	ErrorsSent              map[string]int64 `json:"errors_sent"`
	SlowConsumerDisconnects int64            `json:"slow_consumer_disconnects"`
	RateLimitedMessages     int64            `json:"rate_limited_messages"`
	ClientEventsDropped     int64            `json:"client_events_dropped"`
	ConnectionsRefused      int64            `json:"connections_refused"`
	APIQueueFull            int64            `json:"api_queue_full"`
}

// statsJSON is the body of /api/stats. Counters are totals since the
// process started; the dashboard computes rates from the deltas between two
// polls and Time.
type statsJSON struct {
	Time        int64         `json:"time"` // Unix milliseconds when the figures were gathered
	Node        string        `json:"node"` // this node's id (Nodes[0].ID)
	Status      string        `json:"status"`
	Connections int           `json:"connections"` // open TCP connections, WebSocket and HTTP
	Loops       int           `json:"loops"`
	Totals      appJSON       `json:"totals"`
	Apps        []appJSON     `json:"apps"`
	Counters    countersJSON  `json:"counters"`
	Nodes       []Node        `json:"nodes"`
	Cluster     *ClusterStats `json:"cluster,omitempty"`
}

func intKeys(m map[int]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[strconv.Itoa(k)] = v
	}
	return out
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	st, at := s.snapshot()
	status := s.status()
	out := statsJSON{
		Time:        at.UnixMilli(),
		Node:        s.opts.NodeID,
		Status:      status,
		Connections: st.Connections,
		Loops:       st.Loops,
		Apps:        make([]appJSON, 0, len(st.Apps)),
		Counters: countersJSON{
			HandshakeFailures:       st.HandshakeFailures,
			ServerCloses:            intKeys(st.Closes),
			ErrorsSent:              intKeys(st.Errors),
			SlowConsumerDisconnects: st.SlowConsumerCloses,
			RateLimitedMessages:     st.RateLimited,
			ClientEventsDropped:     st.ClientEventsDropped,
			ConnectionsRefused:      st.Refused,
			APIQueueFull:            st.APIBusy,
		},
	}
	for _, a := range st.Apps {
		aj := appJSON{
			AppID: a.AppID, Connections: a.Connections, Subscribed: a.Subscribed, Channels: a.Channels,
			MessagesReceived: a.MessagesReceived, MessagesSent: a.MessagesSent,
			BytesReceived: a.BytesReceived, BytesSent: a.BytesSent,
		}
		out.Apps = append(out.Apps, aj)
		out.Totals.add(aj)
	}
	self := Node{
		ID: s.opts.NodeID, Hostname: s.hostname, Self: true,
		Version: s.opts.Version, GoVersion: runtime.Version(),
		StartedAt: processStart.UTC().Truncate(time.Second), UptimeSeconds: time.Since(processStart).Seconds(),
		Loops: st.Loops, Connections: st.Connections, Status: status,
	}
	if status != "starting" {
		self.Address = s.srv.Addr()
	}
	out.Nodes = []Node{self}
	if f := s.peers.Load(); f != nil {
		ctx, cancel := context.WithTimeout(r.Context(), s.opts.StatsTimeout)
		out.Nodes = append(out.Nodes, (*f)(ctx)...)
		cancel()
	}
	if f := s.cluster.Load(); f != nil {
		cs := (*f)()
		out.Cluster = &cs
	}
	writeJSON(w, http.StatusOK, out)
}

// memberJSON is one presence member; Info only with info=1.
type memberJSON struct {
	ID   json.RawMessage `json:"id"`
	Info json.RawMessage `json:"info,omitempty"`
}

type channelJSON struct {
	Name              string       `json:"name"`
	Kind              string       `json:"kind"` // public, private, presence, user
	Cache             bool         `json:"cache"`
	SubscriptionCount int          `json:"subscription_count"`
	UserCount         int          `json:"user_count"`        // presence channels only
	Members           []memberJSON `json:"members,omitempty"` // presence channels only
}

// channelsJSON is the body of /api/channels.
type channelsJSON struct {
	AppID     string        `json:"app_id"`
	Total     int           `json:"total"`     // occupied channels matching prefix
	Truncated bool          `json:"truncated"` // true when Total > len(Channels)
	Channels  []channelJSON `json:"channels"`  // most subscribers first, then by name
}

// Limits of /api/channels.
const (
	defaultChannelLimit = 100
	maxChannelLimit     = 1000
)

// handleChannels serves /api/channels?app_id=ID[&prefix=P][&limit=N][&info=1]:
// the app's occupied channels on this node, most subscribed first, with the
// members (user ids; user_info too with info=1) of presence channels.
func (s *Server) handleChannels(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id := q.Get("app_id")
	if id == "" && len(s.px.Apps()) == 1 {
		id = s.px.Apps()[0].ID
	}
	app := s.px.AppByID(id)
	if app == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "No matching application for ID [" + id + "]."})
		return
	}
	limit := defaultChannelLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a positive integer"})
			return
		}
		limit = min(n, maxChannelLimit)
	}
	withInfo := q.Get("info") == "1" || q.Get("info") == "true"
	list := s.px.Channels(app, q.Get("prefix"))
	slices.SortStableFunc(list, func(a, b pusher.ChannelInfo) int {
		return cmp.Compare(b.SubscriptionCount, a.SubscriptionCount) // list is sorted by name already
	})
	out := channelsJSON{AppID: app.ID, Total: len(list), Truncated: len(list) > limit, Channels: []channelJSON{}}
	for _, c := range list[:min(limit, len(list))] {
		cj := channelJSON{Name: c.Name, Kind: c.Kind.String(), Cache: c.Cache, SubscriptionCount: c.SubscriptionCount}
		if c.Kind == pusher.KindPresence {
			cj.UserCount = c.UserCount
			for _, m := range s.px.Members(app, c.Name) {
				mj := memberJSON{ID: m.ID}
				if withInfo {
					mj.Info = m.Info
				}
				cj.Members = append(cj.Members, mj)
			}
		}
		out.Channels = append(out.Channels, cj)
	}
	writeJSON(w, http.StatusOK, out)
}
