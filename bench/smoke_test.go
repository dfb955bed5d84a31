package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reverbgo/reverb/internal/testkit"
	"github.com/reverbgo/reverb/loop"
	"github.com/reverbgo/reverb/pusher"
)

// testApp are the flags naming the app of startServer and startNode.
var testApp = []string{"--app-id", "app-id", "--key", "app-key", "--secret", "app-secret"}

// startServer runs our server on 127.0.0.1:0 in-process, as
// loop/helpers_test.go does, and returns its port. It stops when the test
// ends.
func startServer(t *testing.T) int {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	app := &pusher.App{ID: "app-id", Key: "app-key", Secret: "app-secret", MaxMessageSize: 10000}
	px, err := pusher.NewServer(pusher.Options{Apps: []*pusher.App{app}, Logger: quiet}, 2)
	if err != nil {
		t.Fatal(err)
	}
	srv := loop.New(px, loop.Config{Host: "127.0.0.1", Loops: 2, Logger: quiet})
	return testkit.Port(t, testkit.Serve(t, srv))
}

// smoke runs one small scenario against a fresh server.
func smoke(t *testing.T, args ...string) *Result {
	t.Helper()
	port := startServer(t)
	args = append([]string{"--port", strconv.Itoa(port), "--progress", "off", "--timeout", "20s", "--drain", "3s",
		"--server-pid", strconv.Itoa(os.Getpid())}, append(testApp, args...)...)
	cfg, err := ParseArgs(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("Run: %v (result %+v)", err, res)
	}
	if res.TimedOut || len(res.Errors) > 0 || res.ServerErrors != 0 {
		t.Fatalf("errors: %+v", res)
	}
	if res.Server == nil || res.Server.RSSAfterKB == 0 {
		t.Fatalf("server figures missing: %+v", res.Server)
	}
	return res
}

func TestSmokeConnect(t *testing.T) {
	for _, client := range []string{"gnet", "goroutine"} {
		t.Run(client, func(t *testing.T) {
			res := smoke(t, "--scenario", "connect", "--connections", "20", "--channels", "5", "--duration", "100ms", "--client", client)
			if res.Connected != 20 || res.Failed != 0 || res.ClosedEarly != 0 || res.ConnectLatency.Count != 20 || res.Ops != 20 {
				t.Fatalf("connect: %+v", res)
			}
		})
	}
}

func TestSmokeFanout(t *testing.T) {
	// 10 triggers/s for 500 ms: 5 events to 20 subscribers.
	res := smoke(t, "--scenario", "fanout", "--connections", "20", "--rate", "10", "--duration", "500ms")
	if res.Triggers != 5 || res.Expected != 100 || res.Received != 100 || res.Loss != 0 || res.Latency.Count != 100 {
		t.Fatalf("fanout: triggers %d expected %d received %d loss %d latency %+v",
			res.Triggers, res.Expected, res.Received, res.Loss, res.Latency)
	}
}

func TestSmokeBurst(t *testing.T) {
	// 2 bursts of 12 events (a batch of 10 and one of 2) over 2 channels.
	res := smoke(t, "--scenario", "burst", "--connections", "20", "--channels", "2", "--rate", "5", "--burst", "12", "--duration", "400ms")
	if res.Events != 24 || res.Triggers != 4 || res.Expected != 240 || res.Received != 240 || res.Loss != 0 {
		t.Fatalf("burst: events %d triggers %d expected %d received %d", res.Events, res.Triggers, res.Expected, res.Received)
	}
}

func TestSmokeClientEvents(t *testing.T) {
	res := smoke(t, "--scenario", "client-events", "--connections", "20", "--group", "4", "--rate", "5", "--duration", "600ms", "--client", "goroutine")
	if res.Events == 0 || res.Expected != 3*res.Events || res.Received != res.Expected || res.Loss != 0 {
		t.Fatalf("client-events: sent %d expected %d received %d", res.Events, res.Expected, res.Received)
	}
}

func TestSmokeAPI(t *testing.T) {
	res := smoke(t, "--scenario", "api", "--connections", "4", "--duration", "300ms")
	if res.Ops == 0 || res.TriggerErrors != 0 || res.Latency.Count != res.Ops {
		t.Fatalf("api: %+v", res)
	}
}

func TestSmokeChurn(t *testing.T) {
	res := smoke(t, "--scenario", "churn", "--connections", "4", "--duration", "300ms")
	if res.Ops == 0 || res.Failed != 0 || res.ConnectLatency.Count != res.Ops {
		t.Fatalf("churn: %+v", res)
	}
}

// TestSmokeWorkers runs a fanout over two worker processes (this test
// binary re-executed as workers).
func TestSmokeWorkers(t *testing.T) {
	old := workerCommand
	workerCommand = func() (*exec.Cmd, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWorkerProcess$")
		cmd.Env = append(os.Environ(), "BENCH_WORKER_PROCESS=1")
		return cmd, nil
	}
	defer func() { workerCommand = old }()
	res := smoke(t, "--scenario", "fanout", "--connections", "20", "--workers", "2", "--rate", "10", "--duration", "300ms")
	if res.Workers != 2 || res.Connected != 20 || res.Triggers != 3 || res.Received != 60 || res.Loss != 0 || res.Latency.Count != 60 {
		t.Fatalf("workers: %+v", res)
	}
}

// TestWorkerProcess is the body of a worker process in TestSmokeWorkers.
func TestWorkerProcess(t *testing.T) {
	if os.Getenv("BENCH_WORKER_PROCESS") != "1" {
		t.Skip("helper process")
	}
	os.Exit(RunWorker(os.Stdin, os.Stdout))
}

// TestTriggerErrorsReported checks that refused triggers are counted and
// reported, not taken as sent events.
func TestTriggerErrorsReported(t *testing.T) {
	port := startServer(t)
	cfg, err := ParseArgs(append([]string{"--port", strconv.Itoa(port), "--scenario", "fanout", "--connections", "4", "--rate", "10",
		"--duration", "200ms", "--drain", "200ms", "--progress", "off"}, testApp...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Secret = "wrong" // every trigger is refused with 401
	res, _ := Run(context.Background(), cfg, io.Discard, io.Discard)
	if res == nil || res.Triggers != 0 || res.TriggerErrors != 2 || len(res.Errors) == 0 {
		t.Fatalf("refused triggers: %+v", res)
	}
}

// TestAPITimeoutUnconfirmed checks --api-timeout: a trigger the API does
// not answer within it counts as unconfirmed, its event still expected
// (and so lost when it never arrives).
func TestAPITimeoutUnconfirmed(t *testing.T) {
	port := startServer(t)
	release := make(chan struct{})
	var got atomic.Int64
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		<-release
	}))
	defer silent.Close()
	defer close(release)
	_, apiPort, _ := net.SplitHostPort(strings.TrimPrefix(silent.URL, "http://"))
	cfg, err := ParseArgs(append([]string{"--port", strconv.Itoa(port), "--api-port", apiPort, "--scenario", "fanout",
		"--connections", "4", "--rate", "10", "--duration", "100ms", "--drain", "200ms", "--api-timeout", "300ms",
		"--progress", "off"}, testApp...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.APITimeout != 300*time.Millisecond {
		t.Fatalf("APITimeout %v", cfg.APITimeout)
	}
	res, _ := Run(context.Background(), cfg, io.Discard, io.Discard)
	if res == nil || got.Load() != 1 || res.Triggers != 0 || res.TriggerErrors != 1 || res.Unconfirmed != 1 ||
		res.Events != 1 || res.Expected != 4 || res.Received != 0 || res.Loss != 4 {
		t.Fatalf("unanswered trigger (%d requests): %+v", got.Load(), res)
	}
}
