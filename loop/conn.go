package loop

import (
	"errors"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/reverbgo/reverb/pusher"
	"github.com/reverbgo/reverb/wsproto"
)

// Connection phases.
const (
	phaseHTTP   uint8 = iota // reading an HTTP request (API call or upgrade)
	phaseBusy                // an API request is being served; input waits
	phaseWS                  // a WebSocket session
	phaseClosed              // closing: input is dropped
)

// hardMaxMessage bounds inbound messages of apps whose max_message_size is 0
// (unlimited): 16 MiB.
const hardMaxMessage = 16 << 20

// conn is what the connection handlers use of a gnet.Conn. The handlers run
// on the connection's loop; tests drive them with a fake.
type conn interface {
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	InboundBuffered() int
	Write(b []byte) (int, error)
	Writev(bs [][]byte) (int, error)
	OutboundBuffered() int
	AsyncWrite(b []byte, cb gnet.AsyncCallback) error
	Wake(cb gnet.AsyncCallback) error
	Close() error
}

// connState is the per-connection state, kept in gnet's Conn context.
// Loop-only, except Close.
//
// It is the pusher.Conn of the connection's session, and its Write and
// Writev are the one path from the loop to the socket: the session's frames,
// the pongs and close frames of onWS and the HTTP responses written on the
// loop all go through them (API responses, written from the worker pool, go
// through gnet's AsyncWrite). Nothing is written once the connection is
// closed. A write that fails makes gnet close the connection inside the
// call, running onClose before Write returns: after each write, callers stop
// touching the connection and its input if st.phase is phaseClosed.
type connState struct {
	c     conn
	phase uint8
	since int64 // unix ns when the current HTTP request phase began
	sh    *shard
	sess  *pusher.Session
	dec   wsproto.Decoder
	gone  bool     // onClose ran: gnet closed the connection
	tls   *tlsConn // TLS record layer (tls.go), also c; nil for plain TCP
}

// errClosed is returned by writes to a closed connection.
var errClosed = errors.New("loop: connection closed")

// Write writes b, whole encoded frames or a whole HTTP response. While the
// connection's input is being handled its writes are gathered and written
// together when onTraffic returns (see batch). It implements pusher.Conn.
func (st *connState) Write(b []byte) (int, error) {
	if st.phase == phaseClosed {
		return 0, errClosed
	}
	if st.sh.batch == st {
		st.sh.wbuf = append(st.sh.wbuf, b...)
		return len(b), nil
	}
	return st.c.Write(b)
}

// Writev writes whole encoded frames. It implements pusher.Conn.
func (st *connState) Writev(bs [][]byte) (int, error) {
	if st.phase == phaseClosed {
		return 0, errClosed
	}
	if st.sh.batch == st {
		n := 0
		for _, b := range bs {
			st.sh.wbuf = append(st.sh.wbuf, b...)
			n += len(b)
		}
		return n, nil
	}
	return st.c.Writev(bs)
}

// OutboundBuffered implements pusher.Conn; it counts the gathered writes
// not yet handed to gnet.
func (st *connState) OutboundBuffered() int {
	n := st.c.OutboundBuffered()
	if st.sh.batch == st {
		n += len(st.sh.wbuf)
	}
	return n
}

// maxBatchKeep is the capacity of a shard's write batch kept between uses;
// a larger one (a big HTTP response) is dropped after it is written.
const maxBatchKeep = 16 << 10

// Close closes the connection after what is buffered is written; onClose
// runs later on the loop. Goroutine-safe; it implements pusher.Conn.
func (st *connState) Close() error { return st.c.Close() }

// onOpen starts a connection. Runs on the connection's loop.
func (s *Server) onOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if max := s.cfg.MaxConnections; max > 0 && s.eng.CountConnections() > max {
		s.refused.Add(1)
		return nil, gnet.Close
	}
	st := s.newConn(s.shardOf(c.EventLoop()), c)
	if s.tls != nil {
		s.openTLS(st, c) // TLS hook (tls.go)
	}
	c.SetContext(st)
	return nil, gnet.None
}

// newConn starts a connection of shard sh in the HTTP phase.
func (s *Server) newConn(sh *shard, c conn) *connState {
	st := &connState{c: c, phase: phaseHTTP, since: time.Now().UnixNano(), sh: sh}
	sh.http[st] = struct{}{}
	return st
}

// onClose releases the session. Runs on the connection's loop.
func (s *Server) onClose(st *connState) {
	st.gone = true
	if st.tls != nil {
		st.tls.release() // TLS hook (tls.go)
	}
	delete(st.sh.http, st)
	if st.sess != nil {
		s.px.Closed(st.sess)
		st.sess = nil
	}
	st.phase = phaseClosed
}

// onTraffic handles the bytes gnet read. Runs on the connection's loop.
//
// The replies to one read (the 101 and connection_established of an
// upgrade, pipelined HTTP responses, a pong and a subscription_succeeded)
// are gathered in the shard's batch and written with one write(2) at the
// end: fewer system calls, and one TCP segment instead of several.
func (s *Server) onTraffic(st *connState) gnet.Action {
	if st.tls != nil { // TLS hook (tls.go): decrypt first
		if a, run := s.tlsInput(st); !run {
			return a
		}
	}
	sh := st.sh
	sh.batch = st
	a := s.handleInput(st)
	sh.batch = nil
	if len(sh.wbuf) > 0 {
		if !st.gone {
			_, _ = st.c.Write(sh.wbuf)
		}
		if cap(sh.wbuf) > maxBatchKeep {
			sh.wbuf = nil
		} else {
			sh.wbuf = sh.wbuf[:0]
		}
	}
	if st.gone { // the write failed and gnet closed the connection
		return gnet.None
	}
	return a
}

// handleInput dispatches the input by phase. Runs on the connection's loop,
// inside onTraffic's batch.
func (s *Server) handleInput(st *connState) gnet.Action {
	switch st.phase {
	case phaseHTTP:
		return s.onHTTP(st)
	case phaseWS:
		return s.onWS(st)
	case phaseBusy:
		// Pipelined input waits until the response is written, within bounds.
		if st.c.InboundBuffered() > 2*s.maxReq {
			return gnet.Close
		}
		return gnet.None
	default:
		_, _ = st.c.Discard(-1)
		return gnet.None
	}
}

// respond writes a complete response and, unless keepAlive, closes.
func (s *Server) respond(st *connState, r pusher.APIResponse, keepAlive bool) gnet.Action {
	return s.respondBytes(st, r.AppendHTTP(nil, keepAlive), keepAlive)
}

// respondBytes writes a complete encoded response and, unless keepAlive,
// closes.
func (s *Server) respondBytes(st *connState, out []byte, keepAlive bool) gnet.Action {
	_, _ = st.Write(out)
	if st.phase == phaseClosed { // the write failed and gnet closed the connection
		return gnet.None
	}
	if !keepAlive {
		st.phase = phaseClosed
		_, _ = st.c.Discard(-1)
		return gnet.Close
	}
	st.since = time.Now().UnixNano()
	return gnet.None
}

func (s *Server) onHTTP(st *connState) gnet.Action {
	c := st.c
	for st.phase == phaseHTTP {
		buf, _ := c.Peek(-1)
		if len(buf) == 0 {
			return gnet.None
		}
		var req wsproto.Request
		n, err := wsproto.ParseRequest(buf, s.maxReq, &req)
		switch {
		case errors.Is(err, wsproto.ErrHeadTooLarge):
			s.hsFail[ReasonTooLarge].Add(1)
			return s.respond(st, pusher.ErrorResponse(413, "Payload too large."), false)
		case err != nil:
			s.hsFail[ReasonBadRequest].Add(1)
			return s.respond(st, pusher.ErrorResponse(400, "Bad request."), false)
		case n == 0:
			return gnet.None
		}
		t := s.px.Route(req.Path, req.RawPath)
		if req.IsUpgrade() {
			return s.upgrade(st, n, &req, t)
		}
		if req.Chunked {
			s.hsFail[ReasonBadRequest].Add(1)
			return s.respond(st, pusher.ErrorResponse(411, "Length required."), false)
		}
		total := int64(n)
		if req.ContentLength > 0 {
			total += req.ContentLength
		}
		if total > int64(s.maxReq) {
			s.hsFail[ReasonTooLarge].Add(1)
			return s.respond(st, pusher.ErrorResponse(413, "Payload too large."), false)
		}
		if int64(len(buf)) < total {
			return gnet.None
		}
		if t.Kind == pusher.TargetHealth && (req.Method == "GET" || req.Method == "HEAD") {
			_, _ = c.Discard(int(total))
			r := pusher.HealthResponse()
			out := r.AppendHTTP(nil, req.KeepAlive)
			if req.Method == "HEAD" {
				out = out[:len(out)-len(r.Body)] // headers only, Content-Length kept
			}
			if a := s.respondBytes(st, out, req.KeepAlive); a != gnet.None {
				return a
			}
			continue
		}
		if t.Kind == pusher.TargetSocket {
			_, _ = c.Discard(int(total))
			return s.respond(st, pusher.ErrorResponse(426, "Upgrade required."), false)
		}
		ar := &pusher.APIRequest{
			Method:   req.Method,
			RawPath:  req.RawPath,
			Path:     req.Path,
			RawQuery: req.RawQuery,
			Body:     append([]byte(nil), buf[n:total]...),
		}
		_, _ = c.Discard(int(total))
		keepAlive := req.KeepAlive && !s.px.Draining()
		st.phase = phaseBusy
		delete(st.sh.http, st)
		ok := s.pool.submit(func() {
			resp := s.serveAPI(t, ar)
			_ = c.AsyncWrite(resp.AppendHTTP(nil, keepAlive), func(_ gnet.Conn, err error) error {
				// On the loop again.
				if err != nil || st.phase == phaseClosed {
					return nil
				}
				if !keepAlive {
					st.phase = phaseClosed
					return c.Close()
				}
				st.phase = phaseHTTP
				st.since = time.Now().UnixNano()
				st.sh.http[st] = struct{}{}
				if c.InboundBuffered() > 0 {
					return c.Wake(nil)
				}
				return nil
			})
		})
		if !ok {
			s.apiBusy.Add(1)
			st.phase = phaseHTTP
			return s.respond(st, pusher.ErrorResponse(503, "Server busy."), false)
		}
		return gnet.None
	}
	if st.phase == phaseWS {
		return s.onWS(st)
	}
	return gnet.None
}

// upgrade answers the upgrade request req, whose head is the first n bytes
// of the input and which Route sent to t.
func (s *Server) upgrade(st *connState, n int, req *wsproto.Request, t pusher.Target) gnet.Action {
	if t.Kind != pusher.TargetSocket || t.Key == "" {
		s.hsFail[ReasonNotFound].Add(1)
		_, _ = st.c.Discard(n)
		return s.respond(st, pusher.ErrorResponse(404, "Not found."), false)
	}
	// permessage-deflate only for an app that enables it and a client that
	// offers it; an offer we cannot accept just leaves it off.
	var ext string
	if req.SecWebSocketExtensions != "" {
		if app := s.px.AppByKey(t.Key); app != nil && app.Compression {
			ext, _ = wsproto.NegotiateDeflate(req.SecWebSocketExtensions)
		}
	}
	out, err := wsproto.UpgradeWith(nil, req, ext)
	if err != nil {
		s.hsFail[ReasonBadUpgrade].Add(1)
	}
	_, _ = st.Write(out)
	if st.phase == phaseClosed { // the write failed and gnet closed the connection
		return gnet.None
	}
	_, _ = st.c.Discard(n)
	if err != nil {
		st.phase = phaseClosed
		return gnet.Close
	}
	delete(st.sh.http, st)
	st.phase = phaseWS
	sess := s.px.Open(st.sh.px, st, t.Key, req.Origin)
	if sess == nil {
		st.phase = phaseClosed
		return gnet.None
	}
	if st.phase == phaseClosed {
		// Writing connection_established failed and onClose already ran,
		// before the session was attached: release it here.
		s.px.Closed(sess)
		return gnet.None
	}
	st.sess = sess
	if ext != "" {
		st.dec.Deflate = true
		sess.EnableDeflate()
	}
	st.dec.MaxMessageSize = int64(sess.App().MaxMessageSize)
	st.dec.MaxFragments = s.cfg.MaxFragments
	if st.dec.MaxMessageSize <= 0 {
		// "Unlimited" still may not grow a connection's buffer without bound.
		st.dec.MaxMessageSize = hardMaxMessage
	}
	return s.onWS(st)
}

func (s *Server) onWS(st *connState) gnet.Action {
	// Any write below may fail and make gnet close the connection at once,
	// calling onClose before the write returns: after each one, stop touching
	// the connection and its buffer if that happened.
	c := st.c
	sess := st.sess
	buf, _ := c.Peek(-1)
	off := 0
	for off < len(buf) && !sess.Closed() {
		m, n, err := st.dec.Next(buf[off:])
		if err != nil {
			var ce *wsproto.CloseError
			code, reason := ws.StatusProtocolError, "Protocol error"
			if errors.As(err, &ce) {
				code, reason = ce.Code, ce.Reason
			}
			st.sh.px.CountClose(int(code))
			_, _ = st.Write(wsproto.CloseFrame(code, reason))
			if st.phase == phaseClosed {
				return gnet.None
			}
			_, _ = c.Discard(-1)
			st.phase = phaseClosed
			return gnet.Close
		}
		if n == 0 {
			break
		}
		off += n
		switch m.OpCode {
		case ws.OpText, ws.OpBinary:
			sess.CountBytesReceived(n)
			sess.HandleMessage(m.Payload)
		case ws.OpPing:
			sess.Touch(true)
			_, _ = st.Write(wsproto.AppendFrame(nil, ws.OpPong, m.Payload))
		case ws.OpPong:
			sess.Touch(true)
		case ws.OpClose:
			code := m.CloseCode
			if code == ws.StatusNoStatusRcvd {
				code = ws.StatusNormalClosure
			}
			_, _ = st.Write(wsproto.CloseFrame(code, ""))
			if st.phase == phaseClosed {
				return gnet.None
			}
			_, _ = c.Discard(-1)
			st.phase = phaseClosed
			return gnet.Close
		}
		if st.phase == phaseClosed {
			return gnet.None
		}
	}
	// The answers to this input (pongs, pusher:pong, errors) count against
	// max_outbound_buffer like broadcasts do.
	sess.CheckOutbound()
	if st.phase == phaseClosed {
		return gnet.None
	}
	if sess.Closed() {
		_, _ = c.Discard(-1)
		st.phase = phaseClosed
		return gnet.None
	}
	if off > 0 {
		// Never Discard(0): gnet drops everything buffered for n <= 0.
		_, _ = c.Discard(off)
	}
	return gnet.None
}

// serveAPI runs one API request, which Route sent to t; a panic in a handler
// becomes a 500 for that request instead of ending the process.
func (s *Server) serveAPI(t pusher.Target, ar *pusher.APIRequest) (resp pusher.APIResponse) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("HTTP API handler panicked", "path", ar.Path, "panic", r)
			resp = pusher.ErrorResponse(500, "Internal server error.")
		}
	}()
	return s.px.ServeTarget(t, ar)
}
