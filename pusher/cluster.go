package pusher

import (
	"context"
	"encoding/json"
)

// Node is what a Broker calls on this node's engine: the one contract
// between the cluster and the protocol engine, so that the broker never
// reaches into the Server. *Server implements it; every method is
// goroutine-safe and none waits on the network.
type Node interface {
	// Apps returns the apps this node serves.
	Apps() []*App
	// DeliverRemote delivers an event another node published.
	DeliverRemote(app *App, channel string, msg []byte, except string)
	// StoreCache keeps a cache channel's last event, in the cluster's order.
	StoreCache(app *App, channel string, msg []byte)
	// RemotePresenceJoin and RemotePresenceLeave apply another node's
	// presence changes; ReplaceNodePresence its whole state; DropNode
	// forgets it.
	RemotePresenceJoin(node string, app *App, channel string, m PresenceMember)
	RemotePresenceLeave(node string, app *App, channel, key string)
	ReplaceNodePresence(node string, state []PresenceChange)
	DropNode(node string)
	// WithLocalPresence and WithLocalDigest hand this node's presence state
	// (or its digests) to fn, with no presence change slipping in meanwhile.
	WithLocalPresence(fn func([]PresenceChange))
	WithLocalDigest(fn func(map[string]PresenceDigest))
	// NodeDigest is the digest of what this node knows of another node.
	NodeDigest(node string) map[string]PresenceDigest
	// Answer computes this node's reply to a cluster-wide query.
	Answer(app *App, q Query) Reply
	// TerminateLocal closes this node's connections of a user.
	TerminateLocal(app *App, id string)
	// DeliverCount applies a channel's cluster-wide subscription count that
	// a node published (Broker.PublishCount): a count older (by seq) than
	// one already applied is ignored.
	DeliverCount(app *App, channel string, total int64, seq uint64)
	// DeliverOnline tells this node's watchlist watchers that a user came
	// online or went offline in the cluster (Broker.PublishOnline).
	DeliverOnline(app *App, userID string, online bool)
	// KeyReleased is called by a Tracker that released, on behalf of a node
	// that stopped or died, a key that node held: the key is now held
	// nowhere (its delay passed). The engine announces it as it announces
	// its own releases (channel_vacated, member_removed, offline).
	KeyReleased(app *App, key string)
	// KeyCounted is called by a Tracker that removed a stopped or dead
	// node's share of a counter: total and seq are its new value, announced
	// as the engine announces its own counts.
	KeyCounted(app *App, key string, total int64, seq uint64)
}

var _ Node = (*Server)(nil)

// RemotePresenceJoin records that another node has a presence user on a
// channel and announces member_added locally when the user is new to the
// channel. Goroutine-safe.
func (srv *Server) RemotePresenceJoin(node string, app *App, channel string, m PresenceMember) {
	if seq := srv.hub.remoteJoin(node, app, channel, m); seq != 0 {
		srv.announceAdded(PresenceChange{App: app, Channel: channel, Member: m}, seq)
	}
}

// RemotePresenceLeave records that another node no longer has a presence
// user and announces member_removed locally when the user left the channel
// everywhere. Goroutine-safe.
func (srv *Server) RemotePresenceLeave(node string, app *App, channel, key string) {
	if m, seq := srv.hub.remoteLeave(node, app, channel, key); m != nil {
		srv.announceRemoved(app, channel, m.id, "", seq)
	}
}

// ReplaceNodePresence replaces all that is known of another node's presence
// users (after it announced itself, or after a resync) and announces the
// differences locally. Goroutine-safe.
func (srv *Server) ReplaceNodePresence(node string, state []PresenceChange) {
	added, removed := srv.hub.replaceNode(node, state)
	for _, c := range removed {
		srv.announceRemoved(c.App, c.Channel, c.Member.ID, "", c.seq)
	}
	for _, c := range added {
		srv.announceAdded(c.PresenceChange, c.seq)
	}
}

// DropNode forgets another node (it stopped or stopped answering): its
// presence users who are connected nowhere else are announced as removed.
// Goroutine-safe.
func (srv *Server) DropNode(node string) {
	for _, c := range srv.hub.dropNode(node) {
		srv.announceRemoved(c.App, c.Channel, c.Member.ID, "", c.seq)
	}
}

// WithLocalPresence calls fn with the presence users connected to this node,
// for other nodes to replicate. No presence change of this node reaches the
// broker while fn runs, so fn may queue the state knowing that later joins
// and leaves follow it. fn must not block or call back into the server.
// Goroutine-safe.
func (srv *Server) WithLocalPresence(fn func([]PresenceChange)) { srv.hub.withLocalPresence(fn) }

// WithLocalDigest calls fn with the digests of this node's own presence
// users by app id (apps without users left out), for other nodes to check their copy against. No presence change of
// this node reaches the broker while fn runs, so fn may queue the digest
// knowing where it stands among the joins and leaves. fn must not block or
// call back into the server. Goroutine-safe.
func (srv *Server) WithLocalDigest(fn func(map[string]PresenceDigest)) { srv.hub.withLocalDigest(fn) }

// NodeDigest returns the digests of what this node knows of another node's
// presence users, by app id. Goroutine-safe.
func (srv *Server) NodeDigest(node string) map[string]PresenceDigest { return srv.hub.nodeDigest(node) }

// TerminateLocal closes this node's connections of a user (see
// TerminateUser), for a request that came from another node. Goroutine-safe.
func (srv *Server) TerminateLocal(app *App, id string) { srv.terminateLocal(app, id) }

// Query asks a node for its local figures (cluster-wide HTTP API answers
// are the sums over the nodes).
type Query struct {
	// Kind is QuerySubscriptions or QueryConnections.
	Kind string `json:"kind"`
	// Channels limits QuerySubscriptions to these channels; when empty, all
	// channels with subscribers whose names start with Prefix are answered.
	Channels []string `json:"channels,omitempty"`
	Prefix   string   `json:"prefix,omitempty"`
	// Users asks also for the node's own presence users of the answered
	// presence channels (Reply.Users).
	Users bool `json:"users,omitempty"`
}

// Query kinds.
const (
	QuerySubscriptions = "subscriptions"
	QueryConnections   = "connections"
	// QueryUsers answers only Reply.Users, for Channels.
	QueryUsers = "users"
)

// Reply is a node's answer to a Query.
type Reply struct {
	// Subscriptions maps channel names to this node's subscription counts
	// (channels without subscribers are left out).
	Subscriptions map[string]int `json:"subscriptions,omitempty"`
	// Connections is the node's count of connections subscribed to at least
	// one channel.
	Connections int64 `json:"connections,omitempty"`
	// Users maps presence channel names to the node's own users of them:
	// user key to user_id as sent (only when Query.Users).
	Users map[string]map[string]json.RawMessage `json:"users,omitempty"`
}

// Answer computes this node's Reply to q. Goroutine-safe.
func (srv *Server) Answer(app *App, q Query) Reply {
	var r Reply
	switch q.Kind {
	case QueryConnections:
		return Reply{Connections: srv.appStats[app].subscribed.Load()}
	case QueryUsers:
	default:
		r.Subscriptions = map[string]int{}
		if len(q.Channels) > 0 {
			for _, name := range q.Channels {
				if info, ok := srv.hub.info(app, name); ok {
					r.Subscriptions[name] = info.SubscriptionCount
				}
			}
		} else {
			for _, info := range srv.hub.list(app, q.Prefix) {
				r.Subscriptions[info.Name] = info.SubscriptionCount
			}
		}
	}
	if q.Users {
		names := q.Channels
		if len(names) == 0 {
			for name := range r.Subscriptions {
				names = append(names, name)
			}
		}
		for _, name := range names {
			if kind, _ := Classify(name); kind != KindPresence {
				continue
			}
			if u := srv.hub.localUsers(app, name); len(u) > 0 {
				if r.Users == nil {
					r.Users = make(map[string]map[string]json.RawMessage)
				}
				r.Users[name] = u
			}
		}
	}
	return r
}

// gather answers q for the whole cluster: this node's reply plus the other
// nodes' replies the broker collected. Goroutine-safe; it may wait for the
// broker's gathering timeout, so never call it on a loop.
func (srv *Server) gather(app *App, q Query) Reply {
	total := srv.Answer(app, q)
	for _, r := range srv.broker.Gather(context.Background(), app, q) {
		total.Connections += r.Connections
		for name, n := range r.Subscriptions {
			if total.Subscriptions == nil {
				total.Subscriptions = map[string]int{}
			}
			total.Subscriptions[name] += n
		}
		for name, users := range r.Users {
			if total.Users == nil {
				total.Users = make(map[string]map[string]json.RawMessage)
			}
			all := total.Users[name]
			if all == nil {
				all = make(map[string]json.RawMessage, len(users))
				total.Users[name] = all
			}
			for k, id := range users {
				all[k] = id
			}
		}
	}
	return total
}
