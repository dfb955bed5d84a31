package metrics

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/reverbgo/reverb/pusher"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// appJSON is one app's figures in /api/stats (and the totals, without
// app_id).
type appJSON struct {
	AppID            string `json:"app_id,omitempty"`
	Connections      int64  `json:"connections"`
	Subscribed       int64  `json:"subscribed"`
	Channels         int    `json:"channels"`
	MessagesReceived int64  `json:"messages_received"`
	MessagesSent     int64  `json:"messages_sent"`
	BytesReceived    int64  `json:"bytes_received"`
	BytesSent        int64  `json:"bytes_sent"`
}

func (a *appJSON) add(b appJSON) {
	a.Connections += b.Connections
	a.Subscribed += b.Subscribed
	a.Channels += b.Channels
	a.MessagesReceived += b.MessagesReceived
	a.MessagesSent += b.MessagesSent
	a.BytesReceived += b.BytesReceived
	a.BytesSent += b.BytesSent
}

type countersJSON struct {
	HandshakeFailures       map[string]int64 `json:"handshake_failures"`
	ServerCloses            map[string]int64 `json:"server_closes"`
	ErrorsSent              map[string]int64 `json:"errors_sent"`
	SlowConsumerDisconnects int64            `json:"slow_consumer_disconnects"`
	RateLimitedMessages     int64            `json:"rate_limited_messages"`
	ClientEventsDropped     int64            `json:"client_events_dropped"`
	ConnectionsRefused      int64            `json:"connections_refused"`
	APIQueueFull            int64            `json:"api_queue_full"`
}

// statsJSON is the body of /api/stats. Counters are totals since the
// process started; the dashboard computes rates from the deltas between two
// polls and Time.
type statsJSON struct {
	Time        int64         `json:"time"` // Unix milliseconds when the figures were gathered
	Node        string        `json:"node"` // this node's id (Nodes[0].ID)
	Status      string        `json:"status"`
	Connections int           `json:"connections"` // open TCP connections, WebSocket and HTTP
	Loops       int           `json:"loops"`
	Totals      appJSON       `json:"totals"`
	Apps        []appJSON     `json:"apps"`
	Counters    countersJSON  `json:"counters"`
	Nodes       []Node        `json:"nodes"`
	Cluster     *ClusterStats `json:"cluster,omitempty"`
	Webhooks    *WebhookStats `json:"webhooks,omitempty"`
}

func intKeys(m map[int]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[strconv.Itoa(k)] = v
	}
	return out
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	st, at := s.snapshot()
	status := s.status()
	out := statsJSON{
		Time:        at.UnixMilli(),
		Node:        s.opts.NodeID,
		Status:      status,
		Connections: st.Connections,
		Loops:       st.Loops,
		Apps:        make([]appJSON, 0, len(st.Apps)),
		Counters: countersJSON{
			HandshakeFailures:       st.HandshakeFailures,
			ServerCloses:            intKeys(st.Closes),
			ErrorsSent:              intKeys(st.Errors),
			SlowConsumerDisconnects: st.SlowConsumerCloses,
			RateLimitedMessages:     st.RateLimited,
			ClientEventsDropped:     st.ClientEventsDropped,
			ConnectionsRefused:      st.Refused,
			APIQueueFull:            st.APIBusy,
		},
	}
	for _, a := range st.Apps {
		aj := appJSON{
			AppID: a.AppID, Connections: a.Connections, Subscribed: a.Subscribed, Channels: a.Channels,
			MessagesReceived: a.MessagesReceived, MessagesSent: a.MessagesSent,
			BytesReceived: a.BytesReceived, BytesSent: a.BytesSent,
		}
		out.Apps = append(out.Apps, aj)
		out.Totals.add(aj)
	}
	self := Node{
		ID: s.opts.NodeID, Hostname: s.hostname, Self: true,
		Version: s.opts.Version, GoVersion: runtime.Version(),
		StartedAt: processStart.UTC().Truncate(time.Second), UptimeSeconds: time.Since(processStart).Seconds(),
		Loops: st.Loops, Connections: st.Connections, Status: status,
	}
	if status != "starting" {
		self.Address = s.srv.Addr()
	}
	out.Nodes = []Node{self}
	if f := s.peers.Load(); f != nil {
		ctx, cancel := context.WithTimeout(r.Context(), s.opts.StatsTimeout)
		out.Nodes = append(out.Nodes, (*f)(ctx)...)
		cancel()
	}
	if f := s.cluster.Load(); f != nil {
		cs := (*f)()
		out.Cluster = &cs
	}
	if f := s.webhooks.Load(); f != nil {
		ws := (*f)()
		out.Webhooks = &ws
	}
	writeJSON(w, http.StatusOK, out)
}

// memberJSON is one presence member; Info only with info=1.
type memberJSON struct {
	ID   json.RawMessage `json:"id"`
	Info json.RawMessage `json:"info,omitempty"`
}

type channelJSON struct {
	Name              string       `json:"name"`
	Kind              string       `json:"kind"` // public, private, presence, user
	Cache             bool         `json:"cache"`
	SubscriptionCount int          `json:"subscription_count"`
	UserCount         int          `json:"user_count"`        // presence channels only
	Members           []memberJSON `json:"members,omitempty"` // presence channels only
}

// channelsJSON is the body of /api/channels.
type channelsJSON struct {
	AppID     string        `json:"app_id"`
	Total     int           `json:"total"`     // occupied channels matching prefix
	Truncated bool          `json:"truncated"` // true when Total > len(Channels)
	Channels  []channelJSON `json:"channels"`  // most subscribers first, then by name
}

// handleChannels serves /api/channels?app_id=ID[&prefix=P][&limit=N][&info=1]:
// the app's occupied channels on this node, most subscribed first, with the
// members (user ids; user_info too with info=1) of presence channels.
func (s *Server) handleChannels(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id := q.Get("app_id")
	if id == "" && len(s.px.Apps()) == 1 {
		id = s.px.Apps()[0].ID
	}
	app := s.px.AppByID(id)
	if app == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "No matching application for ID [" + id + "]."})
		return
	}
	limit := defaultChannelLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a positive integer"})
			return
		}
		limit = min(n, maxChannelLimit)
	}
	withInfo := q.Get("info") == "1" || q.Get("info") == "true"
	list := s.px.Channels(app, q.Get("prefix"))
	slices.SortStableFunc(list, func(a, b pusher.ChannelInfo) int {
		return cmp.Compare(b.SubscriptionCount, a.SubscriptionCount) // list is sorted by name already
	})
	out := channelsJSON{AppID: app.ID, Total: len(list), Truncated: len(list) > limit, Channels: []channelJSON{}}
	for _, c := range list[:min(limit, len(list))] {
		cj := channelJSON{Name: c.Name, Kind: c.Kind.String(), Cache: c.Cache, SubscriptionCount: c.SubscriptionCount}
		if c.Kind == pusher.KindPresence {
			cj.UserCount = c.UserCount
			for _, m := range s.px.Members(app, c.Name) {
				mj := memberJSON{ID: m.ID}
				if withInfo {
					mj.Info = m.Info
				}
				cj.Members = append(cj.Members, mj)
			}
		}
		out.Channels = append(out.Channels, cj)
	}
	writeJSON(w, http.StatusOK, out)
}
