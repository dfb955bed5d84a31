package redistest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/reverbgo/reverb/cluster/redistest"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestStartPubSub(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	if got := srv.Do(t, "PING"); got != "PONG" {
		t.Fatalf("PING = %q", got)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctx := ctxFor(t, 10*time.Second)

	sub := rdb.Subscribe(ctx, "news")
	t.Cleanup(func() { sub.Close() })
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	n, err := rdb.Publish(ctx, "news", "hello").Result()
	if err != nil || n != 1 {
		t.Fatalf("PUBLISH = %d, %v; want 1 receiver", n, err)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Channel != "news" || msg.Payload != "hello" {
		t.Fatalf("message %q on %q", msg.Payload, msg.Channel)
	}
}

func TestStartTLS(t *testing.T) {
	t.Parallel()
	srv := redistest.StartTLS(t)
	if got := srv.Do(t, "PING"); got != "PONG" {
		t.Fatalf("PING = %q", got)
	}
	if got := srv.Do(t, "CONFIG", "GET", "port"); got != "port\n0" {
		t.Fatalf("CONFIG GET port = %q; want no plain TCP port", got)
	}
	pem, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", srv.CAFile)
	}
	ctx := ctxFor(t, 10*time.Second)

	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, TLSConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}})
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.Set(ctx, "k", "over tls", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "over tls" {
		t.Fatalf("GET = %q, %v", got, err)
	}
	if got := srv.Do(t, "GET", "k"); got != "over tls" {
		t.Fatalf("GET through Do = %q", got)
	}

	// Without the CA, or without TLS, the server is not reachable.
	noCA := redis.NewClient(&redis.Options{Addr: srv.Addr, TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}, MaxRetries: -1})
	t.Cleanup(func() { noCA.Close() })
	var unknown x509.UnknownAuthorityError
	if err := noCA.Ping(ctx).Err(); !errors.As(err, &unknown) {
		t.Fatalf("PING with the system roots: %v; want an unknown authority", err)
	}
	plain := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { plain.Close() })
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Fatal("PING without TLS answered")
	}
}

func TestServerStopRestartPause(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "maxmemory 10mb")
	if got := srv.Do(t, "CONFIG", "GET", "maxmemory"); got != "maxmemory\n10485760" {
		t.Fatalf("CONFIG GET maxmemory = %q", got)
	}
	srv.Do(t, "SET", "k", "v")
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	ctx := ctxFor(t, 10*time.Second)

	srv.Pause()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered while paused")
	}
	srv.Resume()
	if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET after Resume = %q, %v", got, err)
	}

	port := srv.Port
	srv.Stop()
	srv.Stop()
	if _, err := srv.Command("PING"); err == nil {
		t.Fatal("PING answered after Stop")
	}
	srv.Restart(t)
	if srv.Port != port {
		t.Fatalf("port %d after Restart, was %d", srv.Port, port)
	}
	if got := srv.Do(t, "PING"); got != "PONG" {
		t.Fatalf("PING after Restart = %q", got)
	}
	if got := srv.Do(t, "EXISTS", "k"); got != "0" {
		t.Fatalf("EXISTS k after Restart = %q; data should not persist", got)
	}
	srv.Pause()
	srv.Stop() // a paused process stops too
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	sn := redistest.StartSentinel(t)
	if got := sn.MasterAddr(t); got != sn.Master.Addr {
		t.Fatalf("MasterAddr = %s, want %s", got, sn.Master.Addr)
	}
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    sn.MasterName,
		SentinelAddrs: sn.SentinelAddrs,
		DialTimeout:   time.Second,
		ReadTimeout:   time.Second,
		WriteTimeout:  time.Second,
	})
	t.Cleanup(func() { rdb.Close() })
	ctx := ctxFor(t, 25*time.Second)

	if err := rdb.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatalf("SET before failover: %v", err)
	}
	if got, err := rdb.Get(ctx, "before").Result(); err != nil || got != "1" {
		t.Fatalf("GET before failover = %q, %v", got, err)
	}

	old := sn.Master.Addr
	start := time.Now()
	addr := sn.Failover(t)
	t.Logf("failover from %s to %s took %v", old, addr, time.Since(start))
	if addr == old || addr != sn.Master.Addr || sn.Replica.Addr != old {
		t.Fatalf("Failover = %s; Master %s, Replica %s, old master %s", addr, sn.Master.Addr, sn.Replica.Addr, old)
	}
	if got := sn.MasterAddr(t); got != addr {
		t.Fatalf("MasterAddr after failover = %s, want %s", got, addr)
	}

	// The client learns of the new master from the sentinels. Until then
	// its writes may fail or land on the former master, so retry until a
	// write is seen on the new master.
	start = time.Now()
	deadline := start.Add(15 * time.Second)
	for i := 0; ; i++ {
		val := strconv.Itoa(i)
		err := rdb.Set(ctx, "after", val, 0).Err()
		if err == nil {
			if got, _ := sn.Master.Command("GET", "after"); got == val {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write reached the new master %s; last error: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("client switched after %v", time.Since(start))
	if got, err := rdb.Get(ctx, "after").Result(); err != nil || got != sn.Master.Do(t, "GET", "after") {
		t.Fatalf("GET after failover = %q, %v", got, err)
	}
}

func TestClusterShards(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { rdb.Close() })
	ctx := ctxFor(t, 15*time.Second)

	// One key, also used as a channel, per shard.
	keys := map[string]string{} // master address -> key
	for i := 0; len(keys) < len(c.Nodes); i++ {
		if i == 1000 {
			t.Fatalf("keys cover only the shards %v", keys)
		}
		key := fmt.Sprintf("key-%d", i)
		m, err := rdb.MasterForKey(ctx, key)
		if err != nil {
			t.Fatalf("MasterForKey(%s): %v", key, err)
		}
		if addr := m.Options().Addr; keys[addr] == "" {
			keys[addr] = key
		}
	}

	for _, n := range c.Nodes {
		key := keys[n.Addr]
		if key == "" {
			t.Fatalf("no key maps to node %s (shards %v)", n.Addr, keys)
		}
		if err := rdb.Set(ctx, key, n.Addr, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		if got, err := rdb.Get(ctx, key).Result(); err != nil || got != n.Addr {
			t.Fatalf("GET %s = %q, %v", key, got, err)
		}
		if got := n.Do(t, "GET", key); got != n.Addr {
			t.Fatalf("GET %s on node %s = %q", key, n.Addr, got)
		}
	}

	// A cluster PubSub connects to the shard of its first channel, so
	// each shard gets its own.
	subs := map[string]*redis.PubSub{}
	for addr, ch := range keys {
		sub := rdb.SSubscribe(ctx, ch)
		t.Cleanup(func() { sub.Close() })
		if _, err := sub.Receive(ctx); err != nil {
			t.Fatalf("SSUBSCRIBE %s: %v", ch, err)
		}
		subs[addr] = sub
	}
	for addr, ch := range keys {
		n, err := rdb.SPublish(ctx, ch, "to "+addr).Result()
		if err != nil || n != 1 {
			t.Fatalf("SPUBLISH %s = %d, %v; want 1 receiver", ch, n, err)
		}
	}
	for addr, ch := range keys {
		msg, err := subs[addr].ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("shard %s: %v", addr, err)
		}
		if msg.Channel != ch || msg.Payload != "to "+addr {
			t.Fatalf("shard %s: message %q on %q", addr, msg.Payload, msg.Channel)
		}
	}
	if !slices.Equal(slices.Sorted(maps.Keys(keys)), slices.Sorted(slices.Values(c.Addrs))) {
		t.Fatalf("shards %v, nodes %v", keys, c.Addrs)
	}
}
