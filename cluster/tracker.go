package cluster

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/reverbgo/reverb/pusher"
)

// The tracker (pusher.Tracker) keeps its state in Redis; see doc.go for
// the keys, the scripts and the guarantees. Its operations wait in a
// bounded queue and leave in one pipeline per round trip, sent by one
// goroutine, so that the operations of a key reach Redis (one slot, one
// connection) in the order they were called and their answers are handled
// in that order.

// Tracker scripts. Each touches the keys of one tracked key only (one hash
// slot in Redis Cluster).
var (
	// hold KEYS h, v; ARGV node. 1: the key became held; 0: it was held
	// already, or a release waiting out its delay was cancelled.
	scriptHold = redis.NewScript(`
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 and redis.call('SCARD', KEYS[1]) == 1 then
	if redis.call('DEL', KEYS[2]) == 1 then return 0 end
	return 1
end
return 0`)
	// release KEYS h, v; ARGV node, token, delay ms, marker ttl ms. 1: the
	// key is held nowhere now; 2: held nowhere, the release waits (marker
	// set); 0: the node did not hold it, or others still do.
	scriptRelease = redis.NewScript(`
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('SCARD', KEYS[1]) > 0 then return 0 end
if tonumber(ARGV[3]) > 0 then
	redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
	return 2
end
return 1`)
	// confirm KEYS h, v; ARGV token. 1: the waiting release with this token
	// was neither cancelled nor superseded: the key is released.
	scriptConfirm = redis.NewScript(`
if redis.call('SCARD', KEYS[1]) == 0 and redis.call('GET', KEYS[2]) == ARGV[1] then
	redis.call('DEL', KEYS[2])
	return 1
end
return 0`)
	// count KEYS c, s; ARGV node, the node's absolute count. Returns the
	// total, a seq (larger than every earlier one of the key: at least
	// Redis's clock in µs) and whether the node's share changed.
	scriptCount = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
local new = ARGV[2]
if new == '0' then
	new = false
	redis.call('HDEL', KEYS[1], ARGV[1])
else
	redis.call('HSET', KEYS[1], ARGV[1], new)
end
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end
local t = redis.call('TIME')
local seq = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last >= seq then seq = last + 1 end
redis.call('SET', KEYS[2], string.format('%.0f', seq))
if total == 0 then redis.call('PEXPIRE', KEYS[2], 3600000) end
local changed = 0
if old ~= new then changed = 1 end
return {total, seq, changed}`)
	trackScripts = []*redis.Script{scriptHold, scriptRelease, scriptConfirm, scriptCount}
)

// trackKind is a tracker operation's type.
type trackKind uint8

const (
	opHold     trackKind = iota // Tracker.Hold
	opRelease                   // Tracker.Release
	opConfirm                   // a release's delay passed
	opCount                     // Tracker.Count, or a re-asserted count (no callback)
	opHolding                   // Tracker.Holding
	opAssert                    // re-assert a hold of this node (no answer)
	opDrop                      // forget a hold Redis has and this node does not (no answer)
	opSync                      // read this node's holds and counts in Redis, to re-assert
	opRegister                  // heartbeat in the node registry, and read it
)

// trackOp is one queued tracker operation.
type trackOp struct {
	kind    trackKind
	app     *pusher.App
	key     string // the engine's key
	tk      string // tracked id: trackID(app, key)
	tks     []string
	abs     int64           // opCount: this node's absolute count
	rel     *pendingRelease // opRelease, opConfirm
	cancels *pendingRelease // opHold: the release of the key a hold cancels
	hold    func(bool)
	count   func(int64, uint64)
	holding func([]bool)
	failed  bool // refused (queue full): answered as if Redis were down

	script *redis.Cmd    // the script call, or nil
	cmds   []redis.Cmder // the other commands
}

// pendingRelease is a Release of this node not answered yet.
type pendingRelease struct {
	app      *pusher.App
	key, tk  string
	token    string
	delay    time.Duration
	deadline time.Time
	cb       func(bool)
	timer    *time.Timer
	done     bool // answered (or cancelled)
}

// tracker is the broker's pusher.Tracker state.
type tracker struct {
	mu         sync.Mutex
	q          []*trackOp
	held       map[string]struct{}        // tracked ids this node holds
	counts     map[string]int64           // this node's absolute counts, by tracked id
	rels       map[string]*pendingRelease // releases that a hold may cancel, by tracked id
	reassert   bool                       // this node's state must be asserted again
	registered bool                       // the registry has had this node
	stopped    bool
	reaping    map[string]bool // nodes this node is reaping now
	reapWG     sync.WaitGroup

	wake chan struct{}
	done chan struct{}

	ops, errors, reaped atomic.Int64
	aliveSince          atomic.Int64 // unix ns: Redis answers since
	loaded              atomic.Bool  // the scripts are loaded (as far as we know)
}

func (t *tracker) init() {
	t.held = make(map[string]struct{})
	t.counts = make(map[string]int64)
	t.rels = make(map[string]*pendingRelease)
	t.reaping = make(map[string]bool)
	t.wake = make(chan struct{}, 1)
	t.done = make(chan struct{})
}

// trackID is a tracked key's id: the app id's length, ':', the app id and
// the key, so that no two apps' keys meet.
func trackID(app *pusher.App, key string) string {
	return strconv.Itoa(len(app.ID)) + ":" + app.ID + key
}

// parseTrackID splits a tracked id into app id and key.
func parseTrackID(tk string) (appID, key string, ok bool) {
	i := strings.IndexByte(tk, ':')
	if i <= 0 {
		return "", "", false
	}
	n, err := strconv.Atoi(tk[:i])
	if err != nil || n < 0 || n > len(tk)-i-1 {
		return "", "", false
	}
	return tk[i+1 : i+1+n], tk[i+1+n:], true
}

// tkey is a Redis key of a tracked key; the braces make its hash tag, the
// same for every suffix (the tag ends at the first '}' after the first
// '{', which is at the same place in each).
func (r *Redis) tkey(tk, suffix string) string { return r.cfg.Channel + ":t:{" + tk + "}:" + suffix }

// nkey is a Redis key of a node's tracker state.
func (r *Redis) nkey(node, suffix string) string {
	return r.cfg.Channel + ":t:node:{" + node + "}:" + suffix
}

func (r *Redis) registryKey() string         { return r.cfg.Channel + ":t:nodes" }
func (r *Redis) reapLock(node string) string { return r.cfg.Channel + ":t:reap:" + node }

// markerTTL is how long a waiting release's marker lives: past the delay,
// long enough for a survivor to confirm it after this node died.
func (r *Redis) markerTTL(delay time.Duration) time.Duration {
	return delay + r.cfg.NodeTimeout + 2*r.cfg.HeartbeatInterval + 10*time.Second
}

func pendValue(deadline time.Time, token string) string {
	return strconv.FormatInt(deadline.UnixMilli(), 10) + ":" + token
}

func parsePend(v string) (deadline time.Time, token string, ok bool) {
	ms, token, ok := strings.Cut(v, ":")
	if !ok {
		return time.Time{}, "", false
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}, "", false
	}
	return time.UnixMilli(n), token, true
}

var _ pusher.Tracker = (*Redis)(nil)

// Hold implements pusher.Tracker. Goroutine-safe; it only queues.
func (r *Redis) Hold(app *pusher.App, key string, cb func(first bool)) {
	tk := trackID(app, key)
	t := &r.trk
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	t.held[tk] = struct{}{}
	op := &trackOp{kind: opHold, app: app, key: key, tk: tk, hold: cb}
	if rel := t.rels[tk]; rel != nil {
		op.cancels = rel
		delete(t.rels, tk)
	}
	r.trackAdd(op)
}

// Release implements pusher.Tracker. Goroutine-safe; it only queues. The
// delay runs on this node once Redis said the key is held nowhere.
func (r *Redis) Release(app *pusher.App, key string, delay time.Duration, cb func(last bool)) {
	tk := trackID(app, key)
	t := &r.trk
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	delete(t.held, tk)
	rel := &pendingRelease{app: app, key: key, tk: tk, token: newID(), delay: max(delay, 0), cb: cb}
	rel.deadline = time.Now().Add(rel.delay)
	if delay > 0 {
		t.rels[tk] = rel
	}
	r.trackAdd(&trackOp{kind: opRelease, app: app, key: key, tk: tk, rel: rel})
}

// Count implements pusher.Tracker. Goroutine-safe; it only queues. The node
// keeps its own share of each counter and sends it whole, so that applying
// it twice changes nothing.
func (r *Redis) Count(app *pusher.App, key string, delta int64, cb func(total int64, seq uint64)) {
	tk := trackID(app, key)
	t := &r.trk
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	abs := t.counts[tk] + delta
	if abs == 0 {
		delete(t.counts, tk)
	} else {
		t.counts[tk] = abs
	}
	r.trackAdd(&trackOp{kind: opCount, app: app, key: key, tk: tk, abs: abs, count: cb})
}

// Holding implements pusher.Tracker. Goroutine-safe; it only queues.
func (r *Redis) Holding(app *pusher.App, keys []string, cb func(held []bool)) {
	tks := make([]string, len(keys))
	for i, k := range keys {
		tks[i] = trackID(app, k)
	}
	t := &r.trk
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	r.trackAdd(&trackOp{kind: opHolding, app: app, tks: tks, holding: cb})
}

// trackAdd queues op. Past TrackerQueue it fails (it stays in the queue,
// without a command, so that its answer keeps its place among those of its
// key). Called with trk.mu held.
func (r *Redis) trackAdd(op *trackOp) {
	t := &r.trk
	if len(t.q) >= r.cfg.TrackerQueue {
		op.failed = true
		t.reassert = true
		if op.kind == opCount || op.kind == opRelease && op.rel.cb == nil ||
			op.kind == opHold && op.hold == nil && op.cancels == nil {
			t.errors.Add(1) // nobody to answer
			return
		}
	}
	t.q = append(t.q, op)
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// trackForce queues op whatever the queue's length (re-asserts, registry).
// Called with trk.mu held.
func (r *Redis) trackForce(op *trackOp) {
	t := &r.trk
	t.q = append(t.q, op)
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// trackLoop sends what is queued, one pipeline per round trip, until the
// tracker stops and its queue is empty.
func (r *Redis) trackLoop() {
	t := &r.trk
	defer close(t.done)
	for range t.wake {
		for {
			t.mu.Lock()
			ops, stopped := t.q, t.stopped
			t.q = nil
			if len(ops) == 0 {
				t.mu.Unlock()
				if stopped {
					return
				}
				break
			}
			t.mu.Unlock()
			r.trackFlush(ops)
			r.trackResyncDue()
		}
	}
}

// trackResyncDue queues a re-assertion of this node's state when an
// operation failed and Redis answers again.
func (r *Redis) trackResyncDue() {
	if r.rdb == nil || r.degraded.Load() {
		return
	}
	t := &r.trk
	t.mu.Lock()
	if t.reassert && !t.stopped && len(t.q) < r.cfg.TrackerQueue/2 {
		t.reassert = false
		r.trackForce(&trackOp{kind: opSync})
	}
	t.mu.Unlock()
}

// trackReconnected re-asserts this node's state once Redis answers again
// (or for the first time), without announcing anything.
func (r *Redis) trackReconnected() {
	r.trk.aliveSince.Store(time.Now().UnixNano())
	r.trk.loaded.Store(false) // Redis may have restarted
	if r.rdb == nil {
		return
	}
	t := &r.trk
	t.mu.Lock()
	if !t.stopped {
		t.reassert = false
		r.trackForce(&trackOp{kind: opSync})
		r.trackForce(&trackOp{kind: opRegister})
	}
	t.mu.Unlock()
}

// trackFlush runs ops in one pipeline (plus one more for scripts Redis had
// to load) and hands out their answers, in order.
func (r *Redis) trackFlush(ops []*trackOp) {
	ok := r.rdb != nil && !r.degraded.Load()
	netErr := false
	if ok {
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.PublishTimeout)
		ok = r.trackLoadScripts(ctx)
		if ok {
			pipe := r.rdb.Pipeline()
			n := 0
			for _, op := range ops {
				if !op.failed {
					r.trackBuild(ctx, pipe, op)
					n++
				}
			}
			if n > 0 {
				_, _ = pipe.Exec(ctx)
			}
		} else {
			netErr = true
		}
		cancel()
	}
	for _, op := range ops {
		failed := !ok || op.failed
		if !failed {
			if err := op.err(); err != nil {
				failed = true
				if redis.HasErrorPrefix(err, "NOSCRIPT") {
					// Redis restarted since the scripts were loaded. The
					// operation fails rather than run again after later
					// commands of its key.
					r.trk.loaded.Store(false)
				}
				if _, reply := err.(redis.Error); !reply {
					netErr = true
				}
				if r.logDue() {
					r.log.Warn("tracker operation failed", "err", err)
				}
			}
		}
		if failed {
			r.trk.errors.Add(1)
		} else {
			r.trk.ops.Add(1)
		}
		r.trackFinish(op, failed)
	}
	if netErr {
		r.setDegraded(true)
	}
}

// trackLoadScripts loads the scripts (on every shard) unless they are
// loaded: a batch never meets NOSCRIPT half-way, which would take its
// script call out of order with the batch's other commands of the key.
func (r *Redis) trackLoadScripts(ctx context.Context) bool {
	if r.trk.loaded.Load() {
		return true
	}
	for _, s := range trackScripts {
		if err := s.Load(ctx, r.rdb).Err(); err != nil {
			return false
		}
	}
	r.trk.loaded.Store(true)
	return true
}

// err is the first error of op's commands (a missing key is none).
func (op *trackOp) err() error {
	if op.script != nil {
		if err := op.script.Err(); err != nil && err != redis.Nil {
			return err
		}
	}
	for _, c := range op.cmds {
		if err := c.Err(); err != nil && err != redis.Nil {
			return err
		}
	}
	return nil
}

// trackScript queues op's script call on pipe.
func (r *Redis) trackScript(ctx context.Context, pipe redis.Pipeliner, op *trackOp) *redis.Cmd {
	h, v := r.tkey(op.tk, "h"), r.tkey(op.tk, "v")
	switch op.kind {
	case opHold:
		return scriptHold.EvalSha(ctx, pipe, []string{h, v}, r.node)
	case opRelease:
		return scriptRelease.EvalSha(ctx, pipe, []string{h, v}, r.node, op.rel.token,
			op.rel.delay.Milliseconds(), r.markerTTL(op.rel.delay).Milliseconds())
	case opConfirm:
		return scriptConfirm.EvalSha(ctx, pipe, []string{h, v}, op.rel.token)
	case opCount:
		return scriptCount.EvalSha(ctx, pipe, []string{r.tkey(op.tk, "c"), r.tkey(op.tk, "s")}, r.node, op.abs)
	}
	return nil
}

// trackBuild queues op's commands on pipe. The node's own records (held,
// pend, counted) are other slots: separate commands, placed so that a
// survivor reading them at any moment releases what must be released.
func (r *Redis) trackBuild(ctx context.Context, pipe redis.Pipeliner, op *trackOp) {
	held, pend, counted := r.nkey(r.node, "held"), r.nkey(r.node, "pend"), r.nkey(r.node, "counted")
	switch op.kind {
	case opHold:
		op.cmds = append(op.cmds, pipe.SAdd(ctx, held, op.tk), pipe.HDel(ctx, pend, op.tk))
		op.script = r.trackScript(ctx, pipe, op)
	case opRelease:
		if op.rel.delay > 0 {
			op.cmds = append(op.cmds, pipe.HSet(ctx, pend, op.tk, pendValue(op.rel.deadline, op.rel.token)))
		}
		op.script = r.trackScript(ctx, pipe, op)
		op.cmds = append(op.cmds, pipe.SRem(ctx, held, op.tk))
	case opConfirm:
		op.script = r.trackScript(ctx, pipe, op)
		op.cmds = append(op.cmds, pipe.HDel(ctx, pend, op.tk))
	case opCount:
		if op.abs != 0 {
			op.cmds = append(op.cmds, pipe.SAdd(ctx, counted, op.tk))
		} else {
			op.cmds = append(op.cmds, pipe.SRem(ctx, counted, op.tk))
		}
		op.script = r.trackScript(ctx, pipe, op)
	case opHolding:
		for _, tk := range op.tks {
			op.cmds = append(op.cmds, pipe.Exists(ctx, r.tkey(tk, "h")))
		}
	case opAssert:
		op.cmds = append(op.cmds, pipe.SAdd(ctx, held, op.tk), pipe.SAdd(ctx, r.tkey(op.tk, "h"), r.node))
	case opDrop:
		op.cmds = append(op.cmds, pipe.SRem(ctx, r.tkey(op.tk, "h"), r.node), pipe.SRem(ctx, held, op.tk))
	case opSync:
		op.cmds = append(op.cmds, pipe.SMembers(ctx, held), pipe.SMembers(ctx, counted))
	case opRegister:
		op.cmds = append(op.cmds, pipe.HSet(ctx, r.registryKey(), r.node, time.Now().UnixMilli()),
			pipe.HGetAll(ctx, r.registryKey()))
	}
}

// trackFinish applies op's answer and calls its callbacks (outside the
// tracker's lock).
func (r *Redis) trackFinish(op *trackOp, failed bool) {
	t := &r.trk
	var calls []func()
	answer := func(rel *pendingRelease, last bool) {
		rel.done = true
		if rel.timer != nil {
			rel.timer.Stop()
		}
		if t.rels[rel.tk] == rel {
			delete(t.rels, rel.tk)
		}
		if cb := rel.cb; cb != nil {
			calls = append(calls, func() { cb(last) })
		}
	}
	res := int64(0)
	if !failed && op.script != nil {
		res, _ = op.script.Int64()
	}

	t.mu.Lock()
	if failed {
		t.reassert = true
	}
	switch op.kind {
	case opHold:
		// A release this hold cancelled answers first, as it was called
		// first.
		if c := op.cancels; c != nil && !c.done {
			answer(c, false)
		}
		if cb := op.hold; cb != nil {
			first := res == 1
			calls = append(calls, func() { cb(first) })
		}
	case opRelease:
		rel := op.rel
		if rel.done {
			break
		}
		if res == 2 && !t.stopped {
			rel.timer = time.AfterFunc(time.Until(rel.deadline), func() { r.trackConfirm(rel) })
		} else if res != 2 {
			answer(rel, res == 1)
		}
	case opConfirm:
		if !op.rel.done {
			answer(op.rel, res == 1)
		}
	case opCount:
		if cb := op.count; cb != nil && !failed {
			if v, err := op.script.Slice(); err == nil && len(v) == 3 {
				total, _ := v[0].(int64)
				seq, _ := v[1].(int64)
				calls = append(calls, func() { cb(total, uint64(seq)) })
			}
		}
	case opHolding:
		held := make([]bool, len(op.tks))
		if !failed {
			for i, c := range op.cmds {
				held[i] = c.(*redis.IntCmd).Val() > 0
			}
		}
		cb := op.holding
		calls = append(calls, func() { cb(held) })
	case opSync:
		if !failed {
			r.trackResync(op.cmds[0].(*redis.StringSliceCmd).Val(), op.cmds[1].(*redis.StringSliceCmd).Val())
		}
	case opRegister:
		if !failed {
			if op.cmds[0].(*redis.IntCmd).Val() == 1 && t.registered && !t.stopped {
				// Our entry was gone: survivors took us for dead and
				// released what we held. Say again what we hold.
				r.log.Warn("this node was taken for dead by the cluster; asserting its state again")
				r.trackForce(&trackOp{kind: opSync})
			}
			t.registered = true
			all := op.cmds[1].(*redis.MapStringStringCmd).Val()
			calls = append(calls, func() { r.reapStale(all) })
		}
	}
	t.mu.Unlock()
	for _, f := range calls {
		f()
	}
}

// trackConfirm queues the confirmation of a release whose delay passed.
func (r *Redis) trackConfirm(rel *pendingRelease) {
	t := &r.trk
	t.mu.Lock()
	defer t.mu.Unlock()
	if rel.done || t.stopped {
		return
	}
	r.trackForce(&trackOp{kind: opConfirm, app: rel.app, key: rel.key, tk: rel.tk, rel: rel})
}

// trackResync queues, after the holds and counts Redis has of this node,
// the changes that make them this node's: holds asserted or dropped,
// counts set again. Nothing is announced. Called with trk.mu held.
func (r *Redis) trackResync(heldThere, countedThere []string) {
	t := &r.trk
	if t.stopped {
		return
	}
	there := make(map[string]bool, len(heldThere))
	for _, tk := range heldThere {
		there[tk] = true
		if _, ok := t.held[tk]; !ok {
			r.trackForce(&trackOp{kind: opDrop, tk: tk})
		}
	}
	for tk := range t.held {
		r.trackForce(&trackOp{kind: opAssert, tk: tk})
	}
	for _, tk := range countedThere {
		if _, ok := t.counts[tk]; !ok {
			r.trackForce(&trackOp{kind: opCount, tk: tk})
		}
	}
	for tk, n := range t.counts {
		r.trackForce(&trackOp{kind: opCount, tk: tk, abs: n})
	}
}

// trackHeartbeat records this node in the registry and looks for dead
// nodes to reap.
func (r *Redis) trackHeartbeat() {
	if r.rdb == nil {
		return
	}
	t := &r.trk
	t.mu.Lock()
	if !t.stopped {
		r.trackForce(&trackOp{kind: opRegister})
	}
	t.mu.Unlock()
}

// reapStale starts reaping the nodes whose registry entry is older than
// NodeTimeout and that this node does not hear from either. Only a node
// that has reached Redis for NodeTimeout reaps: after an outage every live
// node has had time to write its entry again.
func (r *Redis) reapStale(registry map[string]string) {
	now := time.Now()
	if r.degraded.Load() || now.Sub(time.Unix(0, r.trk.aliveSince.Load())) < r.cfg.NodeTimeout {
		return
	}
	for node, ms := range registry {
		n, err := strconv.ParseInt(ms, 10, 64)
		if node == r.node || err == nil && now.Sub(time.UnixMilli(n)) < r.cfg.NodeTimeout {
			continue
		}
		r.mu.Lock()
		_, live := r.nodes[node]
		r.mu.Unlock()
		if !live {
			r.startReap(node)
		}
	}
}

// startReap releases, on a goroutine of its own, what a stopped or dead
// node held, unless this node is reaping it already.
func (r *Redis) startReap(node string) {
	if r.rdb == nil || node == r.node {
		return
	}
	t := &r.trk
	t.mu.Lock()
	if t.stopped || t.reaping[node] {
		t.mu.Unlock()
		return
	}
	t.reaping[node] = true
	t.reapWG.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.reapWG.Done()
		if err := r.reap(node); err != nil && r.ctx.Err() == nil {
			r.log.Warn("releasing a dead node's keys failed; retried after node_timeout", "node", node, "err", err)
		}
		t.mu.Lock()
		delete(t.reaping, node)
		t.mu.Unlock()
	}()
}

// reap releases what node held. The lock keeps the other survivors from
// doing the same work; the scripts keep each transition once even if two
// reap (the lock expired): a release answers only for a node still in the
// holders, a confirmation only for a marker still there, a count only
// when the node's share changed. Every step is recorded in node's own keys
// before it waits, so that another survivor can finish the work.
func (r *Redis) reap(node string) error {
	ctx := r.ctx
	ok, err := r.rdb.SetNX(ctx, r.reapLock(node), r.node, r.cfg.NodeTimeout+r.cfg.ReleaseDelay+10*time.Second).Result()
	if err != nil || !ok {
		return err
	}
	r.log.Info("releasing the keys of a node that stopped", "node", node)
	heldKey, pendKey, countedKey := r.nkey(node, "held"), r.nkey(node, "pend"), r.nkey(node, "counted")
	held, err := r.rdb.SMembers(ctx, heldKey).Result()
	if err != nil {
		return err
	}
	delay := r.cfg.ReleaseDelay
	for _, tk := range held {
		token := newID()
		if err := r.rdb.HSet(ctx, pendKey, tk, pendValue(time.Now().Add(delay), token)).Err(); err != nil {
			return err
		}
		res, err := scriptRelease.Run(ctx, r.rdb, []string{r.tkey(tk, "h"), r.tkey(tk, "v")}, node, token,
			delay.Milliseconds(), r.markerTTL(delay).Milliseconds()).Int64()
		if err != nil {
			return err
		}
		if err := r.rdb.SRem(ctx, heldKey, tk).Err(); err != nil {
			return err
		}
		if res != 2 {
			if err := r.rdb.HDel(ctx, pendKey, tk).Err(); err != nil {
				return err
			}
		}
		if res == 1 {
			r.keyReleased(tk)
		}
	}
	counted, err := r.rdb.SMembers(ctx, countedKey).Result()
	if err != nil {
		return err
	}
	for _, tk := range counted {
		v, err := scriptCount.Run(ctx, r.rdb, []string{r.tkey(tk, "c"), r.tkey(tk, "s")}, node, 0).Slice()
		if err != nil {
			return err
		}
		if err := r.rdb.SRem(ctx, countedKey, tk).Err(); err != nil {
			return err
		}
		if len(v) == 3 && v[2] == int64(1) {
			total, _ := v[0].(int64)
			seq, _ := v[1].(int64)
			if appID, key, ok := parseTrackID(tk); ok && r.apps[appID] != nil {
				r.px.KeyCounted(r.apps[appID], key, total, uint64(seq))
			}
		}
	}
	pend, err := r.rdb.HGetAll(ctx, pendKey).Result()
	if err != nil {
		return err
	}
	type wait struct {
		tk, token string
		at        time.Time
	}
	var waits []wait
	for tk, v := range pend {
		if at, token, ok := parsePend(v); ok {
			waits = append(waits, wait{tk, token, at})
		}
	}
	for len(waits) > 0 {
		next := 0
		for i := range waits {
			if waits[i].at.Before(waits[next].at) {
				next = i
			}
		}
		w := waits[next]
		waits = append(waits[:next], waits[next+1:]...)
		if d := time.Until(w.at); d > 0 {
			timer := time.NewTimer(d)
			select {
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			case <-timer.C:
			}
		}
		res, err := scriptConfirm.Run(ctx, r.rdb, []string{r.tkey(w.tk, "h"), r.tkey(w.tk, "v")}, w.token).Int64()
		if err != nil {
			return err
		}
		if err := r.rdb.HDel(ctx, pendKey, w.tk).Err(); err != nil {
			return err
		}
		if res == 1 {
			r.keyReleased(w.tk)
		}
	}
	if err := r.rdb.Del(ctx, heldKey, pendKey, countedKey).Err(); err != nil {
		// In Redis Cluster the three keys share node's slot.
		return err
	}
	if err := r.rdb.HDel(ctx, r.registryKey(), node).Err(); err != nil {
		return err
	}
	r.trk.reaped.Add(1)
	return nil
}

// keyReleased tells the engine that a dead node's key is released.
func (r *Redis) keyReleased(tk string) {
	if appID, key, ok := parseTrackID(tk); ok && r.apps[appID] != nil {
		r.px.KeyReleased(r.apps[appID], key)
	}
}

// stopTracker sends what is queued (each round trip bounded by
// PublishTimeout) and stops: later operations are ignored and releases
// waiting out their delay are never answered (the survivors release them,
// told by the bye).
func (r *Redis) stopTracker() {
	t := &r.trk
	t.mu.Lock()
	t.stopped = true
	for _, rel := range t.rels {
		if rel.timer != nil {
			rel.timer.Stop()
		}
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
	<-t.done
}
