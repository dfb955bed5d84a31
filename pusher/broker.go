package pusher

import (
	"context"
	"errors"
)

// Broker carries events and presence between the nodes of a cluster. The
// server delivers every event to its own subscribers itself and hands it to
// the broker for the other nodes. Implementations must be goroutine-safe,
// and every method but Gather must return at once, without waiting on the
// network.
type Broker interface {
	// Publish queues event messages (the JSON a subscriber receives) of app
	// for the other nodes, all of them or none. It fails with ErrBusy, having
	// queued nothing, when the cross-node queue is full: the caller refuses
	// the work (the HTTP API answers 503) instead of losing it. It fails with
	// ErrUnreachable when the cluster cannot be reached now: the events are
	// for this node alone (and counted as dropped by the broker). Otherwise
	// the returned channel is closed once the events were handed to every
	// node (Redis executed the publish) or the attempt failed; a nil channel
	// means nothing to wait for.
	Publish(app *App, events []Outgoing) (done <-chan struct{}, err error)
	// PresenceJoin tells the other nodes that this node now has a presence
	// user on a channel (the user's first connection here). It, PresenceLeave
	// and Interest are called in the order the registry changed (per
	// channel), outside the registry's locks but before the next change of
	// the channel's stripe is told: they must only queue, and must not call
	// back into the server from the calling goroutine.
	PresenceJoin(app *App, channel string, m PresenceMember)
	// PresenceLeave tells the other nodes that the user's last connection on
	// this node left the channel.
	PresenceLeave(app *App, channel string, key string)
	// Interest says that this node now has subscribers of a channel (on) or
	// has none any more (!on), so that the broker receives the channel's
	// events from other nodes only while they are wanted.
	Interest(app *App, channel string, on bool)
	// Await reports whether a subscription to channel made now is complete:
	// it will receive every event published after its answer, and for a
	// cache channel every event acknowledged to a publisher before has been
	// applied to this node's cache. When it is not, Await returns false and
	// calls done exactly once, from any goroutine, when it is (or when the
	// broker gives up waiting, for example because Redis is unreachable).
	Await(app *App, channel string, done func()) bool
	// Terminate asks the other nodes to close the connections of a user.
	Terminate(app *App, userID string)
	// Gather asks the other live nodes to answer q and returns their replies,
	// waiting at most the broker's gathering timeout.
	Gather(ctx context.Context, app *App, q Query) []Reply
	// PublishCount hands a channel's cluster-wide subscription count (from
	// Tracker.Count) to the other nodes, which call Node.DeliverCount. It
	// only queues; a count that cannot be sent is dropped and counted, the
	// next change sends a newer one.
	PublishCount(app *App, channel string, total int64, seq uint64)
	// PublishOnline tells the other nodes that a user's first connection in
	// the cluster signed in (online) or their last one left (!online); they
	// call Node.DeliverOnline. It only queues.
	PublishOnline(app *App, userID string, online bool)
}

// Outgoing is one event message for the other nodes.
type Outgoing struct {
	// Channel is the channel the event is for.
	Channel string
	// Msg is the event as subscribers receive it (JSON).
	Msg []byte
	// Except is the socket id that must not receive it, or "".
	Except string
}

// Errors of Broker.Publish.
var (
	// ErrBusy: the cross-node queue is full; nothing was queued. The HTTP
	// API answers 503 with Retry-After.
	ErrBusy = errors.New("pusher: cross-node queue full")
	// ErrUnreachable: the other nodes cannot be reached now (Redis is down);
	// the events are delivered on this node only.
	ErrUnreachable = errors.New("pusher: cluster unreachable")
)

// NopBroker is the Broker of a server that runs alone.
type NopBroker struct{}

// Publish implements Broker: there is nobody to tell.
func (NopBroker) Publish(*App, []Outgoing) (<-chan struct{}, error) { return nil, nil }

// PresenceJoin implements Broker.
func (NopBroker) PresenceJoin(*App, string, PresenceMember) {}

// PresenceLeave implements Broker.
func (NopBroker) PresenceLeave(*App, string, string) {}

// Interest implements Broker.
func (NopBroker) Interest(*App, string, bool) {}

// Await implements Broker: a lone node is always complete.
func (NopBroker) Await(*App, string, func()) bool { return true }

// Terminate implements Broker.
func (NopBroker) Terminate(*App, string) {}

// PublishCount implements Broker.
func (NopBroker) PublishCount(*App, string, int64, uint64) {}

// PublishOnline implements Broker.
func (NopBroker) PublishOnline(*App, string, bool) {}

// Gather implements Broker: there is nobody to ask.
func (NopBroker) Gather(context.Context, *App, Query) []Reply { return nil }
