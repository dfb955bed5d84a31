package pusher

import (
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

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
				srv.Trigger(app, "test-channel", "ev", strconv.Itoa(w*1000+i), "")
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
