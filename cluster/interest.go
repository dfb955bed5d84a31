package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reverbgo/reverb/pusher"
)

// Interest implements pusher.Broker: the node listens to a channel's bus
// channel while it has subscribers of it. Cache channels share one bus
// channel that every node listens to. It only queues: the subscription
// loop talks to Redis.
func (r *Redis) Interest(app *pusher.App, channel string, on bool) {
	bus, cache := r.busChannel(app, channel)
	if cache {
		return
	}
	r.imu.Lock()
	st := r.subs[bus]
	if on {
		if st == nil {
			st = &chanState{}
			r.subs[bus] = st
		}
		st.want = true
		st.outstanding++
	} else if st != nil {
		// Nobody here is subscribed any more, so nobody waits: the waits
		// still registered end at their timeout (as no-ops). They are not
		// run here, under the caller's registry lock.
		st.want, st.confirmed = false, false
		st.waiters = nil
		if st.outstanding == 0 && !st.base {
			// No confirmation to wait for: forget the channel now (else
			// onSubscribed does, when the last one arrives).
			delete(r.subs, bus)
		}
	}
	r.ops = append(r.ops, subOp{bus, on})
	r.imu.Unlock()
	r.wakeOps()
}

func (r *Redis) wakeOps() {
	select {
	case r.opWake <- struct{}{}:
	default:
	}
}

// interestLoop sends the queued subscription changes to Redis, in order,
// each run of subscribes (or unsubscribes) as one command.
func (r *Redis) interestLoop() {
	defer r.wg.Done()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.opWake:
		case <-retry.C:
		}
		r.imu.Lock()
		ops := r.ops
		r.ops = nil
		r.imu.Unlock()
		var failed []subOp
		for i := 0; i < len(ops); {
			j := i
			for j < len(ops) && ops[j].on == ops[i].on {
				j++
			}
			names := make([]string, 0, j-i)
			for _, op := range ops[i:j] {
				names = append(names, op.channel)
			}
			ctx, cancel := context.WithTimeout(r.ctx, r.cfg.PublishTimeout)
			var err error
			if ops[i].on {
				err = r.t.subscribe(ctx, names)
			} else {
				err = r.t.unsubscribe(ctx, names)
			}
			cancel()
			if err != nil && ops[i].on {
				// Redis Cluster could not say which shard owns a channel:
				// try again while it is still wanted. (The other modes keep
				// the channel and subscribe it on reconnection.)
				failed = append(failed, ops[i:j]...)
			}
			i = j
		}
		if len(failed) > 0 && r.ctx.Err() == nil {
			r.imu.Lock()
			var again []subOp
			for _, op := range failed {
				if st := r.subs[op.channel]; st != nil && st.want && !st.confirmed {
					again = append(again, op)
				}
			}
			r.ops = append(again, r.ops...)
			r.imu.Unlock()
			if len(again) > 0 {
				retry.Reset(time.Second)
			}
		}
	}
}

// onSubscribed implements receiver.
func (r *Redis) onSubscribed(channel string) {
	var fire []func()
	r.imu.Lock()
	if st := r.subs[channel]; st != nil {
		if st.outstanding > 0 {
			st.outstanding--
		}
		if st.outstanding == 0 {
			if st.want {
				st.confirmed = true
				fire, st.waiters = st.waiters, nil
			} else if !st.base {
				delete(r.subs, channel)
			}
		}
	}
	r.imu.Unlock()
	for _, f := range fire {
		f()
	}
}

// onAlive implements receiver: Redis answers. After an outage the node
// announces itself and everyone answers with their presence state (and it
// sends its own, since what it published meanwhile was dropped).
func (r *Redis) onAlive() {
	if !r.degraded.Load() || !r.degraded.CompareAndSwap(true, false) {
		return
	}
	if r.connected.Swap(true) {
		r.reconnects.Add(1)
		r.log.Warn("Redis reachable again: cluster delivery resumed",
			"after", time.Since(time.Unix(0, r.degradedSince.Load())).Round(time.Millisecond))
	} else {
		r.log.Info("Connected to Redis", "mode", r.cfg.Mode, "prefix", r.cfg.Channel)
		go r.awaitWarm()
	}
	// Give every known node a full node_timeout to answer our hello before
	// it may be declared dead: the silence was Redis's.
	r.mu.Lock()
	for id := range r.nodes {
		r.nodes[id] = time.Now()
	}
	r.mu.Unlock()
	r.sendControl(r.chCtl, &header{kind: kindHello}, nil)
	r.sendSync(r.chCtl)
	r.trackReconnected()
}

// onError implements receiver: Redis is unreachable. Subscriptions waiting
// for Redis are answered now (the node serves its own clients meanwhile).
func (r *Redis) onError(err error, lost bool) {
	switch {
	case !r.degraded.Load():
		r.log.Warn("Redis subscription failed", "err", err)
	case !r.connected.Load() && !r.toldUnreachable.Swap(true):
		// Degraded since the start, so setDegraded says nothing: say once
		// why the first connection fails (address, password, TLS, ...).
		r.log.Warn("Redis unreachable: serving local clients only until it is back", "err", err)
		r.closeWarm()
	}
	r.setDegraded(true)
	if lost {
		// The transport subscribes everything again on a new connection.
		r.imu.Lock()
		for ch, st := range r.subs {
			st.confirmed = false
			st.outstanding = 0
			if !st.want && !st.base {
				delete(r.subs, ch)
			}
		}
		r.imu.Unlock()
	}
	r.fireAll()
}

// fireAll completes every waiting subscription and barrier.
func (r *Redis) fireAll() {
	var fire []func()
	r.imu.Lock()
	for _, st := range r.subs {
		fire = append(fire, st.waiters...)
		st.waiters = nil
	}
	for id, w := range r.barriers {
		fire = append(fire, w.f)
		delete(r.barriers, id)
	}
	r.imu.Unlock()
	for _, f := range fire {
		f()
	}
}

// awaitTimeout bounds how long a subscription waits for the cluster.
func (r *Redis) awaitTimeout() time.Duration { return r.cfg.PublishTimeout + r.cfg.GatherTimeout }

// Await implements pusher.Broker. A channel is complete once its bus
// channel's subscription is confirmed. A cache channel is complete once a
// barrier this node publishes on the cache bus channel came back: Redis
// delivers in the order it executed the publishes, so every cache event
// acknowledged before has then been stored here. A presence channel also
// waits for a barrier on the control channel, published after this
// subscription's join: once it is back, the join was handed to every node
// (so a member joining anywhere afterwards sees this one) and every join
// published before it has been applied here.
func (r *Redis) Await(app *pusher.App, channel string, done func()) bool {
	if r.degraded.Load() {
		return true
	}
	bus, cache := r.busChannel(app, channel)
	kind, _ := pusher.Classify(channel)
	var conds []func(func()) bool
	if cache {
		conds = append(conds, func(f func()) bool { return r.barrier(r.chCache, f) })
	} else {
		conds = append(conds, func(f func()) bool { return r.awaitSubscribed(bus, f) })
	}
	if kind == pusher.KindPresence {
		conds = append(conds, func(f func()) bool { return r.barrier(r.chCtl, f) })
	}
	var left atomic.Int32
	left.Store(int32(len(conds)) + 1)
	once := onceFunc(done)
	step := func() {
		if left.Add(-1) == 0 {
			once()
		}
	}
	atOnce := true
	for _, c := range conds {
		if c(step) {
			step()
		} else {
			atOnce = false
		}
	}
	if atOnce {
		return true // every condition held at once; done is never called
	}
	// Some condition had to wait, even if it is met by now: the caller
	// must read the channel's state again, so done is called (maybe now).
	step()
	time.AfterFunc(r.awaitTimeout(), once)
	return false
}

// awaitSubscribed reports whether the bus channel's subscription is
// confirmed, or arranges for f to run when it is.
func (r *Redis) awaitSubscribed(bus string, f func()) bool {
	r.imu.Lock()
	defer r.imu.Unlock()
	st := r.subs[bus]
	if st == nil || st.confirmed || !st.want {
		return true
	}
	st.waiters = append(st.waiters, f)
	return false
}

// barrier publishes a marker for this node on a bus channel and arranges
// for f to run when it comes back (or when Redis is lost). It reports true,
// without calling f, when the marker could not be queued.
func (r *Redis) barrier(bus string, f func()) bool {
	id := newID()
	r.imu.Lock()
	r.barriers[id] = barrierWait{f: f, at: time.Now()}
	r.imu.Unlock()
	if !r.sendControl(bus, &header{kind: kindBarrier, to: r.nodeB, id: []byte(id)}, nil) {
		r.imu.Lock()
		_, mine := r.barriers[id]
		delete(r.barriers, id)
		r.imu.Unlock()
		return mine // else fireAll took f and calls it
	}
	return false
}

func (r *Redis) fireBarrier(id string) {
	r.imu.Lock()
	w, ok := r.barriers[id]
	delete(r.barriers, id)
	r.imu.Unlock()
	if ok {
		w.f()
	}
}

// barrierWait is a barrier on its way.
type barrierWait struct {
	f  func()
	at time.Time
}

// expireBarriers forgets barriers that never came back (their waits ended
// at their timeout).
func (r *Redis) expireBarriers(now time.Time) {
	r.imu.Lock()
	defer r.imu.Unlock()
	for id, w := range r.barriers {
		if now.Sub(w.at) > r.awaitTimeout() {
			delete(r.barriers, id)
		}
	}
}

// onceFunc wraps f so that only the first call runs it.
func onceFunc(f func()) func() {
	var once sync.Once
	return func() { once.Do(f) }
}
