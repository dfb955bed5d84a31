package pusher

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reverbgo/reverb/webhooks"
)

// fakeSink is a WebhookSink that records the events.
type fakeSink struct {
	mu     sync.Mutex
	events []webhooks.Event
	counts bool // record subscription_count events too
}

func (f *fakeSink) Enabled(appID, name string) bool { return true }

func (f *fakeSink) Emit(appID string, ev webhooks.Event) {
	f.mu.Lock()
	if ev.Name == webhooks.SubscriptionCount && !f.counts {
		f.mu.Unlock()
		return
	}
	f.events = append(f.events, ev)
	f.mu.Unlock()
}

// take returns and forgets the events so far, as short strings.
func (f *fakeSink) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, ev := range f.events {
		out = append(out, hookString(ev))
	}
	f.events = nil
	return out
}

func (f *fakeSink) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.events)
}

func hookString(ev webhooks.Event) string {
	s := ev.Name + " " + ev.Channel
	if ev.UserID != "" {
		s += " user=" + ev.UserID
	}
	if ev.Event != "" {
		s += " event=" + ev.Event + " data=" + ev.Data + " socket=" + ev.SocketID
	}
	if ev.Name == webhooks.SubscriptionCount {
		s += " count=" + strconv.Itoa(ev.SubscriptionCount)
	}
	return s
}

// loopEnv is a testEnv whose shard runs what other goroutines hand it (the
// tracker's callbacks, deliveries) only when the test pumps it: the test's
// goroutine is the shard's loop, so sessions are never touched elsewhere.
type loopEnv struct {
	*testEnv
	jobs chan func()
	sink *fakeSink
}

func newLoopEnv(t *testing.T, mod func(o *Options)) *loopEnv {
	t.Helper()
	app := &App{ID: testAppID, Key: testKey, Secret: testSecret}
	clock := newTestClock()
	sink := &fakeSink{}
	opts := Options{Apps: []*App{app}, Logger: quietLogger(), Now: clock.Now, Webhooks: sink, VacateDelay: -1}
	if mod != nil {
		mod(&opts)
	}
	srv, err := NewServer(opts, 1)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	jobs := make(chan func(), 4096)
	sh := srv.NewShard(func(f func()) { jobs <- f })
	return &loopEnv{testEnv: &testEnv{t: t, srv: srv, sh: sh, app: app, clock: clock}, jobs: jobs, sink: sink}
}

// pump runs the shard's jobs of every env until cond holds, failing after
// a timeout.
func pump(t *testing.T, cond func() bool, envs ...*loopEnv) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in time")
		}
		ran := false
		for _, e := range envs {
			select {
			case f := <-e.jobs:
				f()
				ran = true
			default:
			}
		}
		if !ran {
			time.Sleep(time.Millisecond) // polling for a condition, not settling
		}
	}
}

// settle waits until the tracker ran every callback queued so far and the
// shard every job they queued.
func (e *loopEnv) settle(envs ...*loopEnv) {
	e.t.Helper()
	done := make(chan struct{})
	e.srv.tracker.Holding(e.app, nil, func([]bool) { close(done) })
	all := append([]*loopEnv{e}, envs...)
	pump(e.t.(*testing.T), func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}, all...)
	for _, x := range all {
		for len(x.jobs) > 0 {
			(<-x.jobs)()
		}
	}
}

// waitHooks waits for n webhook events and returns them.
func (e *loopEnv) waitHooks(n int, envs ...*loopEnv) []string {
	e.t.Helper()
	pump(e.t.(*testing.T), func() bool { return e.sink.len() >= n }, append([]*loopEnv{e}, envs...)...)
	return e.sink.take()
}

func expectHooks(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("webhooks:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestWebhookOccupiedVacated(t *testing.T) {
	for range 20 {
		e := newLoopEnv(t, nil)
		a, b := e.connect(), e.connect()
		e.subscribe(a, "private-a", "")
		e.subscribe(b, "private-a", "")
		expectHooks(t, e.waitHooks(1), "channel_occupied private-a")
		a.send(unsubMsg("private-a"))
		e.settle()
		expectHooks(t, e.sink.take()) // b is still there
		e.close(b)
		expectHooks(t, e.waitHooks(1), "channel_vacated private-a")
	}
}

func TestWebhookVacateDelay(t *testing.T) {
	e := newLoopEnv(t, func(o *Options) { o.VacateDelay = 20 * time.Millisecond })
	a := e.connect()
	e.subscribe(a, "test", "")
	expectHooks(t, e.waitHooks(1), "channel_occupied test")
	a.send(unsubMsg("test"))
	e.settle()
	expectHooks(t, e.sink.take()) // not yet: the delay runs
	expectHooks(t, e.waitHooks(1), "channel_vacated test")
}

func TestWebhookResubscribeWithinDelay(t *testing.T) {
	for range 20 {
		e := newLoopEnv(t, func(o *Options) { o.VacateDelay = time.Hour })
		a := e.connect()
		e.subscribe(a, "test", "")
		expectHooks(t, e.waitHooks(1), "channel_occupied test")
		a.send(unsubMsg("test"))
		e.subscribe(a, "test", "")
		e.settle()
		expectHooks(t, e.sink.take()) // nothing: never vacated, not occupied again
	}
}

func TestWebhookMembers(t *testing.T) {
	for range 20 {
		e := newLoopEnv(t, nil)
		a, b, c := e.connect(), e.connect(), e.connect()
		e.subscribe(a, "presence-r", presenceData(`7`, "x"))
		e.subscribe(b, "presence-r", presenceData(`"7"`, "x")) // the same user
		e.subscribe(c, "presence-r", presenceData(`"u-2"`, "y"))
		expectHooks(t, e.waitHooks(3),
			"channel_occupied presence-r", "member_added presence-r user=7", "member_added presence-r user=u-2")
		e.close(a)
		e.settle()
		expectHooks(t, e.sink.take()) // 7 still has b
		e.close(b)
		expectHooks(t, e.waitHooks(1), "member_removed presence-r user=7")
		e.close(c)
		expectHooks(t, e.waitHooks(2), "member_removed presence-r user=u-2", "channel_vacated presence-r")
	}
}

func TestWebhookClientEvent(t *testing.T) {
	e := newLoopEnv(t, nil)
	a, b := e.connect(), e.connect()
	e.subscribe(a, "private-c", "")
	e.subscribe(a, "presence-c", presenceData(`12`, "x"))
	e.subscribe(b, "private-c", "")
	e.waitHooks(3) // occupied twice, member_added
	a.send(`{"event":"client-obj","channel":"private-c","data":{"a": 1}}`)
	a.send(`{"event":"client-str","channel":"private-c","data":"{\"b\":2}"}`)
	a.send(`{"event":"client-p","channel":"presence-c","data":[1]}`)
	a.send(`{"event":"client-bad","channel":"test","data":{}}`) // refused: no webhook
	expectHooks(t, e.sink.take(),
		`client_event private-c event=client-obj data={"a": 1} socket=`+a.id(),
		`client_event private-c event=client-str data={"b":2} socket=`+a.id(),
		`client_event presence-c user=12 event=client-p data=[1] socket=`+a.id())
}

func TestWebhookCacheMiss(t *testing.T) {
	e := newLoopEnv(t, nil)
	a := e.connect()
	a.send(subMsg("cache-x", "", ""))
	got := a.take()
	if len(got) != 2 || got[1] != `{"event":"pusher:cache_miss","channel":"cache-x"}` {
		t.Fatalf("got %q", got)
	}
	got = e.waitHooks(2)
	sort.Strings(got) // cache_miss is sent from the loop, channel_occupied from the tracker
	expectHooks(t, got, "cache_miss cache-x", "channel_occupied cache-x")
	if err := e.srv.Trigger(e.app, "cache-x", "ev", "{}", ""); err != nil {
		t.Fatal(err)
	}
	e.settle()
	a.take()
	b := e.connect()
	b.send(subMsg("cache-x", "", ""))
	e.settle()
	if got := b.take(); len(got) != 2 || !strings.Contains(got[1], `"event":"ev"`) {
		t.Errorf("got %q", got)
	}
	expectHooks(t, e.sink.take()) // cached: no miss
}

func countMsg(channel string, n int) string {
	return `{"event":"pusher_internal:subscription_count","channel":` + q(channel) + `,"data":` + q(`{"subscription_count":`+strconv.Itoa(n)+`}`) + `}`
}

// waitMsgs pumps until c received n messages and returns them.
func (e *loopEnv) waitMsgs(c *client, n int) []string {
	e.t.Helper()
	var got []string
	pump(e.t.(*testing.T), func() bool {
		got = append(got, c.take()...)
		return len(got) >= n
	}, e)
	return got
}

func TestSubscriptionCount(t *testing.T) {
	for range 20 {
		e := newLoopEnv(t, func(o *Options) { o.Apps[0].SubscriptionCounting = true })
		e.sink.counts = true
		a, b := e.connect(), e.connect()
		e.subscribe(a, "test", "")
		if got := e.waitMsgs(a, 1); got[0] != countMsg("test", 1) {
			t.Fatalf("got %q", got)
		}
		e.subscribe(b, "test", "")
		e.settle()
		a.expect(countMsg("test", 2))
		if got := b.take(); len(got) == 0 || got[len(got)-1] != countMsg("test", 2) {
			t.Fatalf("new subscriber got %q", got)
		}
		b.send(unsubMsg("test"))
		e.settle()
		a.expect(countMsg("test", 1))
		b.expectNothing()
		// Presence channels have no count.
		e.subscribe(a, "presence-p", presenceData(`1`, "x"))
		e.settle()
		a.expectNothing()
		expectHooks(t, filterHooks(e.sink.take(), "subscription_count"),
			"subscription_count test count=1", "subscription_count test count=2", "subscription_count test count=1")
	}
}

func filterHooks(got []string, prefix string) []string {
	var out []string
	for _, s := range got {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func TestSubscriptionCountBusyChannel(t *testing.T) {
	e := newLoopEnv(t, func(o *Options) { o.Apps[0].SubscriptionCounting = true })
	e.srv.countWindow = 500 * time.Millisecond
	a := e.connect()
	e.subscribe(a, "test", "")
	e.waitMsgs(a, 1)
	e.clock.Advance(time.Second) // the window of the count of 1 is over
	e.srv.DeliverCount(e.app, "test", 150, 100)
	e.settle()
	a.expect(countMsg("test", 150)) // the first of a window goes at once
	e.srv.DeliverCount(e.app, "test", 151, 101)
	e.srv.DeliverCount(e.app, "test", 152, 102)
	e.srv.DeliverCount(e.app, "test", 149, 99) // older: ignored
	e.settle()
	a.expectNothing()
	if got := e.waitMsgs(a, 1); len(got) != 1 || got[0] != countMsg("test", 152) {
		t.Errorf("trailing send: got %q", got)
	}
	// A new subscriber of a busy channel gets the known count at once.
	b := e.connect()
	b.send(subMsg("test", "", ""))
	if got := b.take(); len(got) != 2 || got[1] != countMsg("test", 152) {
		t.Errorf("new subscriber got %q", got)
	}
	// Back to 100 or fewer: at once.
	e.srv.DeliverCount(e.app, "test", 90, 200)
	e.settle()
	a.expect(countMsg("test", 90))
}

// signin signs c in as user data ud and returns what it received.
func (e *loopEnv) signin(c *client, ud string) []string {
	c.send(signinMsg(userAuth(testKey, testSecret, c.id(), ud), ud))
	return c.take()
}

func watchMsg(name string, ids ...string) string {
	return `{"event":"pusher_internal:watchlist_events","data":` + q(`{"events":[{"name":"`+name+`","user_ids":[`+quoteAll(ids)+`]}]}`) + `}`
}

func quoteAll(ids []string) string {
	var s []string
	for _, id := range ids {
		s = append(s, q(id))
	}
	return strings.Join(s, ",")
}

func TestWatchlist(t *testing.T) {
	for range 20 {
		e := newLoopEnv(t, func(o *Options) { o.Apps[0].WatchlistEvents = true })
		one, two := e.connect(), e.connect()
		e.signin(one, `{"id":"1"}`)
		e.settle()
		if got := e.signin(two, `{"id":"2","watchlist":["1",3,"4"]}`); len(got) != 1 {
			t.Fatalf("signin: %q", got)
		}
		if got := e.waitMsgs(two, 1); got[0] != watchMsg("online", "1") {
			t.Fatalf("got %q", got)
		}
		three := e.connect()
		e.signin(three, `{"id":"3"}`)
		if got := e.waitMsgs(two, 1); got[0] != watchMsg("online", "3") {
			t.Fatalf("got %q", got)
		}
		// A second connection of 3 changes nothing; its last one going does.
		three2 := e.connect()
		e.signin(three2, `{"id":"3"}`)
		e.close(three)
		e.settle()
		two.expectNothing()
		e.close(three2)
		if got := e.waitMsgs(two, 1); got[0] != watchMsg("offline", "3") {
			t.Fatalf("got %q", got)
		}
		one.expectNothing() // watches nobody
		e.close(two)
		e.close(one)
		e.settle()
	}
}

func TestWatchlistTooLong(t *testing.T) {
	e := newLoopEnv(t, func(o *Options) { o.Apps[0].WatchlistEvents = true })
	var ids []string
	for i := range 105 {
		ids = append(ids, strconv.Itoa(i))
	}
	ud := `{"id":"x","watchlist":[` + strings.Join(ids, ",") + `]}`
	c := e.connect()
	got := e.signin(c, ud)
	if len(got) != 2 || !strings.HasPrefix(got[0], `{"event":"pusher:signin_success"`) ||
		got[1] != errMsg(4302, ErrWatchlistTooLong.Message) {
		t.Fatalf("got %q", got)
	}
	// The first 100 are watched, the rest not.
	for _, id := range []string{"99", "100"} {
		other := e.connect()
		e.signin(other, `{"id":"`+id+`"}`)
	}
	e.settle()
	c.expect(watchMsg("online", "99"))
}

func TestParseWatchlist(t *testing.T) {
	tests := []struct {
		raw  string
		want string
		over bool
	}{
		{``, `[]`, false},
		{`null`, `[]`, false},
		{`"1"`, `[]`, false},
		{`{"a":1}`, `[]`, false},
		{`["1", 2, -3, 1.5, true, null, {}, "", "1"]`, `[1 2 -3 1.5]`, false},
	}
	for _, tt := range tests {
		got, over := parseWatchlist([]byte(tt.raw))
		if fmt.Sprint(got) != tt.want || over != tt.over {
			t.Errorf("parseWatchlist(%s) = %v %v, want %s %v", tt.raw, got, over, tt.want, tt.over)
		}
	}
}

func TestKeyReleasedAndCounted(t *testing.T) {
	e := newLoopEnv(t, func(o *Options) {
		o.Apps[0].WatchlistEvents = true
		o.Apps[0].SubscriptionCounting = true
	})
	e.sink.counts = true
	w := e.connect()
	e.signin(w, `{"id":"w","watchlist":["gone"]}`)
	e.subscribe(w, "test", "")
	e.waitMsgs(w, 1)
	e.waitHooks(2) // channel_occupied, subscription_count
	e.srv.KeyReleased(e.app, keyChannel("private-z"))
	e.srv.KeyReleased(e.app, keyMember("presence-z", "u\n1"))
	e.srv.KeyReleased(e.app, keyUser("gone"))
	e.srv.KeyReleased(e.app, "x:bogus")
	e.srv.KeyReleased(e.app, "m:nochannel")
	e.srv.KeyCounted(e.app, keyCount("test"), 7, 1000)
	e.settle()
	expectHooks(t, e.sink.take(), "channel_vacated private-z", "member_removed presence-z user=u\n1",
		"subscription_count test count=7")
	w.expect(watchMsg("offline", "gone"), countMsg("test", 7))
}

// pairBroker joins two servers in one process: counts and online changes go
// to the peer, and the Tracker is a MemoryTracker both share. With late set,
// Await answers later, from another goroutine.
type pairBroker struct {
	NopBroker
	*MemoryTracker
	peer *Server
	late bool
}

func (b *pairBroker) PublishCount(app *App, channel string, total int64, seq uint64) {
	if b.peer != nil {
		b.peer.DeliverCount(app, channel, total, seq)
	}
}

func (b *pairBroker) PublishOnline(app *App, id string, online bool) {
	if b.peer != nil {
		b.peer.DeliverOnline(app, id, online)
	}
}

func (b *pairBroker) Await(app *App, channel string, done func()) bool {
	if !b.late {
		return true
	}
	go done()
	return false
}

func TestTwoServers(t *testing.T) {
	for round := range 20 {
		app := &App{ID: testAppID, Key: testKey, Secret: testSecret, SubscriptionCounting: true, WatchlistEvents: true}
		mod := func(o *Options) { o.Apps[0] = app; o.VacateDelay = 5 * time.Millisecond }
		e1, e2 := newLoopEnv(t, mod), newLoopEnv(t, mod)
		tr := NewMemoryTracker()
		b1, b2 := &pairBroker{MemoryTracker: tr}, &pairBroker{MemoryTracker: tr}
		b1.peer, b2.peer = e2.srv, e1.srv
		e1.srv.SetBroker(b1)
		e2.srv.SetBroker(b2)
		if e1.srv.tracker != Tracker(b1) {
			t.Fatal("the broker's Tracker is not used")
		}
		hooks := func() int { return e1.sink.len() + e2.sink.len() }
		both := []*loopEnv{e1, e2}

		a, b := e1.connect(), e2.connect()
		e1.subscribe(a, "test", "")
		e2.subscribe(b, "test", "")
		var gotA, gotB []string
		pump(t, func() bool {
			gotA, gotB = append(gotA, a.take()...), append(gotB, b.take()...)
			return len(gotA) > 0 && gotA[len(gotA)-1] == countMsg("test", 2) &&
				len(gotB) > 0 && gotB[len(gotB)-1] == countMsg("test", 2)
		}, both...)
		pump(t, func() bool { return hooks() >= 1 }, both...)
		e1.settle(e2)
		got := append(e1.sink.take(), e2.sink.take()...)
		expectHooks(t, got, "channel_occupied test") // once in the cluster

		// Watchlists across the nodes: 1 online before, 3 after the signin.
		u1, w := e1.connect(), e2.connect()
		e1.signin(u1, `{"id":"1"}`)
		e1.settle(e2)
		e2.signin(w, `{"id":"w","watchlist":["1","3"]}`)
		if got := e2.waitMsgs(w, 1); got[0] != watchMsg("online", "1") {
			t.Fatalf("round %d: got %q", round, got)
		}
		u3 := e1.connect()
		e1.signin(u3, `{"id":"3"}`)
		pump(t, func() bool { return len(w.conn.frames) > 0 }, both...)
		w.expect(watchMsg("online", "3"))
		e1.close(u3)
		pump(t, func() bool { return len(w.conn.frames) > 0 }, both...)
		w.expect(watchMsg("offline", "3"))

		e1.close(a)
		e1.settle(e2)
		expectHooks(t, append(e1.sink.take(), e2.sink.take()...))
		e2.close(b)
		pump(t, func() bool { return hooks() >= 1 }, both...)
		e1.settle(e2)
		expectHooks(t, append(e1.sink.take(), e2.sink.take()...), "channel_vacated test")
	}
}

// TestCountAfterLateSubscription: a subscription answered after the broker
// kept it waiting gets the count it may have missed, after its
// subscription_succeeded.
func TestCountAfterLateSubscription(t *testing.T) {
	for range 20 {
		e := newLoopEnv(t, func(o *Options) { o.Apps[0].SubscriptionCounting = true })
		e.srv.SetBroker(&pairBroker{MemoryTracker: NewMemoryTracker(), late: true})
		a := e.connect()
		a.send(subMsg("test", "", ""))
		got := e.waitMsgs(a, 2)
		if got[0] != succeeded("test", "") || got[len(got)-1] != countMsg("test", 1) {
			t.Fatalf("got %q", got)
		}
	}
}

func FuzzParseWatchlist(f *testing.F) {
	f.Add([]byte(`["1", 2, -3, "x\n", null]`), uint(3))
	f.Add([]byte(`[`+strings.Repeat(`"a",`, 5)+`1]`), uint(0))
	f.Fuzz(func(t *testing.T, raw []byte, cut uint) {
		// Any prefix of the input, as a truncated message would give.
		for _, in := range [][]byte{raw, raw[:int(cut%uint(len(raw)+1))]} {
			ids, over := parseWatchlist(in)
			if len(ids) > maxWatchlist || (over && len(ids) != maxWatchlist) {
				t.Fatalf("%d ids, over=%v", len(ids), over)
			}
			seen := map[string]bool{}
			for _, id := range ids {
				if id == "" || seen[id] {
					t.Fatalf("empty or repeated id %q", id)
				}
				seen[id] = true
			}
		}
	})
}
