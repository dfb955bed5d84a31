package main

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/reverbgo/reverb/cluster"
	"github.com/reverbgo/reverb/config"
	"github.com/reverbgo/reverb/loop"
	"github.com/reverbgo/reverb/metrics"
	"github.com/reverbgo/reverb/pusher"
	"github.com/reverbgo/reverb/webhooks"
)

// The [metrics] listener is wired into cmdStart in two steps, because the
// HTTP API observer is part of pusher.Options (copied by pusher.NewServer)
// while the listener needs the servers:
//
//	api := metricsObserver(cfg, &opts) // before pusher.NewServer
//	...
//	stopMetrics, err := startMetrics(cfg, api, srv, px, redisBroker, hooks, log) // before srv.Run
//	if err != nil { ...; return 1 }
//	defer stopMetrics()

// metricsObserver creates the HTTP API metrics when [metrics] is enabled and
// installs their observer as opts.APIObserver. It must run before
// pusher.NewServer(opts, ...), which copies the options. It returns nil (and
// leaves opts alone) when metrics are disabled.
func metricsObserver(cfg *config.Config, opts *pusher.Options) *metrics.API {
	if !cfg.Metrics.Enabled {
		return nil
	}
	api := metrics.NewAPI()
	opts.APIObserver = api.Observe
	return api
}

// startMetrics serves /metrics, /healthz, /readyz, the dashboard and, with
// pprof = true, /debug/pprof/ on [metrics] host:port, when [metrics] is
// enabled; otherwise it does nothing. api is metricsObserver's result. rb
// is the Redis broker, or nil without [scaling]: with it, the reverb_redis_*
// metrics, the peers on the dashboard and readiness (503 while Redis is
// unreachable) follow the cluster. hooks is the webhook dispatcher, or nil
// without endpoints: with it, reverb_webhook_* and the dashboard's webhook
// counters follow it. Call it before srv.Run (readiness says
// "starting" until the server listens) and stop it after the drain, so that
// /readyz answers 503 throughout the drain. A bind error is returned.
func startMetrics(cfg *config.Config, api *metrics.API, srv *loop.Server, px *pusher.Server, rb *cluster.Redis, hooks *webhooks.Dispatcher, log *slog.Logger) (stop func(), err error) {
	if !cfg.Metrics.Enabled {
		return func() {}, nil
	}
	opts := metrics.Options{
		Addr:    net.JoinHostPort(cfg.Metrics.Host, strconv.Itoa(cfg.Metrics.Port)),
		Version: version,
		PProf:   cfg.Metrics.PProf,
		API:     api,
		Logger:  log,
	}
	if rb != nil {
		opts.NodeID = rb.NodeID()
	}
	m, err := metrics.New(srv, px, opts)
	if err != nil {
		return nil, err
	}
	if rb != nil {
		m.SetDegraded(rb.Degraded)
		m.SetCluster(func() metrics.ClusterStats {
			st := rb.Stats()
			return metrics.ClusterStats{
				Publishes: st.Published, Receives: st.Received, Dropped: st.Dropped, Invalid: st.Invalid,
				Reconnects: st.Reconnects, Degraded: st.Degraded, Peers: st.Nodes,
				Refused: st.Refused, Queued: st.Queued, Batches: st.Batches, Resyncs: st.Resyncs, GatherIncomplete: st.GatherIncomplete, Interest: st.Interest,
				TrackerOps: st.TrackerOps, TrackerErrors: st.TrackerErrors, TrackerQueued: st.TrackerQueued, Reaped: st.Reaped,
			}
		})
		m.SetPeers(func(context.Context) []metrics.Node {
			var peers []metrics.Node
			for _, n := range rb.Nodes() {
				if !n.Self {
					peers = append(peers, metrics.Node{ID: n.ID, LastSeen: n.LastSeen, Loops: -1, Connections: -1, Status: "alive"})
				}
			}
			slices.SortFunc(peers, func(a, b metrics.Node) int { return strings.Compare(a.ID, b.ID) })
			return peers
		})
	}
	if hooks != nil {
		m.SetWebhooks(webhookStats(hooks))
	}
	if err := m.Start(); err != nil {
		return nil, err
	}
	base := "http://" + m.Addr()
	log.Info("Serving metrics on "+base+"/metrics", "dashboard", base+"/", "pprof", cfg.Metrics.PProf)
	if ip := net.ParseIP(cfg.Metrics.Host); cfg.Metrics.Host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		log.Warn("the metrics listener is not on loopback: its dashboard lists channels and presence members; keep it behind a firewall",
			"host", cfg.Metrics.Host)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			log.Warn("metrics listener shutdown", "err", err)
		}
	}, nil
}
