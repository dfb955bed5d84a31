package pusher

import (
	"encoding/json"
	"sort"
	"strings"
	"sync"
)

// hub is the node's channel registry: for every channel of every app, how
// many subscribers each shard holds, the presence members and the cached
// event. It is goroutine-safe; its lock is never held across I/O.
type hub struct {
	mu      sync.RWMutex
	nShards int
	apps    map[*App]map[string]*channel
}

type channel struct {
	name     string
	kind     ChannelKind
	cache    bool
	subs     int     // subscriptions on this node
	perShard []int32 // subscriptions per shard
	members  map[string]*member
	order    []*member // presence members in first-seen order
	cached   []byte    // last event message (JSON) of a cache channel
}

// member is one presence user on a channel.
type member struct {
	key   string          // user_id as a string, the identity
	id    json.RawMessage // user_id as sent (string or number)
	info  json.RawMessage // user_info, or nil
	conns int             // connections of this user on the channel
}

func newHub(apps []*App, nShards int) *hub {
	h := &hub{nShards: nShards, apps: make(map[*App]map[string]*channel, len(apps))}
	for _, a := range apps {
		h.apps[a] = make(map[string]*channel)
	}
	return h
}

// joinResult is what a subscription learned from the registry.
type joinResult struct {
	firstOfUser bool   // the user had no other connection on the channel
	presence    []byte // the presence block for subscription_succeeded
	cached      []byte // the cached event of a cache channel, or nil
}

// join registers a subscription of a connection on shard. For presence
// channels m is the member joining. It fails with ErrPresenceFull when the
// channel already has maxMembers distinct users and m is a new one.
func (h *hub) join(app *App, name string, shard int, m *member, maxMembers int) (joinResult, *Error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	chans := h.apps[app]
	ch := chans[name]
	if ch == nil {
		kind, cache := Classify(name)
		ch = &channel{name: name, kind: kind, cache: cache, perShard: make([]int32, h.nShards)}
		chans[name] = ch
	}
	var res joinResult
	if m != nil {
		if ch.members == nil {
			ch.members = make(map[string]*member)
		}
		cur := ch.members[m.key]
		if cur == nil {
			if maxMembers > 0 && len(ch.members) >= maxMembers {
				if ch.subs == 0 {
					delete(chans, name)
				}
				return res, ErrPresenceFull
			}
			cur = &member{key: m.key, id: m.id, info: m.info}
			ch.members[m.key] = cur
			ch.order = append(ch.order, cur)
			res.firstOfUser = true
		}
		cur.conns++
	}
	ch.subs++
	ch.perShard[shard]++
	if ch.kind == KindPresence {
		res.presence = ch.presenceJSON()
	}
	if ch.cache && ch.cached != nil {
		res.cached = ch.cached
	}
	return res, nil
}

// leave removes a subscription. userKey is the presence identity or "".
// It reports whether that user has no connection left on the channel.
func (h *hub) leave(app *App, name string, shard int, userKey string, presence bool) (userGone bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	chans := h.apps[app]
	ch := chans[name]
	if ch == nil {
		return false
	}
	ch.subs--
	ch.perShard[shard]--
	if presence {
		if m := ch.members[userKey]; m != nil {
			m.conns--
			if m.conns == 0 {
				delete(ch.members, userKey)
				for i, o := range ch.order {
					if o == m {
						ch.order = append(ch.order[:i], ch.order[i+1:]...)
						break
					}
				}
				userGone = true
			}
		}
	}
	if ch.subs <= 0 {
		delete(chans, name)
	}
	return userGone
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

// route calls fn for every shard holding subscribers of the channel and, for
// cache channels, stores msg as the cached event. It reports whether the
// channel exists on this node.
func (h *hub) route(app *App, name string, msg []byte, fn func(shard int)) bool {
	_, cache := Classify(name)
	if cache {
		h.mu.Lock()
		defer h.mu.Unlock()
	} else {
		h.mu.RLock()
		defer h.mu.RUnlock()
	}
	ch := h.apps[app][name]
	if ch == nil {
		return false
	}
	if cache {
		ch.cached = msg
	}
	for i, n := range ch.perShard {
		if n > 0 {
			fn(i)
		}
	}
	return true
}

// ChannelInfo describes one channel on this node.
type ChannelInfo struct {
	Name              string
	Kind              ChannelKind
	Cache             bool
	SubscriptionCount int
	UserCount         int
	Cached            []byte
}

// info returns a channel's counts; ok is false when it has no subscribers.
func (h *hub) info(app *App, name string) (ChannelInfo, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	ch := h.apps[app][name]
	if ch == nil {
		return ChannelInfo{Name: name}, false
	}
	return ch.summary(), true
}

func (ch *channel) summary() ChannelInfo {
	return ChannelInfo{
		Name:              ch.name,
		Kind:              ch.kind,
		Cache:             ch.cache,
		SubscriptionCount: ch.subs,
		UserCount:         len(ch.members),
		Cached:            ch.cached,
	}
}

// list returns the occupied channels whose names start with prefix, sorted.
func (h *hub) list(app *App, prefix string) []ChannelInfo {
	h.mu.RLock()
	out := make([]ChannelInfo, 0, len(h.apps[app]))
	for name, ch := range h.apps[app] {
		if strings.HasPrefix(name, prefix) {
			out = append(out, ch.summary())
		}
	}
	h.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// users returns the user ids of a presence channel in first-seen order.
func (h *hub) users(app *App, name string) ([]json.RawMessage, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	ch := h.apps[app][name]
	if ch == nil {
		return nil, false
	}
	ids := make([]json.RawMessage, len(ch.order))
	for i, m := range ch.order {
		ids[i] = m.id
	}
	return ids, true
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

// count returns the number of occupied channels of app.
func (h *hub) count(app *App) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.apps[app])
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
