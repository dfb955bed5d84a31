package pusher

import "bytes"

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
	var m clientMsg
	if !m.parse(data) {
		s.sendError(ErrInvalidMessage)
		return
	}
	event, ok := jsonStringBytes(m.event)
	if !ok || len(event) == 0 {
		s.sendError(ErrInvalidMessage)
		return
	}
	switch string(event) {
	case "pusher:ping":
		s.writeFrame(framePong)
	case "pusher:pong":
	case "pusher:subscribe":
		s.handleSubscribe(&m)
	case "pusher:unsubscribe":
		s.handleUnsubscribe(&m)
	case "pusher:signin":
		s.handleSignin(&m)
	default:
		if bytes.HasPrefix(event, []byte("pusher:")) || bytes.HasPrefix(event, []byte("pusher_internal:")) {
			s.sendError(ErrInvalidMessage)
			return
		}
		if bytes.HasPrefix(event, []byte("client-")) {
			s.handleClientEvent(string(event), m.channel, m.data)
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
