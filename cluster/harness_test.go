package cluster

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/reverbgo/reverb/pusher"
	"github.com/reverbgo/reverb/wsproto"
)

// Nodes of these tests run a pusher.Server with one shard, driven by a
// goroutine of its own, and a broker over a memBus.

const (
	memAppID  = "4242"
	memKey    = "mem-key"
	memSecret = "mem-secret"
	// waitTimeout bounds every wait for a condition.
	waitTimeout = 5 * time.Second
)

// waitUntil polls cond until it holds, failing the test after waitTimeout.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}

// testLoop runs functions one at a time, in order, on its own goroutine:
// a shard's event loop.
type testLoop struct {
	mu   sync.Mutex
	q    []func()
	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

func newTestLoop() *testLoop {
	l := &testLoop{wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
}

func (l *testLoop) exec(f func()) {
	l.mu.Lock()
	l.q = append(l.q, f)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *testLoop) run() {
	defer close(l.done)
	for {
		select {
		case <-l.quit:
			return
		case <-l.wake:
		}
		for {
			l.mu.Lock()
			q := l.q
			l.q = nil
			l.mu.Unlock()
			if len(q) == 0 {
				break
			}
			for _, f := range q {
				f()
			}
		}
	}
}

// do runs f on the loop and waits for it.
func (l *testLoop) do(f func()) {
	ch := make(chan struct{})
	l.exec(func() { f(); close(ch) })
	<-ch
}

func (l *testLoop) stop() {
	close(l.quit)
	<-l.done
}

// testConn is a pusher.Conn that keeps the text messages written to it.
type testConn struct {
	mu     sync.Mutex
	msgs   []string
	closed bool
}

func (c *testConn) Write(b []byte) (int, error) {
	c.decode(b)
	return len(b), nil
}

func (c *testConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		c.decode(b)
		n += len(b)
	}
	return n, nil
}

func (c *testConn) decode(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(b) > 0 {
		h, n, err := wsproto.ParseHeader(b)
		if err != nil || n == 0 || n+int(h.Length) > len(b) {
			panic(fmt.Sprintf("testConn: bad frame %x: %v", b, err))
		}
		if h.OpCode == ws.OpText {
			c.msgs = append(c.msgs, string(b[n:n+int(h.Length)]))
		}
		b = b[n+int(h.Length):]
	}
}

func (c *testConn) OutboundBuffered() int { return 0 }

func (c *testConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *testConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *testConn) messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

// testNode is one node: a pusher.Server, its shard's loop and its broker.
type testNode struct {
	t    testing.TB
	srv  *pusher.Server
	app  *pusher.App
	sh   *pusher.Shard
	loop *testLoop
	b    *Redis
	tr   *memTransport

	closeOnce sync.Once
}

// testConfig is the broker configuration of these tests: quiet (no
// heartbeat during a test unless it asks for one) and silent.
func testConfig() Config {
	return Config{
		Channel:           "t",
		HeartbeatInterval: time.Minute,
		NodeTimeout:       time.Hour,
		GatherTimeout:     2 * time.Second,
		PublishTimeout:    2 * time.Second,
		Logger:            slog.New(slog.DiscardHandler),
	}
}

// newNode builds a node on the bus; it is started by start. mod may change
// the configuration and the server options.
func (b *memBus) newNode(t testing.TB, mod func(c *Config, o *pusher.Options)) *testNode {
	t.Helper()
	app := &pusher.App{ID: memAppID, Key: memKey, Secret: memSecret}
	opts := pusher.Options{Apps: []*pusher.App{app}, Logger: slog.New(slog.DiscardHandler)}
	cfg := testConfig()
	if mod != nil {
		mod(&cfg, &opts)
	}
	srv, err := pusher.NewServer(opts, 1)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{t: t, srv: srv, app: app, loop: newTestLoop(), tr: b.transport()}
	n.sh = srv.NewShard(n.loop.exec)
	n.b = newBroker(cfg, srv, n.tr)
	srv.SetBroker(n.b)
	t.Cleanup(n.close)
	return n
}

// startNode builds and starts a node.
func (b *memBus) startNode(t testing.TB, mod func(c *Config, o *pusher.Options)) *testNode {
	t.Helper()
	n := b.newNode(t, mod)
	n.start()
	return n
}

// start starts the broker and waits until it is connected.
func (n *testNode) start() {
	n.t.Helper()
	n.b.Start()
	waitUntil(n.t, "the broker is connected", func() bool { return !n.b.Degraded() })
}

// close stops the broker (saying bye) and the loop. Idempotent. A test
// that blocks publishes releases them first.
func (n *testNode) close() {
	n.closeOnce.Do(func() {
		n.b.Close()
		n.loop.stop()
	})
}

// waitDone waits for a Publish's done channel.
func waitDone(t testing.TB, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("done not closed")
	}
}

// waitNodes waits until the node knows k other nodes.
func (n *testNode) waitNodes(k int) {
	n.t.Helper()
	waitUntil(n.t, fmt.Sprintf("node %s knows %d other nodes", n.b.NodeID(), k), func() bool { return n.b.Stats().Nodes == k })
}

// members returns the user ids of a presence channel as this node lists them.
func (n *testNode) members(channel string) []string {
	var ids []string
	for _, m := range n.srv.Members(n.app, channel) {
		ids = append(ids, string(m.ID))
	}
	slices.Sort(ids)
	return ids
}

// waitMembers waits until the node lists exactly these user ids (raw JSON).
func (n *testNode) waitMembers(channel string, ids ...string) {
	n.t.Helper()
	slices.Sort(ids)
	waitUntil(n.t, fmt.Sprintf("%s lists %v", channel, ids), func() bool { return slices.Equal(n.members(channel), ids) })
}

// subsLen is the number of bus channels the broker keeps state for.
func (n *testNode) subsLen() int {
	n.b.imu.Lock()
	defer n.b.imu.Unlock()
	return len(n.b.subs)
}

// testClient is a WebSocket client of a node.
type testClient struct {
	n    *testNode
	sess *pusher.Session
	conn *testConn
	seen int // messages already looked at by next
}

// connect opens a session on the node's shard.
func (n *testNode) connect() *testClient {
	n.t.Helper()
	c := &testClient{n: n, conn: &testConn{}}
	n.loop.do(func() { c.sess = n.srv.Open(n.sh, c.conn, memKey, "") })
	if c.sess == nil {
		n.t.Fatal("Open refused the connection")
	}
	c.next(func(m busMsg) bool { return m.Event == "pusher:connection_established" })
	return c
}

// send hands a client message to the session on its loop.
func (c *testClient) send(msg string) {
	c.n.loop.do(func() { c.sess.HandleMessage([]byte(msg)) })
}

// disconnect closes the client's connection.
func (c *testClient) disconnect() {
	c.n.loop.do(func() { c.n.srv.Closed(c.sess) })
}

// subscribeAsync sends a pusher:subscribe, signed for private and presence
// channels. For presence channels user is the user id (a JSON string).
func (c *testClient) subscribeAsync(channel, user string) {
	data := `{"channel":` + jsonString(channel)
	if kind, _ := pusher.Classify(channel); kind == pusher.KindPrivate || kind == pusher.KindPresence {
		cd := ""
		if kind == pusher.KindPresence {
			cd = `{"user_id":` + jsonString(user) + `,"user_info":{"name":` + jsonString("n-"+user) + `}}`
			data += `,"channel_data":` + jsonString(cd)
		}
		data += `,"auth":` + jsonString(pusher.ChannelSignature(c.n.app, c.sess.ID(), channel, cd))
	}
	c.send(`{"event":"pusher:subscribe","data":` + data + `}}`)
}

// subscribe subscribes and waits for pusher_internal:subscription_succeeded;
// it returns that message.
func (c *testClient) subscribe(channel, user string) busMsg {
	c.n.t.Helper()
	c.subscribeAsync(channel, user)
	return c.next(func(m busMsg) bool {
		return m.Event == "pusher_internal:subscription_succeeded" && m.Channel == channel
	})
}

func (c *testClient) unsubscribe(channel string) {
	c.send(`{"event":"pusher:unsubscribe","data":{"channel":` + jsonString(channel) + `}}`)
}

// busMsg is a message a client received.
type busMsg struct {
	Event, Channel string
	Data           string // the data, unquoted when it is a JSON string
	raw            string
}

func parseBusMsg(t testing.TB, s string) busMsg {
	t.Helper()
	var m struct {
		Event   string          `json:"event"`
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("client received invalid JSON %q: %v", s, err)
	}
	out := busMsg{Event: m.Event, Channel: m.Channel, raw: s, Data: string(m.Data)}
	var str string
	if json.Unmarshal(m.Data, &str) == nil {
		out.Data = str
	}
	return out
}

// all returns every message the client received, parsed.
func (c *testClient) all() []busMsg {
	var out []busMsg
	for _, s := range c.conn.messages() {
		out = append(out, parseBusMsg(c.n.t, s))
	}
	return out
}

// next waits for the first message after those already looked at that
// matches, and returns it; the messages before it are skipped.
func (c *testClient) next(match func(busMsg) bool) busMsg {
	c.n.t.Helper()
	var found busMsg
	waitUntil(c.n.t, "the client receives the message it waits for", func() bool {
		msgs := c.conn.messages()
		for i := c.seen; i < len(msgs); i++ {
			if m := parseBusMsg(c.n.t, msgs[i]); match(m) {
				found = m
				c.seen = i + 1
				return true
			}
		}
		return false
	})
	return found
}

// nextMsg waits for the next message, whatever it is.
func (c *testClient) nextMsg() busMsg {
	c.n.t.Helper()
	return c.next(func(busMsg) bool { return true })
}

// events returns the data of the events named name received on channel.
func (c *testClient) events(channel, name string) []string {
	var out []string
	for _, m := range c.all() {
		if m.Channel == channel && m.Event == name {
			out = append(out, m.Data)
		}
	}
	return out
}

// waitEvent waits for an event named name with data on channel.
func (c *testClient) waitEvent(channel, name, data string) {
	c.n.t.Helper()
	waitUntil(c.n.t, fmt.Sprintf("the client receives %s %q on %s", name, data, channel), func() bool {
		return slices.Contains(c.events(channel, name), data)
	})
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// userJSON is the raw user id of user, as Members returns it.
func userJSON(user string) string { return jsonString(user) }

// eventMsg is the message of an event as the HTTP API builds it.
func eventMsg(channel, name, data string) []byte {
	return []byte(`{"event":` + jsonString(name) + `,"data":` + jsonString(data) + `,"channel":` + jsonString(channel) + `}`)
}

// presenceIDs returns the ids of a subscription_succeeded presence block.
func presenceIDs(t testing.TB, m busMsg) []string {
	t.Helper()
	var d struct {
		Presence struct {
			IDs []json.RawMessage `json:"ids"`
		} `json:"presence"`
	}
	if err := json.Unmarshal([]byte(m.Data), &d); err != nil {
		t.Fatalf("presence data %q: %v", m.Data, err)
	}
	var ids []string
	for _, id := range d.Presence.IDs {
		ids = append(ids, string(id))
	}
	return ids
}

// busChannel is a node's bus channel of a Pusher channel.
func (n *testNode) busChannel(channel string) string {
	bus, _ := n.b.busChannel(n.app, channel)
	return bus
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
