package pusher

import (
	"context"
	"strings"
	"testing"
	"time"
)

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
	e.srv.Trigger(e.app, "test-channel", "App\\Events\\Ev", `{"a":1}`, "")
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
			e.srv.Trigger(e.app, tt.channel, "ev", "d", "")
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

	e.srv.Trigger(e.app, "test-channel", "ev", "x", "")
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
