package pusher

import (
	"bytes"
	"encoding/json"
	"sync"
)

// maxWatchlist is how many user ids of a watchlist are watched (Pusher's
// limit); the rest are dropped with ErrWatchlistTooLong.
const maxWatchlist = 100

// ErrWatchlistTooLong: a signed-in user's watchlist has more than 100 user
// ids; the first 100 are watched and the signin succeeds.
var ErrWatchlistTooLong = &Error{4302, "Watchlist limit exceeded: only the first 100 user ids are watched"}

// userTable tracks, node-wide, the signed-in users of apps with
// App.WatchlistEvents (how many local connections each has) and which shards
// have watchers of which user ids. Goroutine-safe, behind mu.
type userTable struct {
	mu       sync.Mutex
	signedIn map[localKey]int     // (app, user id) -> local signed-in connections
	watched  map[localKey][]int32 // (app, watched user id) -> watching sessions per shard
}

// shardWatch is one shard's watchers: the sessions that signed in with a
// watchlist. Loop-only (its shard's loop).
type shardWatch struct {
	byUser    map[localKey]map[*Session]struct{} // (app, watched id) -> watchers
	bySession map[*Session]*watchEntry
}

// watchEntry is one session's watchlist.
type watchEntry struct {
	ids []string
}

// parseWatchlist reads a user_data "watchlist": an array of user ids,
// strings or numbers (as their text). Other values and elements are
// ignored. It keeps the first maxWatchlist distinct ids and reports whether
// there were more.
func parseWatchlist(raw json.RawMessage) (ids []string, over bool) {
	var list []json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &list) != nil {
		return nil, false
	}
	seen := make(map[string]bool, min(len(list), maxWatchlist))
	for _, el := range list {
		el = bytes.TrimSpace(el)
		var id string
		switch {
		case len(el) > 0 && el[0] == '"':
			id, _ = jsonString(el)
		case len(el) > 0 && (el[0] == '-' || (el[0] >= '0' && el[0] <= '9')):
			id = string(el)
		}
		if id == "" || seen[id] {
			continue
		}
		if len(ids) == maxWatchlist {
			return ids, true
		}
		seen[id] = true
		ids = append(ids, id)
	}
	return ids, false
}

// signedIn records that session s signed in as id (it was signed in as
// prev, or "") with a watchlist: the user's first local connection holds
// the user in the Tracker (online), and the watchlist's users already
// online are sent to s. Loop-only.
func (srv *Server) signedIn(s *Session, prev, id string, watchlist []string) {
	app := s.app
	if !app.WatchlistEvents {
		return
	}
	if prev != id {
		if prev != "" {
			srv.userLeft(app, prev)
		}
		srv.userJoined(app, id)
	}
	srv.unwatch(s)
	if len(watchlist) == 0 {
		return
	}
	sw := srv.watch[s.shard.idx]
	entry := &watchEntry{ids: watchlist}
	if sw.bySession == nil {
		sw.bySession = make(map[*Session]*watchEntry)
		sw.byUser = make(map[localKey]map[*Session]struct{})
	}
	sw.bySession[s] = entry
	keys := make([]string, len(watchlist))
	u := &srv.users
	u.mu.Lock()
	for i, w := range watchlist {
		k := localKey{app, w}
		set := sw.byUser[k]
		if set == nil {
			set = make(map[*Session]struct{})
			sw.byUser[k] = set
		}
		set[s] = struct{}{}
		per := u.watched[k]
		if per == nil {
			per = make([]int32, len(srv.watch))
			u.watched[k] = per
		}
		per[s.shard.idx]++
		keys[i] = keyUser(w)
	}
	u.mu.Unlock()
	sh := s.shard
	srv.tracker.Holding(app, keys, func(held []bool) {
		var online []string
		for i, h := range held {
			if h && i < len(watchlist) {
				online = append(online, watchlist[i])
			}
		}
		if len(online) == 0 {
			return
		}
		msg := watchlistJSON(true, online)
		sh.exec(func() {
			if !s.closed && sw.bySession[s] == entry {
				srv.watchSent.Add(1)
				s.send(msg)
			}
		})
	})
}

// unwatch forgets session s's watchlist. Loop-only.
func (srv *Server) unwatch(s *Session) {
	sw := srv.watch[s.shard.idx]
	entry := sw.bySession[s]
	if entry == nil {
		return
	}
	delete(sw.bySession, s)
	u := &srv.users
	u.mu.Lock()
	for _, w := range entry.ids {
		k := localKey{s.app, w}
		if set := sw.byUser[k]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(sw.byUser, k)
			}
		}
		if per := u.watched[k]; per != nil {
			per[s.shard.idx]--
			if allZero(per) {
				delete(u.watched, k)
			}
		}
	}
	u.mu.Unlock()
}

func allZero(v []int32) bool {
	for _, n := range v {
		if n != 0 {
			return false
		}
	}
	return true
}

// signedOut releases what a closed session held as a signed-in user.
// Loop-only.
func (srv *Server) signedOut(s *Session) {
	if !s.app.WatchlistEvents || s.user == nil {
		return
	}
	srv.unwatch(s)
	srv.userLeft(s.app, *s.user)
}

// userJoined counts a local signed-in connection of a user; the first one
// holds the user in the Tracker, and if no node held it, the user is
// announced online.
func (srv *Server) userJoined(app *App, id string) {
	u := &srv.users
	u.mu.Lock()
	defer u.mu.Unlock()
	k := localKey{app, id}
	u.signedIn[k]++
	if u.signedIn[k] == 1 {
		srv.tracker.Hold(app, keyUser(id), func(first bool) {
			if first {
				srv.announceOnline(app, id, true)
			}
		})
	}
}

// userLeft counts down a user's local signed-in connections; after the last
// one the user is released, and announced offline if no node holds it.
func (srv *Server) userLeft(app *App, id string) {
	u := &srv.users
	u.mu.Lock()
	defer u.mu.Unlock()
	k := localKey{app, id}
	if u.signedIn[k] <= 0 {
		return
	}
	u.signedIn[k]--
	if u.signedIn[k] == 0 {
		delete(u.signedIn, k)
		srv.tracker.Release(app, keyUser(id), 0, func(last bool) {
			if last {
				srv.announceOnline(app, id, false)
			}
		})
	}
}

// announceOnline tells the other nodes and this node's watchers that a user
// came online or went offline in the cluster.
func (srv *Server) announceOnline(app *App, id string, online bool) {
	srv.broker.PublishOnline(app, id, online)
	srv.DeliverOnline(app, id, online)
}

// DeliverOnline implements Node: every connection of this node signed in
// with a watchlist holding userID gets pusher_internal:watchlist_events
// with one "online" or "offline" event. Apps without
// App.WatchlistEvents are ignored. Goroutine-safe; the sends happen on the
// loops.
func (srv *Server) DeliverOnline(app *App, userID string, online bool) {
	if app == nil || !app.WatchlistEvents {
		return
	}
	k := localKey{app, userID}
	u := &srv.users
	u.mu.Lock()
	per := u.watched[k]
	var shards []int
	for i, n := range per {
		if n > 0 {
			shards = append(shards, i)
		}
	}
	u.mu.Unlock()
	if len(shards) == 0 {
		return
	}
	msg := watchlistJSON(online, []string{userID})
	all := srv.shardList()
	for _, i := range shards {
		if i >= len(all) {
			continue
		}
		sh, sw := all[i], srv.watch[i]
		sh.exec(func() {
			for s := range sw.byUser[k] {
				if !s.closed {
					srv.watchSent.Add(1)
					s.send(msg)
				}
			}
		})
	}
}

// watchlistJSON encodes
// {"event":"pusher_internal:watchlist_events","data":"{\"events\":[{\"name\":\"online\",\"user_ids\":[...]}]}"}.
func watchlistJSON(online bool, ids []string) []byte {
	inner := make([]byte, 0, 48+len(ids)*12)
	inner = append(inner, `{"events":[{"name":`...)
	if online {
		inner = append(inner, `"online"`...)
	} else {
		inner = append(inner, `"offline"`...)
	}
	inner = append(inner, `,"user_ids":[`...)
	for i, id := range ids {
		if i > 0 {
			inner = append(inner, ',')
		}
		inner = appendJSONString(inner, id)
	}
	inner = append(inner, "]}]}"...)
	return eventJSON(nil, "pusher_internal:watchlist_events", string(inner), "")
}
