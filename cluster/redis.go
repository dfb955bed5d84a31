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
	// GatherIncomplete counts HTTP API reads (channels, connections,
	// users) answered without every live node's reply: the nodes that did
	// not answer within GatherTimeout are left out of the figures.
	GatherIncomplete int64
	// Dropped counts envelopes not published, by reason (Drop* constants).
	Dropped       map[string]int64
	Degraded      bool // Redis is unreachable now
	Nodes         int  // other live nodes
	DegradedSince time.Time
	Interest      int // bus channels of events this node listens to
	// Tracker (pusher.Tracker) counters.
	TrackerOps    int64 // operations Redis answered
	TrackerErrors int64 // operations that failed (Redis unreachable, queue full, error reply)
	TrackerQueued int   // operations waiting for their round trip now
	Reaped        int64 // stopped or dead nodes whose keys this node released
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
	px    pusher.Node
	t     transport
	rdb   redis.UniversalClient // commands (the tracker); nil without Redis
	trk   tracker
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
	gatherIncomplete, lastGatherLog                                     atomic.Int64
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
	// warm is closed once this node has the cluster's state (warm.go);
	// warmWait holds the registered nodes whose sync it awaits (nil until
	// the registry was read), warmSynced the nodes whose sync came before
	// that (nil after).
	warm       chan struct{}
	warmOnce   sync.Once
	warmWait   map[string]bool
	warmSynced map[string]bool

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
func NewRedis(cfg Config, px pusher.Node) (*Redis, error) {
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
	r := newBroker(cfg, px, t)
	r.rdb = rdb
	return r, nil
}

func newBroker(cfg Config, px pusher.Node, t transport) *Redis {
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
		warm:        make(chan struct{}),
		warmSynced:  make(map[string]bool),
	}
	for _, a := range px.Apps() {
		r.apps[a.ID] = a
	}
	r.trk.init()
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
		Published:        r.published.Load(),
		Received:         r.received.Load(),
		Refused:          r.refused.Load(),
		Queued:           r.q.len(),
		Batches:          r.batches.Load(),
		Invalid:          r.invalid.Load(),
		Reconnects:       r.reconnects.Load(),
		Resyncs:          r.resyncs.Load(),
		GatherIncomplete: r.gatherIncomplete.Load(),
		Degraded:         r.degraded.Load(),
		Dropped:          make(map[string]int64, len(dropReasons)),

		TrackerOps:    r.trk.ops.Load(),
		TrackerErrors: r.trk.errors.Load(),
		Reaped:        r.trk.reaped.Load(),
	}
	r.trk.mu.Lock()
	st.TrackerQueued = len(r.trk.q)
	r.trk.mu.Unlock()
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
	go r.trackLoop()
	r.wg.Add(3)
	go r.interestLoop()
	go r.publishLoop()
	go r.heartbeatLoop()
}

// Close sends the tracker operations queued, says goodbye to the other
// nodes (they drop this node's presence users at once and release its
// tracker keys), flushes what is queued (for at most PublishTimeout) and
// stops. Tracker callbacks are not called after Close.
func (r *Redis) Close() {
	if !r.started.Load() {
		return
	}
	if r.closing.Swap(true) {
		return
	}
	r.closeWarm()
	// Before the bye: a survivor that reaps this node then sees its last
	// holds and releases.
	r.stopTracker()
	r.markGone()
	r.sendControl(r.chCtl, &header{kind: kindBye}, nil)
	close(r.stopping)
	r.wg.Wait()
	r.trk.reapWG.Wait() // the reaps stop with r.ctx
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

var _ pusher.Broker = (*Redis)(nil)
