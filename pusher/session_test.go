package pusher

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

var establishedRE = regexp.MustCompile(`^\{"event":"pusher:connection_established","data":"\{\\"socket_id\\":\\"([0-9]+)\.([0-9]+)\\",\\"activity_timeout\\":([0-9]+)\}"\}$`)

func TestConnectionEstablished(t *testing.T) {
	tests := []struct {
		name            string
		activityTimeout time.Duration
		want            string
	}{
		{name: "default 30 s", activityTimeout: 0, want: "30"},
		{name: "configured 120 s", activityTimeout: 120 * time.Second, want: "120"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.Apps[0].ActivityTimeout = tt.activityTimeout })
			conn := newFakeConn(t)
			sess := e.srv.Open(e.sh, conn, testKey, "http://localhost")
			if sess == nil {
				t.Fatal("Open returned nil")
			}
			msgs := conn.take()
			if len(msgs) != 1 {
				t.Fatalf("got %d messages: %q", len(msgs), msgs)
			}
			m := establishedRE.FindStringSubmatch(msgs[0])
			if m == nil {
				t.Fatalf("connection_established = %s", msgs[0])
			}
			if m[1]+"."+m[2] != sess.id {
				t.Errorf("socket_id %s.%s, session id %s", m[1], m[2], sess.id)
			}
			for _, part := range m[1:3] {
				n, _ := strconv.Atoi(part)
				if n < 1 || n > 1_000_000_000 {
					t.Errorf("socket id part %d outside [1, 1e9]", n)
				}
			}
			if m[3] != tt.want {
				t.Errorf("activity_timeout = %s, want %s", m[3], tt.want)
			}
			if conn.closes != 0 || sess.Closed() {
				t.Errorf("connection closed")
			}
			if sess.App() != e.app {
				t.Errorf("App() = %v", sess.App())
			}
			if got := e.srv.Connections(e.app); got != 1 {
				t.Errorf("Connections = %d, want 1", got)
			}
			e.srv.Closed(sess)
			if got := e.srv.Connections(e.app); got != 0 {
				t.Errorf("Connections after close = %d, want 0", got)
			}
		})
	}
}

func TestSocketIDsDiffer(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := newSocketID()
		if seen[id] {
			t.Fatalf("duplicate socket id %s", id)
		}
		seen[id] = true
	}
}

func TestOpenRejected(t *testing.T) {
	tests := []struct {
		name     string
		key      string
		origin   string
		allowed  []string
		maxConns int
		wantCode int
		wantMsg  string
	}{
		{name: "unknown key", key: "nope", origin: "", wantCode: 4001, wantMsg: "Application does not exist"},
		{name: "localhost vs laravel.com", key: testKey, origin: "http://localhost", allowed: []string{"laravel.com"}, wantCode: 4009, wantMsg: "Origin not allowed"},
		{name: "sub.laravel.com vs laravel.com", key: testKey, origin: "http://sub.laravel.com", allowed: []string{"laravel.com"}, wantCode: 4009, wantMsg: "Origin not allowed"},
		{name: "laravel.com vs *.laravel.com", key: testKey, origin: "http://laravel.com", allowed: []string{"*.laravel.com"}, wantCode: 4009, wantMsg: "Origin not allowed"},
		{name: "no origin vs laravel.com", key: testKey, origin: "", allowed: []string{"laravel.com"}, wantCode: 4009, wantMsg: "Origin not allowed"},
		{name: "case-sensitive", key: testKey, origin: "https://LARAVEL.com", allowed: []string{"laravel.com"}, wantCode: 4009, wantMsg: "Origin not allowed"},
		{name: "over quota", key: testKey, origin: "", maxConns: 1, wantCode: 4004, wantMsg: "Application is over connection quota"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) {
				o.Apps[0].AllowedOrigins = tt.allowed
				o.Apps[0].MaxConnections = tt.maxConns
			})
			if tt.maxConns > 0 {
				for range tt.maxConns {
					c := e.connect()
					e.subscribe(c, "test-channel", "")
				}
			}
			conn := newFakeConn(t)
			if sess := e.srv.Open(e.sh, conn, tt.key, tt.origin); sess != nil {
				t.Fatalf("Open accepted the connection")
			}
			frames := conn.takeFrames()
			if len(frames) != 2 {
				t.Fatalf("got %d frames, want error + close", len(frames))
			}
			if frames[0].op != ws.OpText || string(frames[0].payload) != errMsg(tt.wantCode, tt.wantMsg) {
				t.Errorf("first frame op=%v %s, want %s", frames[0].op, frames[0].payload, errMsg(tt.wantCode, tt.wantMsg))
			}
			code, reason := frames[1].closeCode()
			if frames[1].op != ws.OpClose || code != tt.wantCode || reason != tt.wantMsg {
				t.Errorf("second frame op=%v code=%d reason=%q", frames[1].op, code, reason)
			}
			if conn.closes != 1 {
				t.Errorf("Close called %d times, want 1", conn.closes)
			}
			if got := e.srv.Connections(e.app); got != int64(tt.maxConns) {
				t.Errorf("Connections = %d, want %d", got, tt.maxConns)
			}
		})
	}
}

func TestOpenOriginAllowed(t *testing.T) {
	tests := []struct {
		name    string
		origin  string
		allowed []string
	}{
		{name: "localhost vs localhost", origin: "http://localhost", allowed: []string{"localhost"}},
		{name: "sub.localhost vs localhost,*.localhost", origin: "http://sub.localhost", allowed: []string{"localhost", "*.localhost"}},
		{name: "port ignored", origin: "https://localhost:8443", allowed: []string{"localhost"}},
		{name: "path ignored", origin: "https://app.example.com/x?y", allowed: []string{"app.example.com"}},
		{name: "star allows all", origin: "http://evil.test", allowed: []string{"laravel.com", "*"}},
		{name: "default allows all", origin: "http://evil.test", allowed: nil},
		{name: "ipv6 literal", origin: "http://[::1]:8080", allowed: []string{"::1"}},
		{name: "0.0.0.0", origin: "http://0.0.0.0", allowed: []string{"0.0.0.0"}},
		{name: "middle wildcard", origin: "http://a.b.example.com", allowed: []string{"a.*.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.Apps[0].AllowedOrigins = tt.allowed })
			c := e.connectOrigin(tt.origin)
			if c.conn.closes != 0 {
				t.Errorf("connection closed")
			}
		})
	}
}

func TestQuotaFreedOnClose(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Apps[0].MaxConnections = 1 })
	a := e.connect()
	e.close(a)
	b := e.connect() // fits again
	b.send(`{"event":"pusher:ping"}`)
	b.expect(pongMsg)
}

func TestPingPong(t *testing.T) {
	tests := []struct {
		name string
		msg  string
	}{
		{name: "bare", msg: `{"event":"pusher:ping"}`},
		{name: "with data object", msg: `{"event":"pusher:ping","data":{}}`},
		{name: "with data string", msg: `{"event":"pusher:ping","data":"{}"}`},
		{name: "whitespace", msg: " { \"event\" : \"pusher:ping\" } "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.connect()
			c.send(tt.msg)
			c.expect(pongMsg)
			c.send(`{"event":"pusher:pong"}`)
			c.expectNothing()
		})
	}
}

func TestInvalidMessage4200(t *testing.T) {
	tests := []struct {
		name string
		msg  string
	}{
		{name: "not JSON", msg: `Hi`},
		{name: "event not a string", msg: `{"event":123}`},
		{name: "event object", msg: `{"event":{"a":1}}`},
		{name: "event missing", msg: `{"data":{}}`},
		{name: "event empty", msg: `{"event":""}`},
		{name: "null", msg: `null`},
		{name: "array", msg: `[]`},
		{name: "string", msg: `"pusher:ping"`},
		{name: "truncated", msg: `{"event":"pusher:ping"`},
		{name: "data non-JSON string", msg: `{"event":"pusher:subscribe","data":"Hello"}`},
		{name: "data number", msg: `{"event":"pusher:subscribe","data":5}`},
		{name: "data missing", msg: `{"event":"pusher:subscribe"}`},
		{name: "channel array", msg: `{"event":"pusher:subscribe","data":{"channel":[]}}`},
		{name: "channel null", msg: `{"event":"pusher:subscribe","data":{"channel":null}}`},
		{name: "channel number", msg: `{"event":"pusher:subscribe","data":{"channel":12345}}`},
		{name: "channel missing", msg: `{"event":"pusher:subscribe","data":{}}`},
		{name: "auth array", msg: `{"event":"pusher:subscribe","data":{"channel":"private-x","auth":[]}}`},
		{name: "channel_data array", msg: `{"event":"pusher:subscribe","data":{"channel":"presence-x","auth":"a:b","channel_data":[]}}`},
		{name: "channel_data Hello", msg: `{"event":"pusher:subscribe","data":{"channel":"presence-x","auth":"a:b","channel_data":"Hello"}}`},
		{name: "unsubscribe channel array", msg: `{"event":"pusher:unsubscribe","data":{"channel":[]}}`},
		{name: "client event with array channel", msg: `{"event":"client-x","channel":[],"data":{}}`},
		{name: "client event without channel", msg: `{"event":"client-x","data":{}}`},
		{name: "client event data number", msg: `{"event":"client-x","channel":"private-x","data":5}`},
		{name: "client event data non-JSON string", msg: `{"event":"client-x","channel":"private-x","data":"hello"}`},
		{name: "unknown pusher event", msg: `{"event":"pusher:foo"}`},
		{name: "pusher_internal event", msg: `{"event":"pusher_internal:subscription_succeeded","channel":"x","data":"{}"}`},
		{name: "signin auth number", msg: `{"event":"pusher:signin","data":{"auth":1,"user_data":"{\"id\":\"1\"}"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.connect()
			c.send(tt.msg)
			c.expect(errMsg(4200, "Invalid message format"))
			if c.sess.Closed() || c.conn.closes != 0 {
				t.Errorf("connection closed after 4200")
			}
			// Still usable.
			c.send(`{"event":"pusher:ping"}`)
			c.expect(pongMsg)
			if n := len(e.srv.hub.list(e.app, "")); n != 0 {
				t.Errorf("%d channels exist", n)
			}
		})
	}
}

func TestIgnoredEvents(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.connect(), e.connect()
	e.subscribe(a, "private-x", "")
	e.subscribe(b, "private-x", "")
	a.send(`{"event":"foo","channel":"private-x","data":{}}`)
	a.send(`{"event":"App\\Events\\Thing","channel":"private-x","data":{}}`)
	a.expectNothing()
	b.expectNothing()
}

func TestSubscribePublic(t *testing.T) {
	e := newEnv(t, nil)
	c := e.connect()
	c.send(`{"event":"pusher:subscribe","data":{"channel":"test-channel"}}`)
	c.expect(succeeded("test-channel", ""))
	// Data as a JSON string holding the object works too; an auth on a public channel is ignored.
	c.send(`{"event":"pusher:subscribe","data":"{\"channel\":\"test-channel-2\",\"auth\":\"123\"}"}`)
	c.expect(succeeded("test-channel-2", ""))
	info, ok := e.srv.hub.info(e.app, "test-channel")
	if !ok || info.SubscriptionCount != 1 {
		t.Errorf("hub info = %+v %v", info, ok)
	}
	e.srv.trigger(e.app, "test-channel", "App\\Events\\Ev", `{"a":1}`, "")
	c.expect(`{"event":"App\\Events\\Ev","data":"{\"a\":1}","channel":"test-channel"}`)
}

func TestSubscribeInvalidChannelName(t *testing.T) {
	tests := []struct {
		name    string
		channel string
	}{
		{name: "empty", channel: ""},
		{name: "space", channel: "a b"},
		{name: "too long", channel: strings.Repeat("c", 201)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.connect()
			c.send(subMsg(tt.channel, "", ""))
			c.expect(subErrMsg(tt.channel, "Invalid channel name", 400), errMsg(4009, "Invalid channel name"))
		})
	}
}

func TestSubscribePrivate(t *testing.T) {
	tests := []struct {
		name    string
		channel string
		auth    func(socketID string) string
		data    string
		ok      bool
	}{
		{name: "valid", channel: "private-x", ok: true,
			auth: func(id string) string { return chanAuth(testKey, testSecret, id, "private-x", "") }},
		{name: "valid encrypted", channel: "private-encrypted-x", ok: true,
			auth: func(id string) string { return chanAuth(testKey, testSecret, id, "private-encrypted-x", "") }},
		{name: "valid with channel_data", channel: "private-x", data: `{"a":1}`, ok: true,
			auth: func(id string) string { return chanAuth(testKey, testSecret, id, "private-x", `{"a":1}`) }},
		{name: "channel_data not signed", channel: "private-x", data: `{"a":1}`,
			auth: func(id string) string { return chanAuth(testKey, testSecret, id, "private-x", "") }},
		{name: "wrong secret", channel: "private-x",
			auth: func(id string) string { return chanAuth(testKey, "other", id, "private-x", "") }},
		{name: "wrong key part", channel: "private-x",
			auth: func(id string) string { return chanAuth("other-key", testSecret, id, "private-x", "") }},
		{name: "other socket", channel: "private-x",
			auth: func(id string) string { return chanAuth(testKey, testSecret, "1.1", "private-x", "") }},
		{name: "other channel", channel: "private-x",
			auth: func(id string) string { return chanAuth(testKey, testSecret, id, "private-y", "") }},
		{name: "missing auth", channel: "private-x",
			auth: func(id string) string { return "" }},
		{name: "garbage", channel: "private-x",
			auth: func(id string) string { return "123" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.connect()
			c.send(subMsg(tt.channel, tt.auth(c.id()), tt.data))
			if tt.ok {
				c.expect(succeeded(tt.channel, ""))
				if info, ok := e.srv.hub.info(e.app, tt.channel); !ok || info.SubscriptionCount != 1 {
					t.Errorf("hub info = %+v", info)
				}
				return
			}
			c.expect(subErrMsg(tt.channel, "Connection is unauthorized", 401), errMsg(4009, "Connection is unauthorized"))
			if _, ok := e.srv.hub.info(e.app, tt.channel); ok {
				t.Errorf("channel exists after a refused subscription")
			}
			if c.sess.Closed() {
				t.Errorf("closed after an auth failure")
			}
		})
	}
}

func TestSubscribeNullAuth(t *testing.T) {
	for _, ch := range []string{"private-x", "presence-x", "private-cache-x", "presence-cache-x"} {
		t.Run(ch, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.connect()
			c.send(`{"event":"pusher:subscribe","data":{"channel":"` + ch + `","auth":null}}`)
			c.expect(subErrMsg(ch, "Connection is unauthorized", 401), errMsg(4009, "Connection is unauthorized"))
		})
	}
}

func TestSubscribePresence(t *testing.T) {
	e := newEnv(t, nil)
	const ch = "presence-room"
	a1, b, a2, other := e.connect(), e.connect(), e.connect(), e.connect()
	e.subscribe(other, "private-other", "")

	dA := presenceData(`1`, "Ann")
	a1.send(subMsg(ch, chanAuth(testKey, testSecret, a1.id(), ch, dA), dA))
	a1.expect(succeeded(ch, `{"presence":{"count":1,"ids":[1],"hash":{"1":{"name":"Ann"}}}}`))

	dB := `{"user_id":"2","user_info":{"name":"Bob"},"extra":true}`
	b.send(subMsg(ch, chanAuth(testKey, testSecret, b.id(), ch, dB), dB))
	b.expect(succeeded(ch, `{"presence":{"count":2,"ids":[1,"2"],"hash":{"1":{"name":"Ann"},"2":{"name":"Bob"}}}}`))
	a1.expect(memberAdded(ch, dB)) // channel_data verbatim, extra keys kept

	// A second connection of user 1 (user_id as a string, other info):
	// de-duplicated, first info kept, no member_added.
	dA2 := presenceData(`"1"`, "Ann again")
	a2.send(subMsg(ch, chanAuth(testKey, testSecret, a2.id(), ch, dA2), dA2))
	a2.expect(succeeded(ch, `{"presence":{"count":2,"ids":[1,"2"],"hash":{"1":{"name":"Ann"},"2":{"name":"Bob"}}}}`))
	a1.expectNothing()
	b.expectNothing()
	other.expectNothing()

	if info, _ := e.srv.hub.info(e.app, ch); info.SubscriptionCount != 3 || info.UserCount != 2 {
		t.Errorf("info = %+v", info)
	}

	// First connection of user 1 leaves: user 1 is still there.
	e.close(a1)
	b.expectNothing()
	a2.expectNothing()

	// Last connection of user 1 leaves by unsubscribing: member_removed once, to the others.
	a2.send(unsubMsg(ch))
	a2.expectNothing()
	b.expect(memberRemoved(ch, `"1"`))
	other.expectNothing()

	if info, _ := e.srv.hub.info(e.app, ch); info.SubscriptionCount != 1 || info.UserCount != 1 {
		t.Errorf("info = %+v", info)
	}
	// b leaves: nobody left to tell; the channel is gone.
	e.close(b)
	if _, ok := e.srv.hub.info(e.app, ch); ok {
		t.Errorf("presence channel still exists")
	}
}

func TestSubscribePresenceBadChannelData(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{name: "no channel_data", data: ""},
		{name: "no user_id", data: `{"user_info":{"name":"x"}}`},
		{name: "user_id bool", data: `{"user_id":true}`},
		{name: "user_id empty string", data: `{"user_id":""}`},
		{name: "user_id object", data: `{"user_id":{"a":1}}`},
		{name: "channel_data array", data: `[1]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.connect()
			c.send(subMsg("presence-x", chanAuth(testKey, testSecret, c.id(), "presence-x", tt.data), tt.data))
			const msg = "Presence channels need channel_data with a user_id"
			c.expect(subErrMsg("presence-x", msg, 400), errMsg(4009, msg))
			if _, ok := e.srv.hub.info(e.app, "presence-x"); ok {
				t.Errorf("channel exists")
			}
		})
	}
}

func TestSubscribeCacheChannels(t *testing.T) {
	tests := []struct {
		channel string
	}{
		{channel: "cache-test-channel"},
		{channel: "private-cache-test-channel"},
		{channel: "private-encrypted-cache-test-channel"},
		{channel: "presence-cache-test-channel"},
	}
	for _, tt := range tests {
		t.Run(tt.channel, func(t *testing.T) {
			e := newEnv(t, nil)
			kind, _ := Classify(tt.channel)
			a, b := e.connect(), e.connect()
			sub := func(c *client, user string) string {
				data := ""
				if kind == KindPresence {
					data = presenceData(user, "U"+user)
				}
				auth := ""
				if kind != KindPublic {
					auth = chanAuth(testKey, testSecret, c.id(), tt.channel, data)
				}
				c.send(subMsg(tt.channel, auth, data))
				return data
			}
			sub(a, "1")
			presA := `{"presence":{"count":1,"ids":[1],"hash":{"1":{"name":"U1"}}}}`
			if kind != KindPresence {
				presA = ""
			}
			a.expect(succeeded(tt.channel, presA), `{"event":"pusher:cache_miss","channel":"`+tt.channel+`"}`)

			e.srv.trigger(e.app, tt.channel, "App\\Events\\TestEvent", `{"foo":"bar"}`, "")
			ev := `{"event":"App\\Events\\TestEvent","data":"{\"foo\":\"bar\"}","channel":"` + tt.channel + `"}`
			a.expect(ev)

			dataB := sub(b, "2")
			presB := `{"presence":{"count":2,"ids":[1,2],"hash":{"1":{"name":"U1"},"2":{"name":"U2"}}}}`
			if kind != KindPresence {
				presB = ""
			}
			b.expect(succeeded(tt.channel, presB), ev)
			if kind == KindPresence {
				a.expect(memberAdded(tt.channel, dataB))
			} else {
				a.expectNothing()
			}
			// The cache outlives the channel's subscribers (Pusher's 30 min TTL).
			// Regression (presence-cache): the member_removed of the leaving
			// users was stored as the cached event and replayed instead of ev.
			e.close(a)
			e.close(b)
			c := e.connect()
			sub(c, "3")
			msgs := c.take()
			if len(msgs) != 2 || msgs[1] != ev {
				t.Errorf("after the channel emptied: %q\nwant cached %s", msgs, ev)
			}
			// Past the TTL the cache is gone.
			e.close(c)
			e.clock.Advance(31 * time.Minute)
			e.srv.SweepCaches(e.clock.Now())
			d := e.connect()
			sub(d, "4")
			msgs = d.take()
			if len(msgs) != 2 || msgs[1] != `{"event":"pusher:cache_miss","channel":"`+tt.channel+`"}` {
				t.Errorf("after the TTL: %q", msgs)
			}
		})
	}
}

// Regression: presence member events were stored as a presence-cache
// channel's cached event, so a later subscriber got a stale
// pusher_internal:member_added (or member_removed) instead of the last event
// the application triggered.
func TestRegressionPresenceEventsStoredInCache(t *testing.T) {
	e := newEnv(t, nil)
	const ch = "presence-cache-room"
	a, b, c := e.connect(), e.connect(), e.connect()
	e.subscribe(a, ch, presenceData(`1`, "A"))
	e.srv.trigger(e.app, ch, "ev", `{"n":1}`, "")
	a.take()
	e.subscribe(b, ch, presenceData(`2`, "B")) // member_added goes to a
	a.take()
	e.subscribe(c, ch, presenceData(`3`, "C"))
	// c's subscribe already drained succeeded; the next message was the cached one.
	// Re-run on a fresh connection to look at the cached event directly.
	d := e.connect()
	dd := presenceData(`4`, "D")
	d.send(subMsg(ch, chanAuth(testKey, testSecret, d.id(), ch, dd), dd))
	msgs := d.take()
	want := apiEvent("ev", `{"n":1}`, ch)
	if len(msgs) != 2 || msgs[1] != want {
		t.Errorf("late subscriber got %q\nwant cached event %s", msgs, want)
	}
	status, body := e.api("GET", "/apps/"+testAppID+"/channels/"+ch, "info=user_count,cache", "")
	wantBody := `{"occupied":true,"user_count":4,"cache":` + want + `}`
	if status != 200 || body != wantBody {
		t.Errorf("channel info = %d %s\nwant %s", status, body, wantBody)
	}
}

func TestCacheWithoutSubscribers(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.trigger(e.app, "cache-lonely", "ev", "1", "")
	e.srv.trigger(e.app, "cache-lonely", "ev", "2", "")
	c := e.connect()
	c.send(subMsg("cache-lonely", "", ""))
	c.expect(succeeded("cache-lonely", ""), apiEvent("ev", "2", "cache-lonely"))
	e.srv.trigger(e.app, "not-cache", "ev", "1", "")
	c.send(subMsg("not-cache", "", ""))
	c.expect(succeeded("not-cache", ""))
}

func TestResubscribe(t *testing.T) {
	tests := []struct {
		channel string
		data    string
		want    string
	}{
		{channel: "test-channel", want: succeeded("test-channel", "")},
		{channel: "private-x", want: succeeded("private-x", "")},
		{channel: "presence-x", data: presenceData(`7`, "S"), want: succeeded("presence-x", `{"presence":{"count":1,"ids":[7],"hash":{"7":{"name":"S"}}}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.channel, func(t *testing.T) {
			e := newEnv(t, nil)
			c, other := e.connect(), e.connect()
			e.subscribe(other, "test-unrelated", "")
			e.subscribe(c, tt.channel, tt.data)
			e.subscribe(c, tt.channel, tt.data)
			c.send(subMsg(tt.channel, chanAuth(testKey, testSecret, c.id(), tt.channel, tt.data), tt.data))
			c.expect(tt.want)
			if info, _ := e.srv.hub.info(e.app, tt.channel); info.SubscriptionCount != 1 {
				t.Errorf("subscription_count = %d after re-subscribing, want 1", info.SubscriptionCount)
			}
			e.srv.trigger(e.app, tt.channel, "ev", "d", "")
			c.expect(apiEvent("ev", "d", tt.channel)) // delivered once
			c.send(unsubMsg(tt.channel))
			if _, ok := e.srv.hub.info(e.app, tt.channel); ok {
				t.Errorf("channel exists after one unsubscribe")
			}
			other.expectNothing()
		})
	}
}

func TestUnsubscribe(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.connect(), e.connect()
	e.subscribe(a, "test-channel", "")
	e.subscribe(b, "test-channel", "")
	e.subscribe(a, "test-other", "")
	if status, body := e.api("GET", "/apps/"+testAppID+"/connections", "", ""); status != 200 || body != `{"connections":2}` {
		t.Errorf("connections = %d %s", status, body)
	}

	a.send(unsubMsg("test-channel"))
	a.send(unsubMsg("never-subscribed"))
	a.send(`{"event":"pusher:unsubscribe","data":"{\"channel\":\"test-other\"}"}`)
	a.expectNothing()

	e.srv.trigger(e.app, "test-channel", "ev", "x", "")
	a.expectNothing()
	b.expect(apiEvent("ev", "x", "test-channel"))
	if _, ok := e.srv.hub.info(e.app, "test-other"); ok {
		t.Errorf("test-other still exists")
	}
	if status, body := e.api("GET", "/apps/"+testAppID+"/connections", "", ""); status != 200 || body != `{"connections":1}` {
		t.Errorf("connections = %d %s, want 1", status, body)
	}
	b.send(unsubMsg("test-channel"))
	if _, ok := e.srv.hub.info(e.app, "test-channel"); ok {
		t.Errorf("test-channel still exists after the last unsubscribe")
	}
	if status, body := e.api("GET", "/apps/"+testAppID+"/connections", "", ""); status != 200 || body != `{"connections":0}` {
		t.Errorf("connections = %d %s, want 0", status, body)
	}
}

func TestClientEventsMembers(t *testing.T) {
	e := newEnv(t, nil) // members is the default
	a, b, outsider := e.connect(), e.connect(), e.connect()
	e.subscribe(a, "private-chat", "")
	e.subscribe(b, "private-chat", "")
	e.subscribe(outsider, "private-elsewhere", "")

	tests := []struct {
		name   string
		msg    string
		toB    string
		toA    string
		fromCh string
	}{
		{name: "object data", msg: `{"event":"client-typing","channel":"private-chat","data":{"id":123,"name":"Joe Dixon"}}`,
			toB: `{"event":"client-typing","channel":"private-chat","data":{"id":123,"name":"Joe Dixon"}}`},
		{name: "array data", msg: `{"event":"client-typing","channel":"private-chat","data":[1,2]}`,
			toB: `{"event":"client-typing","channel":"private-chat","data":[1,2]}`},
		{name: "JSON string data decoded", msg: `{"event":"client-typing","channel":"private-chat","data":"{\"id\":1}"}`,
			toB: `{"event":"client-typing","channel":"private-chat","data":{"id":1}}`},
		{name: "no data", msg: `{"event":"client-typing","channel":"private-chat"}`,
			toB: `{"event":"client-typing","channel":"private-chat","data":null}`},
		{name: "null data, extra fields dropped", msg: `{"event":"client-typing","channel":"private-chat","data":null,"extra":1}`,
			toB: `{"event":"client-typing","channel":"private-chat","data":null}`},
		{name: "not a member", msg: `{"event":"client-typing","channel":"private-elsewhere","data":{}}`,
			toA: errMsg(4009, "The client is not a member of the specified channel.")},
		{name: "public channel refused", msg: `{"event":"client-typing","channel":"test-channel","data":{}}`,
			toA: errMsg(4009, "Client events are only supported on private and presence channels.")},
		{name: "server-to-user channel refused", msg: `{"event":"client-typing","channel":"#server-to-user-1","data":{}}`,
			toA: errMsg(4009, "Client events are only supported on private and presence channels.")},
		{name: "cache channel name", msg: `{"event":"client-typing","channel":"cache-x","data":{}}`,
			toA: errMsg(4009, "Client events are only supported on private and presence channels.")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.send(tt.msg)
			if tt.toA != "" {
				a.expect(tt.toA)
			} else {
				a.expectNothing()
			}
			if tt.toB != "" {
				b.expect(tt.toB)
			} else {
				b.expectNothing()
			}
			outsider.expectNothing()
			// Let the next case start in a fresh client-event second budget.
			a.sess.clientEvents.count = 0
		})
	}
}

func TestClientEventsPresenceUserID(t *testing.T) {
	e := newEnv(t, nil)
	const ch = "presence-room"
	a, b := e.connect(), e.connect()
	e.subscribe(a, ch, presenceData(`"1"`, "A"))
	e.subscribe(b, ch, presenceData(`2`, "B"))
	a.take()
	a.send(`{"event":"client-typing","channel":"presence-room","data":{"x":1}}`)
	a.expectNothing()
	b.expect(`{"event":"client-typing","channel":"presence-room","data":{"x":1},"user_id":"1"}`)
	b.send(`{"event":"client-typing","channel":"presence-room","data":{}}`)
	a.expect(`{"event":"client-typing","channel":"presence-room","data":{},"user_id":2}`)
}

func TestClientEventsAll(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Apps[0].ClientEvents = ClientEventsAll })
	a, b := e.connect(), e.connect()
	e.subscribe(b, "private-chat", "")
	a.send(`{"event":"client-x","channel":"private-chat","data":{"k":"v"}}`)
	a.expectNothing()
	b.expect(`{"event":"client-x","channel":"private-chat","data":{"k":"v"}}`)
	a.send(`{"event":"client-x","channel":"test-public","data":{}}`)
	a.expect(errMsg(4009, "Client events are only supported on private and presence channels."))
}

// Regression: with "all", a client that subscribed to nothing could send
// client events to any number of private-cache-* names, each stored (and
// replicated to every node) for 30 minutes; invalid names were not checked.
func TestRegressionCacheClientEventsWithoutMembership(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Apps[0].ClientEvents = ClientEventsAll })
	a := e.connect()
	a.send(`{"event":"client-x","channel":"private-cache-x1","data":{}}`)
	a.expect(errMsg(4009, "The client is not a member of the specified channel."))
	a.send(`{"event":"client-x","channel":"private with space","data":{}}`)
	a.expect(errMsg(4200, "Invalid message format"))
	if info, _ := e.srv.hub.info(e.app, "private-cache-x1"); info.Cached != nil {
		t.Fatalf("a non-member's client event was cached: %s", info.Cached)
	}
}

func TestClientEventsNone(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Apps[0].ClientEvents = ParseClientEventPolicy("none") })
	a, b := e.connect(), e.connect()
	e.subscribe(a, "private-chat", "")
	e.subscribe(b, "private-chat", "")
	a.send(`{"event":"client-x","channel":"private-chat","data":{}}`)
	a.expect(errMsg(4301, "The app does not have client messaging enabled."))
	b.expectNothing()
}

func TestParseClientEventPolicy(t *testing.T) {
	tests := []struct {
		in   string
		want ClientEventPolicy
		str  string
	}{
		{in: "members", want: ClientEventsMembers, str: "members"},
		{in: "", want: ClientEventsMembers, str: "members"},
		{in: " ALL ", want: ClientEventsAll, str: "all"},
		{in: "none", want: ClientEventsNone, str: "none"},
		{in: "whatever", want: ClientEventsNone, str: "none"},
	}
	for _, tt := range tests {
		got := ParseClientEventPolicy(tt.in)
		if got != tt.want || got.String() != tt.str {
			t.Errorf("ParseClientEventPolicy(%q) = %v (%s), want %v (%s)", tt.in, got, got, tt.want, tt.str)
		}
	}
}

func TestClientEventRateLimit(t *testing.T) {
	const limit = 3
	e := newEnv(t, func(o *Options) { o.ClientEventsPerSecond = limit })
	a, b := e.connect(), e.connect()
	e.subscribe(a, "private-chat", "")
	e.subscribe(b, "private-chat", "")
	e.clock.Advance(500 * time.Millisecond)
	for range limit + 2 {
		a.send(`{"event":"client-x","channel":"private-chat","data":{}}`)
	}
	a.expect(errMsg(4301, "Client event rate limit exceeded"), errMsg(4301, "Client event rate limit exceeded"))
	if got := len(b.take()); got != limit {
		t.Errorf("b received %d client events, want %d", got, limit)
	}
	if st := e.srv.Stats(context.Background()); st.ClientEventsDropped != 2 {
		t.Errorf("ClientEventsDropped = %d, want 2", st.ClientEventsDropped)
	}
	if a.sess.Closed() {
		t.Errorf("closed by the client event limit")
	}
	// The budget is per whole second: the next second starts a new one.
	e.clock.Advance(499 * time.Millisecond)
	a.send(`{"event":"client-x","channel":"private-chat","data":{}}`)
	a.expect(errMsg(4301, "Client event rate limit exceeded"))
	e.clock.Advance(time.Millisecond)
	a.send(`{"event":"client-x","channel":"private-chat","data":{}}`)
	a.expectNothing()
	if got := len(b.take()); got != 1 {
		t.Errorf("in the next second b received %d client events, want 1", got)
	}
}

func TestSubscriptionRateLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.SubscriptionsPerSecond = 2 })
	c := e.connect()
	e.subscribe(c, "a", "")
	e.subscribe(c, "b", "")
	c.send(subMsg("c", "", ""))
	c.expect(subErrMsg("c", "Subscription rate limit exceeded", 429), errMsg(4301, "Subscription rate limit exceeded"))
	if st := e.srv.Stats(context.Background()); st.RateLimited != 1 {
		t.Errorf("RateLimited = %d, want 1", st.RateLimited)
	}
	e.clock.Advance(time.Second)
	e.subscribe(c, "c", "")
}

func TestRateLimiting(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Apps[0].RateLimit = RateLimit{Enabled: true, MaxAttempts: 3, Decay: time.Minute}
	})
	c := e.connect()
	for range 3 {
		c.send(`{"event":"pusher:ping"}`)
	}
	c.expect(pongMsg, pongMsg, pongMsg)
	c.send(`{"event":"pusher:ping"}`)
	c.send(subMsg("test-channel", "", "")) // refused, not processed
	c.expect(errMsg(4301, "Rate limit exceeded"), errMsg(4301, "Rate limit exceeded"))
	if c.sess.Closed() || c.conn.closes != 0 {
		t.Fatalf("closed without terminate_on_limit")
	}
	if _, ok := e.srv.hub.info(e.app, "test-channel"); ok {
		t.Errorf("a rate-limited subscribe was processed")
	}
	if st := e.srv.Stats(context.Background()); st.RateLimited != 2 {
		t.Errorf("RateLimited = %d, want 2", st.RateLimited)
	}
	// The window opened with the first message and lasts the decay.
	e.clock.Advance(time.Minute - time.Nanosecond)
	c.send(`{"event":"pusher:ping"}`)
	c.expect(errMsg(4301, "Rate limit exceeded"))
	e.clock.Advance(time.Nanosecond) // next window
	c.send(`{"event":"pusher:ping"}`)
	c.expect(pongMsg)
}

func TestRateLimitingTerminate(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Apps[0].RateLimit = RateLimit{Enabled: true, MaxAttempts: 1, TerminateOnLimit: true}
	})
	if e.app.RateLimit.Decay != 60*time.Second {
		t.Errorf("default decay = %v", e.app.RateLimit.Decay)
	}
	c := e.connect()
	c.send(`{"event":"pusher:ping"}`)
	c.expect(pongMsg)
	c.send(`{"event":"pusher:ping"}`)
	frames := c.conn.takeFrames()
	if len(frames) != 2 || string(frames[0].payload) != errMsg(4301, "Rate limit exceeded") {
		t.Fatalf("frames = %v", frames)
	}
	if code, reason := frames[1].closeCode(); frames[1].op != ws.OpClose || code != 4301 || reason != "Rate limit exceeded" {
		t.Errorf("close frame %d %q", code, reason)
	}
	if !c.sess.Closed() || c.conn.closes != 1 {
		t.Errorf("not closed")
	}
	c.send(`{"event":"pusher:ping"}`) // ignored after close
	c.expectNothing()
}

// signinMsg builds a pusher:signin message.
func signinMsg(auth, userData string) string {
	return `{"event":"pusher:signin","data":{"auth":` + q(auth) + `,"user_data":` + q(userData) + `}}`
}

func userAuth(key, secret, socketID, userData string) string {
	return key + ":" + hmacHex(secret, socketID+"::user::"+userData)
}

func TestSignin(t *testing.T) {
	e := newEnv(t, nil)
	c := e.connect()
	ud := `{"id":"42","name":"Zaphod","watchlist":["1"]}`
	c.send(signinMsg(userAuth(testKey, testSecret, c.id(), ud), ud))
	c.expect(`{"event":"pusher:signin_success","data":` + q(`{"user_data":`+q(ud)+`}`) + `}`)
	if c.sess.userKey != "42" {
		t.Errorf("userKey = %q", c.sess.userKey)
	}
}

func TestSigninFailure(t *testing.T) {
	tests := []struct {
		name     string
		userData string
		auth     func(id, ud string) string
		want     string
	}{
		{name: "wrong secret", userData: `{"id":"1"}`,
			auth: func(id, ud string) string { return userAuth(testKey, "nope", id, ud) },
			want: errMsg(4009, "Invalid user authentication.")},
		{name: "wrong key", userData: `{"id":"1"}`,
			auth: func(id, ud string) string { return userAuth("other", testSecret, id, ud) },
			want: errMsg(4009, "Invalid user authentication.")},
		{name: "other socket", userData: `{"id":"1"}`,
			auth: func(id, ud string) string { return userAuth(testKey, testSecret, "9.9", ud) },
			want: errMsg(4009, "Invalid user authentication.")},
		{name: "no id", userData: `{"name":"x"}`,
			auth: func(id, ud string) string { return userAuth(testKey, testSecret, id, ud) },
			want: errMsg(4009, "Invalid user authentication.")},
		{name: "numeric id", userData: `{"id":1}`,
			auth: func(id, ud string) string { return userAuth(testKey, testSecret, id, ud) },
			want: errMsg(4009, "Invalid user authentication.")},
		{name: "empty id", userData: `{"id":""}`,
			auth: func(id, ud string) string { return userAuth(testKey, testSecret, id, ud) },
			want: errMsg(4009, "Invalid user authentication.")},
		{name: "user_data not JSON", userData: `id=1`,
			auth: func(id, ud string) string { return userAuth(testKey, testSecret, id, ud) },
			want: errMsg(4009, "Invalid user authentication.")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.connect()
			c.send(signinMsg(tt.auth(c.id(), tt.userData), tt.userData))
			c.expect(tt.want)
			if c.sess.userKey != "" {
				t.Errorf("signed in as %q", c.sess.userKey)
			}
			c.send(subMsg("#server-to-user-1", "", ""))
			c.expect(subErrMsg("#server-to-user-1", "Connection is unauthorized", 401), errMsg(4009, "Connection is unauthorized"))
		})
	}
}

func TestServerToUser(t *testing.T) {
	e := newEnv(t, nil)
	u42, u42b, u43, anon := e.connect(), e.connect(), e.connect(), e.connect()
	for _, c := range []*client{u42, u42b} {
		ud := `{"id":"42"}`
		c.send(signinMsg(userAuth(testKey, testSecret, c.id(), ud), ud))
		c.take()
	}
	ud := `{"id":"43"}`
	u43.send(signinMsg(userAuth(testKey, testSecret, u43.id(), ud), ud))
	u43.take()

	u42.send(subMsg("#server-to-user-42", "", ""))
	u42.expect(succeeded("#server-to-user-42", ""))
	u42b.send(subMsg("#server-to-user-42", "", ""))
	u42b.expect(succeeded("#server-to-user-42", ""))
	for _, c := range []*client{u43, anon} {
		c.send(subMsg("#server-to-user-42", "", ""))
		c.expect(subErrMsg("#server-to-user-42", "Connection is unauthorized", 401), errMsg(4009, "Connection is unauthorized"))
	}
	e.srv.trigger(e.app, "#server-to-user-42", "note", `{"hi":1}`, "")
	u42.expect(apiEvent("note", `{"hi":1}`, "#server-to-user-42"))
	u42b.expect(apiEvent("note", `{"hi":1}`, "#server-to-user-42"))
	u43.expectNothing()
	anon.expectNothing()
}

func TestSweepPusherPing(t *testing.T) {
	e := newEnv(t, nil) // ping_interval 60 s, pong_timeout 30 s
	c := e.connect()
	idle := e.connect() // never subscribes; still swept
	e.subscribe(c, "test-channel", "")
	base := e.clock.Now()

	e.sweepAt(base.Add(30 * time.Second))
	c.expectNothing()
	e.sweepAt(base.Add(61 * time.Second))
	c.expect(`{"event":"pusher:ping"}`)
	idle.expect(`{"event":"pusher:ping"}`)
	e.sweepAt(base.Add(61*time.Second + 29*time.Second))
	c.expectNothing()
	e.sweepAt(base.Add(61*time.Second + 30*time.Second))
	frames := c.conn.takeFrames()
	if len(frames) != 2 || frames[0].op != ws.OpText || string(frames[0].payload) != errMsg(4201, "Pong reply not received in time") {
		t.Fatalf("frames = %v", frames)
	}
	if code, reason := frames[1].closeCode(); frames[1].op != ws.OpClose || code != 4201 || reason != "Pong reply not received in time" {
		t.Errorf("close = %d %q", code, reason)
	}
	if c.conn.closes != 1 || !c.sess.Closed() {
		t.Errorf("closes = %d", c.conn.closes)
	}
	if idle.conn.closes != 1 {
		t.Errorf("idle, never-subscribed connection not pruned")
	}
	// The transport reports the close: the channel is released.
	e.close(c)
	if _, ok := e.srv.hub.info(e.app, "test-channel"); ok {
		t.Errorf("channel still exists after prune")
	}
	// Sweeping again sends nothing more.
	e.sweepAt(base.Add(200 * time.Second))
	c.expectNothing()
}

func TestSweepControlFramePing(t *testing.T) {
	e := newEnv(t, nil)
	c := e.connect()
	c.sess.Touch(true) // the client sent a WebSocket ping
	base := e.clock.Now()
	e.sweepAt(base.Add(60 * time.Second))
	frames := c.conn.takeFrames()
	if len(frames) != 1 || frames[0].op != ws.OpPing || len(frames[0].payload) != 0 {
		t.Fatalf("frames = %+v, want one empty WS ping", frames)
	}
	// A WS pong answers it: no close past the pong timeout.
	c.sess.Touch(true)
	e.sweepAt(base.Add(60*time.Second + 30*time.Second))
	c.expectNothing()
	// Silent for the ping interval again: pinged again.
	e.sweepAt(base.Add(120 * time.Second))
	f := c.conn.takeFrames()
	if len(f) != 1 || f[0].op != ws.OpPing {
		t.Errorf("after the pong: %+v, want another ping, not a close", f)
	}
	if c.conn.closes != 0 {
		t.Errorf("closed")
	}
}

func TestSweepActivityResets(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Apps[0].PingInterval = 10 * time.Second; o.PongTimeout = 5 * time.Second })
	c := e.connect()
	base := e.clock.Now()
	e.sweepAt(base.Add(10 * time.Second))
	c.expect(`{"event":"pusher:ping"}`)
	c.send(`{"event":"pusher:pong"}`)
	c.expectNothing()
	// Past the pong timeout of that ping: not closed, the client answered.
	e.sweepAt(base.Add(16 * time.Second))
	c.expectNothing()
	if c.conn.closes != 0 {
		t.Fatalf("closed although the client answered")
	}
	// Silent again: pinged again after the ping interval.
	e.sweepAt(base.Add(20 * time.Second))
	c.expect(`{"event":"pusher:ping"}`)
	// Any message counts as activity.
	e.clock.Set(base.Add(22 * time.Second))
	c.send(`{"event":"client-x","channel":"private-none","data":{}}`)
	c.take()
	e.sweepAt(base.Add(31 * time.Second))
	c.expectNothing()
	e.sweepAt(base.Add(32 * time.Second))
	c.expect(`{"event":"pusher:ping"}`)
	if c.conn.closes != 0 {
		t.Errorf("closed")
	}
	e.sweepAt(base.Add(36 * time.Second))
	if c.conn.closes != 0 {
		t.Errorf("closed before pong_timeout")
	}
	e.sweepAt(base.Add(37 * time.Second))
	if c.conn.closes != 1 {
		t.Errorf("not closed after pong_timeout")
	}
}

func TestMaxChannelsPerConnection(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxChannelsPerConnection = 2 })
	c := e.connect()
	e.subscribe(c, "a", "")
	e.subscribe(c, "b", "")
	c.send(subMsg("c", "", ""))
	c.expect(subErrMsg("c", "Too many channels for this connection", 429), errMsg(4301, "Too many channels for this connection"))
	e.subscribe(c, "a", "") // re-subscribing an existing channel is fine
	c.send(unsubMsg("b"))
	e.subscribe(c, "c", "")
}

func TestPresenceMemberLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxPresenceMembers = 2 })
	const ch = "presence-full"
	u1, u2, u3, u1b := e.connect(), e.connect(), e.connect(), e.connect()
	e.subscribe(u1, ch, presenceData(`1`, "a"))
	e.subscribe(u2, ch, presenceData(`2`, "b"))
	u1.take()
	d3 := presenceData(`3`, "c")
	u3.send(subMsg(ch, chanAuth(testKey, testSecret, u3.id(), ch, d3), d3))
	u3.expect(subErrMsg(ch, "Presence channel is over its member limit", 429), errMsg(4301, "Presence channel is over its member limit"))
	u1.expectNothing()
	u2.expectNothing()
	e.subscribe(u1b, ch, presenceData(`1`, "a")) // an existing user may add a connection
	if info, _ := e.srv.hub.info(e.app, ch); info.UserCount != 2 || info.SubscriptionCount != 3 {
		t.Errorf("info = %+v", info)
	}
}

func TestUserInfoSizeLimit(t *testing.T) {
	tests := []struct {
		name string
		info string
		ok   bool
	}{
		{name: "exactly the limit", info: `{"name":"abcdefg"}`, ok: true}, // 18 bytes
		{name: "one over", info: `{"name":"abcdefgh"}`, ok: false},        // 19 bytes
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.MaxUserInfoSize = 18 })
			c := e.connect()
			d := `{"user_id":1,"user_info":` + tt.info + `}`
			c.send(subMsg("presence-x", chanAuth(testKey, testSecret, c.id(), "presence-x", d), d))
			if tt.ok {
				c.expect(succeeded("presence-x", `{"presence":{"count":1,"ids":[1],"hash":{"1":`+tt.info+`}}}`))
				return
			}
			c.expect(subErrMsg("presence-x", "Presence user_info is too large", 400), errMsg(4009, "Presence user_info is too large"))
		})
	}
}

func TestTerminateUser(t *testing.T) {
	e := newEnv(t, nil)
	signed, member, bystander, anon := e.connect(), e.connect(), e.connect(), e.connect()
	ud := `{"id":"7"}`
	signed.send(signinMsg(userAuth(testKey, testSecret, signed.id(), ud), ud))
	signed.take()
	e.subscribe(member, "presence-room", presenceData(`7`, "seven"))
	e.subscribe(bystander, "presence-room", presenceData(`8`, "eight"))
	member.take()
	e.subscribe(anon, "test-channel", "")

	e.srv.TerminateUser(e.app, "7")
	for _, c := range []*client{signed, member} {
		frames := c.conn.takeFrames()
		if len(frames) != 2 || string(frames[0].payload) != errMsg(4009, "Connection terminated by the application.") {
			t.Errorf("%s frames = %v", c.id(), frames)
			continue
		}
		if code, _ := frames[1].closeCode(); frames[1].op != ws.OpClose || code != 4009 {
			t.Errorf("close code %d", code)
		}
		if c.conn.closes != 1 {
			t.Errorf("closes = %d", c.conn.closes)
		}
	}
	bystander.expectNothing()
	anon.expectNothing()
	if bystander.conn.closes != 0 || anon.conn.closes != 0 {
		t.Errorf("other users closed")
	}
	e.close(signed)
	e.close(member)
	bystander.expect(memberRemoved("presence-room", `7`))
}

func TestSlowConsumerClosed(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxOutboundBuffer = 100 })
	c, ok := e.connect(), e.connect()
	e.subscribe(c, "test-channel", "")
	e.subscribe(ok, "test-channel", "")
	c.conn.buffered = 101
	e.srv.trigger(e.app, "test-channel", "ev", "x", "")
	if c.conn.closes != 1 || !c.sess.Closed() {
		t.Errorf("slow consumer not closed")
	}
	if ok.conn.closes != 0 {
		t.Errorf("healthy consumer closed")
	}
	if st := e.srv.Stats(context.Background()); st.SlowConsumerCloses != 1 {
		t.Errorf("SlowConsumerCloses = %d", st.SlowConsumerCloses)
	}
	ok.expect(apiEvent("ev", "x", "test-channel"))
}

func TestTriggerExceptAndBatching(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.connect(), e.connect()
	e.subscribe(a, "test-channel", "")
	e.subscribe(b, "test-channel", "")
	e.srv.trigger(e.app, "test-channel", "ev", "1", a.id())
	a.expectNothing()
	b.expect(apiEvent("ev", "1", "test-channel"))
	e.srv.trigger(e.app, "nobody-here", "ev", "1", "")
	a.expectNothing()
	b.expectNothing()
}

// TestConcurrentDelivery drives a shard from its own goroutine (as an event
// loop does) while several goroutines trigger events, for the race detector.
func TestConcurrentDelivery(t *testing.T) {
	app := &App{ID: testAppID, Key: testKey, Secret: testSecret}
	srv, err := NewServer(Options{Apps: []*App{app}, Logger: quietLogger()}, 2)
	if err != nil {
		t.Fatal(err)
	}
	type loop struct {
		jobs chan func()
		done chan struct{}
	}
	var loops []*loop
	var shards []*Shard
	for range 2 {
		l := &loop{jobs: make(chan func(), 1024), done: make(chan struct{})}
		go func() {
			defer close(l.done)
			for f := range l.jobs {
				f()
			}
		}()
		loops = append(loops, l)
		shards = append(shards, srv.NewShard(func(f func()) { l.jobs <- f }))
	}
	run := func(i int, f func()) {
		done := make(chan struct{})
		loops[i].jobs <- func() { f(); close(done) }
		<-done
	}
	conns := make([]*fakeConn, 4)
	for i := range conns {
		conns[i] = newFakeConn(t)
		run(i%2, func() {
			s := srv.Open(shards[i%2], conns[i], testKey, "")
			s.HandleMessage([]byte(subMsg("test-channel", "", "")))
		})
	}
	const writers, each = 4, 50
	finished := make(chan struct{})
	for w := range writers {
		go func() {
			for i := range each {
				srv.trigger(app, "test-channel", "ev", strconv.Itoa(w*1000+i), "")
			}
			finished <- struct{}{}
		}()
	}
	for range writers {
		<-finished
	}
	// Flush the loops.
	run(0, func() {})
	run(1, func() {})
	for _, l := range loops {
		close(l.jobs)
		<-l.done
	}
	for i, c := range conns {
		msgs := c.take()
		if len(msgs) != 2+writers*each { // established + succeeded + events
			t.Errorf("conn %d got %d messages, want %d", i, len(msgs), 2+writers*each)
		}
	}
}
