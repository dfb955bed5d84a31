package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reverbgo/reverb/cluster"
	"github.com/reverbgo/reverb/loop"
	"github.com/reverbgo/reverb/pusher"
)

func TestDropKey(t *testing.T) {
	for _, tc := range []struct {
		err       error
		key       string
		code      int
		reconnect bool
	}{
		{closeFrameErr([]byte{0x10, 0x68, 'b', 'y', 'e'}), "4200", 4200, true},
		{closeFrameErr([]byte{0x10, 0xcc}), "4300", 4300, true},
		{closeFrameErr([]byte{0x0f, 0xa1}), "4001", 4001, false},
		{closeFrameErr([]byte{0x03, 0xe9}), "1001", 1001, true},
		{closeFrameErr(nil), "close", 0, true},
		{io.EOF, "eof", 0, true},
		{nil, "eof", 0, true},
		{fmt.Errorf("read: %w", io.EOF), "eof", 0, true},
		{errors.New("connection reset by peer"), "error", 0, true},
	} {
		key, code := dropKey(tc.err)
		if key != tc.key || code != tc.code || reconnectable(code) != tc.reconnect {
			t.Errorf("dropKey(%v) = %q %d (reconnect %v), want %q %d %v", tc.err, key, code, reconnectable(code), tc.key, tc.code, tc.reconnect)
		}
	}
	if msg := closeFrameErr([]byte{0x10, 0x68, 'b', 'y', 'e'}).Error(); msg != "close frame 4200 bye" {
		t.Errorf("message %q", msg)
	}
}

func TestEventDataForSeq(t *testing.T) {
	now := time.Unix(1700000000, 7)
	for _, jsonPayload := range []bool{false, true} {
		cfg := &Config{Payload: 300, JSONPayload: jsonPayload}
		d := eventDataForSeq(cfg, now, 42)
		if seq, ok := seqOf(d); !ok || seq != 42 {
			t.Errorf("json %v: seqOf %d %v in %s", jsonPayload, seq, ok, d)
		}
		if ts, ok := sentAt(d); !ok || !ts.Equal(now) {
			t.Errorf("json %v: sentAt %v %v", jsonPayload, ts, ok)
		}
		if jsonPayload && !json.Valid(d) {
			t.Errorf("invalid JSON %s", d)
		}
		if _, ok := seqOf(eventDataForSeq(cfg, now, -1)); ok {
			t.Errorf("json %v: a sequence number without one", jsonPayload)
		}
	}
}

// op is one step of a slot in tracked: receive event q, drop or be back
// at the send time of event x.
type op struct {
	kind byte // 'm', 'd' or 'b'
	x    float64
}

func m(q int64) op    { return op{'m', float64(q)} }
func d(x float64) op  { return op{'d', x} }
func bk(x float64) op { return op{'b', x} }

// sendTime is when event x was sent in tracked: 10 s apart, so that only
// the gapSlack before a drop reaches back to an earlier event.
func sendTime(x float64) int64 { return int64((100 + 10*x) * float64(time.Second)) }

// tracked returns a reconnector whose slots went through the steps given.
func tracked(slots ...[]op) *reconnector {
	r := newReconnector(len(slots), 8)
	for i, steps := range slots {
		tr := r.track(i)
		for _, o := range steps {
			switch o.kind {
			case 'm':
				tr.mark(int64(o.x))
				r.seen(int64(o.x), sendTime(o.x), sendTime(o.x))
			case 'd':
				tr.drop(sendTime(o.x))
				r.drops.Add(1)
			case 'b':
				tr.back(sendTime(o.x))
			}
		}
	}
	return r
}

// TestReconnectAccounting checks the per-event accounting: a never
// dropped connection that misses an event counts it lost, a dropped one
// is excused what was sent inside its gaps only, whatever the order the
// events came in. The shards' results go through JSON, as from worker
// processes.
func TestReconnectAccounting(t *testing.T) {
	a := tracked(
		[]op{m(0), m(1), m(2), m(3), m(4)},                               // undropped: misses 5 and 7
		[]op{m(0), m(1), m(3), m(4), m(4)},                               // undropped: misses 2, 5, 7; a duplicate
		[]op{m(0), m(1), d(1.5), bk(2.5), m(3), m(4)},                    // gap: 2; lost: 5, 7
		[]op{m(0), d(0.5), bk(2.5), m(2), m(4)},                          // gap: 1; lost: 3, 5, 7
		[]op{m(0), d(0.5), bk(3.5), m(4), m(2), m(3)},                    // out of order; gap: 1; lost: 5, 7
		[]op{m(0), d(0.5), d(0.6), bk(1.5), m(2), d(2.5), bk(3.5), m(4)}, // gaps: 1 and 3; lost: 5, 7
	)
	b := tracked(
		[]op{m(0)},                  // undropped: misses 1-5 and 7
		[]op{m(0), d(0.5)},          // still down: 1-5 and 7 in its gap
		[]op{m(0), d(0.5), bk(0.8)}, // back, then nothing: 1-5 and 7 lost
	)
	var parts []*reconnectResult
	for _, r := range []*reconnector{a, b} {
		js, err := json.Marshal(r.result())
		if err != nil {
			t.Fatal(err)
		}
		var p reconnectResult
		if err := json.Unmarshal(js, &p); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, &p)
	}
	// Events 0-5 and 7 were accepted; 6 was refused.
	accepted := []bool{true, true, true, true, true, true, false, true}
	st, expected, received := combineReconnect(parts, accepted)
	want := ReconnectStats{
		Undropped: 3, UndroppedExpected: 21, UndroppedReceived: 5 + 4 + 1, UndroppedLost: 2 + 3 + 6, UndroppedLostEvents: 6,
		Dropped: 6, Drops: 8, DroppedReceived: 4 + 3 + 4 + 3 + 1 + 1, MissedInGaps: 1 + 1 + 1 + 2 + 6 + 0,
		DroppedLost: 2 + 3 + 2 + 2 + 0 + 6, Duplicates: 1,
	}
	if !reflect.DeepEqual(*st, want) {
		t.Fatalf("stats\n got %+v\nwant %+v", *st, want)
	}
	if expected != 9*7-want.MissedInGaps || received != want.UndroppedReceived+want.DroppedReceived ||
		expected-received != want.UndroppedLost+want.DroppedLost {
		t.Fatalf("expected %d received %d", expected, received)
	}
	// Everything received: nothing lost.
	st, expected, received = combineReconnect([]*reconnectResult{tracked([]op{m(0), m(1)}, []op{m(1), m(0)}).result()}, []bool{true, true})
	if st.UndroppedLost != 0 || st.UndroppedReceived != 4 || expected != 4 || received != 4 {
		t.Fatalf("complete: %+v %d %d", st, expected, received)
	}
}

// fanoutArgs are the flags of a small fanout with --reconnect against
// port.
func fanoutArgs(port int, extra ...string) []string {
	return append([]string{"--port", strconv.Itoa(port), "--scenario", "fanout", "--reconnect", "--progress", "off",
		"--timeout", "30s", "--server-pid", strconv.Itoa(os.Getpid())}, append(testApp, extra...)...)
}

// runFanout runs a fanout with --reconnect against port (fanoutArgs and
// args) and returns its result; an error fails the test.
func runFanout(t *testing.T, port int, args ...string) *Result {
	t.Helper()
	cfg, err := ParseArgs(fanoutArgs(port, args...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

// TestReconnectCountsLoss runs --reconnect with an HTTP API in front of
// the server that answers every trigger but passes only every other one
// on: the connections, none dropped, miss half the events, and that must
// show as loss.
func TestReconnectCountsLoss(t *testing.T) {
	port := startReuseNode(t, 0, 0).port
	var mu sync.Mutex
	n := 0
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		n++
		pass := n%2 == 0
		mu.Unlock()
		if pass {
			resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d%s", port, r.URL.RequestURI()), "application/json", bytes.NewReader(body))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			resp.Body.Close()
		}
		_, _ = io.WriteString(w, "{}")
	}))
	defer fake.Close()
	_, apiPort, _ := net.SplitHostPort(strings.TrimPrefix(fake.URL, "http://"))
	res := runFanout(t, port, "--api-port", apiPort, "--connections", "10", "--rate", "20", "--duration", "500ms", "--drain", "1s")
	c := res.Reconnect
	if c == nil || res.Triggers != 10 || c.Undropped != 10 || c.Dropped != 0 || c.UndroppedExpected != 100 ||
		c.UndroppedReceived != 50 || c.UndroppedLost != 50 || c.UndroppedLostEvents != 5 ||
		res.Expected != 100 || res.Received != 50 || res.Loss != 50 {
		t.Fatalf("loss not counted: %+v %+v", c, res)
	}
	var tbl bytes.Buffer
	_ = WriteTable(&tbl, res)
	if want := "10: 50 of 100 deliveries, 50 lost (5 events)"; !strings.Contains(tbl.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, tbl.String())
	}
}

// reuseNode is one in-process node of a cluster over Redis sharing its
// port with the others (SO_REUSEPORT). With ReusePort the server does not
// scan /proc/net/tcp for other listeners at start, which takes seconds on
// a machine holding a million connections.
type reuseNode struct {
	srv  *loop.Server
	px   *pusher.Server
	port int
}

// startReuseNode starts a node on port (0: a free one) over the Redis on
// redisPort (0: alone). It stops when the test ends.
func startReuseNode(t *testing.T, redisPort, port int) *reuseNode {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	app := &pusher.App{ID: "app-id", Key: "app-key", Secret: "app-secret", MaxMessageSize: 10000}
	px, err := pusher.NewServer(pusher.Options{Apps: []*pusher.App{app}, Logger: quiet}, 2)
	if err != nil {
		t.Fatal(err)
	}
	closeBroker := func() {}
	if redisPort > 0 {
		broker, err := cluster.NewRedis(cluster.Config{Host: "127.0.0.1", Port: redisPort, Channel: "bench-test",
			HeartbeatInterval: time.Second, Logger: quiet}, px)
		if err != nil {
			t.Fatal(err)
		}
		px.SetBroker(broker)
		broker.Start()
		closeBroker = broker.Close
	}
	srv := loop.New(px, loop.Config{Host: "127.0.0.1", Port: port, Loops: 2, ReusePort: true, Logger: quiet})
	errc := make(chan error, 1)
	go func() { errc <- srv.Run() }()
	select {
	case <-srv.Ready():
	case err := <-errc:
		t.Fatalf("node did not start: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("node did not start in 5 s")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
		<-errc
		closeBroker()
	})
	_, p, _ := net.SplitHostPort(srv.Addr())
	n, _ := strconv.Atoi(p)
	return &reuseNode{srv: srv, px: px, port: n}
}

// appStats returns the node's figures of the test app.
func (n *reuseNode) appStats() pusher.AppStats {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return n.px.Stats(ctx).Apps[0]
}

// TestSmokeReconnectDrain runs a fanout with --reconnect over two nodes
// sharing a port and Redis, and drains one of them (4200 to its clients,
// then it stops) while events flow: its clients reconnect (to the other
// node), and the never-dropped clients miss nothing.
func TestSmokeReconnectDrain(t *testing.T) {
	rp := startRedis(t)
	for _, mode := range []string{"gnet", "goroutine", "workers"} {
		t.Run(mode, func(t *testing.T) {
			a := startReuseNode(t, rp, 0)
			b := startReuseNode(t, rp, a.port)
			const conns = 40
			args := []string{"--connections", strconv.Itoa(conns), "--rate", "20", "--duration", "3s", "--drain", "5s"}
			switch mode {
			case "workers":
				useTestWorkers(t)
				args = append(args, "--workers", "2")
			default:
				args = append(args, "--client", mode)
			}
			cfg, err := ParseArgs(fanoutArgs(a.port, args...), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			done := runAsync(cfg)
			// Wait until every connection is subscribed and events reach
			// b's subscribers (established, subscribed, then events).
			var onB pusher.AppStats
			deadline := time.Now().Add(15 * time.Second)
			for {
				sa, sb := a.appStats(), b.appStats()
				if sa.Subscribed+sb.Subscribed == conns && sb.MessagesSent >= 3*sb.Subscribed && sa.MessagesSent >= 3*sa.Subscribed {
					onB = sb
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no events flowing: a %+v b %+v", sa, sb)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if onB.Subscribed == 0 {
				t.Skip("every connection went to the first node")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := b.srv.Drain(ctx, time.Second); err != nil {
				t.Fatalf("drain: %v", err)
			}
			o := <-done
			if o.err != nil {
				t.Fatalf("Run: %v (%+v)", o.err, o.res)
			}
			res, c := o.res, o.res.Reconnect
			if c == nil || c.Dropped != onB.Subscribed || c.Undropped != conns-onB.Subscribed || c.Drops != onB.Subscribed ||
				c.DropsByCode["4200"] != onB.Subscribed || c.Reconnects != onB.Subscribed || c.DownAtEnd != 0 {
				t.Fatalf("drops: %d on b, %+v", onB.Subscribed, c)
			}
			if c.UndroppedLost != 0 || c.UndroppedReceived != c.UndroppedExpected || c.UndroppedExpected == 0 {
				t.Fatalf("undropped connections lost events: %+v", c)
			}
			if c.DroppedLost != 0 || c.DroppedReceived == 0 || res.Loss != 0 ||
				c.ReconnectTime.Count != onB.Subscribed || c.ReconnectTime.Min < 50_000 {
				t.Fatalf("dropped connections: %+v (loss %d)", c, res.Loss)
			}
			if res.Connected != conns || res.ClosedEarly != 0 || res.ServerErrors != 0 {
				t.Fatalf("result: %+v", res)
			}
			var tbl bytes.Buffer
			_ = WriteTable(&tbl, res)
			_ = WriteJSON(&tbl, res)
			t.Logf("\n%s", tbl.String())
			for _, want := range []string{fmt.Sprintf("%d: %d of %d deliveries, 0 lost (0 events)", c.Undropped, c.UndroppedExpected, c.UndroppedExpected), "4200 x "} {
				if !strings.Contains(tbl.String(), want) {
					t.Errorf("table lacks %q", want)
				}
			}
		})
	}
}

// useTestWorkers makes worker processes run this test binary, as
// TestSmokeWorkers does, until the test ends.
func useTestWorkers(t *testing.T) {
	old := workerCommand
	workerCommand = func() (*exec.Cmd, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWorkerProcess$")
		cmd.Env = append(os.Environ(), "BENCH_WORKER_PROCESS=1")
		return cmd, nil
	}
	t.Cleanup(func() { workerCommand = old })
}

// TestReconnectSpec checks that --reconnect reaches worker processes.
func TestReconnectSpec(t *testing.T) {
	b, err := json.Marshal(shardSpec{Config: Config{Reconnect: true}})
	if err != nil {
		t.Fatal(err)
	}
	var spec shardSpec
	if err := json.Unmarshal(b, &spec); err != nil || !spec.Config.Reconnect {
		t.Fatalf("spec %s: %v", b, err)
	}
}

// TestReconnectOnlyFanout checks that --reconnect is refused elsewhere.
func TestReconnectOnlyFanout(t *testing.T) {
	cfg, err := ParseArgs(append([]string{"--port", "1", "--scenario", "burst", "--reconnect"}, testApp...), io.Discard)
	if err != nil || !cfg.Reconnect {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cfg, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "--reconnect") {
		t.Fatalf("burst with --reconnect: %v", err)
	}
}

func TestReconnectCode(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want bool
	}{
		{`{"event":"pusher:error","data":"{\"code\":4200,\"message\":\"Server is shutting down; reconnect.\"}"}`, true},
		{`{"event":"pusher:error","data":{"code":4100,"message":"over capacity"}}`, true},
		{`{"event":"pusher:error","data":{"code":4299}}`, true},
		{`{"event":"pusher:error","data":{"code":4009,"message":"unauthorized"}}`, false},
		{`{"event":"pusher:error","data":{"code":4300}}`, false},
		{`{"event":"pusher:error","data":{"code":42000}}`, false},
		{`{"event":"pusher:error","data":{"code":}}`, false},
		{`{"event":"pusher:error","data":{"code`, false},
		{`{"event":"pusher:subscription_error","data":{"code":4200}}`, false},
		{`{"event":"bench-event","data":"code 4200"}`, false},
	} {
		if got := reconnectCode([]byte(tc.msg)); got != tc.want {
			t.Errorf("reconnectCode(%s) = %v", tc.msg, got)
		}
	}
}

func FuzzReconnectCode(f *testing.F) {
	f.Add([]byte(`{"event":"pusher:error","data":"{\"code\":4200}"}`))
	f.Fuzz(func(t *testing.T, b []byte) { _ = reconnectCode(b) })
}

// TestSmokeHoldRestart drains a node during --hold, the quiet time between
// the ramp and the first event that a rolling restart is meant to use: no
// event is sent before the hold ends, the drained node's clients reconnect
// to the other node within it, and then every connection, dropped or not,
// receives every event.
func TestSmokeHoldRestart(t *testing.T) {
	rp := startRedis(t)
	a := startReuseNode(t, rp, 0)
	b := startReuseNode(t, rp, a.port)
	const conns = 40
	cfg, err := ParseArgs(fanoutArgs(a.port, "--connections", strconv.Itoa(conns), "--rate", "10", "--duration", "1s",
		"--drain", "5s", "--hold", "5s", "--client", "gnet"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	done := runAsync(cfg)
	// Once every connection is subscribed, each has been sent
	// pusher:connection_established and
	// pusher_internal:subscription_succeeded; anything more is an event.
	var onB int64
	deadline := time.Now().Add(15 * time.Second)
	for {
		sa, sb := a.appStats(), b.appStats()
		if sa.Subscribed+sb.Subscribed == conns {
			if sa.MessagesSent > sa.Connections+sa.Subscribed || sb.MessagesSent > sb.Connections+sb.Subscribed {
				t.Fatalf("an event was sent during the hold (%v): a %+v b %+v", time.Since(start), sa, sb)
			}
			onB = sb.Subscribed
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections not subscribed: a %+v b %+v", sa, sb)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if onB == 0 {
		t.Skip("every connection went to the first node")
	}
	drainOnto(t, b, a, conns, deadline)
	o := <-done
	if o.err != nil {
		t.Fatalf("Run: %v (%+v)", o.err, o.res)
	}
	res, c := o.res, o.res.Reconnect
	if c == nil || c.Dropped != onB || c.Drops != onB || c.DropsByCode["4200"] != onB || c.Reconnects != onB || c.DownAtEnd != 0 {
		t.Fatalf("drops: %d on b, %+v", onB, c)
	}
	if res.Events == 0 || res.Loss != 0 || res.Received != res.Expected || res.Expected != conns*int64(res.Events) ||
		c.DroppedReceived != onB*int64(res.Events) || c.UndroppedLost != 0 || c.DroppedLost != 0 {
		t.Fatalf("events after the hold: %+v (reconnect %+v)", res, c)
	}
}

// runResult is what Run returned.
type runResult struct {
	res *Result
	err error
}

// runAsync starts Run with cfg and returns the channel its result arrives
// on, for tests that act on the servers while the bench runs.
func runAsync(cfg Config) <-chan runResult {
	done := make(chan runResult, 1)
	go func() {
		res, err := Run(context.Background(), cfg, io.Discard, io.Discard)
		done <- runResult{res, err}
	}()
	return done
}

// Regression: a slot dropped while a broadcast was still on its way to the
// process's slots (at a million connections one takes up to a minute) was
// counted as having lost the event "while connected" when the drop came
// more than gapSlack after the event was sent.
func TestReconnectExcusesEventsInFlight(t *testing.T) {
	sec := func(s float64) int64 { return int64(s * float64(time.Second)) }
	r := newReconnector(3, 8)
	// Event 0 is sent at 100 s and reaches slot 0 at 140 s.
	r.track(0).mark(0)
	r.seen(0, sec(100), sec(140))
	// Slot 1 drops at 130 s, while event 0 is still being delivered.
	r.track(1).drop(sec(130))
	r.track(1).back(sec(131))
	// Slot 2 drops at 150 s: it was connected through event 0's delivery
	// (up to 140 s, and gapSlack after) and missed it.
	r.track(2).drop(sec(150))
	r.track(2).back(sec(151))
	res := r.result()
	if res.Undropped != 1 || res.Dropped != 2 || res.UndroppedGot[0] != 1 || res.DroppedGot[0] != 0 {
		t.Fatalf("result %+v", res)
	}
	if res.GapMissed[0] != 1 {
		t.Fatalf("missed in gaps %d, want 1 (slot 1 only)", res.GapMissed[0])
	}
}

// TestReconnectOwing checks what the connected slots still await: a slot
// down owes nothing, a slot back owes only what was sent after its gap,
// and an event no slot received is owed by every connected slot.
func TestReconnectOwing(t *testing.T) {
	r := tracked(
		[]op{m(0), m(1), m(2)},                  // everything
		[]op{m(0), m(2)},                        // undropped: owes 1
		[]op{m(0), d(0.5)},                      // down: owes nothing
		[]op{m(0), d(0.5), bk(1.5), m(2)},       // 1 was sent in its gap
		[]op{m(0), d(0.5), bk(0.8)},             // back before 1 and 2: owes both
		[]op{m(0), m(1), d(1.5), bk(1.6), m(2)}, // 2 came after its gap
	)
	for _, tc := range []struct {
		seqs []int64
		want int64
	}{
		{nil, 0},
		{[]int64{0}, 0},
		{[]int64{0, 1, 2}, 1 + 2},
		// Event 3, accepted, reached no slot: the five connected ones owe it.
		{[]int64{0, 1, 2, 3}, 1 + 2 + 5},
	} {
		if got := r.owing(tc.seqs); got != tc.want {
			t.Errorf("owing(%v) = %d, want %d", tc.seqs, got, tc.want)
		}
	}
}

// Regression: with a connection still down at the end (its node gone, its
// reconnects refused), the wait for deliveries after the last event ran
// for the whole of --drain, although the connections still connected had
// everything. At a million connections that pushed the run past its
// timeout.
func TestDrainEndsWithSlotsDown(t *testing.T) {
	for _, mode := range []string{"gnet", "workers"} {
		t.Run(mode, func(t *testing.T) {
			node := startReuseNode(t, 0, 0)
			const conns, events, stopAt = 10, 10, 4
			var mu sync.Mutex
			n := 0
			// The API in front of the node passes the first stopAt triggers
			// on, then stops the node (every connection closes; their
			// reconnects are refused) and answers the rest without passing
			// them on.
			fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				defer mu.Unlock()
				n++
				switch {
				case n <= stopAt:
					resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d%s", node.port, r.URL.RequestURI()), "application/json", bytes.NewReader(body))
					if err != nil {
						http.Error(w, err.Error(), http.StatusBadGateway)
						return
					}
					resp.Body.Close()
					// Every connection has the event before the next trigger.
					deadline := time.Now().Add(10 * time.Second)
					for node.appStats().MessagesSent < int64(2*conns+n*conns) {
						if time.Now().After(deadline) {
							http.Error(w, "event not delivered", http.StatusInternalServerError)
							return
						}
						time.Sleep(5 * time.Millisecond)
					}
				case n == stopAt+1:
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_ = node.srv.Stop(ctx)
					cancel()
				}
				_, _ = io.WriteString(w, "{}")
			}))
			defer fake.Close()
			_, apiPort, _ := net.SplitHostPort(strings.TrimPrefix(fake.URL, "http://"))
			args := []string{"--api-port", apiPort, "--connections", strconv.Itoa(conns), "--rate", "20",
				"--duration", "500ms", "--drain", "10m", "--timeout", "60s"}
			if mode == "workers" {
				useTestWorkers(t)
				args = append(args, "--workers", "2")
			} else {
				args = append(args, "--client", mode)
			}
			res := runFanout(t, node.port, args...)
			c := res.Reconnect
			if res.DrainEnd != "owed nothing" || res.TimedOut {
				t.Fatalf("drain ended %q (timed out %v), want %q: %+v", res.DrainEnd, res.TimedOut, "owed nothing", res)
			}
			if c == nil || res.Triggers != events || c.Dropped != conns || c.DownAtEnd != conns || c.Undropped != 0 ||
				c.DroppedReceived != stopAt*conns || c.MissedInGaps != (events-stopAt)*conns || c.DroppedLost != 0 || res.Loss != 0 {
				t.Fatalf("accounting: %+v %+v", c, res)
			}
		})
	}
}

// TestHoldUntil drains a node during a long --hold that --hold-until ends:
// --ready-file appears once every connection is subscribed, no event is
// sent before the file --hold-until names exists and every dropped client
// is back, and then the events start at once (not when --hold runs out),
// every connection receiving every one.
func TestHoldUntil(t *testing.T) {
	for _, mode := range []string{"gnet", "workers"} {
		t.Run(mode, func(t *testing.T) { testHoldUntil(t, mode) })
	}
}

func testHoldUntil(t *testing.T, mode string) {
	rp := startRedis(t)
	a := startReuseNode(t, rp, 0)
	b := startReuseNode(t, rp, a.port)
	dir := t.TempDir()
	ready, until := filepath.Join(dir, "ramped"), filepath.Join(dir, "restarted")
	const conns = 40
	args := []string{"--connections", strconv.Itoa(conns), "--rate", "10", "--duration", "1s",
		"--drain", "5s", "--hold", "10m", "--hold-until", until, "--ready-file", ready, "--timeout", "60s"}
	if mode == "workers" {
		// Their status reaches the runner every few hundred ms: the file
		// must still count every connection.
		useTestWorkers(t)
		args = append(args, "--workers", "2")
	} else {
		args = append(args, "--client", mode)
	}
	cfg, err := ParseArgs(fanoutArgs(a.port, args...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := runAsync(cfg)
	deadline := time.Now().Add(15 * time.Second)
	var body []byte
	for {
		if body, err = os.ReadFile(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no --ready-file after 15 s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if want := fmt.Sprintf("connected %d\nfailed 0\n", conns); string(body) != want {
		t.Fatalf("--ready-file: %q, want %q", body, want)
	}
	// The file is written once the ramp is over: every connection is
	// subscribed (the bench counts a connection once the server confirmed
	// its subscription).
	sa, sb := a.appStats(), b.appStats()
	if sa.Subscribed+sb.Subscribed != conns {
		t.Fatalf("--ready-file before the ramp's end: a %+v b %+v", sa, sb)
	}
	onB := sb.Subscribed
	if onB == 0 {
		t.Skip("every connection went to the first node")
	}
	drainOnto(t, b, a, conns, deadline)
	// The restart is over: the bench goes on.
	if err := os.WriteFile(until, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.err != nil {
		t.Fatalf("Run: %v (%+v)", o.err, o.res)
	}
	res, c := o.res, o.res.Reconnect
	if res.HoldEnd != "signalled" || res.TimedOut {
		t.Fatalf("hold ended %q after %.1f s (timed out %v)", res.HoldEnd, res.HoldS, res.TimedOut)
	}
	if c == nil || c.Dropped != onB || c.DropsByCode["4200"] != onB || c.Reconnects != onB || c.DownAtEnd != 0 || c.MissedInGaps != 0 {
		t.Fatalf("drops: %d on b, %+v", onB, c)
	}
	if res.Events == 0 || res.Loss != 0 || res.Received != res.Expected || res.Expected != conns*int64(res.Events) ||
		c.DroppedReceived != onB*int64(res.Events) {
		t.Fatalf("events after the hold: %+v (reconnect %+v)", res, c)
	}
}

// TestHoldUntilTimeout: without the file, the hold lasts --hold and says
// so; --hold-until needs --hold.
func TestHoldUntilTimeout(t *testing.T) {
	node := startReuseNode(t, 0, 0)
	res := runFanout(t, node.port, "--connections", "4", "--rate", "10", "--duration", "500ms", "--drain", "2s",
		"--hold", "300ms", "--hold-until", filepath.Join(t.TempDir(), "never"))
	if res.HoldEnd != "timeout" || res.HoldS < 0.3 || res.Loss != 0 || res.Events == 0 {
		t.Fatalf("hold ended %q after %.2f s: %+v", res.HoldEnd, res.HoldS, res)
	}
	if _, err := ParseArgs(fanoutArgs(node.port, "--hold-until", "x"), io.Discard); err == nil || !strings.Contains(err.Error(), "--hold-until") {
		t.Fatalf("--hold-until without --hold: %v", err)
	}
}

// TestHoldWaitsForTheDown: the file alone does not end the hold while a
// connection is down; its return does.
func TestHoldWaitsForTheDown(t *testing.T) {
	until := filepath.Join(t.TempDir(), "restarted")
	if err := os.WriteFile(until, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var down, polls atomic.Int64
	down.Store(1)
	total := func() shardStatus {
		polls.Add(1)
		return shardStatus{Down: down.Load()}
	}
	r := &runner{cfg: Config{Hold: time.Minute, HoldUntil: until}, res: &Result{}}
	done := make(chan struct{})
	go func() {
		r.hold(context.Background(), total)
		close(done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for polls.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the hold did not look at the connections down")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-done:
		t.Fatalf("the hold ended with a connection down: %q", r.res.HoldEnd)
	default:
	}
	down.Store(0)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the hold did not end once no connection was down")
	}
	if r.res.HoldEnd != "signalled" {
		t.Fatalf("hold ended %q", r.res.HoldEnd)
	}
}

// Regression: a worker process exited as soon as it had reported, so the
// kernel closed its connections while the other workers were still
// reporting; at a million connections those closes starved them past the
// run's timeout. A finished worker keeps its connections open until it is
// released.
func TestWorkerHoldsConnectionsUntilReleased(t *testing.T) {
	useTestWorkers(t)
	node := startReuseNode(t, 0, 0)
	const conns = 6
	cfg, err := ParseArgs(fanoutArgs(node.port, "--connections", strconv.Itoa(conns)), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	h, err := startRemote(shardSpec{Config: cfg, Count: conns, Tag: "release"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case rd := <-h.ready():
		if rd.Err != "" || rd.Status.Connected != conns {
			t.Fatalf("ramp: %+v", rd)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("worker not ready in 15 s")
	}
	res, err := h.finish()
	if err != nil || res.Status.Connected != conns {
		t.Fatalf("finish: %v %+v", err, res.Status)
	}
	// The worker has reported: its connections are still open, for as long
	// as the server takes to notice a close (checked repeatedly).
	for range 20 {
		if n := node.appStats().Connections; n != conns {
			t.Fatalf("after its result the worker closed connections: server counts %d of %d", n, conns)
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.release()
	deadline := time.Now().Add(10 * time.Second)
	for node.appStats().Connections != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("released worker's connections still open: %d", node.appStats().Connections)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		t.Fatal("released worker did not exit")
	}
}

// TestKeepWorkersUntilReleased checks that with Config.KeepWorkers the
// worker processes keep their connections open after Run has returned, so
// that the result is reported before they close, and close them on
// Result.Release.
func TestKeepWorkersUntilReleased(t *testing.T) {
	useTestWorkers(t)
	node := startReuseNode(t, 0, 0)
	const conns = 6
	cfg, err := ParseArgs(fanoutArgs(node.port, "--connections", strconv.Itoa(conns), "--workers", "2",
		"--rate", "10", "--duration", "200ms"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.KeepWorkers = true
	res, err := Run(context.Background(), cfg, io.Discard, io.Discard)
	if err != nil || res.Connected != conns || res.Loss != 0 {
		t.Fatalf("Run: %v %+v", err, res)
	}
	// A released worker exits (TestWorkerHoldsConnectionsUntilReleased):
	// Run must not have released them.
	if res.release == nil {
		t.Fatal("Run released the workers before returning")
	}
	for range 20 {
		if n := node.appStats().Connections; n != conns {
			t.Fatalf("Run returned and the workers closed connections: server counts %d of %d", n, conns)
		}
		time.Sleep(5 * time.Millisecond)
	}
	res.Release()
	res.Release() // a second call does nothing
	deadline := time.Now().Add(10 * time.Second)
	for node.appStats().Connections != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("released workers' connections still open: %d", node.appStats().Connections)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// drainOnto drains node from (its clients get 4200) and waits until all
// conns clients are subscribed on node to, failing if an event reached
// them meanwhile (the bench holds) or if they are not back by deadline.
func drainOnto(t *testing.T, from, to *reuseNode, conns int64, deadline time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := from.srv.Drain(ctx, 200*time.Millisecond); err != nil {
		t.Fatalf("drain: %v", err)
	}
	for {
		st := to.appStats()
		if st.Subscribed == conns {
			if st.MessagesSent > st.Connections+st.Subscribed {
				t.Fatalf("an event was sent during the hold: %+v", st)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("clients of the drained node did not reconnect within the hold: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
