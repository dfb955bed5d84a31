package loop

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/reverbgo/reverb/pusher"
	"github.com/reverbgo/reverb/wsproto"
)

func TestConnectionEstablished(t *testing.T) {
	_, addr := startServer(t, pusher.Options{}, Config{})
	c := connect(t, addr, testKey, "")
	e := c.expectEvent("pusher:connection_established")
	if !strings.Contains(e.DataString(), `"activity_timeout":30`) {
		t.Fatalf("data %s", e.DataString())
	}
}

func TestUnknownAppKeyGets4001AndClose(t *testing.T) {
	_, addr := startServer(t, pusher.Options{}, Config{})
	c := connect(t, addr, "nope", "")
	e := c.expectEvent("pusher:error")
	if !strings.Contains(e.DataString(), `"code":4001`) {
		t.Fatalf("data %s", e.DataString())
	}
	if code := c.expectClose(); code != 4001 {
		t.Fatalf("close code %d", code)
	}
	c.expectEOF()
}

func TestTriggerReachesSubscribersOnAllLoops(t *testing.T) {
	_, addr := startServer(t, pusher.Options{}, Config{Loops: 2})
	var clients []*wsClient
	for range 40 {
		c := connect(t, addr, testKey, "")
		c.established()
		c.subscribe("orders")
		clients = append(clients, c)
	}
	api := dial(t, addr)
	r := bufio.NewReader(api)
	body := `{"name":"created","channel":"orders","data":"{\"id\":1}"}`
	fmt.Fprint(api, signedRequest("POST", "/apps/"+testAppID+"/events", body))
	if code, resp := readResponse(t, r); code != 200 || resp != "{}" {
		t.Fatalf("trigger: %d %s", code, resp)
	}
	for i, c := range clients {
		e := c.expectEvent("created")
		if e.Channel != "orders" || e.DataString() != `{"id":1}` {
			t.Fatalf("client %d got %+v", i, e)
		}
	}
	// Keep-alive: a second request on the same connection.
	fmt.Fprint(api, signedRequest("GET", "/apps/"+testAppID+"/channels/orders", ""))
	if code, resp := readResponse(t, r); code != 200 || resp != `{"occupied":true}` {
		t.Fatalf("channel info: %d %s", code, resp)
	}
}

func TestPipelinedAPIRequests(t *testing.T) {
	_, addr := startServer(t, pusher.Options{}, Config{})
	api := dial(t, addr)
	r := bufio.NewReader(api)
	req := signedRequest("GET", "/apps/"+testAppID+"/connections", "")
	fmt.Fprint(api, req+req+"GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
	for i := range 2 {
		if code, resp := readResponse(t, r); code != 200 || resp != `{"connections":0}` {
			t.Fatalf("response %d: %d %s", i, code, resp)
		}
	}
	if code, resp := readResponse(t, r); code != 200 || resp != `{"health":"OK"}` {
		t.Fatalf("up: %d %s", code, resp)
	}
}

func TestHTTPErrors(t *testing.T) {
	_, addr := startServer(t, pusher.Options{MaxRequestSize: 2000}, Config{})
	cases := []struct {
		name   string
		req    string
		status int
	}{
		{
			name:   "unsigned",
			req:    "POST /apps/1234/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
			status: 401,
		},
		{
			name:   "unknown app",
			req:    "GET /apps/999/connections HTTP/1.1\r\nHost: x\r\n\r\n",
			status: 404,
		},
		{
			name:   "garbage",
			req:    "\x00\x01\x02 nonsense\r\n\r\n",
			status: 400,
		},
		{
			name:   "head too large",
			req:    "GET /up HTTP/1.1\r\nX: " + strings.Repeat("a", 3000) + "\r\n\r\n",
			status: 413,
		},
		{
			name:   "body too large",
			req:    "POST /apps/1234/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
			status: 413,
		},
		{
			name:   "websocket path without upgrade",
			req:    "GET /app/test-key HTTP/1.1\r\nHost: x\r\n\r\n",
			status: 426,
		},
		{
			name:   "chunked",
			req:    "POST /apps/1234/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
			status: 411,
		},
		{
			name:   "upgrade on unknown path",
			req:    fmt.Sprintf(upgradeReq, "/nope", "x", ""),
			status: 404,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			fmt.Fprint(c, tc.req)
			code, _ := readResponse(t, bufio.NewReader(c))
			if code != tc.status {
				t.Fatalf("status %d, want %d", code, tc.status)
			}
		})
	}
}

func TestMessageTooBigCloses1009(t *testing.T) {
	app := testApp()
	app.MaxMessageSize = 100
	_, addr := startServer(t, pusher.Options{Apps: []*pusher.App{app}}, Config{})
	c := connect(t, addr, testKey, "")
	c.established()
	// Only the header is sent: the limit is enforced on the declared length.
	frame := wsproto.AppendClientFrame(nil, ws.OpText, true, make([]byte, 101), testMask)
	c.sendRaw(frame[:8])
	if code := c.expectClose(); code != ws.StatusMessageTooBig {
		t.Fatalf("close code %d", code)
	}
	c.expectEOF()
}

func TestUnmaskedFrameCloses1002(t *testing.T) {
	_, addr := startServer(t, pusher.Options{}, Config{})
	c := connect(t, addr, testKey, "")
	c.established()
	c.sendRaw(wsproto.AppendText(nil, []byte(`{"event":"pusher:ping"}`)))
	if code := c.expectClose(); code != ws.StatusProtocolError {
		t.Fatalf("close code %d", code)
	}
}

func TestPingFrameGetsPong(t *testing.T) {
	_, addr := startServer(t, pusher.Options{}, Config{})
	c := connect(t, addr, testKey, "")
	c.established()
	c.sendRaw(wsproto.AppendClientFrame(nil, ws.OpPing, true, []byte("hello"), testMask))
	f := c.read()
	if f.op != ws.OpPong || string(f.payload) != "hello" {
		t.Fatalf("got op %d %q", f.op, f.payload)
	}
}

func TestCloseFrameIsEchoed(t *testing.T) {
	_, addr := startServer(t, pusher.Options{}, Config{})
	c := connect(t, addr, testKey, "")
	c.established()
	c.sendRaw(wsproto.AppendClientFrame(nil, ws.OpClose, true, []byte{0x03, 0xe8}, testMask))
	if code := c.expectClose(); code != ws.StatusNormalClosure {
		t.Fatalf("close code %d", code)
	}
	c.expectEOF()
}

func TestHandshakeTimeout(t *testing.T) {
	_, addr := startServer(t, pusher.Options{}, Config{HandshakeTimeout: 200 * time.Millisecond})
	c := dial(t, addr)
	fmt.Fprint(c, "GET /app/test-key HTTP/1.1\r\n") // never finished
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if err != nil || n != 0 {
		t.Fatalf("expected a silent close, got %d bytes, %v", n, err)
	}
}

func TestPresenceAcrossLoops(t *testing.T) {
	_, addr := startServer(t, pusher.Options{}, Config{Loops: 2})
	app := testApp()
	join := func(user string) (*wsClient, string) {
		c := connect(t, addr, testKey, "")
		sid := c.established()
		cd := `{"user_id":"` + user + `","user_info":{"name":"` + user + `"}}`
		auth := pusher.ChannelSignature(app, sid, "presence-room", cd)
		c.send(fmt.Sprintf(`{"event":"pusher:subscribe","data":{"channel":"presence-room","auth":%q,"channel_data":%q}}`, auth, cd))
		e := c.expectEvent("pusher_internal:subscription_succeeded")
		return c, e.DataString()
	}
	a, _ := join("alice")
	b, data := join("bob")
	if !strings.Contains(data, `"count":2`) || !strings.Contains(data, `"alice":{"name":"alice"}`) {
		t.Fatalf("presence data %s", data)
	}
	e := a.expectEvent("pusher_internal:member_added")
	if !strings.Contains(e.DataString(), `"user_id":"bob"`) {
		t.Fatalf("member_added %s", e.DataString())
	}
	b.conn.Close()
	e = a.expectEvent("pusher_internal:member_removed")
	if e.DataString() != `{"user_id":"bob"}` {
		t.Fatalf("member_removed %s", e.DataString())
	}
}

func TestConnectionsPastMaxConnectionsAreRefused(t *testing.T) {
	srv, addr := startServer(t, pusher.Options{}, Config{MaxConnections: 2})
	a := connect(t, addr, testKey, "")
	a.established()
	b := connect(t, addr, testKey, "")
	b.established()
	c := dial(t, addr)
	// The listeners defer accepting until the first bytes arrive.
	_, _ = c.Write([]byte("GET /app/"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	// Closed with input unread, the socket may answer with a reset.
	if n, err := io.Copy(io.Discard, c); (err != nil && !errors.Is(err, syscall.ECONNRESET)) || n != 0 {
		t.Fatalf("third connection: %d bytes, %v", n, err)
	}
	if got := srv.Refused(); got != 1 {
		t.Fatalf("Refused() = %d", got)
	}
	// The others are still served.
	a.send(`{"event":"pusher:ping"}`)
	a.expectEvent("pusher:pong")
}

// Regression: HEAD /up sent a body, which a keep-alive client then read as
// the start of the next response.
func TestRegressionHeadUpSendsBody(t *testing.T) {
	_, addr := startServer(t, pusher.Options{}, Config{})
	c := dial(t, addr)
	r := bufio.NewReader(c)
	fmt.Fprint(c, "HEAD /up HTTP/1.1\r\nHost: x\r\n\r\nGET /up HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(r, &http.Request{Method: "HEAD"})
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != 15 {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	if code, body := readResponse(t, r); code != 200 || body != `{"health":"OK"}` {
		t.Fatalf("GET after HEAD: %d %q", code, body)
	}
}

// TestPathPrefixRouting checks that /up, /app/{key} and the HTTP API are
// found under the path prefix only, and that API signatures over the path
// without the prefix, as sent or decoded, are accepted.
func TestPathPrefixRouting(t *testing.T) {
	_, addr := startServer(t, pusher.Options{PathPrefix: "/ws"}, Config{})
	cases := []struct {
		name   string
		req    string
		status int
	}{
		{"health", "GET /ws/up HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		{"health with an escaped prefix", "GET /w%73/up HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		{"health without the prefix", "GET /up HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"health by POST", "POST /ws/up HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405},
		{"prefix glued", "GET /wsup HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"upgrade", fmt.Sprintf(upgradeReq, "/ws/app/"+testKey, "x", ""), 101},
		{"upgrade without the prefix", fmt.Sprintf(upgradeReq, "/app/"+testKey, "x", ""), 404},
		{"upgrade without a key", fmt.Sprintf(upgradeReq, "/ws/app/", "x", ""), 404},
		{"upgrade with a slash in the key", fmt.Sprintf(upgradeReq, "/ws/app/a%2Fb", "x", ""), 404},
		{"socket path without upgrade", "GET /ws/app/" + testKey + " HTTP/1.1\r\nHost: x\r\n\r\n", 426},
		{"socket path without upgrade nor key", "GET /ws/app/ HTTP/1.1\r\nHost: x\r\n\r\n", 426},
		{"socket path without the prefix", "GET /app/" + testKey + " HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"API signed without the prefix", strings.Replace(signedRequest("GET", "/apps/"+testAppID+"/connections", ""), " /apps/", " /ws/apps/", 1), 200},
		{"API with an escaped prefix", strings.Replace(signedRequest("GET", "/apps/"+testAppID+"/connections", ""), " /apps/", " /w%73/apps/", 1), 200},
		{"API signed over the escaped path", strings.Replace(signedRequest("GET", "/apps/"+testAppID+"/channels/%23a", ""), " /apps/", " /ws/apps/", 1), 200},
		{"API signed over the decoded path", strings.Replace(strings.Replace(signedRequest("GET", "/apps/"+testAppID+"/channels/#a", ""), " /apps/", " /ws/apps/", 1), "/#a?", "/%23a?", 1), 200},
		{"API without the prefix", signedRequest("GET", "/apps/"+testAppID+"/connections", ""), 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			fmt.Fprint(c, tc.req)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("reading response: %v", err)
			}
			if resp.StatusCode != tc.status {
				body, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tc.status)
			}
		})
	}
}
