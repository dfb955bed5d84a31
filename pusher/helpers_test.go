package pusher

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/reverbgo/reverb/wsproto"
)

// Credentials of the test app (the fixture app of Reverb's own test suite).
const (
	testAppID  = "123456"
	testKey    = "reverb-key"
	testSecret = "reverb-secret"
)

// wsFrame is one server frame received by a fakeConn.
type wsFrame struct {
	op      ws.OpCode
	payload []byte
}

// closeCode returns the status code and reason of a close frame.
func (f wsFrame) closeCode() (int, string) {
	if len(f.payload) < 2 {
		return 0, ""
	}
	return int(binary.BigEndian.Uint16(f.payload)), string(f.payload[2:])
}

// fakeConn is a Conn that decodes the (unmasked) server frames written to it.
type fakeConn struct {
	t        testing.TB
	frames   []wsFrame
	closes   int
	buffered int // what OutboundBuffered reports
}

func newFakeConn(t testing.TB) *fakeConn { return &fakeConn{t: t} }

func (c *fakeConn) Write(b []byte) (int, error) {
	c.decode(b)
	return len(b), nil
}

func (c *fakeConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		c.decode(b)
		n += len(b)
	}
	return n, nil
}

func (c *fakeConn) OutboundBuffered() int { return c.buffered }

func (c *fakeConn) Close() error {
	c.closes++
	return nil
}

func (c *fakeConn) decode(b []byte) {
	for len(b) > 0 {
		h, n, err := wsproto.ParseHeader(b)
		if err != nil || n == 0 {
			c.t.Errorf("fakeConn: bad frame header %x: %v", b, err)
			return
		}
		if h.Masked || !h.Fin || h.Rsv != 0 {
			c.t.Errorf("fakeConn: server frame masked=%v fin=%v rsv=%d", h.Masked, h.Fin, h.Rsv)
		}
		end := n + int(h.Length)
		if end > len(b) {
			c.t.Errorf("fakeConn: frame declares %d bytes, %d written", h.Length, len(b)-n)
			return
		}
		c.frames = append(c.frames, wsFrame{op: h.OpCode, payload: append([]byte(nil), b[n:end]...)})
		b = b[end:]
	}
}

// takeFrames returns and forgets every frame received so far.
func (c *fakeConn) takeFrames() []wsFrame {
	f := c.frames
	c.frames = nil
	return f
}

// take returns and forgets the text messages received so far; any other
// frame is a test failure.
func (c *fakeConn) take() []string {
	c.t.Helper()
	var out []string
	for _, f := range c.takeFrames() {
		if f.op != ws.OpText {
			c.t.Errorf("unexpected frame opcode %v payload %q", f.op, f.payload)
			continue
		}
		out = append(out, string(f.payload))
	}
	return out
}

// discardConn is a Conn that throws frames away (benchmarks).
type discardConn struct {
	bytes  int
	frames int
}

func (c *discardConn) Write(b []byte) (int, error) {
	c.bytes += len(b)
	c.frames++
	return len(b), nil
}

func (c *discardConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	c.bytes += n
	c.frames += len(bs)
	return n, nil
}

func (c *discardConn) OutboundBuffered() int { return 0 }
func (c *discardConn) Close() error          { return nil }

// testClock is a clock that only moves when the test moves it.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *testClock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock forward by d.
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Set moves the clock to t.
func (c *testClock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// testEnv is a server with one shard driven synchronously on the test's
// goroutine, on a clock the test moves.
type testEnv struct {
	t     testing.TB
	srv   *Server
	sh    *Shard
	app   *App
	clock *testClock
}

func syncExec(f func()) { f() }

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newEnv builds a server for one app; mod may change the options (and the
// app, via opts.Apps[0]) before NewServer.
func newEnv(t testing.TB, mod func(o *Options)) *testEnv {
	t.Helper()
	app := &App{ID: testAppID, Key: testKey, Secret: testSecret}
	clock := newTestClock()
	opts := Options{Apps: []*App{app}, Logger: quietLogger(), Now: clock.Now}
	if mod != nil {
		mod(&opts)
	}
	srv, err := NewServer(opts, 1)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	return &testEnv{t: t, srv: srv, sh: srv.NewShard(syncExec), app: opts.Apps[0], clock: clock}
}

// sweepAt moves the clock to t and sweeps the shard then, as the
// transport's tick does.
func (e *testEnv) sweepAt(t time.Time) {
	e.clock.Set(t)
	e.sh.Sweep(t)
}

// client is one open session and its connection.
type client struct {
	t    testing.TB
	sess *Session
	conn *fakeConn
}

func (c *client) id() string { return c.sess.id }

// send hands one message to the session.
func (c *client) send(msg string) { c.sess.HandleMessage([]byte(msg)) }

// take returns the text messages received since the last take.
func (c *client) take() []string {
	c.t.Helper()
	return c.conn.take()
}

// expect asserts the exact messages received since the last take.
func (c *client) expect(want ...string) {
	c.t.Helper()
	got := c.conn.take()
	if len(want) == 0 && len(got) == 0 {
		return
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		c.t.Errorf("socket %s received:\n  %s\nwant:\n  %s", c.id(), strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// expectNothing asserts that nothing was received.
func (c *client) expectNothing() {
	c.t.Helper()
	if f := c.conn.takeFrames(); len(f) > 0 {
		var s []string
		for _, x := range f {
			s = append(s, fmt.Sprintf("op=%v %s", x.op, x.payload))
		}
		c.t.Errorf("socket %s received %d unexpected frames:\n  %s", c.id(), len(f), strings.Join(s, "\n  "))
	}
}

// connect opens a session and consumes its connection_established.
func (e *testEnv) connect() *client {
	e.t.Helper()
	return e.connectOrigin("")
}

func (e *testEnv) connectOrigin(origin string) *client {
	e.t.Helper()
	conn := newFakeConn(e.t)
	sess := e.srv.Open(e.sh, conn, e.app.Key, origin)
	if sess == nil {
		e.t.Fatalf("Open returned nil; frames %v", conn.frames)
	}
	msgs := conn.take()
	if len(msgs) != 1 || !strings.HasPrefix(msgs[0], `{"event":"pusher:connection_established"`) {
		e.t.Fatalf("on open got %q", msgs)
	}
	return &client{t: e.t, sess: sess, conn: conn}
}

func (e *testEnv) close(c *client) { e.srv.Closed(c.sess) }

// q encodes s as a JSON string literal without HTML escaping.
func q(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// errMsg is the exact pusher:error message.
func errMsg(code int, message string) string {
	return `{"event":"pusher:error","data":` + q(`{"code":`+strconv.Itoa(code)+`,"message":`+q(message)+`}`) + `}`
}

// subErrMsg is the exact pusher:subscription_error message.
func subErrMsg(channel, message string, status int) string {
	s := `{"event":"pusher:subscription_error","data":` + q(`{"type":"AuthError","error":`+q(message)+`,"status":`+strconv.Itoa(status)+`}`)
	if channel != "" {
		s += `,"channel":` + q(channel)
	}
	return s + `}`
}

// succeeded is the exact subscription_succeeded message; data "" means "{}".
func succeeded(channel, data string) string {
	if data == "" {
		data = "{}"
	}
	return `{"event":"pusher_internal:subscription_succeeded","data":` + q(data) + `,"channel":` + q(channel) + `}`
}

// apiEvent is the exact message of an event triggered through the HTTP API.
func apiEvent(name, data, channel string) string {
	return `{"event":` + q(name) + `,"data":` + q(data) + `,"channel":` + q(channel) + `}`
}

func memberAdded(channel, channelData string) string {
	return `{"event":"pusher_internal:member_added","data":` + q(channelData) + `,"channel":` + q(channel) + `}`
}

func memberRemoved(channel, rawUserID string) string {
	return `{"event":"pusher_internal:member_removed","data":` + q(`{"user_id":`+rawUserID+`}`) + `,"channel":` + q(channel) + `}`
}

const pongMsg = `{"event":"pusher:pong"}`

// hmacHex is hex HMAC-SHA256, computed here independently of the package.
func hmacHex(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// chanAuth is the "auth" a Pusher backend returns for a channel.
func chanAuth(key, secret, socketID, channel, channelData string) string {
	return ChannelAuth(key, secret, socketID, channel, channelData)
}

// subMsg builds a pusher:subscribe message; empty auth/channelData are omitted.
func subMsg(channel, auth, channelData string) string {
	d := `{"channel":` + q(channel)
	if auth != "" {
		d += `,"auth":` + q(auth)
	}
	if channelData != "" {
		d += `,"channel_data":` + q(channelData)
	}
	return `{"event":"pusher:subscribe","data":` + d + `}}`
}

func unsubMsg(channel string) string {
	return `{"event":"pusher:unsubscribe","data":{"channel":` + q(channel) + `}}`
}

// subscribe subscribes c to a channel of any kind with a valid signature and
// asserts the subscription_succeeded (and, for cache channels, drains the
// cache message). presence channels need channelData.
func (e *testEnv) subscribe(c *client, channel, channelData string) {
	e.t.Helper()
	auth := ""
	if kind, _ := Classify(channel); kind == KindPrivate || kind == KindPresence {
		auth = chanAuth(e.app.Key, e.app.Secret, c.id(), channel, channelData)
	}
	c.send(subMsg(channel, auth, channelData))
	got := c.take()
	if len(got) == 0 || !strings.HasPrefix(got[0], `{"event":"pusher_internal:subscription_succeeded"`) {
		e.t.Fatalf("subscribe %s: got %q", channel, got)
	}
}

// presenceData builds a presence channel_data with a raw user_id.
func presenceData(rawUserID, name string) string {
	return `{"user_id":` + rawUserID + `,"user_info":{"name":` + q(name) + `}}`
}

// signAPI returns the raw query of a request signed as the Pusher SDKs do
// (SignQuery at ts), percent-encoded for the wire.
func signAPI(method, path string, params url.Values, body []byte, key, secret string, ts int64) string {
	return SignQuery(key, secret, method, path, params, body, time.Unix(ts, 0)).Encode()
}

// apiReq builds a signed APIRequest for the test app. path is what the
// client signs (without a server prefix); prefix is prepended on the wire.
func (e *testEnv) apiReq(method, path, rawQuery, body string) *APIRequest {
	params, err := url.ParseQuery(rawQuery)
	if err != nil {
		e.t.Fatalf("bad test query %q: %v", rawQuery, err)
	}
	qs := signAPI(method, path, params, []byte(body), e.app.Key, e.app.Secret, time.Now().Unix())
	return &APIRequest{Method: method, RawPath: path, Path: path, RawQuery: qs, Body: []byte(body)}
}

// api runs a signed request and returns status and body.
func (e *testEnv) api(method, path, rawQuery, body string) (int, string) {
	r := e.srv.ServeAPI(e.apiReq(method, path, rawQuery, body))
	return r.Status, string(r.Body)
}
