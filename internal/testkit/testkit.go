// Package testkit is what the tests of several packages share: starting an
// in-process server and reading its address back, a WebSocket client
// speaking the Pusher protocol, a signed HTTP API caller and polling.
//
// It imports pusher (for the request and channel signatures) but not loop,
// so that the tests of both can use it.
package testkit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/reverbgo/reverb/pusher"
)

// Server is what Serve runs: the methods of loop.Server.
type Server interface {
	Run() error
	Ready() <-chan struct{}
	Stop(ctx context.Context) error
	Addr() string
}

// Serve runs srv (configured for port 0) in the background, waits until it
// accepts connections and returns the address it is bound to. The server
// stops when the test ends (in the order of t.Cleanup: before what was
// registered earlier), and Run must then return nil.
func Serve(t testing.TB, srv Server) string {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- srv.Run() }()
	select {
	case <-srv.Ready():
	case err := <-errc:
		t.Fatalf("server did not start: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("server did not start in 5 s")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after Stop")
		}
	})
	return srv.Addr()
}

// Port returns the port of a "host:port" address.
func Port(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// FreePort returns a loopback port that was free a moment ago. It is only
// for child processes that must be told their port in advance (in-process
// servers listen on port 0 and report it, see Serve): between closing the
// probe listener here and the child binding the port, another process may
// take it. Callers that can should retry with a new port when the child
// fails to bind.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitFor polls check until it returns "" or the timeout passes; then the
// test fails with check's last complaint.
func WaitFor(t testing.TB, timeout time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not a settle delay
	}
}

// App is the credentials of a Pusher app.
type App struct {
	ID, Key, Secret string
}

// Sign returns the query of a signed HTTP API request (pusher.SignQuery
// now), encoded for the wire. path is signed as given.
func (a App) Sign(method, path string, query url.Values, body []byte) string {
	return pusher.SignQuery(a.Key, a.Secret, method, path, query, body, time.Now()).Encode()
}

// API sends a signed HTTP API request to the server at addr ("host:port")
// and returns status and body. path may carry a query, which is signed
// too.
func API(t testing.TB, addr string, app App, method, path, body string) (int, string) {
	t.Helper()
	path, raw, _ := strings.Cut(path, "?")
	params, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatalf("bad test query %q: %v", raw, err)
	}
	u := "http://" + addr + path + "?" + app.Sign(method, path, params, []byte(body))
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	c := http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Event is a decoded Pusher message.
type Event struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// DataString returns Data decoded as a JSON string (or raw when it is not
// one).
func (e Event) DataString() string {
	var s string
	if json.Unmarshal(e.Data, &s) == nil {
		return s
	}
	return string(e.Data)
}

// Client is a WebSocket client speaking Pusher. A reader goroutine queues
// the server's messages in Events; Closed is closed when it stops (the
// connection ended).
type Client struct {
	t        testing.TB
	App      App
	Conn     net.Conn
	Events   chan Event
	Closed   chan struct{}
	SocketID string
	// Timeout is how long Next and Expect wait for a message.
	Timeout time.Duration
}

// Dial opens /app/{key} of the server at addr, reads
// pusher:connection_established and records the socket id. Next waits
// timeout for each message. The connection is closed when the test ends.
func Dial(t testing.TB, addr string, app App, timeout time.Duration) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dial(ctx, "ws://"+addr+"/app/"+app.Key+"?protocol=7&client=js&version=8.4.0")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn) // bytes that arrived with the 101
	}
	c := &Client{t: t, App: app, Conn: conn, Events: make(chan Event, 1024), Closed: make(chan struct{}), Timeout: timeout}
	stop := make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		conn.Close()
	})
	go func() {
		defer close(c.Closed)
		rw := struct {
			io.Reader
			io.Writer
		}{r, conn}
		for {
			msg, err := wsutil.ReadServerText(rw)
			if err != nil {
				if os.Getenv("REVERB_TEST_DEBUG") != "" {
					fmt.Println("client reader:", err)
				}
				return
			}
			var e Event
			if json.Unmarshal(msg, &e) != nil {
				continue
			}
			select {
			case c.Events <- e:
			case <-stop:
				return
			}
		}
	}()
	e := c.Expect("pusher:connection_established")
	var d struct {
		SocketID string `json:"socket_id"`
	}
	if err := json.Unmarshal([]byte(e.DataString()), &d); err != nil || d.SocketID == "" {
		t.Fatalf("connection_established data %s", e.Data)
	}
	c.SocketID = d.SocketID
	return c
}

// Send writes one text message.
func (c *Client) Send(msg string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.Conn, []byte(msg)); err != nil {
		c.t.Fatal(err)
	}
}

// Next returns the next message, failing the test after c.Timeout.
func (c *Client) Next() Event {
	c.t.Helper()
	select {
	case e := <-c.Events:
		return e
	case <-time.After(c.Timeout):
		c.t.Fatalf("no event within %v", c.Timeout)
	}
	return Event{}
}

// Expect returns the next message, which must be the event name.
func (c *Client) Expect(name string) Event {
	c.t.Helper()
	e := c.Next()
	if e.Event != name {
		c.t.Fatalf("expected %s, got %s %s", name, e.Event, e.Data)
	}
	return e
}

// WaitFor skips messages until one matches, within d.
func (c *Client) WaitFor(d time.Duration, match func(Event) bool) Event {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case e := <-c.Events:
			if match(e) {
				return e
			}
		case <-deadline:
			c.t.Fatalf("no matching event within %s", d)
			return Event{}
		}
	}
}

// subscribe sends pusher:subscribe and returns the data of
// pusher_internal:subscription_succeeded, which must come next.
func (c *Client) subscribe(channel, auth, channelData string) string {
	c.t.Helper()
	d := map[string]string{"channel": channel}
	if auth != "" {
		d["auth"] = auth
	}
	if channelData != "" {
		d["channel_data"] = channelData
	}
	msg, _ := json.Marshal(map[string]any{"event": "pusher:subscribe", "data": d})
	c.Send(string(msg))
	e := c.Expect("pusher_internal:subscription_succeeded")
	if e.Channel != channel {
		c.t.Fatalf("subscribed to %q, want %q", e.Channel, channel)
	}
	return e.DataString()
}

// Subscribe joins a public channel.
func (c *Client) Subscribe(channel string) {
	c.t.Helper()
	c.subscribe(channel, "", "")
}

// Private joins a private channel with a signed auth.
func (c *Client) Private(channel string) {
	c.t.Helper()
	c.subscribe(channel, pusher.ChannelAuth(c.App.Key, c.App.Secret, c.SocketID, channel, ""), "")
}

// Join joins a presence channel with channelData, signed as Laravel's
// broadcasting/auth endpoint does, and returns the presence data.
func (c *Client) Join(channel, channelData string) string {
	c.t.Helper()
	return c.subscribe(channel, pusher.ChannelAuth(c.App.Key, c.App.Secret, c.SocketID, channel, channelData), channelData)
}
