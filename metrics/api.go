package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// API holds the HTTP API request metrics: reverb_http_api_requests_total
// {route,status} and reverb_http_api_request_duration_seconds{route}. Its
// Observe method is the pusher.Options.APIObserver. Create it before
// pusher.NewServer (the observer is part of the options) and hand it to New.
// All methods are goroutine-safe.
type API struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// apiBuckets cover the API's latencies: sub-millisecond triggers up to a
// queue that waited for seconds.
var apiBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// NewAPI creates the HTTP API metrics.
func NewAPI() *API {
	return &API{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reverb_http_api_requests_total",
			Help: "HTTP API requests answered, by route and HTTP status.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "reverb_http_api_request_duration_seconds",
			Help:    "Time to handle an HTTP API request on a worker, by route.",
			Buckets: apiBuckets,
		}, []string{"route"}),
	}
}

// Observe records one request. It has the signature of
// pusher.Options.APIObserver and is called from the API workers.
// Goroutine-safe. A nil *API ignores the call.
func (a *API) Observe(route string, status int, d time.Duration) {
	if a == nil {
		return
	}
	a.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	a.duration.WithLabelValues(route).Observe(d.Seconds())
}

// Observer returns Observe as a function value, or nil for a nil *API, so
// that a disabled API costs the workers nothing:
//
//	opts.APIObserver = api.Observer()
func (a *API) Observer() func(route string, status int, d time.Duration) {
	if a == nil {
		return nil
	}
	return a.Observe
}

func (a *API) register(r prometheus.Registerer) error {
	if err := r.Register(a.requests); err != nil {
		return err
	}
	return r.Register(a.duration)
}
