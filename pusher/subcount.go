package pusher

import (
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
type countTable struct {
	mu sync.Mutex
	m  map[localKey]*countState
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
	t := &srv.counts
	t.mu.Lock()
	defer t.mu.Unlock()
	k := localKey{app, channel}
	st := t.m[k]
	if st == nil {
		st = &countState{}
		t.m[k] = st
	}
	st.local += delta
	if st.inflight {
		st.pending += delta
		if st.retry == nil {
			gen := st.gen
			st.retry = time.AfterFunc(countRetry, func() { srv.retryCount(k, gen) })
		}
		return
	}
	srv.sendCountLocked(k, st, delta)
}

// sendCountLocked starts a Count of delta for the channel. t.mu is held.
func (srv *Server) sendCountLocked(k localKey, st *countState, delta int64) {
	st.inflight = true
	st.gen++
	gen := st.gen
	srv.tracker.Count(k.app, keyCount(k.name), delta, func(total int64, seq uint64) {
		srv.countReturned(k, gen)
		srv.counted(k.app, k.name, total, seq)
	})
}

// countReturned sends the deltas that waited for the Count of generation
// gen, or ends the channel's Count in flight.
func (srv *Server) countReturned(k localKey, gen uint64) {
	t := &srv.counts
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.m[k]
	if st == nil || !st.inflight || st.gen != gen {
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
		srv.sendCountLocked(k, st, d)
		return
	}
	srv.countIdleLocked(k, st)
}

// retryCount gives up on a Count that was not answered: the deltas that
// wait behind it go with a new one.
func (srv *Server) retryCount(k localKey, gen uint64) {
	t := &srv.counts
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.m[k]
	if st == nil || !st.inflight || st.gen != gen {
		return
	}
	st.retry = nil
	d := st.pending
	st.pending = 0
	srv.sendCountLocked(k, st, d)
}

// countIdleLocked forgets a channel's state once nothing refers to it.
func (srv *Server) countIdleLocked(k localKey, st *countState) {
	if st.local == 0 && !st.inflight && st.pending == 0 && st.msgs.timer == nil && st.hooks.timer == nil {
		delete(srv.counts.m, k)
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
	t := &srv.counts
	t.mu.Lock()
	defer t.mu.Unlock()
	k := localKey{app, channel}
	st := t.m[k]
	if st == nil {
		st = &countState{}
		t.m[k] = st
	}
	srv.throttleLocked(k, st, &st.hooks, total, func(n int64) {
		srv.emit(app, webhooks.Event{Name: webhooks.SubscriptionCount, Channel: channel, SubscriptionCount: int(max(n, 0))})
	})
	srv.countIdleLocked(k, st)
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
	t := &srv.counts
	t.mu.Lock()
	defer t.mu.Unlock()
	k := localKey{app, channel}
	st := t.m[k]
	if st == nil || (st.have && seq <= st.seq) {
		return
	}
	st.have, st.seq, st.total = true, seq, total
	// Delivered under t.mu, so that two totals reach the shards in the
	// order they were applied.
	srv.throttleLocked(k, st, &st.msgs, total, func(n int64) {
		srv.countsSent.Add(1)
		srv.deliver(app, channel, countJSON(channel, n), "", false)
	})
}

// throttleLocked sends total now or, on a busy channel within the window
// of the last send, at the window's end (the latest total then). send is
// called with t.mu held. t.mu is held.
func (srv *Server) throttleLocked(k localKey, st *countState, th *throttle, total int64, send func(int64)) {
	now := srv.opts.Now()
	if total <= countBusy {
		if th.timer != nil {
			th.timer.Stop()
			th.timer = nil
		}
		th.last = now
		send(total)
		return
	}
	th.total = total
	if th.timer != nil {
		return // the trailing send carries it
	}
	if since := now.Sub(th.last); since >= srv.countWindow || since < 0 {
		th.last = now
		send(total)
		return
	}
	th.gen++
	gen := th.gen
	th.timer = time.AfterFunc(srv.countWindow-now.Sub(th.last), func() {
		t := &srv.counts
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.m[k] != st || th.gen != gen || th.timer == nil {
			return
		}
		th.timer = nil
		th.last = srv.opts.Now()
		send(th.total)
		srv.countIdleLocked(k, st)
	})
}

// knownCount returns the last total applied for a channel, if any.
func (srv *Server) knownCount(app *App, channel string) (int64, bool) {
	t := &srv.counts
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.m[localKey{app, channel}]
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
