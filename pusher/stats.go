package pusher

import (
	"context"
	"encoding/json"
	"maps"
)

// AppStats are one app's figures on this node.
type AppStats struct {
	AppID string
	// Connections open now, and those subscribed to at least one channel.
	Connections, Subscribed int64
	// Channels occupied now.
	Channels int
	// Messages and bytes received from and sent to clients since start.
	MessagesReceived, MessagesSent, BytesReceived, BytesSent int64
}

// Stats are the node's protocol figures, summed over the loops.
type Stats struct {
	Apps               []AppStats // in the configured order
	SlowConsumerCloses int64
	// FanoutYields counts the times a loop paused a broadcast fan-out after
	// FanoutChunk connections to run other work first.
	FanoutYields        int64
	RateLimited         int64
	ClientEventsDropped int64
	Errors              map[int]int64 // pusher:error events sent, by code
	Closes              map[int]int64 // close frames sent by the server, by code
	// SubscriptionCountEvents counts pusher_internal:subscription_count
	// events sent since start: one per delivery to a channel's subscribers
	// on this node (however many they are), plus one per count sent to a
	// single new subscriber.
	SubscriptionCountEvents int64
	// WatchlistEvents counts pusher_internal:watchlist_events messages sent
	// to connections since start.
	WatchlistEvents int64
	// Deflated counts the outbound frames compressed for permessage-deflate
	// since start: once per broadcast, however many subscribers share it,
	// and once per compressed reply to a single connection.
	Deflated int64
}

// Stats gathers every shard's counters, reading each on its own loop. It
// returns what it has when ctx ends. Goroutine-safe; never call it from a
// loop (it waits for the loops).
func (srv *Server) Stats(ctx context.Context) Stats {
	shards := srv.shardList()
	type snap struct {
		apps           map[*App]appCounters
		slow, rl, ce   int64
		yields         int64
		errors, closes map[int]int64
	}
	ch := make(chan snap, len(shards))
	for _, sh := range shards {
		sh.exec(func() {
			sn := snap{
				apps:   make(map[*App]appCounters, len(sh.stats.apps)),
				slow:   sh.stats.slowConsumerCloses,
				yields: sh.stats.fanoutYields,
				rl:     sh.stats.rateLimited,
				ce:     sh.stats.clientEventsDropped,
				errors: maps.Clone(sh.stats.errors),
				closes: maps.Clone(sh.stats.closes),
			}
			for a, c := range sh.stats.apps {
				sn.apps[a] = *c
			}
			ch <- sn
		})
	}
	out := Stats{
		Errors:                  map[int]int64{},
		Closes:                  map[int]int64{},
		SubscriptionCountEvents: srv.countsSent.Load(),
		WatchlistEvents:         srv.watchSent.Load(),
		Deflated:                deflations.Load(),
	}
	byApp := make(map[*App]*AppStats, len(srv.opts.Apps))
	for _, a := range srv.opts.Apps {
		out.Apps = append(out.Apps, AppStats{AppID: a.ID})
	}
	for i, a := range srv.opts.Apps {
		byApp[a] = &out.Apps[i]
		byApp[a].Subscribed = srv.appStats[a].subscribed.Load()
		byApp[a].Channels = srv.hub.count(a)
	}
	for range shards {
		select {
		case sn := <-ch:
			for a, c := range sn.apps {
				st := byApp[a]
				st.Connections += c.connections
				st.MessagesReceived += c.messagesReceived
				st.MessagesSent += c.messagesSent
				st.BytesReceived += c.bytesReceived
				st.BytesSent += c.bytesSent
			}
			out.SlowConsumerCloses += sn.slow
			out.FanoutYields += sn.yields
			out.RateLimited += sn.rl
			out.ClientEventsDropped += sn.ce
			for k, v := range sn.errors {
				out.Errors[k] += v
			}
			for k, v := range sn.closes {
				out.Closes[k] += v
			}
		case <-ctx.Done():
			return out
		}
	}
	return out
}

// Connections returns the open connections of app on this node.
func (srv *Server) Connections(app *App) int64 { return srv.appStats[app].connections.Load() }

// Channels returns the occupied channels of app on this node whose names
// start with prefix, sorted by name. Goroutine-safe.
func (srv *Server) Channels(app *App, prefix string) []ChannelInfo {
	return srv.hub.list(app, prefix)
}

// Member is one user of a presence channel.
type Member struct {
	ID   json.RawMessage // user_id as the client sent it
	Info json.RawMessage // user_info, or nil
}

// Members returns the users of a presence channel on this node in the order
// they joined. Goroutine-safe.
func (srv *Server) Members(app *App, channel string) []Member {
	return srv.hub.members(app, channel)
}
