package pusher

import (
	"context"
	"testing"
	"time"
)

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
			a.sess.perSecond.clientEvents = 0
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
