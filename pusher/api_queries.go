package pusher

import (
	"encoding/json"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// appendCounts writes {"user_count":N} / {"subscription_count":N} as asked,
// user_count only for presence channels and subscription_count only for the
// others (Reverb's and Pusher's rule); withOccupied adds "occupied" first.
// counts is the cluster's answer gathered for the request.
func (srv *Server) appendCounts(b []byte, app *App, name string, counts Reply, want []string, withOccupied bool) []byte {
	info, _ := srv.hub.info(app, name)
	subs := counts.Subscriptions[name]
	occupied := subs > 0
	b = append(b, '{')
	n := 0
	sep := func() {
		if n > 0 {
			b = append(b, ',')
		}
		n++
	}
	if withOccupied {
		sep()
		b = append(b, `"occupied":`...)
		b = strconv.AppendBool(b, occupied)
	}
	if occupied {
		presence := info.Kind == KindPresence
		if !presence && has(want, "subscription_count") {
			sep()
			b = append(b, `"subscription_count":`...)
			b = strconv.AppendInt(b, int64(subs), 10)
		}
		if presence && has(want, "user_count") {
			sep()
			b = append(b, `"user_count":`...)
			b = strconv.AppendInt(b, int64(len(counts.Users[name])), 10)
		}
		if info.Cache && info.Cached != nil && has(want, "cache") {
			sep()
			b = append(b, `"cache":`...)
			b = append(b, info.Cached...)
		}
	}
	return append(b, '}')
}

func has(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}

func (srv *Server) apiChannels(app *App, q url.Values) APIResponse {
	want := strings.Split(q.Get("info"), ",")
	counts := srv.gather(app, Query{Kind: QuerySubscriptions, Prefix: q.Get("filter_by_prefix"), Users: has(want, "user_count")})
	names := make([]string, 0, len(counts.Subscriptions))
	for name := range counts.Subscriptions {
		names = append(names, name)
	}
	sort.Strings(names)
	out := []byte(`{"channels":{`)
	for i, name := range names {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendJSONString(out, name)
		out = append(out, ':')
		out = srv.appendCounts(out, app, name, counts, want, false)
	}
	return APIResponse{Status: 200, Body: append(out, "}}"...)}
}

func (srv *Server) apiChannel(app *App, name string, q url.Values) APIResponse {
	want := strings.Split(q.Get("info"), ",")
	counts := srv.gather(app, Query{Kind: QuerySubscriptions, Channels: []string{name}, Users: has(want, "user_count")})
	return APIResponse{Status: 200, Body: srv.appendCounts(nil, app, name, counts, want, true)}
}

func (srv *Server) apiUsers(app *App, name string) APIResponse {
	if kind, _ := Classify(name); kind != KindPresence {
		return ErrorResponse(400, "Only presence channels have users.")
	}
	// Asked of every node, so that a user whose client was told it joined
	// (or left) is listed (or not) through any node at once.
	users := srv.gather(app, Query{Kind: QueryUsers, Channels: []string{name}, Users: true}).Users[name]
	if len(users) == 0 {
		return ErrorResponse(404, "Channel not found.")
	}
	// In the order this node saw the users join, then the others by key.
	ids, _ := srv.hub.users(app, name)
	seen := make(map[string]bool, len(users))
	out := []byte(`{"users":[`)
	n := 0
	add := func(id json.RawMessage) {
		if n > 0 {
			out = append(out, ',')
		}
		n++
		out = append(out, `{"id":`...)
		out = append(out, id...)
		out = append(out, '}')
	}
	for _, id := range ids {
		key := userKey(id)
		if _, ok := users[key]; ok && !seen[key] {
			seen[key] = true
			add(id)
		}
	}
	rest := make([]string, 0, len(users)-len(seen))
	for key := range users {
		if !seen[key] {
			rest = append(rest, key)
		}
	}
	sort.Strings(rest)
	for _, key := range rest {
		add(users[key])
	}
	return APIResponse{Status: 200, Body: append(out, "]}"...)}
}

// userKey is the identity of a user_id as sent: a JSON string's value or a
// number's text.
func userKey(id json.RawMessage) string {
	if s, ok := jsonString(id); ok {
		return s
	}
	return string(id)
}
