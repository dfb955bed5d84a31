package pusher

import (
	"bytes"
	"encoding/json"

	"github.com/reverbgo/reverb/webhooks"
)

func (s *Session) handleClientEvent(event string, rawChannel, rawData json.RawMessage) {
	name, ok := jsonString(rawChannel)
	if !ok || !validChannelName(name, s.shard.srv.opts.MaxNameLength) {
		s.sendError(ErrInvalidMessage)
		return
	}
	data := bytes.TrimSpace(rawData)
	var hookData string // the client_event webhook's data: a string as sent, else the JSON text
	switch {
	case len(data) == 0 || string(data) == "null":
		data = []byte("null")
	case data[0] == '{' || data[0] == '[':
	case data[0] == '"':
		str, _ := jsonString(data)
		hookData = str
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
	if limit := srv.opts.ClientEventsPerSecond; limit > 0 && !s.perSecond.allowClientEvent(s.lastSeen, limit) {
		s.shard.stats.clientEventsDropped++
		s.sendError(ErrClientEventRate)
		return
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
	if sub != nil && sub.userID() != nil {
		msg = append(msg, `,"user_id":`...)
		msg = append(msg, sub.userID()...)
	}
	msg = append(msg, '}')
	if _, err := srv.publish(s.app, []Outgoing{{Channel: name, Msg: msg, Except: s.id}}); err != nil {
		// The cluster cannot take it now (counted by the broker too).
		s.shard.stats.clientEventsDropped++
		return
	}
	if srv.hookEnabled(s.app, webhooks.ClientEvent) {
		if hookData == "" {
			hookData = string(data)
		}
		ev := webhooks.Event{Name: webhooks.ClientEvent, Channel: name, Event: event, Data: hookData, SocketID: s.id}
		if kind == KindPresence && sub != nil {
			ev.UserID = sub.userKey()
		}
		srv.emit(s.app, ev)
	}
}
