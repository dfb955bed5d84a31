package metrics

import (
	"runtime"
	"slices"
	"sort"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/reverbgo/reverb/loop"
)

// ClusterStats are the figures of the Redis fan-out between nodes, exported
// as reverb_redis_* and reverb_cluster_peers (see Server.SetCluster).
// Counters count since the process started.
type ClusterStats struct {
	// Publishes counts envelopes published to Redis.
	Publishes int64 `json:"publishes"`
	// Receives counts envelopes received from other nodes.
	Receives int64 `json:"receives"`
	// Dropped counts envelopes not published, by reason: "unreachable"
	// (Redis was down; events reached this node's clients only),
	// "publish_error", "too_large" and "queue_full" (control envelopes).
	Dropped map[string]int64 `json:"dropped"`
	// Refused counts events refused because the cross-node queue was full
	// (the HTTP API answered 503 with Retry-After; nothing was lost).
	Refused int64 `json:"refused"`
	// Queued is the number of envelopes waiting to be published now.
	Queued int `json:"queued"`
	// Batches counts publish round trips to Redis.
	Batches int64 `json:"batches"`
	// Resyncs counts presence states asked again after a digest mismatch.
	Resyncs int64 `json:"resyncs"`
	// GatherIncomplete counts HTTP API reads answered without every live
	// node's reply within gather_timeout_ms.
	GatherIncomplete int64 `json:"gather_incomplete"`
	// Interest is the number of channels whose events this node receives
	// from the others.
	Interest int `json:"interest"`
	// Invalid counts received envelopes that were ignored (bad JSON,
	// version or size).
	Invalid int64 `json:"invalid"`
	// Reconnects counts re-established Redis subscriptions.
	Reconnects int64 `json:"reconnects"`
	// Degraded is true while the node cannot reach Redis.
	Degraded bool `json:"degraded"`
	// Peers is the number of other live nodes.
	Peers int `json:"peers"`
	// TrackerOps counts the cluster-wide occupancy and count operations
	// (webhooks, subscription counts, watchlists) Redis answered, and
	// TrackerErrors those that failed.
	TrackerOps    int64 `json:"tracker_ops"`
	TrackerErrors int64 `json:"tracker_errors"`
	// TrackerQueued is the number of such operations waiting now.
	TrackerQueued int `json:"tracker_queued"`
	// Reaped counts the stopped or dead nodes whose keys this node released.
	Reaped int64 `json:"reaped"`
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descConnections       = desc("reverb_connections", "Open TCP connections (WebSocket and HTTP) on this node.")
	descAppConnections    = desc("reverb_app_connections", "Open WebSocket connections of an app on this node.", "app_id")
	descAppSubscribed     = desc("reverb_app_subscribed_connections", "WebSocket connections of an app subscribed to at least one channel.", "app_id")
	descChannels          = desc("reverb_channels", "Occupied channels of an app on this node.", "app_id")
	descMessagesReceived  = desc("reverb_messages_received_total", "WebSocket messages received from clients.", "app_id")
	descMessagesSent      = desc("reverb_messages_sent_total", "WebSocket messages sent to clients.", "app_id")
	descBytesReceived     = desc("reverb_bytes_received_total", "WebSocket bytes received from clients (frames, after the handshake).", "app_id")
	descBytesSent         = desc("reverb_bytes_sent_total", "WebSocket bytes sent to clients (frames).", "app_id")
	descHandshakeFailures = desc("reverb_handshake_failures_total", "HTTP requests and WebSocket upgrades that failed, by reason.", "reason")
	descServerCloses      = desc("reverb_server_closes_total", "Close frames sent by the server, by close code.", "code")
	descErrorsSent        = desc("reverb_errors_sent_total", "pusher:error events sent, by error code.", "code")
	descSlowConsumers     = desc("reverb_slow_consumer_disconnects_total", "Connections closed because their outbound buffer exceeded max_outbound_buffer.")
	descFanoutYields      = desc("reverb_fanout_yields_total", "Times a loop paused a broadcast fan-out after fanout_chunk connections to read requests and write answers first.")
	descRateLimited       = desc("reverb_rate_limited_messages_total", "Client messages refused by the app's rate limit.")
	descClientEvents      = desc("reverb_client_events_dropped_total", "Client events refused (policy, channel type or client_events_per_second).")
	descRefused           = desc("reverb_connections_refused_total", "TCP connections closed on accept because the node was at max_connections.")
	descAPIQueueFull      = desc("reverb_http_api_queue_full_total", "HTTP API requests refused with 503 because the worker queue was full.")
	descLoops             = desc("reverb_event_loops", "Event loops serving connections.")
	descDraining          = desc("reverb_draining", "1 while the node drains for a graceful shutdown.")
	descStatsTimeouts     = desc("reverb_stats_timeouts_total", "Times the event loops did not report within the stats timeout; the previous figures were served.")
	descBuildInfo         = desc("reverb_build_info", "Build information; the value is always 1.", "version", "goversion")

	descRedisPublishes   = desc("reverb_redis_publishes_total", "Envelopes published to Redis.")
	descRedisReceives    = desc("reverb_redis_receives_total", "Envelopes received from other nodes over Redis.")
	descRedisDropped     = desc("reverb_redis_dropped_total", "Envelopes not published, by reason (unreachable, publish_error, too_large, queue_full).", "reason")
	descRedisRefused     = desc("reverb_redis_refused_total", "Events refused with HTTP 503 because the cross-node queue was full.")
	descRedisQueued      = desc("reverb_redis_queued", "Envelopes waiting to be published.")
	descRedisBatches     = desc("reverb_redis_batches_total", "Publish round trips to Redis.")
	descRedisResyncs     = desc("reverb_redis_resyncs_total", "Presence states asked again after a digest mismatch or a lost part.")
	descGatherIncomplete = desc("reverb_cluster_gather_incomplete_total", "HTTP API reads (channels, connections, users) answered without every live node's reply within gather_timeout_ms.")
	descRedisInterest    = desc("reverb_redis_interest_channels", "Channels whose events this node receives from other nodes.")
	descRedisInvalid     = desc("reverb_redis_invalid_total", "Envelopes received from Redis and ignored (bad JSON, version or size).")
	descRedisReconnects  = desc("reverb_redis_reconnects_total", "Re-established Redis subscriptions.")
	descRedisDegraded    = desc("reverb_redis_degraded", "1 while the node cannot reach Redis.")
	descClusterPeers     = desc("reverb_cluster_peers", "Other live nodes of the cluster.")
	descTrackerOps       = desc("reverb_redis_tracker_ops_total", "Cluster-wide occupancy and count operations (webhooks, subscription counts, watchlists) Redis answered.")
	descTrackerErrors    = desc("reverb_redis_tracker_errors_total", "Occupancy and count operations that failed (Redis unreachable, queue full, error reply).")
	descTrackerQueued    = desc("reverb_redis_tracker_queued", "Occupancy and count operations waiting for their round trip to Redis.")
	descReaped           = desc("reverb_redis_reaped_nodes_total", "Stopped or dead nodes whose channels and users this node released.")
	descCountEvents      = desc("reverb_subscription_count_events_total", "pusher_internal:subscription_count deliveries (to a channel's subscribers on this node, or to one new subscriber).")
	descWatchlistEvents  = desc("reverb_watchlist_events_total", "pusher_internal:watchlist_events messages sent to connections.")
	descTLSInProgress    = desc("reverb_tls_handshakes_in_progress", "TLS handshakes under way (each is an open connection too).")
	descTLSFailed        = desc("reverb_tls_handshakes_failed_total", "TLS handshakes that failed (not TLS, bad messages, alerts, too much input), timeouts excluded.")
	descTLSTimedOut      = desc("reverb_tls_handshakes_timed_out_total", "TLS handshakes that did not finish within handshake_timeout.")
	descTLSMemReleases   = desc("reverb_tls_memory_releases_total", "Times free memory was returned to the OS after a burst of TLS handshakes.")
	descTLSRefused       = desc("reverb_tls_handshakes_refused_total", "Connections closed because every TLS handshake worker was busy and the queue was full.")
	descDeflated         = desc("reverb_deflated_frames_total", "Outbound frames compressed for permessage-deflate (once per broadcast, shared by its subscribers).")
)

var allDescs = []*prometheus.Desc{
	descConnections, descAppConnections, descAppSubscribed, descChannels,
	descMessagesReceived, descMessagesSent, descBytesReceived, descBytesSent,
	descHandshakeFailures, descServerCloses, descErrorsSent, descSlowConsumers, descFanoutYields,
	descRateLimited, descClientEvents, descRefused, descAPIQueueFull, descLoops,
	descDraining, descStatsTimeouts, descBuildInfo,
	descRedisPublishes, descRedisReceives, descRedisDropped, descRedisInvalid, descRedisReconnects,
	descRedisRefused, descRedisQueued, descRedisBatches, descRedisResyncs, descGatherIncomplete, descRedisInterest,
	descRedisDegraded, descClusterPeers, descTrackerOps, descTrackerErrors, descTrackerQueued, descReaped,
	descCountEvents, descWatchlistEvents, descDeflated,
	descTLSInProgress, descTLSFailed, descTLSTimedOut, descTLSRefused, descTLSMemReleases,
}

// collector turns one stats snapshot per scrape into const metrics.
type collector struct{ s *Server }

// Describe sends every descriptor the collector may emit.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
	for _, d := range webhookDescs {
		ch <- d
	}
}

// Collect gathers the loops' counters once and emits them.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	st, _ := c.s.snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descConnections, float64(st.Connections))
	for _, a := range st.Apps {
		gauge(descAppConnections, float64(a.Connections), a.AppID)
		gauge(descAppSubscribed, float64(a.Subscribed), a.AppID)
		gauge(descChannels, float64(a.Channels), a.AppID)
		counter(descMessagesReceived, a.MessagesReceived, a.AppID)
		counter(descMessagesSent, a.MessagesSent, a.AppID)
		counter(descBytesReceived, a.BytesReceived, a.AppID)
		counter(descBytesSent, a.BytesSent, a.AppID)
	}
	for _, reason := range loop.ReasonNames {
		counter(descHandshakeFailures, st.HandshakeFailures[reason], reason)
	}
	for _, code := range sortedKeys(st.Closes) {
		counter(descServerCloses, st.Closes[code], strconv.Itoa(code))
	}
	for _, code := range sortedKeys(st.Errors) {
		counter(descErrorsSent, st.Errors[code], strconv.Itoa(code))
	}
	counter(descSlowConsumers, st.SlowConsumerCloses)
	counter(descFanoutYields, st.FanoutYields)
	counter(descRateLimited, st.RateLimited)
	counter(descClientEvents, st.ClientEventsDropped)
	counter(descRefused, st.Refused)
	counter(descAPIQueueFull, st.APIBusy)
	counter(descCountEvents, st.SubscriptionCountEvents)
	counter(descWatchlistEvents, st.WatchlistEvents)
	counter(descDeflated, st.Deflated)
	gauge(descTLSInProgress, float64(st.TLS.InProgress))
	counter(descTLSFailed, st.TLS.Failed)
	counter(descTLSTimedOut, st.TLS.TimedOut)
	counter(descTLSRefused, st.TLS.Refused)
	counter(descTLSMemReleases, st.TLS.MemoryReleases)
	gauge(descLoops, float64(st.Loops))
	gauge(descDraining, b2f(st.Draining))
	counter(descStatsTimeouts, c.s.timeouts.Load())
	gauge(descBuildInfo, 1, c.s.opts.Version, runtime.Version())
	if f := c.s.cluster.Load(); f != nil {
		cs := (*f)()
		counter(descRedisPublishes, cs.Publishes)
		counter(descRedisReceives, cs.Receives)
		for _, reason := range sortedStrings(cs.Dropped) {
			counter(descRedisDropped, cs.Dropped[reason], reason)
		}
		counter(descRedisRefused, cs.Refused)
		gauge(descRedisQueued, float64(cs.Queued))
		counter(descRedisBatches, cs.Batches)
		counter(descRedisResyncs, cs.Resyncs)
		counter(descGatherIncomplete, cs.GatherIncomplete)
		gauge(descRedisInterest, float64(cs.Interest))
		counter(descRedisInvalid, cs.Invalid)
		counter(descRedisReconnects, cs.Reconnects)
		gauge(descRedisDegraded, b2f(cs.Degraded))
		gauge(descClusterPeers, float64(cs.Peers))
		counter(descTrackerOps, cs.TrackerOps)
		counter(descTrackerErrors, cs.TrackerErrors)
		gauge(descTrackerQueued, float64(cs.TrackerQueued))
		counter(descReaped, cs.Reaped)
	}
	c.s.collectWebhooks(ch)
}

func sortedStrings(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sortedKeys(m map[int]int64) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
