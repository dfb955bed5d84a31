package cluster

import (
	"context"
	"errors"
	"net"
	"strings"
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

	// sentinel, in Sentinel mode, watches for failovers: go-redis moves
	// its command connections to the new master but not a subscription
	// connection, which would keep listening to the old one.
	sentinel *sentinelWatch

	mu       sync.Mutex
	ps       *redis.PubSub            // single and Sentinel
	direct   *redis.Client            // Sentinel, after a failover: the client of ps
	channels map[string]struct{}      // single and Sentinel: subscribed channels
	shards   map[string]*redis.PubSub // Redis Cluster: by master address
	where    map[string]*redis.PubSub // Redis Cluster: channel → its shard's PubSub
}

func newRedisTransport(rdb redis.UniversalClient, idle time.Duration) *redisTransport {
	ctx, cancel := context.WithCancel(context.Background())
	t := &redisTransport{rdb: rdb, idle: idle, ctx: ctx, cancel: cancel, channels: make(map[string]struct{})}
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
	if t.sentinel != nil {
		t.wg.Add(1)
		go t.watchSentinels()
	}
}

// current reports whether ps is the subscription in use.
func (t *redisTransport) current(ps *redis.PubSub) bool {
	if t.cc != nil {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ps == ps
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
		if t.ctx.Err() != nil || (err != nil && !t.current(ps)) {
			return // stopped, or replaced after a failover
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
		for _, ch := range channels {
			t.channels[ch] = struct{}{}
		}
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
		for _, ch := range channels {
			delete(t.channels, ch)
		}
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
	if t.direct != nil {
		_ = t.direct.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	return t.rdb.Close()
}

// sentinelWatch names the sentinels to watch for failovers.
type sentinelWatch struct {
	addrs      []string
	masterName string
	opts       redis.Options // credentials, TLS and timeouts for the sentinels
	master     redis.Options // the same for the data nodes (Addr set per master)
}

// watchSentinels listens for +switch-master on one sentinel at a time and
// moves the subscription to the new master when the watched set fails over.
func (t *redisTransport) watchSentinels() {
	defer t.wg.Done()
	backoff := 100 * time.Millisecond
	for i := 0; t.ctx.Err() == nil; i++ {
		opts := t.sentinel.opts
		opts.Addr = t.sentinel.addrs[i%len(t.sentinel.addrs)]
		sc := redis.NewSentinelClient(&opts)
		ps := sc.Subscribe(t.ctx, "+switch-master")
		for {
			msg, err := ps.ReceiveTimeout(t.ctx, t.idle)
			if t.ctx.Err() != nil {
				break
			}
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					if ps.Ping(t.ctx) == nil {
						continue
					}
				}
				break
			}
			backoff = 100 * time.Millisecond
			// "<name> <old ip> <old port> <new ip> <new port>"
			if m, ok := msg.(*redis.Message); ok {
				if f := strings.Fields(m.Payload); len(f) == 5 && f[0] == t.sentinel.masterName {
					t.resubscribe(net.JoinHostPort(f[3], f[4]))
				}
			}
		}
		_ = ps.Close()
		_ = sc.Close()
		select {
		case <-t.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// errFailover is reported when the subscription moves to a new master.
var errFailover = errors.New("cluster: Redis master failed over; subscribing on the new master")

// resubscribe replaces the subscription connection by one to the new
// master at addr and subscribes every channel again. It dials addr itself:
// the sentinel that go-redis asks for the master may not know of the
// failover yet.
func (t *redisTransport) resubscribe(addr string) {
	opts := t.sentinel.master
	opts.Addr = addr
	direct := redis.NewClient(&opts)
	t.mu.Lock()
	old, oldDirect := t.ps, t.direct
	t.direct = direct
	t.ps = direct.Subscribe(t.ctx)
	chans := make([]string, 0, len(t.channels))
	for ch := range t.channels {
		chans = append(chans, ch)
	}
	ps := t.ps
	t.runLocked(ps)
	t.mu.Unlock()
	_ = old.Close()
	if oldDirect != nil {
		_ = oldDirect.Close()
	}
	t.r.onError(errFailover, true)
	if len(chans) > 0 {
		ctx, cancel := context.WithTimeout(t.ctx, 2*time.Second)
		_ = ps.Subscribe(ctx, chans...)
		cancel()
	}
}
