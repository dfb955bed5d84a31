package cluster_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reverbgo/reverb/cluster/redistest"
)

// The same cross-node checks run against every Redis topology the broker
// supports. Each check acts and then looks at once, without waiting or
// polling: what the cluster guarantees must hold right after the action.

// rounds is how many times each check runs, on fresh channels (in cluster
// mode they land on different shards).
const rounds = 20

// sentinelRedis is the [scaling.redis] body for a Sentinel deployment.
func sentinelRedis(s *redistest.Sentinel) string {
	return fmt.Sprintf("mode = \"sentinel\"\naddrs = %s\nmaster_name = %q\n", tomlList(s.SentinelAddrs), s.MasterName)
}

// clusterRedis is the [scaling.redis] body for a Redis Cluster.
func clusterRedis(c *redistest.Cluster) string {
	return fmt.Sprintf("mode = \"cluster\"\naddrs = %s\n", tomlList(c.Addrs))
}

func tomlList(addrs []string) string {
	b, _ := json.Marshal(addrs) // a JSON array of strings is a TOML array
	return string(b)
}

// on returns n reporting to t, for use in a subtest of the test that
// started it.
func (n *node) on(t *testing.T) *node {
	c := *n
	c.t = t
	return &c
}

// waitCluster waits until each node has heard of the other, so that the
// HTTP API of either gathers the other's figures.
func waitCluster(t *testing.T, n1, n2 *node) {
	t.Helper()
	for i, p := range [][2]*node{{n1, n2}, {n2, n1}} {
		ch := fmt.Sprintf("formation-%d", i)
		c := dial(t, p[0])
		c.subscribe(ch)
		waitCount(t, p[1], ch, 1)
		c.close()
	}
}

// pair returns the nodes in the order a round uses them: the roles swap
// every round, so that both directions are exercised.
func pair(n1, n2 *node, round int) (a, b *node) {
	if round%2 == 0 {
		return n1, n2
	}
	return n2, n1
}

// expectData reads the next event of c, which must be name with data.
func expectData(c *client, name, data string) {
	c.t.Helper()
	e := c.next()
	if e.Event != name || e.DataString() != data {
		c.t.Fatalf("expected %s %q, got %s %s", name, data, e.Event, e.Data)
	}
}

// expectSeq reads len(want) events of c and checks that they are the
// datas in want, in any interleaving that keeps the order of each inner
// slice (one slice per node the events came through).
func expectSeq(c *client, name string, want ...[]string) {
	c.t.Helper()
	total := 0
	for _, w := range want {
		total += len(w)
	}
	next := make([]int, len(want))
	var got []string
	for range total {
		e := c.next()
		got = append(got, e.Event+" "+e.DataString())
		ok := false
		for i, w := range want {
			if e.Event == name && next[i] < len(w) && w[next[i]] == e.DataString() {
				next[i]++
				ok = true
				break
			}
		}
		if !ok {
			c.t.Fatalf("unexpected %s %s after %q; want %s events %q", e.Event, e.Data, got[:len(got)-1], name, want)
		}
	}
}

func (c *client) close() { c.conn.Close() }

// checkEvents: a subscriber gets events through either node right after
// its subscription_succeeded, and socket_id exclusion works across nodes.
func checkEvents(t *testing.T, n1, n2 *node, ch string, round int) {
	pub, sub := pair(n1, n2, round)
	l, r := dial(t, pub), dial(t, sub)
	defer l.close()
	defer r.close()
	l.subscribe(ch)
	r.subscribe(ch)
	// r's node confirmed the subscription: a trigger through the other
	// node reaches it.
	pub.trigger(ch, "e", "p0", "")
	expectData(l, "e", "p0")
	expectData(r, "e", "p0")
	sub.trigger(ch, "e", "s0", "")
	expectData(l, "e", "s0")
	expectData(r, "e", "s0")
	// Each node excludes the client on the other node. The closing events
	// of each node follow its excluded one on the same way, so an excluded
	// event delivered anyway would show up before them.
	pub.trigger(ch, "e", "p1", r.sid)
	sub.trigger(ch, "e", "s1", l.sid)
	pub.trigger(ch, "e", "p2", "")
	sub.trigger(ch, "e", "s2", "")
	expectSeq(l, "e", []string{"p1", "p2"}, []string{"s2"})
	expectSeq(r, "e", []string{"s1", "s2"}, []string{"p2"})
}

// users returns the user ids of a presence channel through n's HTTP API.
func users(n *node, ch string) []string {
	n.t.Helper()
	code, body := n.api("GET", "/apps/"+appID+"/channels/"+ch+"/users", "")
	if code != 200 {
		n.t.Fatalf("users of %s on node %d: %d %s", ch, n.port, code, body)
	}
	var r struct {
		Users []struct {
			ID string `json:"id"`
		} `json:"users"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		n.t.Fatalf("users of %s on node %d: %v: %s", ch, n.port, err, body)
	}
	var ids []string
	for _, u := range r.Users {
		ids = append(ids, u.ID)
	}
	return ids
}

// expectUsers checks, right away, the users and user_count of a presence
// channel through each node's HTTP API.
func expectUsers(t *testing.T, ch string, want []string, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		got := users(n, ch)
		if !sameSet(got, want) {
			t.Fatalf("users of %s through node %d: %q, want %q", ch, n.port, got, want)
		}
		if got := channelInfo(n, ch, "user_count"); got != len(want) {
			t.Fatalf("user_count of %s through node %d: %d, want %d", ch, n.port, got, len(want))
		}
	}
}

// channelInfo returns a count (user_count or subscription_count) of a
// channel through n's HTTP API.
func channelInfo(n *node, ch, info string) int {
	n.t.Helper()
	code, body := n.api("GET", "/apps/"+appID+"/channels/"+ch+"?info="+info, "")
	var r map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &r) != nil || r["occupied"] != true {
		n.t.Fatalf("%s of %s on node %d: %d %s", info, ch, n.port, code, body)
	}
	v, ok := r[info].(float64)
	if !ok {
		n.t.Fatalf("%s of %s on node %d: %s", info, ch, n.port, body)
	}
	return int(v)
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := make(map[string]int)
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// checkPresence: a member is listed by every node's HTTP API right after
// its subscription_succeeded, and member_added reaches the others once.
func checkPresence(t *testing.T, n1, n2 *node, ch string, round int) {
	na, nb := pair(n1, n2, round)
	alice := dial(t, na)
	defer alice.close()
	if data := alice.join(ch, "alice"); !strings.Contains(data, `"count":1`) {
		t.Fatalf("alice's view of %s: %s", ch, data)
	}
	expectUsers(t, ch, []string{"alice"}, nb, na)
	bob := dial(t, nb)
	defer bob.close()
	if data := bob.join(ch, "bob"); !strings.Contains(data, `"count":2`) || !strings.Contains(data, `"alice":{"name":"alice"}`) {
		t.Fatalf("bob, on the other node, does not see alice: %s", data)
	}
	expectUsers(t, ch, []string{"alice", "bob"}, na, nb)
	e := alice.next()
	if e.Event != "pusher_internal:member_added" || e.DataString() != `{"user_id":"bob","user_info":{"name":"bob"}}` {
		t.Fatalf("alice: expected member_added of bob, got %s %s", e.Event, e.Data)
	}
	// A second connection of bob, on alice's node: bob is already there,
	// nobody is told again.
	bob2 := dial(t, na)
	defer bob2.close()
	if data := bob2.join(ch, "bob"); !strings.Contains(data, `"count":2`) {
		t.Fatalf("bob2's view of %s: %s", ch, data)
	}
	expectUsers(t, ch, []string{"alice", "bob"}, nb, na)
	// The marker comes after any member_added either node sent.
	nb.trigger(ch, "marker", "b", "")
	na.trigger(ch, "marker", "a", "")
	for _, c := range []*client{alice, bob, bob2} {
		expectSeq(c, "marker", []string{"a"}, []string{"b"})
	}
}

// checkCache: once a trigger on a cache channel got 200, a new subscriber
// on the other node gets that event first after subscription_succeeded.
func checkCache(t *testing.T, n1, n2 *node, ch string, round int) {
	sub, pub := pair(n1, n2, round)
	pub.trigger(ch, "price", "old", "")
	pub.trigger(ch, "price", "new", "")
	a := dial(t, sub)
	defer a.close()
	a.subscribe(ch)
	expectData(a, "price", "new")
	// And it is the cached event of the triggering node too.
	b := dial(t, pub)
	defer b.close()
	b.subscribe(ch)
	expectData(b, "price", "new")
}

// checkCounts: subscription_count through either node counts the
// subscribers of both right after their subscription_succeeded.
func checkCounts(t *testing.T, n1, n2 *node, ch string, round int) {
	na, nb := pair(n1, n2, round)
	for _, n := range []*node{na, nb, nb} {
		c := dial(t, n)
		defer c.close()
		c.subscribe(ch)
	}
	for _, n := range []*node{na, nb} {
		if got := channelInfo(n, ch, "subscription_count"); got != 3 {
			t.Fatalf("subscription_count of %s through node %d: %d, want 3", ch, n.port, got)
		}
		want := fmt.Sprintf(`{"channels":{%q:{"subscription_count":3}}}`, ch)
		if code, body := n.api("GET", "/apps/"+appID+"/channels?filter_by_prefix="+ch+"&info=subscription_count", ""); code != 200 || body != want {
			t.Fatalf("channels %s* through node %d: %d %s, want %s", ch, n.port, code, body, want)
		}
	}
}

// crossNodeCheck is one of the checks above.
type crossNodeCheck struct {
	name string
	run  func(t *testing.T, n1, n2 *node, ch string, round int)
	// prefix of the channels it uses; each round adds a unique suffix.
	prefix string
}

var crossNodeChecks = []crossNodeCheck{
	{"events", checkEvents, "orders"},
	{"presence", checkPresence, "presence-room"},
	{"cache", checkCache, "cache-prices"},
	{"counts", checkCounts, "counted"},
}

// runChecks runs every check n times, each round on a fresh channel named
// prefix-tag-round. (The final dot keeps one round's name from being a
// prefix of another's.)
func runChecks(t *testing.T, n1, n2 *node, tag string, n int, checks []crossNodeCheck) {
	t.Helper()
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			a, b := n1.on(t), n2.on(t)
			for i := range n {
				c.run(t, a, b, fmt.Sprintf("%s-%s-%d.", c.prefix, tag, i), i)
			}
			t.Logf("%d rounds in %s", n, time.Since(start).Round(time.Millisecond))
		})
	}
}

// shardOf returns the index of the node of c whose sharded pub/sub has a
// channel ending in suffix, failing unless exactly one has.
func shardOf(t *testing.T, c *redistest.Cluster, suffix string) int {
	t.Helper()
	found := -1
	for i, n := range c.Nodes {
		if n.Do(t, "PUBSUB", "SHARDCHANNELS", "*"+suffix) == "" {
			continue
		}
		if found >= 0 {
			t.Fatalf("sharded channel *%s on nodes %d and %d", suffix, found, i)
		}
		found = i
	}
	if found < 0 {
		t.Fatalf("no node has a sharded channel *%s", suffix)
	}
	return found
}

func TestTopologies(t *testing.T) {
	var rc *redistest.Cluster
	topologies := []struct {
		name  string
		start func(t *testing.T) string
	}{
		{"single", func(t *testing.T) string { return singleRedis(redistest.Start(t).Port) }},
		{"sentinel", func(t *testing.T) string { return sentinelRedis(redistest.StartSentinel(t)) }},
		{"cluster", func(t *testing.T) string {
			c := redistest.StartCluster(t)
			rc = c
			return clusterRedis(c)
		}},
	}
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			start := time.Now()
			conf := tp.start(t)
			redisUp := time.Since(start)
			n1, n2 := startNodeWith(t, conf), startNodeWith(t, conf)
			waitCluster(t, n1, n2)
			t.Logf("Redis up in %s, nodes formed in %s", redisUp.Round(time.Millisecond), (time.Since(start) - redisUp).Round(time.Millisecond))
			runChecks(t, n1, n2, tp.name, rounds, crossNodeChecks)
			if tp.name == "cluster" {
				// The events of the rounds travelled through every shard.
				t.Run("shards", func(t *testing.T) { checkShards(t, rc, n1.on(t), n2.on(t)) })
			}
		})
	}
}

// checkShards subscribes on both nodes to the channels of the events
// rounds again and checks, through the Redis nodes, that each travels over
// sharded pub/sub and that together they use every shard.
func checkShards(t *testing.T, c *redistest.Cluster, n1, n2 *node) {
	a, b := dial(t, n1), dial(t, n2)
	count := make([]int, len(c.Nodes))
	for i := range rounds {
		ch := fmt.Sprintf("orders-cluster-%d.", i)
		a.subscribe(ch)
		b.subscribe(ch)
		count[shardOf(t, c, ":"+ch)]++
	}
	for i, n := range count {
		if n == 0 {
			t.Fatalf("no channel on shard %d: %v", i, count)
		}
	}
	t.Logf("channels by shard: %v", count)
}

// resumeWithin triggers name on from's node until to gets it, at most d.
// It returns how long that took and how many triggers were not answered
// 200 on the way (e.g. 503 while the queue was full).
func resumeWithin(t *testing.T, from *node, to *client, ch, name string, d time.Duration) (took time.Duration, refused int) {
	t.Helper()
	start := time.Now()
	for i := 0; time.Since(start) < d; i++ {
		body := fmt.Sprintf(`{"name":%q,"channel":%q,"data":"%d"}`, name, ch, i)
		if code, _ := from.api("POST", "/apps/"+appID+"/events", body); code != 200 {
			refused++
		}
		wait := time.After(200 * time.Millisecond)
	drain:
		for {
			select {
			case e := <-to.events:
				if e.Event == name {
					return time.Since(start), refused
				}
			case <-wait:
				break drain
			}
		}
	}
	t.Fatalf("%s through node %d never reached the other node within %s", name, from.port, d)
	return 0, 0
}

func TestSentinelFailoverResumesDelivery(t *testing.T) {
	s := redistest.StartSentinel(t)
	conf := sentinelRedis(s)
	n1, n2 := startNodeWith(t, conf), startNodeWith(t, conf)
	waitCluster(t, n1, n2)
	t.Run("before", func(t *testing.T) { runChecks(t, n1, n2, "before", 3, crossNodeChecks) })

	// Clients that stay connected through the failover.
	alice := dial(t, n1)
	alice.join("presence-lobby", "alice")
	bob := dial(t, n2)
	bob.join("presence-lobby", "bob")
	alice.expect("pusher_internal:member_added")
	a, b := dial(t, n1), dial(t, n2)
	a.subscribe("probe")
	b.subscribe("probe")

	marks := []int{n1.mark(), n2.mark()}
	start := time.Now()
	old := s.Master.Addr
	newMaster := s.Failover(t)
	t.Logf("failover from %s to %s took %s", old, newMaster, time.Since(start).Round(time.Millisecond))

	// Delivery resumes without restarting the nodes, both ways.
	took, refused := resumeWithin(t, n1, b, "probe", "forth", 20*time.Second)
	t.Logf("node 1 → node 2 resumed %s after the failover (%d triggers refused)", took.Round(time.Millisecond), refused)
	took, refused = resumeWithin(t, n2, a, "probe", "back", 20*time.Second)
	t.Logf("node 2 → node 1 resumed %s after that (%d triggers refused)", took.Round(time.Millisecond), refused)

	// From now on the cross-node guarantees hold right after each action.
	t.Run("after", func(t *testing.T) { runChecks(t, n1, n2, "after", 10, crossNodeChecks) })

	// The members who stayed are listed by both nodes (each node's state
	// may take a resync to come back).
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range []*node{n1, n2} {
		for {
			got := users(n, "presence-lobby")
			if sameSet(got, []string{"alice", "bob"}) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("presence-lobby through node %d after the failover: %q", n.port, got)
			}
			time.Sleep(50 * time.Millisecond) // polling interval
		}
	}

	// Each node either never lost Redis or says it got it back.
	for i, n := range []*node{n1, n2} {
		logs := n.logs.String()[marks[i]:]
		lost := strings.LastIndex(logs, "Redis unreachable")
		back := strings.LastIndex(logs, "Redis reachable again")
		switch {
		case lost < 0:
			t.Logf("node %d was never degraded", i+1)
		case back < lost:
			t.Fatalf("node %d lost Redis and never said it was back:\n%s", i+1, logs)
		default:
			t.Logf("node %d was degraded and recovered", i+1)
		}
	}
	// What alice saw of bob meanwhile, for the record.
	for len(alice.events) > 0 {
		e := <-alice.events
		t.Logf("alice got %s %s", e.Event, e.Data)
	}
}

// After a planned failover (SENTINEL FAILOVER, the old master still up) the
// nodes publish to the new master at once; their subscriptions must move
// as promptly, not when the sentinels demote the old master and kill its
// pub/sub clients (about 10 s later). Until then every cross-node event is
// lost although the trigger got 200 and the subscriber got
// subscription_succeeded, and the nodes, not degraded, take each other for
// dead (member_removed for every remote member).
func TestSentinelFailoverMovesSubscriptionsPromptly(t *testing.T) {
	s := redistest.StartSentinel(t)
	conf := sentinelRedis(s)
	n1, n2 := startNodeWith(t, conf), startNodeWith(t, conf)
	waitCluster(t, n1, n2)
	alice := dial(t, n1)
	alice.join("presence-lobby", "alice")
	bob := dial(t, n2)
	bob.join("presence-lobby", "bob")
	alice.expect("pusher_internal:member_added")
	a, b := dial(t, n1), dial(t, n2)
	a.subscribe("probe")
	b.subscribe("probe")

	s.Failover(t)
	took, _ := resumeWithin(t, n1, b, "probe", "forth", 5*time.Second)
	t.Logf("node 1 → node 2 resumed %s after the failover", took.Round(time.Millisecond))
	took, _ = resumeWithin(t, n2, a, "probe", "back", 5*time.Second)
	t.Logf("node 2 → node 1 resumed %s after that", took.Round(time.Millisecond))
	// bob never left alice's view.
	n2.trigger("presence-lobby", "marker", "m", "")
	alice.waitFor(10*time.Second, func(e event) bool {
		if e.Event == "pusher_internal:member_removed" {
			t.Fatalf("alice saw bob leave during the failover: %s", e.Data)
		}
		return e.Event == "marker"
	})
}
