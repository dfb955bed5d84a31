package pusher

import (
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/reverbgo/reverb/wsproto"
)

// Server is the Pusher protocol engine of one node: apps, channels, sessions
// and the HTTP API, independent of the transport. Its exported methods are
// goroutine-safe unless they say otherwise.
type Server struct {
	opts     Options
	log      *slog.Logger
	byKey    map[string]*App
	byID     map[string]*App
	appStats map[*App]*appStats
	hub      *hub
	broker   Broker
	// clustered is false with NopBroker: cached events are stored at once.
	clustered bool
	draining  atomic.Bool

	// Webhooks, subscription counts and watchlists.
	tracker     Tracker
	sink        WebhookSink
	counts      countTable
	countWindow time.Duration // countBusy channels get one count per window
	countsSent  atomic.Int64  // pusher_internal:subscription_count events sent
	watchSent   atomic.Int64  // pusher_internal:watchlist_events messages sent
	users       userTable
	watch       []*shardWatch // by shard index; each is loop-owned

	mu     sync.Mutex
	shards []*Shard // fixed length nShards; element i is set once, before any subscription on it
	nShard int      // shards created so far
}

type appStats struct {
	connections atomic.Int64 // open connections
	subscribed  atomic.Int64 // connections subscribed to at least one channel
}

// NewServer checks the options and builds a server for nShards event loops.
func NewServer(opts Options, nShards int) (*Server, error) {
	opts.Normalize()
	if len(opts.Apps) == 0 {
		return nil, ErrNoApps
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	srv := &Server{
		opts:     opts,
		log:      opts.Logger,
		byKey:    make(map[string]*App),
		byID:     make(map[string]*App),
		appStats: make(map[*App]*appStats),
		broker:   NopBroker{},
		shards:   make([]*Shard, nShards),
		tracker:  NewMemoryTracker(),
		sink:     opts.Webhooks,
		watch:    make([]*shardWatch, nShards),

		countWindow: defaultCountWindow,
	}
	srv.counts.init()
	srv.users.signedIn = make(map[localKey]int)
	srv.users.watched = make(map[localKey][]int32)
	for i := range srv.watch {
		srv.watch[i] = &shardWatch{}
	}
	for _, a := range opts.Apps {
		if srv.byKey[a.Key] != nil || srv.byID[a.ID] != nil {
			return nil, ErrDuplicateApp
		}
		srv.byKey[a.Key] = a
		srv.byID[a.ID] = a
		srv.appStats[a] = &appStats{}
	}
	srv.hub = newHub(opts.Apps, nShards, opts.Now)
	srv.hub.hooks = srv
	return srv, nil
}

// Options returns the normalized options.
func (srv *Server) Options() Options { return srv.opts }

// SetBroker installs the cluster broker. When b also implements Tracker,
// it decides webhooks, subscription counts and watchlists cluster-wide;
// otherwise the server keeps using its own MemoryTracker (right for a lone
// node). Call it before serving.
func (srv *Server) SetBroker(b Broker) {
	srv.broker = b
	srv.hub.broker = b
	_, alone := b.(NopBroker)
	srv.clustered = !alone
	if t, ok := b.(Tracker); ok {
		srv.tracker = t
	}
}

// AppByID finds an app by id.
func (srv *Server) AppByID(id string) *App { return srv.byID[id] }

// AppByKey finds an app by key (nil when unknown). Goroutine-safe.
func (srv *Server) AppByKey(key string) *App { return srv.byKey[key] }

// Apps returns the configured apps. Goroutine-safe.
func (srv *Server) Apps() []*App { return srv.opts.Apps }

func (srv *Server) stats(app *App) *appStats { return srv.appStats[app] }

// NewShard creates the shard of one event loop. exec must run a function on
// that loop, asynchronously, from any goroutine. It fails when all nShards
// shards exist.
func (srv *Server) NewShard(exec func(func())) *Shard {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.nShard >= len(srv.shards) {
		panic("pusher: more shards than declared")
	}
	sh := &Shard{srv: srv, idx: srv.nShard, exec: exec, resume: exec, local: make(map[localKey]*localChannel)}
	srv.shards[srv.nShard] = sh
	srv.nShard++
	return sh
}

func (srv *Server) shardList() []*Shard {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.shards[:srv.nShard:srv.nShard]
}

// Open starts a session for a WebSocket connection that asked for
// /app/{key} with the given Origin header. It writes
// pusher:connection_established, or the error and a close frame when the app
// is unknown (4001), over quota (4004) or the origin is not allowed (4009);
// then it returns nil and the transport must stop reading. Loop-only (the
// shard's loop).
func (srv *Server) Open(sh *Shard, c Conn, key, origin string) *Session {
	app := srv.byKey[key]
	reject := func(e *Error) *Session {
		sh.stats.countError(e.Code)
		sh.stats.countClose(e.Code)
		// A failed write makes the transport close the connection at once;
		// nothing may be written after that.
		if _, err := c.Write(wsproto.AppendText(nil, errorJSON(e))); err == nil {
			if _, err := c.Write(wsproto.CloseFrame(ws.StatusCode(e.Code), e.Message)); err == nil {
				c.Close()
			}
		}
		if srv.opts.Debug {
			srv.log.Debug("Connection Rejected", "code", e.Code, "message", e.Message)
		}
		return nil
	}
	if srv.draining.Load() {
		return reject(ErrShuttingDown)
	}
	if app == nil {
		return reject(ErrAppNotFound)
	}
	if !app.originAllowed(origin) {
		return reject(ErrOriginNotAllowed)
	}
	st := srv.appStats[app]
	if n := st.connections.Add(1); app.MaxConnections > 0 && n > int64(app.MaxConnections) {
		st.connections.Add(-1)
		return reject(ErrOverQuota)
	}
	s := &Session{shard: sh, conn: c, app: app, id: newSocketID(), lastSeen: srv.opts.Now().UnixNano()}
	sh.addSession(s)
	msg := make([]byte, 0, 128)
	inner := make([]byte, 0, 64)
	inner = append(inner, `{"socket_id":"`...)
	inner = append(inner, s.id...)
	inner = append(inner, `","activity_timeout":`...)
	inner = strconv.AppendInt(inner, int64(app.ActivityTimeout/time.Second), 10)
	inner = append(inner, '}')
	msg = eventJSON(msg, "pusher:connection_established", string(inner), "")
	if srv.opts.Debug {
		srv.log.Debug("Connection Established", "socket_id", s.id, "app_id", app.ID)
	}
	s.send(msg)
	return s
}

// Closed releases a session after its connection closed: it leaves every
// channel (presence members are removed and announced). Loop-only.
func (srv *Server) Closed(s *Session) {
	if s != nil && s.idx >= 0 {
		s.close()
		srv.signedOut(s)
	}
}

// newSocketID returns "<n>.<n>" with two random numbers in [1, 1e9], the
// format of Pusher and Reverb.
func newSocketID() string {
	b := make([]byte, 0, 21)
	b = strconv.AppendInt(b, rand.Int64N(1_000_000_000)+1, 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, rand.Int64N(1_000_000_000)+1, 10)
	return string(b)
}
