// Package cluster carries events, presence and queries between the nodes of
// a cluster over Redis pub/sub. It is the only package that imports go-redis.
//
// Redis implements pusher.Broker and calls the engine only through
// pusher.Node. Its files:
//
//	config.go     the configuration and the go-redis client of each topology
//	envelope.go   the binary envelope: header fields readable without the payload
//	publisher.go  the bounded queue whose contents leave in one pipeline per round trip
//	redis.go      the broker: lifecycle, counters, publishing, refusals and drops
//	interest.go   interest routing, subscription confirmations, barriers and Await
//	control.go    heartbeats with presence digests, presence sync, queries, terminate, restart,
//	              subscription counts and online changes
//	tracker.go    pusher.Tracker on Redis: holds, releases, counters, reaping dead nodes
//	transport.go  plain pub/sub (single, Sentinel, following failovers) or sharded pub/sub
//	              with one connection per shard (Redis Cluster)
//
// Count and online envelopes: PublishCount sends a count envelope (app,
// channel, payload: total and seq, 16 bytes big-endian) on the channel's
// bus channel, so only the nodes with subscribers of the channel (every
// node for cache channels) get it, on the event path, and call
// Node.DeliverCount. PublishOnline sends an online envelope (app, id: the
// user id, payload "1" or "0") on the control channel; every node calls
// Node.DeliverOnline. Both are dropped and counted while Redis is
// unreachable.
//
// # Tracker
//
// Redis also implements pusher.Tracker. A tracked key is named by its id,
// tk = len(app id) ":" app id key (keys are opaque and may hold any byte).
// Its Redis keys share the hash tag {tk}, so that they are in one slot of a
// Redis Cluster (the tag ends at the first '}' after the first '{', at the
// same place in each of them, whatever the key holds):
//
//	<prefix>:t:{tk}:h   set of the nodes that hold the key
//	<prefix>:t:{tk}:v   marker of a release waiting out its delay: its token
//	<prefix>:t:{tk}:c   hash node → that node's absolute share of a counter
//	<prefix>:t:{tk}:s   the counter's last seq
//
// and each node records, in keys of its own slot, what survivors need to
// clean up after it:
//
//	<prefix>:t:node:{id}:held     set of tk the node holds
//	<prefix>:t:node:{id}:pend     hash tk → "deadline ms:token" of its waiting releases
//	<prefix>:t:node:{id}:counted  set of tk of the counters it has a share of
//	<prefix>:t:nodes              hash node → its last heartbeat (unix ms)
//	<prefix>:t:reap:{id}          lock of the survivor that cleans up after a node
//
// Four Lua scripts, each on one tracked key's slot, make the transitions
// atomic: hold (SADD; the key became held when it is the only holder and no
// marker was there, else a marker it deletes is a cancelled release),
// release (SREM; when no holder is left: last at once without delay, else a
// marker with a fresh token, PX delay + node timeout + margin), confirm
// (after the delay, on the releasing node: last if no holder and the marker
// is still its token; deletes it) and count (HSET the node's absolute share,
// HDEL when 0; total = sum; seq = max(last seq + 1, Redis time in µs), so
// that a counter forgotten an hour after reaching 0 still gets later seqs).
// Sending absolute shares makes a count idempotent: it is sent again after
// an outage. Holding is EXISTS of each h (a key whose release waits counts
// as not held).
//
// Operations wait in a bounded queue (TrackerQueue) and one goroutine sends
// all that waits in one pipeline per round trip (scripts by EVALSHA, loaded
// on every shard before a batch when they may be missing); the commands of
// one key go to one Redis connection in the order they were called, and
// the answers are handled, and callbacks called, in that order, from that
// goroutine. A Release's delay runs on this node (a timer) once Redis said
// the key is held nowhere; a Hold of the key on this node meanwhile answers
// the Release false before answering itself.
//
// Guarantees, while Redis is reachable: each key's transitions (first hold,
// last release) are answered true once in the cluster, and a counter's
// totals are ordered by seq. A node that stops (bye) or dies (its registry
// entry older than NodeTimeout and silent on the bus, judged by a node that
// has reached Redis for NodeTimeout) is reaped by one survivor (SET NX lock):
// its held keys are released on its behalf with ReleaseDelay, its waiting
// releases confirmed at their deadline, and the keys that are then held
// nowhere are handed to Node.KeyReleased (the engine announces them); its
// counter shares are removed and the new totals handed to Node.KeyCounted
// (the engine announces and publishes them; the tracker does not). Every
// step is recorded in the dead node's keys before waiting, and the scripts
// answer each transition once, so a survivor that dies half-way is
// replaced, after the lock expires, without announcing anything twice. A
// node that was taken for dead but was not (its registry entry came back)
// asserts its state again, silently.
//
// While Redis is unreachable (or the queue is full) operations fail: Hold
// and Release answer false, Count is skipped, Holding answers all false, and
// the failures are counted (Stats.TrackerErrors). Transitions made then are
// never announced. Once Redis answers again the node asserts its state
// without announcing anything: it adds its holds, drops the holds Redis has
// and it no longer does, and sends its counter shares again. Releases
// waiting out their delay when Redis fails answer false; a marker left
// behind expires.
//
// All exported methods are goroutine-safe; none blocks a loop.
package cluster
