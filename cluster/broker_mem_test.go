package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reverbgo/reverb/pusher"
)

// These tests run two or three brokers, each with its own pusher.Server,
// over a memBus.

func heartbeat(d time.Duration) func(c *Config, o *pusher.Options) {
	return func(c *Config, _ *pusher.Options) { c.HeartbeatInterval = d }
}

// startNodes starts k nodes and waits until each knows the others.
func (b *memBus) startNodes(t *testing.T, k int, mod func(c *Config, o *pusher.Options)) []*testNode {
	t.Helper()
	var nodes []*testNode
	for range k {
		nodes = append(nodes, b.startNode(t, mod))
	}
	for _, n := range nodes {
		n.waitNodes(k - 1)
	}
	return nodes
}

// counter returns a done func and its call count.
func counter() (func(), *atomic.Int32) {
	var n atomic.Int32
	return func() { n.Add(1) }, &n
}

func TestMemEventsFollowInterest(t *testing.T) {
	bus := newMemBus()
	nodes := bus.startNodes(t, 3, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	const ch = "news"
	busCh := n1.busChannel(ch)

	for _, n := range nodes {
		if st := n.b.Stats(); st.Interest != 0 {
			t.Fatalf("interest %d before any subscription", st.Interest)
		}
	}
	c := n2.connect()
	c.subscribe(ch, "")
	if got := []int{n1.b.Stats().Interest, n2.b.Stats().Interest, n3.b.Stats().Interest}; !slices.Equal(got, []int{0, 1, 0}) {
		t.Fatalf("interest per node %v, want [0 1 0]", got)
	}
	if !n2.tr.listening(busCh) || n1.tr.listening(busCh) || n3.tr.listening(busCh) {
		t.Fatal("only node 2 must listen to the channel's bus channel")
	}
	if err := n1.srv.Trigger(n1.app, ch, "e", "1", ""); err != nil {
		t.Fatal(err)
	}
	c.waitEvent(ch, "e", "1")

	// Without subscribers node 2 stops listening: later events do not even
	// reach it.
	c.unsubscribe(ch)
	if st := n2.b.Stats(); st.Interest != 0 {
		t.Fatalf("interest %d after the last subscriber left", st.Interest)
	}
	waitUntil(t, "node 2 stops listening", func() bool { return !n2.tr.listening(busCh) })
	if err := n1.srv.Trigger(n1.app, ch, "e", "2", ""); err != nil {
		t.Fatal(err)
	}
	// A later event on another channel node 2 listens to marks the point
	// by which the first would have arrived.
	mark := n2.connect()
	mark.subscribe("mark", "")
	if err := n1.srv.Trigger(n1.app, "mark", "e", "m", ""); err != nil {
		t.Fatal(err)
	}
	mark.waitEvent("mark", "e", "m")
	if got := n2.tr.receivedOn(busCh); got != 1 {
		t.Errorf("node 2 received %d envelopes of %s, want 1 (the one before it left)", got, busCh)
	}
	if got := n3.tr.receivedOn(busCh) + n1.tr.receivedOn(busCh); got != 0 {
		t.Errorf("nodes without subscribers received %d envelopes of %s", got, busCh)
	}
	if got := c.events(ch, "e"); !slices.Equal(got, []string{"1"}) {
		t.Errorf("client received %v", got)
	}
	if st := n2.b.Stats(); st.Received < 2 {
		t.Errorf("node 2 counted %d received envelopes", st.Received)
	}
}

// A subscription answered on one node receives every event published on
// another after the answer, also when it follows an unsubscription at once.
func TestMemSubscribeThenPublishAcrossNodes(t *testing.T) {
	bus := newMemBus()
	nodes := bus.startNodes(t, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	c := n2.connect()
	for i := range 100 {
		ch := "race-" + strconv.Itoa(i%3)
		c.subscribe(ch, "")
		if err := n1.srv.Trigger(n1.app, ch, "e", strconv.Itoa(i), ""); err != nil {
			t.Fatal(err)
		}
		c.waitEvent(ch, "e", strconv.Itoa(i))
		c.unsubscribe(ch)
	}
}

// Bug: the state of a channel nobody listens to any more stays in the
// broker for good (until Redis is lost), so a node serving many short-lived
// channels grows without bound.
func TestMemUnsubscribedChannelsAreForgotten(t *testing.T) {
	bus := newMemBus()
	n := bus.startNode(t, nil)
	base := n.subsLen()
	c := n.connect()
	for i := range 20 {
		ch := "tmp-" + strconv.Itoa(i)
		c.subscribe(ch, "")
		c.unsubscribe(ch)
	}
	waitUntil(t, "the node stops listening to every channel", func() bool {
		for i := range 20 {
			if n.tr.listening(n.busChannel("tmp-" + strconv.Itoa(i))) {
				return false
			}
		}
		return true
	})
	if got := n.subsLen(); got != base {
		t.Errorf("the broker keeps state for %d bus channels, want %d (its own): every channel unsubscribed stays", got, base)
	}
}

func TestMemPublishRefusedWhenQueueFull(t *testing.T) {
	bus := newMemBus()
	n1 := bus.startNode(t, func(c *Config, _ *pusher.Options) {
		c.PublishQueue = 4
		c.PublishTimeout = time.Minute
	})
	n2 := bus.startNode(t, nil)
	n1.waitNodes(1)
	n2.waitNodes(1)
	const ch = "busy"
	local := n1.connect()
	local.subscribe(ch, "")
	remote := n2.connect()
	remote.subscribe(ch, "")
	// Everything node 1 had to send is out: its publisher is idle.
	marker, err := n1.b.Publish(n1.app, []pusher.Outgoing{{Channel: "marker", Msg: eventMsg("marker", "e", "m")}})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, marker)

	release := n1.tr.blockPublishes()
	defer release()
	trigger := func(data string) error { return n1.srv.Trigger(n1.app, ch, "e", data, "") }
	if err := trigger("0"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the first round trip is in flight", func() bool { return n1.tr.blockedPublishes() == 1 })
	for i := 1; i <= 4; i++ {
		if err := trigger(strconv.Itoa(i)); err != nil {
			t.Fatalf("event %d of 4 refused: %v", i, err)
		}
	}
	if err := trigger("refused"); !errors.Is(err, pusher.ErrBusy) {
		t.Fatalf("Trigger past PublishQueue: %v, want ErrBusy", err)
	}
	// All or none: two events when none fits.
	_, err = n1.b.Publish(n1.app, []pusher.Outgoing{{Channel: ch, Msg: eventMsg(ch, "e", "x")}, {Channel: ch, Msg: eventMsg(ch, "e", "y")}})
	if !errors.Is(err, pusher.ErrBusy) {
		t.Fatalf("Publish past PublishQueue: %v, want ErrBusy", err)
	}
	st := n1.b.Stats()
	if st.Refused != 3 || st.Queued != 4 {
		t.Errorf("Refused %d Queued %d, want 3 and 4", st.Refused, st.Queued)
	}
	// Control envelopes still fit, up to twice the limit.
	for range 5 {
		n1.b.Terminate(n1.app, "nobody")
	}
	if st := n1.b.Stats(); st.Dropped[DropQueueFull] != 1 || st.Queued != 8 {
		t.Errorf("Dropped[queue_full] %d Queued %d, want 1 and 8", st.Dropped[DropQueueFull], st.Queued)
	}
	release()
	waitUntil(t, "the queue is flushed", func() bool { return n1.b.Stats().Queued == 0 })
	if err := trigger("end"); err != nil {
		t.Fatal(err)
	}
	remote.waitEvent(ch, "e", "end")
	local.waitEvent(ch, "e", "end")
	want := []string{"0", "1", "2", "3", "4", "end"}
	if got := local.events(ch, "e"); !slices.Equal(got, want) {
		t.Errorf("local subscriber received %v, want %v", got, want)
	}
	if got := remote.events(ch, "e"); !slices.Equal(got, want) {
		t.Errorf("remote subscriber received %v, want %v", got, want)
	}
}

func TestMemPublishUnreachableWhileDegraded(t *testing.T) {
	bus := newMemBus()
	nodes := bus.startNodes(t, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	const ch = "down"
	local := n1.connect()
	local.subscribe(ch, "")
	remote := n2.connect()
	remote.subscribe(ch, "")

	n1.tr.disconnect()
	waitUntil(t, "node 1 is degraded", n1.b.Degraded)
	st := n1.b.Stats()
	if !st.Degraded || st.DegradedSince.IsZero() {
		t.Errorf("Stats while degraded: %+v", st)
	}
	// The event is for this node alone: delivered here, counted as dropped.
	if err := n1.srv.Trigger(n1.app, ch, "e", "alone", ""); err != nil {
		t.Fatalf("Trigger while degraded: %v", err)
	}
	local.waitEvent(ch, "e", "alone")
	_, err := n1.b.Publish(n1.app, []pusher.Outgoing{{Channel: ch, Msg: eventMsg(ch, "e", "x")}, {Channel: ch, Msg: eventMsg(ch, "e", "y")}})
	if !errors.Is(err, pusher.ErrUnreachable) {
		t.Fatalf("Publish while degraded: %v, want ErrUnreachable", err)
	}
	if got := n1.b.Stats().Dropped[DropUnreachable]; got < 3 {
		t.Errorf("Dropped[unreachable] = %d, want at least 3", got)
	}
	hellos := n2.tr.received(kindHello)

	// Back: the subscriptions are confirmed again and the node says hello.
	n1.tr.reconnect()
	waitUntil(t, "node 1 is connected again", func() bool { return !n1.b.Degraded() })
	if st := n1.b.Stats(); st.Reconnects != 1 || !st.DegradedSince.IsZero() {
		t.Errorf("Reconnects %d DegradedSince %v", st.Reconnects, st.DegradedSince)
	}
	waitUntil(t, "node 2 hears node 1's hello", func() bool { return n2.tr.received(kindHello) > hellos })
	if err := n1.srv.Trigger(n1.app, ch, "e", "back", ""); err != nil {
		t.Fatal(err)
	}
	remote.waitEvent(ch, "e", "back")
	if got := remote.events(ch, "e"); !slices.Equal(got, []string{"back"}) {
		t.Errorf("remote subscriber received %v", got)
	}
	// Node 1 listens to the channel again.
	if err := n2.srv.Trigger(n2.app, ch, "e", "from2", ""); err != nil {
		t.Fatal(err)
	}
	local.waitEvent(ch, "e", "from2")
}

// A failed round trip degrades the node; the cache channel's event it
// carried is kept here, since its echo will not come back.
func TestMemPublishErrorKeepsCacheLocally(t *testing.T) {
	bus := newMemBus()
	nodes := bus.startNodes(t, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	const ch = "cache-pe"
	n1.tr.failPublishes(errors.New("broken pipe"))
	if err := n1.srv.Trigger(n1.app, ch, "e", "v1", ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "node 1 is degraded", n1.b.Degraded)
	if got := n1.b.Stats().Dropped[DropPublishError]; got != 1 {
		t.Errorf("Dropped[publish_error] = %d, want 1", got)
	}
	c := n1.connect()
	c.subscribe(ch, "")
	if m := c.nextMsg(); m.Event != "e" || m.Data != "v1" {
		t.Errorf("after subscribing got %s, want the cached v1", m.raw)
	}
	if n2.tr.queued(kindEvent) != 0 {
		t.Error("node 2 got the event of a failed publish")
	}
	// Redis answers again: the node resumes.
	n1.tr.failPublishes(nil)
	n1.tr.pong()
	waitUntil(t, "node 1 is connected again", func() bool { return !n1.b.Degraded() })
	if err := n1.srv.Trigger(n1.app, ch, "e", "v2", ""); err != nil {
		t.Fatal(err)
	}
	c.waitEvent(ch, "e", "v2")
	waitUntil(t, "node 2 caches v2", func() bool { return n2.tr.queued(kindEvent) == 1 && n2.tr.idle() })
	c2 := n2.connect()
	c2.subscribe(ch, "")
	if m := c2.nextMsg(); m.Data != "v2" {
		t.Errorf("node 2 subscriber got %s, want the cached v2", m.raw)
	}
}

func TestMemSilenceDegradesUntilHeard(t *testing.T) {
	bus := newMemBus()
	nodes := bus.startNodes(t, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	const ch = "quiet"
	c := n1.connect()
	c.subscribe(ch, "")
	n1.tr.silence()
	waitUntil(t, "node 1 is degraded", n1.b.Degraded)
	if _, err := n1.b.Publish(n1.app, []pusher.Outgoing{{Channel: ch, Msg: eventMsg(ch, "e", "x")}}); !errors.Is(err, pusher.ErrUnreachable) {
		t.Fatalf("Publish while silent: %v", err)
	}
	if err := n2.srv.Trigger(n2.app, ch, "e", "meanwhile", ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the event waits for node 1", func() bool { return n1.tr.queued(kindEvent) == 1 })
	n1.tr.resume()
	waitUntil(t, "node 1 is connected again", func() bool { return !n1.b.Degraded() })
	c.waitEvent(ch, "e", "meanwhile")
	if got := n1.b.Stats().Reconnects; got != 1 {
		t.Errorf("Reconnects = %d", got)
	}
}

func TestMemEnvelopeLimits(t *testing.T) {
	bus := newMemBus()
	n := bus.startNode(t, func(c *Config, _ *pusher.Options) { c.MaxEnvelope = 200 })
	c := n.connect()
	c.subscribe("big", "")
	huge := strings.Repeat("x", 300)
	if err := n.srv.Trigger(n.app, "big", "e", huge, ""); err != nil {
		t.Fatal(err)
	}
	if got := n.b.Stats().Dropped[DropTooLarge]; got != 1 {
		t.Errorf("Dropped[too_large] = %d", got)
	}
	c.waitEvent("big", "e", huge)
	if got := len(c.events("big", "e")); got != 1 {
		t.Errorf("a too large event was delivered locally %d times, want 1", got)
	}
	invalid := n.b.Stats().Invalid
	tooLarge := appendEnvelope(nil, &header{kind: kindPing, node: []byte("other")}, make([]byte, 300))
	otherVersion := appendEnvelope(nil, &header{kind: kindHello, node: []byte("other")}, nil)
	otherVersion[1] = Version + 1
	badJSON := appendEnvelope(nil, &header{kind: kindPing, node: []byte("other")}, []byte("{"))
	bus.inject("t:ctl", tooLarge, otherVersion, []byte("garbage"), badJSON)
	waitUntil(t, "every bad envelope is counted", func() bool { return n.b.Stats().Invalid == invalid+4 })
}

func TestMemAwaitPlainChannel(t *testing.T) {
	bus := newMemBus()
	n := bus.startNode(t, func(c *Config, _ *pusher.Options) {
		c.PublishTimeout, c.GatherTimeout = 500*time.Millisecond, 100*time.Millisecond
	})
	done, calls := counter()
	n.tr.holdSubscribes()
	n.b.Interest(n.app, "plain", true)
	if n.b.Await(n.app, "plain", done) {
		t.Fatal("Await returned true before the subscription was confirmed")
	}
	waitUntil(t, "the subscribe is sent", func() bool { return n.tr.heldSubscribes() == 1 })
	if calls.Load() != 0 {
		t.Fatal("done called before the subscription was confirmed")
	}
	n.tr.releaseSubscribes()
	waitUntil(t, "done is called", func() bool { return calls.Load() == 1 })
	done2, calls2 := counter()
	if !n.b.Await(n.app, "plain", done2) {
		t.Error("Await of a confirmed channel returned false")
	}
	// The last subscriber leaving drops those still waiting (Interest runs
	// under the registry lock, so it never calls them): their wait ends at
	// the timeout, once.
	n.tr.holdSubscribes()
	done3, calls3 := counter()
	n.b.Interest(n.app, "plain2", true)
	if n.b.Await(n.app, "plain2", done3) {
		t.Fatal("Await returned true before the subscription was confirmed")
	}
	n.b.Interest(n.app, "plain2", false)
	if calls3.Load() != 0 {
		t.Errorf("done called %d times by Interest, want 0", calls3.Load())
	}
	n.tr.releaseSubscribes()
	waitUntil(t, "the node is idle", n.tr.idle)
	waitUntil(t, "the dropped wait ends at its timeout", func() bool { return calls3.Load() == 1 })
	if calls.Load() != 1 || calls2.Load() != 0 || calls3.Load() != 1 {
		t.Errorf("done calls %d %d %d, want 1 0 1", calls.Load(), calls2.Load(), calls3.Load())
	}
}

func TestMemAwaitCacheChannel(t *testing.T) {
	bus := newMemBus()
	n := bus.startNode(t, nil)
	done, calls := counter()
	n.tr.pause()
	if n.b.Await(n.app, "cache-a", done) {
		t.Fatal("Await of a cache channel returned true")
	}
	waitUntil(t, "the barrier is on its way back", func() bool { return n.tr.queued(kindBarrier) == 1 })
	if calls.Load() != 0 {
		t.Fatal("done called before the barrier came back")
	}
	n.tr.resume()
	waitUntil(t, "done is called", func() bool { return calls.Load() == 1 })
}

func TestMemAwaitPresenceWaitsForBoth(t *testing.T) {
	bus := newMemBus()
	n := bus.startNode(t, func(c *Config, _ *pusher.Options) {
		c.PublishTimeout = 150 * time.Millisecond
		c.GatherTimeout = 150 * time.Millisecond
	})
	barrierDone := func() bool {
		n.b.imu.Lock()
		defer n.b.imu.Unlock()
		return len(n.b.barriers) == 0
	}
	// The barrier is back, the subscription is not confirmed.
	done, calls := counter()
	n.tr.holdSubscribes()
	n.b.Interest(n.app, "presence-p", true)
	if n.b.Await(n.app, "presence-p", done) {
		t.Fatal("Await of a presence channel returned true")
	}
	waitUntil(t, "the barrier is back", func() bool { return n.tr.received(kindBarrier) == 1 && barrierDone() })
	if calls.Load() != 0 {
		t.Fatal("done called before the subscription was confirmed")
	}
	n.tr.releaseSubscribes()
	waitUntil(t, "done is called", func() bool { return calls.Load() == 1 })

	// The subscription is confirmed, the barrier is lost: done comes from
	// the timeout.
	n.tr.dropKinds(kindBarrier)
	done2, calls2 := counter()
	start := time.Now()
	n.b.Interest(n.app, "presence-q", true)
	if n.b.Await(n.app, "presence-q", done2) {
		t.Fatal("Await of a presence channel returned true")
	}
	bus2 := n.busChannel("presence-q")
	waitUntil(t, "the subscription is confirmed", func() bool {
		n.b.imu.Lock()
		defer n.b.imu.Unlock()
		return n.b.subs[bus2].confirmed
	})
	if calls2.Load() != 0 {
		t.Fatal("done called before the barrier came back")
	}
	waitUntil(t, "done is called by the timeout", func() bool { return calls2.Load() == 1 })
	if d := time.Since(start); d < n.b.awaitTimeout() {
		t.Errorf("done called after %v, before the timeout %v", d, n.b.awaitTimeout())
	}
}

// Bug: Await returns true, "complete at once", when its barrier came back
// before Await itself returned. The session then answers with the cache
// (or presence) state it read before the barrier, missing what the barrier
// waited for (TestMemCacheReadYourWrites sees it now and then). Here the
// barrier is made to come back at that moment: the test holds the publish
// queue's lock, so Await waits inside its barrier's queueing, and fires the
// barrier meanwhile, which is what happens when the publisher and the
// subscription connection run between the queueing and Await's last line.
func TestMemAwaitTrueOnlyWhenCompleteAtOnce(t *testing.T) {
	bus := newMemBus()
	n := bus.startNode(t, nil)
	done, calls := counter()
	n.b.q.mu.Lock()
	locked := true
	defer func() {
		if locked {
			n.b.q.mu.Unlock()
		}
	}()
	res := make(chan bool, 1)
	go func() { res <- n.b.Await(n.app, "cache-fast", done) }()
	var id string
	waitUntil(t, "the barrier is registered", func() bool {
		n.b.imu.Lock()
		defer n.b.imu.Unlock()
		for k := range n.b.barriers {
			id = k
		}
		return id != ""
	})
	n.b.fireBarrier(id)
	locked = false
	n.b.q.mu.Unlock()
	if <-res {
		t.Fatal("Await returned true (so done is never called) although its barrier came back only after the call began")
	}
	waitUntil(t, "the barrier's echo is back", func() bool { return n.tr.received(kindBarrier) == 1 })
	waitUntil(t, "done is called", func() bool { return calls.Load() >= 1 })
	if calls.Load() != 1 {
		t.Errorf("done called %d times", calls.Load())
	}
}

func TestMemAwaitDegraded(t *testing.T) {
	bus := newMemBus()
	n := bus.startNode(t, nil)
	// Those waiting when Redis is lost are answered at once.
	n.tr.holdSubscribes()
	waiting, waitingCalls := counter()
	n.b.Interest(n.app, "w", true)
	if n.b.Await(n.app, "w", waiting) {
		t.Fatal("Await returned true before the subscription was confirmed")
	}
	n.tr.disconnect()
	waitUntil(t, "node is degraded", n.b.Degraded)
	waitUntil(t, "the waiting subscription is answered", func() bool { return waitingCalls.Load() == 1 })
	done, calls := counter()
	for _, ch := range []string{"plain", "cache-x", "presence-x", "presence-cache-x", "private-x"} {
		n.b.Interest(n.app, ch, true)
		if !n.b.Await(n.app, ch, done) {
			t.Errorf("Await(%s) returned false while degraded", ch)
		}
	}
	n.tr.releaseSubscribes()
	n.tr.reconnect()
	waitUntil(t, "node is connected again", func() bool { return !n.b.Degraded() })
	if calls.Load() != 0 || waitingCalls.Load() != 1 {
		t.Errorf("done calls %d %d, want 0 1", calls.Load(), waitingCalls.Load())
	}
}

func TestMemPresenceJoinLeave(t *testing.T) {
	bus := newMemBus()
	nodes := bus.startNodes(t, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	const ch = "presence-room"
	a := n1.connect()
	a.subscribe(ch, "u1")
	n2.waitMembers(ch, userJSON("u1"))
	b := n2.connect()
	if ids := presenceIDs(t, b.subscribe(ch, "u2")); !slices.Equal(ids, []string{`"u1"`, `"u2"`}) {
		t.Errorf("node 2 subscriber sees %v", ids)
	}
	a.next(func(m busMsg) bool { return m.Event == "pusher_internal:member_added" && containsAll(m.Data, `"u2"`) })
	n1.waitMembers(ch, userJSON("u1"), userJSON("u2"))
	a.unsubscribe(ch)
	n2.waitMembers(ch, userJSON("u2"))
	b.next(func(m busMsg) bool {
		return m.Event == "pusher_internal:member_removed" && m.Data == `{"user_id":"u1"}`
	})
	n1.waitMembers(ch, userJSON("u2"))
}

// A subscriber answered on one node is seen by a subscriber who joins on
// another node afterwards.
func TestMemPresenceReadYourWrites(t *testing.T) {
	bus := newMemBus()
	nodes := bus.startNodes(t, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	a, b := n1.connect(), n2.connect()
	for i := range 40 {
		ch := fmt.Sprintf("presence-ryw-%d", i)
		ua, ub := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		a.subscribe(ch, ua)
		ids := presenceIDs(t, b.subscribe(ch, ub))
		slices.Sort(ids)
		if !slices.Equal(ids, []string{userJSON(ua), userJSON(ub)}) {
			t.Fatalf("iteration %d: the subscriber on node 2 sees %v", i, ids)
		}
		a.unsubscribe(ch)
		b.unsubscribe(ch)
	}
}

// A cache channel's event acknowledged to its publisher is what a
// subscriber arriving afterwards gets, on any node. (It fails now and then
// until Await returns true only when complete at once: see
// TestMemAwaitTrueOnlyWhenCompleteAtOnce.)
func TestMemCacheReadYourWrites(t *testing.T) {
	bus := newMemBus()
	nodes := bus.startNodes(t, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	for i := range 40 {
		v := strconv.Itoa(i)
		// Same node: the publish is merely queued when the subscriber comes.
		if err := n1.srv.Trigger(n1.app, "cache-local", "e", v, ""); err != nil {
			t.Fatal(err)
		}
		c := n1.connect()
		c.subscribe("cache-local", "")
		if m := c.nextMsg(); m.Event != "e" || m.Data != v {
			t.Fatalf("iteration %d, same node: got %s, want the cached %s", i, m.raw, v)
		}
		c.disconnect()
		// Another node, once the publish was acknowledged.
		done, err := n1.b.Publish(n1.app, []pusher.Outgoing{{Channel: "cache-remote", Msg: eventMsg("cache-remote", "e", v)}})
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, done)
		c2 := n2.connect()
		c2.subscribe("cache-remote", "")
		if m := c2.nextMsg(); m.Event != "e" || m.Data != v {
			t.Fatalf("iteration %d, other node: got %s, want the cached %s", i, m.raw, v)
		}
		c2.disconnect()
	}
}

func TestMemLostJoinRepairedByDigest(t *testing.T) {
	bus := newMemBus()
	nodes := bus.startNodes(t, 2, heartbeat(50*time.Millisecond))
	n1, n2 := nodes[0], nodes[1]
	const ch = "presence-lj"
	n2.tr.dropKinds(kindJoin)
	a := n1.connect()
	a.subscribe(ch, "u1")
	waitUntil(t, "the join is lost", func() bool { return n2.tr.droppedCount() == 1 })
	n2.waitMembers(ch, userJSON("u1"))
	if st := n2.b.Stats(); st.Resyncs == 0 {
		t.Errorf("Resyncs = 0 after a repair")
	}
}

func TestMemLostLeaveRepairedByDigest(t *testing.T) {
	bus := newMemBus()
	nodes := bus.startNodes(t, 2, heartbeat(50*time.Millisecond))
	n1, n2 := nodes[0], nodes[1]
	const ch = "presence-ll"
	a := n1.connect()
	a.subscribe(ch, "u1")
	n2.waitMembers(ch, userJSON("u1"))
	n2.tr.dropKinds(kindLeave)
	a.unsubscribe(ch)
	waitUntil(t, "the leave is lost", func() bool { return n2.tr.droppedCount() == 1 })
	n2.waitMembers(ch)
	if st := n2.b.Stats(); st.Resyncs == 0 {
		t.Errorf("Resyncs = 0 after a repair")
	}
}

func TestMemSyncOnHello(t *testing.T) {
	bus := newMemBus()
	n1 := bus.startNode(t, nil)
	const ch = "presence-h"
	a := n1.connect()
	a.subscribe(ch, "u1")
	// Node 2 has a member before it reaches the bus.
	n2 := bus.newNode(t, nil)
	b := n2.connect()
	b.subscribe(ch, "u2")
	n2.start()
	n1.waitMembers(ch, userJSON("u1"), userJSON("u2"))
	n2.waitMembers(ch, userJSON("u1"), userJSON("u2"))
	n1.waitNodes(1)
	n2.waitNodes(1)
	if st := n2.b.Stats(); st.Resyncs != 0 {
		t.Errorf("Resyncs = %d after a plain start", st.Resyncs)
	}
}

// bigPresence gives n users presence users, each on a channel of its own
// (prefix and its number).
// Once it returns, every join envelope is out (each subscription was
// answered after its barrier, queued behind its join, came back).
func bigPresence(t *testing.T, n *testNode, prefix string, users int) {
	t.Helper()
	clients := make([]*testClient, users)
	for i := range clients {
		clients[i] = n.connect()
		clients[i].subscribeAsync(prefix+strconv.Itoa(i), "u")
	}
	for i, c := range clients {
		c.next(func(m busMsg) bool {
			return m.Event == "pusher_internal:subscription_succeeded" && m.Channel == prefix+strconv.Itoa(i)
		})
	}
	if got := countPresence(n, prefix, users); got != users {
		t.Fatalf("%d users joined, want %d", got, users)
	}
}

// countPresence counts the members n lists on the channels of bigPresence.
func countPresence(n *testNode, prefix string, users int) int {
	total := 0
	for i := range users {
		total += len(n.srv.Members(n.app, prefix+strconv.Itoa(i)))
	}
	return total
}

// syncPart decodes a sync envelope's body.
func syncPart(body []byte) syncBody {
	var s syncBody
	_ = decodeJSON(body, &s)
	return s
}

func TestMemMissingSyncPartAsksAgain(t *testing.T) {
	bus := newMemBus()
	big := func(c *Config, o *pusher.Options) { o.MaxPresenceMembers = 1000 }
	n1 := bus.startNode(t, big)
	const prefix, users = "presence-big-", 501 // two sync parts
	bigPresence(t, n1, prefix, users)
	n2 := bus.newNode(t, big)
	lost := false
	n2.tr.dropIf(func(_ string, h header, body []byte) bool {
		if h.kind == kindSync && string(h.node) == n1.b.NodeID() && !lost && syncPart(body).Part == 0 {
			lost = true
			return true
		}
		return false
	})
	n2.start()
	waitUntil(t, "node 2 lists every member of node 1", func() bool { return countPresence(n2, prefix, users) == users })
	if n2.tr.droppedCount() != 1 {
		t.Fatalf("%d sync parts dropped", n2.tr.droppedCount())
	}
	if st := n2.b.Stats(); st.Resyncs != 1 || st.Invalid != 1 {
		t.Errorf("Resyncs %d Invalid %d, want 1 and 1", st.Resyncs, st.Invalid)
	}
	if got := n1.tr.received(kindSyncReq); got != 1 {
		t.Errorf("node 1 received %d syncreqs, want 1", got)
	}
}

// Bug: when the last part of a sync is lost, the receiver keeps the
// incomplete sync for good and skips every digest check of the sender, so
// nothing repairs its view of that node any more.
func TestMemLostLastSyncPartRepaired(t *testing.T) {
	bus := newMemBus()
	mod := func(c *Config, o *pusher.Options) {
		o.MaxPresenceMembers = 1000
		c.HeartbeatInterval = 50 * time.Millisecond
	}
	n1 := bus.startNode(t, mod)
	const prefix, users = "presence-big-", 501
	bigPresence(t, n1, prefix, users)
	n2 := bus.newNode(t, mod)
	// Node 1's answer to node 2's hello loses its last part. Node 1's
	// pings are lost until then, so that they do not make node 2 ask for
	// node 1's state before (a second hello, or a syncreq).
	var lost atomic.Bool
	n2.tr.dropIf(func(_ string, h header, body []byte) bool {
		if string(h.node) != n1.b.NodeID() || lost.Load() {
			return false
		}
		if h.kind == kindSync && syncPart(body).Last {
			lost.Store(true)
			return true
		}
		return h.kind == kindPing
	})
	n2.start()
	waitUntil(t, "the last sync part is lost", lost.Load)
	pings := n2.tr.received(kindPing)
	deadline := time.Now().Add(2 * time.Second)
	for countPresence(n2, prefix, users) != users {
		if time.Now().After(deadline) {
			n2.b.mu.Lock()
			st := n2.b.syncs[n1.b.NodeID()]
			n2.b.mu.Unlock()
			t.Fatalf("node 2 lists %d of node 1's %d members after %d more pings; still assembling its sync: %v",
				countPresence(n2, prefix, users), users, n2.tr.received(kindPing)-pings, st != nil)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}

func TestMemGatherRepliesReachOnlyTheAsker(t *testing.T) {
	bus := newMemBus()
	nodes := bus.startNodes(t, 3, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	n2.connect().subscribe("g", "")
	n3.connect().subscribe("g", "")
	n3.connect().subscribe("g", "")
	replies := n1.b.Gather(t.Context(), n1.app, pusher.Query{Kind: pusher.QuerySubscriptions, Channels: []string{"g"}})
	if len(replies) != 2 {
		t.Fatalf("%d replies, want 2", len(replies))
	}
	var counts []int
	for _, r := range replies {
		counts = append(counts, r.Subscriptions["g"])
	}
	slices.Sort(counts)
	if !slices.Equal(counts, []int{1, 2}) {
		t.Errorf("subscription counts %v, want [1 2]", counts)
	}
	if got := []int{n1.tr.received(kindReply), n2.tr.queued(kindReply), n3.tr.queued(kindReply)}; !slices.Equal(got, []int{2, 0, 0}) {
		t.Errorf("reply envelopes at nodes 1, 2, 3: %v, want [2 0 0]", got)
	}
	for i, n := range nodes {
		if got := n.tr.queued(kindQuery); got != 1 {
			t.Errorf("node %d got %d queries, want 1", i+1, got)
		}
	}
	replies = n2.b.Gather(t.Context(), n2.app, pusher.Query{Kind: pusher.QueryConnections})
	var total int64
	for _, r := range replies {
		total += r.Connections
	}
	if len(replies) != 2 || total != 2 {
		t.Errorf("connections query: %d replies, total %d, want 2 and 2", len(replies), total)
	}
	if got := n1.tr.queued(kindReply); got != 2 {
		t.Errorf("node 1 got %d replies after node 2 asked, want still 2", got)
	}
}

func TestMemByeDropsMembers(t *testing.T) {
	bus := newMemBus()
	nodes := bus.startNodes(t, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	const ch = "presence-bye"
	watcher := n1.connect()
	watcher.subscribe(ch, "w")
	n2.connect().subscribe(ch, "u2")
	n1.waitMembers(ch, userJSON("w"), userJSON("u2"))
	n2.close()
	n1.waitMembers(ch, userJSON("w"))
	watcher.next(func(m busMsg) bool {
		return m.Event == "pusher_internal:member_removed" && m.Data == `{"user_id":"u2"}`
	})
	if got := n1.b.Stats().Nodes; got != 0 {
		t.Errorf("node 1 knows %d nodes after the bye", got)
	}
}

func TestMemSilentNodeTimesOut(t *testing.T) {
	bus := newMemBus()
	nodes := bus.startNodes(t, 2, func(c *Config, _ *pusher.Options) {
		c.HeartbeatInterval = 50 * time.Millisecond
		c.NodeTimeout = 300 * time.Millisecond
	})
	n1, n2 := nodes[0], nodes[1]
	const ch = "presence-silent"
	n2.connect().subscribe(ch, "u2")
	n1.waitMembers(ch, userJSON("u2"))
	n2.tr.failPublishes(errors.New("no route to host"))
	var last time.Time // when node 1 last heard from node 2
	waitUntil(t, "node 1 drops node 2's members", func() bool {
		for _, info := range n1.b.Nodes() {
			if info.ID == n2.b.NodeID() {
				last = info.LastSeen
			}
		}
		return len(n1.members(ch)) == 0
	})
	if d := time.Since(last); d < 300*time.Millisecond {
		t.Errorf("members dropped %v after node 2 was last heard, before the node timeout", d)
	}
	if got := n1.b.Stats().Nodes; got != 0 {
		t.Errorf("node 1 knows %d nodes after the timeout", got)
	}
	// It comes back: its next hello brings its members back.
	n2.tr.failPublishes(nil)
	n1.waitMembers(ch, userJSON("u2"))
	n1.waitNodes(1)
}

// Bug: a node that said bye still answers what it receives while its queue
// is flushed (here a newcomer's hello, with its sync), and the others take
// it back in, with its members, until the node timeout.
func TestMemNothingSentAfterBye(t *testing.T) {
	bus := newMemBus()
	nodes := bus.startNodes(t, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	const ch = "presence-gone"
	n2.connect().subscribe(ch, "u2")
	n1.waitMembers(ch, userJSON("u2"))

	release := n2.tr.blockPublishes()
	defer release()
	if err := n2.srv.Trigger(n2.app, "x", "e", "1", ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a round trip of node 2 is in flight", func() bool { return n2.tr.blockedPublishes() == 1 })
	closed := make(chan struct{})
	go func() {
		n2.close()
		close(closed)
	}()
	waitUntil(t, "node 2 queues its bye", func() bool { return n2.b.Stats().Queued == 1 })
	hellos := n2.tr.received(kindHello)
	bus.inject("t:ctl", appendEnvelope(nil, &header{kind: kindHello, node: []byte("newcomer")}, nil))
	waitUntil(t, "node 2 handles the newcomer's hello", func() bool { return n2.tr.received(kindHello) > hellos && n2.tr.idle() })
	release()
	<-closed
	waitUntil(t, "node 1 handles everything", n1.tr.idle)
	if got := n1.members(ch); len(got) != 0 {
		t.Errorf("node 1 lists %v of a node that said bye", got)
	}
	for _, info := range n1.b.Nodes() {
		if info.ID == n2.b.NodeID() {
			t.Errorf("node 1 counts node 2 as live after its bye")
		}
	}
}

func TestMemRestartCallsOnRestart(t *testing.T) {
	bus := newMemBus()
	var restarts [2]atomic.Int32
	var nodes []*testNode
	for i := range 2 {
		n := bus.newNode(t, nil)
		n.b.OnRestart(func() { restarts[i].Add(1) })
		n.start()
		nodes = append(nodes, n)
	}
	nodes[0].waitNodes(1)
	bus.inject("t:ctl", appendEnvelope(nil, &header{kind: kindRestart, node: []byte("restart-cli")}, nil))
	waitUntil(t, "every node restarts", func() bool { return restarts[0].Load() == 1 && restarts[1].Load() == 1 })
	for _, n := range nodes {
		if got := n.b.Stats().Nodes; got != 1 {
			t.Errorf("a node counts %d other nodes after the restart envelope, want 1", got)
		}
	}
}

func TestMemTerminateAcrossNodes(t *testing.T) {
	bus := newMemBus()
	nodes := bus.startNodes(t, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	c := n2.connect()
	c.subscribe("presence-t", "7")
	other := n2.connect()
	other.subscribe("presence-t", "8")
	n1.srv.TerminateUser(n1.app, "7")
	c.next(func(m busMsg) bool { return m.Event == "pusher:error" && containsAll(m.Data, "4009") })
	waitUntil(t, "the user's connection is closed", c.conn.isClosed)
	if other.conn.isClosed() {
		t.Error("another user's connection was closed")
	}
}

// Bug: a node's hello made every other node publish its presence state on
// the shared control channel, so each of N nodes applied N-2 syncs it had
// not asked for, each locking every registry stripe: a resync storm at 50
// nodes. The state now goes to the new node's own channel only: when a node
// joins, the others get syncs from it alone.
func TestMemHelloSyncGoesToTheNewNodeOnly(t *testing.T) {
	bus := newMemBus()
	const ch = "presence-storm"
	var mu sync.Mutex
	from := map[*testNode][]string{} // senders of the syncs each node received
	var nodes []*testNode
	var users []string
	for i := range 5 {
		mu.Lock()
		for _, n := range nodes {
			from[n] = nil
		}
		mu.Unlock()
		n := bus.newNode(t, nil)
		n.tr.dropIf(func(_ string, h header, _ []byte) bool {
			if h.kind == kindSync {
				mu.Lock()
				from[n] = append(from[n], string(h.node))
				mu.Unlock()
			}
			return false
		})
		c := n.connect()
		user := "u" + strconv.Itoa(i)
		c.subscribe(ch, user)
		users = append(users, userJSON(user))
		n.start()
		nodes = append(nodes, n)
		for _, m := range nodes {
			m.waitMembers(ch, users...)
		}
		mu.Lock()
		if got := len(from[n]); got < i {
			t.Errorf("round %d: the new node received %d syncs, want at least %d (one from each other node)", i, got, i)
		}
		for j, m := range nodes[:i] {
			for _, sender := range from[m] {
				if sender != n.b.NodeID() && sender != m.b.NodeID() { // its own come back too
					t.Errorf("round %d: node %d received a sync from node %s, not from the new node", i, j, sender)
				}
			}
		}
		mu.Unlock()
	}
}
