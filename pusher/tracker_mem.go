package pusher

import (
	"sync"
	"time"
)

// MemoryTracker is the Tracker of a node that runs alone (or of nodes that
// share one process, in tests): the holders of each key and the counters
// live in memory. It follows the Tracker contract exactly: Hold and Release
// count the holders of a key, a Release that leaves the key held nowhere
// waits its delay on a timer that a Hold cancels, Count adds to a counter and
// numbers every total with a sequence number that grows over the whole
// tracker.
//
// Every callback runs on the tracker's own goroutine (started when there is
// something to call and ended when there is nothing left), in the order the
// calls that produced them took effect, never on the caller's goroutine: the
// engine may call it while it orders its changes. A slow callback delays the ones
// after it. All methods are goroutine-safe and never wait.
type MemoryTracker struct {
	mu       sync.Mutex
	keys     map[trackKey]*heldKey
	counters map[trackKey]int64
	seq      uint64
	token    uint64

	queue   []func()
	running bool
}

type trackKey struct {
	app *App
	key string
}

// heldKey is one key's holders and its waiting release, if any.
type heldKey struct {
	holders int
	pending *pendingRelease
}

type pendingRelease struct {
	token uint64
	timer *time.Timer
	cb    func(last bool)
}

var _ Tracker = (*MemoryTracker)(nil)

// NewMemoryTracker returns an empty MemoryTracker.
func NewMemoryTracker() *MemoryTracker {
	return &MemoryTracker{keys: make(map[trackKey]*heldKey), counters: make(map[trackKey]int64)}
}

// deferLocked queues a callback; t.mu must be held, so that callbacks keep
// the order of the calls.
func (t *MemoryTracker) deferLocked(f func()) {
	t.queue = append(t.queue, f)
	if !t.running {
		t.running = true
		go t.run()
	}
}

// run calls the queued callbacks in order until there are none.
func (t *MemoryTracker) run() {
	for {
		t.mu.Lock()
		batch := t.queue
		t.queue = nil
		if len(batch) == 0 {
			t.running = false
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
		for _, f := range batch {
			f()
		}
	}
}

// Hold implements Tracker. Goroutine-safe.
func (t *MemoryTracker) Hold(app *App, key string, cb func(first bool)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := trackKey{app, key}
	h := t.keys[k]
	if h == nil {
		h = &heldKey{}
		t.keys[k] = h
	}
	h.holders++
	first := h.holders == 1
	if p := h.pending; p != nil {
		// Back within the delay: the release is cancelled and, seen from
		// outside, the key was never released.
		h.pending = nil
		p.timer.Stop()
		first = false
		if p.cb != nil {
			t.deferLocked(func() { p.cb(false) })
		}
	}
	if cb != nil {
		t.deferLocked(func() { cb(first) })
	}
}

// Release implements Tracker. Goroutine-safe.
func (t *MemoryTracker) Release(app *App, key string, delay time.Duration, cb func(last bool)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := trackKey{app, key}
	h := t.keys[k]
	answer := func(last bool) {
		if cb != nil {
			t.deferLocked(func() { cb(last) })
		}
	}
	if h == nil || h.holders <= 0 {
		answer(false) // released more than held: nothing to announce
		return
	}
	h.holders--
	if h.holders > 0 {
		answer(false)
		return
	}
	if delay <= 0 {
		delete(t.keys, k)
		answer(true)
		return
	}
	t.token++
	p := &pendingRelease{token: t.token, cb: cb}
	h.pending = p
	p.timer = time.AfterFunc(delay, func() { t.expire(k, p.token) })
}

// expire ends the delay of a release, unless a Hold cancelled it.
func (t *MemoryTracker) expire(k trackKey, token uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.keys[k]
	if h == nil || h.pending == nil || h.pending.token != token {
		return
	}
	p := h.pending
	h.pending = nil
	if h.holders == 0 {
		delete(t.keys, k)
	}
	if p.cb != nil {
		t.deferLocked(func() { p.cb(true) })
	}
}

// Count implements Tracker. Goroutine-safe.
func (t *MemoryTracker) Count(app *App, key string, delta int64, cb func(total int64, seq uint64)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := trackKey{app, key}
	total := t.counters[k] + delta
	if total == 0 {
		delete(t.counters, k) // seq grows over the tracker: forgetting is safe
	} else {
		t.counters[k] = total
	}
	t.seq++
	seq := t.seq
	t.deferLocked(func() { cb(total, seq) })
}

// Holding implements Tracker. Goroutine-safe.
func (t *MemoryTracker) Holding(app *App, keys []string, cb func(held []bool)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	held := make([]bool, len(keys))
	for i, key := range keys {
		if h := t.keys[trackKey{app, key}]; h != nil && h.holders > 0 {
			held[i] = true
		}
	}
	t.deferLocked(func() { cb(held) })
}
