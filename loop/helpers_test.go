package loop

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/reverbgo/reverb/internal/testkit"
	"github.com/reverbgo/reverb/pusher"
	"github.com/reverbgo/reverb/wsproto"
)

const (
	testKey    = "test-key"
	testSecret = "test-secret"
	testAppID  = "1234"
)

func testApp() *pusher.App {
	return &pusher.App{ID: testAppID, Key: testKey, Secret: testSecret, MaxMessageSize: 10000}
}

// startServer runs a real server on 127.0.0.1:0 in-process and waits until it
// accepts connections. It is stopped when the test ends.
func startServer(t testing.TB, opts pusher.Options, cfg Config) (*Server, string) {
	t.Helper()
	if len(opts.Apps) == 0 {
		opts.Apps = []*pusher.App{testApp()}
	}
	cfg.Host = "127.0.0.1"
	cfg.Port = 0
	if cfg.Loops == 0 {
		cfg.Loops = 2
	}
	px, err := pusher.NewServer(opts, cfg.Loops)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(px, cfg)
	return srv, testkit.Serve(t, srv)
}

// wsClient is a minimal WebSocket client speaking raw frames.
type wsClient struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

const upgradeReq = "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n"

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connect upgrades to /app/{key} and returns the client after the 101.
func connect(t testing.TB, addr, key, extraHeaders string) *wsClient {
	t.Helper()
	c := dial(t, addr)
	fmt.Fprintf(c, upgradeReq, "/app/"+key+"?protocol=7&client=js&version=8.4.0", addr, extraHeaders)
	cl := &wsClient{t: t, conn: c, r: bufio.NewReader(c)}
	cl.expect101()
	return cl
}

func (c *wsClient) expect101() {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.t.Fatalf("reading upgrade response: %v", err)
	}
	if resp.StatusCode != 101 {
		c.t.Fatalf("upgrade status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		c.t.Fatalf("Sec-WebSocket-Accept %q", got)
	}
}

// frame is one server frame.
type frame struct {
	op      ws.OpCode
	payload []byte
}

// read returns the next frame, failing the test after 5 s.
func (c *wsClient) read() frame {
	c.t.Helper()
	f, err := c.tryRead(5 * time.Second)
	if err != nil {
		c.t.Fatalf("reading frame: %v", err)
	}
	return f
}

func (c *wsClient) tryRead(d time.Duration) (frame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	var h [2]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return frame{}, err
	}
	if h[1]&0x80 != 0 {
		return frame{}, fmt.Errorf("server frame is masked")
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return frame{}, err
		}
		n = int(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return frame{}, err
		}
		n = int(binary.BigEndian.Uint64(b[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.r, p); err != nil {
		return frame{}, err
	}
	return frame{op: ws.OpCode(h[0] & 0x0f), payload: p}, nil
}

// event is a decoded Pusher message.
type event = testkit.Event

func (c *wsClient) readEvent() event {
	c.t.Helper()
	f := c.read()
	if f.op != ws.OpText {
		c.t.Fatalf("expected a text frame, got opcode %d %q", f.op, f.payload)
	}
	var e event
	if err := json.Unmarshal(f.payload, &e); err != nil {
		c.t.Fatalf("bad JSON %q: %v", f.payload, err)
	}
	return e
}

// expectEvent reads until an event with that name arrives, skipping none:
// the next event must be it.
func (c *wsClient) expectEvent(name string) event {
	c.t.Helper()
	e := c.readEvent()
	if e.Event != name {
		c.t.Fatalf("expected %s, got %s %s", name, e.Event, e.Data)
	}
	return e
}

// established reads connection_established and returns the socket id.
func (c *wsClient) established() string {
	c.t.Helper()
	e := c.expectEvent("pusher:connection_established")
	var d struct {
		SocketID string `json:"socket_id"`
	}
	_ = json.Unmarshal([]byte(e.DataString()), &d)
	if d.SocketID == "" {
		c.t.Fatalf("no socket_id in %s", e.Data)
	}
	return d.SocketID
}

var testMask = [4]byte{1, 2, 3, 4}

func (c *wsClient) sendRaw(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsClient) send(msg string) {
	c.sendRaw(wsproto.AppendClientFrame(nil, ws.OpText, true, []byte(msg), testMask))
}

func (c *wsClient) subscribe(channel string) {
	c.t.Helper()
	c.send(`{"event":"pusher:subscribe","data":{"channel":"` + channel + `"}}`)
	e := c.expectEvent("pusher_internal:subscription_succeeded")
	if e.Channel != channel {
		c.t.Fatalf("subscribed to %q, want %q", e.Channel, channel)
	}
}

// expectClose reads until a close frame and returns its code; other frames
// before it fail the test unless skip is set.
func (c *wsClient) expectClose() ws.StatusCode {
	c.t.Helper()
	for {
		f := c.read()
		if f.op == ws.OpClose {
			if len(f.payload) < 2 {
				return ws.StatusNoStatusRcvd
			}
			return ws.StatusCode(binary.BigEndian.Uint16(f.payload))
		}
	}
}

// expectEOF waits until the server closes the TCP connection.
func (c *wsClient) expectEOF() {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c.r)
	if err != nil {
		c.t.Fatalf("expected EOF, got %v", err)
	}
}

// signedRequest builds a Pusher-signed HTTP API request.
func signedRequest(method, path, body string) string {
	q := testkit.App{ID: testAppID, Key: testKey, Secret: testSecret}.Sign(method, path, nil, []byte(body))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s?%s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", method, path, q, len(body), body)
	return b.String()
}

// httpDo sends raw request bytes on c and reads one response.
func readResponse(t testing.TB, r *bufio.Reader) (int, string) {
	t.Helper()
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = io.Copy(&buf, resp.Body)
	return resp.StatusCode, buf.String()
}
