package pusher

import (
	"fmt"
	"testing"
)

// queuedEnv is a testEnv whose shard's loop tasks wait in a queue until the
// test runs them, as gnet runs Execute tasks between its other work.
func queuedEnv(t *testing.T, chunk int) (*testEnv, *[]func()) {
	t.Helper()
	app := &App{ID: testAppID, Key: testKey, Secret: testSecret}
	clock := newTestClock()
	srv, err := NewServer(Options{Apps: []*App{app}, Logger: quietLogger(), Now: clock.Now, FanoutChunk: chunk}, 1)
	if err != nil {
		t.Fatal(err)
	}
	q := new([]func())
	sh := srv.NewShard(func(f func()) { *q = append(*q, f) })
	sh.SetResume(func(f func()) { *q = append(*q, f) })
	return &testEnv{t: t, srv: srv, sh: sh, app: app, clock: clock}, q
}

// runOne runs the oldest queued loop task; it reports false when none is
// queued.
func runOne(q *[]func()) bool {
	if len(*q) == 0 {
		return false
	}
	f := (*q)[0]
	*q = (*q)[1:]
	f()
	return true
}

// A broadcast to more subscribers than FanoutChunk is written in chunks, one
// loop task each, so that other work runs between them; every subscriber
// gets every event once, in order.
func TestFanoutDrainsInChunks(t *testing.T) {
	for round := range 20 {
		chunk := 1 + round%4
		e, q := queuedEnv(t, chunk)
		var cs []*client
		for range 10 {
			c := e.connect()
			c.send(subMsg("news", "", ""))
			for runOne(q) {
			}
			c.take()
			cs = append(cs, c)
		}
		if err := e.srv.Trigger(e.app, "news", "a", `"1"`, ""); err != nil {
			t.Fatal(err)
		}
		if err := e.srv.Trigger(e.app, "news", "b", `"2"`, ""); err != nil {
			t.Fatal(err)
		}
		if !runOne(q) {
			t.Fatal("no drain queued")
		}
		got := 0
		for _, c := range cs {
			if len(c.conn.frames) > 0 {
				got++
			}
		}
		if got != chunk {
			t.Fatalf("round %d: the first task wrote to %d connections, want %d", round, got, chunk)
		}
		for runOne(q) {
		}
		for _, c := range cs {
			c.expect(apiEvent("a", `"1"`, "news"), apiEvent("b", `"2"`, "news"))
		}
		if want := int64((10+chunk-1)/chunk - 1); e.sh.stats.fanoutYields != want {
			t.Fatalf("round %d: fan-out yields %d, want %d", round, e.sh.stats.fanoutYields, want)
		}
	}
}

// A reply to a connection whose broadcast frames are gathered but not yet
// written goes out after them, and they are not written twice.
func TestReplyWaitsForGatheredFrames(t *testing.T) {
	e, q := queuedEnv(t, 1)
	var cs []*client
	for range 3 {
		c := e.connect()
		c.send(subMsg("news", "", ""))
		for runOne(q) {
		}
		c.take()
		cs = append(cs, c)
	}
	for i := range 3 {
		if err := e.srv.Trigger(e.app, "news", fmt.Sprint("e", i), `"x"`, ""); err != nil {
			t.Fatal(err)
		}
	}
	runOne(q) // writes to one connection; the other two wait
	for _, c := range cs {
		c.send(`{"event":"pusher:ping"}`)
	}
	for runOne(q) {
	}
	for _, c := range cs {
		c.expect(apiEvent("e0", `"x"`, "news"), apiEvent("e1", `"x"`, "news"), apiEvent("e2", `"x"`, "news"), `{"event":"pusher:pong"}`)
	}
}

// Frames from several deliveries of one drain, to overlapping sets of
// subscribers, some of them with permessage-deflate, reach every connection
// in order, around a reply written while a connection's frames wait, and a
// connection closed while its frames wait gets none of them.
func TestDrainOrderMixed(t *testing.T) {
	for round := range 20 {
		e, q := queuedEnv(t, 1+round%3)
		var cs []*client
		for i := range 6 {
			c := e.connect()
			if i%2 == 1 {
				c.sess.EnableDeflate()
			}
			c.send(subMsg("news", "", ""))
			if i%3 != 0 {
				c.send(subMsg("other", "", ""))
			}
			for runOne(q) {
			}
			c.take()
			cs = append(cs, c)
		}
		for i, ch := range []string{"news", "other", "news"} {
			if err := e.srv.Trigger(e.app, ch, fmt.Sprint("e", i), `"x"`, ""); err != nil {
				t.Fatal(err)
			}
		}
		runOne(q) // gathers everything, writes to the first chunk only
		closed := cs[5]
		before := len(closed.conn.frames)
		e.close(closed)
		for _, c := range cs[:5] {
			c.send(`{"event":"pusher:ping"}`)
		}
		if err := e.srv.Trigger(e.app, "news", "e3", `"x"`, ""); err != nil {
			t.Fatal(err)
		}
		for runOne(q) {
		}
		for i, c := range cs[:5] {
			want := []string{apiEvent("e0", `"x"`, "news")}
			if i%3 != 0 {
				want = append(want, apiEvent("e1", `"x"`, "other"))
			}
			want = append(want, apiEvent("e2", `"x"`, "news"), `{"event":"pusher:pong"}`, apiEvent("e3", `"x"`, "news"))
			c.expect(want...)
			if c.sess.gathered || len(c.sess.pending) != 0 {
				t.Fatalf("round %d: client %d still has gathered frames", round, i)
			}
		}
		if n := len(closed.conn.frames); n != before {
			t.Fatalf("round %d: %d frames written after close", round, n-before)
		}
		if len(e.sh.touched) != 0 || e.sh.flushed != 0 {
			t.Fatalf("round %d: drain list not emptied: %d touched, %d flushed", round, len(e.sh.touched), e.sh.flushed)
		}
	}
}
