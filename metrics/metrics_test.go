package metrics

import (
	"context"
	"encoding/json"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricsCountTraffic(t *testing.T) {
	n := startNode(t, Options{})
	a := n.connect(appKey)
	b := n.connect(appKey)
	a.Subscribe("news")
	b.Subscribe("news")
	if code := n.trigger("news", "greet", "hello"); code != 200 {
		t.Fatalf("trigger: %d", code)
	}
	a.Expect("greet")
	b.Expect("greet")
	if code := n.rawHTTP("hello\r\n\r\n"); code != 400 {
		t.Fatalf("garbage answered %d, want 400", code)
	}
	sub := len(`{"event":"pusher:subscribe","data":{"channel":"news"}}`) + 6 // masked frame header
	n.expectSamples(map[string]float64{
		"reverb_connections":                                                             2,
		`reverb_app_connections{app_id="1"}`:                                             2,
		`reverb_app_connections{app_id="2"}`:                                             0,
		`reverb_app_subscribed_connections{app_id="1"}`:                                  2,
		`reverb_channels{app_id="1"}`:                                                    1,
		`reverb_channels{app_id="2"}`:                                                    0,
		`reverb_messages_received_total{app_id="1"}`:                                     2,
		`reverb_messages_sent_total{app_id="1"}`:                                         6, // established, subscribed, greet: x2
		`reverb_bytes_received_total{app_id="1"}`:                                        float64(2 * sub),
		`reverb_handshake_failures_total{reason="bad_request"}`:                          1,
		`reverb_handshake_failures_total{reason="not_found"}`:                            0,
		`reverb_http_api_requests_total{route="events",status="200"}`:                    1,
		`reverb_http_api_request_duration_seconds_count{route="events"}`:                 1,
		`reverb_http_api_request_duration_seconds_bucket{route="events",le="+Inf"}`:      1,
		"reverb_event_loops":                                                             2,
		"reverb_draining":                                                                0,
		"reverb_slow_consumer_disconnects_total":                                         0,
		"reverb_rate_limited_messages_total":                                             0,
		"reverb_client_events_dropped_total":                                             0,
		"reverb_connections_refused_total":                                               0,
		"reverb_tls_handshakes_in_progress":                                              0,
		"reverb_tls_handshakes_failed_total":                                             0,
		"reverb_tls_handshakes_timed_out_total":                                          0,
		"reverb_tls_handshakes_refused_total":                                            0,
		"reverb_stats_timeouts_total":                                                    0,
		`reverb_build_info{goversion="` + runtime.Version() + `",version="v9.9.9-test"}`: 1,
	})
	got := n.scrape()
	if v := got[`reverb_bytes_sent_total{app_id="1"}`]; v <= 0 {
		t.Errorf("reverb_bytes_sent_total = %v", v)
	}
	for _, name := range []string{"go_goroutines", "process_open_fds", "process_start_time_seconds"} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s missing: the Go and process collectors are not registered", name)
		}
	}
	for k := range got {
		if strings.Contains(k, "news") || strings.Contains(k, "socket") || strings.Contains(k, "user") {
			t.Errorf("high-cardinality label in %s", k)
		}
	}

	// A client event on a public channel is refused with 4009.
	a.Send(`{"event":"client-typing","channel":"news","data":{}}`)
	a.Expect("pusher:error")
	// A burst of client events over client_events_per_second (10): the
	// excess ones get 4301 and are counted as dropped.
	c := n.connect(appKey)
	c.join("presence-room", "u9")
	const burst = 25
	for range burst {
		c.Send(`{"event":"client-typing","channel":"presence-room","data":{}}`)
	}
	c.Send(`{"event":"pusher:ping","data":{}}`)
	dropped := 0
	for {
		e := c.Next()
		if e.Event == "pusher:pong" {
			break
		}
		if e.Event != "pusher:error" || !strings.Contains(string(e.Data), "4301") {
			t.Fatalf("unexpected %s %s", e.Event, e.Data)
		}
		dropped++
	}
	if dropped < burst-2*10 {
		t.Fatalf("%d of %d client events refused", dropped, burst)
	}
	n.expectSamples(map[string]float64{
		"reverb_client_events_dropped_total":            float64(dropped),
		`reverb_errors_sent_total{code="4009"}`:         1,
		`reverb_errors_sent_total{code="4301"}`:         float64(dropped),
		`reverb_messages_received_total{app_id="1"}`:    float64(2 + 1 + 1 + burst + 1),
		`reverb_app_connections{app_id="1"}`:            3,
		`reverb_app_subscribed_connections{app_id="1"}`: 3,
		`reverb_channels{app_id="1"}`:                   2,
	})
	// A connection closed by the client leaves the gauges.
	c.Conn.Close()
	n.expectSamples(map[string]float64{
		`reverb_app_connections{app_id="1"}`: 2,
		`reverb_channels{app_id="1"}`:        1,
		"reverb_connections":                 2,
	})
}

func TestReadiness(t *testing.T) {
	n := newNode(t, Options{})
	if code, body := n.get("/healthz"); code != 200 {
		t.Fatalf("/healthz before start: %d %q", code, body)
	}
	if code, body := n.get("/readyz"); code != 503 || body != "starting\n" {
		t.Fatalf("/readyz before the server listens: %d %q, want 503 starting", code, body)
	}
	n.run()
	if code, body := n.get("/readyz"); code != 200 || body != "ready\n" {
		t.Fatalf("/readyz: %d %q, want 200", code, body)
	}
	degraded := true
	n.m.SetDegraded(func() bool { return degraded })
	if code, body := n.get("/readyz"); code != 200 || !strings.HasPrefix(body, "degraded") {
		t.Fatalf("/readyz while degraded: %d %q, want 200 degraded", code, body)
	}
	if code, body := n.get("/readyz?strict"); code != 503 || body != "degraded\n" {
		t.Fatalf("/readyz?strict while degraded: %d %q, want 503 degraded", code, body)
	}
	n.m.SetDegraded(nil)
	if code, _ := n.get("/readyz"); code != 200 {
		t.Fatalf("/readyz after SetDegraded(nil): %d", code)
	}

	c := n.connect(appKey)
	c.Subscribe("news")
	// The protocol side of a drain: sessions get 4200 and close; the engine
	// keeps running, so the loops still report.
	n.px.Drain(0)
	c.Expect("pusher:error")
	if code, body := n.get("/readyz"); code != 503 || body != "draining\n" {
		t.Fatalf("/readyz while draining: %d %q, want 503 draining", code, body)
	}
	if code, _ := n.get("/healthz"); code != 200 {
		t.Fatalf("/healthz while draining: %d", code)
	}
	n.expectSamples(map[string]float64{
		"reverb_draining":                         1,
		`reverb_errors_sent_total{code="4200"}`:   1,
		`reverb_server_closes_total{code="4200"}`: 1,
		`reverb_app_connections{app_id="1"}`:      0,
		"reverb_stats_timeouts_total":             0,
	})
	var st statsJSON
	n.getJSON("/api/stats", &st)
	if st.Status != "draining" || st.Nodes[0].Status != "draining" {
		t.Errorf("stats status %q, node %q; want draining", st.Status, st.Nodes[0].Status)
	}
	// The transport's drain then stops the engine; the probes keep
	// answering until the listener is closed.
	if err := n.srv.Drain(context.Background(), 5*time.Second); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if code, _ := n.get("/readyz"); code != 503 {
		t.Fatalf("/readyz after the drain: %d", code)
	}
	if code, _ := n.get("/healthz"); code != 200 {
		t.Fatalf("/healthz after the drain: %d", code)
	}
}

func TestStatsAndChannelsJSON(t *testing.T) {
	n := startNode(t, Options{NodeID: "node-a"})
	var clients []*wsClient
	for _, u := range []string{"u1", "u2", "u1"} {
		c := n.connect(appKey)
		c.join("presence-room", u)
		clients = append(clients, c)
	}
	pub := n.connect(appKey)
	pub.Subscribe("news")
	n.connect(app2Key) // connected, not subscribed

	var st statsJSON
	waitFor(t, 5*time.Second, func() string {
		n.getJSON("/api/stats", &st)
		if st.Connections != 5 {
			return "connections " + itoa(st.Connections)
		}
		return ""
	})
	if st.Node != "node-a" || st.Status != "ready" || st.Loops != 2 || st.Time <= 0 {
		t.Errorf("stats head %+v", st)
	}
	want := []appJSON{
		{AppID: "1", Connections: 4, Subscribed: 4, Channels: 2, MessagesReceived: 4, MessagesSent: 4*2 + 1 /* member_added u2 to u1; none for u1's second connection */},
		{AppID: "2", Connections: 1, MessagesSent: 1},
	}
	if len(st.Apps) != 2 {
		t.Fatalf("apps %+v", st.Apps)
	}
	for i, w := range want {
		g := st.Apps[i]
		g.BytesReceived, g.BytesSent = 0, 0
		if g != w {
			t.Errorf("app %d = %+v, want %+v", i, g, w)
		}
	}
	if st.Totals.Connections != 5 || st.Totals.Channels != 2 || st.Totals.Subscribed != 4 {
		t.Errorf("totals %+v", st.Totals)
	}
	if len(st.Nodes) != 1 || !st.Nodes[0].Self || st.Nodes[0].ID != "node-a" || st.Nodes[0].Loops != 2 ||
		st.Nodes[0].Connections != 5 || st.Nodes[0].Version != "v9.9.9-test" || st.Nodes[0].Address != n.wsAddr ||
		st.Nodes[0].UptimeSeconds <= 0 || st.Nodes[0].Hostname == "" {
		t.Errorf("nodes %+v", st.Nodes)
	}
	if st.Counters.HandshakeFailures["bad_request"] != 0 || len(st.Counters.HandshakeFailures) != 5 {
		t.Errorf("handshake failures %v", st.Counters.HandshakeFailures)
	}
	if st.Cluster != nil {
		t.Errorf("cluster %+v without SetCluster", st.Cluster)
	}

	var chs channelsJSON
	n.getJSON("/api/channels?app_id=1", &chs)
	if chs.AppID != "1" || chs.Total != 2 || chs.Truncated || len(chs.Channels) != 2 {
		t.Fatalf("channels %+v", chs)
	}
	room, news := chs.Channels[0], chs.Channels[1] // most subscribers first
	if room.Name != "presence-room" || room.Kind != "presence" || room.SubscriptionCount != 3 || room.UserCount != 2 {
		t.Errorf("presence channel %+v", room)
	}
	if ids := memberIDs(room.Members); ids != `"u1","u2"` {
		t.Errorf("members %s, want u1, u2 in join order", ids)
	}
	if room.Members[0].Info != nil {
		t.Errorf("user_info without info=1: %s", room.Members[0].Info)
	}
	if news.Name != "news" || news.Kind != "public" || news.SubscriptionCount != 1 || news.Members != nil {
		t.Errorf("public channel %+v", news)
	}
	n.getJSON("/api/channels?app_id=1&info=1&limit=1", &chs)
	if chs.Total != 2 || !chs.Truncated || len(chs.Channels) != 1 || chs.Channels[0].Name != "presence-room" {
		t.Fatalf("limit=1: %+v", chs)
	}
	if info := string(chs.Channels[0].Members[1].Info); info != `{"name":"User u2"}` {
		t.Errorf("info=1 user_info %s", info)
	}
	n.getJSON("/api/channels?app_id=1&prefix=presence-", &chs)
	if chs.Total != 1 {
		t.Errorf("prefix: %+v", chs)
	}
	if code, _ := n.get("/api/channels?app_id=nope"); code != 404 {
		t.Errorf("unknown app: %d", code)
	}
	if code, _ := n.get("/api/channels?app_id=1&limit=x"); code != 400 {
		t.Errorf("bad limit: %d", code)
	}

	// The second u1 leaves: the channel keeps 2 users with 2 subscriptions.
	clients[2].Conn.Close()
	waitFor(t, 5*time.Second, func() string {
		n.getJSON("/api/channels?app_id=1", &chs)
		if c := chs.Channels[0]; c.SubscriptionCount != 2 || c.UserCount != 2 {
			return "after a leave: " + mustJSON(c)
		}
		return ""
	})
}

func TestClusterHooks(t *testing.T) {
	n := startNode(t, Options{})
	got := n.scrape()
	if _, ok := got["reverb_redis_publishes_total"]; ok {
		t.Error("reverb_redis_* without SetCluster")
	}
	n.m.SetCluster(func() ClusterStats {
		return ClusterStats{Publishes: 7, Receives: 5, Dropped: map[string]int64{"unreachable": 1}, Refused: 4, Invalid: 3, Reconnects: 2, Degraded: true, Peers: 1}
	})
	peerStart := time.Now().Add(-time.Second).UTC().Round(time.Millisecond)
	n.m.SetPeers(func(ctx context.Context) []Node {
		return []Node{{ID: "node-b", LastSeen: peerStart, Loops: -1, Connections: -1, Status: "alive"}}
	})
	extra := prometheus.NewCounter(prometheus.CounterOpts{Name: "reverb_test_extra_total", Help: "test"})
	extra.Add(3)
	if err := n.m.Register(extra); err != nil {
		t.Fatal(err)
	}
	n.expectSamples(map[string]float64{
		"reverb_redis_publishes_total":                     7,
		"reverb_redis_receives_total":                      5,
		`reverb_redis_dropped_total{reason="unreachable"}`: 1,
		"reverb_redis_refused_total":                       4,
		"reverb_redis_invalid_total":                       3,
		"reverb_redis_reconnects_total":                    2,
		"reverb_redis_degraded":                            1,
		"reverb_cluster_peers":                             1,
		"reverb_test_extra_total":                          3,
	})
	var st statsJSON
	n.getJSON("/api/stats", &st)
	if len(st.Nodes) != 2 || !st.Nodes[0].Self || st.Nodes[1].ID != "node-b" || st.Nodes[1].Connections != -1 ||
		!st.Nodes[1].LastSeen.Equal(peerStart) || st.Nodes[1].Status != "alive" {
		t.Errorf("nodes %+v", st.Nodes)
	}
	want := ClusterStats{Publishes: 7, Receives: 5, Dropped: map[string]int64{"unreachable": 1}, Refused: 4, Invalid: 3, Reconnects: 2, Degraded: true, Peers: 1}
	if st.Cluster == nil || !reflect.DeepEqual(*st.Cluster, want) {
		t.Errorf("cluster %+v", st.Cluster)
	}
}

func TestPProfAndDashboardRoutes(t *testing.T) {
	off := startNode(t, Options{})
	if code, _ := off.get("/debug/pprof/"); code != 404 {
		t.Errorf("pprof without PProf: %d, want 404", code)
	}
	on := startNode(t, Options{PProf: true})
	if code, body := on.get("/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("pprof with PProf: %d", code)
	}
	for _, p := range []string{"/", "/dashboard"} {
		code, body := on.get(p)
		if code != 200 || !strings.Contains(body, `<script src="static/app.js">`) {
			t.Errorf("%s: %d", p, code)
		}
	}
	for _, p := range []string{"/static/app.js", "/static/style.css"} {
		if code, body := on.get(p); code != 200 || len(body) < 1000 {
			t.Errorf("%s: %d, %d bytes", p, code, len(body))
		}
	}
	// Nothing on the page loads from elsewhere.
	for _, p := range []string{"/", "/static/app.js", "/static/style.css"} {
		_, body := on.get(p)
		if strings.Contains(body, "http://") && !strings.Contains(body, "http://www.w3.org/2000/svg") || strings.Contains(body, "https://") || strings.Contains(body, "@import") {
			t.Errorf("%s refers to an external resource", p)
		}
	}
	if code, _ := on.get("/nope"); code != 404 {
		t.Errorf("/nope: %d", code)
	}
}

// TestStatsCacheSharesOneGathering checks that callers within CacheFor get
// the same snapshot.
func TestStatsCacheSharesOneGathering(t *testing.T) {
	n := startNode(t, Options{CacheFor: time.Hour})
	var first, second statsJSON
	n.getJSON("/api/stats", &first)
	n.connect(appKey)
	n.getJSON("/api/stats", &second)
	if first.Time != second.Time || second.Totals.Connections != 0 {
		t.Errorf("second poll within CacheFor gathered again: %d vs %d, %d connections", first.Time, second.Time, second.Totals.Connections)
	}
}

func memberIDs(ms []memberJSON) string {
	var ids []string
	for _, m := range ms {
		ids = append(ids, string(m.ID))
	}
	return strings.Join(ids, ",")
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestWebhookHooks(t *testing.T) {
	n := startNode(t, Options{})
	if _, ok := n.scrape()["reverb_webhook_requests_total"]; ok {
		t.Error("reverb_webhook_* without SetWebhooks")
	}
	ep := WebhookEndpoint{
		AppID: "a1", URL: "http://127.0.0.1:1/hook", Queued: 2, InFlight: 1,
		Enqueued: 10, Delivered: 7, Requests: 9, Retries: 2, Failed: 1,
		Failures: map[string]uint64{"status": 2, "timeout": 1},
		Dropped:  map[string]uint64{"queue_full": 4},
	}
	n.m.SetWebhooks(func() WebhookStats { return WebhookStats{Endpoints: []WebhookEndpoint{ep}} })
	l := `app_id="a1",endpoint="http://127.0.0.1:1/hook"`
	n.expectSamples(map[string]float64{
		`reverb_webhook_events_total{` + l + `,outcome="enqueued"}`:   10,
		`reverb_webhook_events_total{` + l + `,outcome="delivered"}`:  7,
		`reverb_webhook_events_total{` + l + `,outcome="failed"}`:     1,
		`reverb_webhook_requests_total{` + l + `}`:                    9,
		`reverb_webhook_retries_total{` + l + `}`:                     2,
		`reverb_webhook_failures_total{` + l + `,reason="status"}`:    2,
		`reverb_webhook_failures_total{` + l + `,reason="timeout"}`:   1,
		`reverb_webhook_failures_total{` + l + `,reason="transport"}`: 0,
		`reverb_webhook_dropped_total{` + l + `,reason="queue_full"}`: 4,
		`reverb_webhook_queued{` + l + `}`:                            2,
		`reverb_webhook_in_flight{` + l + `}`:                         1,
	})
	var st statsJSON
	n.getJSON("/api/stats", &st)
	if st.Webhooks == nil || len(st.Webhooks.Endpoints) != 1 || !reflect.DeepEqual(st.Webhooks.Endpoints[0], ep) {
		t.Errorf("webhooks %+v", st.Webhooks)
	}
}
