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
