package pusher

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"
)

// cacheTTL is how long the last event of a cache channel is kept (Pusher's
// 30 minutes), whether or not the channel has subscribers.
const cacheTTL = 30 * time.Minute

// hub is the node's channel registry: for every channel of every app, how
// many subscribers each shard holds, the presence members (of this node and,
// in a cluster, of the others) and the cached events. It is goroutine-safe;
// its lock is never held across I/O.
type hub struct {
	mu      sync.RWMutex
	nShards int
	apps    map[*App]map[string]*channel
	caches  map[*App]map[string]cacheEntry
	nodes   map[string]map[presenceKey]*member // other nodes' presence members
	// broker is told of this node's presence changes while h.mu is held, so
	// that the envelopes leave in the order the registry changed.
	broker Broker
}

type channel struct {
	name     string
	kind     ChannelKind
	subs     int     // subscriptions on this node
	perShard []int32 // subscriptions per shard
	members  map[string]*member
	order    []*member // presence members in first-seen order
}

type cacheEntry struct {
	msg []byte
	at  time.Time
}

// presenceKey names one user on one presence channel.
type presenceKey struct {
	app     *App
	channel string
	user    string
}

// member is one presence user on a channel.
type member struct {
	key    string          // user_id as a string, the identity
	id     json.RawMessage // user_id as sent (string or number)
	info   json.RawMessage // user_info, or nil
	data   string          // channel_data of the first connection: the member_added payload
	local  int             // connections of this user on this node
	remote int             // other nodes that report the user
}

// PresenceChange is a presence member who appeared or left in the cluster's
// view of a channel.
type PresenceChange struct {
	App     *App
	Channel string
	Member  PresenceMember
}

// PresenceMember is a presence user as nodes exchange it.
type PresenceMember struct {
	// Key is the user_id as a string (the identity).
	Key string `json:"key"`
	// ID is the user_id as the client sent it.
	ID json.RawMessage `json:"id"`
	// Info is the user_info, or empty.
	Info json.RawMessage `json:"info,omitempty"`
	// Data is the channel_data of the user's first connection.
	Data string `json:"data"`
}

func newHub(apps []*App, nShards int) *hub {
	h := &hub{
		nShards: nShards,
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

// channelLocked returns the channel, creating it. Called with h.mu held.
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

// releaseLocked deletes a channel nobody holds any more. Called with h.mu held.
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
	}
	if ch.kind == KindPresence {
		res.presence = ch.presenceJSON()
	}
	if _, cache := Classify(name); cache {
		if e, ok := h.caches[app][name]; ok && time.Since(e.at) < cacheTTL {
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
				if m.remote == 0 {
					ch.removeMember(m)
					res.gone = true
				}
			}
		}
	}
	h.releaseLocked(app, ch)
	return res
}

func (ch *channel) removeMember(m *member) {
	delete(ch.members, m.key)
	for i, o := range ch.order {
		if o == m {
			ch.order = append(ch.order[:i], ch.order[i+1:]...)
			break
		}
	}
}

// remoteJoin records that node has user m on a channel. It reports whether
// the user is new to the channel (member_added must be announced locally).
func (h *hub) remoteJoin(node string, app *App, name string, m PresenceMember) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.remoteJoinLocked(node, app, name, m)
}

func (h *hub) remoteJoinLocked(node string, app *App, name string, m PresenceMember) bool {
	set := h.nodes[node]
	if set == nil {
		set = make(map[presenceKey]*member)
		h.nodes[node] = set
	}
	k := presenceKey{app, name, m.Key}
	if set[k] != nil {
		return false
	}
	set[k] = &member{key: m.Key, id: m.ID, info: m.Info, data: m.Data}
	ch := h.channelLocked(app, name)
	if ch.members == nil {
		ch.members = make(map[string]*member)
	}
	cur := ch.members[m.Key]
	if cur != nil {
		cur.remote++
		return false
	}
	cur = &member{key: m.Key, id: m.ID, info: m.Info, data: m.Data, remote: 1}
	ch.members[m.Key] = cur
	ch.order = append(ch.order, cur)
	return true
}

// remoteLeave records that node no longer has the user. It returns the
// member when the user left the channel everywhere (member_removed must be
// announced locally).
func (h *hub) remoteLeave(node string, app *App, name, key string) *member {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.remoteLeaveLocked(node, presenceKey{app, name, key})
}

func (h *hub) remoteLeaveLocked(node string, k presenceKey) *member {
	set := h.nodes[node]
	if set == nil || set[k] == nil {
		return nil
	}
	delete(set, k)
	ch := h.apps[k.app][k.channel]
	if ch == nil {
		return nil
	}
	m := ch.members[k.user]
	if m == nil {
		return nil
	}
	m.remote--
	if m.remote > 0 || m.local > 0 {
		return nil
	}
	ch.removeMember(m)
	h.releaseLocked(k.app, ch)
	return m
}

// replaceNode replaces everything known of node's presence members with
// state, returning the users that appeared and those that left the cluster's
// view as a result.
func (h *hub) replaceNode(node string, state []PresenceChange) (added, removed []PresenceChange) {
	h.mu.Lock()
	defer h.mu.Unlock()
	want := make(map[presenceKey]PresenceChange, len(state))
	for _, c := range state {
		want[presenceKey{c.App, c.Channel, c.Member.Key}] = c
	}
	for k, m := range h.nodes[node] {
		if _, keep := want[k]; keep {
			continue
		}
		if gone := h.remoteLeaveLocked(node, k); gone != nil {
			removed = append(removed, PresenceChange{App: k.app, Channel: k.channel, Member: gone.export()})
		}
		_ = m
	}
	for _, c := range state {
		if h.remoteJoinLocked(node, c.App, c.Channel, c.Member) {
			added = append(added, c)
		}
	}
	return added, removed
}

// dropNode forgets a node that stopped answering; it returns the users that
// left the cluster's view as a result.
func (h *hub) dropNode(node string) []PresenceChange {
	_, removed := h.replaceNode(node, nil)
	h.mu.Lock()
	delete(h.nodes, node)
	h.mu.Unlock()
	return removed
}

// withLocalDigest calls fn with the digest of this node's presence users,
// holding the registry's lock so that no join or leave envelope can be
// queued while fn queues the digest.
func (h *hub) withLocalDigest(fn func(map[string]PresenceDigest)) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	fn(h.localDigestLocked())
}

// withLocalPresence calls fn with the presence members connected to this
// node, holding the registry's lock so that no join or leave envelope can be
// queued while fn queues the state.
func (h *hub) withLocalPresence(fn func([]PresenceChange)) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	fn(h.localPresenceLocked())
}

func (h *hub) localPresenceLocked() []PresenceChange {
	var out []PresenceChange
	for app, chans := range h.apps {
		for _, ch := range chans {
			for _, m := range ch.order {
				if m.local > 0 {
					out = append(out, PresenceChange{App: app, Channel: ch.name, Member: m.export()})
				}
			}
		}
	}
	return out
}

// PresenceDigest summarises a node's presence users: how many (user,
// channel, app) entries and an order-independent hash of them. Two views of
// a node's presence are the same when their digests are.
type PresenceDigest struct {
	Count int    `json:"n"`
	Sum   uint64 `json:"h"`
}

func (d *PresenceDigest) add(app *App, channel, key string) {
	// FNV-1a over app id, channel and user key, separated by 0 bytes.
	h := uint64(14695981039346656037)
	for _, s := range [...]string{app.ID, channel, key} {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
		h *= 1099511628211
	}
	d.Count++
	d.Sum += h
}

// localDigestLocked is the digest of this node's own presence users, by
// app id. Called with h.mu held.
func (h *hub) localDigestLocked() map[string]PresenceDigest {
	out := make(map[string]PresenceDigest)
	for app, chans := range h.apps {
		var d PresenceDigest
		for _, ch := range chans {
			for _, m := range ch.order {
				if m.local > 0 {
					d.add(app, ch.name, m.key)
				}
			}
		}
		if d.Count > 0 {
			out[app.ID] = d
		}
	}
	return out
}

// nodeDigest is the digest of what this node knows of another node's
// presence users, by app id.
func (h *hub) nodeDigest(node string) map[string]PresenceDigest {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make(map[string]PresenceDigest)
	for k := range h.nodes[node] {
		d := out[k.app.ID]
		d.add(k.app, k.channel, k.user)
		out[k.app.ID] = d
	}
	return out
}

// localUsers returns this node's own presence users of a channel (user
// key to user_id as sent), or nil.
func (h *hub) localUsers(app *App, name string) map[string]json.RawMessage {
	h.mu.RLock()
	defer h.mu.RUnlock()
	ch := h.apps[app][name]
	if ch == nil {
		return nil
	}
	var out map[string]json.RawMessage
	for _, m := range ch.order {
		if m.local > 0 {
			if out == nil {
				out = make(map[string]json.RawMessage)
			}
			out[m.key] = m.id
		}
	}
	return out
}

func (m *member) export() PresenceMember {
	return PresenceMember{Key: m.key, ID: m.id, Info: m.info, Data: m.data}
}

// presenceJSON encodes {"presence":{"count":N,"ids":[...],"hash":{...}}}.
// Called with h.mu held.
func (ch *channel) presenceJSON() []byte {
	b := make([]byte, 0, 64+len(ch.order)*48)
	b = append(b, `{"presence":{"count":`...)
	b = appendInt(b, len(ch.order))
	b = append(b, `,"ids":[`...)
	for i, m := range ch.order {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.id...)
	}
	b = append(b, `],"hash":{`...)
	for i, m := range ch.order {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, m.key)
		b = append(b, ':')
		if m.info == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, m.info...)
		}
	}
	return append(b, "}}}"...)
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

// storeCache keeps msg as the cached event of a cache channel; it reports
// whether it did (not for other channels, nor for presence bookkeeping).
func (h *hub) storeCache(app *App, name string, msg []byte) bool {
	if _, cache := Classify(name); !cache || bytes.HasPrefix(msg, []byte(`{"event":"pusher_internal:`)) {
		return false
	}
	h.mu.Lock()
	h.caches[app][name] = cacheEntry{msg: msg, at: time.Now()}
	h.mu.Unlock()
	return true
}

// cached returns the cached event of a cache channel, or nil.
func (h *hub) cached(app *App, name string) []byte {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if e, ok := h.caches[app][name]; ok && time.Since(e.at) < cacheTTL {
		return e.msg
	}
	return nil
}

// sweepCaches drops cached events older than cacheTTL.
func (h *hub) sweepCaches(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.caches {
		for name, e := range m {
			if now.Sub(e.at) >= cacheTTL {
				delete(m, name)
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

// userCount returns the distinct presence users of a channel in the cluster.
func (h *hub) userCount(app *App, name string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if ch := h.apps[app][name]; ch != nil {
		return len(ch.members)
	}
	return 0
}

// users returns the user ids of a presence channel in first-seen order.
func (h *hub) users(app *App, name string) ([]json.RawMessage, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	ch := h.apps[app][name]
	if ch == nil || len(ch.order) == 0 {
		return nil, false
	}
	ids := make([]json.RawMessage, len(ch.order))
	for i, m := range ch.order {
		ids[i] = m.id
	}
	return ids, true
}

// presenceOf returns the presence block of a channel.
func (h *hub) presenceOf(app *App, name string) []byte {
	h.mu.RLock()
	defer h.mu.RUnlock()
	ch := h.apps[app][name]
	if ch == nil {
		return []byte(`{"presence":{"count":0,"ids":[],"hash":{}}}`)
	}
	return ch.presenceJSON()
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

// members returns the presence members of a channel in first-seen order.
func (h *hub) members(app *App, name string) []Member {
	h.mu.RLock()
	defer h.mu.RUnlock()
	ch := h.apps[app][name]
	if ch == nil {
		return nil
	}
	out := make([]Member, len(ch.order))
	for i, m := range ch.order {
		out[i] = Member{ID: m.id, Info: m.info}
	}
	return out
}

func appendInt(b []byte, n int) []byte {
	if n < 10 && n >= 0 {
		return append(b, byte('0'+n))
	}
	var tmp [20]byte
	i := len(tmp)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		tmp[i] = '-'
	}
	return append(b, tmp[i:]...)
}
