package pusher

import (
	"encoding/json"
	"strings"
)

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
	if rl := &s.app.RateLimit; rl.Enabled && !s.messages.allow(s.lastSeen, int64(rl.Decay), rl.MaxAttempts) {
		s.shard.stats.rateLimited++
		if rl.TerminateOnLimit {
			s.fail(ErrRateLimited)
		} else {
			s.sendError(ErrRateLimited)
		}
		return
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

// isPusherPing recognises the pings pusher-js and other clients send, so
// the most frequent message skips JSON decoding.
func isPusherPing(b []byte) bool {
	switch string(b) {
	case `{"event":"pusher:ping","data":{}}`, `{"event":"pusher:ping"}`, `{"event":"pusher:ping","data":""}`:
		return true
	}
	return false
}
