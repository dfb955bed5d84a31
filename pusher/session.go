package pusher

import (
	"log/slog"

	"github.com/gobwas/ws"
	"github.com/reverbgo/reverb/wsproto"
)

// Session is one Pusher connection. It belongs to one shard and every method
// is loop-only: call them from the connection's event loop.
//
// Every connection holds one, so its size matters at scale: the fields are
// ordered to leave no padding, the two per-second caps share one window
// start, and the signed-in user, which most connections never have, is
// behind a pointer. That keeps a Session in the 176-byte size class (see
// TestSessionSize).
type Session struct {
	shard *Shard
	conn  Conn
	app   *App
	id    string
	ac    *appCounters

	subs     []*subscription
	lastSeen int64   // unix ns of the last inbound message
	pingedAt int64   // unix ns of an unanswered ping, or 0
	user     *string // the user_id signed in as (pusher:signin), or nil

	messages  window    // the app's rate_limiting, over every inbound message
	perSecond perSecond // client_events_per_second, subscriptions_per_second

	pending [][]byte // frames queued during a shard drain

	idx   int32 // position in shard.sessions, -1 once removed
	wslot int32 // slot of the shard's wheel + 1, 0 when not in it
	wpos  int32 // position in that slot

	controlFrames bool // the client used WebSocket control frames: ping it with them
	closed        bool
	deflate       bool // permessage-deflate was negotiated
	gathered      bool // listed in the shard's touched, its frames not written yet
}

// userKey is the user_id the session signed in as, or "".
func (s *Session) userKey() string {
	if s.user == nil {
		return ""
	}
	return *s.user
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
	if len(s.pending) > 0 {
		// Broadcast frames gathered by a drain that has not reached this
		// connection yet go first: the connection sees frames in the order
		// the loop produced them.
		s.pending = append(s.pending, f)
		s.flush()
		return
	}
	s.conn.Write(f)
	s.ac.messagesSent++
	s.ac.bytesSent += int64(len(f))
}

// EnableDeflate records that the connection negotiated permessage-deflate
// (without context takeover): from now on, messages of at least
// wsproto.DeflateThreshold bytes are sent compressed when that makes them
// smaller. The transport calls it after Open, when the 101 it wrote
// accepted the extension. Loop-only.
func (s *Session) EnableDeflate() { s.deflate = true }

// Deflate reports whether the connection negotiated permessage-deflate.
// Loop-only.
func (s *Session) Deflate() bool { return s.deflate }

// send encodes msg as a text frame, compressed when the connection
// negotiated permessage-deflate and msg is large enough, and writes it.
func (s *Session) send(msg []byte) {
	if s.debug() {
		s.shard.srv.log.Debug("Message Sent", "socket_id", s.id, "message", string(msg))
	}
	if s.deflate && len(msg) >= wsproto.DeflateThreshold {
		deflations.Add(1)
		f, _ := wsproto.AppendDeflatedText(make([]byte, 0, len(msg)/2+16), msg)
		s.writeFrame(f)
		return
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
	if len(s.pending) == 0 { // written already, ahead of a reply
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

// Touch records inbound activity. control says it was a WebSocket control
// frame (ping or pong), after which the server pings with control frames.
// The shard's wheel is left alone unless the clock went back (see
// Shard.wheelBehind).
func (s *Session) Touch(control bool) {
	now := s.shard.srv.opts.Now().UnixNano()
	behind := now < s.lastSeen || now < s.shard.wheel.lastT
	s.lastSeen = now
	s.pingedAt = 0
	if behind {
		s.shard.wheelBehind(s)
	}
	if control {
		s.controlFrames = true
	}
}

// CountBytesReceived adds n inbound bytes of a session's connection. Loop-only.
func (s *Session) CountBytesReceived(n int) { s.ac.bytesReceived += int64(n) }

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
	if s.userKey() == id {
		return true
	}
	for _, sub := range s.subs {
		if sub.kind == KindPresence && sub.userKey() == id {
			return true
		}
	}
	return false
}
