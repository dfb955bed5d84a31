package pusher

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/reverbgo/reverb/wsproto"
)

// Session is one Pusher connection. It belongs to one shard and every method
// is loop-only: call them from the connection's event loop.
type Session struct {
	shard *Shard
	conn  Conn
	app   *App
	id    string
	idx   int32 // position in shard.sessions, -1 once removed
	ac    *appCounters

	controlFrames bool // the client used WebSocket control frames: ping it with them
	closed        bool

	subs     []*subscription
	lastSeen int64 // unix ns of the last inbound message
	pingedAt int64 // unix ns of an unanswered ping, or 0
	userKey  string

	rlStart int64 // rate_limiting window start, unix ns
	rlCount int32
	ceSec   int64 // client event window (unix seconds)
	ceCount int32
	suSec   int64 // subscription window (unix seconds)
	suCount int32

	pending [][]byte // frames queued during a shard drain
}

// subscription is one channel a session subscribes to.
type subscription struct {
	sess    *Session
	lc      *localChannel
	idx     int32
	name    string
	kind    ChannelKind
	userKey string          // presence identity ("" elsewhere)
	userID  json.RawMessage // presence user_id as sent
	pending bool            // not answered yet: gets no events
}

// Pre-encoded frames sent often.
var (
	framePong       = wsproto.AppendText(nil, []byte(`{"event":"pusher:pong"}`))
	framePusherPing = wsproto.AppendText(nil, []byte(`{"event":"pusher:ping"}`))
	framePing       = wsproto.AppendFrame(nil, ws.OpPing, nil)
)

// ID returns the socket id. Goroutine-safe (immutable).
func (s *Session) ID() string { return s.id }

// App returns the session's app. Goroutine-safe (immutable).
func (s *Session) App() *App { return s.app }

// Closed reports whether the session has asked for its connection to close;
// the transport should stop feeding it input.
func (s *Session) Closed() bool { return s.closed }

func (s *Session) debug() bool { return s.shard.srv.opts.Debug }

func (s *Session) writeFrame(f []byte) {
	if s.closed {
		return
	}
	s.conn.Write(f)
	s.ac.messagesSent++
	s.ac.bytesSent += int64(len(f))
}

// send encodes msg as a text frame and writes it.
func (s *Session) send(msg []byte) {
	if s.debug() {
		s.shard.srv.log.Debug("Message Sent", "socket_id", s.id, "message", string(msg))
	}
	s.writeFrame(wsproto.AppendText(make([]byte, 0, len(msg)+10), msg))
}

// flush writes the frames queued by a shard drain and enforces the outbound
// buffer cap.
func (s *Session) flush() {
	if s.closed {
		clear(s.pending)
		s.pending = s.pending[:0]
		return
	}
	if len(s.pending) == 1 {
		s.conn.Write(s.pending[0])
	} else {
		s.conn.Writev(s.pending)
	}
	s.ac.messagesSent += int64(len(s.pending))
	for _, f := range s.pending {
		s.ac.bytesSent += int64(len(f))
	}
	clear(s.pending)
	if cap(s.pending) > 64 {
		s.pending = nil
	} else {
		s.pending = s.pending[:0]
	}
	s.CheckOutbound()
}

// CheckOutbound closes the connection as a slow consumer (4100) when its
// outbound buffer passed max_outbound_buffer. Loop-only.
func (s *Session) CheckOutbound() {
	if s.closed {
		return
	}
	if max := s.shard.srv.opts.MaxOutboundBuffer; max > 0 && s.conn.OutboundBuffered() > max {
		// The close frame queues behind what the client has not read; a
		// client that catches up sees 4100, the others just lose the socket.
		s.shard.stats.slowConsumerCloses++
		s.shard.stats.countClose(ErrSlowConsumer.Code)
		s.conn.Write(wsproto.CloseFrame(ws.StatusCode(ErrSlowConsumer.Code), ErrSlowConsumer.Message))
		s.closed = true
		s.conn.Close()
	}
}

// sendError writes a pusher:error event.
func (s *Session) sendError(e *Error) {
	s.shard.stats.countError(e.Code)
	s.send(errorJSON(e))
}

// fail writes a pusher:error and a close frame with the error's code, then
// closes the connection.
func (s *Session) fail(e *Error) {
	if s.closed {
		return
	}
	s.sendError(e)
	s.writeFrame(wsproto.CloseFrame(ws.StatusCode(e.Code), e.Message))
	s.shard.stats.countClose(e.Code)
	s.closed = true
	s.conn.Close()
}

// Fail is fail for the transport: it sends the error and a close frame with
// its code, then closes.
func (s *Session) Fail(e *Error) { s.fail(e) }

// Touch records inbound activity. control says it was a WebSocket control
// frame (ping or pong), after which the server pings with control frames.
func (s *Session) Touch(control bool) {
	s.lastSeen = time.Now().UnixNano()
	s.pingedAt = 0
	if control {
		s.controlFrames = true
	}
}

// inbound is a client message before its fields are type-checked.
type inbound struct {
	Event   json.RawMessage `json:"event"`
	Channel json.RawMessage `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// HandleMessage processes one complete text (or binary) message from the
// client. data is only valid during the call.
func (s *Session) HandleMessage(data []byte) {
	if s.closed {
		return
	}
	s.Touch(false)
	s.ac.messagesReceived++
	if s.debug() {
		s.shard.srv.log.Debug("Message Received", "socket_id", s.id, "message", string(data))
	}
	if rl := &s.app.RateLimit; rl.Enabled {
		now := s.lastSeen
		if s.rlCount == 0 || now-s.rlStart >= int64(rl.Decay) {
			s.rlStart, s.rlCount = now, 0
		}
		if int(s.rlCount) >= rl.MaxAttempts {
			s.shard.stats.rateLimited++
			if rl.TerminateOnLimit {
				s.fail(ErrRateLimited)
			} else {
				s.sendError(ErrRateLimited)
			}
			return
		}
		s.rlCount++
	}
	if isPusherPing(data) {
		s.writeFrame(framePong)
		return
	}
	var m inbound
	if err := json.Unmarshal(data, &m); err != nil {
		s.sendError(ErrInvalidMessage)
		return
	}
	event, ok := jsonString(m.Event)
	if !ok || event == "" {
		s.sendError(ErrInvalidMessage)
		return
	}
	switch event {
	case "pusher:ping":
		s.writeFrame(framePong)
	case "pusher:pong":
	case "pusher:subscribe":
		s.handleSubscribe(m.Data)
	case "pusher:unsubscribe":
		s.handleUnsubscribe(m.Data)
	case "pusher:signin":
		s.handleSignin(m.Data)
	default:
		if strings.HasPrefix(event, "pusher:") || strings.HasPrefix(event, "pusher_internal:") {
			s.sendError(ErrInvalidMessage)
			return
		}
		if strings.HasPrefix(event, "client-") {
			s.handleClientEvent(event, m.Channel, m.Data)
		}
		// Anything else is ignored, as in Reverb.
	}
	if s.debug() {
		s.shard.srv.log.Debug("Message Handled", "socket_id", s.id)
	}
}

// jsonString decodes a raw JSON value that must be a string.
func jsonString(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var out string
	if json.Unmarshal(raw, &out) != nil {
		return "", false
	}
	return out, true
}

// isNull reports whether raw is absent or JSON null.
func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// objectData returns the data of a pusher:* message as a JSON object: either
// an object as sent or a JSON string holding one.
func objectData(raw json.RawMessage) (json.RawMessage, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, false
	}
	if raw[0] == '"' {
		str, ok := jsonString(raw)
		if !ok {
			return nil, false
		}
		raw = bytes.TrimSpace([]byte(str))
	}
	if len(raw) == 0 || raw[0] != '{' || !json.Valid(raw) {
		return nil, false
	}
	return raw, true
}

type subscribeData struct {
	Channel     json.RawMessage `json:"channel"`
	Auth        json.RawMessage `json:"auth"`
	ChannelData json.RawMessage `json:"channel_data"`
}

// optString decodes a field that must be a string or null/absent.
func optString(raw json.RawMessage) (string, bool) {
	if isNull(raw) {
		return "", true
	}
	return jsonString(raw)
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
	inner = appendInt(inner, status)
	inner = append(inner, '}')
	s.send(eventJSON(nil, "pusher:subscription_error", string(inner), channel))
	s.sendError(e)
}

func (s *Session) handleSubscribe(raw json.RawMessage) {
	obj, ok := objectData(raw)
	var d subscribeData
	if !ok || json.Unmarshal(obj, &d) != nil {
		s.sendError(ErrInvalidMessage)
		return
	}
	name, ok1 := jsonString(d.Channel)
	auth, ok2 := optString(d.Auth)
	channelData, ok3 := optString(d.ChannelData)
	if !ok1 || !ok2 || !ok3 {
		s.sendError(ErrInvalidMessage)
		return
	}
	if channelData != "" && !json.Valid([]byte(channelData)) {
		s.sendError(ErrInvalidMessage)
		return
	}
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
			presence = srv.hub.presenceOf(s.app, name)
		}
		s.sendSubscribed(name, kind, presence)
		return
	}
	if sec := s.lastSeen / int64(time.Second); sec != s.suSec {
		s.suSec, s.suCount = sec, 0
	}
	if int(s.suCount) >= srv.opts.SubscriptionsPerSecond {
		s.shard.stats.rateLimited++
		s.subscriptionError(name, ErrSubscribeRate, 429)
		return
	}
	s.suCount++
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
			m, e = parseMember(channelData, srv.opts.MaxUserInfoSize)
			if e != nil {
				s.subscriptionError(name, e, 400)
				return
			}
		}
	case KindUser:
		if s.userKey == "" || name != serverToUserPrefix+s.userKey {
			s.subscriptionError(name, ErrUnauthorized, 401)
			return
		}
	}
	res, e := srv.hub.join(s.app, name, s.shard.idx, m, srv.opts.MaxPresenceMembers)
	if e != nil {
		s.subscriptionError(name, e, 429)
		return
	}
	sub := &subscription{sess: s, name: name, kind: kind}
	if m != nil {
		sub.userKey, sub.userID = m.key, m.id
	}
	s.subs = append(s.subs, sub)
	s.shard.addLocal(sub)
	if len(s.subs) == 1 {
		srv.stats(s.app).subscribed.Add(1)
	}
	// Announce first: if answering fails and closes the connection, its
	// leave then follows the join everywhere.
	if m != nil {
		if res.firstOfUser {
			// Every node announces a new member to its own subscribers.
			added := eventJSON(nil, "pusher_internal:member_added", m.data, name)
			srv.deliver(s.app, name, added, s.id, false)
		}
	}
	// In a cluster the answer may have to wait until this node receives the
	// channel's events from the others (and, for a cache channel, has every
	// event acknowledged before): until then the subscription is pending and
	// gets no events.
	sub.pending = true
	sh := s.shard
	if srv.broker.Await(s.app, name, func() { sh.exec(func() { s.completeSubscribe(sub, nil, nil) }) }) {
		s.completeSubscribe(sub, res.presence, res.cached)
	}
}

// completeSubscribe answers a subscription: subscription_succeeded, then
// for cache channels the cached event or pusher:cache_miss. presence and
// cached are what the registry said at join time; nil means read them now.
// Loop-only.
func (s *Session) completeSubscribe(sub *subscription, presence, cached []byte) {
	if s.closed || sub.lc == nil || !sub.pending {
		return // closed or unsubscribed meanwhile
	}
	sub.pending = false
	srv := s.shard.srv
	name := sub.name
	_, cache := Classify(name)
	if sub.kind == KindPresence && presence == nil {
		presence = srv.hub.presenceOf(s.app, name)
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
		}
	}
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

// parseMember reads a presence channel_data: {"user_id": string|number, "user_info": any}.
func parseMember(channelData string, maxInfo int) (*member, *Error) {
	var cd struct {
		UserID   json.RawMessage `json:"user_id"`
		UserInfo json.RawMessage `json:"user_info"`
	}
	if channelData == "" || json.Unmarshal([]byte(channelData), &cd) != nil {
		return nil, &Error{4009, "Presence channels need channel_data with a user_id"}
	}
	id := bytes.TrimSpace(cd.UserID)
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
	info := bytes.TrimSpace(cd.UserInfo)
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

func (s *Session) handleUnsubscribe(raw json.RawMessage) {
	obj, ok := objectData(raw)
	var d subscribeData
	if !ok || json.Unmarshal(obj, &d) != nil {
		s.sendError(ErrInvalidMessage)
		return
	}
	name, ok := jsonString(d.Channel)
	if !ok {
		s.sendError(ErrInvalidMessage)
		return
	}
	for i, sub := range s.subs {
		if sub.name == name {
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
	res := srv.hub.leave(s.app, sub.name, s.shard.idx, sub.userKey, sub.kind == KindPresence)
	if res.gone {
		srv.announceRemoved(s.app, sub.name, sub.userID, s.id)
	}
}

func (s *Session) handleSignin(raw json.RawMessage) {
	obj, ok := objectData(raw)
	var d struct {
		Auth     json.RawMessage `json:"auth"`
		UserData json.RawMessage `json:"user_data"`
	}
	if !ok || json.Unmarshal(obj, &d) != nil {
		s.sendError(ErrInvalidMessage)
		return
	}
	auth, ok1 := jsonString(d.Auth)
	userData, ok2 := jsonString(d.UserData)
	if !ok1 || !ok2 {
		s.sendError(ErrInvalidMessage)
		return
	}
	var ud struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal([]byte(userData), &ud) != nil {
		s.sendError(ErrInvalidSignin)
		return
	}
	id, ok := jsonString(ud.ID)
	if !ok || id == "" || !verifyAuth(s.app, auth, s.id+"::user::"+userData) {
		s.sendError(ErrInvalidSignin)
		return
	}
	s.userKey = id
	inner := appendJSONString([]byte(`{"user_data":`), userData)
	inner = append(inner, '}')
	s.send(eventJSON(nil, "pusher:signin_success", string(inner), ""))
}

func (s *Session) handleClientEvent(event string, rawChannel, rawData json.RawMessage) {
	name, ok := jsonString(rawChannel)
	if !ok || !validChannelName(name, s.shard.srv.opts.MaxNameLength) {
		s.sendError(ErrInvalidMessage)
		return
	}
	data := bytes.TrimSpace(rawData)
	switch {
	case len(data) == 0 || string(data) == "null":
		data = []byte("null")
	case data[0] == '{' || data[0] == '[':
	case data[0] == '"':
		str, _ := jsonString(data)
		inner := bytes.TrimSpace([]byte(str))
		if len(inner) == 0 || (inner[0] != '{' && inner[0] != '[') || !json.Valid(inner) {
			s.sendError(ErrInvalidMessage)
			return
		}
		data = inner
	default:
		s.sendError(ErrInvalidMessage)
		return
	}
	srv := s.shard.srv
	if s.app.ClientEvents == ClientEventsNone {
		s.sendError(ErrClientEventsDisabled)
		return
	}
	kind, cache := Classify(name)
	if kind != KindPrivate && kind != KindPresence {
		s.sendError(ErrPublicClientEvent)
		return
	}
	sub := s.findSub(name)
	// Even with "all", a cache channel's stored event may only come from a
	// member: otherwise anyone could fill every node's cache store.
	if sub == nil && (s.app.ClientEvents == ClientEventsMembers || cache) {
		s.sendError(ErrNotMember)
		return
	}
	if limit := srv.opts.ClientEventsPerSecond; limit > 0 {
		sec := s.lastSeen / int64(time.Second)
		if sec != s.ceSec {
			s.ceSec, s.ceCount = sec, 0
		}
		if int(s.ceCount) >= limit {
			s.shard.stats.clientEventsDropped++
			s.sendError(ErrClientEventRate)
			return
		}
		s.ceCount++
	}
	if !validEventName(event, srv.opts.MaxNameLength) {
		s.sendError(ErrInvalidMessage)
		return
	}
	msg := make([]byte, 0, 48+len(event)+len(name)+len(data))
	msg = append(msg, `{"event":`...)
	msg = appendJSONString(msg, event)
	msg = append(msg, `,"channel":`...)
	msg = appendJSONString(msg, name)
	msg = append(msg, `,"data":`...)
	msg = append(msg, data...)
	if sub != nil && sub.userID != nil {
		msg = append(msg, `,"user_id":`...)
		msg = append(msg, sub.userID...)
	}
	msg = append(msg, '}')
	if _, err := srv.publish(s.app, []Outgoing{{Channel: name, Msg: msg, Except: s.id}}); err != nil {
		// The cluster cannot take it now (counted by the broker too).
		s.shard.stats.clientEventsDropped++
	}
}

// close releases everything the session holds. Called once, from the
// transport's close callback.
func (s *Session) close() {
	s.closed = true
	for _, sub := range s.subs {
		s.leave(sub)
	}
	if len(s.subs) > 0 {
		s.shard.srv.stats(s.app).subscribed.Add(-1)
	}
	s.subs = nil
	s.shard.removeSession(s)
	s.shard.srv.stats(s.app).connections.Add(-1)
	if s.debug() {
		s.shard.srv.log.Debug("Connection Closed", slog.String("socket_id", s.id))
	}
}

// matchesUser reports whether the session belongs to user id: signed in as
// it, or a presence member with that user_id.
func (s *Session) matchesUser(id string) bool {
	if s.userKey == id {
		return true
	}
	for _, sub := range s.subs {
		if sub.kind == KindPresence && sub.userKey == id {
			return true
		}
	}
	return false
}

// isPusherPing recognises the pings pusher-js and other clients send, so
// the most frequent message skips JSON decoding.
func isPusherPing(b []byte) bool {
	switch string(b) {
	case `{"event":"pusher:ping","data":{}}`, `{"event":"pusher:ping"}`, `{"event":"pusher:ping","data":""}`:
		return true
	}
	return false
}
