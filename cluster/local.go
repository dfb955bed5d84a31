// Package cluster carries events between the nodes of a cluster. It is the
// only package that imports go-redis. Local is the single-node broker.
package cluster

import "github.com/reverbgo/reverb/pusher"

// Local is the broker of a server that runs alone: there are no other nodes,
// so Publish does nothing. It is goroutine-safe.
type Local struct{}

// NewLocal returns the single-node broker.
func NewLocal() *Local { return &Local{} }

// Publish implements pusher.Broker; a single node has nobody to tell.
func (*Local) Publish(*pusher.App, string, []byte, string) {}

var _ pusher.Broker = (*Local)(nil)
