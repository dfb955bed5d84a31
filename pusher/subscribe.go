package pusher

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/reverbgo/reverb/webhooks"
)

// subscription is one channel a session subscribes to. Every subscribed
// connection holds at least one, so its size matters at scale: what only a
// presence subscription needs is behind the presence pointer, which keeps a
// subscription in the 48-byte size class (see TestSubscriptionSize).
type subscription struct {
	sess *Session
	lc   *localChannel
	// name is the registry's copy of the channel name, shared by every
	// subscription to the channel on this node (see joinResult.name).
	name     string
	presence *presenceSub // nil except on a presence channel
	idx      int32
	kind     ChannelKind
	pending  bool // not answered yet: gets no events
}

// presenceSub is what a subscription to a presence channel adds.
type presenceSub struct {
	userKey string          // the member's identity
	userID  json.RawMessage // user_id as sent
	// seq is the presence sequence number of the state the member list
	// was read at (see hub): member_added and member_removed deliveries
	// numbered up to it are already in the list.
	seq uint64
}

// userKey is the presence identity of the subscription, "" off presence
// channels.
func (sub *subscription) userKey() string {
	if sub.presence == nil {
		return ""
	}
	return sub.presence.userKey
}

// userID is the presence user_id as the client sent it, nil off presence
// channels.
func (sub *subscription) userID() json.RawMessage {
	if sub.presence == nil {
		return nil
	}
	return sub.presence.userID
}

// seen reports whether a presence delivery numbered seq (not 0) is already
// in the member list the subscription was answered with.
func (sub *subscription) seen(seq uint64) bool {
	return sub.presence != nil && seq <= sub.presence.seq
}

func (s *Session) findSub(name string) *subscription {
	for _, sub := range s.subs {
		if sub.name == name {
			return sub
		}
	}
	return nil
}

// subscriptionError tells pusher-js (and Laravel Echo's .error()) that a
// subscription failed, then sends the Reverb-compatible pusher:error.
func (s *Session) subscriptionError(channel string, e *Error, status int) {
	inner := make([]byte, 0, 96)
	inner = append(inner, `{"type":"AuthError","error":`...)
	inner = appendJSONString(inner, e.Message)
	inner = append(inner, `,"status":`...)
	inner = strconv.AppendInt(inner, int64(status), 10)
	inner = append(inner, '}')
	s.send(eventJSON(nil, "pusher:subscription_error", string(inner), channel))
	s.sendError(e)
}

func (s *Session) handleSubscribe(msg *clientMsg) {
	d, ok := msg.dataObject()
	if !ok {
		s.sendError(ErrInvalidMessage)
		return
	}
	name, ok1 := jsonString(d.channel)
	auth, ok2 := optString(d.auth)
	cdRaw, ok3 := optStringBytes(d.channelData)
	if !ok1 || !ok2 || !ok3 {
		s.sendError(ErrInvalidMessage)
		return
	}
	// channel_data is read once: checked here, its member fields kept for
	// a presence channel.
	var cd memberFields
	cdObject := false
	if len(cdRaw) > 0 {
		var valid bool
		if cd, valid, cdObject = scanChannelData(cdRaw); !valid {
			s.sendError(ErrInvalidMessage)
			return
		}
	}
	channelData := string(cdRaw)
	srv := s.shard.srv
	if !validChannelName(name, srv.opts.MaxNameLength) {
		s.subscriptionError(name, ErrInvalidChannel, 400)
		return
	}
	kind, _ := Classify(name)
	if existing := s.findSub(name); existing != nil {
		if existing.pending {
			return // the answer is on its way
		}
		// Re-subscribing answers again without registering twice.
		var presence []byte
		if kind == KindPresence {
			presence, existing.presence.seq = srv.hub.presenceAt(s.app, name)
		}
		s.sendSubscribed(name, kind, presence)
		return
	}
	if !s.perSecond.allowSubscribe(s.lastSeen, srv.opts.SubscriptionsPerSecond) {
		s.shard.stats.rateLimited++
		s.subscriptionError(name, ErrSubscribeRate, 429)
		return
	}
	if len(s.subs) >= srv.opts.MaxChannelsPerConnection {
		s.subscriptionError(name, ErrTooManyChannels, 429)
		return
	}
	var m *member
	switch kind {
	case KindPrivate, KindPresence:
		msg := s.id + ":" + name
		if channelData != "" {
			msg += ":" + channelData
		}
		if auth == "" || !verifyAuth(s.app, auth, msg) {
			s.subscriptionError(name, ErrUnauthorized, 401)
			return
		}
		if kind == KindPresence {
			var e *Error
			m, e = parseMember(channelData, cd, cdObject, srv.opts.MaxUserInfoSize)
			if e != nil {
				s.subscriptionError(name, e, 400)
				return
			}
		}
	case KindUser:
		if s.user == nil || name != serverToUserPrefix+*s.user {
			s.subscriptionError(name, ErrUnauthorized, 401)
			return
		}
	}
	res, e := srv.hub.join(s.app, name, s.shard.idx, m, srv.opts.MaxPresenceMembers)
	if e != nil {
		s.subscriptionError(name, e, 429)
		return
	}
	// From here on the channel name is the registry's: the copy decoded
	// from this message is not kept.
	name = res.name
	sub := &subscription{sess: s, name: name, kind: kind}
	if m != nil {
		sub.presence = &presenceSub{userKey: m.key, userID: m.id, seq: res.seq}
	}
	s.subs = append(s.subs, sub)
	s.shard.addLocal(sub)
	if len(s.subs) == 1 {
		srv.stats(s.app).subscribed.Add(1)
	}
	if kind != KindPresence {
		srv.addCount(s.app, name, 1)
	}
	// Announce first: if answering fails and closes the connection, its
	// leave then follows the join everywhere.
	if m != nil {
		if res.firstOfUser {
			// Every node announces a new member to its own subscribers.
			added := eventJSON(nil, "pusher_internal:member_added", m.data, name)
			srv.deliver(s.app, name, added, s.id, false, res.seq)
		}
	}
	// In a cluster the answer may have to wait until this node receives the
	// channel's events from the others (and, for a cache channel, has every
	// event acknowledged before): until then the subscription is pending and
	// gets no events.
	sub.pending = true
	sh := s.shard
	if srv.broker.Await(s.app, name, func() { sh.exec(func() { s.completeSubscribe(sub, nil, nil, true) }) }) {
		s.completeSubscribe(sub, res.presence, res.cached, false)
	}
}

// completeSubscribe answers a subscription: subscription_succeeded, then
// for cache channels the cached event or pusher:cache_miss. presence and
// cached are what the registry said at join time; nil means read them now.
// late says the answer waited for the broker: a subscription count may have
// passed the subscription by meanwhile. Loop-only.
func (s *Session) completeSubscribe(sub *subscription, presence, cached []byte, late bool) {
	if s.closed || sub.lc == nil || !sub.pending {
		return // closed or unsubscribed meanwhile
	}
	sub.pending = false
	srv := s.shard.srv
	name := sub.name
	_, cache := Classify(name)
	if sub.kind == KindPresence && presence == nil {
		presence, sub.presence.seq = srv.hub.presenceAt(s.app, name)
	}
	if cache && cached == nil {
		cached = srv.hub.cached(s.app, name)
	}
	s.sendSubscribed(name, sub.kind, presence)
	if cache {
		if cached != nil {
			s.send(cached)
		} else {
			s.send([]byte(`{"event":"pusher:cache_miss","channel":` + string(appendJSONString(nil, name)) + `}`))
			if srv.hookEnabled(s.app, webhooks.CacheMiss) {
				srv.emit(s.app, webhooks.Event{Name: webhooks.CacheMiss, Channel: name})
			}
		}
	}
	s.sendKnownCount(sub, late)
	if s.debug() {
		srv.log.Debug("Subscribed", "socket_id", s.id, "channel", name)
	}
}

func (s *Session) sendSubscribed(name string, kind ChannelKind, presence []byte) {
	data := "{}"
	if kind == KindPresence {
		data = string(presence)
	}
	s.send(eventJSON(nil, "pusher_internal:subscription_succeeded", data, name))
}

// parseMember makes the member of a presence channel_data,
// {"user_id": string|number, "user_info": any}, from its fields (read by
// scanChannelData; object says it is an object).
func parseMember(channelData string, cd memberFields, object bool, maxInfo int) (*member, *Error) {
	if channelData == "" || !object {
		return nil, &Error{4009, "Presence channels need channel_data with a user_id"}
	}
	id := bytes.TrimSpace(cd.userID)
	var key string
	switch {
	case len(id) > 0 && id[0] == '"':
		key, _ = jsonString(id)
	case len(id) > 0 && (id[0] == '-' || (id[0] >= '0' && id[0] <= '9')):
		key = string(id)
	}
	if key == "" {
		return nil, &Error{4009, "Presence channels need channel_data with a user_id"}
	}
	info := bytes.TrimSpace(cd.userInfo)
	if maxInfo > 0 && len(info) > maxInfo {
		return nil, ErrUserInfoTooLarge
	}
	if len(info) == 0 {
		info = nil
	}
	m := &member{key: key, id: append(json.RawMessage(nil), id...), data: channelData}
	if info != nil {
		m.info = append(json.RawMessage(nil), info...)
	}
	return m, nil
}

func (s *Session) handleUnsubscribe(msg *clientMsg) {
	d, ok := msg.dataObject()
	if !ok {
		s.sendError(ErrInvalidMessage)
		return
	}
	name, ok := jsonStringBytes(d.channel)
	if !ok {
		s.sendError(ErrInvalidMessage)
		return
	}
	for i, sub := range s.subs {
		if sub.name == string(name) {
			s.subs = append(s.subs[:i], s.subs[i+1:]...)
			s.leave(sub)
			if len(s.subs) == 0 {
				s.shard.srv.stats(s.app).subscribed.Add(-1)
			}
			return
		}
	}
}

// leave removes one subscription from the shard and the registry and tells
// the channel when a presence user left.
func (s *Session) leave(sub *subscription) {
	srv := s.shard.srv
	s.shard.removeLocal(sub)
	res := srv.hub.leave(s.app, sub.name, s.shard.idx, sub.userKey(), sub.kind == KindPresence)
	if sub.kind != KindPresence {
		srv.addCount(s.app, sub.name, -1)
	}
	if res.gone {
		srv.announceRemoved(s.app, sub.name, sub.userID(), s.id, res.seq)
	}
}

// sendKnownCount sends a new subscriber the channel's last known
// subscription count, right after its subscription_succeeded, when the
// broadcast that carries its own subscription may not reach it: when the
// answer was late (a count delivered meanwhile skipped the pending
// subscription), or when the channel is busy (its counts are held back to
// one per window). Otherwise the count that includes the new subscription
// follows shortly, to every subscriber. Loop-only.
func (s *Session) sendKnownCount(sub *subscription, late bool) {
	if !s.app.SubscriptionCounting || sub.kind == KindPresence {
		return
	}
	srv := s.shard.srv
	if n, ok := srv.knownCount(s.app, sub.name); ok && (late || n > countBusy) {
		srv.countsSent.Add(1)
		s.send(countJSON(sub.name, n))
	}
}
