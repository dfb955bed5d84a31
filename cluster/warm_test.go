package cluster

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/reverbgo/reverb/cluster/redistest"
	"github.com/reverbgo/reverb/internal/testkit"
	"github.com/reverbgo/reverb/pusher"
)

// warmNode builds a broker on cfg that is not started yet.
func warmNode(t *testing.T, cfg Config) *Redis {
	t.Helper()
	r, err := NewRedis(cfg, &fakeNode{app: &pusher.App{ID: "app-1", Key: "k", Secret: "s"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// waitWarm waits until r is warm, failing with what after trackWait.
func waitWarm(t *testing.T, r *Redis, what string) {
	t.Helper()
	select {
	case <-r.Warm():
	case <-time.After(trackWait):
		t.Fatal(what)
	}
}

// register writes node into the registry as alive now, as its heartbeat
// would.
func register(t *testing.T, srv *redistest.Server, prefix, node string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	if err := rdb.HSet(context.Background(), prefix+":t:nodes", node, strconv.FormatInt(time.Now().UnixMilli(), 10)).Err(); err != nil {
		t.Fatal(err)
	}
}

// Regression: a node started beside a running cluster (a rolling restart
// behind a shared port) listened at once and answered presence and channel
// reads from its own clients alone ("user_count 1", "Channel not found")
// until the other nodes' state arrived. Warm, which the server waits for
// before it listens, closes only once every node alive in the registry has
// sent its state.
func TestWarmWaitsForRegisteredNodes(t *testing.T) {
	srv := redistest.Start(t)
	cfg := trackConfig(srv, nil, "warm")
	cfg.HeartbeatInterval, cfg.NodeTimeout = time.Hour, 2*time.Hour // no heartbeat during the test
	g := warmNode(t, cfg)
	register(t, srv, "warm", g.NodeID())

	b := warmNode(t, cfg)
	b.Start()
	waitFor(t, "b has read the registry", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.warmWait != nil
	})
	if isClosed(b.Warm()) {
		t.Fatal("warm before the registered node sent its state")
	}
	// g starts: it says hello and sends its state, which b applies.
	g.Start()
	waitWarm(t, b, "not warm once the registered node sent its state")
	if n := b.Stats().Nodes; n != 1 {
		t.Fatalf("warm, knowing %d other nodes, want 1", n)
	}
	// g was not registered when it started (its first heartbeat is an hour
	// away) and b was: g waits for b's answer to its hello.
	waitWarm(t, g, "g not warm")
}

// A registered node that never answers holds a starting node back for
// SyncTimeout at most.
func TestWarmTimesOut(t *testing.T) {
	srv := redistest.Start(t)
	cfg := trackConfig(srv, nil, "warm-timeout")
	cfg.HeartbeatInterval, cfg.NodeTimeout, cfg.SyncTimeout = time.Hour, 2*time.Hour, 300*time.Millisecond
	register(t, srv, "warm-timeout", "gone")
	b := warmNode(t, cfg)
	t0 := time.Now()
	b.Start()
	waitWarm(t, b, "not warm after sync_timeout")
	if d := time.Since(t0); d < cfg.SyncTimeout {
		t.Fatalf("warm after %v, before the silent node's sync_timeout %v", d, cfg.SyncTimeout)
	}
}

// Alone in the registry, or with Redis unreachable, a node is warm at once
// (unreachable: it serves its own clients, as whenever Redis is down).
func TestWarmAloneOrWithoutRedis(t *testing.T) {
	srv := redistest.Start(t)
	cfg := trackConfig(srv, nil, "warm-alone")
	cfg.SyncTimeout = time.Hour
	b := warmNode(t, cfg)
	b.Start()
	waitWarm(t, b, "a node alone is not warm")

	cfg.Port = testkit.FreePort(t) // nothing listens there
	c := warmNode(t, cfg)
	c.Start()
	waitWarm(t, c, "not warm with Redis unreachable")
}

// A node that stopped (its bye) leaves "bye" as its registry entry: a node
// started right after it does not wait sync_timeout for its state, and the
// entry does not pass for a heartbeat.
func TestWarmSkipsAStoppedNode(t *testing.T) {
	srv := redistest.Start(t)
	cfg := trackConfig(srv, nil, "warm-gone")
	a := warmNode(t, cfg)
	a.Start()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	waitFor(t, "a is in the registry", func() bool {
		v, err := rdb.HGet(context.Background(), "warm-gone:t:nodes", a.NodeID()).Result()
		return err == nil && v != "bye"
	})
	a.Close()
	if v, err := rdb.HGet(context.Background(), "warm-gone:t:nodes", a.NodeID()).Result(); err != nil || v != "bye" {
		t.Fatalf("a's registry entry after its Close: %q, %v; want bye", v, err)
	}
	cfg.SyncTimeout = time.Hour
	b := warmNode(t, cfg)
	b.Start()
	waitWarm(t, b, "a node started after another stopped waits for the stopped one's state")
}
