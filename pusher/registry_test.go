package pusher

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func mem(key, rawID, info string) *member {
	m := &member{key: key, id: json.RawMessage(rawID)}
	if info != "" {
		m.info = json.RawMessage(info)
	}
	return m
}

func TestHubPresenceDedupAndOrder(t *testing.T) {
	app := &App{ID: "1", Key: "k", Secret: "s"}
	h := newHub([]*App{app}, 2, time.Now)
	const ch = "presence-room"

	steps := []struct {
		op        string // join or leave
		shard     int
		m         *member
		wantFirst bool   // join: firstOfUser; leave: userGone
		wantPres  string // join: presence block
	}{
		{op: "join", shard: 0, m: mem("3", `3`, `{"n":"c"}`), wantFirst: true,
			wantPres: `{"presence":{"count":1,"ids":[3],"hash":{"3":{"n":"c"}}}}`},
		{op: "join", shard: 1, m: mem("2", `"2"`, ``), wantFirst: true,
			wantPres: `{"presence":{"count":2,"ids":[3,"2"],"hash":{"3":{"n":"c"},"2":null}}}`},
		{op: "join", shard: 1, m: mem("3", `"3"`, `{"n":"other"}`), wantFirst: false,
			wantPres: `{"presence":{"count":2,"ids":[3,"2"],"hash":{"3":{"n":"c"},"2":null}}}`},
		{op: "join", shard: 0, m: mem("1", `1`, `{}`), wantFirst: true,
			wantPres: `{"presence":{"count":3,"ids":[3,"2",1],"hash":{"3":{"n":"c"},"2":null,"1":{}}}}`},
		{op: "leave", shard: 0, m: mem("3", `3`, ``), wantFirst: false},
		{op: "leave", shard: 1, m: mem("2", `"2"`, ``), wantFirst: true},
		{op: "join", shard: 1, m: mem("2", `2`, ``), wantFirst: true,
			wantPres: `{"presence":{"count":3,"ids":[3,1,2],"hash":{"3":{"n":"c"},"1":{},"2":null}}}`},
	}
	for i, st := range steps {
		switch st.op {
		case "join":
			res, err := h.join(app, ch, st.shard, st.m, 100)
			if err != nil {
				t.Fatalf("step %d: join: %v", i, err)
			}
			if res.firstOfUser != st.wantFirst {
				t.Errorf("step %d: firstOfUser = %v, want %v", i, res.firstOfUser, st.wantFirst)
			}
			if st.wantPres != "" && string(res.presence) != st.wantPres {
				t.Errorf("step %d: presence =\n%s\nwant\n%s", i, res.presence, st.wantPres)
			}
		case "leave":
			if gone := h.leave(app, ch, st.shard, st.m.key, true).gone; gone != st.wantFirst {
				t.Errorf("step %d: userGone = %v, want %v", i, gone, st.wantFirst)
			}
		}
	}
	// Members now: 3 (one conn left, first-seen raw id 3), 1, 2.
	ids, ok := h.users(app, ch)
	if !ok {
		t.Fatal("channel missing")
	}
	var got []string
	for _, id := range ids {
		got = append(got, string(id))
	}
	if strings.Join(got, ",") != "3,1,2" {
		t.Errorf("users = %v, want [3 1 2]", got)
	}
	info, ok := h.info(app, ch)
	if !ok || info.SubscriptionCount != 3 || info.UserCount != 3 || info.Kind != KindPresence || info.Cache {
		t.Errorf("info = %+v, %v; want 3 subscriptions, 3 users", info, ok)
	}
}

func TestHubChannelRemovedWhenEmpty(t *testing.T) {
	app := &App{ID: "1", Key: "k", Secret: "s"}
	h := newHub([]*App{app}, 1, time.Now)
	for range 2 {
		if _, err := h.join(app, "test-channel", 0, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	if info, ok := h.info(app, "test-channel"); !ok || info.SubscriptionCount != 2 || info.UserCount != 0 {
		t.Fatalf("info = %+v %v", info, ok)
	}
	h.leave(app, "test-channel", 0, "", false)
	if info, ok := h.info(app, "test-channel"); !ok || info.SubscriptionCount != 1 {
		t.Fatalf("after one leave: %+v %v", info, ok)
	}
	h.leave(app, "test-channel", 0, "", false)
	if _, ok := h.info(app, "test-channel"); ok {
		t.Errorf("channel still exists after the last leave")
	}
	if l := h.list(app, ""); len(l) != 0 {
		t.Errorf("list = %+v, want empty", l)
	}
	if _, ok := h.users(app, "test-channel"); ok {
		t.Errorf("users of a removed channel")
	}
	if got := string(h.presenceOf(app, "presence-none")); got != `{"presence":{"count":0,"ids":[],"hash":{}}}` {
		t.Errorf("presenceOf missing = %s", got)
	}
	// Leaving a channel that does not exist is harmless.
	if h.leave(app, "nope", 0, "x", true).gone {
		t.Errorf("leave of a missing channel reported a user gone")
	}
}

func TestHubPresenceLimit(t *testing.T) {
	app := &App{ID: "1", Key: "k", Secret: "s"}
	h := newHub([]*App{app}, 1, time.Now)
	if _, err := h.join(app, "presence-x", 0, mem("1", `1`, ``), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := h.join(app, "presence-x", 0, mem("2", `2`, ``), 1); err != ErrPresenceFull {
		t.Errorf("second user: %v, want ErrPresenceFull", err)
	}
	if _, err := h.join(app, "presence-x", 0, mem("1", `1`, ``), 1); err != nil {
		t.Errorf("same user again: %v", err)
	}
	if info, _ := h.info(app, "presence-x"); info.SubscriptionCount != 2 || info.UserCount != 1 {
		t.Errorf("info = %+v", info)
	}
	// A refused join on a new channel must not leave an empty channel behind.
	if _, err := h.join(app, "presence-y", 0, mem("1", `1`, ``), -1); err != nil {
		t.Fatal(err)
	}
	h2 := newHub([]*App{app}, 1, time.Now)
	h2.join(app, "presence-z", 0, mem("1", `1`, ``), 1)
	h2.leave(app, "presence-z", 0, "1", true)
	if _, ok := h2.info(app, "presence-z"); ok {
		t.Errorf("presence-z should be gone")
	}
}

func TestHubRouteAndList(t *testing.T) {
	app := &App{ID: "1", Key: "k", Secret: "s"}
	other := &App{ID: "2", Key: "k2", Secret: "s2"}
	h := newHub([]*App{app, other}, 3, time.Now)
	h.join(app, "a", 0, nil, 0)
	h.join(app, "a", 2, nil, 0)
	h.join(app, "cache-b", 1, nil, 0)
	h.join(app, "presence-c", 1, mem("u", `"u"`, ``), 0)
	h.join(other, "a", 1, nil, 0)

	var shards []int
	h.route(app, "a", []byte(`m`), true, func(i int) { shards = append(shards, i) })
	if len(shards) != 2 || shards[0] != 0 || shards[1] != 2 {
		t.Errorf("route a -> shards %v, want [0 2]", shards)
	}
	h.route(app, "missing", []byte(`m`), true, func(int) { t.Error("routed to a missing channel") })
	// Cache channels keep the last message; others keep nothing.
	h.route(app, "cache-b", []byte(`{"event":"e1"}`), true, func(int) {})
	h.route(app, "cache-b", []byte(`{"event":"e2"}`), true, func(int) {})
	if info, _ := h.info(app, "cache-b"); string(info.Cached) != `{"event":"e2"}` || !info.Cache {
		t.Errorf("cache-b info = %+v", info)
	}
	if info, _ := h.info(app, "a"); info.Cached != nil {
		t.Errorf("public channel cached %s", info.Cached)
	}

	var names []string
	for _, c := range h.list(app, "") {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "a,cache-b,presence-c" {
		t.Errorf("list = %v", names)
	}
	names = nil
	for _, c := range h.list(app, "presence-") {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "presence-c" {
		t.Errorf("list presence- = %v", names)
	}
	// Apps are isolated.
	if info, _ := h.info(other, "a"); info.SubscriptionCount != 1 {
		t.Errorf("other app's channel a = %+v", info)
	}
	if _, ok := h.info(other, "cache-b"); ok {
		t.Errorf("other app sees cache-b")
	}
}
