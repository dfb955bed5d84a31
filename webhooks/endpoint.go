package webhooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// item is one event queued for one or more endpoints; it is never modified
// once queued.
type item struct {
	kind kind
	ev   Event
}

// endpoint is one URL of one app, with its own queue and goroutines: one
// collector that turns the queue into bodies, and Config.Concurrency senders
// that POST them. Nothing is shared with other endpoints but the HTTP
// client's connection pool.
type endpoint struct {
	d      *Dispatcher
	app    *app
	url    string
	label  string // url without its password, for Stats
	mask   uint8
	filter Filter
	header http.Header // extra headers; read-only
	host   string      // extra Host header

	q    chan *item   // bounded by QueueSize; Emit sends without blocking
	work chan []*item // collector to senders, unbuffered

	inFlight      atomic.Int64
	enqueued      atomic.Uint64
	delivered     atomic.Uint64
	requests      atomic.Uint64
	retries       atomic.Uint64
	failStatus    atomic.Uint64
	failTimeout   atomic.Uint64
	failTransport atomic.Uint64
	failed        atomic.Uint64
	queueFull     atomic.Uint64
	afterClose    atomic.Uint64
	abandoned     atomic.Uint64
	lastErr       atomic.Pointer[lastError]
}

type lastError struct {
	msg string
	at  time.Time
}

// push queues it without blocking, or drops it when the queue is full.
func (e *endpoint) push(it *item) {
	e.enqueued.Add(1)
	select {
	case e.q <- it:
	default:
		e.enqueued.Add(^uint64(0))
		e.queueFull.Add(1)
	}
}

// collect is the endpoint's collector goroutine. It hands bodies' events to
// the senders: one event at a time, or with batching every event that
// arrives within the window, up to MaxBatchEvents. Once Close starts it
// empties the queue without waiting for windows, then closes work.
func (e *endpoint) collect() {
	defer close(e.work)
	for {
		var first *item
		select {
		case first = <-e.q:
		case <-e.d.closing:
			e.flush()
			return
		}
		batch := []*item{first}
		if e.d.cfg.Batch {
			batch = e.fill(batch)
		}
		if !e.hand(batch) {
			e.abandonQueue()
			return
		}
	}
}

// fill adds to batch what arrives within the batch window.
func (e *endpoint) fill(batch []*item) []*item {
	limit := e.d.cfg.MaxBatchEvents
	window := make(chan struct{})
	stop := e.d.cfg.AfterFunc(e.d.cfg.BatchWindow, func() { close(window) })
	defer stop()
	for len(batch) < limit {
		select {
		case it := <-e.q:
			batch = append(batch, it)
		case <-window:
			return batch
		case <-e.d.closing:
			return e.take(batch, limit)
		}
	}
	return batch
}

// take adds to batch what the queue holds now, up to limit events.
func (e *endpoint) take(batch []*item, limit int) []*item {
	for len(batch) < limit {
		select {
		case it := <-e.q:
			batch = append(batch, it)
		default:
			return batch
		}
	}
	return batch
}

// flush hands over everything still queued, once Close has started.
func (e *endpoint) flush() {
	limit := 1
	if e.d.cfg.Batch {
		limit = e.d.cfg.MaxBatchEvents
	}
	for {
		batch := e.take(nil, limit)
		if len(batch) == 0 {
			return
		}
		if !e.hand(batch) {
			e.abandonQueue()
			return
		}
	}
}

// hand gives batch to a sender, unless Close gives up first.
func (e *endpoint) hand(batch []*item) bool {
	select {
	case e.work <- batch:
		return true
	case <-e.d.ctx.Done():
		e.abandoned.Add(uint64(len(batch)))
		return false
	}
}

// abandonQueue counts what is left in the queue as abandoned.
func (e *endpoint) abandonQueue() {
	for {
		select {
		case <-e.q:
			e.abandoned.Add(1)
		default:
			return
		}
	}
}

// send is a sender goroutine.
func (e *endpoint) send() {
	for batch := range e.work {
		e.deliver(batch)
	}
}

// deliver POSTs one body until it is accepted, the retry budget is spent or
// Close gives up. Retries send the same bytes: same time_ms, same signature.
func (e *endpoint) deliver(batch []*item) {
	cfg := &e.d.cfg
	n := uint64(len(batch))
	body := appendBody(nil, cfg.Now().UnixMilli(), batch)
	sig := sign(e.app.secret, body)
	first := cfg.Now()
	for retry := 0; ; retry++ {
		if retry > 0 {
			e.retries.Add(1)
		}
		e.requests.Add(1)
		err := e.post(body, sig)
		if err == nil {
			e.delivered.Add(n)
			return
		}
		if e.d.ctx.Err() != nil {
			e.abandoned.Add(n)
			return
		}
		e.countFailure(err)
		wait := backoff(cfg, retry, e.d.rand)
		if cfg.RetryBudget < 0 || cfg.Now().Add(wait).Sub(first) > cfg.RetryBudget {
			e.failed.Add(n)
			return
		}
		if !e.d.sleep(wait) {
			e.abandoned.Add(n)
			return
		}
	}
}

// sign returns the X-Pusher-Signature of a body: the lowercase hex
// HMAC-SHA256 of its exact bytes, keyed with the app secret.
func sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// statusError is an answer outside 2xx.
type statusError struct{ code int }

func (s *statusError) Error() string { return fmt.Sprintf("HTTP status %d", s.code) }

var (
	contentTypeJSON = []string{"application/json"}
	userAgent       = []string{"reverb-webhooks"}
)

// post makes one attempt.
func (e *endpoint) post(body []byte, sig string) error {
	ctx, cancel := context.WithTimeout(e.d.ctx, e.d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	h := req.Header
	h["User-Agent"] = userAgent
	for name, v := range e.header {
		h[name] = v
	}
	h["Content-Type"] = contentTypeJSON
	h["X-Pusher-Key"] = []string{e.app.key}
	h["X-Pusher-Signature"] = []string{sig}
	if e.host != "" {
		req.Host = e.host
	}
	e.inFlight.Add(1)
	resp, err := e.d.client.Do(req)
	if err == nil {
		// The status decides; the body is read only to reuse the connection.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			err = &statusError{resp.StatusCode}
		}
	}
	e.inFlight.Add(-1)
	return err
}

// countFailure counts a failed attempt by reason and keeps its error.
func (e *endpoint) countFailure(err error) {
	var se *statusError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		e.failStatus.Add(1)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		e.failTimeout.Add(1)
	default:
		e.failTransport.Add(1)
	}
	e.lastErr.Store(&lastError{msg: err.Error(), at: e.d.cfg.Now()})
}

// backoff is the wait after the attempt numbered retry (0 for the first
// attempt) failed: InitialBackoff doubled retry times, capped at MaxBackoff,
// then spread by ±Jitter with rnd in [0, 1).
func backoff(cfg *Config, retry int, rnd func() float64) time.Duration {
	w := cfg.InitialBackoff
	for range retry {
		if w >= cfg.MaxBackoff/2 {
			w = cfg.MaxBackoff
			break
		}
		w *= 2
	}
	w = min(w, cfg.MaxBackoff)
	if cfg.Jitter > 0 {
		w = time.Duration(float64(w) * (1 + cfg.Jitter*(2*rnd()-1)))
	}
	return w
}

// sleep waits for d, or until Close gives up (then it reports false).
func (d *Dispatcher) sleep(wait time.Duration) bool {
	fired := make(chan struct{})
	stop := d.cfg.AfterFunc(wait, func() { close(fired) })
	select {
	case <-fired:
		return true
	case <-d.ctx.Done():
		stop()
		return false
	}
}
