package webhooks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// Dispatcher delivers the webhooks of a set of apps. Build it with New, call
// Start, feed it with Emit, and stop it with Close.
type Dispatcher struct {
	cfg    Config
	client *http.Client
	own    *http.Transport // the default client's transport, closed by Close
	apps   map[string]*app // immutable after New
	order  []*app          // apps in the order given to New
	rand   func() float64  // jitter source

	unknownApp atomic.Uint64

	// Emit and Close meet through these two: Emit registers in emitting,
	// then reads closed; Close sets closed, then waits for emitting to reach
	// zero. After that no Emit queues anything.
	emitting atomic.Int64
	closed   atomic.Bool

	// ctx ends when Close gives up (its own context ended): requests and
	// waits abort and what they held is counted as abandoned.
	ctx    context.Context
	cancel context.CancelFunc

	closing chan struct{} // closed when Close starts flushing
	done    chan struct{} // closed when every goroutine has returned, after Close

	mu           sync.Mutex // guards started and closeStarted
	started      bool
	closeStarted bool
	wg           sync.WaitGroup
}

// New checks the configuration and builds a Dispatcher; no goroutine runs
// until Start. It reports every invalid value at once. An app without
// endpoints is allowed (Emit ignores it, Enabled reports false).
func New(cfg Config, apps []App) (*Dispatcher, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	ids := make(map[string]bool, len(apps))
	for _, a := range apps {
		if a.ID == "" {
			errs = append(errs, errors.New("webhooks: an app has no id"))
		} else if ids[a.ID] {
			errs = append(errs, fmt.Errorf("webhooks: app %q: listed twice", a.ID))
		}
		ids[a.ID] = true
		if len(a.Endpoints) > 0 && (a.Key == "" || a.Secret == "") {
			errs = append(errs, fmt.Errorf("webhooks: app %q: webhooks need the app's key and secret", a.ID))
		}
		for _, e := range a.Endpoints {
			if err := e.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("app %q: %w", a.ID, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	cfg = cfg.withDefaults()
	d := &Dispatcher{
		cfg:     cfg,
		client:  cfg.Client,
		apps:    make(map[string]*app, len(apps)),
		rand:    rand.Float64,
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	if d.client == nil {
		d.own = http.DefaultTransport.(*http.Transport).Clone()
		d.own.MaxIdleConnsPerHost = cfg.Concurrency
		d.client = &http.Client{
			Transport: d.own,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	for _, ac := range apps {
		a := &app{d: d, id: ac.ID, key: ac.Key, secret: []byte(ac.Secret), pending: make(map[pendKey]*held)}
		var mask uint8
		for _, ec := range ac.Endpoints {
			e := newEndpoint(d, a, ec)
			a.endpoints = append(a.endpoints, e)
			mask |= e.mask
		}
		for k := range numKinds {
			if cfg.VacateDelay > 0 {
				if mask&pairBits[k] != 0 {
					a.enabled |= k.bit()
				}
			} else {
				a.enabled |= mask & k.bit()
			}
		}
		d.apps[a.id] = a
		d.order = append(d.order, a)
	}
	return d, nil
}

func newEndpoint(d *Dispatcher, a *app, ec Endpoint) *endpoint {
	e := &endpoint{
		d:      d,
		app:    a,
		url:    ec.URL,
		filter: ec.Filter,
		header: make(map[string][]string, len(ec.Headers)),
		q:      make(chan *item, d.cfg.QueueSize),
		work:   make(chan []*item),
	}
	if u, err := url.Parse(ec.URL); err == nil {
		e.label = u.Redacted()
	}
	for _, name := range ec.EventTypes {
		k, _ := kindOf(name)
		e.mask |= k.bit()
	}
	for name, value := range ec.Headers {
		if strings.EqualFold(name, "Host") {
			e.host = value
			continue
		}
		e.header[http.CanonicalHeaderKey(name)] = []string{value}
	}
	return e
}

// Start starts the goroutines that deliver: per endpoint, one that gathers
// its queue into bodies and Config.Concurrency that send them. Events
// emitted before Start wait in the queues. Start after Start or Close does
// nothing. Goroutine-safe.
func (d *Dispatcher) Start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.started && !d.closeStarted {
		d.startLocked()
	}
}

func (d *Dispatcher) startLocked() {
	d.started = true
	for _, a := range d.order {
		for _, e := range a.endpoints {
			d.wg.Go(e.collect)
			for range d.cfg.Concurrency {
				d.wg.Go(e.send)
			}
		}
	}
}

// Close stops the Dispatcher. Emit drops (and counts) everything from the
// moment Close is called. Close then sends at once the events the delay was
// holding back, flushes the queues without waiting for batch windows, and
// keeps delivering and retrying until everything is delivered or has failed,
// or ctx ends. When ctx ends first, the requests in flight are aborted and
// the events not delivered are counted as abandoned; Close then returns
// ctx's error once the goroutines have returned (promptly). A Dispatcher
// that was never started is started first, so that its queues are flushed.
// Calling Close again waits the same way. Goroutine-safe.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	first := !d.closeStarted
	if first {
		if !d.started {
			d.startLocked()
		}
		d.closeStarted = true
	}
	d.mu.Unlock()

	if first {
		d.closed.Store(true)
		for d.emitting.Load() != 0 {
			runtime.Gosched() // an Emit is between its two atomics: it never blocks
		}
		for _, a := range d.order {
			a.releaseAll()
		}
		close(d.closing)
		go func() {
			d.wg.Wait()
			close(d.done)
		}()
	}

	var err error
	select {
	case <-d.done:
	case <-ctx.Done():
		d.cancel()
		<-d.done
		err = ctx.Err()
	}
	d.cancel()
	if d.own != nil {
		d.own.CloseIdleConnections()
	}
	return err
}

// Enabled reports whether Emit would do anything with an event of that
// name for that app: whether some endpoint of the app receives it, or (with
// the delay on) its counterpart, since channel_occupied cancels a pending
// channel_vacated and member_added a pending member_removed, and the
// reverse. Callers use it to skip building events nobody receives. It does
// not look at channel filters. It does not allocate. Goroutine-safe.
func (d *Dispatcher) Enabled(appID, name string) bool {
	a := d.apps[appID]
	if a == nil {
		return false
	}
	k, ok := kindOf(name)
	return ok && a.enabled&k.bit() != 0
}

// Emit hands one event of an app to the endpoints that receive it. It never
// blocks and never does I/O: it queues the event on each such endpoint, or
// for channel_vacated and member_removed holds it back for the delay (see
// the package documentation). Past an endpoint's queue size the event is
// dropped for that endpoint and counted. An unknown app id, an unknown
// name, or an event that cannot happen on its channel (a member event off a
// presence channel, a client event off a private or presence channel, a
// subscription count on a presence channel) is ignored and counted. The
// only lock it may take is its app's (for the four event types the delay
// concerns), which is only ever held for map operations and non-blocking
// queue sends, so it may be called with the caller's own locks held.
// Goroutine-safe.
func (d *Dispatcher) Emit(appID string, ev Event) {
	a := d.apps[appID]
	if a == nil {
		d.unknownApp.Add(1)
		return
	}
	k, ok := kindOf(ev.Name)
	if !ok || !allowed(k, ev.Channel) {
		a.ignored.Add(1)
		return
	}
	if a.enabled&k.bit() == 0 {
		return
	}
	d.emitting.Add(1)
	defer d.emitting.Add(-1)
	if d.closed.Load() {
		a.dropAfterClose(k, ev.Channel)
		return
	}
	a.emitted.Add(1)
	if d.cfg.VacateDelay > 0 {
		switch k {
		case kVacated, kRemoved:
			a.hold(k, &ev)
			return
		case kOccupied, kAdded:
			if a.cancel(k, &ev) {
				return
			}
		}
	}
	a.route(k, &ev)
}
