package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/reverbgo/reverb/wsproto"
)

// Event names and the marker of the send timestamp inside event data.
const (
	benchEvent  = "bench-event"
	clientEvent = "client-bench"
	// tsMarker precedes the send time (Unix nanoseconds, decimal) in the data
	// of every event the bench sends.
	tsMarker = "bts="
	// seqMarker precedes an event's sequence number (cross scenario).
	seqMarker = "bsq="
	// probeData is the data of the cross scenario's probe events, which
	// carry no timestamp.
	probeData = "bprobe=1"
)

var (
	tsMarkerB   = []byte(tsMarker)
	seqMarkerB  = []byte(seqMarker)
	probeDataB  = []byte(probeData)
	pingMsg     = []byte(`{"event":"pusher:ping","data":{}}`)
	pongMsg     = []byte(`{"event":"pusher:pong","data":{}}`)
	clientMask  = [4]byte{0x37, 0xfa, 0x21, 0x3d}
	pingFrame   = wsproto.AppendClientFrame(nil, ws.OpText, true, pingMsg, clientMask)
	pongFrame   = wsproto.AppendClientFrame(nil, ws.OpText, true, pongMsg, clientMask)
	closeFrame  = wsproto.AppendClientFrame(nil, ws.OpClose, true, []byte{0x03, 0xe8}, clientMask)
	errNotWS    = errors.New("upgrade refused")
	errTooLarge = errors.New("frame too large")
)

// maxFrame caps the frames the bench accepts from a server.
const maxFrame = 1 << 20

// eventData returns the data string of a bench event: the send time then
// padding up to size bytes.
func eventData(now time.Time, size int) []byte {
	b := make([]byte, 0, max(size, 32))
	b = append(b, tsMarker...)
	b = strconv.AppendInt(b, now.UnixNano(), 10)
	if len(b) < size {
		b = append(b, ";pad="...)
		for len(b) < size {
			b = append(b, 'x')
		}
	}
	return b
}

// eventDataFor returns the data of a bench event for cfg: eventData, or
// with cfg.JSONPayload a JSON document of about cfg.Payload bytes, a list
// of records with the same keys, whose first record carries the send time.
func eventDataFor(cfg *Config, now time.Time) []byte {
	if !cfg.JSONPayload {
		return eventData(now, cfg.Payload)
	}
	b := make([]byte, 0, cfg.Payload+128)
	b = append(b, `{"sent":"`...)
	b = append(b, tsMarker...)
	b = strconv.AppendInt(b, now.UnixNano(), 10)
	b = append(b, `","orders":[`...)
	for i := 0; len(b) < cfg.Payload-2 || i == 0; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"id":%d,"customer_id":%d,"status":"%s","currency":"EUR","total":%d.%02d,"updated_at":"2026-12-03T12:%02d:%02dZ"}`,
			100000+i*7, 4000+i*13%97, [3]string{"pending", "shipped", "delivered"}[i%3], 10+i*37%500, i*17%100, i%60, i*7%60)
	}
	return append(b, "]}"...)
}

// eventDataForSeq is eventDataFor with the sequence number seq after the
// send time; a negative seq gives eventDataFor.
func eventDataForSeq(cfg *Config, now time.Time, seq int64) []byte {
	if seq < 0 {
		return eventDataFor(cfg, now)
	}
	if !cfg.JSONPayload {
		return eventDataSeq(now, seq, cfg.Payload)
	}
	b := eventDataFor(cfg, now)
	// The send time is the first string of the document: put the number
	// inside it.
	i := bytes.Index(b, tsMarkerB)
	j := i + len(tsMarker)
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	out := make([]byte, 0, len(b)+24)
	out = append(out, b[:j]...)
	out = append(out, ';')
	out = append(out, seqMarker...)
	out = strconv.AppendInt(out, seq, 10)
	return append(out, b[j:]...)
}

// eventDataSeq is eventData with the event's sequence number after the
// timestamp.
func eventDataSeq(now time.Time, seq int64, size int) []byte {
	b := make([]byte, 0, max(size, 48))
	b = append(b, tsMarker...)
	b = strconv.AppendInt(b, now.UnixNano(), 10)
	b = append(b, ';')
	b = append(b, seqMarker...)
	b = strconv.AppendInt(b, seq, 10)
	if len(b) < size {
		b = append(b, ";pad="...)
		for len(b) < size {
			b = append(b, 'x')
		}
	}
	return b
}

// seqOf finds the sequence number in a message; ok is false if there is
// none.
func seqOf(msg []byte) (int64, bool) {
	i := bytes.Index(msg, seqMarkerB)
	if i < 0 {
		return 0, false
	}
	var n int64
	j := i + len(seqMarker)
	start := j
	for ; j < len(msg) && msg[j] >= '0' && msg[j] <= '9' && j-start < 18; j++ {
		n = n*10 + int64(msg[j]-'0')
	}
	if j == start {
		return 0, false
	}
	return n, true
}

// sentAt finds the send timestamp in a message; ok is false if there is
// none.
func sentAt(msg []byte) (time.Time, bool) {
	i := bytes.Index(msg, tsMarkerB)
	if i < 0 {
		return time.Time{}, false
	}
	var ns int64
	j := i + len(tsMarker)
	start := j
	for ; j < len(msg) && msg[j] >= '0' && msg[j] <= '9'; j++ {
		ns = ns*10 + int64(msg[j]-'0')
	}
	if j == start {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// dialer opens TCP connections to the server, binding round robin to the
// configured source addresses.
type dialer struct {
	deflate bool
	addr    string
	hostHdr string
	path    string
	key     string
	ips     []netip.Addr
	timeout time.Duration
	// tls, when not nil, makes dial return a handshaken *tlsConn.
	tls    *tls.Config
	tlsErr error
}

// firstSourcePort is the port of the first connection dialed from each
// source address of --source-ips; the next ones take the ports above it.
const firstSourcePort = 1024

// altSourcePort is the second port of the first connection dialed from each
// source address, the start of the kernel's default ephemeral range (which
// the kernel fills from its middle).
const altSourcePort = 32768

// newDialer returns a dialer of the WebSocket server of c.
func newDialer(c *Config) *dialer {
	d := &dialer{deflate: c.Deflate, addr: c.Addr(), hostHdr: c.Addr(), path: c.Path, key: c.Key, ips: c.SourceIPs, timeout: 10 * time.Second}
	if c.TLS {
		d.tls, d.tlsErr = c.tlsClientConfig(c.Host, sessionCache())
	}
	return d
}

func (d *dialer) dial(ctx context.Context, idx int) (net.Conn, error) {
	return d.dialFrom(ctx, idx, false)
}

// dialFrom is dial; with alt, connection idx dials from its second port,
// altSourcePort + idx/len(ips), instead of its first (a reconnect: see
// shard.reconnect).
func (d *dialer) dialFrom(ctx context.Context, idx int, alt bool) (net.Conn, error) {
	if d.tlsErr != nil {
		return nil, d.tlsErr
	}
	// No TCP keepalive: Go's default (probes after 15 s idle) would add a
	// kernel probe round trip per idle connection every 15 s, a load
	// browsers do not put on a server and one that swamps a 1M-connection
	// run on one machine. Pusher's own pings keep the connections alive.
	nd := net.Dialer{Timeout: d.timeout, KeepAlive: -1}
	var nc net.Conn
	var err error
	if len(d.ips) > 0 {
		// Connection idx dials from source address idx%len(ips) and, when
		// it fits, from its own port on that address, so that the kernel
		// does not search for a free port: its connect-time search takes
		// even ports first and, once a source address has used them all
		// (~14,000 of them), scans every one of them on each connect, which
		// stalls a million-connection run near 14,000 connections per source
		// address. A port that is taken falls back to the kernel's choice.
		ip := d.ips[idx%len(d.ips)].AsSlice()
		port := firstSourcePort + idx/len(d.ips)
		if alt {
			port = altSourcePort + idx/len(d.ips)
		}
		if port <= 65535 {
			nd.LocalAddr = &net.TCPAddr{IP: ip, Port: port}
			nd.Control = reuseAddr
			nc, err = nd.DialContext(ctx, "tcp", d.addr)
		}
		if nc == nil && (err == nil || errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EADDRNOTAVAIL)) {
			nd.LocalAddr = &net.TCPAddr{IP: ip}
			nd.Control = bindNoPort
			nc, err = nd.DialContext(ctx, "tcp", d.addr)
		}
	} else {
		nc, err = nd.DialContext(ctx, "tcp", d.addr)
	}
	if err != nil || d.tls == nil {
		return nc, err
	}
	return dialTLS(ctx, nc, d.tls, d.timeout)
}

// blockConn reads WebSocket frames from a blocking net.Conn during the
// handshake and subscription, before the connection is handed to the
// steady-state runtime.
type blockConn struct {
	c       net.Conn
	buf     []byte
	r, w    int
	deflate bool // permessage-deflate was negotiated
}

// errDeflateDeclined fails a connection that offered permessage-deflate
// (--deflate) when the server answers without it.
var errDeflateDeclined = errors.New("permessage-deflate offered but not accepted")

// deflateOffer is the extension header the bench sends with --deflate.
const deflateOffer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"

// payloadOf returns the payload of a data frame, inflated when RSV1 is set
// on a connection that negotiated permessage-deflate.
func payloadOf(h wsproto.Header, p []byte) ([]byte, error) {
	if h.Rsv&4 == 0 {
		return p, nil
	}
	return wsproto.Inflate(p, maxFrame)
}

func (b *blockConn) fill() error {
	if b.r > 0 && b.r == b.w {
		b.r, b.w = 0, 0
	}
	if b.w == len(b.buf) {
		if b.r > 0 {
			copy(b.buf, b.buf[b.r:b.w])
			b.w -= b.r
			b.r = 0
		} else {
			if len(b.buf) >= maxFrame+16 {
				return errTooLarge
			}
			nb := make([]byte, 2*len(b.buf))
			copy(nb, b.buf[:b.w])
			b.buf = nb
		}
	}
	n, err := b.c.Read(b.buf[b.w:])
	b.w += n
	if n > 0 {
		return nil
	}
	return err
}

// upgrade sends the WebSocket upgrade request and reads the 101 head.
func (b *blockConn) upgrade(d *dialer) error {
	req := "GET " + d.path + "/app/" + d.key + "?protocol=7&client=js&version=8.4.0&flash=false HTTP/1.1\r\nHost: " +
		d.hostHdr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Version: 13\r\n"
	if d.deflate {
		req += deflateOffer
	}
	req += "\r\n"
	if _, err := b.c.Write([]byte(req)); err != nil {
		return err
	}
	for {
		if i := bytes.Index(b.buf[b.r:b.w], []byte("\r\n\r\n")); i >= 0 {
			head := b.buf[b.r : b.r+i]
			b.r += i + 4
			if !bytes.HasPrefix(head, []byte("HTTP/1.1 101")) {
				line, _, _ := bytes.Cut(head, []byte("\r\n"))
				return fmt.Errorf("%w: %s", errNotWS, line)
			}
			if d.deflate {
				if !bytes.Contains(bytes.ToLower(head), []byte("\r\nsec-websocket-extensions: permessage-deflate")) {
					return errDeflateDeclined
				}
				b.deflate = true
			}
			return nil
		}
		if err := b.fill(); err != nil {
			return err
		}
	}
}

// next returns the next data message (text or binary), answering pings on
// the way. The payload is valid until the next call.
func (b *blockConn) next() ([]byte, error) {
	for {
		h, n, err := wsproto.ParseHeader(b.buf[b.r:b.w])
		if err != nil {
			return nil, err
		}
		if n > 0 && h.Length > maxFrame {
			return nil, errTooLarge
		}
		if n == 0 || int64(b.w-b.r-n) < h.Length {
			if err := b.fill(); err != nil {
				return nil, err
			}
			continue
		}
		p := b.buf[b.r+n : b.r+n+int(h.Length)]
		b.r += n + int(h.Length)
		switch h.OpCode {
		case ws.OpText, ws.OpBinary:
			return payloadOf(h, p)
		case ws.OpPing:
			if _, err := b.c.Write(wsproto.AppendClientFrame(nil, ws.OpPong, true, p, clientMask)); err != nil {
				return nil, err
			}
		case ws.OpClose:
			code := 0
			if len(p) >= 2 {
				code = int(p[0])<<8 | int(p[1])
			}
			return nil, fmt.Errorf("server closed the connection (%d %s)", code, p[min(2, len(p)):])
		}
	}
}

// leftover returns the bytes read past the last message.
func (b *blockConn) leftover() []byte {
	if b.r == b.w {
		return nil
	}
	return append([]byte(nil), b.buf[b.r:b.w]...)
}

// pusherMsg is the envelope of a Pusher protocol message.
type pusherMsg struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// dataString returns Data decoded from a JSON string, or as is.
func (m *pusherMsg) dataString() string {
	var s string
	if json.Unmarshal(m.Data, &s) == nil {
		return s
	}
	return string(m.Data)
}

// established reads pusher:connection_established and returns the socket id.
func (b *blockConn) established() (string, error) {
	for {
		p, err := b.next()
		if err != nil {
			return "", err
		}
		var m pusherMsg
		if err := json.Unmarshal(p, &m); err != nil {
			return "", fmt.Errorf("bad message %q", p)
		}
		switch m.Event {
		case "pusher:connection_established":
			var d struct {
				SocketID string `json:"socket_id"`
			}
			if err := json.Unmarshal([]byte(m.dataString()), &d); err != nil || d.SocketID == "" {
				return "", fmt.Errorf("bad connection_established %q", p)
			}
			return d.SocketID, nil
		case "pusher:error":
			return "", fmt.Errorf("pusher:error %s", m.dataString())
		}
	}
}

// subscribe subscribes to channel (signing it when auth is not empty) and
// waits for pusher_internal:subscription_succeeded.
func (b *blockConn) subscribe(channel, auth string) error {
	var msg []byte
	if auth == "" {
		msg = fmt.Appendf(nil, `{"event":"pusher:subscribe","data":{"channel":%q}}`, channel)
	} else {
		msg = fmt.Appendf(nil, `{"event":"pusher:subscribe","data":{"channel":%q,"auth":%q}}`, channel, auth)
	}
	if _, err := b.c.Write(wsproto.AppendClientFrame(nil, ws.OpText, true, msg, clientMask)); err != nil {
		return err
	}
	for {
		p, err := b.next()
		if err != nil {
			return err
		}
		var m pusherMsg
		if err := json.Unmarshal(p, &m); err != nil {
			return fmt.Errorf("bad message %q", p)
		}
		switch m.Event {
		case "pusher_internal:subscription_succeeded":
			if m.Channel == channel {
				return nil
			}
		case "pusher:subscription_error", "pusher:error":
			return fmt.Errorf("%s on %s: %s", m.Event, channel, m.dataString())
		case "pusher:ping":
			if _, err := b.c.Write(pongFrame); err != nil {
				return err
			}
		}
	}
}

// loopStats collects what the connections of one event loop (or one lock
// shard in goroutine mode) received.
type loopStats struct {
	mu       sync.Mutex
	hist     *hdrhistogram.Histogram
	received atomic.Int64
	wire     atomic.Int64 // bytes of the data frames received in the steady state
	errors   atomic.Int64
	lastErr  atomic.Value // string
	// scratch holds decrypted bytes of TLS connections (gnet loop only).
	scratch []byte
}

func newLoopStats() *loopStats { return &loopStats{hist: newHist()} }

// wsConn is one subscribed connection in its steady state.
type wsConn struct {
	sh       *shard
	idx      int
	channel  string
	stats    *loopStats
	gc       gnet.Conn // gnet runtime
	nc       net.Conn  // goroutine runtime
	tls      *tlsConn  // gnet runtime over TLS: the record layer on top of gc
	wmu      sync.Mutex
	leftover []byte
	// heard is when the connection last received a message (unix ns): as
	// pusher-js does, a connection pings only after --ping-interval of
	// silence from the server. Written by the connection's loop, read by
	// the pinger.
	heard  atomic.Int64
	closed atomic.Bool
	// seen records the sequence numbers received (cross scenario only).
	seen *seqSet
	// probed is set when a probe event arrived (cross scenario only).
	probed atomic.Bool
	// track is the accounting of the connection's slot across reconnects
	// (--reconnect only).
	track *connTrack
	// closeErr is why consume asked to close the connection (gnet loop
	// only), for OnClose.
	closeErr error
}

// send writes a masked frame from any goroutine. b must not be modified
// afterwards.
func (c *wsConn) send(b []byte) {
	if c.closed.Load() {
		return
	}
	if c.tls != nil {
		_, _ = c.tls.Write(b)
		return
	}
	if c.gc != nil {
		_ = c.gc.AsyncWrite(b, nil)
		return
	}
	c.wmu.Lock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.nc.Write(b)
	c.wmu.Unlock()
	if err != nil {
		c.nc.Close()
	}
}

// consume handles the complete frames at the start of buf and returns the
// bytes consumed. reply writes on the connection from the current
// goroutine (a gnet.Conn on its loop, or the wsConn itself). A returned error means the connection must be closed.
func (c *wsConn) consume(buf []byte, now time.Time, reply io.Writer) (int, error) {
	done := 0
	for {
		h, n, err := wsproto.ParseHeader(buf[done:])
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, nil
		}
		if h.Length > maxFrame {
			return done, errTooLarge
		}
		if int64(len(buf)-done-n) < h.Length {
			return done, nil
		}
		p := buf[done+n : done+n+int(h.Length)]
		done += n + int(h.Length)
		switch h.OpCode {
		case ws.OpText, ws.OpBinary:
			c.stats.wire.Add(int64(n) + h.Length)
			if p, err = payloadOf(h, p); err != nil {
				return done, err
			}
			c.handle(p, now, reply)
		case ws.OpPing:
			_, _ = reply.Write(wsproto.AppendClientFrame(nil, ws.OpPong, true, p, clientMask))
		case ws.OpClose:
			return done, closeFrameErr(p)
		}
	}
}

func (c *wsConn) handle(p []byte, now time.Time, reply io.Writer) {
	c.heard.Store(now.UnixNano())
	if t, ok := sentAt(p); ok {
		st := c.stats
		st.mu.Lock()
		recordLatency(st.hist, now.Sub(t))
		st.mu.Unlock()
		st.received.Add(1)
		if c.seen != nil || c.track != nil {
			if seq, ok := seqOf(p); ok {
				if c.seen != nil {
					c.seen.mark(seq)
				} else {
					c.track.mark(seq)
					c.sh.rec.seen(seq, t.UnixNano(), now.UnixNano())
				}
			}
		}
		return
	}
	if c.seen != nil && bytes.Contains(p, probeDataB) {
		c.probed.Store(true)
		return
	}
	switch {
	case bytes.Contains(p, []byte(`"pusher:ping"`)):
		_, _ = reply.Write(pongFrame)
	case c.track != nil && reconnectCode(p):
		// The notice of a close to reconnect after (--reconnect): counted
		// with the drop that follows, not as an error.
	case bytes.Contains(p, []byte(`"pusher:error"`)), bytes.Contains(p, []byte(`"pusher:subscription_error"`)):
		c.stats.errors.Add(1)
		c.stats.lastErr.Store(string(p))
	}
}
