package cluster

import (
	"context"
	"strconv"
	"time"
)

// Warm returns a channel that is closed once this node has the cluster's
// state: the presence sync of every node the registry lists as alive when
// this node first reached Redis (each answers its hello with one), or
// SyncTimeout after that, whichever comes first. It is closed at once when
// Redis is unreachable at the start (the node then serves its own clients
// only, as it does whenever Redis is down), when the broker has no
// registry, and by Close.
//
// A server listens only once it is closed, so that neither a client nor an
// HTTP API read meets a node that does not know the cluster yet: behind a
// shared port (reuse_port) or a load balancer, a replacement node that
// listened at once answered presence and channel reads from its own
// clients alone ("user_count 1", "Channel not found") and gave a
// presence subscriber an incomplete member list. Goroutine-safe.
func (r *Redis) Warm() <-chan struct{} { return r.warm }

func (r *Redis) closeWarm() { r.warmOnce.Do(func() { close(r.warm) }) }

// awaitWarm reads the registry once this node has reached Redis and waits
// for the sync of every node alive in it; it closes warm. Run on its own
// goroutine by the first onAlive.
func (r *Redis) awaitWarm() {
	t0 := time.Now()
	if r.rdb == nil {
		r.closeWarm()
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.SyncTimeout)
	defer cancel()
	reg, err := r.rdb.HGetAll(ctx, r.registryKey()).Result()
	if err != nil {
		if r.ctx.Err() == nil {
			r.log.Warn("could not read the node registry: serving without waiting for the other nodes' state", "err", err)
		}
		r.closeWarm()
		return
	}
	now := time.Now()
	r.mu.Lock()
	wait := make(map[string]bool)
	alive := 0
	for node, ms := range reg {
		n, err := strconv.ParseInt(ms, 10, 64)
		if node == r.node || err != nil || now.Sub(time.UnixMilli(n)) >= r.cfg.NodeTimeout {
			continue
		}
		alive++
		if !r.warmSynced[node] {
			wait[node] = true
		}
	}
	r.warmWait, r.warmSynced = wait, nil
	none := len(wait) == 0
	r.mu.Unlock()
	if none {
		r.closeWarm()
	}
	select {
	case <-r.warm:
		if !r.closing.Load() {
			r.log.Info("In sync with the cluster", "nodes", alive, "in", time.Since(t0).Round(time.Millisecond))
		}
	case <-ctx.Done():
		r.mu.Lock()
		missing := len(r.warmWait)
		r.mu.Unlock()
		if r.ctx.Err() == nil {
			r.log.Warn("serving before every node's state arrived: reads leave the silent nodes out until they answer",
				"missing", missing, "nodes", alive, "sync_timeout", r.cfg.SyncTimeout)
		}
		r.closeWarm()
	}
}

// noteSynced records that node's complete sync was applied; the last one
// awaited closes warm.
func (r *Redis) noteSynced(node string) {
	r.mu.Lock()
	done := false
	switch {
	case r.warmWait != nil:
		if r.warmWait[node] {
			delete(r.warmWait, node)
			done = len(r.warmWait) == 0
		}
	case r.warmSynced != nil:
		r.warmSynced[node] = true
	}
	r.mu.Unlock()
	if done {
		r.closeWarm()
	}
}

// markGone replaces this node's registry entry with "bye" as it stops: a
// node that starts meanwhile does not wait for its state (awaitWarm counts
// only entries that hold a heartbeat time), and a survivor that missed the
// bye still reaps it (reapStale takes such an entry for a stale one). The
// survivor that reaps it removes the entry.
func (r *Redis) markGone() {
	if r.rdb == nil || r.degraded.Load() {
		return
	}
	r.trk.mu.Lock()
	registered := r.trk.registered
	r.trk.mu.Unlock()
	if !registered {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.PublishTimeout)
	defer cancel()
	if err := r.rdb.HSet(ctx, r.registryKey(), r.node, "bye").Err(); err != nil {
		r.log.Debug("could not mark this node gone in the registry", "err", err)
	}
}
