package pusher

import (
	"sort"
	"strings"
	"sync"
	"time"
)

// hub is the node's channel registry: for every channel of every app, how
// many subscribers each shard holds, the presence members (of this node and,
// in a cluster, of the others) and the cached events.
//
// Concurrency: the hub is goroutine-safe, behind the one lock mu. Every hub
// method takes mu itself, except those named ...Locked and the methods of
// channel, which expect the caller to hold it. mu is never held across I/O
// nor while calling back into the server or a shard. The only calls made
// under it are the broker's PresenceJoin, PresenceLeave and Interest, which
// only queue: that way the envelopes leave in the order the registry
// changed. The hooks (Tracker Hold and Release of channels and presence
// users, for webhooks) are called under it for the same reason.
// withLocalPresence and withLocalDigest call their fn under the read lock
// for the same reason.
type hub struct {
	mu      sync.RWMutex
	nShards int
	apps    map[*App]map[string]*channel
	caches  map[*App]map[string]cacheEntry
	nodes   map[string]map[presenceKey]*member // other nodes' presence members
	broker  Broker                             // told of this node's presence changes, under mu
	hooks   hubHooks                           // told of the keys this node holds, under mu; nil: none
	now     func() time.Time                   // the server's clock, for the age of cached events
}

type channel struct {
	name     string
	kind     ChannelKind
	subs     int     // subscriptions on this node
	perShard []int32 // subscriptions per shard
	members  map[string]*member
	order    []*member // presence members in first-seen order
}

func newHub(apps []*App, nShards int, now func() time.Time) *hub {
	h := &hub{
		nShards: nShards,
		now:     now,
		apps:    make(map[*App]map[string]*channel, len(apps)),
		caches:  make(map[*App]map[string]cacheEntry, len(apps)),
		nodes:   make(map[string]map[presenceKey]*member),
		broker:  NopBroker{},
	}
	for _, a := range apps {
		h.apps[a] = make(map[string]*channel)
		h.caches[a] = make(map[string]cacheEntry)
	}
	return h
}

// channelLocked returns the channel, creating it.
func (h *hub) channelLocked(app *App, name string) *channel {
	chans := h.apps[app]
	ch := chans[name]
	if ch == nil {
		kind, _ := Classify(name)
		ch = &channel{name: name, kind: kind, perShard: make([]int32, h.nShards)}
		chans[name] = ch
	}
	return ch
}

// releaseLocked deletes a channel nobody holds any more.
func (h *hub) releaseLocked(app *App, ch *channel) {
	if ch.subs <= 0 && len(ch.members) == 0 {
		delete(h.apps[app], ch.name)
	}
}

// joinResult is what a subscription learned from the registry.
type joinResult struct {
	firstOfUser bool   // the user was not on the channel anywhere: announce member_added
	firstLocal  bool   // the user's first connection on this node: tell the other nodes
	presence    []byte // the presence block for subscription_succeeded
	cached      []byte // the cached event of a cache channel, or nil
}

// join registers a subscription of a connection on shard. For presence
// channels m is the member joining. It fails with ErrPresenceFull when the
// channel already has maxMembers distinct users and m is a new one.
func (h *hub) join(app *App, name string, shard int, m *member, maxMembers int) (joinResult, *Error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.channelLocked(app, name)
	var res joinResult
	if m != nil {
		if ch.members == nil {
			ch.members = make(map[string]*member)
		}
		cur := ch.members[m.key]
		if cur == nil {
			if maxMembers > 0 && len(ch.members) >= maxMembers {
				h.releaseLocked(app, ch)
				return res, ErrPresenceFull
			}
			cur = &member{key: m.key, id: m.id, info: m.info, data: m.data}
			ch.members[m.key] = cur
			ch.order = append(ch.order, cur)
			res.firstOfUser = true
		}
		cur.local++
		res.firstLocal = cur.local == 1
		if res.firstLocal {
			h.broker.PresenceJoin(app, name, cur.export())
		}
	}
	ch.subs++
	ch.perShard[shard]++
	if ch.subs == 1 {
		h.broker.Interest(app, name, true)
		if h.hooks != nil {
			h.hooks.channelHeld(app, name)
		}
	}
	// channel_occupied comes before member_added.
	if m != nil && res.firstLocal && h.hooks != nil {
		h.hooks.memberHeld(app, name, m.key)
	}
	if ch.kind == KindPresence {
		res.presence = ch.presenceJSON()
	}
	if _, cache := Classify(name); cache {
		if e, ok := h.caches[app][name]; ok && h.now().Sub(e.at) < cacheTTL {
			res.cached = e.msg
		}
	}
	return res, nil
}

// leaveResult is what leaving a channel changed.
type leaveResult struct {
	gone      bool // the user is on the channel nowhere any more: announce member_removed
	lastLocal bool // the user's last connection on this node left: tell the other nodes
}

// leave removes a subscription. userKey is the presence identity or "".
func (h *hub) leave(app *App, name string, shard int, userKey string, presence bool) leaveResult {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.apps[app][name]
	if ch == nil {
		return leaveResult{}
	}
	ch.subs--
	ch.perShard[shard]--
	if ch.subs == 0 {
		h.broker.Interest(app, name, false)
	}
	var res leaveResult
	if presence {
		if m := ch.members[userKey]; m != nil && m.local > 0 {
			m.local--
			if m.local == 0 {
				res.lastLocal = true
				h.broker.PresenceLeave(app, name, userKey)
				if h.hooks != nil {
					h.hooks.memberFreed(app, name, userKey)
				}
				if m.remote == 0 {
					ch.removeMember(m)
					res.gone = true
				}
			}
		}
	}
	// member_removed comes before channel_vacated.
	if ch.subs == 0 && h.hooks != nil {
		h.hooks.channelFreed(app, name)
	}
	h.releaseLocked(app, ch)
	return res
}

// route calls fn for every shard holding subscribers of the channel and,
// when store is set and the channel is a cache channel, stores msg as its
// cached event.
func (h *hub) route(app *App, name string, msg []byte, store bool, fn func(shard int)) {
	if store {
		h.storeCache(app, name, msg)
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	ch := h.apps[app][name]
	if ch == nil {
		return
	}
	for i, n := range ch.perShard {
		if n > 0 {
			fn(i)
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
	h.mu.RLock()
	defer h.mu.RUnlock()
	kind, cache := Classify(name)
	info := ChannelInfo{Name: name, Kind: kind, Cache: cache}
	if e, ok := h.caches[app][name]; ok && cache {
		info.Cached = e.msg
	}
	ch := h.apps[app][name]
	if ch == nil {
		return info, false
	}
	info.SubscriptionCount = ch.subs
	info.UserCount = len(ch.members)
	return info, ch.subs > 0
}

// list returns the channels with subscribers on this node whose names start
// with prefix, sorted.
func (h *hub) list(app *App, prefix string) []ChannelInfo {
	h.mu.RLock()
	out := make([]ChannelInfo, 0, len(h.apps[app]))
	for name, ch := range h.apps[app] {
		if ch.subs > 0 && strings.HasPrefix(name, prefix) {
			_, cache := Classify(name)
			info := ChannelInfo{Name: name, Kind: ch.kind, Cache: cache, SubscriptionCount: ch.subs, UserCount: len(ch.members)}
			if e, ok := h.caches[app][name]; ok && cache {
				info.Cached = e.msg
			}
			out = append(out, info)
		}
	}
	h.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// count returns the number of channels of app with subscribers on this node.
func (h *hub) count(app *App) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := 0
	for _, ch := range h.apps[app] {
		if ch.subs > 0 {
			n++
		}
	}
	return n
}
