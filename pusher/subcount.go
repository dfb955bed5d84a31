package pusher

import (
	"hash/maphash"
	"strconv"
	"sync"
	"time"

	"github.com/reverbgo/reverb/webhooks"
)

// Subscription counts (see the package documentation): every local
// subscribe and unsubscribe of a non-presence channel adds to the channel's
// cluster-wide counter through Tracker.Count, at most one call in flight per
// channel on this node; the totals go to the other nodes (PublishCount) and
// to this node's subscribers, at most one every countWindow on channels of
// more than countBusy subscribers.
const (
	// countBusy is the cluster-wide subscription count above which a
	// channel's counts are sent at most once per window (Pusher's rule).
	countBusy = 100
	// defaultCountWindow is that window (Pusher's 5 s).
	defaultCountWindow = 5 * time.Second
	// countRetry is how long a Count may go unanswered (the tracker skips
	// it when its store is down) before the deltas waiting behind it are
	// sent with a new one.
	countRetry = 10 * time.Second
)

// countTable is the node's subscription count state, per channel.
//
// Concurrency: goroutine-safe, with no process-wide lock. The channels are
// split into stripes (as many as the hub's: hubStripes) by a hash of app
// and name; each stripe has its own lock and
// map. Under a stripe lock only the count state is read and changed (and
// timers armed): the Tracker's Count, deliveries of
// pusher_internal:subscription_count and webhooks are decided under it and
// made after it is released. Sends (deliveries and webhooks) take a ticket
// of the stripe's sequencer under the lock and run in its turn, so that two
// totals reach the shards (and the webhook sink) in the order they were
// applied. Count calls need no order (one is in flight per channel, the
// totals carry their seq) and are made right after the lock is released.
// Lock order: a stripe lock, then nothing; a send's turn is waited for
// without any lock held. Tracker callbacks come from other goroutines.
type countTable struct {
	seed    maphash.Seed
	mask    uint64
	stripes []countStripe
}

// countStripe is one part of the count table; m is guarded by mu.
type countStripe struct {
	mu  sync.Mutex
	m   map[localKey]*countState
	seq sequencer
	_   [64]byte // keeps the next stripe's lock off this cache line
}

func (t *countTable) init() {
	n := hubStripes()
	t.seed = maphash.MakeSeed()
	t.mask = uint64(n - 1)
	t.stripes = make([]countStripe, n)
	for i := range t.stripes {
		cs := &t.stripes[i]
		cs.m = make(map[localKey]*countState)
		cs.seq.cond.L = &cs.seq.mu
	}
}

func (t *countTable) stripeOf(k localKey) *countStripe {
	x := maphash.String(t.seed, k.name)
	if k.app != nil {
		x ^= maphash.String(t.seed, k.app.ID) * 0x9e3779b97f4a7c15
	}
	return &t.stripes[x&t.mask]
}

// countState is one channel's count on this node: the coalescing of its
// own changes and the last total applied.
type countState struct {
	local    int64 // this node's counted subscriptions
	inflight bool  // a Count is in flight
	gen      uint64
	pending  int64       // deltas waiting for the one in flight
	retry    *time.Timer // gives up on an unanswered Count

	have  bool // a total was applied
	seq   uint64
	total int64

	msgs  throttle // pusher_internal:subscription_count to this node's subscribers
	hooks throttle // the subscription_count webhook (this node's own counts)
}

// throttle holds back a channel's counts to one per window once it has more
// than countBusy subscribers, sending the last value at the end of the
// window.
type throttle struct {
	last  time.Time   // when a count was last sent
	timer *time.Timer // the trailing send, when one waits
	gen   uint64
	total int64 // the value the trailing send carries
}

// counting reports whether an app's subscription counts are kept: for
// subscribers (App.SubscriptionCounting) or for the subscription_count
// webhook.
func (srv *Server) counting(app *App) bool {
	return app.SubscriptionCounting || srv.hookEnabled(app, webhooks.SubscriptionCount)
}

// addCount adds a local subscription change of a non-presence channel to
// its cluster-wide count. Goroutine-safe.
func (srv *Server) addCount(app *App, channel string, delta int64) {
	if !srv.counting(app) {
		return
	}
	k := localKey{app, channel}
	cs := srv.counts.stripeOf(k)
	cs.mu.Lock()
	st := cs.m[k]
	if st == nil {
		st = &countState{}
		cs.m[k] = st
	}
	st.local += delta
	if st.inflight {
		st.pending += delta
		if st.retry == nil {
			gen := st.gen
			st.retry = time.AfterFunc(countRetry, func() { srv.retryCount(k, gen) })
		}
		cs.mu.Unlock()
		return
	}
	gen := startCountLocked(st)
	cs.mu.Unlock()
	srv.sendCount(k, gen, delta)
}

// startCountLocked marks a Count in flight for the channel and returns its
// generation. The stripe lock is held; the caller then calls sendCount.
func startCountLocked(st *countState) uint64 {
	st.inflight = true
	st.gen++
	return st.gen
}

// sendCount makes the Count of generation gen. No lock is held.
func (srv *Server) sendCount(k localKey, gen uint64, delta int64) {
	srv.tracker.Count(k.app, keyCount(k.name), delta, func(total int64, seq uint64) {
		srv.countReturned(k, gen)
		srv.counted(k.app, k.name, total, seq)
	})
}

// countReturned sends the deltas that waited for the Count of generation
// gen, or ends the channel's Count in flight.
func (srv *Server) countReturned(k localKey, gen uint64) {
	cs := srv.counts.stripeOf(k)
	cs.mu.Lock()
	st := cs.m[k]
	if st == nil || !st.inflight || st.gen != gen {
		cs.mu.Unlock()
		return // given up on (retryCount): a newer one is in flight
	}
	if st.retry != nil {
		st.retry.Stop()
		st.retry = nil
	}
	st.inflight = false
	if st.pending != 0 {
		d := st.pending
		st.pending = 0
		next := startCountLocked(st)
		cs.mu.Unlock()
		srv.sendCount(k, next, d)
		return
	}
	cs.countIdleLocked(k, st)
	cs.mu.Unlock()
}

// retryCount gives up on a Count that was not answered: the deltas that
// wait behind it go with a new one.
func (srv *Server) retryCount(k localKey, gen uint64) {
	cs := srv.counts.stripeOf(k)
	cs.mu.Lock()
	st := cs.m[k]
	if st == nil || !st.inflight || st.gen != gen {
		cs.mu.Unlock()
		return
	}
	st.retry = nil
	d := st.pending
	st.pending = 0
	next := startCountLocked(st)
	cs.mu.Unlock()
	srv.sendCount(k, next, d)
}

// countIdleLocked forgets a channel's state once nothing refers to it.
func (cs *countStripe) countIdleLocked(k localKey, st *countState) {
	if st.local == 0 && !st.inflight && st.pending == 0 && st.msgs.timer == nil && st.hooks.timer == nil {
		delete(cs.m, k)
	}
}

// counted announces a channel's new cluster-wide total that a Count of
// this node produced (or that the tracker reported for a dead node): to the
// other nodes, to this node's subscribers and to the subscription_count
// webhook. Goroutine-safe.
func (srv *Server) counted(app *App, channel string, total int64, seq uint64) {
	if kind, _ := Classify(channel); kind == KindPresence {
		return
	}
	srv.broker.PublishCount(app, channel, total, seq)
	srv.applyCount(app, channel, total, seq)
	if !srv.hookEnabled(app, webhooks.SubscriptionCount) {
		return
	}
	k := localKey{app, channel}
	cs := srv.counts.stripeOf(k)
	cs.mu.Lock()
	st := cs.m[k]
	if st == nil {
		st = &countState{}
		cs.m[k] = st
	}
	send := func(n int64) {
		srv.emit(app, webhooks.Event{Name: webhooks.SubscriptionCount, Channel: channel, SubscriptionCount: int(max(n, 0))})
	}
	n, now := srv.throttleLocked(cs, k, st, &st.hooks, total, send)
	var ticket uint64
	if now {
		ticket = cs.seq.take()
	}
	cs.countIdleLocked(k, st)
	cs.mu.Unlock()
	if now {
		cs.inTurn(ticket, func() { send(n) })
	}
}

// inTurn runs f in the turn of ticket (taken under cs.mu, now released).
func (cs *countStripe) inTurn(ticket uint64, f func()) {
	cs.seq.wait(ticket)
	defer cs.seq.done()
	f()
}

// DeliverCount implements Node: it applies a channel's cluster-wide
// subscription count that a node published. A total whose seq is not
// larger than the last applied one of the channel is ignored. With
// App.SubscriptionCounting, this node's subscribers of the channel get
// pusher_internal:subscription_count (at most one per 5 s on channels of
// more than 100 subscribers, the last value at the end of the 5 s). Counts
// of channels without subscribers on this node are ignored. Goroutine-safe.
func (srv *Server) DeliverCount(app *App, channel string, total int64, seq uint64) {
	srv.applyCount(app, channel, total, seq)
}

func (srv *Server) applyCount(app *App, channel string, total int64, seq uint64) {
	if app == nil || !app.SubscriptionCounting {
		return
	}
	if kind, _ := Classify(channel); kind == KindPresence {
		return
	}
	k := localKey{app, channel}
	cs := srv.counts.stripeOf(k)
	cs.mu.Lock()
	st := cs.m[k]
	if st == nil || (st.have && seq <= st.seq) {
		cs.mu.Unlock()
		return
	}
	st.have, st.seq, st.total = true, seq, total
	send := func(n int64) {
		srv.countsSent.Add(1)
		srv.deliver(app, channel, countJSON(channel, n), "", false, 0)
	}
	n, now := srv.throttleLocked(cs, k, st, &st.msgs, total, send)
	if !now {
		cs.mu.Unlock()
		return
	}
	// Delivered in the turn taken under the lock, so that two totals reach
	// the shards in the order they were applied.
	ticket := cs.seq.take()
	cs.mu.Unlock()
	cs.inTurn(ticket, func() { send(n) })
}

// throttleLocked decides whether total goes now (then it returns it and
// true: the caller sends it in a turn of the stripe's sequencer, taken
// before releasing the lock) or, on a busy channel within the window of
// the last send, at the window's end (the latest total then), when a timer
// calls send in its own turn. cs.mu is held.
func (srv *Server) throttleLocked(cs *countStripe, k localKey, st *countState, th *throttle, total int64, send func(int64)) (int64, bool) {
	now := srv.opts.Now()
	if total <= countBusy {
		if th.timer != nil {
			th.timer.Stop()
			th.timer = nil
		}
		th.last = now
		return total, true
	}
	th.total = total
	if th.timer != nil {
		return 0, false // the trailing send carries it
	}
	if since := now.Sub(th.last); since >= srv.countWindow || since < 0 {
		th.last = now
		return total, true
	}
	th.gen++
	gen := th.gen
	th.timer = time.AfterFunc(srv.countWindow-now.Sub(th.last), func() {
		cs.mu.Lock()
		if cs.m[k] != st || th.gen != gen || th.timer == nil {
			cs.mu.Unlock()
			return
		}
		th.timer = nil
		th.last = srv.opts.Now()
		n := th.total
		ticket := cs.seq.take()
		cs.countIdleLocked(k, st)
		cs.mu.Unlock()
		cs.inTurn(ticket, func() { send(n) })
	})
	return 0, false
}

// knownCount returns the last total applied for a channel, if any.
func (srv *Server) knownCount(app *App, channel string) (int64, bool) {
	k := localKey{app, channel}
	cs := srv.counts.stripeOf(k)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	st := cs.m[k]
	if st == nil || !st.have {
		return 0, false
	}
	return st.total, true
}

// countJSON encodes
// {"event":"pusher_internal:subscription_count","channel":C,"data":"{\"subscription_count\":N}"}.
func countJSON(channel string, total int64) []byte {
	b := make([]byte, 0, 96+len(channel))
	b = append(b, `{"event":"pusher_internal:subscription_count","channel":`...)
	b = appendJSONString(b, channel)
	b = append(b, `,"data":"{\"subscription_count\":`...)
	b = strconv.AppendInt(b, max(total, 0), 10)
	return append(b, `}"}`...)
}
