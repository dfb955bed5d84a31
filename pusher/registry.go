package pusher

import (
	"hash/maphash"
	"math/bits"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// hub is the node's channel registry: for every channel of every app, how
// many subscribers each shard holds, the presence members (of this node and,
// in a cluster, of the others) and the cached events.
//
// # Concurrency
//
// The hub is goroutine-safe and has no process-wide lock. It is split into
// stripes (a power of two, at least 1024 and at least 4 x GOMAXPROCS); a
// channel lives in the stripe picked by a hash of its app and name, with its
// cached event and the other nodes' members of it. Each stripe has its own
// lock (mu) and maps, so operations on different channels seldom meet.
// Every hub method takes the locks it needs itself, except those named
// ...Locked and the methods of channel, which expect the caller to hold the
// channel's stripe lock.
//
// Under a stripe lock only the registry's own state is read and changed:
// never I/O, allocation of frames, JSON encoding of presence blocks, calls
// into the server, a shard, the Broker or the Tracker. What a change must
// tell others (the Broker's PresenceJoin, PresenceLeave and Interest, the
// Tracker's Hold and Release through the hooks) is recorded under the lock
// as effects, in order, and run after the lock is released. To keep them in
// the order the registry changed (a channel's Interest(true) before its
// Interest(false), occupied before member_added, member_removed before
// vacated), a change with effects takes a ticket from its stripe's sequencer
// while it holds the lock and runs its effects when its ticket is served:
// effects of one stripe run one batch at a time, in the order of the
// changes. A caller's own effects have run when join or leave returns (the
// Broker's Await relies on this Interest and PresenceJoin being queued).
// A presence block is encoded from a copy of the member order taken under
// the lock (the members' exported fields never change once made).
//
// Operations over a whole app (list, count) visit the stripes one at a
// time. Operations that need the whole node at one instant (withLocalPresence,
// withLocalDigest, replaceNode, dropNode) lock every stripe, in ascending
// index order, and the first two then wait until every ticket handed out is
// served, so that the state they pass on includes exactly the changes whose
// envelopes were queued before it.
//
// Presence deliveries are numbered. Every change of a channel's member set
// (a user added to or removed from the channel, by a local subscription or
// another node) takes the next number of its stripe's presence sequence
// (pseq, per stripe so that it keeps growing when a channel is released and
// made again). member_added and member_removed carry the number of the
// change they announce, and a subscription keeps the number of the state
// its initial member list was read at: a shard that drains a presence
// delivery after a subscriber joined skips it for a subscriber whose list
// already includes the change (Shard.drain).
//
// Lock order: stripe locks in ascending index; a sequencer's turn is taken
// after the stripe lock is released (or while holding stripe locks, only to
// wait for the stripe to be idle). Effects never call into the hub; the
// Broker and the Tracker never call back from the goroutine that called them
// while it runs effects (their interfaces say so).
type hub struct {
	seed    maphash.Seed
	mask    uint64
	stripes []stripe
	nShards int
	broker  Broker           // told of this node's presence changes and interest, as effects
	hooks   hubHooks         // told of the keys this node holds, as effects; nil: none
	now     func() time.Time // the server's clock, for the age of cached events

	// remote counts the presence entries held for each other node (the
	// sizes of every stripe's nodes[node] summed), so that replacing an
	// empty state with an empty one skips locking every stripe: in a
	// cluster without presence, every node's sync is empty. Guarded by
	// remoteMu, taken inside a stripe's lock or alone.
	remoteMu sync.Mutex
	remote   map[string]int
}

// stripe is one part of the hub. Its fields are guarded by mu, but for the
// sequencer's own.
type stripe struct {
	mu     sync.RWMutex
	apps   map[*App]map[string]*channel
	caches map[*App]map[string]cacheEntry
	nodes  map[string]map[presenceKey]*member // other nodes' presence members
	seq    sequencer
	pseq   uint64   // the last member-set change of the stripe's channels (see hub)
	_      [64]byte // keeps the next stripe's lock off this cache line
}

// sequencer runs the effects of a stripe's changes in the order of the
// changes: take (under the stripe's write lock) hands out tickets, wait
// blocks until a ticket's turn, done ends it.
type sequencer struct {
	next    uint64 // tickets handed out; guarded by the stripe's mu
	served  atomic.Uint64
	waiting atomic.Int32
	mu      sync.Mutex
	cond    sync.Cond
}

func (q *sequencer) take() uint64 {
	t := q.next
	q.next++
	return t
}

// wait returns once every ticket before t is done.
func (q *sequencer) wait(t uint64) {
	if q.served.Load() == t {
		return
	}
	q.waiting.Add(1)
	q.mu.Lock()
	for q.served.Load() != t {
		q.cond.Wait()
	}
	q.mu.Unlock()
	q.waiting.Add(-1)
}

// done ends the current ticket's turn.
func (q *sequencer) done() {
	q.served.Add(1)
	if q.waiting.Load() > 0 {
		q.mu.Lock()
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

type channel struct {
	name     string
	kind     ChannelKind
	subs     int     // subscriptions on this node
	perShard []int32 // subscriptions per shard
	members  map[string]*member
	order    []*member // presence members in first-seen order
}

// hubStripes is the number of stripes: a power of two, at least 1024 and at
// least 4 x GOMAXPROCS. With fewer, goroutines working on different
// channels meet on the same stripes often enough that the stripes' cache
// lines travel between cores (measured: with 64 stripes, 8 goroutines on 64
// channels each took 2-3x longer per subscribe than one; with 1024, 1.2x).
// A stripe is about 200 bytes; its maps are made when first needed.
func hubStripes() int {
	n := 1024
	for n < 4*runtime.GOMAXPROCS(0) {
		n <<= 1
	}
	return n
}

func newHub(_ []*App, nShards int, now func() time.Time) *hub {
	n := hubStripes()
	h := &hub{
		seed:    maphash.MakeSeed(),
		mask:    uint64(n - 1),
		stripes: make([]stripe, n),
		nShards: nShards,
		now:     now,
		broker:  NopBroker{},
	}
	for i := range h.stripes {
		s := &h.stripes[i]
		// An app's maps are made in a stripe when it first has a channel
		// there: many apps times many stripes would be many empty maps.
		s.apps = make(map[*App]map[string]*channel)
		s.caches = make(map[*App]map[string]cacheEntry)
		s.nodes = make(map[string]map[presenceKey]*member)
		s.seq.cond.L = &s.seq.mu
	}
	return h
}

// stripeOf returns the stripe of a channel.
func (h *hub) stripeOf(app *App, name string) *stripe {
	x := maphash.String(h.seed, name)
	if app != nil {
		x ^= maphash.String(h.seed, app.ID) * 0x9e3779b97f4a7c15
	}
	return &h.stripes[x&h.mask]
}

// lockAll write-locks every stripe, in ascending order.
func (h *hub) lockAll() {
	for i := range h.stripes {
		h.stripes[i].mu.Lock()
	}
}

func (h *hub) unlockAll() {
	for i := range h.stripes {
		h.stripes[i].mu.Unlock()
	}
}

// rlockAllIdle read-locks every stripe, in ascending order, and waits until
// the effects of every change made before have run.
func (h *hub) rlockAllIdle() {
	for i := range h.stripes {
		s := &h.stripes[i]
		s.mu.RLock()
		s.seq.wait(s.seq.next)
	}
}

func (h *hub) runlockAll() {
	for i := range h.stripes {
		h.stripes[i].mu.RUnlock()
	}
}

// effect is something a registry change must tell the Broker or the hooks,
// run after the stripe lock is released (see hub).
type effect struct {
	op   effectOp
	app  *App
	name string
	key  string  // the presence user (leave, memberHeld, memberFreed)
	m    *member // the member that joined (presenceJoin); its exported fields never change
}

type effectOp uint8

const (
	fxPresenceJoin effectOp = iota
	fxPresenceLeave
	fxInterestOn
	fxInterestOff
	fxChannelHeld
	fxChannelFreed
	fxMemberHeld
	fxMemberFreed
)

// effects is a change's effects, at most four (join and leave have four).
type effects struct {
	list [4]effect
	n    int
}

func (e *effects) add(x effect) {
	e.list[e.n] = x
	e.n++
}

// take gives the change its ticket if it has effects. The stripe's write
// lock is held.
func (e *effects) take(s *stripe) (uint64, bool) {
	if e.n == 0 {
		return 0, false
	}
	return s.seq.take(), true
}

// run runs the effects in their ticket's turn. No stripe lock is held.
func (h *hub) run(s *stripe, e *effects, ticket uint64) {
	s.seq.wait(ticket)
	defer s.seq.done()
	for i := range e.list[:e.n] {
		x := &e.list[i]
		switch x.op {
		case fxPresenceJoin:
			h.broker.PresenceJoin(x.app, x.name, x.m.export())
		case fxPresenceLeave:
			h.broker.PresenceLeave(x.app, x.name, x.key)
		case fxInterestOn:
			h.broker.Interest(x.app, x.name, true)
		case fxInterestOff:
			h.broker.Interest(x.app, x.name, false)
		case fxChannelHeld:
			h.hooks.channelHeld(x.app, x.name)
		case fxChannelFreed:
			h.hooks.channelFreed(x.app, x.name)
		case fxMemberHeld:
			h.hooks.memberHeld(x.app, x.name, x.key)
		case fxMemberFreed:
			h.hooks.memberFreed(x.app, x.name, x.key)
		}
	}
}

// memberChangedLocked numbers a change of a channel's member set: it
// returns the stripe's next presence sequence number. The stripe's write
// lock is held.
func (s *stripe) memberChangedLocked() uint64 {
	s.pseq++
	return s.pseq
}

// channelLocked returns the channel, creating it.
func (s *stripe) channelLocked(h *hub, app *App, name string) *channel {
	chans := s.apps[app]
	if chans == nil {
		chans = make(map[string]*channel)
		s.apps[app] = chans
	}
	ch := chans[name]
	if ch == nil {
		kind, _ := Classify(name)
		ch = &channel{name: name, kind: kind, perShard: make([]int32, h.nShards)}
		chans[name] = ch
	}
	return ch
}

// releaseLocked deletes a channel nobody holds any more.
func (s *stripe) releaseLocked(app *App, ch *channel) {
	if ch.subs <= 0 && len(ch.members) == 0 {
		delete(s.apps[app], ch.name)
	}
}

// joinResult is what a subscription learned from the registry.
type joinResult struct {
	firstOfUser bool   // the user was not on the channel anywhere: announce member_added
	firstLocal  bool   // the user's first connection on this node: tell the other nodes
	presence    []byte // the presence block for subscription_succeeded
	cached      []byte // the cached event of a cache channel, or nil
	// seq is the presence sequence number of the state presence was read
	// at; when firstOfUser, that of the user's addition, for member_added.
	seq uint64
	// name is the channel's name as the registry keeps it: subscriptions
	// keep this one, so that a channel's name is stored once on the node
	// however many connections subscribe to it.
	name string
}

// join registers a subscription of a connection on shard. For presence
// channels m is the member joining. It fails with ErrPresenceFull when the
// channel already has maxMembers distinct users and m is a new one. The
// Broker and the hooks have been told when it returns.
func (h *hub) join(app *App, name string, shard int, m *member, maxMembers int) (joinResult, *Error) {
	s := h.stripeOf(app, name)
	var res joinResult
	var fx effects
	var now time.Time
	_, cache := Classify(name)
	if cache {
		now = h.now()
	}
	s.mu.Lock()
	ch := s.channelLocked(h, app, name)
	res.name = ch.name
	if m != nil {
		if ch.members == nil {
			ch.members = make(map[string]*member)
		}
		cur := ch.members[m.key]
		if cur == nil {
			if maxMembers > 0 && len(ch.members) >= maxMembers {
				s.releaseLocked(app, ch)
				s.mu.Unlock()
				return res, ErrPresenceFull
			}
			cur = &member{key: m.key, id: m.id, info: m.info, data: m.data}
			ch.members[m.key] = cur
			ch.order = append(ch.order, cur)
			res.firstOfUser = true
			s.memberChangedLocked()
		}
		cur.local++
		res.firstLocal = cur.local == 1
		if res.firstLocal {
			fx.add(effect{op: fxPresenceJoin, app: app, name: name, m: cur})
		}
	}
	ch.subs++
	ch.perShard[shard]++
	if ch.subs == 1 {
		fx.add(effect{op: fxInterestOn, app: app, name: name})
		if h.hooks != nil {
			fx.add(effect{op: fxChannelHeld, app: app, name: name})
		}
	}
	// channel_occupied comes before member_added.
	if m != nil && res.firstLocal && h.hooks != nil {
		fx.add(effect{op: fxMemberHeld, app: app, name: name, key: m.key})
	}
	// The members in order, copied (into a stack buffer for most
	// channels), to be encoded once the lock is released.
	var buf [16]*member
	var order []*member
	presence := ch.kind == KindPresence
	if presence {
		order = append(buf[:0], ch.order...)
		res.seq = s.pseq
	}
	if cache {
		if e, ok := s.caches[app][name]; ok && now.Sub(e.at) < cacheTTL {
			res.cached = e.msg
		}
	}
	ticket, ok := fx.take(s)
	s.mu.Unlock()
	if ok {
		h.run(s, &fx, ticket)
	}
	if presence {
		res.presence = presenceJSON(order)
	}
	return res, nil
}

// leaveResult is what leaving a channel changed.
type leaveResult struct {
	gone      bool   // the user is on the channel nowhere any more: announce member_removed
	lastLocal bool   // the user's last connection on this node left: tell the other nodes
	seq       uint64 // when gone, the presence sequence number of the removal
}

// leave removes a subscription. userKey is the presence identity or "".
// The Broker and the hooks have been told when it returns.
func (h *hub) leave(app *App, name string, shard int, userKey string, presence bool) leaveResult {
	s := h.stripeOf(app, name)
	var res leaveResult
	var fx effects
	s.mu.Lock()
	ch := s.apps[app][name]
	if ch == nil {
		s.mu.Unlock()
		return res
	}
	ch.subs--
	ch.perShard[shard]--
	if ch.subs == 0 {
		fx.add(effect{op: fxInterestOff, app: app, name: name})
	}
	if presence {
		if m := ch.members[userKey]; m != nil && m.local > 0 {
			m.local--
			if m.local == 0 {
				res.lastLocal = true
				fx.add(effect{op: fxPresenceLeave, app: app, name: name, key: userKey})
				if h.hooks != nil {
					fx.add(effect{op: fxMemberFreed, app: app, name: name, key: userKey})
				}
				if m.remote == 0 {
					ch.removeMember(m)
					res.gone = true
					res.seq = s.memberChangedLocked()
				}
			}
		}
	}
	// member_removed comes before channel_vacated.
	if ch.subs == 0 && h.hooks != nil {
		fx.add(effect{op: fxChannelFreed, app: app, name: name})
	}
	s.releaseLocked(app, ch)
	ticket, ok := fx.take(s)
	s.mu.Unlock()
	if ok {
		h.run(s, &fx, ticket)
	}
	return res
}

// route calls fn for every shard holding subscribers of the channel and,
// when store is set and the channel is a cache channel, stores msg as its
// cached event (in the same critical section: an event stored is routed to
// the subscribers the channel had when it was stored). fn is called after
// the lock is released.
func (h *hub) route(app *App, name string, msg []byte, store bool, fn func(shard int)) {
	s := h.stripeOf(app, name)
	var sh shardSet
	if store && cacheable(name, msg) {
		at := h.now()
		s.mu.Lock()
		s.storeCacheLocked(app, name, msg, at)
		s.shardsLocked(app, name, &sh)
		s.mu.Unlock()
	} else {
		s.mu.RLock()
		s.shardsLocked(app, name, &sh)
		s.mu.RUnlock()
	}
	sh.each(fn)
}

// shardSet is a set of shard indexes: a bit mask for the first 64, a list
// beyond.
type shardSet struct {
	low  uint64
	more []int
}

func (ss *shardSet) each(fn func(int)) {
	for m := ss.low; m != 0; m &= m - 1 {
		fn(bits.TrailingZeros64(m))
	}
	for _, i := range ss.more {
		fn(i)
	}
}

// shardsLocked adds the shards that hold subscribers of the channel.
func (s *stripe) shardsLocked(app *App, name string, ss *shardSet) {
	ch := s.apps[app][name]
	if ch == nil {
		return
	}
	for i, n := range ch.perShard {
		if n > 0 {
			if i < 64 {
				ss.low |= 1 << i
			} else {
				ss.more = append(ss.more, i)
			}
		}
	}
}

// ChannelInfo describes one channel.
type ChannelInfo struct {
	Name string
	Kind ChannelKind
	// Cache is true for cache channels.
	Cache bool
	// SubscriptionCount is the number of subscriptions on this node (or in
	// the cluster, where the API gathered it).
	SubscriptionCount int
	// UserCount is the number of distinct presence users in the cluster.
	UserCount int
	// Cached is the cached event of a cache channel, or nil.
	Cached []byte
}

// info returns a channel's figures; ok is false when it has no subscribers
// on this node.
func (h *hub) info(app *App, name string) (ChannelInfo, bool) {
	s := h.stripeOf(app, name)
	s.mu.RLock()
	defer s.mu.RUnlock()
	kind, cache := Classify(name)
	info := ChannelInfo{Name: name, Kind: kind, Cache: cache}
	if e, ok := s.caches[app][name]; ok && cache {
		info.Cached = e.msg
	}
	ch := s.apps[app][name]
	if ch == nil {
		return info, false
	}
	info.SubscriptionCount = ch.subs
	info.UserCount = len(ch.members)
	return info, ch.subs > 0
}

// list returns the channels with subscribers on this node whose names start
// with prefix, sorted. It visits the stripes one at a time: a channel
// subscribed or left meanwhile may or may not be listed.
func (h *hub) list(app *App, prefix string) []ChannelInfo {
	var out []ChannelInfo
	for i := range h.stripes {
		s := &h.stripes[i]
		s.mu.RLock()
		for name, ch := range s.apps[app] {
			if ch.subs > 0 && strings.HasPrefix(name, prefix) {
				_, cache := Classify(name)
				info := ChannelInfo{Name: name, Kind: ch.kind, Cache: cache, SubscriptionCount: ch.subs, UserCount: len(ch.members)}
				if e, ok := s.caches[app][name]; ok && cache {
					info.Cached = e.msg
				}
				out = append(out, info)
			}
		}
		s.mu.RUnlock()
	}
	if out == nil {
		out = []ChannelInfo{}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// count returns the number of channels of app with subscribers on this
// node, visiting the stripes one at a time.
func (h *hub) count(app *App) int {
	n := 0
	for i := range h.stripes {
		s := &h.stripes[i]
		s.mu.RLock()
		for _, ch := range s.apps[app] {
			if ch.subs > 0 {
				n++
			}
		}
		s.mu.RUnlock()
	}
	return n
}
