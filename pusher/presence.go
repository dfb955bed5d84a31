package pusher

import (
	"encoding/json"
	"strconv"
)

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

func (ch *channel) removeMember(m *member) {
	delete(ch.members, m.key)
	for i, o := range ch.order {
		if o == m {
			n := len(ch.order) - 1
			copy(ch.order[i:], ch.order[i+1:])
			ch.order[n] = nil // no reference kept
			ch.order = ch.order[:n]
			break
		}
	}
}

// seqChange is a presence change and the presence sequence number of the
// stripe's change that made it (see hub).
type seqChange struct {
	PresenceChange
	seq uint64
}

// remoteJoin records that node has user m on a channel. When the user is new
// to the channel (member_added must be announced locally) it returns the
// presence sequence number of the addition, else 0.
func (h *hub) remoteJoin(node string, app *App, name string, m PresenceMember) uint64 {
	s := h.stripeOf(app, name)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remoteJoinLocked(h, node, app, name, m)
}

// remoteJoinLocked: the stripe of (app, name) is locked.
func (s *stripe) remoteJoinLocked(h *hub, node string, app *App, name string, m PresenceMember) uint64 {
	set := s.nodes[node]
	if set == nil {
		set = make(map[presenceKey]*member)
		s.nodes[node] = set
	}
	k := presenceKey{app, name, m.Key}
	if set[k] != nil {
		return 0
	}
	set[k] = &member{key: m.Key, id: m.ID, info: m.Info, data: m.Data}
	h.countRemote(node, 1)
	ch := s.channelLocked(h, app, name)
	if ch.members == nil {
		ch.members = make(map[string]*member)
	}
	cur := ch.members[m.Key]
	if cur != nil {
		cur.remote++
		return 0
	}
	cur = &member{key: m.Key, id: m.ID, info: m.Info, data: m.Data, remote: 1}
	ch.members[m.Key] = cur
	ch.order = append(ch.order, cur)
	return s.memberChangedLocked()
}

// remoteLeave records that node no longer has the user. It returns the
// member when the user left the channel everywhere (member_removed must be
// announced locally), with the presence sequence number of the removal.
func (h *hub) remoteLeave(node string, app *App, name, key string) (*member, uint64) {
	s := h.stripeOf(app, name)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remoteLeaveLocked(h, node, presenceKey{app, name, key})
}

// remoteLeaveLocked: the stripe of k is locked.
func (s *stripe) remoteLeaveLocked(h *hub, node string, k presenceKey) (*member, uint64) {
	set := s.nodes[node]
	if set == nil || set[k] == nil {
		return nil, 0
	}
	delete(set, k)
	h.countRemote(node, -1)
	if len(set) == 0 {
		delete(s.nodes, node)
	}
	ch := s.apps[k.app][k.channel]
	if ch == nil {
		return nil, 0
	}
	m := ch.members[k.user]
	if m == nil {
		return nil, 0
	}
	m.remote--
	if m.remote > 0 || m.local > 0 {
		return nil, 0
	}
	ch.removeMember(m)
	s.releaseLocked(k.app, ch)
	return m, s.memberChangedLocked()
}

// replaceNode replaces everything known of node's presence members with
// state, returning the users that appeared and those that left the cluster's
// view as a result, each with the presence sequence number of its change.
// It locks every stripe: the replacement is one change.
func (h *hub) replaceNode(node string, state []PresenceChange) (added, removed []seqChange) {
	if len(state) == 0 && h.remoteCount(node) == 0 {
		// Nothing held, nothing to hold: the common sync of a node without
		// presence members. The node's own messages are applied one at a
		// time, so no join of it can be in flight.
		return nil, nil
	}
	h.lockAll()
	defer h.unlockAll()
	return h.replaceNodeLocked(node, state)
}

func (h *hub) replaceNodeLocked(node string, state []PresenceChange) (added, removed []seqChange) {
	want := make(map[presenceKey]PresenceChange, len(state))
	for _, c := range state {
		want[presenceKey{c.App, c.Channel, c.Member.Key}] = c
	}
	var drop []presenceKey
	for i := range h.stripes {
		for k := range h.stripes[i].nodes[node] {
			if _, keep := want[k]; !keep {
				drop = append(drop, k)
			}
		}
	}
	for _, k := range drop {
		if gone, seq := h.stripeOf(k.app, k.channel).remoteLeaveLocked(h, node, k); gone != nil {
			removed = append(removed, seqChange{PresenceChange{App: k.app, Channel: k.channel, Member: gone.export()}, seq})
		}
	}
	for _, c := range state {
		if seq := h.stripeOf(c.App, c.Channel).remoteJoinLocked(h, node, c.App, c.Channel, c.Member); seq != 0 {
			added = append(added, seqChange{c, seq})
		}
	}
	return added, removed
}

// countRemote adds d to the entries held for node. Safe from any goroutine.
func (h *hub) countRemote(node string, d int) {
	h.remoteMu.Lock()
	if h.remote == nil {
		h.remote = make(map[string]int)
	}
	if n := h.remote[node] + d; n > 0 {
		h.remote[node] = n
	} else {
		delete(h.remote, node)
	}
	h.remoteMu.Unlock()
}

// remoteCount returns the presence entries held for node. Safe from any
// goroutine.
func (h *hub) remoteCount(node string) int {
	h.remoteMu.Lock()
	defer h.remoteMu.Unlock()
	return h.remote[node]
}

// dropNode forgets a node that stopped answering; it returns the users that
// left the cluster's view as a result.
func (h *hub) dropNode(node string) []seqChange {
	h.lockAll()
	defer h.unlockAll()
	_, removed := h.replaceNodeLocked(node, nil)
	for i := range h.stripes {
		delete(h.stripes[i].nodes, node)
	}
	return removed
}

// withLocalDigest calls fn with the digest of this node's presence users,
// holding every stripe's lock, once the envelopes of every change made
// before were queued, so that no join or leave envelope can be queued while
// fn queues the digest.
func (h *hub) withLocalDigest(fn func(map[string]PresenceDigest)) {
	h.rlockAllIdle()
	defer h.runlockAll()
	fn(h.localDigestLocked())
}

// withLocalPresence calls fn with the presence members connected to this
// node, holding every stripe's lock, once the envelopes of every change made
// before were queued, so that no join or leave envelope can be queued while
// fn queues the state.
func (h *hub) withLocalPresence(fn func([]PresenceChange)) {
	h.rlockAllIdle()
	defer h.runlockAll()
	fn(h.localPresenceLocked())
}

// localPresenceLocked: every stripe is locked.
func (h *hub) localPresenceLocked() []PresenceChange {
	var out []PresenceChange
	for i := range h.stripes {
		for app, chans := range h.stripes[i].apps {
			for _, ch := range chans {
				for _, m := range ch.order {
					if m.local > 0 {
						out = append(out, PresenceChange{App: app, Channel: ch.name, Member: m.export()})
					}
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
// app id. Every stripe is locked.
func (h *hub) localDigestLocked() map[string]PresenceDigest {
	out := make(map[string]PresenceDigest)
	for i := range h.stripes {
		for app, chans := range h.stripes[i].apps {
			d := out[app.ID]
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
	}
	return out
}

// nodeDigest is the digest of what this node knows of another node's
// presence users, by app id. It holds every stripe's lock, so that the
// digest is of one instant.
func (h *hub) nodeDigest(node string) map[string]PresenceDigest {
	if h.remoteCount(node) == 0 {
		// The digest of nothing, without locking every stripe for every
		// peer's heartbeat.
		return map[string]PresenceDigest{}
	}
	for i := range h.stripes {
		h.stripes[i].mu.RLock()
	}
	defer h.runlockAll()
	out := make(map[string]PresenceDigest)
	for i := range h.stripes {
		for k := range h.stripes[i].nodes[node] {
			d := out[k.app.ID]
			d.add(k.app, k.channel, k.user)
			out[k.app.ID] = d
		}
	}
	return out
}

// localUsers returns this node's own presence users of a channel (user
// key to user_id as sent), or nil.
func (h *hub) localUsers(app *App, name string) map[string]json.RawMessage {
	s := h.stripeOf(app, name)
	s.mu.RLock()
	defer s.mu.RUnlock()
	ch := s.apps[app][name]
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

// presenceJSON encodes {"presence":{"count":N,"ids":[...],"hash":{...}}}
// from a copy of a channel's member order. It reads only the members'
// fields that never change: no lock is needed.
func presenceJSON(order []*member) []byte {
	b := make([]byte, 0, 64+len(order)*48)
	b = append(b, `{"presence":{"count":`...)
	b = strconv.AppendInt(b, int64(len(order)), 10)
	b = append(b, `,"ids":[`...)
	for i, m := range order {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.id...)
	}
	b = append(b, `],"hash":{`...)
	for i, m := range order {
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

// users returns the user ids of a presence channel in first-seen order.
func (h *hub) users(app *App, name string) ([]json.RawMessage, bool) {
	order := h.order(app, name, nil)
	if len(order) == 0 {
		return nil, false
	}
	ids := make([]json.RawMessage, len(order))
	for i, m := range order {
		ids[i] = m.id
	}
	return ids, true
}

// order appends a channel's presence members in first-seen order to buf.
func (h *hub) order(app *App, name string, buf []*member) []*member {
	order, _ := h.orderAt(app, name, buf)
	return order
}

// orderAt is order, with the presence sequence number of the state read.
func (h *hub) orderAt(app *App, name string, buf []*member) ([]*member, uint64) {
	s := h.stripeOf(app, name)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ch := s.apps[app][name]; ch != nil {
		return append(buf, ch.order...), s.pseq
	}
	return buf, s.pseq
}

// presenceOf returns the presence block of a channel.
func (h *hub) presenceOf(app *App, name string) []byte {
	b, _ := h.presenceAt(app, name)
	return b
}

// presenceAt returns the presence block of a channel and the presence
// sequence number of the state it was read at.
func (h *hub) presenceAt(app *App, name string) ([]byte, uint64) {
	var buf [16]*member
	order, seq := h.orderAt(app, name, buf[:0])
	return presenceJSON(order), seq
}

// members returns the presence members of a channel in first-seen order.
func (h *hub) members(app *App, name string) []Member {
	s := h.stripeOf(app, name)
	s.mu.RLock()
	ch := s.apps[app][name]
	if ch == nil {
		s.mu.RUnlock()
		return nil
	}
	out := make([]Member, len(ch.order))
	for i, m := range ch.order {
		out[i] = Member{ID: m.id, Info: m.info}
	}
	s.mu.RUnlock()
	return out
}
