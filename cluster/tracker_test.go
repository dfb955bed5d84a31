package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/reverbgo/reverb/cluster/redistest"
	"github.com/reverbgo/reverb/pusher"
)

// These tests run brokers in this process over a real Redis, each with a
// fakeNode for an engine.

// trackWait bounds the waits of these tests: a reap takes NodeTimeout,
// heartbeats and the release delay.
const trackWait = 15 * time.Second

// fakeNode is a pusher.Node that records what the broker calls.
type fakeNode struct {
	app *pusher.App

	mu       sync.Mutex
	counts   []string // "channel total seq"
	online   []string // "user true|false"
	released []string // keys
	counted  []string // "key total"
}

func (f *fakeNode) Apps() []*pusher.App                                                   { return []*pusher.App{f.app} }
func (f *fakeNode) DeliverRemote(*pusher.App, string, []byte, string)                     {}
func (f *fakeNode) StoreCache(*pusher.App, string, []byte)                                {}
func (f *fakeNode) RemotePresenceJoin(string, *pusher.App, string, pusher.PresenceMember) {}
func (f *fakeNode) RemotePresenceLeave(string, *pusher.App, string, string)               {}
func (f *fakeNode) ReplaceNodePresence(string, []pusher.PresenceChange)                   {}
func (f *fakeNode) DropNode(string)                                                       {}
func (f *fakeNode) WithLocalPresence(fn func([]pusher.PresenceChange))                    { fn(nil) }
func (f *fakeNode) WithLocalDigest(fn func(map[string]pusher.PresenceDigest))             { fn(nil) }
func (f *fakeNode) NodeDigest(string) map[string]pusher.PresenceDigest                    { return nil }
func (f *fakeNode) Answer(*pusher.App, pusher.Query) pusher.Reply                         { return pusher.Reply{} }
func (f *fakeNode) TerminateLocal(*pusher.App, string)                                    {}

func (f *fakeNode) DeliverCount(app *pusher.App, channel string, total int64, seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts = append(f.counts, fmt.Sprintf("%s %d %d", channel, total, seq))
}

func (f *fakeNode) DeliverOnline(app *pusher.App, userID string, online bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.online = append(f.online, fmt.Sprintf("%s %v", userID, online))
}

func (f *fakeNode) KeyReleased(app *pusher.App, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, key)
}

func (f *fakeNode) KeyCounted(app *pusher.App, key string, total int64, seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counted = append(f.counted, fmt.Sprintf("%s %d", key, total))
}

// calls returns a copy of one of the recorded lists.
func (f *fakeNode) calls(list *[]string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(*list)
}

var _ pusher.Node = (*fakeNode)(nil)

// trackNode is a broker over real Redis with a fakeNode.
type trackNode struct {
	*Redis
	fake *fakeNode
	tb   *testing.T
}

// trackConfig is the configuration of these tests for a standalone Redis
// (srv) or a Redis Cluster (cl): fast heartbeats, a short node timeout and
// release delay.
func trackConfig(srv *redistest.Server, cl *redistest.Cluster, prefix string) Config {
	c := Config{
		Channel:           prefix,
		HeartbeatInterval: 100 * time.Millisecond,
		NodeTimeout:       time.Second,
		PublishTimeout:    2 * time.Second,
		ReleaseDelay:      300 * time.Millisecond,
		Logger:            slog.New(slog.DiscardHandler),
	}
	if cl != nil {
		c.Mode, c.Addrs = ModeCluster, cl.Addrs
	} else {
		c.Port = srv.Port
	}
	return c
}

func startTrackNode(t *testing.T, cfg Config) *trackNode {
	t.Helper()
	app := &pusher.App{ID: "app-1", Key: "k", Secret: "s"}
	f := &fakeNode{app: app}
	r, err := NewRedis(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(r.Close)
	waitFor(t, "the broker is connected", func() bool { return !r.Degraded() })
	return &trackNode{Redis: r, fake: f, tb: t}
}

// waitFor polls cond until it holds, failing after trackWait.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(trackWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval
	}
}

// recv waits for a callback's answer.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(trackWait):
		t.Fatalf("no answer: %s", what)
		panic("unreachable")
	}
}

func (n *trackNode) hold(key string) <-chan bool {
	ch := make(chan bool, 1)
	n.Hold(n.fake.app, key, func(first bool) { ch <- first })
	return ch
}

func (n *trackNode) release(key string, delay time.Duration) <-chan bool {
	ch := make(chan bool, 1)
	n.Release(n.fake.app, key, delay, func(last bool) { ch <- last })
	return ch
}

type countAnswer struct {
	total int64
	seq   uint64
}

func (n *trackNode) count(key string, delta int64) <-chan countAnswer {
	ch := make(chan countAnswer, 1)
	n.Count(n.fake.app, key, delta, func(total int64, seq uint64) { ch <- countAnswer{total, seq} })
	return ch
}

func (n *trackNode) holding(keys ...string) []bool {
	ch := make(chan []bool, 1)
	n.Holding(n.fake.app, keys, func(h []bool) { ch <- h })
	return recv(n.tb, ch, "holding")
}

// crash stops n as a killed process would: no bye, its tracker state left
// in Redis.
func (n *trackNode) crash() {
	n.closing.Store(true) // nothing more is published
	n.stopTracker()
	close(n.stopping)
	n.wg.Wait()
	n.trk.reapWG.Wait()
	_ = n.t.close()
}

// trickyKey is a tracker key with the bytes that could break hash tags or
// parsing.
func trickyKey(i int) string { return fmt.Sprintf("m:presence-a}{b%d\nuser:}%d", i, i) }

// holdRace: both nodes hold the same key at once; exactly one is first.
// Both release at once; exactly one is last, after the delay.
func holdRace(t *testing.T, a, b *trackNode, rounds int) {
	for i := range rounds {
		key := trickyKey(i)
		var wg sync.WaitGroup
		var ha, hb <-chan bool
		wg.Add(2)
		go func() { defer wg.Done(); ha = a.hold(key) }()
		go func() { defer wg.Done(); hb = b.hold(key) }()
		wg.Wait()
		fa, fb := recv(t, ha, "hold a"), recv(t, hb, "hold b")
		if fa == fb {
			t.Fatalf("round %d: first = %v and %v, want exactly one", i, fa, fb)
		}
		if h := a.holding(key, key+"x"); !h[0] || h[1] {
			t.Fatalf("round %d: holding = %v", i, h)
		}
		start := time.Now()
		var ra, rb <-chan bool
		wg.Add(2)
		go func() { defer wg.Done(); ra = a.release(key, 100*time.Millisecond) }()
		go func() { defer wg.Done(); rb = b.release(key, 100*time.Millisecond) }()
		wg.Wait()
		la, lb := recv(t, ra, "release a"), recv(t, rb, "release b")
		if la == lb {
			t.Fatalf("round %d: last = %v and %v, want exactly one", i, la, lb)
		}
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Fatalf("round %d: last after %s, before the delay", i, d)
		}
		if h := b.holding(key); h[0] {
			t.Fatalf("round %d: still held after the last release", i)
		}
	}
}

func TestTrackerHoldRace(t *testing.T) {
	srv := redistest.Start(t)
	cfg := trackConfig(srv, nil, "race")
	a, b := startTrackNode(t, cfg), startTrackNode(t, cfg)
	holdRace(t, a, b, 20)
}

// TestTrackerHoldRaceRedisCluster: the keys of a tracked key share a slot
// (a script touching two slots would fail with CROSSSLOT).
func TestTrackerHoldRaceRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	cfg := trackConfig(nil, cl, "crace")
	a, b := startTrackNode(t, cfg), startTrackNode(t, cfg)
	holdRace(t, a, b, 20)
	countsAcrossNodes(t, a, b, 20)
	if st := a.Stats(); st.TrackerErrors != 0 {
		t.Fatalf("tracker errors: %+v", st)
	}
}

// TestTrackerHoldCancelsRelease: a hold on the other node while a release
// waits out its delay cancels it: neither is announced.
func TestTrackerHoldCancelsRelease(t *testing.T) {
	srv := redistest.Start(t)
	cfg := trackConfig(srv, nil, "cancel")
	a, b := startTrackNode(t, cfg), startTrackNode(t, cfg)
	for i := range 20 {
		key := fmt.Sprintf("c:room-%d", i)
		if !recv(t, a.hold(key), "hold") {
			t.Fatal("first hold not first")
		}
		rel := a.release(key, 300*time.Millisecond)
		if recv(t, b.hold(key), "hold b") {
			t.Fatalf("round %d: the hold during the delay was first", i)
		}
		if recv(t, rel, "release") {
			t.Fatalf("round %d: the cancelled release was last", i)
		}
		// Then released for good.
		if !recv(t, b.release(key, 0), "release b") {
			t.Fatalf("round %d: the last release was not last", i)
		}
	}
	// The same node holding again during its own delay cancels too, and
	// the release answers before the hold.
	var order []string
	var mu sync.Mutex
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	done := make(chan bool, 2)
	a.Hold(a.fake.app, "c:self", func(bool) { done <- true })
	recv(t, done, "hold")
	a.Release(a.fake.app, "c:self", 300*time.Millisecond, func(last bool) { note(fmt.Sprint("release ", last)); done <- true })
	a.Hold(a.fake.app, "c:self", func(first bool) { note(fmt.Sprint("hold ", first)); done <- true })
	recv(t, done, "1")
	recv(t, done, "2")
	if want := []string{"release false", "hold false"}; !slices.Equal(order, want) {
		t.Fatalf("answers %v, want %v", order, want)
	}
}

// countsAcrossNodes: counts of two nodes add up, seq grows, and applying
// a node's share again changes nothing.
func countsAcrossNodes(t *testing.T, a, b *trackNode, rounds int) {
	for i := range rounds {
		key := fmt.Sprintf("n:chan}%d", i)
		var last uint64
		check := func(ch <-chan countAnswer, want int64) {
			t.Helper()
			c := recv(t, ch, "count")
			if c.total != want || c.seq <= last {
				t.Fatalf("round %d: total %d seq %d, want total %d after seq %d", i, c.total, c.seq, want, last)
			}
			last = c.seq
		}
		check(a.count(key, 2), 2)
		check(b.count(key, 3), 5)
		check(a.count(key, 0), 5)
		// A re-assertion sends every share again.
		a.trackReconnected()
		b.trackReconnected()
		check(b.count(key, 0), 5)
		check(a.count(key, -2), 3)
		check(b.count(key, -3), 0)
	}
}

func TestTrackerCounts(t *testing.T) {
	srv := redistest.Start(t)
	cfg := trackConfig(srv, nil, "count")
	a, b := startTrackNode(t, cfg), startTrackNode(t, cfg)
	countsAcrossNodes(t, a, b, 20)
}

// TestPublishCountAndOnline: a count reaches the nodes with interest in
// the channel, an online change every node.
func TestPublishCountAndOnline(t *testing.T) {
	srv := redistest.Start(t)
	cfg := trackConfig(srv, nil, "pub")
	a, b := startTrackNode(t, cfg), startTrackNode(t, cfg)
	app := b.fake.app
	for i := range 20 {
		ch := fmt.Sprintf("room-%d", i)
		b.Interest(app, ch, true)
		done := make(chan bool, 1)
		if !b.Await(app, ch, func() { done <- true }) {
			recv(t, done, "subscribed")
		}
		a.PublishCount(app, ch, int64(i), uint64(100+i))
		a.PublishOnline(app, fmt.Sprintf("u%d", i), i%2 == 0)
		want := fmt.Sprintf("%s %d %d", ch, i, 100+i)
		waitFor(t, "the count arrives", func() bool { return slices.Contains(b.fake.calls(&b.fake.counts), want) })
		wantOn := fmt.Sprintf("u%d %v", i, i%2 == 0)
		waitFor(t, "the online change arrives", func() bool { return slices.Contains(b.fake.calls(&b.fake.online), wantOn) })
		b.Interest(app, ch, false)
	}
	// Without interest, no count; the sender never delivers to itself.
	a.PublishCount(app, "nobody-here", 1, 1)
	a.PublishOnline(app, "last", true)
	waitFor(t, "the last online change arrives", func() bool { return slices.Contains(b.fake.calls(&b.fake.online), "last true") })
	for _, c := range b.fake.calls(&b.fake.counts) {
		if strings.HasPrefix(c, "nobody-here") {
			t.Fatalf("count without interest delivered: %s", c)
		}
	}
	if got := a.fake.calls(&a.fake.counts); len(got) != 0 {
		t.Fatalf("sender delivered to itself: %v", got)
	}
}

// reapScenario: a holds keys, one shared with b, counts, and has a release
// waiting out its delay; then stop stops it. b releases what only a held
// (once) and removes a's share of the count.
func reapScenario(t *testing.T, prefix string, stop func(a *trackNode)) {
	srv := redistest.Start(t)
	cfg := trackConfig(srv, nil, prefix)
	a, b := startTrackNode(t, cfg), startTrackNode(t, cfg)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	for _, k := range []string{"c:only-a", "c:shared", "c:pending"} {
		if !recv(t, a.hold(k), "hold "+k) {
			t.Fatalf("%s: not first", k)
		}
	}
	if recv(t, b.hold("c:shared"), "hold shared") {
		t.Fatal("shared: first twice")
	}
	recv(t, a.count("n:chan", 4), "count a")
	recv(t, b.count("n:chan", 1), "count b")
	a.Release(a.fake.app, "c:pending", 2*time.Second, nil)
	pend := a.nkey(a.node, "pend")
	waitFor(t, "the waiting release is recorded", func() bool {
		ok, _ := rdb.HExists(context.Background(), pend, trackID(a.fake.app, "c:pending")).Result()
		return ok
	})
	stop(a)
	waitFor(t, "b reaps a", func() bool { return b.Stats().Reaped == 1 })
	rel := b.fake.calls(&b.fake.released)
	slices.Sort(rel)
	if want := []string{"c:only-a", "c:pending"}; !slices.Equal(rel, want) {
		t.Fatalf("released %q, want %q", rel, want)
	}
	if got, want := b.fake.calls(&b.fake.counted), []string{"n:chan 1"}; !slices.Equal(got, want) {
		t.Fatalf("counted %q, want %q", got, want)
	}
	if h := b.holding("c:only-a", "c:shared", "c:pending"); !slices.Equal(h, []bool{false, true, false}) {
		t.Fatalf("holding %v", h)
	}
	// Nothing of a is left in Redis.
	n, err := rdb.Exists(context.Background(), a.nkey(a.node, "held"), pend, a.nkey(a.node, "counted")).Result()
	if err != nil || n != 0 {
		t.Fatalf("a's keys left: %d %v", n, err)
	}
	if ok, _ := rdb.HExists(context.Background(), a.registryKey(), a.node).Result(); ok {
		t.Fatal("a is still registered")
	}
}

func TestTrackerReapAfterBye(t *testing.T) {
	reapScenario(t, "bye", func(a *trackNode) { a.Close() })
}

func TestTrackerReapAfterCrash(t *testing.T) {
	reapScenario(t, "crash", func(a *trackNode) { a.crash() })
}

// TestTrackerDegraded: while Redis does not answer, a hold answers false;
// once it answers again, the node's holds are asserted again.
func TestTrackerDegraded(t *testing.T) {
	srv := redistest.Start(t)
	cfg := trackConfig(srv, nil, "degraded")
	a := startTrackNode(t, cfg)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	if !recv(t, a.hold("c:before"), "hold before") {
		t.Fatalf("not first: %+v", a.Stats())
	}
	recv(t, a.count("n:c", 2), "count")
	srv.Pause()
	paused := true
	defer func() {
		if paused {
			srv.Resume()
		}
	}()
	if recv(t, a.hold("c:during"), "hold during") {
		t.Fatal("a hold answered first while Redis was paused")
	}
	// The failure made the broker degraded: this hold never leaves.
	waitFor(t, "the broker is degraded", a.Degraded)
	if recv(t, a.hold("c:degraded"), "hold degraded") {
		t.Fatal("a hold answered first while Redis was unreachable")
	}
	if h := a.holding("c:before"); h[0] {
		t.Fatal("holding answered true while Redis was unreachable")
	}
	if st := a.Stats(); st.TrackerErrors < 3 {
		t.Fatalf("errors not counted: %+v", st)
	}
	srv.Resume()
	paused = false
	waitFor(t, "the hold made while degraded is asserted", func() bool {
		ok, _ := rdb.SIsMember(context.Background(), a.tkey(trackID(a.fake.app, "c:degraded"), "h"), a.node).Result()
		return ok
	})
	if h := a.holding("c:before", "c:during", "c:degraded", "c:never"); !slices.Equal(h, []bool{true, true, true, false}) {
		t.Fatalf("holding %v", h)
	}
	if c := recv(t, a.count("n:c", 0), "count"); c.total != 2 {
		t.Fatalf("count after the outage: %d", c.total)
	}
}

func TestTrackID(t *testing.T) {
	for _, c := range []struct{ app, key string }{{"1", "c:x"}, {"a:b", "c"}, {"a", "b:c"}, {"12", ""}, {"x}", "{y}\n"}} {
		tk := trackID(&pusher.App{ID: c.app}, c.key)
		app, key, ok := parseTrackID(tk)
		if !ok || app != c.app || key != c.key {
			t.Errorf("parseTrackID(%q) = %q %q %v", tk, app, key, ok)
		}
	}
	for _, bad := range []string{"", ":x", "x:", "5:ab", "-1:a"} {
		if _, _, ok := parseTrackID(bad); ok {
			t.Errorf("parseTrackID(%q) accepted", bad)
		}
	}
}
