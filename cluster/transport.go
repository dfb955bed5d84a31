package cluster

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// outMsg is one envelope to publish on one bus channel.
type outMsg struct {
	channel string
	payload []byte
	kind    kind
	// cache is set for events of cache channels: the broker stores the
	// event itself when the publish fails (its echo will not come back).
	cache *cacheEvent
}

// receiver is what a transport reports to. Its methods may be called from
// several goroutines at once (one per Redis shard) but, for one bus
// channel, in the order Redis delivered.
type receiver interface {
	// onMessage is an envelope received on a bus channel. payload must not
	// be modified; it may be kept.
	onMessage(channel string, payload []byte)
	// onSubscribed confirms a subscription to a bus channel (also after a
	// reconnection re-subscribed it).
	onSubscribed(channel string)
	// onError says a subscription connection failed (lost is true: the
	// transport reconnects by itself and confirms the channels again) or
	// went silent (lost is false: it may come back as it was).
	onError(err error, lost bool)
	// onAlive says something was received.
	onAlive()
}

// transport is the bus the nodes share: pub/sub channels with the ordering
// Redis gives (per subscriber connection, in the order the publishes were
// executed). Implementations are goroutine-safe.
type transport interface {
	// publish sends every message, in order, in as few round trips as it
	// can; an error means some may not have been sent.
	publish(ctx context.Context, msgs []outMsg) error
	// subscribe starts listening on channels; each is confirmed through
	// receiver.onSubscribed.
	subscribe(ctx context.Context, channels []string) error
	// unsubscribe stops listening on channels.
	unsubscribe(ctx context.Context, channels []string) error
	// start begins receiving; it returns at once.
	start(r receiver)
	// close stops receiving and releases the connections.
	close() error
}

// redisTransport is the transport over go-redis: plain pub/sub on one
// connection for single Redis and Sentinel, sharded pub/sub
// (SPUBLISH/SSUBSCRIBE) with one connection per shard for Redis Cluster.
type redisTransport struct {
	rdb     redis.UniversalClient
	cc      *redis.ClusterClient // nil unless Redis Cluster
	idle    time.Duration        // silence after which a connection is checked
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
	r       receiver

	mu     sync.Mutex
	ps     *redis.PubSub            // single and Sentinel
	shards map[string]*redis.PubSub // Redis Cluster: by master address
	where  map[string]*redis.PubSub // Redis Cluster: channel → its shard's PubSub
}

func newRedisTransport(rdb redis.UniversalClient, idle time.Duration) *redisTransport {
	ctx, cancel := context.WithCancel(context.Background())
	t := &redisTransport{rdb: rdb, idle: idle, ctx: ctx, cancel: cancel}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		t.cc = cc
		t.shards = make(map[string]*redis.PubSub)
		t.where = make(map[string]*redis.PubSub)
	}
	return t
}

func (t *redisTransport) publish(ctx context.Context, msgs []outMsg) error {
	if len(msgs) == 1 {
		if t.cc != nil {
			return t.rdb.SPublish(ctx, msgs[0].channel, msgs[0].payload).Err()
		}
		return t.rdb.Publish(ctx, msgs[0].channel, msgs[0].payload).Err()
	}
	pipe := t.rdb.Pipeline()
	for i := range msgs {
		if t.cc != nil {
			pipe.SPublish(ctx, msgs[i].channel, msgs[i].payload)
		} else {
			pipe.Publish(ctx, msgs[i].channel, msgs[i].payload)
		}
	}
	_, err := pipe.Exec(ctx)
	return err
}

func (t *redisTransport) start(r receiver) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.r = r
	t.started = true
	if t.cc == nil {
		t.ps = t.rdb.Subscribe(t.ctx)
		t.runLocked(t.ps)
	}
}

// runLocked starts the receive loop of one PubSub. Called with t.mu held.
func (t *redisTransport) runLocked(ps *redis.PubSub) {
	t.wg.Add(1)
	go t.receive(ps)
}

func (t *redisTransport) receive(ps *redis.PubSub) {
	defer t.wg.Done()
	backoff := 50 * time.Millisecond
	quiet := 0 // receive timeouts in a row
	for {
		msg, err := ps.ReceiveTimeout(t.ctx, t.idle)
		if t.ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && quiet == 0 {
				// Silence: ask the server for a pong; a second silence in a
				// row means the connection is gone.
				quiet++
				_ = ps.Ping(t.ctx)
				continue
			}
			quiet = 0
			t.r.onError(err, !(errors.As(err, &ne) && ne.Timeout()))
			select {
			case <-t.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		quiet = 0
		backoff = 50 * time.Millisecond
		t.r.onAlive()
		switch m := msg.(type) {
		case *redis.Message:
			// The payload string is never modified: view it as bytes.
			t.r.onMessage(m.Channel, unsafe.Slice(unsafe.StringData(m.Payload), len(m.Payload)))
		case *redis.Subscription:
			if m.Kind == "subscribe" || m.Kind == "ssubscribe" {
				t.r.onSubscribed(m.Channel)
			}
		case *redis.Pong:
		}
	}
}

func (t *redisTransport) subscribe(ctx context.Context, channels []string) error {
	if t.cc == nil {
		t.mu.Lock()
		ps := t.ps
		t.mu.Unlock()
		return ps.Subscribe(ctx, channels...)
	}
	var firstErr error
	for _, ch := range channels {
		if err := t.ssubscribe(ctx, ch); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// ssubscribe adds a channel to the PubSub of the shard that owns it.
func (t *redisTransport) ssubscribe(ctx context.Context, ch string) error {
	master, err := t.cc.MasterForKey(ctx, ch)
	if err != nil {
		return err
	}
	addr := master.Options().Addr
	t.mu.Lock()
	defer t.mu.Unlock()
	if ps := t.shards[addr]; ps != nil {
		t.where[ch] = ps
		return ps.SSubscribe(ctx, ch)
	}
	// A new shard: its PubSub connects to the owner of its first channel,
	// and later channels are those of the same shard.
	ps := t.cc.SSubscribe(ctx, ch)
	t.shards[addr] = ps
	t.where[ch] = ps
	if t.started {
		t.runLocked(ps)
	}
	return nil
}

func (t *redisTransport) unsubscribe(ctx context.Context, channels []string) error {
	if t.cc == nil {
		t.mu.Lock()
		ps := t.ps
		t.mu.Unlock()
		return ps.Unsubscribe(ctx, channels...)
	}
	var firstErr error
	for _, ch := range channels {
		t.mu.Lock()
		ps := t.where[ch]
		delete(t.where, ch)
		t.mu.Unlock()
		if ps == nil {
			continue
		}
		if err := ps.SUnsubscribe(ctx, ch); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

func (t *redisTransport) close() error {
	t.cancel()
	t.mu.Lock()
	if t.ps != nil {
		_ = t.ps.Close()
	}
	for _, ps := range t.shards {
		_ = ps.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	return t.rdb.Close()
}
