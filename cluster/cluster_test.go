package cluster_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reverbgo/reverb/cluster/redistest"
	"github.com/reverbgo/reverb/internal/testkit"
)

// These tests run real processes: a redis-server from the system (installed
// by `make test`) on a free loopback port and several `reverb` servers.

const (
	appID  = "100200"
	appKey = "cluster-key"
	secret = "cluster-secret"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func reverbBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "reverb-cluster-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "reverb")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/reverb").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// freePort returns a port for a node process (see testkit.FreePort on
// its race).
func freePort(t *testing.T) int {
	t.Helper()
	return testkit.FreePort(t)
}

// redisServer is a real redis-server process (cluster/redistest).
type redisServer struct {
	port int
	srv  *redistest.Server
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	srv := redistest.Start(t)
	return &redisServer{port: srv.Port, srv: srv}
}

// node is a real reverb server process.
type node struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// singleRedis is the [scaling.redis] body for the redis-server on port.
func singleRedis(port int) string {
	return fmt.Sprintf("host = \"127.0.0.1\"\nport = %d\n", port)
}

func startNode(t *testing.T, redisPort int) *node {
	t.Helper()
	return startNodeOn(t, singleRedis(redisPort), freePort(t), "")
}

// startNodeWith starts a node whose [scaling.redis] body is redisConf.
func startNodeWith(t *testing.T, redisConf string) *node {
	t.Helper()
	return startNodeOn(t, redisConf, freePort(t), "")
}

// startNodeOn starts a node on port; redisConf is the body of
// [scaling.redis] (TOML lines) and serverExtra is added to [server].
func startNodeOn(t *testing.T, redisConf string, port int, serverExtra string) *node {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`[server]
host = "127.0.0.1"
port = %d
`+serverExtra+`
pid_dir = %q
drain_timeout = 2

[[apps]]
app_id = %q
key = %q
secret = %q
accept_client_events_from = "members"

[scaling]
enabled = true
channel = "reverb-test"
heartbeat_interval = 1
node_timeout = 3
gather_timeout_ms = 1500

[scaling.redis]
`, port, dir, appID, appKey, secret) + redisConf
	path := filepath.Join(dir, "reverb.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, port: port, logs: &syncBuffer{}, done: make(chan struct{})}
	args := []string{"start", "--config", path}
	if os.Getenv("REVERB_TEST_DEBUG") != "" {
		args = append(args, "--debug")
	}
	n.cmd = exec.Command(reverbBinary(t), args...)
	n.cmd.Stdout = n.logs
	n.cmd.Stderr = n.logs
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = n.cmd.Wait(); close(n.done) }()
	t.Cleanup(func() {
		_ = n.cmd.Process.Kill()
		<-n.done
		if t.Failed() {
			t.Logf("node %d logs:\n%s", port, n.logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		// With reuse_port another process may answer on the same port:
		// this one is ready once it says it listens and the port answers.
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/up", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(n.logs.String(), "Starting server on") {
				return n
			}
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	t.Fatalf("node did not start:\n%s", n.logs.String())
	return nil
}

// mark returns the current length of the node's log.
func (n *node) mark() int { return len(n.logs.String()) }

// waitLog waits until the node's log, after mark, contains s.
func (n *node) waitLog(mark int, s string, d time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(n.logs.String()[mark:], s) {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	n.t.Fatalf("node %d never logged %q:\n%s", n.port, s, n.logs.String())
}

// testApp is the app every node serves.
var testApp = testkit.App{ID: appID, Key: appKey, Secret: secret}

// api sends a signed HTTP API request and returns status and body.
func (n *node) api(method, path, body string) (int, string) {
	n.t.Helper()
	return testkit.API(n.t, fmt.Sprintf("127.0.0.1:%d", n.port), testApp, method, path, body)
}

func (n *node) trigger(channel, name, data, except string) {
	n.t.Helper()
	body := fmt.Sprintf(`{"name":%q,"channel":%q,"data":%q,"socket_id":%q}`, name, channel, data, except)
	if code, resp := n.api("POST", "/apps/"+appID+"/events", body); code != 200 {
		n.t.Fatalf("trigger: %d %s", code, resp)
	}
}

type event = testkit.Event

// client is a WebSocket client of the test app whose reader goroutine
// queues the events; it waits 10 s for each.
type client struct {
	*testkit.Client
	t      *testing.T
	conn   net.Conn
	events chan event
	closed chan struct{}
	sid    string
}

func dial(t *testing.T, n *node) *client {
	t.Helper()
	c := testkit.Dial(t, fmt.Sprintf("127.0.0.1:%d", n.port), testApp, 10*time.Second)
	return &client{Client: c, t: t, conn: c.Conn, events: c.Events, closed: c.Closed, sid: c.SocketID}
}

func (c *client) send(msg string)       { c.t.Helper(); c.Send(msg) }
func (c *client) next() event           { c.t.Helper(); return c.Next() }
func (c *client) expect(n string) event { c.t.Helper(); return c.Expect(n) }
func (c *client) subscribe(ch string)   { c.t.Helper(); c.Subscribe(ch) }

// waitFor skips events until one matches, within d.
func (c *client) waitFor(d time.Duration, match func(event) bool) event {
	c.t.Helper()
	return c.WaitFor(d, match)
}

// join subscribes to a presence channel as user and returns the presence data.
func (c *client) join(channel, user string) string {
	c.t.Helper()
	return c.Join(channel, fmt.Sprintf(`{"user_id":%q,"user_info":{"name":%q}}`, user, user))
}

// private subscribes to a private channel.
func (c *client) private(channel string) { c.t.Helper(); c.Private(channel) }

// waitNodes waits until every node's HTTP API sees subscriptions of channel
// summing to want, i.e. the cluster has formed.
func waitCount(t *testing.T, n *node, channel string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		_, body := n.api("GET", "/apps/"+appID+"/channels/"+channel+"?info=subscription_count,user_count", "")
		last = body
		if strings.Contains(body, fmt.Sprintf(`_count":%d`, want)) {
			return
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	t.Fatalf("channel %s never reached %d on node %d: %s", channel, want, n.port, last)
}

func TestEventsReachEveryNodeAndExclusionWorksAcrossNodes(t *testing.T) {
	r := startRedis(t)
	n1, n2 := startNode(t, r.port), startNode(t, r.port)
	a, b := dial(t, n1), dial(t, n2)
	a.subscribe("orders")
	b.subscribe("orders")
	waitCount(t, n1, "orders", 2)

	n1.trigger("orders", "created", `{"id":1}`, "")
	for _, c := range []*client{a, b} {
		e := c.expect("created")
		if e.Channel != "orders" || e.DataString() != `{"id":1}` {
			t.Fatalf("got %+v", e)
		}
	}
	// Excluding b (on the other node): only a gets it; the marker that
	// follows proves b got nothing before it.
	n1.trigger("orders", "skipped", "x", b.sid)
	n1.trigger("orders", "marker", "y", "")
	if e := a.expect("skipped"); e.DataString() != "x" {
		t.Fatalf("a got %+v", e)
	}
	a.expect("marker")
	b.expect("marker")

	// Events triggered on node 2 reach node 1, in order.
	for i := range 20 {
		n2.trigger("orders", "seq", fmt.Sprint(i), "")
	}
	for _, c := range []*client{a, b} {
		for i := range 20 {
			if e := c.expect("seq"); e.DataString() != fmt.Sprint(i) {
				t.Fatalf("event %d out of order: %s", i, e.DataString())
			}
		}
	}
	// Client events cross nodes too, never echoed.
	a.private("private-chat")
	b.private("private-chat")
	waitCount(t, n1, "private-chat", 2)
	a.send(`{"event":"client-typing","channel":"private-chat","data":{"who":"a"}}`)
	e := b.expect("client-typing")
	if !strings.Contains(string(e.Data), `"who":"a"`) {
		t.Fatalf("client event %s", e.Data)
	}
	n1.trigger("private-chat", "marker", "z", "")
	a.expect("marker")
}

func TestPresenceIsClusterWide(t *testing.T) {
	r := startRedis(t)
	n1, n2 := startNode(t, r.port), startNode(t, r.port)
	alice := dial(t, n1)
	data := alice.join("presence-room", "alice")
	if !strings.Contains(data, `"count":1`) {
		t.Fatalf("alice's view %s", data)
	}
	waitCount(t, n2, "presence-room", 1)
	bob := dial(t, n2)
	data = bob.join("presence-room", "bob")
	if !strings.Contains(data, `"count":2`) || !strings.Contains(data, `"alice":{"name":"alice"}`) {
		t.Fatalf("bob does not see alice on the other node: %s", data)
	}
	e := alice.expect("pusher_internal:member_added")
	if !strings.Contains(e.DataString(), `"user_id":"bob"`) {
		t.Fatalf("member_added %s", e.DataString())
	}
	// A second connection of bob, on node 1: no new member_added anywhere.
	bob2 := dial(t, n1)
	if data := bob2.join("presence-room", "bob"); !strings.Contains(data, `"count":2`) {
		t.Fatalf("bob2's view %s", data)
	}
	waitCount(t, n2, "presence-room", 2) // user_count stays 2
	code, body := n2.api("GET", "/apps/"+appID+"/channels/presence-room/users", "")
	if code != 200 || !strings.Contains(body, `{"id":"alice"}`) || !strings.Contains(body, `{"id":"bob"}`) {
		t.Fatalf("users on node 2: %d %s", code, body)
	}
	code, body = n1.api("GET", "/apps/"+appID+"/connections", "")
	if code != 200 || body != `{"connections":3}` {
		t.Fatalf("connections: %d %s", code, body)
	}
	// bob's first connection leaves: he is still there through bob2.
	bob.conn.Close()
	n1.trigger("presence-room", "marker", "1", "")
	if e := alice.next(); e.Event != "marker" {
		t.Fatalf("alice got %s %s before the marker", e.Event, e.Data)
	}
	// His last connection leaves: member_removed once.
	bob2.conn.Close()
	e = alice.expect("pusher_internal:member_removed")
	if e.DataString() != `{"user_id":"bob"}` {
		t.Fatalf("member_removed %s", e.DataString())
	}
}

func TestDeadNodesMembersAreRemoved(t *testing.T) {
	r := startRedis(t)
	n1, n2 := startNode(t, r.port), startNode(t, r.port)
	// A node listens before it is connected to Redis; a join made in
	// between reaches the other node only with the next sync.
	n1.waitLog(0, "Connected to Redis", 10*time.Second)
	n2.waitLog(0, "Connected to Redis", 10*time.Second)
	alice := dial(t, n1)
	alice.join("presence-room", "alice")
	bob := dial(t, n2)
	if data := bob.join("presence-room", "bob"); !strings.Contains(data, `"count":2`) {
		t.Fatalf("bob's view %s", data)
	}
	alice.expect("pusher_internal:member_added")
	// Node 2 dies without a word: node 1 removes bob after node_timeout (3 s).
	start := time.Now()
	_ = n2.cmd.Process.Kill()
	e := alice.waitFor(15*time.Second, func(e event) bool { return e.Event == "pusher_internal:member_removed" })
	if e.DataString() != `{"user_id":"bob"}` {
		t.Fatalf("member_removed %s", e.DataString())
	}
	t.Logf("member_removed after %s", time.Since(start).Round(100*time.Millisecond))
}

func TestCacheChannelAndTerminateAcrossNodes(t *testing.T) {
	r := startRedis(t)
	n1, n2 := startNode(t, r.port), startNode(t, r.port)
	a := dial(t, n1)
	a.subscribe("cache-prices")
	a.expect("pusher:cache_miss")
	waitCount(t, n2, "cache-prices", 1)
	n1.trigger("cache-prices", "price", "42", "")
	a.expect("price")
	// Node 2 stores the event when it arrives through Redis.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := n2.api("GET", "/apps/"+appID+"/channels/cache-prices?info=cache", "")
		if strings.Contains(body, `"cache":`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 2 never cached the event: %s", body)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	// A new subscriber on the other node gets the last event.
	b := dial(t, n2)
	b.subscribe("cache-prices")
	if e := b.expect("price"); e.DataString() != "42" {
		t.Fatalf("cached event %+v", e)
	}
	// Terminating a user through node 1 closes their connection on node 2.
	carol := dial(t, n2)
	carol.join("presence-x", "carol")
	waitCount(t, n1, "presence-x", 1)
	if code, body := n1.api("POST", "/apps/"+appID+"/users/carol/terminate_connections", "{}"); code != 200 {
		t.Fatalf("terminate: %d %s", code, body)
	}
	select {
	case <-carol.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("carol's connection on node 2 was not closed")
	}
}

func TestRedisOutageKeepsLocalDeliveryAndRecovers(t *testing.T) {
	r := startRedis(t)
	n1, n2 := startNode(t, r.port), startNode(t, r.port)
	a, b := dial(t, n1), dial(t, n2)
	a.subscribe("news")
	b.subscribe("news")
	alice := dial(t, n1)
	alice.join("presence-room", "alice")
	waitCount(t, n2, "news", 2)

	// Redis freezes.
	mark := n1.mark()
	r.srv.Pause()
	n1.waitLog(mark, "Redis unreachable", 15*time.Second)
	// Local delivery goes on.
	n1.trigger("news", "during", "1", "")
	if e := a.expect("during"); e.DataString() != "1" {
		t.Fatalf("local event during the outage: %+v", e)
	}
	// A presence user joins node 2 while Redis is frozen.
	carol := dial(t, n2)
	carol.join("presence-room", "carol")
	// The node says it is degraded but does not exit.
	select {
	case <-n1.done:
		t.Fatalf("node exited during the outage:\n%s", n1.logs.String())
	default:
	}

	// Redis comes back: cross-node delivery and presence return.
	mark = n1.mark()
	r.srv.Resume()
	n1.waitLog(mark, "Redis reachable again", 15*time.Second)
	deadline := time.Now().Add(15 * time.Second)
	got := false
	for !got && time.Now().Before(deadline) {
		n1.trigger("news", "after", "2", "")
		select {
		case e := <-b.events:
			got = e.Event == "after"
		case <-time.After(500 * time.Millisecond):
		}
	}
	if !got {
		t.Fatal("cross-node delivery did not come back after the outage")
	}
	bob := dial(t, n2)
	if data := bob.join("presence-room", "bob"); !strings.Contains(data, `"alice"`) || !strings.Contains(data, `"carol"`) {
		t.Fatalf("presence on node 2 after the outage: %s", data)
	}
	// Node 1 learnt about carol (and bob) after the resync.
	alice.waitFor(10*time.Second, func(e event) bool {
		return e.Event == "pusher_internal:member_added" && strings.Contains(e.DataString(), `"carol"`)
	})
	waitCount(t, n1, "presence-room", 3)
}

func TestRestartThroughRedisDrainsEveryNode(t *testing.T) {
	r := startRedis(t)
	n1, n2 := startNode(t, r.port), startNode(t, r.port)
	a, b := dial(t, n1), dial(t, n2)
	dir := t.TempDir()
	cfg := fmt.Sprintf("[server]\nport = %d\npid_dir = %q\n[[apps]]\napp_id = %q\nkey = %q\nsecret = %q\n[scaling]\nenabled = true\nchannel = \"reverb-test\"\n[scaling.redis]\nport = %d\n", n1.port, dir, appID, appKey, secret, r.port)
	path := filepath.Join(dir, "reverb.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(reverbBinary(t), "restart", "--config", path).CombinedOutput()
	if err != nil {
		t.Fatalf("reverb restart: %v\n%s", err, out)
	}
	for _, c := range []*client{a, b} {
		e := c.expect("pusher:error")
		if !strings.Contains(e.DataString(), `"code":4200`) {
			t.Fatalf("drain error %s", e.DataString())
		}
	}
	for _, n := range []*node{n1, n2} {
		select {
		case <-n.done:
			if code := n.cmd.ProcessState.ExitCode(); code != 0 {
				t.Fatalf("node exited with %d", code)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("node did not exit after the restart")
		}
	}
}

func TestReusePortLetsProcessesShareAPort(t *testing.T) {
	r := startRedis(t)
	port := freePort(t)
	n1 := startNodeOn(t, singleRedis(r.port), port, "reuse_port = true")
	n2 := startNodeOn(t, singleRedis(r.port), port, "reuse_port = true")
	var clients []*client
	for range 24 {
		c := dial(t, n1) // same port as n2: the kernel spreads them
		c.subscribe("shared")
		clients = append(clients, c)
	}
	waitCount(t, n2, "shared", 24)
	// Kill one process: its clients lose their socket, the others are
	// still served through the same port by the other process.
	_ = n1.cmd.Process.Kill()
	<-n1.done
	// The kernel closes a killed process's sockets at once; give the
	// readers a moment to see it.
	lost := 0
	deadline := time.After(3 * time.Second)
	expired := false
	for _, c := range clients {
		if expired {
			select {
			case <-c.closed:
				lost++
			default:
			}
			continue
		}
		select {
		case <-c.closed:
			lost++
		case <-deadline:
			expired = true
		}
	}
	if lost == 0 || lost == len(clients) {
		t.Fatalf("%d of %d clients were on the killed process; the port was not shared", lost, len(clients))
	}
	n2.trigger("shared", "still", "here", "")
	got := 0
	for _, c := range clients {
		select {
		case <-c.closed:
			continue
		default:
		}
		if e := c.expect("still"); e.DataString() == "here" {
			got++
		}
	}
	if got != len(clients)-lost {
		t.Fatalf("%d clients served after the kill, want %d", got, len(clients)-lost)
	}
}
