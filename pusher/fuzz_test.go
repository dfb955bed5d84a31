package pusher

import (
	"bytes"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// fuzzChannels are the channels both fuzz sessions subscribe to first.
var fuzzChannels = []struct{ name, data string }{
	{name: "test-channel"},
	{name: "private-chat"},
	{name: "presence-room", data: `{"user_id":"1","user_info":{"name":"a"}}`},
	{name: "cache-c"},
	{name: "private-encrypted-x"},
}

// checkFrames asserts that every frame a session received is a JSON text
// frame or a close frame.
func checkFrames(t *testing.T, who string, frames []wsFrame) {
	t.Helper()
	for _, f := range frames {
		switch f.op {
		case ws.OpText:
			if !json.Valid(f.payload) {
				t.Fatalf("%s received invalid JSON %q", who, f.payload)
			}
		case ws.OpClose, ws.OpPing:
		default:
			t.Fatalf("%s received opcode %v", who, f.op)
		}
	}
}

func FuzzHandleMessage(f *testing.F) {
	seeds := []string{
		`{"event":"pusher:ping"}`,
		`{"event":"pusher:pong"}`,
		`Hi`,
		``,
		`null`,
		`{"event":"pusher:subscribe","data":{"channel":"x"}}`,
		`{"event":"pusher:subscribe","data":"{\"channel\":\"presence-y\",\"auth\":\"reverb-key:00\",\"channel_data\":\"{\\\"user_id\\\":1}\"}"}`,
		`{"event":"pusher:subscribe","data":{"channel":"presence-room","auth":"reverb-key:1","channel_data":"{\"user_id\":1e400}"}}`,
		`{"event":"pusher:subscribe","data":{"channel":"#server-to-user-1"}}`,
		`{"event":"pusher:unsubscribe","data":{"channel":"presence-room"}}`,
		`{"event":"pusher:unsubscribe","data":{"channel":"test-channel"}}` + "\n" + `{"event":"pusher:subscribe","data":{"channel":"test-channel"}}`,
		`{"event":"pusher:signin","data":{"auth":"reverb-key:x","user_data":"{\"id\":\"1\"}"}}`,
		`{"event":"client-x","channel":"private-chat","data":{"a":[1,2,{"b":null}]}}`,
		`{"event":"client-x","channel":"presence-room","data":"{\"a\":1}"}`,
		`{"event":"client-\u0000","channel":"private-chat","data":"[\"\u2028\"]"}`,
		`{"event":"client-x","channel":"private-chat","data":"  [] "}`,
		`{"event":"client-x","channel":"private-chat","data":"\"\""}`,
		`{"event":"client-x","channel":"private-chat","data":"\ud800"}`,
		`{"event":"client-x","channel":"private-chat","data":{"k":"\xff"}}`,
		`{"event":"pusher:subscribe","data":{"channel":"cache-c"}}`,
		`{"EVENT":"pusher:ping"}`,
		`[{"event":"pusher:ping"}]`,
		`{"event":"pusher:subscribe","data":{"channel":"presence-z","auth":null,"channel_data":"{\"user_id\":\"1\",\"user_info\":[]}"}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e := newEnv(t, nil)
		a, b := e.connect(), e.connect()
		for _, c := range []*client{a, b} {
			for _, ch := range fuzzChannels {
				e.subscribe(c, ch.name, ch.data)
			}
		}
		a.conn.takeFrames()
		b.conn.takeFrames()

		// Up to 8 messages, newline-separated.
		msgs := bytes.SplitN(data, []byte{'\n'}, 8)
		for _, m := range msgs {
			a.sess.HandleMessage(m)
		}
		checkFrames(t, "sender", a.conn.takeFrames())
		checkFrames(t, "other", b.conn.takeFrames())
		if a.sess.Closed() {
			t.Fatalf("session closed by %q", data)
		}
		a.send(`{"event":"pusher:ping"}`)
		if got := a.take(); len(got) != 1 || got[0] != pongMsg {
			t.Fatalf("after %q, ping got %q", data, got)
		}
		// Client events other sessions receive are valid JSON with the right channel.
		a.send(`{"event":"client-check","channel":"private-chat","data":{}}`)
		if got := b.take(); len(got) != 1 || got[0] != `{"event":"client-check","channel":"private-chat","data":{}}` {
			t.Fatalf("after %q, client event got %q", data, got)
		}
		a.take()

		// Closing releases everything a held: only b's subscriptions remain.
		e.close(a)
		checkFrames(t, "other after close", b.conn.takeFrames())
		for _, info := range e.srv.hub.list(e.app, "") {
			want := 0
			for _, ch := range fuzzChannels {
				if ch.name == info.Name {
					want = 1
				}
			}
			if info.SubscriptionCount != want {
				t.Fatalf("after %q and close, %s has %d subscriptions, want %d", data, info.Name, info.SubscriptionCount, want)
			}
		}
		if n := e.srv.Connections(e.app); n != 1 {
			t.Fatalf("Connections = %d", n)
		}
	})
}

var apiStatuses = map[int]bool{200: true, 400: true, 401: true, 404: true, 405: true, 413: true, 422: true}

func FuzzServeAPI(f *testing.F) {
	type seed struct {
		method, path, query string
		body                string
		sign                bool
	}
	seeds := []seed{
		{method: "GET", path: "/up"},
		{method: "POST", path: "/up"},
		{method: "GET", path: "/apps/123456/channels", query: "info=user_count&filter_by_prefix=presence-", sign: true},
		{method: "GET", path: "/apps/123456/channels", query: "info=user_count"},
		{method: "GET", path: "/apps/123456/channels/presence-room", query: "info=user_count,subscription_count,cache", sign: true},
		{method: "GET", path: "/apps/123456/channels/cache-c", query: "info=cache", sign: true},
		{method: "GET", path: "/apps/123456/channels/presence-room/users", sign: true},
		{method: "GET", path: "/apps/123456/channels/test-channel/users", sign: true},
		{method: "GET", path: "/apps/123456/connections", sign: true},
		{method: "POST", path: "/apps/123456/users/1/terminate_connections", sign: true},
		{method: "POST", path: "/apps/123456/events", body: `{"name":"e","channel":"test-channel","data":"d"}`, sign: true},
		{method: "POST", path: "/apps/123456/events", body: `{"name":"e","channels":["test-channel","presence-room"],"data":"d","info":"user_count,subscription_count","socket_id":"1.2"}`, sign: true},
		{method: "POST", path: "/apps/123456/events", body: `{"name":"e","channel":"cache-c","data":"{\"x\":1}"}`, sign: true},
		{method: "POST", path: "/apps/123456/events", body: `{"name":`, sign: true},
		{method: "POST", path: "/apps/123456/events", body: `{"name":1,"data":{},"channels":"x","socket_id":[],"info":{}}`, sign: true},
		{method: "POST", path: "/apps/123456/batch_events", body: `{"batch":[{"name":"e","channel":"test-channel","data":"d","info":"subscription_count"}]}`, sign: true},
		{method: "POST", path: "/apps/123456/batch_events", body: `{"batch":[{"name":"e","channel":"a","data":"d"},{"name":"e","channels":["a","b"],"data":"d"}]}`, sign: true},
		{method: "POST", path: "/apps/123456/batch_events", body: `{"batch":{}}`, sign: true},
		{method: "POST", path: "/apps/999/events", body: `{}`, sign: true},
		{method: "DELETE", path: "/apps/123456/channels"},
		{method: "GET", path: "/apps/123456/channels", query: "a=%zz"},
		{method: "GET", path: "apps/123456/channels", sign: true},
		{method: "GET", path: "/apps//channels", sign: true},
		{method: "GET", path: "/apps/123456/channels/#server-to-user-1", sign: true},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, []byte(s.body), s.sign)
	}
	f.Fuzz(func(t *testing.T, method, path, query string, body []byte, sign bool) {
		e := newEnv(t, nil)
		a, b := e.connect(), e.connect()
		for _, c := range []*client{a, b} {
			for _, ch := range fuzzChannels {
				e.subscribe(c, ch.name, ch.data)
			}
		}
		if sign {
			if params, err := url.ParseQuery(query); err == nil {
				query = signAPI(method, path, params, body, testKey, testSecret, time.Now().Unix())
			}
		}
		r := e.srv.ServeAPI(&APIRequest{Method: method, RawPath: path, Path: path, RawQuery: query, Body: body})
		if !apiStatuses[r.Status] {
			t.Fatalf("%s %s?%s %q: status %d", method, path, query, body, r.Status)
		}
		if !json.Valid(r.Body) {
			t.Fatalf("%s %s: invalid JSON body %q", method, path, r.Body)
		}
		if (r.Status == 405) != (r.Allow != "") {
			t.Fatalf("status %d with Allow %q", r.Status, r.Allow)
		}
		// Whatever the request did, the sessions received only valid frames
		// and still work.
		for _, c := range []*client{a, b} {
			checkFrames(t, c.id(), c.conn.takeFrames())
			if c.sess.Closed() {
				continue // terminate_connections
			}
			c.send(`{"event":"pusher:ping"}`)
			if got := c.take(); len(got) != 1 || got[0] != pongMsg {
				t.Fatalf("ping after the request got %q", got)
			}
		}
	})
}
