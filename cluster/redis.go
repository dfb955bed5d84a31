package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/reverbgo/reverb/pusher"
)

// Stats are the broker's counters.
type Stats struct {
	Published     int64 // envelopes published
	Received      int64 // envelopes received from other nodes
	Dropped       int64 // envelopes not published: queue full, too large or Redis errors
	Invalid       int64 // envelopes received that were ignored (bad JSON, version, size)
	Reconnects    int64 // subscriptions re-established after a failure
	Degraded      bool  // Redis is unreachable now
	Nodes         int   // other live nodes
	DegradedSince time.Time
}

// NodeInfo describes a live node of the cluster.
type NodeInfo struct {
	ID       string    `json:"id"`
	LastSeen time.Time `json:"last_seen"`
	Self     bool      `json:"self,omitempty"`
}

// Redis is the broker of a node in a cluster: it publishes envelopes on one
// Redis pub/sub channel and applies the other nodes' envelopes to the
// server. It implements pusher.Broker; all methods are goroutine-safe.
type Redis struct {
	cfg  Config
	px   *pusher.Server
	rdb  redis.UniversalClient
	node string
	log  *slog.Logger

	queue   chan []byte
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started atomic.Bool

	published, received, dropped, invalid, reconnects atomic.Int64
	degraded                                          atomic.Bool
	lastHello                                         atomic.Int64  // unix ns of the last hello sent
	stopping                                          chan struct{} // closed by Close: flush the queue and stop
	connected                                         atomic.Bool   // the first subscription succeeded
	degradedSince                                     atomic.Int64

	mu        sync.Mutex
	nodes     map[string]time.Time         // other nodes: last envelope seen
	pending   map[string]chan pusher.Reply // open queries by id
	syncs     map[string]*syncState        // sync parts being assembled, by node
	onRestart func()
	gen       int64
}

type syncState struct {
	gen     int64
	next    int // the part expected next
	members []pusher.PresenceChange
}

// NewRedis creates the broker of px. It does not connect yet: Start does,
// and keeps retrying for as long as it runs.
func NewRedis(cfg Config, px *pusher.Server) (*Redis, error) {
	cfg.normalize()
	rdb, err := cfg.newClient()
	if err != nil {
		return nil, err
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	ctx, cancel := context.WithCancel(context.Background())
	r := &Redis{
		cfg:      cfg,
		px:       px,
		rdb:      rdb,
		node:     hex.EncodeToString(id[:]),
		log:      cfg.Logger.With("component", "cluster"),
		queue:    make(chan []byte, cfg.PublishQueue),
		ctx:      ctx,
		cancel:   cancel,
		nodes:    make(map[string]time.Time),
		pending:  make(map[string]chan pusher.Reply),
		syncs:    make(map[string]*syncState),
		stopping: make(chan struct{}),
	}
	r.degraded.Store(true) // until the first subscription is confirmed
	r.degradedSince.Store(time.Now().UnixNano())
	return r, nil
}

// NodeID returns this node's random id.
func (r *Redis) NodeID() string { return r.node }

// OnRestart sets the function called when a `reverb restart` reaches this
// node through Redis. Call it before Start.
func (r *Redis) OnRestart(f func()) { r.onRestart = f }

// Degraded reports whether Redis is unreachable now; the node keeps serving
// its own clients meanwhile.
func (r *Redis) Degraded() bool { return r.degraded.Load() }

// Stats returns the broker's counters.
func (r *Redis) Stats() Stats {
	st := Stats{
		Published:  r.published.Load(),
		Received:   r.received.Load(),
		Dropped:    r.dropped.Load(),
		Invalid:    r.invalid.Load(),
		Reconnects: r.reconnects.Load(),
		Degraded:   r.degraded.Load(),
	}
	if ns := r.degradedSince.Load(); ns != 0 && st.Degraded {
		st.DegradedSince = time.Unix(0, ns)
	}
	r.mu.Lock()
	st.Nodes = len(r.nodes)
	r.mu.Unlock()
	return st
}

// Nodes returns this node and the other live nodes.
func (r *Redis) Nodes() []NodeInfo {
	out := []NodeInfo{{ID: r.node, LastSeen: time.Now(), Self: true}}
	r.mu.Lock()
	for id, t := range r.nodes {
		out = append(out, NodeInfo{ID: id, LastSeen: t})
	}
	r.mu.Unlock()
	return out
}

// Start runs the subscriber, the publisher and the heartbeat. It returns at
// once; Redis being down is not an error (the node serves its own clients
// and reconnects with back-off).
func (r *Redis) Start() {
	if r.started.Swap(true) {
		return
	}
	r.wg.Add(3)
	go r.subscribeLoop()
	go r.publishLoop()
	go r.heartbeatLoop()
}

// Close says goodbye to the other nodes (they drop this node's presence
// users at once) and stops.
func (r *Redis) Close() {
	if !r.started.Load() {
		return
	}
	// bye goes last through the queue, after the envelopes already queued
	// (leaves of the drained connections among them).
	r.send(&Envelope{Type: typeBye})
	close(r.stopping)
	r.wg.Wait()
	_ = r.rdb.Close()
}

func (r *Redis) setDegraded(on bool) {
	if r.degraded.Swap(on) == on {
		return
	}
	if on {
		r.degradedSince.Store(time.Now().UnixNano())
		r.log.Warn("Redis unreachable: serving local clients only until it is back")
		return
	}
	if !r.connected.Swap(true) {
		r.log.Info("Connected to Redis", "channel", r.cfg.Channel)
		return
	}
	r.log.Warn("Redis reachable again: cluster delivery resumed",
		"after", time.Since(time.Unix(0, r.degradedSince.Load())).Round(time.Millisecond))
}

// encode fills the envelope's header and marshals it.
func (r *Redis) encode(e *Envelope) ([]byte, error) {
	e.V = Version
	e.Node = r.node
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	if len(b) > r.cfg.MaxEnvelope {
		return nil, ErrEnvelopeTooLarge
	}
	return b, nil
}

// send queues an envelope for publishing without blocking.
func (r *Redis) send(e *Envelope) {
	b, err := r.encode(e)
	if err != nil {
		r.dropped.Add(1)
		r.log.Warn("envelope not published", "type", e.Type, "err", err)
		return
	}
	select {
	case r.queue <- b:
	default:
		r.dropped.Add(1)
	}
}

func (r *Redis) publishLoop() {
	defer r.wg.Done()
	defer r.cancel() // stops the subscriber and the heartbeat once flushed
	for {
		select {
		case <-r.stopping:
			// Flush what is queued (bye is last), for at most 2 s.
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) {
				select {
				case b := <-r.queue:
					if !r.publish(b, time.Until(deadline)) {
						return
					}
				default:
					return
				}
			}
			return
		case b := <-r.queue:
			r.publish(b, 2*time.Second)
		}
	}
}

// publish sends one envelope, counting the outcome.
func (r *Redis) publish(b []byte, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := r.rdb.Publish(ctx, r.cfg.Channel, b).Err()
	cancel()
	if err != nil {
		r.dropped.Add(1)
		r.setDegraded(true)
		return false
	}
	r.published.Add(1)
	return true
}

func (r *Redis) subscribeLoop() {
	defer r.wg.Done()
	ps := r.rdb.Subscribe(r.ctx, r.cfg.Channel)
	defer ps.Close()
	backoff := 100 * time.Millisecond
	subscribedOnce := false
	for {
		// Our own heartbeat comes back through Redis every interval, so a
		// silence of three intervals means Redis is gone (or stopped).
		msg, err := ps.ReceiveTimeout(r.ctx, 3*r.cfg.HeartbeatInterval)
		if r.ctx.Err() != nil {
			return
		}
		if err != nil {
			r.setDegraded(true)
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			if subscribedOnce {
				r.reconnects.Add(1)
			}
			subscribedOnce = true
			r.setDegraded(false)
			// Give every known node a full node_timeout to answer our hello
			// before it may be declared dead: the silence was Redis's.
			r.mu.Lock()
			for id := range r.nodes {
				r.nodes[id] = time.Now()
			}
			r.mu.Unlock()
			// (Re)joined: announce ourselves; everyone answers with their
			// presence state, and we send ours.
			r.send(&Envelope{Type: typeHello})
			r.sendSync()
		case *redis.Message:
			r.setDegraded(false)
			r.handle([]byte(m.Payload))
		case *redis.Pong:
		}
	}
}

func (r *Redis) heartbeatLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case now := <-t.C:
			r.send(&Envelope{Type: typePing})
			r.expireNodes(now)
		}
	}
}

// expireNodes drops nodes that have been silent for NodeTimeout. While
// Redis itself is unreachable nobody is dropped: silence then says nothing
// about the other nodes.
func (r *Redis) expireNodes(now time.Time) {
	if r.Degraded() {
		return
	}
	var dead []string
	r.mu.Lock()
	for id, t := range r.nodes {
		if now.Sub(t) >= r.cfg.NodeTimeout {
			dead = append(dead, id)
			delete(r.nodes, id)
			delete(r.syncs, id)
		}
	}
	r.mu.Unlock()
	for _, id := range dead {
		r.log.Warn("node stopped answering; removing its presence members", "node", id)
		r.px.DropNode(id)
	}
}

// sendSync publishes this node's complete presence state, in parts that
// fit the envelope limit.
func (r *Redis) sendSync() {
	r.mu.Lock()
	r.gen++
	gen := r.gen
	r.mu.Unlock()
	const perPart = 500
	// Queued while the registry is locked: a join or leave of this node
	// cannot slip in between the snapshot and its envelopes.
	r.px.WithLocalPresence(func(state []pusher.PresenceChange) {
		for part, start := 0, 0; ; part, start = part+1, start+perPart {
			end := min(start+perPart, len(state))
			e := &Envelope{Type: typeSync, Gen: gen, Part: part, Last: end == len(state)}
			for _, c := range state[start:end] {
				e.Members = append(e.Members, syncMember{App: c.App.ID, Channel: c.Channel, Member: c.Member})
			}
			r.send(e)
			if e.Last {
				return
			}
		}
	})
}

// helloDue reports whether a hello may be sent now: at most one per
// heartbeat interval, so that a node joining a cluster of K nodes does not
// set off K full resyncs of everyone.
func (r *Redis) helloDue() bool {
	now := time.Now().UnixNano()
	last := r.lastHello.Load()
	if now-last < int64(r.cfg.HeartbeatInterval) {
		return false
	}
	return r.lastHello.CompareAndSwap(last, now)
}

// handle applies one envelope from Redis.
func (r *Redis) handle(b []byte) {
	e, err := decodeEnvelope(b, r.cfg.MaxEnvelope)
	if err != nil {
		r.invalid.Add(1)
		return
	}
	if e.Node == r.node {
		return // our own echo: local delivery already happened
	}
	r.received.Add(1)
	r.mu.Lock()
	_, known := r.nodes[e.Node]
	if e.Type != typeBye && e.Node != "" && e.Type != typeRestart {
		r.nodes[e.Node] = time.Now()
	}
	r.mu.Unlock()
	switch e.Type {
	case typeHello, typeBye, typeRestart, typeSync:
	default:
		if !known && r.helloDue() {
			// A node we did not know (we started after it, or it came
			// back): make sure we get its state.
			r.send(&Envelope{Type: typeHello})
		}
	}
	var app *pusher.App
	if e.App != "" {
		if app = r.px.AppByID(e.App); app == nil {
			// An app this node does not serve. A query still gets an
			// (empty) answer, so that the asker does not wait it out.
			if e.Type == typeQuery {
				r.send(&Envelope{Type: typeReply, ID: e.ID, To: e.Node, Reply: &pusher.Reply{}})
			}
			return
		}
	}
	switch e.Type {
	case typeEvent:
		r.px.DeliverRemote(app, e.Channel, e.Msg, e.Except)
	case typeJoin:
		r.px.RemotePresenceJoin(e.Node, app, e.Channel, *e.Member)
	case typeLeave:
		r.px.RemotePresenceLeave(e.Node, app, e.Channel, e.Key)
	case typeHello:
		r.sendSync()
	case typeSync:
		r.applySync(e)
	case typeBye:
		r.mu.Lock()
		delete(r.nodes, e.Node)
		delete(r.syncs, e.Node)
		r.mu.Unlock()
		r.px.DropNode(e.Node)
	case typeQuery:
		reply := r.px.Answer(app, *e.Query)
		r.send(&Envelope{Type: typeReply, ID: e.ID, To: e.Node, Reply: &reply})
	case typeReply:
		if e.To != r.node {
			return
		}
		r.mu.Lock()
		ch := r.pending[e.ID]
		r.mu.Unlock()
		if ch != nil {
			select {
			case ch <- *e.Reply:
			default:
			}
		}
	case typeTerminate:
		r.px.TerminateLocal(app, e.User)
	case typeRestart:
		if r.onRestart != nil {
			r.log.Info("restart requested through Redis")
			r.onRestart()
		}
	}
}

func (r *Redis) applySync(e *Envelope) {
	r.mu.Lock()
	st := r.syncs[e.Node]
	if st == nil || st.gen != e.Gen {
		st = &syncState{gen: e.Gen}
		r.syncs[e.Node] = st
	}
	if e.Part != st.next {
		// A part went missing (dropped on the way): this state is
		// incomplete. Forget it and ask again.
		delete(r.syncs, e.Node)
		r.mu.Unlock()
		r.invalid.Add(1)
		if r.helloDue() {
			r.send(&Envelope{Type: typeHello})
		}
		return
	}
	st.next++
	for _, m := range e.Members {
		if app := r.px.AppByID(m.App); app != nil {
			st.members = append(st.members, pusher.PresenceChange{App: app, Channel: m.Channel, Member: m.Member})
		}
	}
	if !e.Last {
		r.mu.Unlock()
		return
	}
	delete(r.syncs, e.Node)
	r.mu.Unlock()
	r.px.ReplaceNodePresence(e.Node, st.members)
}

// Publish implements pusher.Broker.
func (r *Redis) Publish(app *pusher.App, channel string, msg []byte, except string) {
	r.send(&Envelope{Type: typeEvent, App: app.ID, Channel: channel, Msg: msg, Except: except})
}

// PresenceJoin implements pusher.Broker.
func (r *Redis) PresenceJoin(app *pusher.App, channel string, m pusher.PresenceMember) {
	r.send(&Envelope{Type: typeJoin, App: app.ID, Channel: channel, Member: &m})
}

// PresenceLeave implements pusher.Broker.
func (r *Redis) PresenceLeave(app *pusher.App, channel, key string) {
	r.send(&Envelope{Type: typeLeave, App: app.ID, Channel: channel, Key: key})
}

// Terminate implements pusher.Broker.
func (r *Redis) Terminate(app *pusher.App, userID string) {
	r.send(&Envelope{Type: typeTerminate, App: app.ID, User: userID})
}

// Gather implements pusher.Broker: it asks the live nodes and waits for
// their replies, at most GatherTimeout. While Redis is unreachable it
// answers at once with nothing.
func (r *Redis) Gather(ctx context.Context, app *pusher.App, q pusher.Query) []pusher.Reply {
	if r.Degraded() {
		return nil
	}
	r.mu.Lock()
	want := len(r.nodes)
	r.mu.Unlock()
	if want == 0 {
		return nil
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	key := hex.EncodeToString(id[:])
	ch := make(chan pusher.Reply, want)
	r.mu.Lock()
	r.pending[key] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.pending, key)
		r.mu.Unlock()
	}()
	r.send(&Envelope{Type: typeQuery, App: app.ID, ID: key, Query: &q})
	timer := time.NewTimer(r.cfg.GatherTimeout)
	defer timer.Stop()
	var out []pusher.Reply
	for len(out) < want {
		select {
		case rep := <-ch:
			out = append(out, rep)
		case <-timer.C:
			return out
		case <-ctx.Done():
			return out
		}
	}
	return out
}

// PublishRestart asks every node on the channel to drain and exit (what
// `reverb restart` does when scaling is enabled).
func PublishRestart(ctx context.Context, cfg Config) error {
	cfg.normalize()
	rdb, err := cfg.newClient()
	if err != nil {
		return err
	}
	defer rdb.Close()
	b, err := json.Marshal(&Envelope{V: Version, Node: "restart-cli", Type: typeRestart})
	if err != nil {
		return err
	}
	return rdb.Publish(ctx, cfg.Channel, b).Err()
}

var _ pusher.Broker = (*Redis)(nil)
