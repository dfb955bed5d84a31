package webhooks

import "time"

// Stats is a snapshot of the Dispatcher's counters. Counters (uint64) only
// grow from New on; gauges (int) are the current value. Each counter is read
// atomically, but the snapshot as a whole is not taken at one instant.
type Stats struct {
	// UnknownApp counts Emit calls for an app id New was not given.
	UnknownApp uint64

	// Apps are in the order given to New.
	Apps []AppStats
}

// AppStats are one app's counters.
type AppStats struct {
	ID string

	// Emitted counts the events Emit accepted for the app: known, possible
	// on their channel, and wanted by some endpoint (see Enabled).
	Emitted uint64

	// Ignored counts the events Emit ignored: an unknown name, an event
	// that cannot happen on its channel, or a channel_vacated or
	// member_removed already held back for the same channel (and user).
	Ignored uint64

	// Cancelled counts the events the delay rule suppressed: a held
	// channel_vacated or member_removed and the channel_occupied or
	// member_added that undid it count one each.
	Cancelled uint64

	// Undelayed counts the channel_vacated and member_removed events sent
	// without their delay because QueueSize events were already held.
	Undelayed uint64

	// Held is the number of events the delay holds back now (a gauge).
	Held int

	// Endpoints are in the order of App.Endpoints.
	Endpoints []EndpointStats
}

// EndpointStats are one endpoint's counters. Events are counted once per
// endpoint that receives them. Once Close has returned,
//
//	Enqueued == Delivered + Failed + Dropped.Abandoned
type EndpointStats struct {
	URL string // the endpoint's URL, its password (if any) redacted

	Queued   int // events waiting in the queue (a gauge)
	InFlight int // requests in flight (a gauge)

	Enqueued  uint64 // events accepted into the queue
	Delivered uint64 // events in bodies answered with 2xx
	Requests  uint64 // POSTs attempted, retries included
	Retries   uint64 // POSTs that repeated a body already attempted

	// Failures counts the failed attempts by reason.
	Failures Failures

	// Failed counts the events given up after their body's retry budget.
	Failed uint64

	// Dropped counts the events dropped for this endpoint, by reason.
	Dropped Drops

	// LastError is the last failed attempt's error, and when it happened
	// (zero when no attempt failed).
	LastError   string
	LastErrorAt time.Time
}

// Failures counts failed attempts (not events) by reason.
type Failures struct {
	Status    uint64 // the endpoint answered outside 2xx (3xx included)
	Timeout   uint64 // no complete answer within Config.Timeout
	Transport uint64 // any other error: refused, reset, DNS, TLS...
}

// Drops counts events dropped for one endpoint, by reason.
type Drops struct {
	QueueFull  uint64 // the endpoint's queue held QueueSize events already
	AfterClose uint64 // emitted after Close was called
	Abandoned  uint64 // queued or in flight when Close's context ended
}

// Stats returns a snapshot of the counters. It does not allocate beyond the
// snapshot itself, takes no lock, and may be called at any time, during and
// after Close. Goroutine-safe.
func (d *Dispatcher) Stats() Stats {
	s := Stats{UnknownApp: d.unknownApp.Load(), Apps: make([]AppStats, 0, len(d.order))}
	for _, a := range d.order {
		as := AppStats{
			ID:        a.id,
			Emitted:   a.emitted.Load(),
			Ignored:   a.ignored.Load(),
			Cancelled: a.cancelled.Load(),
			Undelayed: a.undelayed.Load(),
			Held:      int(a.nPending.Load()),
			Endpoints: make([]EndpointStats, 0, len(a.endpoints)),
		}
		for _, e := range a.endpoints {
			es := EndpointStats{
				URL:       e.label,
				Queued:    len(e.q),
				InFlight:  int(e.inFlight.Load()),
				Enqueued:  e.enqueued.Load(),
				Delivered: e.delivered.Load(),
				Requests:  e.requests.Load(),
				Retries:   e.retries.Load(),
				Failures: Failures{
					Status:    e.failStatus.Load(),
					Timeout:   e.failTimeout.Load(),
					Transport: e.failTransport.Load(),
				},
				Failed: e.failed.Load(),
				Dropped: Drops{
					QueueFull:  e.queueFull.Load(),
					AfterClose: e.afterClose.Load(),
					Abandoned:  e.abandoned.Load(),
				},
			}
			if le := e.lastErr.Load(); le != nil {
				es.LastError, es.LastErrorAt = le.msg, le.at
			}
			as.Endpoints = append(as.Endpoints, es)
		}
		s.Apps = append(s.Apps, as)
	}
	return s
}
