package cluster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
)

// memBus is an in-memory pub/sub bus shared by the transports of several
// brokers, with the ordering Redis gives: a publish delivers each message,
// in order, to every transport subscribed to its channel at that moment
// (the publisher included), and a subscription is confirmed after the
// messages already queued for that transport.
type memBus struct {
	mu   sync.Mutex
	subs map[string]map[*memTransport]bool // bus channel → transports listening
}

func newMemBus() *memBus {
	return &memBus{subs: make(map[string]map[*memTransport]bool)}
}

// errBusClosed is what a closed memTransport answers.
var errBusClosed = errors.New("membus: transport closed")

// memTransport is one node's connection to a memBus. It implements
// transport and delivers to its receiver from its own goroutine, in FIFO
// order, from an unbounded queue.
type memTransport struct {
	bus *memBus

	// Guarded by bus.mu.
	channels  map[string]bool // subscribed by the node (kept while disconnected, like go-redis)
	connected bool
	closed    bool
	failPub   error                                            // publishes fail with it while set
	gate      chan struct{}                                    // publishes wait for it to close while set
	blocked   int                                              // publishes waiting at the gate
	hold      bool                                             // subscription changes wait for releaseSubscribes
	held      []heldOp                                         // subscription changes held back, in order
	drop      func(channel string, h header, body []byte) bool // envelopes lost on the way to this node

	// Guarded by qmu.
	qmu     sync.Mutex
	queue   []busItem
	paused  bool
	busy    bool           // an item is being delivered
	sent    map[kind]int   // envelopes queued for this node, by kind
	got     map[kind]int   // onMessage calls, by envelope kind
	gotChan map[string]int // onMessage calls, by bus channel
	dropped int            // envelopes the drop filter removed
	r       receiver

	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	started bool
}

type heldOp struct {
	channels []string
	on       bool
}

// busItem is one thing a transport delivers to its receiver.
type busItem struct {
	op      byte // 'm' message, 's' subscribed, 'e' error, 'a' alive
	channel string
	payload []byte
	lost    bool // 'e': the connection was lost (else it went silent: delivery pauses)
}

func (b *memBus) transport() *memTransport {
	return &memTransport{
		bus:       b,
		channels:  make(map[string]bool),
		connected: true,
		sent:      make(map[kind]int),
		got:       make(map[kind]int),
		gotChan:   make(map[string]int),
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		stopped:   make(chan struct{}),
	}
}

// inject publishes raw payloads as a client outside the cluster would.
func (b *memBus) inject(channel string, payloads ...[]byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range payloads {
		b.deliverLocked(channel, p)
	}
}

func (b *memBus) deliverLocked(channel string, payload []byte) {
	for t := range b.subs[channel] {
		t.enqueueMessage(channel, payload)
	}
}

func (t *memTransport) publish(ctx context.Context, msgs []outMsg) error {
	b := t.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	for t.gate != nil {
		gate := t.gate
		t.blocked++
		b.mu.Unlock()
		var err error
		select {
		case <-gate:
		case <-ctx.Done():
			err = ctx.Err()
		}
		b.mu.Lock()
		t.blocked--
		if err != nil {
			return err
		}
	}
	if t.closed {
		return errBusClosed
	}
	if t.failPub != nil {
		return t.failPub
	}
	for _, m := range msgs {
		b.deliverLocked(m.channel, m.payload)
	}
	return nil
}

func (t *memTransport) subscribe(_ context.Context, channels []string) error {
	t.bus.mu.Lock()
	defer t.bus.mu.Unlock()
	return t.changeLocked(channels, true)
}

func (t *memTransport) unsubscribe(_ context.Context, channels []string) error {
	t.bus.mu.Lock()
	defer t.bus.mu.Unlock()
	return t.changeLocked(channels, false)
}

func (t *memTransport) changeLocked(channels []string, on bool) error {
	if t.closed {
		return errBusClosed
	}
	if t.hold {
		t.held = append(t.held, heldOp{slices.Clone(channels), on})
		return nil
	}
	for _, ch := range channels {
		if on {
			t.channels[ch] = true
			if t.connected {
				t.listenLocked(ch)
			}
		} else {
			delete(t.channels, ch)
			delete(t.bus.subs[ch], t)
		}
	}
	return nil
}

// listenLocked adds the transport to a channel's listeners and queues the
// confirmation. Called with bus.mu held.
func (t *memTransport) listenLocked(ch string) {
	set := t.bus.subs[ch]
	if set == nil {
		set = make(map[*memTransport]bool)
		t.bus.subs[ch] = set
	}
	set[t] = true
	t.enqueue(busItem{op: 's', channel: ch})
}

func (t *memTransport) start(r receiver) {
	t.qmu.Lock()
	t.r = r
	t.started = true
	t.qmu.Unlock()
	go t.run()
	t.signal()
}

func (t *memTransport) close() error {
	t.bus.mu.Lock()
	if t.closed {
		t.bus.mu.Unlock()
		return nil
	}
	t.closed = true
	for ch := range t.channels {
		delete(t.bus.subs[ch], t)
	}
	t.bus.mu.Unlock()
	close(t.stop)
	t.qmu.Lock()
	started := t.started
	t.qmu.Unlock()
	if started {
		<-t.stopped
	}
	return nil
}

func (t *memTransport) enqueueMessage(channel string, payload []byte) {
	h, body, err := decodeHeader(payload, 0)
	if err == nil && t.drop != nil && t.drop(channel, h, body) {
		t.qmu.Lock()
		t.dropped++
		t.qmu.Unlock()
		return
	}
	t.qmu.Lock()
	if err == nil {
		t.sent[h.kind]++
	}
	t.qmu.Unlock()
	t.enqueue(busItem{op: 'm', channel: channel, payload: payload})
}

func (t *memTransport) enqueue(it busItem) {
	t.qmu.Lock()
	t.queue = append(t.queue, it)
	t.qmu.Unlock()
	t.signal()
}

func (t *memTransport) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// run delivers the queue to the receiver, one item at a time.
func (t *memTransport) run() {
	defer close(t.stopped)
	for {
		select {
		case <-t.stop:
			return
		default:
		}
		t.qmu.Lock()
		if t.paused || len(t.queue) == 0 {
			t.busy = false
			t.qmu.Unlock()
			select {
			case <-t.stop:
				return
			case <-t.wake:
			}
			continue
		}
		it := t.queue[0]
		t.queue[0] = busItem{}
		t.queue = t.queue[1:]
		t.busy = true
		r := t.r
		if it.op == 'm' {
			t.gotChan[it.channel]++
			if len(it.payload) > 2 {
				t.got[kind(it.payload[2])]++
			}
		}
		t.qmu.Unlock()
		switch it.op {
		case 'm':
			r.onAlive()
			r.onMessage(it.channel, it.payload)
		case 's':
			r.onAlive()
			r.onSubscribed(it.channel)
		case 'e':
			if it.lost {
				r.onError(errors.New("membus: connection lost"), true)
			} else {
				r.onError(errors.New("membus: no answer"), false)
				t.qmu.Lock()
				t.paused = true
				t.qmu.Unlock()
			}
		case 'a':
			r.onAlive()
		}
	}
}

// Failure injection and observation.

// failPublishes makes publishes fail with err (nil: succeed again).
func (t *memTransport) failPublishes(err error) {
	t.bus.mu.Lock()
	t.failPub = err
	t.bus.mu.Unlock()
}

// blockPublishes makes publishes wait until release is called.
func (t *memTransport) blockPublishes() (release func()) {
	t.bus.mu.Lock()
	defer t.bus.mu.Unlock()
	gate := make(chan struct{})
	t.gate = gate
	var once sync.Once
	return func() {
		once.Do(func() {
			t.bus.mu.Lock()
			if t.gate == gate {
				t.gate = nil
			}
			t.bus.mu.Unlock()
			close(gate)
		})
	}
}

// blockedPublishes is how many publishes wait at the gate.
func (t *memTransport) blockedPublishes() int {
	t.bus.mu.Lock()
	defer t.bus.mu.Unlock()
	return t.blocked
}

// disconnect loses the subscription connection: the receiver gets
// onError(err, true) and nothing more until reconnect.
func (t *memTransport) disconnect() {
	t.bus.mu.Lock()
	defer t.bus.mu.Unlock()
	t.connected = false
	for ch := range t.channels {
		delete(t.bus.subs[ch], t)
	}
	t.enqueue(busItem{op: 'e', lost: true})
}

// reconnect subscribes the connection's channels again and confirms them,
// as go-redis does after a reconnection.
func (t *memTransport) reconnect() {
	t.bus.mu.Lock()
	defer t.bus.mu.Unlock()
	t.connected = true
	for ch := range t.channels {
		t.listenLocked(ch)
	}
}

// silence makes the connection go quiet: the receiver gets onError(err,
// false) and nothing more (messages wait) until resume.
func (t *memTransport) silence() { t.enqueue(busItem{op: 'e'}) }

// pause holds delivery back (messages wait) until resume.
func (t *memTransport) pause() {
	t.qmu.Lock()
	t.paused = true
	t.qmu.Unlock()
}

// resume delivers again, starting with onAlive.
func (t *memTransport) resume() {
	t.qmu.Lock()
	t.paused = false
	t.queue = append([]busItem{{op: 'a'}}, t.queue...)
	t.qmu.Unlock()
	t.signal()
}

// pong makes the receiver hear from the connection (what a PING's answer
// does for the Redis transport).
func (t *memTransport) pong() { t.enqueue(busItem{op: 'a'}) }

// dropIf loses the envelopes for which f is true on the way to this node
// (nil: none).
func (t *memTransport) dropIf(f func(channel string, h header, body []byte) bool) {
	t.bus.mu.Lock()
	t.drop = f
	t.bus.mu.Unlock()
}

// dropKinds loses every envelope of these kinds on the way to this node.
func (t *memTransport) dropKinds(kinds ...kind) {
	t.dropIf(func(_ string, h header, _ []byte) bool { return slices.Contains(kinds, h.kind) })
}

// holdSubscribes keeps subscription changes back until releaseSubscribes.
func (t *memTransport) holdSubscribes() {
	t.bus.mu.Lock()
	t.hold = true
	t.bus.mu.Unlock()
}

func (t *memTransport) releaseSubscribes() {
	t.bus.mu.Lock()
	defer t.bus.mu.Unlock()
	t.hold = false
	for _, op := range t.held {
		_ = t.changeLocked(op.channels, op.on)
	}
	t.held = nil
}

// heldSubscribes is how many subscription changes are held back.
func (t *memTransport) heldSubscribes() int {
	t.bus.mu.Lock()
	defer t.bus.mu.Unlock()
	return len(t.held)
}

// listening reports whether the bus delivers channel's messages to t now.
func (t *memTransport) listening(channel string) bool {
	t.bus.mu.Lock()
	defer t.bus.mu.Unlock()
	return t.bus.subs[channel][t]
}

// idle reports whether everything queued for t has been delivered.
func (t *memTransport) idle() bool {
	t.qmu.Lock()
	defer t.qmu.Unlock()
	return len(t.queue) == 0 && !t.busy
}

// received is how many envelopes of kind k reached the receiver.
func (t *memTransport) received(k kind) int {
	t.qmu.Lock()
	defer t.qmu.Unlock()
	return t.got[k]
}

// queued is how many envelopes of kind k were queued for the receiver
// (delivered or not).
func (t *memTransport) queued(k kind) int {
	t.qmu.Lock()
	defer t.qmu.Unlock()
	return t.sent[k]
}

// receivedOn is how many envelopes of a bus channel reached the receiver.
func (t *memTransport) receivedOn(channel string) int {
	t.qmu.Lock()
	defer t.qmu.Unlock()
	return t.gotChan[channel]
}

// droppedCount is how many envelopes the drop filter removed.
func (t *memTransport) droppedCount() int {
	t.qmu.Lock()
	defer t.qmu.Unlock()
	return t.dropped
}

var _ transport = (*memTransport)(nil)

// recorder is a receiver that lists what it is told.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.got = append(r.got, s)
	r.mu.Unlock()
}

func (r *recorder) onMessage(channel string, payload []byte) { r.add(channel + " " + string(payload)) }
func (r *recorder) onSubscribed(channel string)              { r.add("subscribed " + channel) }
func (r *recorder) onError(_ error, lost bool) {
	if lost {
		r.add("lost")
	} else {
		r.add("silent")
	}
}
func (r *recorder) onAlive() {}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// The bus itself: publishes reach the transports listening at that moment,
// the publisher included, and a confirmation follows what was queued
// before it.
func TestMemBusOrdering(t *testing.T) {
	bus := newMemBus()
	t1, t2 := bus.transport(), bus.transport()
	r1, r2 := &recorder{}, &recorder{}
	t1.start(r1)
	t2.start(r2)
	defer t1.close()
	defer t2.close()
	ctx := t.Context()
	msg := func(s string) outMsg { return outMsg{channel: "a", payload: []byte(s)} }
	_ = t1.subscribe(ctx, []string{"a"})
	_ = t2.subscribe(ctx, []string{"b"})
	t1.pause()
	_ = t2.publish(ctx, []outMsg{msg("1"), msg("2")})
	_ = t1.subscribe(ctx, []string{"c"})
	_ = t1.publish(ctx, []outMsg{msg("3")})
	_ = t2.subscribe(ctx, []string{"a"})
	_ = t2.publish(ctx, []outMsg{msg("4")})
	_ = t2.unsubscribe(ctx, []string{"a"})
	_ = t2.publish(ctx, []outMsg{msg("5")})
	t1.disconnect()
	_ = t2.publish(ctx, []outMsg{msg("lost while disconnected")})
	t1.reconnect()
	t1.resume()
	want1 := []string{"subscribed a", "a 1", "a 2", "subscribed c", "a 3", "a 4", "a 5", "lost", "subscribed a", "subscribed c"}
	want2 := []string{"subscribed b", "subscribed a", "a 4"}
	waitUntil(t, "both transports deliver everything", func() bool { return t1.idle() && t2.idle() })
	got1 := r1.list()
	// The reconnection confirms the channels in any order.
	if len(got1) == len(want1) {
		slices.Sort(got1[8:])
	}
	if !slices.Equal(got1, want1) {
		t.Errorf("transport 1 got %q, want %q", got1, want1)
	}
	if got2 := r2.list(); !slices.Equal(got2, want2) {
		t.Errorf("transport 2 got %q, want %q", got2, want2)
	}
}
