package pusher

import (
	"context"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

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
