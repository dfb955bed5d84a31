package pusher

import (
	"context"
	"testing"

	"github.com/gobwas/ws"
)

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
	e.srv.Trigger(e.app, "test-channel", "ev", "x", "")
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
	e.srv.Trigger(e.app, "test-channel", "ev", "1", a.id())
	a.expectNothing()
	b.expect(apiEvent("ev", "1", "test-channel"))
	e.srv.Trigger(e.app, "nobody-here", "ev", "1", "")
	a.expectNothing()
	b.expectNothing()
}
