package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reverbgo/reverb/cluster"
	"github.com/reverbgo/reverb/cluster/redistest"
	"github.com/reverbgo/reverb/internal/testkit"
	"github.com/reverbgo/reverb/loop"
	"github.com/reverbgo/reverb/pusher"
)

func TestParseArgsCross(t *testing.T) {
	noServerConfig(t)
	c, err := ParseArgs([]string{"--scenario", "cross", "--port", "7002", "--api-port", "7001", "--events", "500",
		"--rate", "100", "--server-pid", "12, 34"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Connections != 100 || c.APIClients != 16 || c.Channels != 1 || c.Workers != 0 || c.Events != 500 ||
		c.Addr() != "127.0.0.1:7002" || c.APIAddr() != "127.0.0.1:7001" || c.Retry503 ||
		c.ServerPID != 12 || len(c.ServerPIDs) != 2 || c.ServerPIDs[1] != 34 || c.Timeout != 5*time.Second+2*time.Minute {
		t.Fatalf("cross: %+v", c)
	}
	// Unpaced by default; the API address defaults to the WebSocket one.
	c, err = ParseArgs([]string{"--scenario", "cross", "--port", "7002", "--retry-503"}, io.Discard)
	if err != nil || c.Rate != 0 || c.APIAddr() != c.Addr() || !c.Retry503 {
		t.Fatalf("cross defaults: %+v %v", c, err)
	}
	for _, bad := range [][]string{
		{"--scenario", "cross", "--workers", "2"},
		{"--scenario", "cross", "--channels", "2"},
		{"--scenario", "cross", "--connections", "20000"},
		{"--scenario", "cross", "--events", "-1"},
		{"--api-port", "70000"},
		{"--server-pid", "12,x"},
		{"--server-pid", "0"},
	} {
		if _, err := ParseArgs(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestEventDataSeq(t *testing.T) {
	now := time.Unix(1700000000, 5)
	d := eventDataSeq(now, 123456, 100)
	if len(d) != 100 {
		t.Fatalf("len %d", len(d))
	}
	if ts, ok := sentAt(d); !ok || !ts.Equal(now) {
		t.Fatalf("sentAt %v %v", ts, ok)
	}
	if seq, ok := seqOf(d); !ok || seq != 123456 {
		t.Fatalf("seqOf %d %v", seq, ok)
	}
	if _, ok := seqOf(eventData(now, 100)); ok {
		t.Fatal("sequence number found in plain event data")
	}
	var s seqSet
	for _, q := range []int64{0, 64, 1000, 1000, -1, maxSeq} {
		s.mark(q)
	}
	c := &wsConn{seen: &s}
	accepted, refused := make(bitset, 20), make(bitset, 20)
	for _, q := range []int64{0, 1, 64, 65, 1000} {
		accepted.set(q)
	}
	refused.set(2)
	missing, lost, refDel, dups := crossCheck([]*wsConn{c, {seen: &seqSet{}}}, accepted, refused)
	// The first subscriber misses 1 and 65; the second misses all five.
	if missing != 7 || lost != 5 || refDel != 0 || dups != 1 {
		t.Fatalf("crossCheck = %d missing, %d lost, %d refused delivered, %d dups", missing, lost, refDel, dups)
	}
}

func TestSmokeCross(t *testing.T) {
	pids := fmt.Sprintf("%d,%d", os.Getpid(), os.Getpid())
	t.Run("paced", func(t *testing.T) {
		res := smoke(t, "--scenario", "cross", "--connections", "10", "--api-clients", "3", "--events", "60", "--rate", "300",
			"--server-pid", pids)
		c := res.Cross
		if c == nil || c.Mode != "paced" || c.Sent != 60 || c.Accepted != 60 || c.Subscribers != 10 || c.Delivered != 600 ||
			c.MissingDeliveries != 0 || c.LostEvents != 0 || c.Refused503 != 0 || res.Latency.Count != 600 ||
			res.Loss != 0 || res.Received != 600 || res.TriggerLat.Count != 60 {
			t.Fatalf("cross: %+v %+v", c, res)
		}
		if len(res.Server.PIDs) != 2 {
			t.Fatalf("server PIDs %+v", res.Server)
		}
	})
	t.Run("unpaced", func(t *testing.T) {
		res := smoke(t, "--scenario", "cross", "--connections", "10", "--api-clients", "4", "--events", "300", "--client", "goroutine")
		c := res.Cross
		if c == nil || c.Mode != "unpaced" || c.Accepted != 300 || c.Delivered != 3000 || c.LostEvents != 0 || c.Duplicates != 0 {
			t.Fatalf("cross: %+v", c)
		}
	})
}

// fakeAPI answers the cross scenario's triggers in turn with 503 and 200,
// and passes only every other accepted event (and every probe) on to the
// real server at target: half the accepted events are lost. With a
// backlog it is a slow server instead: it accepts every event and passes
// them on later, one every 100 ms.
type fakeAPI struct {
	target  string
	mu      sync.Mutex
	n       int
	backlog chan [2]string // URI, body
}

func (f *fakeAPI) slowly() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for req := range f.backlog {
		<-t.C
		if resp, err := http.Post("http://"+f.target+req[0], "application/json", strings.NewReader(req[1])); err == nil {
			resp.Body.Close()
		}
	}
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	forward := bytes.Contains(body, probeDataB)
	if !forward && f.backlog != nil {
		f.backlog <- [2]string{r.URL.RequestURI(), string(body)}
		_, _ = io.WriteString(w, "{}")
		return
	}
	if !forward {
		f.mu.Lock()
		f.n++
		n := f.n
		f.mu.Unlock()
		if n%2 == 1 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		forward = n%4 == 0
	}
	if forward {
		resp, err := http.Post("http://"+f.target+r.URL.RequestURI(), "application/json", bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		return
	}
	_, _ = io.WriteString(w, "{}")
}

func crossAgainstFake(t *testing.T, slow bool, extra ...string) *Result {
	t.Helper()
	port := startServer(t)
	f := &fakeAPI{target: fmt.Sprintf("127.0.0.1:%d", port)}
	if slow {
		f.backlog = make(chan [2]string, 100)
		go f.slowly()
		defer close(f.backlog)
	}
	fake := httptest.NewServer(f)
	defer fake.Close()
	_, apiPort, _ := net.SplitHostPort(strings.TrimPrefix(fake.URL, "http://"))
	args := append([]string{"--scenario", "cross", "--port", strconv.Itoa(port), "--api-port", apiPort, "--connections", "5",
		"--events", "20", "--progress", "off", "--timeout", "20s", "--drain", "200ms"}, append(testApp, extra...)...)
	cfg, err := ParseArgs(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), cfg, io.Discard, io.Discard)
	if err != nil || res.TimedOut || res.Cross == nil {
		t.Fatalf("Run: %v %+v", err, res)
	}
	return res
}

// TestCrossRefusalsAndLoss checks that 503 answers are counted as
// refusals, not retried and not taken as losses, and that accepted events
// that never arrive are reported lost.
func TestCrossRefusalsAndLoss(t *testing.T) {
	res := crossAgainstFake(t, false, "--api-clients", "2")
	c := res.Cross
	if c.Sent != 20 || c.Requests != 20 || c.Refused503 != 10 || c.Retries != 0 || c.Accepted != 10 ||
		c.LostEvents != 5 || c.MissingDeliveries != 25 || c.Delivered != 25 || c.RefusedDelivered != 0 || c.OtherErrors != 0 {
		t.Fatalf("cross: %+v", c)
	}
	if res.Loss != 25 || res.Expected != 50 || res.Received != 25 || len(res.Errors) != 0 {
		t.Fatalf("result: %+v", res)
	}
	var tbl bytes.Buffer
	_ = WriteTable(&tbl, res)
	for _, want := range []string{"10 refused with 503", "5 accepted events missed by some subscriber, 25 missing deliveries"} {
		if !strings.Contains(tbl.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tbl.String())
		}
	}
}

// TestCrossRetry503 checks --retry-503: every 503 is retried after its
// Retry-After until accepted.
func TestCrossRetry503(t *testing.T) {
	res := crossAgainstFake(t, false, "--api-clients", "1", "--retry-503")
	c := res.Cross
	if c.Sent != 20 || c.Requests != 40 || c.Refused503 != 20 || c.Retries != 20 || c.Accepted != 20 || c.LostEvents != 10 {
		t.Fatalf("cross: %+v", c)
	}
}

// TestCrossSlowServer checks that the drain waits for as long as
// deliveries keep coming: a slow server is not taken for a lossy one.
func TestCrossSlowServer(t *testing.T) {
	res := crossAgainstFake(t, true, "--api-clients", "2", "--events", "8", "--drain", "300ms")
	c := res.Cross
	if c.Accepted != 8 || c.LostEvents != 0 || c.Delivered != 40 || c.DrainS < 0.3 {
		t.Fatalf("cross: %+v", c)
	}
}

// TestCrossTwoNodes runs the cross scenario over two in-process servers
// sharing a real redis-server: subscribers on one, triggers on the other.
func TestCrossTwoNodes(t *testing.T) {
	rp := startRedis(t)
	a, b := startNode(t, rp), startNode(t, rp)
	cfg, err := ParseArgs(append([]string{"--scenario", "cross", "--port", strconv.Itoa(b), "--api-port", strconv.Itoa(a),
		"--connections", "20", "--api-clients", "4", "--events", "200", "--rate", "1000", "--progress", "off",
		"--timeout", "30s", "--drain", "5s", "--server-pid", strconv.Itoa(os.Getpid())}, testApp...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("Run: %v (%+v)", err, res)
	}
	c := res.Cross
	if res.APITarget != fmt.Sprintf("127.0.0.1:%d", a) || c.Accepted != 200 || c.Delivered != 4000 || c.LostEvents != 0 ||
		c.MissingDeliveries != 0 || res.Latency.Count != 4000 || len(res.Errors) != 0 {
		t.Fatalf("two nodes: %+v %+v", c, res)
	}
}

// startRedis runs a redis-server on a free loopback port until the test
// ends and returns the port.
func startRedis(t *testing.T) int {
	t.Helper()
	return redistest.Start(t).Port
}

// startNode runs one in-process node of a cluster over the Redis on
// redisPort and returns its port. It stops when the test ends.
func startNode(t *testing.T, redisPort int) int {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	app := &pusher.App{ID: "app-id", Key: "app-key", Secret: "app-secret", MaxMessageSize: 10000}
	px, err := pusher.NewServer(pusher.Options{Apps: []*pusher.App{app}, Logger: quiet}, 2)
	if err != nil {
		t.Fatal(err)
	}
	// A short heartbeat: Close may wait up to three of them for the
	// subscriber to notice.
	broker, err := cluster.NewRedis(cluster.Config{Host: "127.0.0.1", Port: redisPort, Channel: "bench-test",
		HeartbeatInterval: time.Second, Logger: quiet}, px)
	if err != nil {
		t.Fatal(err)
	}
	px.SetBroker(broker)
	broker.Start()
	srv := loop.New(px, loop.Config{Host: "127.0.0.1", Loops: 2, Logger: quiet})
	t.Cleanup(broker.Close)
	return testkit.Port(t, testkit.Serve(t, srv))
}
