package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/reverbgo/reverb/config"
	"github.com/reverbgo/reverb/metrics"
	"github.com/reverbgo/reverb/pusher"
	"github.com/reverbgo/reverb/webhooks"
)

// startWebhooks builds and starts the webhook dispatcher when an app has
// [[apps.webhooks]] endpoints, and installs it as opts.Webhooks; it must run
// before pusher.NewServer, which copies the options. The engine decides
// channel_vacated and member_removed after [webhooks] vacate_delay_ms
// itself, cluster-wide, so the dispatcher sends what it is given at once.
// stop sends what is queued, retrying for at most 5 s. Without endpoints it
// returns a nil dispatcher and a stop that does nothing.
func startWebhooks(cfg *config.Config, opts *pusher.Options, log *slog.Logger) (d *webhooks.Dispatcher, stop func(), err error) {
	wc := cfg.WebhookConfig()
	n := 0
	for _, a := range cfg.Apps {
		n += len(a.Webhooks)
	}
	if n == 0 {
		return nil, func() {}, nil
	}
	wc.VacateDelay = -1
	d, err = webhooks.New(wc, cfg.WebhookApps())
	if err != nil {
		return nil, nil, err
	}
	d.Start()
	opts.Webhooks = d
	log.Info("Sending webhooks", "endpoints", n, "batch", wc.Batch)
	return d, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			log.Warn("webhooks not all delivered at shutdown", "err", err)
		}
	}, nil
}

// webhookStats converts the dispatcher's counters for the metrics listener.
func webhookStats(d *webhooks.Dispatcher) func() metrics.WebhookStats {
	return func() metrics.WebhookStats {
		var out metrics.WebhookStats
		for _, a := range d.Stats().Apps {
			for _, e := range a.Endpoints {
				out.Endpoints = append(out.Endpoints, metrics.WebhookEndpoint{
					AppID: a.ID, URL: e.URL, Queued: e.Queued, InFlight: e.InFlight,
					Enqueued: e.Enqueued, Delivered: e.Delivered, Requests: e.Requests, Retries: e.Retries,
					Failures:  map[string]uint64{"status": e.Failures.Status, "timeout": e.Failures.Timeout, "transport": e.Failures.Transport},
					Failed:    e.Failed,
					Dropped:   map[string]uint64{"queue_full": e.Dropped.QueueFull, "after_close": e.Dropped.AfterClose, "abandoned": e.Dropped.Abandoned},
					LastError: e.LastError, LastErrorAt: e.LastErrorAt,
				})
			}
		}
		return out
	}
}
