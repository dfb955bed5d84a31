package metrics

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reverbgo/reverb/internal/testkit"
	"github.com/reverbgo/reverb/loop"
	"github.com/reverbgo/reverb/pusher"
)

const (
	appID     = "1"
	appKey    = "app-key"
	appSecret = "app-secret"
	app2ID    = "2"
	app2Key   = "second-key"
)

// node is a real server (pusher + loop) with its metrics listener, all on
// 127.0.0.1 with free ports.
type node struct {
	t       testing.TB
	px      *pusher.Server
	srv     *loop.Server
	m       *Server
	api     *API
	wsAddr  string // set by run
	metrics string // "http://127.0.0.1:port"
}

// newNode builds the node and starts the metrics listener, but not the
// WebSocket server (see run). Everything stops when the test ends.
func newNode(t testing.TB, mopts Options) *node {
	t.Helper()
	return newNodeWith(t, mopts, nil)
}

// newNodeWith is newNode with the transport's configuration changed by
// edit, if not nil.
func newNodeWith(t testing.TB, mopts Options, edit func(*loop.Config)) *node {
	t.Helper()
	n := &node{t: t, api: NewAPI()}
	opts := pusher.Options{
		Apps: []*pusher.App{
			{ID: appID, Key: appKey, Secret: appSecret, MaxMessageSize: 10000},
			{ID: app2ID, Key: app2Key, Secret: "second-secret", MaxMessageSize: 10000},
		},
		APIObserver: n.api.Observer(),
	}
	const loops = 2
	px, err := pusher.NewServer(opts, loops)
	if err != nil {
		t.Fatal(err)
	}
	n.px = px
	lcfg := loop.Config{Host: "127.0.0.1", Port: 0, Loops: loops}
	if edit != nil {
		edit(&lcfg)
	}
	n.srv = loop.New(px, lcfg)
	mopts.Addr = "127.0.0.1:0"
	mopts.API = n.api
	if mopts.CacheFor == 0 {
		mopts.CacheFor = -1 // exact values right after each action
	}
	if mopts.Version == "" {
		mopts.Version = "v9.9.9-test"
	}
	if mopts.NodeID == "" {
		mopts.NodeID = "node-a"
	}
	n.m, err = New(n.srv, px, mopts)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.m.Start(); err != nil {
		t.Fatal(err)
	}
	n.metrics = "http://" + n.m.Addr()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.m.Close(ctx); err != nil {
			t.Errorf("metrics Close: %v", err)
		}
	})
	return n
}

// run starts the WebSocket server and waits until it accepts connections.
func (n *node) run() {
	t := n.t
	t.Helper()
	// Registers its cleanup after newNode's, so it runs before it: the
	// engine stops while the metrics listener is still up.
	n.wsAddr = testkit.Serve(t, n.srv)
	// loop.Server closes Ready in gnet's OnBoot, before gnet registers its
	// event loops, so reading the connection count (Stats) right away races
	// with that registration. One request makes a loop create its shard
	// under the pusher server's lock, which Stats takes too: after it, Stats
	// is ordered after the registration.
	if code := n.rawHTTP("GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); code != 200 {
		t.Fatalf("GET /up: %d", code)
	}
}

// startNode is newNode + run.
func startNode(t testing.TB, mopts Options) *node {
	n := newNode(t, mopts)
	n.run()
	return n
}

// get fetches a path of the metrics listener and returns status and body.
func (n *node) get(path string) (int, string) {
	n.t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(n.metrics + path)
	if err != nil {
		n.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		n.t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// getJSON fetches a path and decodes its JSON body into v; the status must
// be 200.
func (n *node) getJSON(path string, v any) {
	n.t.Helper()
	code, body := n.get(path)
	if code != 200 {
		n.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		n.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// scrape returns the samples of /metrics as "name{labels}" -> value.
func (n *node) scrape() map[string]float64 {
	n.t.Helper()
	code, body := n.get("/metrics")
	if code != 200 {
		n.t.Fatalf("/metrics: %d %s", code, body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			n.t.Fatalf("bad exposition line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			n.t.Fatalf("bad value in %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// waitFor polls check until it returns "" or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, check func() string) {
	t.Helper()
	testkit.WaitFor(t, timeout, check)
}

// expectSamples waits until every sample has its value.
func (n *node) expectSamples(want map[string]float64) {
	n.t.Helper()
	waitFor(n.t, 5*time.Second, func() string {
		got := n.scrape()
		var bad []string
		for k, v := range want {
			if g, ok := got[k]; !ok {
				bad = append(bad, k+" missing")
			} else if g != v {
				bad = append(bad, fmt.Sprintf("%s = %v, want %v", k, g, v))
			}
		}
		sort.Strings(bad)
		return strings.Join(bad, "; ")
	})
}

// wsClient is a client of one of the test apps.
type wsClient struct{ *testkit.Client }

// secrets are the secrets of the test apps by key.
var secrets = map[string]string{appKey: appSecret, app2Key: "second-secret"}

// connect opens /app/{key} and reads pusher:connection_established.
func (n *node) connect(key string) *wsClient {
	n.t.Helper()
	return &wsClient{testkit.Dial(n.t, n.wsAddr, testkit.App{Key: key, Secret: secrets[key]}, 5*time.Second)}
}

// join subscribes to a presence channel as user id, signing like Laravel's
// broadcasting/auth endpoint.
func (c *wsClient) join(channel, userID string) {
	c.Join(channel, `{"user_id":"`+userID+`","user_info":{"name":"User `+userID+`"}}`)
}

// trigger POSTs a signed event to /apps/{id}/events and returns the status.
func (n *node) trigger(channel, name, data string) int {
	n.t.Helper()
	body := fmt.Sprintf(`{"name":%q,"channel":%q,"data":%q}`, name, channel, data)
	code, _ := testkit.API(n.t, n.wsAddr, testkit.App{ID: appID, Key: appKey, Secret: appSecret}, "POST", "/apps/"+appID+"/events", body)
	return code
}

// rawHTTP sends raw bytes to the WebSocket port and returns the response
// status.
func (n *node) rawHTTP(req string) int {
	t := n.t
	t.Helper()
	c, err := net.DialTimeout("tcp", n.wsAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", req, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
