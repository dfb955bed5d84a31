package webhooks

import (
	"sync"
	"sync/atomic"
	"time"
)

// app is one app: its credentials, its endpoints and the events the delay
// holds back.
type app struct {
	d         *Dispatcher
	id, key   string
	secret    []byte
	endpoints []*endpoint
	enabled   uint8 // the kinds Emit acts on (see Enabled)

	// mu guards the held events. It is only held for map and slice
	// operations and non-blocking queue sends, never across I/O.
	mu      sync.Mutex
	pending map[pendKey]*held // held events not yet released nor cancelled
	fifo    []*held           // held events in due order, cancelled ones included
	armed   bool              // a timer will call fire
	stop    func() bool       // stops that timer
	closed  bool              // Close released everything; hold nothing more

	nPending  atomic.Int64 // len(pending), read without mu
	emitted   atomic.Uint64
	ignored   atomic.Uint64
	cancelled atomic.Uint64
	undelayed atomic.Uint64
}

// pendKey names a held event: a channel's vacated, or a user's removal from
// a channel.
type pendKey struct {
	kind    kind
	channel string
	user    string
}

type held struct {
	key       pendKey
	ev        Event
	due       time.Time
	cancelled bool
}

func keyOf(k kind, ev *Event) pendKey {
	if k == kRemoved {
		return pendKey{k, ev.Channel, ev.UserID}
	}
	return pendKey{kind: k, channel: ev.Channel}
}

// route queues the event on every endpoint that receives it. The endpoints
// share one copy.
func (a *app) route(k kind, ev *Event) {
	var it *item
	for _, e := range a.endpoints {
		if e.mask&k.bit() == 0 || !e.filter.Match(ev.Channel) {
			continue
		}
		if it == nil {
			it = &item{kind: k, ev: *ev}
		}
		e.push(it)
	}
}

// anyReceives reports whether an endpoint receives one of the kinds of mask
// on the channel.
func (a *app) anyReceives(mask uint8, channel string) bool {
	for _, e := range a.endpoints {
		if e.mask&mask != 0 && e.filter.Match(channel) {
			return true
		}
	}
	return false
}

func (a *app) dropAfterClose(k kind, channel string) {
	for _, e := range a.endpoints {
		if e.mask&k.bit() != 0 && e.filter.Match(channel) {
			e.afterClose.Add(1)
		}
	}
}

// hold keeps a channel_vacated or member_removed back for the delay. A
// second one for the same key while the first is held is ignored (and
// counted so): the first stands. Past QueueSize held events it is routed at once (and counted as
// undelayed), so that nothing is lost.
func (a *app) hold(k kind, ev *Event) {
	if !a.anyReceives(pairBits[k], ev.Channel) {
		return // nobody receives this event nor its counterpart here
	}
	key := keyOf(k, ev)
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, dup := a.pending[key]; dup {
		a.ignored.Add(1)
		return
	}
	if a.closed {
		a.route(k, ev)
		return
	}
	if len(a.fifo) >= a.d.cfg.QueueSize {
		a.undelayed.Add(1)
		a.route(k, ev)
		return
	}
	delay := a.d.cfg.VacateDelay
	h := &held{key: key, ev: *ev, due: a.d.cfg.Now().Add(delay)}
	a.pending[key] = h
	a.nPending.Store(int64(len(a.pending)))
	a.fifo = append(a.fifo, h)
	if !a.armed {
		a.arm(delay)
	}
}

// cancel is called with a channel_occupied or member_added: if its
// counterpart is held, both are dropped and cancel reports true.
func (a *app) cancel(k kind, ev *Event) bool {
	if a.nPending.Load() == 0 {
		return false
	}
	opposite := kVacated
	if k == kAdded {
		opposite = kRemoved
	}
	key := keyOf(opposite, ev)
	a.mu.Lock()
	h := a.pending[key]
	if h != nil {
		h.cancelled = true
		delete(a.pending, key)
		a.nPending.Store(int64(len(a.pending)))
	}
	a.mu.Unlock()
	if h == nil {
		return false
	}
	a.cancelled.Add(2)
	return true
}

// arm schedules fire. Called with mu held.
func (a *app) arm(d time.Duration) {
	a.armed = true
	a.stop = a.d.cfg.AfterFunc(d, a.fire)
}

// fire releases the held events that are due, in the order they were held,
// and schedules itself for the next one.
func (a *app) fire() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.armed = false
	if a.closed {
		return
	}
	now := a.d.cfg.Now()
	for len(a.fifo) > 0 {
		h := a.fifo[0]
		if h.due.After(now) {
			break
		}
		a.fifo[0] = nil
		a.fifo = a.fifo[1:]
		if h.cancelled {
			continue
		}
		delete(a.pending, h.key)
		a.route(h.key.kind, &h.ev)
	}
	a.nPending.Store(int64(len(a.pending)))
	if len(a.fifo) == 0 {
		a.fifo = nil
		return
	}
	a.arm(a.fifo[0].due.Sub(now))
}

// releaseAll routes every held event at once: Close calls it, when nothing
// can cancel them any more.
func (a *app) releaseAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	if a.armed {
		a.stop()
		a.armed = false
	}
	for _, h := range a.fifo {
		if !h.cancelled {
			a.route(h.key.kind, &h.ev)
		}
	}
	a.fifo = nil
	clear(a.pending)
	a.nPending.Store(0)
}
