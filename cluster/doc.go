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
//	control.go    heartbeats with presence digests, presence sync, queries, terminate, restart
//	transport.go  plain pub/sub (single, Sentinel, following failovers) or sharded pub/sub
//	              with one connection per shard (Redis Cluster)
//
// All exported methods are goroutine-safe; none blocks a loop.
package cluster
