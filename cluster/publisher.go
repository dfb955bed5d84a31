package cluster

import (
	"sync"
)

// batch is what one publish round trip carries.
type batch struct {
	msgs   []outMsg
	events int           // of msgs, how many are events (the rest is control)
	done   chan struct{} // closed once the round trip is over
}

// publishQueue gathers envelopes while the previous round trip is in
// flight, so that each round trip carries everything queued meanwhile. It
// is bounded: events past the limit are refused (the caller answers 503),
// control envelopes past twice the limit are dropped and counted.
// Goroutine-safe.
type publishQueue struct {
	limit int
	wake  chan struct{} // one token: something is queued

	mu  sync.Mutex
	cur *batch
}

func newPublishQueue(limit int) *publishQueue {
	return &publishQueue{limit: limit, wake: make(chan struct{}, 1), cur: &batch{done: make(chan struct{})}}
}

// addEvents queues event envelopes, all or none. ok is false when they do
// not fit; done is closed once the round trip that carries them is over.
func (q *publishQueue) addEvents(msgs []outMsg) (done <-chan struct{}, ok bool) {
	q.mu.Lock()
	b := q.cur
	if len(b.msgs)+len(msgs) > q.limit {
		q.mu.Unlock()
		return nil, false
	}
	b.msgs = append(b.msgs, msgs...)
	b.events += len(msgs)
	q.mu.Unlock()
	q.signal()
	return b.done, true
}

// addControl queues one control envelope; false when the queue is far
// over its limit.
func (q *publishQueue) addControl(m outMsg) bool {
	q.mu.Lock()
	b := q.cur
	if len(b.msgs) >= 2*q.limit {
		q.mu.Unlock()
		return false
	}
	b.msgs = append(b.msgs, m)
	q.mu.Unlock()
	q.signal()
	return true
}

func (q *publishQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns everything queued (nil when nothing is) and starts a new
// batch.
func (q *publishQueue) take() *batch {
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.cur
	if len(b.msgs) == 0 {
		return nil
	}
	q.cur = &batch{msgs: make([]outMsg, 0, min(cap(b.msgs), 1024)), done: make(chan struct{})}
	return b
}

// len returns how many envelopes wait.
func (q *publishQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.cur.msgs)
}
