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
// share is the channel registry (the hub), behind one lock that is never held
// across I/O (see the hub's type for its rules), and a few atomic counters.
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
// those that do not answer; drain.go is the graceful shutdown; stats.go the
// node's figures and listings; cluster.go what the cluster broker calls
// (presence replication, digests, queries); json.go the JSON encoders and
// decoders shared with the HTTP API; app.go, channel.go, errors.go and
// options.go the apps, channel names, protocol errors and settings.
package pusher
