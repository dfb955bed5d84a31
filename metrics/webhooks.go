package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WebhookStats are the figures of webhook delivery, exported as
// reverb_webhook_* and as the "webhooks" object of /api/stats (see
// Server.SetWebhooks). Counters count since the process started.
type WebhookStats struct {
	// Endpoints are every app's webhook endpoints, in configuration order.
	Endpoints []WebhookEndpoint `json:"endpoints"`
}

// WebhookEndpoint is one endpoint's figures. Events are counted once per
// endpoint that receives them.
type WebhookEndpoint struct {
	AppID string `json:"app_id"`
	// URL is the endpoint's URL, its password (if any) redacted.
	URL string `json:"url"`
	// Queued is the number of events waiting in the endpoint's queue now.
	Queued int `json:"queued"`
	// InFlight is the number of requests in flight now.
	InFlight int `json:"in_flight"`
	// Enqueued counts the events accepted into the queue.
	Enqueued uint64 `json:"enqueued"`
	// Delivered counts the events in bodies answered with 2xx.
	Delivered uint64 `json:"delivered"`
	// Requests counts POSTs attempted, retries included.
	Requests uint64 `json:"requests"`
	// Retries counts POSTs that repeated a body already attempted.
	Retries uint64 `json:"retries"`
	// Failures counts failed attempts by reason: "status" (an answer
	// outside 2xx), "timeout", "transport".
	Failures map[string]uint64 `json:"failures"`
	// Failed counts the events given up once their retry budget was spent.
	Failed uint64 `json:"failed"`
	// Dropped counts the events dropped by reason: "queue_full",
	// "after_close", "abandoned".
	Dropped map[string]uint64 `json:"dropped"`
	// LastError is the last failed attempt's error and LastErrorAt when it
	// happened (zero when none failed).
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

var (
	descWebhookEvents   = desc("reverb_webhook_events_total", "Webhook events per endpoint by outcome: enqueued, delivered (answered 2xx), failed (retry budget spent).", "app_id", "endpoint", "outcome")
	descWebhookRequests = desc("reverb_webhook_requests_total", "Webhook POSTs attempted, retries included.", "app_id", "endpoint")
	descWebhookRetries  = desc("reverb_webhook_retries_total", "Webhook POSTs that repeated a body already attempted.", "app_id", "endpoint")
	descWebhookFailures = desc("reverb_webhook_failures_total", "Failed webhook attempts by reason (status, timeout, transport).", "app_id", "endpoint", "reason")
	descWebhookDropped  = desc("reverb_webhook_dropped_total", "Webhook events dropped by reason (queue_full, after_close, abandoned).", "app_id", "endpoint", "reason")
	descWebhookQueued   = desc("reverb_webhook_queued", "Webhook events waiting in an endpoint's queue.", "app_id", "endpoint")
	descWebhookInFlight = desc("reverb_webhook_in_flight", "Webhook requests in flight to an endpoint.", "app_id", "endpoint")
)

var webhookDescs = []*prometheus.Desc{
	descWebhookEvents, descWebhookRequests, descWebhookRetries, descWebhookFailures,
	descWebhookDropped, descWebhookQueued, descWebhookInFlight,
}

// SetWebhooks installs the source of the reverb_webhook_* metrics and of the
// "webhooks" object of /api/stats; it is called once per scrape and must be
// fast and goroutine-safe. nil removes it. Goroutine-safe.
func (s *Server) SetWebhooks(f func() WebhookStats) {
	if f == nil {
		s.webhooks.Store(nil)
		return
	}
	s.webhooks.Store(&f)
}

// collectWebhooks emits the reverb_webhook_* metrics.
func (s *Server) collectWebhooks(ch chan<- prometheus.Metric) {
	f := s.webhooks.Load()
	if f == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	seen := map[[2]string]bool{}
	for _, e := range (*f)().Endpoints {
		// Two endpoints of one app with the same URL would collide.
		if k := [2]string{e.AppID, e.URL}; seen[k] {
			continue
		} else {
			seen[k] = true
		}
		counter(descWebhookEvents, e.Enqueued, e.AppID, e.URL, "enqueued")
		counter(descWebhookEvents, e.Delivered, e.AppID, e.URL, "delivered")
		counter(descWebhookEvents, e.Failed, e.AppID, e.URL, "failed")
		counter(descWebhookRequests, e.Requests, e.AppID, e.URL)
		counter(descWebhookRetries, e.Retries, e.AppID, e.URL)
		for _, r := range []string{"status", "timeout", "transport"} {
			counter(descWebhookFailures, e.Failures[r], e.AppID, e.URL, r)
		}
		for _, r := range []string{"queue_full", "after_close", "abandoned"} {
			counter(descWebhookDropped, e.Dropped[r], e.AppID, e.URL, r)
		}
		gauge(descWebhookQueued, float64(e.Queued), e.AppID, e.URL)
		gauge(descWebhookInFlight, float64(e.InFlight), e.AppID, e.URL)
	}
}
