// Package pusher is the Pusher protocol engine of one node, compatible with
// Laravel Reverb: apps, connections (sessions), channels, presence, channel
// and user authorization, client events, rate limits, cache channels and the
// HTTP API. It does no network I/O of its own: the transport (package loop)
// feeds it WebSocket messages and HTTP API requests and gives it a Conn to
// write frames to; a Broker (package cluster, or NopBroker alone) carries
// events and presence to the other nodes.
//
// # Concurrency
//
// A connection belongs to one event loop, and so does its Session and the
// Shard that holds the loop's sessions. Session and Shard methods are
// loop-only: they run on that loop, without locks, unless they say
// otherwise. Server.Open and Server.Closed run on the loop of the shard
// they are given. Anything else reaches a loop through the exec function its
// Shard was created with, asynchronously: deliveries go through the Shard's
// inbox (Shard.enqueue, goroutine-safe), and Stats, Drain and TerminateUser
// run a function on each loop.
//
// The Server's other exported methods are goroutine-safe: the HTTP API runs
// on a worker pool, the broker calls in from its own goroutines. What they
// share is the channel registry (the hub) and the subscription count state,
// both split into stripes by channel, each stripe with its own lock that is
// never held across I/O, broker or tracker calls (see the hub's type and
// countTable for their rules), and a few atomic counters.
// Apps and Options are immutable once the Server is built. Methods that wait
// for the loops or the cluster (Stats, the HTTP API's gathering) must never
// be called on a loop.
//
// The engine reads the time from Options.Now, so tests drive the clock;
// Shard.Sweep and Server.SweepCaches take it from their caller.
//
// # Where things happen
//
// An event, from its source to the subscribers' sockets:
//
//	api.go          HTTP API /events and /batch_events: validate, then publish
//	clientevent.go  a client-* event from a connection, after its checks
//	publish.go      publish: hand the event to the Broker, then deliver it here;
//	                DeliverRemote: an event another node published
//	registry.go     route: which shards hold subscribers of the channel
//	cache.go        the last event of a cache channel, kept for 30 minutes
//	shard.go        enqueue on each such shard; drain on its loop queues the
//	                shared frame on every subscriber
//	session.go      flush: one Writev per connection, then the outbound cap
//
// A subscription, from the client's message to its answer:
//
//	dispatch.go     HandleMessage: activity, the app's rate limit, decoding,
//	                routing of pusher:* events
//	msgdecode.go    the one-pass decoding of a client message, its data
//	                object and a presence channel_data
//	subscribe.go    handleSubscribe: name, per-second and per-connection
//	                limits, authorization, presence channel_data
//	signature.go    the channel and user signatures
//	registry.go     join: count the subscription, tell the Broker of interest
//	presence.go     the channel's members, here and on the other nodes
//	shard.go        addLocal: the shard's list of the channel's subscribers
//	subscribe.go    completeSubscribe, once the Broker says the node receives
//	                the channel's events: subscription_succeeded, then the
//	                cached event or pusher:cache_miss
//
// The rest: server.go builds the Server and opens and closes sessions;
// signin.go handles pusher:signin; ratelimit.go is the limiter behind the
// three rate limits; shard.go's Sweep pings silent connections and closes
// those that do not answer, reading wheel.go's timing wheel so that it only
// looks at the connections due in the seconds it covers; drain.go is the graceful shutdown; stats.go the
// node's figures and listings; cluster.go what the cluster broker calls
// (presence replication, digests, queries); json.go the JSON encoders and
// decoders shared with the HTTP API; app.go, channel.go, errors.go and
// options.go the apps, channel names, protocol errors and settings.
//
// # Webhooks, subscription counts and watchlists
//
// What must be seen once in the cluster goes through a Tracker (tracker.go):
// the Broker's when it implements one, else the node's own MemoryTracker.
// The registry calls Hold when this node's count of a channel goes 0 -> 1
// (channel_occupied when the key was held nowhere) and Release when it goes
// 1 -> 0 (channel_vacated after Options.VacateDelay, unless held again
// meanwhile); the same for a presence user's first and last local
// connection to a channel (member_added, member_removed, user_id being the
// member's key: the user_id as a string, a number as its text). Both are
// decided under the channel's stripe lock and made after it, in its
// stripe's order, so a key's Hold and Release follow the registry's order; occupied comes before member_added, member_removed
// before vacated. client_event is emitted once the event passed its checks
// and was published (data: a string as sent, else the JSON text), cache_miss
// where pusher:cache_miss is sent. Options.Webhooks' Enabled is asked first;
// nothing is tracked for webhooks nobody receives.
//
// Subscription counts (subcount.go), for App.SubscriptionCounting or the
// subscription_count webhook, cover non-presence channels: each local
// subscribe and unsubscribe adds to Tracker.Count, one call in flight per
// channel on this node, the deltas arriving meanwhile summed into the next
// (an unanswered call is given up after 10 s). The node that made the call
// publishes the total (Broker.PublishCount), applies it as DeliverCount does
// and emits the webhook. DeliverCount drops totals not newer (by seq) than
// the channel's last, and sends pusher_internal:subscription_count to the
// node's subscribers whose subscription_succeeded was sent. On a channel of
// more than 100 subscribers at most one count (and one webhook, on the
// origin node) goes out per 5 s, the last total at the end of the window;
// 100 or fewer go at once. A new subscriber gets the last known total right
// after subscription_succeeded when its answer waited for the broker (a
// count may have passed it by) or the channel is over 100; otherwise the
// count that includes it follows, to every subscriber.
//
// Watchlists (watchlist.go), for App.WatchlistEvents: a user's first local
// signed-in connection holds keyUser(id), its last releases it (no delay);
// the cluster-wide first and last are announced online and offline to the
// other nodes (Broker.PublishOnline) and to this node's watchers
// (DeliverOnline). A signin whose user_data has a "watchlist" (user ids,
// strings or numbers; the first 100 distinct kept, beyond that
// pusher:error 4302 after pusher:signin_success) registers the connection
// as a watcher on its shard's loop and is sent one watchlist_events with
// those already online. A watcher may see "online" twice when a user comes
// online while its signin asks; clients take it as a state.
package pusher
