// Package metrics is the node's observability listener: Prometheus metrics,
// health and readiness probes, optional pprof, and a live dashboard, served
// on their own address with plain net/http (a goroutine per request is fine
// there, unlike on the event loops).
//
// Routes:
//
//	GET /metrics              Prometheus exposition (reverb_*, go_*, process_*)
//	GET /healthz              200 while the process serves
//	GET /readyz               200; 503 while starting or draining; "degraded" (200, or 503 with ?strict) while Redis is unreachable
//	GET /                     the dashboard (also /dashboard), embedded HTML+JS
//	GET /api/stats            node figures as JSON (totals, per app, counters, nodes)
//	GET /api/channels?app_id= an app's occupied channels, with presence members
//	GET /debug/pprof/...      net/http/pprof, only when Options.PProf is set
//
// The hot-path counters live per event loop (pusher.Shard) and are summed
// only when someone asks: a scrape or a dashboard poll calls
// (*loop.Server).Stats once, and concurrent callers within CacheFor share
// that snapshot, so the loops are visited at most a few times a second
// however many scrapers and dashboards are open.
//
// Metric names follow the Prometheus conventions: one reverb_ prefix, base
// units, _total on counters, and no unbounded labels (never a channel,
// socket or user; app_id, reason, code, route and status are bounded).
//
// The cluster plugs in through three goroutine-safe setters on Server:
// SetCluster (reverb_redis_publishes_total, reverb_redis_receives_total,
// reverb_redis_dropped_total, reverb_redis_invalid_total,
// reverb_redis_reconnects_total, reverb_redis_degraded and
// reverb_cluster_peers), SetDegraded (readiness) and SetPeers (other nodes
// on the dashboard). Anything else can be added with Register.
//
// The listener shows channel names and presence user ids (user_info only
// on request): keep it on loopback or behind a firewall.
package metrics
