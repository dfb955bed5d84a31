// Package cluster carries events, presence and queries between the nodes of
// a cluster over Redis pub/sub. It is the only package that imports go-redis.
package cluster
