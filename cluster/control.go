package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/reverbgo/reverb/pusher"
)

func (r *Redis) heartbeatLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case now := <-t.C:
			r.sendPing()
			r.trackHeartbeat()
			r.expireNodes(now)
			r.expireBarriers(now)
		}
	}
}

// sendPing queues a heartbeat carrying this node's presence digests, in
// order among its joins and leaves.
func (r *Redis) sendPing() {
	r.px.WithLocalDigest(func(d map[string]pusher.PresenceDigest) {
		r.sendJSON(r.chCtl, &header{kind: kindPing}, d)
	})
}

// expireNodes drops nodes that have been silent for NodeTimeout. While
// Redis itself is unreachable nobody is dropped: silence then says nothing
// about the other nodes.
func (r *Redis) expireNodes(now time.Time) {
	if r.Degraded() {
		return
	}
	var dead []string
	r.mu.Lock()
	for id, t := range r.nodes {
		if now.Sub(t) >= r.cfg.NodeTimeout {
			dead = append(dead, id)
			delete(r.nodes, id)
			delete(r.syncs, id)
			delete(r.lastSyncReq, id)
		}
	}
	r.mu.Unlock()
	for _, id := range dead {
		r.log.Warn("node stopped answering; removing its presence members", "node", id)
		r.px.DropNode(id)
	}
}

// sendSync publishes this node's complete presence state on channel, in
// parts that fit the envelope limit: on the shared control channel when
// this node's state may have changed unseen (it was cut off from Redis), on
// one node's own channel when that node asked (its hello, its request), so
// that a node joining a cluster of N costs N-1 syncs, not N-1 applied by
// each of the N.
func (r *Redis) sendSync(channel string) {
	// One sync at a time: parts of two generations never interleave.
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	r.mu.Lock()
	r.gen++
	gen := r.gen
	r.mu.Unlock()
	const perPart = 500
	// Queued while the registry is locked: a join or leave of this node
	// cannot slip in between the snapshot and its envelopes.
	r.px.WithLocalPresence(func(state []pusher.PresenceChange) {
		for part, start := 0, 0; ; part, start = part+1, start+perPart {
			end := min(start+perPart, len(state))
			body := syncBody{Gen: gen, Part: part, Last: end == len(state)}
			for _, c := range state[start:end] {
				body.Members = append(body.Members, syncMember{App: c.App.ID, Channel: c.Channel, Member: c.Member})
			}
			r.sendJSON(channel, &header{kind: kindSync}, &body)
			if body.Last {
				return
			}
		}
	})
}

// helloDue reports whether a hello may be sent now: at most one per
// heartbeat interval, so that a node joining a cluster of K nodes does not
// set off K full resyncs of everyone.
func (r *Redis) helloDue() bool {
	now := time.Now().UnixNano()
	last := r.lastHello.Load()
	if now-last < int64(r.cfg.HeartbeatInterval) {
		return false
	}
	return r.lastHello.CompareAndSwap(last, now)
}

// onMessage implements receiver: it applies one envelope.
func (r *Redis) onMessage(channel string, b []byte) {
	h, body, err := decodeHeader(b, r.cfg.MaxEnvelope)
	if err != nil {
		r.invalid.Add(1)
		return
	}
	self := bytes.Equal(h.node, r.nodeB)
	switch h.kind {
	case kindEvent:
		app := r.apps[string(h.app)]
		if app == nil {
			return // an app this node does not serve
		}
		if self {
			// Our own event, back in the cluster's order: only a cache
			// channel's last event is kept (local delivery happened).
			if channel == r.chCache {
				r.px.StoreCache(app, string(h.channel), body)
			}
			return
		}
		r.received.Add(1)
		r.px.DeliverRemote(app, string(h.channel), body, string(h.except))
	case kindCount:
		// On the channel's bus channel, like its events: only nodes with
		// subscribers of the channel get it.
		app := r.apps[string(h.app)]
		if self || app == nil {
			return
		}
		r.received.Add(1)
		total, seq := readCount(body)
		r.px.DeliverCount(app, string(h.channel), total, seq)
	case kindBarrier:
		if self && bytes.Equal(h.to, r.nodeB) {
			r.fireBarrier(string(h.id))
		}
	default:
		if self {
			return
		}
		r.received.Add(1)
		r.control(&h, body)
	}
}

// control applies a control envelope of another node.
func (r *Redis) control(h *header, body []byte) {
	node := string(h.node)
	r.mu.Lock()
	_, known := r.nodes[node]
	if h.kind != kindBye && h.kind != kindRestart {
		r.nodes[node] = time.Now()
	}
	r.mu.Unlock()
	switch h.kind {
	case kindHello, kindBye, kindRestart, kindSync:
	default:
		if !known && r.helloDue() {
			// A node we did not know (we started after it, or it came
			// back): make sure we get its state.
			r.sendControl(r.chCtl, &header{kind: kindHello}, nil)
		}
	}
	var app *pusher.App
	if len(h.app) > 0 {
		if app = r.apps[string(h.app)]; app == nil {
			// An app this node does not serve. A query still gets an
			// (empty) answer, so that the asker does not wait it out.
			if h.kind == kindQuery {
				r.sendJSON(r.nodeChannel(node), &header{kind: kindReply, to: h.node, id: h.id}, &pusher.Reply{})
			}
			return
		}
	}
	switch h.kind {
	case kindJoin:
		var m pusher.PresenceMember
		if decodeJSON(body, &m) != nil || m.Key == "" {
			r.invalid.Add(1)
			return
		}
		r.px.RemotePresenceJoin(node, app, string(h.channel), m)
	case kindLeave:
		r.px.RemotePresenceLeave(node, app, string(h.channel), string(h.id))
	case kindHello:
		r.sendSync(r.nodeChannel(node))
	case kindSyncReq:
		if bytes.Equal(h.to, r.nodeB) {
			r.sendSync(r.nodeChannel(node))
		}
	case kindSync:
		var s syncBody
		if decodeJSON(body, &s) != nil {
			r.invalid.Add(1)
			return
		}
		r.applySync(node, &s)
	case kindPing:
		var d map[string]pusher.PresenceDigest
		if decodeJSON(body, &d) != nil {
			r.invalid.Add(1)
			return
		}
		r.checkDigest(node, d)
	case kindBye:
		r.mu.Lock()
		delete(r.nodes, node)
		delete(r.syncs, node)
		delete(r.lastSyncReq, node)
		r.mu.Unlock()
		r.px.DropNode(node)
		// Its tracker state is released now (after the delay), not after
		// the node timeout.
		r.startReap(node)
	case kindOnline:
		r.px.DeliverOnline(app, string(h.id), body[0] == '1')
	case kindQuery:
		var q pusher.Query
		if decodeJSON(body, &q) != nil {
			r.invalid.Add(1)
			return
		}
		reply := r.px.Answer(app, q)
		r.sendJSON(r.nodeChannel(node), &header{kind: kindReply, to: h.node, id: h.id}, &reply)
	case kindReply:
		if !bytes.Equal(h.to, r.nodeB) {
			return
		}
		var rep pusher.Reply
		if decodeJSON(body, &rep) != nil {
			r.invalid.Add(1)
			return
		}
		r.mu.Lock()
		ch := r.pending[string(h.id)]
		r.mu.Unlock()
		if ch != nil {
			select {
			case ch <- rep:
			default:
			}
		}
	case kindTerminate:
		r.px.TerminateLocal(app, string(h.id))
	case kindRestart:
		if r.onRestart != nil {
			r.log.Info("restart requested through Redis")
			r.onRestart()
		}
	}
}

// checkDigest compares another node's presence digests with what this
// node knows of it, for the apps this node serves, and asks that node for
// its state when they differ (joins or leaves were lost on the way).
func (r *Redis) checkDigest(node string, theirs map[string]pusher.PresenceDigest) {
	r.mu.Lock()
	if st := r.syncs[node]; st != nil {
		if time.Since(st.started) < r.cfg.HeartbeatInterval {
			r.mu.Unlock()
			return // its parts are still arriving
		}
		delete(r.syncs, node) // its last part was lost
	}
	r.mu.Unlock()
	mine := r.px.NodeDigest(node)
	same := true
	for id := range r.apps {
		if theirs[id] != mine[id] {
			same = false
			break
		}
	}
	if same {
		return
	}
	now := time.Now()
	r.mu.Lock()
	if now.Sub(r.lastSyncReq[node]) < r.cfg.HeartbeatInterval {
		r.mu.Unlock()
		return
	}
	r.lastSyncReq[node] = now
	r.mu.Unlock()
	r.resyncs.Add(1)
	r.log.Info("presence of a node differs from its digest; asking for its state", "node", node)
	r.sendControl(r.nodeChannel(node), &header{kind: kindSyncReq, to: []byte(node)}, nil)
}

func (r *Redis) applySync(node string, s *syncBody) {
	r.mu.Lock()
	st := r.syncs[node]
	if st == nil || st.gen != s.Gen {
		st = &syncState{gen: s.Gen, started: time.Now()}
		r.syncs[node] = st
	}
	if s.Part != st.next {
		// A part went missing (dropped on the way): this state is
		// incomplete. Forget it and ask again.
		delete(r.syncs, node)
		r.mu.Unlock()
		r.invalid.Add(1)
		r.resyncs.Add(1)
		r.sendControl(r.nodeChannel(node), &header{kind: kindSyncReq, to: []byte(node)}, nil)
		return
	}
	st.next++
	for _, m := range s.Members {
		if app := r.apps[m.App]; app != nil && m.Member.Key != "" {
			st.members = append(st.members, pusher.PresenceChange{App: app, Channel: m.Channel, Member: m.Member})
		}
	}
	if !s.Last {
		r.mu.Unlock()
		return
	}
	delete(r.syncs, node)
	r.mu.Unlock()
	r.px.ReplaceNodePresence(node, st.members)
	r.noteSynced(node)
}

// PresenceJoin implements pusher.Broker.
func (r *Redis) PresenceJoin(app *pusher.App, channel string, m pusher.PresenceMember) {
	r.sendJSON(r.chCtl, &header{kind: kindJoin, app: str(app.ID), channel: str(channel)}, &m)
}

// PresenceLeave implements pusher.Broker.
func (r *Redis) PresenceLeave(app *pusher.App, channel, key string) {
	r.sendControl(r.chCtl, &header{kind: kindLeave, app: str(app.ID), channel: str(channel), id: str(key)}, nil)
}

// Terminate implements pusher.Broker.
func (r *Redis) Terminate(app *pusher.App, userID string) {
	r.sendControl(r.chCtl, &header{kind: kindTerminate, app: str(app.ID), id: str(userID)}, nil)
}

// Gather implements pusher.Broker: it asks the live nodes and waits for
// their replies, at most GatherTimeout. While Redis is unreachable it
// answers at once with nothing.
func (r *Redis) Gather(ctx context.Context, app *pusher.App, q pusher.Query) []pusher.Reply {
	if r.Degraded() {
		return nil
	}
	r.mu.Lock()
	want := len(r.nodes)
	r.mu.Unlock()
	if want == 0 {
		return nil
	}
	key := newID()
	ch := make(chan pusher.Reply, want)
	r.mu.Lock()
	r.pending[key] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.pending, key)
		r.mu.Unlock()
	}()
	if !r.sendJSON(r.chCtl, &header{kind: kindQuery, app: str(app.ID), id: []byte(key)}, &q) {
		return nil
	}
	timer := time.NewTimer(r.cfg.GatherTimeout)
	defer timer.Stop()
	var out []pusher.Reply
	for len(out) < want {
		select {
		case rep := <-ch:
			out = append(out, rep)
		case <-timer.C:
			r.gatherMissed(want, len(out))
			return out
		case <-ctx.Done():
			r.gatherMissed(want, len(out))
			return out
		}
	}
	return out
}

// gatherMissed counts a read answered without every node and logs it, at
// most every 10 s: the answer leaves the silent nodes' figures out.
func (r *Redis) gatherMissed(want, got int) {
	r.gatherIncomplete.Add(1)
	now := time.Now().UnixNano()
	last := r.lastGatherLog.Load()
	if now-last >= int64(10*time.Second) && r.lastGatherLog.CompareAndSwap(last, now) {
		r.log.Warn("API read answered without every node: the silent nodes' figures are left out",
			"answered", got, "nodes", want, "gather_timeout", r.cfg.GatherTimeout,
			"incomplete_total", r.gatherIncomplete.Load())
	}
}

func newID() string {
	var id [8]byte
	_, _ = rand.Read(id[:])
	return hex.EncodeToString(id[:])
}

// PublishRestart asks every node under the prefix to drain and exit (what
// `reverb restart` does when scaling is enabled).
func PublishRestart(ctx context.Context, cfg Config) error {
	cfg.normalize()
	rdb, err := cfg.newClient()
	if err != nil {
		return err
	}
	t := newRedisTransport(rdb, time.Second)
	defer t.close()
	h := header{kind: kindRestart, node: []byte("restart-cli")}
	return t.publish(ctx, []outMsg{{channel: cfg.Channel + ":ctl", payload: appendEnvelope(nil, &h, nil)}})
}

// PublishCount implements pusher.Broker: a count envelope on the channel's
// bus channel, so that only the nodes with subscribers of the channel (and,
// for cache channels, every node) get it; they call Node.DeliverCount. It
// only queues; while Redis is unreachable the count is dropped and counted.
func (r *Redis) PublishCount(app *pusher.App, channel string, total int64, seq uint64) {
	if channel == "" {
		return
	}
	bus, _ := r.busChannel(app, channel)
	var body [countBody]byte
	r.sendControl(bus, &header{kind: kindCount, app: str(app.ID), channel: str(channel)}, appendCount(body[:0], total, seq))
}

// PublishOnline implements pusher.Broker: an online envelope on the control
// channel (every node); they call Node.DeliverOnline. It only queues.
func (r *Redis) PublishOnline(app *pusher.App, userID string, online bool) {
	if userID == "" {
		return
	}
	body := []byte{'0'}
	if online {
		body[0] = '1'
	}
	r.sendControl(r.chCtl, &header{kind: kindOnline, app: str(app.ID), id: str(userID)}, body)
}
