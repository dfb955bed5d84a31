package pusher

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
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
	srv := &Server{
		opts:     opts,
		log:      opts.Logger,
		byKey:    make(map[string]*App),
		byID:     make(map[string]*App),
		appStats: make(map[*App]*appStats),
		broker:   NopBroker{},
		shards:   make([]*Shard, nShards),
	}
	for _, a := range opts.Apps {
		if srv.byKey[a.Key] != nil || srv.byID[a.ID] != nil {
			return nil, ErrDuplicateApp
		}
		srv.byKey[a.Key] = a
		srv.byID[a.ID] = a
		srv.appStats[a] = &appStats{}
	}
	srv.hub = newHub(opts.Apps, nShards)
	return srv, nil
}

// Options returns the normalized options.
func (srv *Server) Options() Options { return srv.opts }

// SetBroker installs the cluster broker. Call it before serving.
func (srv *Server) SetBroker(b Broker) {
	srv.broker = b
	srv.hub.broker = b
	_, alone := b.(NopBroker)
	srv.clustered = !alone
}

// AppByKey finds an app by key.
func (srv *Server) AppByKey(key string) *App { return srv.byKey[key] }

// AppByID finds an app by id.
func (srv *Server) AppByID(id string) *App { return srv.byID[id] }

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
	sh := &Shard{srv: srv, idx: srv.nShard, exec: exec, local: make(map[localKey]*localChannel)}
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
	s := &Session{shard: sh, conn: c, app: app, id: newSocketID(), lastSeen: time.Now().UnixNano()}
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

// deliver hands an event message to this node's subscribers of a channel;
// store keeps it as the cached event of a cache channel. Goroutine-safe.
func (srv *Server) deliver(app *App, channel string, msg []byte, except string, store bool) {
	var frame []byte
	srv.hub.route(app, channel, msg, store, func(i int) {
		if frame == nil {
			frame = wsproto.AppendText(make([]byte, 0, len(msg)+10), msg)
		}
		srv.shards[i].enqueue(delivery{app: app, channel: channel, frame: frame, except: except})
	})
	if srv.opts.Debug {
		srv.log.Debug("Broadcasting To", "channel", channel, "app_id", app.ID, "message", string(msg))
	}
}

// publish sends events of app to the other nodes and delivers them here.
// When the broker refuses them (ErrBusy) nothing is delivered anywhere and
// the error is returned. done is closed once the other nodes were handed
// the events (nil when there is nothing to wait for). Goroutine-safe.
func (srv *Server) publish(app *App, events []Outgoing) (done <-chan struct{}, err error) {
	done, err = srv.broker.Publish(app, events)
	if err == ErrBusy {
		return nil, err
	}
	// In a cluster the cached event of a cache channel is stored when the
	// broker hands it back in the cluster's order (StoreCache), so that every
	// node keeps the same last event; alone, or cut off, it is stored now.
	store := !srv.clustered || err != nil
	for _, e := range events {
		srv.deliver(app, e.Channel, e.Msg, e.Except, store)
	}
	return done, nil
}

// DeliverRemote delivers an event that another node published (and keeps it
// as a cache channel's cached event). Goroutine-safe.
func (srv *Server) DeliverRemote(app *App, channel string, msg []byte, except string) {
	srv.deliver(app, channel, msg, except, true)
}

// StoreCache keeps msg as the cached event of a cache channel without
// delivering it: the broker calls it for this node's own events, in the
// cluster's order. Other channels are ignored. Goroutine-safe.
func (srv *Server) StoreCache(app *App, channel string, msg []byte) {
	srv.hub.storeCache(app, channel, msg)
}

// Trigger publishes an event, as the HTTP API does: name and data go out as
// {"event":name,"data":data,"channel":channel}. It fails with ErrBusy when
// the cluster cannot take it now (nothing was delivered). Goroutine-safe.
func (srv *Server) Trigger(app *App, channel, name, data, except string) error {
	_, err := srv.publish(app, []Outgoing{{Channel: channel, Msg: eventJSON(nil, name, data, channel), Except: except}})
	return err
}

// TerminateUser closes every connection of app that belongs to user id
// (signed in as it, or a presence member with that user_id), with pusher:error
// and close code 4009. Goroutine-safe; the closes happen asynchronously on
// the loops.
func (srv *Server) TerminateUser(app *App, id string) {
	srv.terminateLocal(app, id)
	srv.broker.Terminate(app, id)
}

func (srv *Server) terminateLocal(app *App, id string) {
	for _, sh := range srv.shardList() {
		sh.exec(func() {
			for i := len(sh.sessions) - 1; i >= 0; i-- {
				s := sh.sessions[i]
				if s.app == app && !s.closed && s.matchesUser(id) {
					s.fail(ErrTerminated)
				}
			}
		})
	}
}

// AppStats are one app's figures on this node.
type AppStats struct {
	AppID string
	// Connections open now, and those subscribed to at least one channel.
	Connections, Subscribed int64
	// Channels occupied now.
	Channels int
	// Messages and bytes received from and sent to clients since start.
	MessagesReceived, MessagesSent, BytesReceived, BytesSent int64
}

// Stats are the node's protocol figures, summed over the loops.
type Stats struct {
	Apps                []AppStats // in the configured order
	SlowConsumerCloses  int64
	RateLimited         int64
	ClientEventsDropped int64
	Errors              map[int]int64 // pusher:error events sent, by code
	Closes              map[int]int64 // close frames sent by the server, by code
}

// Stats gathers every shard's counters, reading each on its own loop. It
// returns what it has when ctx ends. Goroutine-safe; never call it from a
// loop (it waits for the loops).
func (srv *Server) Stats(ctx context.Context) Stats {
	shards := srv.shardList()
	type snap struct {
		apps           map[*App]appCounters
		slow, rl, ce   int64
		errors, closes map[int]int64
	}
	ch := make(chan snap, len(shards))
	for _, sh := range shards {
		sh.exec(func() {
			sn := snap{
				apps:   make(map[*App]appCounters, len(sh.stats.apps)),
				slow:   sh.stats.slowConsumerCloses,
				rl:     sh.stats.rateLimited,
				ce:     sh.stats.clientEventsDropped,
				errors: maps.Clone(sh.stats.errors),
				closes: maps.Clone(sh.stats.closes),
			}
			for a, c := range sh.stats.apps {
				sn.apps[a] = *c
			}
			ch <- sn
		})
	}
	out := Stats{Errors: map[int]int64{}, Closes: map[int]int64{}}
	byApp := make(map[*App]*AppStats, len(srv.opts.Apps))
	for _, a := range srv.opts.Apps {
		out.Apps = append(out.Apps, AppStats{AppID: a.ID})
	}
	for i, a := range srv.opts.Apps {
		byApp[a] = &out.Apps[i]
		byApp[a].Subscribed = srv.appStats[a].subscribed.Load()
		byApp[a].Channels = srv.hub.count(a)
	}
	for range shards {
		select {
		case sn := <-ch:
			for a, c := range sn.apps {
				st := byApp[a]
				st.Connections += c.connections
				st.MessagesReceived += c.messagesReceived
				st.MessagesSent += c.messagesSent
				st.BytesReceived += c.bytesReceived
				st.BytesSent += c.bytesSent
			}
			out.SlowConsumerCloses += sn.slow
			out.RateLimited += sn.rl
			out.ClientEventsDropped += sn.ce
			for k, v := range sn.errors {
				out.Errors[k] += v
			}
			for k, v := range sn.closes {
				out.Closes[k] += v
			}
		case <-ctx.Done():
			return out
		}
	}
	return out
}

// Connections returns the open connections of app on this node.
func (srv *Server) Connections(app *App) int64 { return srv.appStats[app].connections.Load() }

// Draining reports whether Drain was called. Goroutine-safe.
func (srv *Server) Draining() bool { return srv.draining.Load() }

// drainBatch is how many sessions one drain step closes on a shard.
const drainBatch = 200

// Drain starts a graceful shutdown: new connections are refused with 4200,
// and every open session gets pusher:error 4200 and a close frame 4200, in
// batches spread at random over spread so that clients do not all reconnect
// at the same instant. It returns at once; the transport waits for the
// connections to go. Goroutine-safe.
func (srv *Server) Drain(spread time.Duration) {
	if srv.draining.Swap(true) {
		return
	}
	for _, sh := range srv.shardList() {
		sh.exec(func() {
			sessions := append([]*Session(nil), sh.sessions...)
			n := (len(sessions) + drainBatch - 1) / drainBatch
			for i := 0; i < n; i++ {
				batch := sessions[i*drainBatch : min((i+1)*drainBatch, len(sessions))]
				var delay time.Duration
				if spread > 0 && n > 1 {
					slot := spread / time.Duration(n)
					delay = slot*time.Duration(i) + time.Duration(rand.Int64N(int64(slot)+1))
				}
				time.AfterFunc(delay, func() {
					sh.exec(func() {
						for _, s := range batch {
							if !s.closed {
								s.fail(ErrShuttingDown)
							}
						}
					})
				})
			}
		})
	}
}

// Apps returns the configured apps. Goroutine-safe.
func (srv *Server) Apps() []*App { return srv.opts.Apps }

// Channels returns the occupied channels of app on this node whose names
// start with prefix, sorted by name. Goroutine-safe.
func (srv *Server) Channels(app *App, prefix string) []ChannelInfo {
	return srv.hub.list(app, prefix)
}

// Member is one user of a presence channel.
type Member struct {
	ID   json.RawMessage // user_id as the client sent it
	Info json.RawMessage // user_info, or nil
}

// Members returns the users of a presence channel on this node in the order
// they joined. Goroutine-safe.
func (srv *Server) Members(app *App, channel string) []Member {
	return srv.hub.members(app, channel)
}

// announceRemoved tells this node's subscribers of a presence channel that a
// user left (every node announces to its own subscribers).
func (srv *Server) announceRemoved(app *App, channel string, userID json.RawMessage, except string) {
	data := make([]byte, 0, 16+len(userID))
	data = append(data, `{"user_id":`...)
	data = append(data, userID...)
	data = append(data, '}')
	srv.deliver(app, channel, eventJSON(nil, "pusher_internal:member_removed", string(data), channel), except, false)
}

func (srv *Server) announceAdded(c PresenceChange) {
	srv.deliver(c.App, c.Channel, eventJSON(nil, "pusher_internal:member_added", c.Member.Data, c.Channel), "", false)
}

// RemotePresenceJoin records that another node has a presence user on a
// channel and announces member_added locally when the user is new to the
// channel. Goroutine-safe.
func (srv *Server) RemotePresenceJoin(node string, app *App, channel string, m PresenceMember) {
	if srv.hub.remoteJoin(node, app, channel, m) {
		srv.announceAdded(PresenceChange{App: app, Channel: channel, Member: m})
	}
}

// RemotePresenceLeave records that another node no longer has a presence
// user and announces member_removed locally when the user left the channel
// everywhere. Goroutine-safe.
func (srv *Server) RemotePresenceLeave(node string, app *App, channel, key string) {
	if m := srv.hub.remoteLeave(node, app, channel, key); m != nil {
		srv.announceRemoved(app, channel, m.id, "")
	}
}

// ReplaceNodePresence replaces all that is known of another node's presence
// users (after it announced itself, or after a resync) and announces the
// differences locally. Goroutine-safe.
func (srv *Server) ReplaceNodePresence(node string, state []PresenceChange) {
	added, removed := srv.hub.replaceNode(node, state)
	for _, c := range removed {
		srv.announceRemoved(c.App, c.Channel, c.Member.ID, "")
	}
	for _, c := range added {
		srv.announceAdded(c)
	}
}

// DropNode forgets another node (it stopped or stopped answering): its
// presence users who are connected nowhere else are announced as removed.
// Goroutine-safe.
func (srv *Server) DropNode(node string) {
	for _, c := range srv.hub.dropNode(node) {
		srv.announceRemoved(c.App, c.Channel, c.Member.ID, "")
	}
}

// WithLocalPresence calls fn with the presence users connected to this node,
// for other nodes to replicate. No presence change of this node reaches the
// broker while fn runs, so fn may queue the state knowing that later joins
// and leaves follow it. fn must not block or call back into the server.
// Goroutine-safe.
func (srv *Server) WithLocalPresence(fn func([]PresenceChange)) { srv.hub.withLocalPresence(fn) }

// Query asks a node for its local figures (cluster-wide HTTP API answers
// are the sums over the nodes).
type Query struct {
	// Kind is QuerySubscriptions or QueryConnections.
	Kind string `json:"kind"`
	// Channels limits QuerySubscriptions to these channels; when empty, all
	// channels with subscribers whose names start with Prefix are answered.
	Channels []string `json:"channels,omitempty"`
	Prefix   string   `json:"prefix,omitempty"`
	// Users asks also for the node's own presence users of the answered
	// presence channels (Reply.Users).
	Users bool `json:"users,omitempty"`
}

// Query kinds.
const (
	QuerySubscriptions = "subscriptions"
	QueryConnections   = "connections"
	// QueryUsers answers only Reply.Users, for Channels.
	QueryUsers = "users"
)

// Reply is a node's answer to a Query.
type Reply struct {
	// Subscriptions maps channel names to this node's subscription counts
	// (channels without subscribers are left out).
	Subscriptions map[string]int `json:"subscriptions,omitempty"`
	// Connections is the node's count of connections subscribed to at least
	// one channel.
	Connections int64 `json:"connections,omitempty"`
	// Users maps presence channel names to the node's own users of them:
	// user key to user_id as sent (only when Query.Users).
	Users map[string]map[string]json.RawMessage `json:"users,omitempty"`
}

// Answer computes this node's Reply to q. Goroutine-safe.
func (srv *Server) Answer(app *App, q Query) Reply {
	var r Reply
	switch q.Kind {
	case QueryConnections:
		return Reply{Connections: srv.appStats[app].subscribed.Load()}
	case QueryUsers:
	default:
		r.Subscriptions = map[string]int{}
		if len(q.Channels) > 0 {
			for _, name := range q.Channels {
				if info, ok := srv.hub.info(app, name); ok {
					r.Subscriptions[name] = info.SubscriptionCount
				}
			}
		} else {
			for _, info := range srv.hub.list(app, q.Prefix) {
				r.Subscriptions[info.Name] = info.SubscriptionCount
			}
		}
	}
	if q.Users {
		names := q.Channels
		if len(names) == 0 {
			for name := range r.Subscriptions {
				names = append(names, name)
			}
		}
		for _, name := range names {
			if kind, _ := Classify(name); kind != KindPresence {
				continue
			}
			if u := srv.hub.localUsers(app, name); len(u) > 0 {
				if r.Users == nil {
					r.Users = make(map[string]map[string]json.RawMessage)
				}
				r.Users[name] = u
			}
		}
	}
	return r
}

// gather answers q for the whole cluster: this node's reply plus the other
// nodes' replies the broker collected. Goroutine-safe; it may wait for the
// broker's gathering timeout, so never call it on a loop.
func (srv *Server) gather(app *App, q Query) Reply {
	total := srv.Answer(app, q)
	for _, r := range srv.broker.Gather(context.Background(), app, q) {
		total.Connections += r.Connections
		for name, n := range r.Subscriptions {
			if total.Subscriptions == nil {
				total.Subscriptions = map[string]int{}
			}
			total.Subscriptions[name] += n
		}
		for name, users := range r.Users {
			if total.Users == nil {
				total.Users = make(map[string]map[string]json.RawMessage)
			}
			all := total.Users[name]
			if all == nil {
				all = make(map[string]json.RawMessage, len(users))
				total.Users[name] = all
			}
			for k, id := range users {
				all[k] = id
			}
		}
	}
	return total
}

// TerminateLocal closes this node's connections of a user (see
// TerminateUser), for a request that came from another node. Goroutine-safe.
func (srv *Server) TerminateLocal(app *App, id string) { srv.terminateLocal(app, id) }

// SweepCaches drops cached events of cache channels older than 30 minutes.
// Call it now and then (the transport does, once a minute). Goroutine-safe.
func (srv *Server) SweepCaches(now time.Time) { srv.hub.sweepCaches(now) }

// WithLocalDigest calls fn with the digests of this node's own presence
// users by app id (apps without users left out), for other nodes to check their copy against. No presence change of
// this node reaches the broker while fn runs, so fn may queue the digest
// knowing where it stands among the joins and leaves. fn must not block or
// call back into the server. Goroutine-safe.
func (srv *Server) WithLocalDigest(fn func(map[string]PresenceDigest)) { srv.hub.withLocalDigest(fn) }

// NodeDigest returns the digests of what this node knows of another node's
// presence users, by app id. Goroutine-safe.
func (srv *Server) NodeDigest(node string) map[string]PresenceDigest { return srv.hub.nodeDigest(node) }
