package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
	"github.com/reverbgo/reverb/pusher"
)

// Drop reasons, as counted in Stats.Dropped.
const (
	// DropUnreachable: Redis could not be reached when the envelope was
	// sent; events were delivered on this node only.
	DropUnreachable = "unreachable"
	// DropPublishError: the publish round trip failed or timed out.
	DropPublishError = "publish_error"
	// DropTooLarge: the envelope was over MaxEnvelope.
	DropTooLarge = "too_large"
	// DropQueueFull: a control envelope found the queue far over its limit.
	DropQueueFull = "queue_full"
)

var dropReasons = [...]string{DropUnreachable, DropPublishError, DropTooLarge, DropQueueFull}

// Stats are the broker's counters.
type Stats struct {
	Published  int64 // envelopes published
	Received   int64 // envelopes received from other nodes
	Refused    int64 // events refused because the queue was full (the API answered 503)
	Queued     int   // envelopes waiting to be published now
	Batches    int64 // publish round trips
	Invalid    int64 // envelopes received that were ignored (truncated, version, size)
	Reconnects int64 // subscriptions re-established after a failure
	Resyncs    int64 // presence states asked again after a digest mismatch or a lost part
	// Dropped counts envelopes not published, by reason (Drop* constants).
	Dropped       map[string]int64
	Degraded      bool // Redis is unreachable now
	Nodes         int  // other live nodes
	DegradedSince time.Time
	Interest      int // bus channels of events this node listens to
}

// DroppedTotal is the sum of Dropped.
func (s Stats) DroppedTotal() int64 {
	var n int64
	for _, v := range s.Dropped {
		n += v
	}
	return n
}

// NodeInfo describes a live node of the cluster.
type NodeInfo struct {
	ID       string    `json:"id"`
	LastSeen time.Time `json:"last_seen"`
	Self     bool      `json:"self,omitempty"`
}

// Redis is the broker of a node in a cluster. Events travel on one bus
// channel per Pusher channel, which a node listens to only while it has
// subscribers of it (cache channels share one channel every node listens
// to, since every node keeps their last event). Presence, heartbeats and
// queries travel on a control channel; answers on the asking node's own
// channel. Envelopes queued while a round trip is in flight leave together
// in the next one. It implements pusher.Broker; all methods are
// goroutine-safe.
type Redis struct {
	cfg   Config
	px    *pusher.Server
	t     transport
	node  string
	nodeB []byte
	log   *slog.Logger
	apps  map[string]*pusher.App

	chCtl, chCache, chSelf, evPrefix string

	q        *publishQueue
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	started  atomic.Bool
	closing  atomic.Bool   // Close began: only the bye is sent
	stopping chan struct{} // closed by Close: flush the queue and stop

	published, received, refused, invalid, reconnects, resyncs, batches atomic.Int64
	dropped                                                             [len(dropReasons)]atomic.Int64
	degraded                                                            atomic.Bool
	degradedSince                                                       atomic.Int64
	connected                                                           atomic.Bool // the first subscription succeeded
	toldUnreachable                                                     atomic.Bool // the first connection's failure was logged
	lastHello                                                           atomic.Int64
	lastDropLog                                                         atomic.Int64

	syncMu      sync.Mutex // held while a sync is queued
	mu          sync.Mutex
	nodes       map[string]time.Time         // other nodes: last control envelope seen
	pending     map[string]chan pusher.Reply // open queries by id
	syncs       map[string]*syncState        // sync parts being assembled, by node
	lastSyncReq map[string]time.Time
	onRestart   func()
	gen         int64

	imu      sync.Mutex
	subs     map[string]*chanState // bus channel → interest state
	ops      []subOp               // subscription changes not yet sent
	opWake   chan struct{}
	barriers map[string]barrierWait
}

// chanState is this node's interest in one bus channel.
type chanState struct {
	want        bool     // subscribers here want the channel
	base        bool     // a channel the node always listens to
	outstanding int      // SUBSCRIBEs sent and not confirmed yet
	confirmed   bool     // listening now
	waiters     []func() // subscriptions waiting for the confirmation
}

type subOp struct {
	channel string
	on      bool
}

type syncState struct {
	started time.Time // when its first part arrived
	gen     int64
	next    int // the part expected next
	members []pusher.PresenceChange
}

// cacheEvent is an event of a cache channel in flight: if its publish
// fails, the node stores it itself.
type cacheEvent struct {
	app     *pusher.App
	channel string
	msg     []byte
}

// NewRedis creates the broker of px. It does not connect yet: Start does,
// and keeps retrying for as long as it runs.
func NewRedis(cfg Config, px *pusher.Server) (*Redis, error) {
	cfg.normalize()
	rdb, err := cfg.newClient()
	if err != nil {
		return nil, err
	}
	t := newRedisTransport(rdb, 3*cfg.HeartbeatInterval)
	if cfg.Mode == ModeSentinel {
		tlsConf, err := cfg.tlsConfig(nil)
		if err != nil {
			return nil, err
		}
		t.sentinel = &sentinelWatch{addrs: cfg.Addrs, masterName: cfg.MasterName, opts: redis.Options{
			Username: cfg.SentinelUsername, Password: cfg.SentinelPassword, TLSConfig: tlsConf,
			DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		}, master: redis.Options{
			Username: cfg.Username, Password: cfg.Password, DB: cfg.DB, TLSConfig: tlsConf,
			DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		}}
	}
	return newBroker(cfg, px, t), nil
}

func newBroker(cfg Config, px *pusher.Server, t transport) *Redis {
	cfg.normalize()
	var id [8]byte
	_, _ = rand.Read(id[:])
	ctx, cancel := context.WithCancel(context.Background())
	node := hex.EncodeToString(id[:])
	r := &Redis{
		cfg:         cfg,
		px:          px,
		t:           t,
		node:        node,
		nodeB:       []byte(node),
		log:         cfg.Logger.With("component", "cluster"),
		apps:        make(map[string]*pusher.App),
		chCtl:       cfg.Channel + ":ctl",
		chCache:     cfg.Channel + ":cache",
		chSelf:      cfg.Channel + ":n:" + node,
		evPrefix:    cfg.Channel + ":e:",
		q:           newPublishQueue(cfg.PublishQueue),
		ctx:         ctx,
		cancel:      cancel,
		stopping:    make(chan struct{}),
		nodes:       make(map[string]time.Time),
		pending:     make(map[string]chan pusher.Reply),
		syncs:       make(map[string]*syncState),
		lastSyncReq: make(map[string]time.Time),
		subs:        make(map[string]*chanState),
		opWake:      make(chan struct{}, 1),
		barriers:    make(map[string]barrierWait),
	}
	for _, a := range px.Apps() {
		r.apps[a.ID] = a
	}
	r.degraded.Store(true) // until the first subscription is confirmed
	r.degradedSince.Store(time.Now().UnixNano())
	return r
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
		Refused:    r.refused.Load(),
		Queued:     r.q.len(),
		Batches:    r.batches.Load(),
		Invalid:    r.invalid.Load(),
		Reconnects: r.reconnects.Load(),
		Resyncs:    r.resyncs.Load(),
		Degraded:   r.degraded.Load(),
		Dropped:    make(map[string]int64, len(dropReasons)),
	}
	for i, reason := range dropReasons {
		st.Dropped[reason] = r.dropped[i].Load()
	}
	if ns := r.degradedSince.Load(); ns != 0 && st.Degraded {
		st.DegradedSince = time.Unix(0, ns)
	}
	r.mu.Lock()
	st.Nodes = len(r.nodes)
	r.mu.Unlock()
	r.imu.Lock()
	for _, s := range r.subs {
		if s.want && !s.base {
			st.Interest++
		}
	}
	r.imu.Unlock()
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

// Start connects and runs the subscriber, the publisher and the heartbeat.
// It returns at once; Redis being down is not an error (the node serves its
// own clients and reconnects with back-off).
func (r *Redis) Start() {
	if r.started.Swap(true) {
		return
	}
	r.t.start(r)
	r.imu.Lock()
	for _, ch := range []string{r.chCtl, r.chCache, r.chSelf} {
		r.subs[ch] = &chanState{want: true, base: true, outstanding: 1}
		r.ops = append(r.ops, subOp{ch, true})
	}
	r.imu.Unlock()
	r.wakeOps()
	r.wg.Add(3)
	go r.interestLoop()
	go r.publishLoop()
	go r.heartbeatLoop()
}

// Close says goodbye to the other nodes (they drop this node's presence
// users at once), flushes what is queued (for at most PublishTimeout) and
// stops.
func (r *Redis) Close() {
	if !r.started.Load() {
		return
	}
	if r.closing.Swap(true) {
		return
	}
	r.sendControl(r.chCtl, &header{kind: kindBye}, nil)
	close(r.stopping)
	r.wg.Wait()
	// What the final flush had no time for is dropped (and its waiters
	// released).
	for b := r.q.take(); b != nil; b = r.q.take() {
		for i := range b.msgs {
			r.drop(DropUnreachable, b.msgs[i].kind, 1)
		}
		close(b.done)
	}
	_ = r.t.close()
	r.fireAll()
}

// setDegraded marks Redis unreachable; onAlive clears it.
func (r *Redis) setDegraded(on bool) {
	if !on {
		r.onAlive()
		return
	}
	if r.degraded.Swap(true) {
		return
	}
	r.degradedSince.Store(time.Now().UnixNano())
	r.log.Warn("Redis unreachable: serving local clients only until it is back")
}

// drop counts n envelopes not published and logs, at most every 10 s.
func (r *Redis) drop(reason string, k kind, n int) {
	for i, d := range dropReasons {
		if d == reason {
			r.dropped[i].Add(int64(n))
		}
	}
	if r.logDue() {
		st := r.Stats()
		r.log.Warn("cluster envelopes dropped", "reason", reason, "type", k.String(), "n", n,
			"dropped_total", st.DroppedTotal(), "refused_total", st.Refused)
	}
}

// refuse counts n events refused because the queue is full and logs, at
// most every 10 s.
func (r *Redis) refuse(n int) {
	r.refused.Add(int64(n))
	if r.logDue() {
		r.log.Warn("cross-node queue full: events refused (HTTP 503, Retry-After)", "publish_queue", r.cfg.PublishQueue,
			"refused_total", r.refused.Load())
	}
}

// logDue reports whether a drop or refusal may be logged now.
func (r *Redis) logDue() bool {
	now := time.Now().UnixNano()
	last := r.lastDropLog.Load()
	return now-last >= int64(10*time.Second) && r.lastDropLog.CompareAndSwap(last, now)
}

// str views a string as bytes without copying; the bytes are read only.
func str(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// busChannel is the bus channel of a Pusher channel's events.
func (r *Redis) busChannel(app *pusher.App, channel string) (bus string, cache bool) {
	if _, cache := pusher.Classify(channel); cache {
		return r.chCache, true
	}
	return r.evPrefix + app.ID + ":" + channel, false
}

func (r *Redis) nodeChannel(node string) string { return r.cfg.Channel + ":n:" + node }

// Publish implements pusher.Broker.
func (r *Redis) Publish(app *pusher.App, events []pusher.Outgoing) (<-chan struct{}, error) {
	if r.degraded.Load() || r.closing.Load() {
		r.drop(DropUnreachable, kindEvent, len(events))
		return nil, pusher.ErrUnreachable
	}
	msgs := make([]outMsg, 0, len(events))
	for _, e := range events {
		h := header{kind: kindEvent, node: r.nodeB, app: str(app.ID), channel: str(e.Channel), except: str(e.Except)}
		size := envelopeSize(&h, len(e.Msg))
		if size > r.cfg.MaxEnvelope {
			r.drop(DropTooLarge, kindEvent, 1)
			continue
		}
		bus, cache := r.busChannel(app, e.Channel)
		m := outMsg{channel: bus, payload: appendEnvelope(make([]byte, 0, size), &h, e.Msg), kind: kindEvent}
		if cache {
			m.cache = &cacheEvent{app: app, channel: e.Channel, msg: e.Msg}
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		return nil, pusher.ErrUnreachable
	}
	done, ok := r.q.addEvents(msgs)
	if !ok {
		r.refuse(len(msgs))
		return nil, pusher.ErrBusy
	}
	return done, nil
}

// sendControl queues a control envelope on a bus channel; it reports
// whether it was queued.
func (r *Redis) sendControl(bus string, h *header, payload []byte) bool {
	if r.closing.Load() && h.kind != kindBye {
		return false // nothing follows the bye
	}
	h.node = r.nodeB
	size := envelopeSize(h, len(payload))
	if size > r.cfg.MaxEnvelope {
		r.drop(DropTooLarge, h.kind, 1)
		return false
	}
	if r.degraded.Load() && h.kind != kindBye {
		r.drop(DropUnreachable, h.kind, 1)
		return false
	}
	m := outMsg{channel: bus, payload: appendEnvelope(make([]byte, 0, size), h, payload), kind: h.kind}
	if !r.q.addControl(m) {
		r.drop(DropQueueFull, h.kind, 1)
		return false
	}
	return true
}

func (r *Redis) sendJSON(bus string, h *header, v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	return r.sendControl(bus, h, b)
}

func (r *Redis) publishLoop() {
	defer r.wg.Done()
	defer r.cancel() // stops the other loops once flushed
	for {
		select {
		case <-r.stopping:
			deadline := time.Now().Add(r.cfg.PublishTimeout)
			for b := r.q.take(); b != nil && time.Now().Before(deadline); b = r.q.take() {
				r.flush(b, time.Until(deadline))
			}
			return
		case <-r.q.wake:
			for b := r.q.take(); b != nil; b = r.q.take() {
				r.flush(b, r.cfg.PublishTimeout)
			}
		}
	}
}

// flush publishes one batch in one round trip.
func (r *Redis) flush(b *batch, timeout time.Duration) {
	defer close(b.done)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := r.t.publish(ctx, b.msgs)
	cancel()
	r.batches.Add(1)
	if err == nil {
		r.published.Add(int64(len(b.msgs)))
		return
	}
	r.log.Warn("publish to Redis failed", "envelopes", len(b.msgs), "err", err)
	r.setDegraded(true)
	for i := range b.msgs {
		m := &b.msgs[i]
		r.drop(DropPublishError, m.kind, 1)
		if m.cache != nil {
			r.px.StoreCache(m.cache.app, m.cache.channel, m.cache.msg)
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
			r.sendPing()
			r.expireNodes(now)
			r.expireBarriers(now)
		}
	}
}

// sendPing queues a heartbeat carrying this node's presence digests, in
// order among its joins and leaves.
func (r *Redis) sendPing() {
	r.px.WithLocalDigest(func(d map[string]pusher.PresenceDigest) {
		r.sendJSON(r.chCtl, &header{kind: kindPing}, d)
	})
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
			delete(r.lastSyncReq, id)
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
	// One sync at a time: parts of two generations never interleave.
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
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
			body := syncBody{Gen: gen, Part: part, Last: end == len(state)}
			for _, c := range state[start:end] {
				body.Members = append(body.Members, syncMember{App: c.App.ID, Channel: c.Channel, Member: c.Member})
			}
			r.sendJSON(r.chCtl, &header{kind: kindSync}, &body)
			if body.Last {
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

// onMessage implements receiver: it applies one envelope.
func (r *Redis) onMessage(channel string, b []byte) {
	h, body, err := decodeHeader(b, r.cfg.MaxEnvelope)
	if err != nil {
		r.invalid.Add(1)
		return
	}
	self := bytes.Equal(h.node, r.nodeB)
	switch h.kind {
	case kindEvent:
		app := r.apps[string(h.app)]
		if app == nil {
			return // an app this node does not serve
		}
		if self {
			// Our own event, back in the cluster's order: only a cache
			// channel's last event is kept (local delivery happened).
			if channel == r.chCache {
				r.px.StoreCache(app, string(h.channel), body)
			}
			return
		}
		r.received.Add(1)
		r.px.DeliverRemote(app, string(h.channel), body, string(h.except))
	case kindBarrier:
		if self && bytes.Equal(h.to, r.nodeB) {
			r.fireBarrier(string(h.id))
		}
	default:
		if self {
			return
		}
		r.received.Add(1)
		r.control(&h, body)
	}
}

// control applies a control envelope of another node.
func (r *Redis) control(h *header, body []byte) {
	node := string(h.node)
	r.mu.Lock()
	_, known := r.nodes[node]
	if h.kind != kindBye && h.kind != kindRestart {
		r.nodes[node] = time.Now()
	}
	r.mu.Unlock()
	switch h.kind {
	case kindHello, kindBye, kindRestart, kindSync:
	default:
		if !known && r.helloDue() {
			// A node we did not know (we started after it, or it came
			// back): make sure we get its state.
			r.sendControl(r.chCtl, &header{kind: kindHello}, nil)
		}
	}
	var app *pusher.App
	if len(h.app) > 0 {
		if app = r.apps[string(h.app)]; app == nil {
			// An app this node does not serve. A query still gets an
			// (empty) answer, so that the asker does not wait it out.
			if h.kind == kindQuery {
				r.sendJSON(r.nodeChannel(node), &header{kind: kindReply, to: h.node, id: h.id}, &pusher.Reply{})
			}
			return
		}
	}
	switch h.kind {
	case kindJoin:
		var m pusher.PresenceMember
		if decodeJSON(body, &m) != nil || m.Key == "" {
			r.invalid.Add(1)
			return
		}
		r.px.RemotePresenceJoin(node, app, string(h.channel), m)
	case kindLeave:
		r.px.RemotePresenceLeave(node, app, string(h.channel), string(h.id))
	case kindHello:
		r.sendSync()
	case kindSyncReq:
		if bytes.Equal(h.to, r.nodeB) {
			r.sendSync()
		}
	case kindSync:
		var s syncBody
		if decodeJSON(body, &s) != nil {
			r.invalid.Add(1)
			return
		}
		r.applySync(node, &s)
	case kindPing:
		var d map[string]pusher.PresenceDigest
		if decodeJSON(body, &d) != nil {
			r.invalid.Add(1)
			return
		}
		r.checkDigest(node, d)
	case kindBye:
		r.mu.Lock()
		delete(r.nodes, node)
		delete(r.syncs, node)
		delete(r.lastSyncReq, node)
		r.mu.Unlock()
		r.px.DropNode(node)
	case kindQuery:
		var q pusher.Query
		if decodeJSON(body, &q) != nil {
			r.invalid.Add(1)
			return
		}
		reply := r.px.Answer(app, q)
		r.sendJSON(r.nodeChannel(node), &header{kind: kindReply, to: h.node, id: h.id}, &reply)
	case kindReply:
		if !bytes.Equal(h.to, r.nodeB) {
			return
		}
		var rep pusher.Reply
		if decodeJSON(body, &rep) != nil {
			r.invalid.Add(1)
			return
		}
		r.mu.Lock()
		ch := r.pending[string(h.id)]
		r.mu.Unlock()
		if ch != nil {
			select {
			case ch <- rep:
			default:
			}
		}
	case kindTerminate:
		r.px.TerminateLocal(app, string(h.id))
	case kindRestart:
		if r.onRestart != nil {
			r.log.Info("restart requested through Redis")
			r.onRestart()
		}
	}
}

// checkDigest compares another node's presence digests with what this
// node knows of it, for the apps this node serves, and asks that node for
// its state when they differ (joins or leaves were lost on the way).
func (r *Redis) checkDigest(node string, theirs map[string]pusher.PresenceDigest) {
	r.mu.Lock()
	if st := r.syncs[node]; st != nil {
		if time.Since(st.started) < r.cfg.HeartbeatInterval {
			r.mu.Unlock()
			return // its parts are still arriving
		}
		delete(r.syncs, node) // its last part was lost
	}
	r.mu.Unlock()
	mine := r.px.NodeDigest(node)
	same := true
	for id := range r.apps {
		if theirs[id] != mine[id] {
			same = false
			break
		}
	}
	if same {
		return
	}
	now := time.Now()
	r.mu.Lock()
	if now.Sub(r.lastSyncReq[node]) < r.cfg.HeartbeatInterval {
		r.mu.Unlock()
		return
	}
	r.lastSyncReq[node] = now
	r.mu.Unlock()
	r.resyncs.Add(1)
	r.log.Info("presence of a node differs from its digest; asking for its state", "node", node)
	r.sendControl(r.nodeChannel(node), &header{kind: kindSyncReq, to: []byte(node)}, nil)
}

func (r *Redis) applySync(node string, s *syncBody) {
	r.mu.Lock()
	st := r.syncs[node]
	if st == nil || st.gen != s.Gen {
		st = &syncState{gen: s.Gen, started: time.Now()}
		r.syncs[node] = st
	}
	if s.Part != st.next {
		// A part went missing (dropped on the way): this state is
		// incomplete. Forget it and ask again.
		delete(r.syncs, node)
		r.mu.Unlock()
		r.invalid.Add(1)
		r.resyncs.Add(1)
		r.sendControl(r.nodeChannel(node), &header{kind: kindSyncReq, to: []byte(node)}, nil)
		return
	}
	st.next++
	for _, m := range s.Members {
		if app := r.apps[m.App]; app != nil && m.Member.Key != "" {
			st.members = append(st.members, pusher.PresenceChange{App: app, Channel: m.Channel, Member: m.Member})
		}
	}
	if !s.Last {
		r.mu.Unlock()
		return
	}
	delete(r.syncs, node)
	r.mu.Unlock()
	r.px.ReplaceNodePresence(node, st.members)
}

// PresenceJoin implements pusher.Broker.
func (r *Redis) PresenceJoin(app *pusher.App, channel string, m pusher.PresenceMember) {
	r.sendJSON(r.chCtl, &header{kind: kindJoin, app: str(app.ID), channel: str(channel)}, &m)
}

// PresenceLeave implements pusher.Broker.
func (r *Redis) PresenceLeave(app *pusher.App, channel, key string) {
	r.sendControl(r.chCtl, &header{kind: kindLeave, app: str(app.ID), channel: str(channel), id: str(key)}, nil)
}

// Terminate implements pusher.Broker.
func (r *Redis) Terminate(app *pusher.App, userID string) {
	r.sendControl(r.chCtl, &header{kind: kindTerminate, app: str(app.ID), id: str(userID)}, nil)
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
	key := newID()
	ch := make(chan pusher.Reply, want)
	r.mu.Lock()
	r.pending[key] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.pending, key)
		r.mu.Unlock()
	}()
	if !r.sendJSON(r.chCtl, &header{kind: kindQuery, app: str(app.ID), id: []byte(key)}, &q) {
		return nil
	}
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

func newID() string {
	var id [8]byte
	_, _ = rand.Read(id[:])
	return hex.EncodeToString(id[:])
}

// PublishRestart asks every node under the prefix to drain and exit (what
// `reverb restart` does when scaling is enabled).
func PublishRestart(ctx context.Context, cfg Config) error {
	cfg.normalize()
	rdb, err := cfg.newClient()
	if err != nil {
		return err
	}
	t := newRedisTransport(rdb, time.Second)
	defer t.close()
	h := header{kind: kindRestart, node: []byte("restart-cli")}
	return t.publish(ctx, []outMsg{{channel: cfg.Channel + ":ctl", payload: appendEnvelope(nil, &h, nil)}})
}

var _ pusher.Broker = (*Redis)(nil)
