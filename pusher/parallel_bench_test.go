package pusher

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// The registry under parallel load: each goroutine works on channels of its
// own, so with no process-wide serialisation the cost per operation stays
// flat as -cpu grows.
//
//	go test ./pusher -run '^$' -bench 'Parallel' -cpu 1,2,4,8,16

func parallelHub(b *testing.B) (*hub, *App) {
	app := &App{ID: "1", Key: "k", Secret: "s"}
	return newHub([]*App{app}, 16, time.Now), app
}

// BenchmarkParallelSubscribeUnsubscribe: a subscribe and an unsubscribe per
// op, each goroutine on its own channels.
func BenchmarkParallelSubscribeUnsubscribe(b *testing.B) {
	h, app := parallelHub(b)
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		g := next.Add(1)
		shard := int(g % 16)
		names := make([]string, 64)
		for i := range names {
			names[i] = "chan-" + strconv.FormatInt(g, 10) + "-" + strconv.Itoa(i)
		}
		i := 0
		for pb.Next() {
			name := names[i%len(names)]
			i++
			if _, err := h.join(app, name, shard, nil, 0); err != nil {
				b.Fatal(err)
			}
			h.leave(app, name, shard, "", false)
		}
	})
}

// BenchmarkParallelPublishRoute: routing one event per op to the shards of a
// channel with subscribers, each goroutine on its own channel.
func BenchmarkParallelPublishRoute(b *testing.B) {
	h, app := parallelHub(b)
	var next atomic.Int64
	msg := []byte(`{"event":"e","channel":"c","data":"{}"}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		g := next.Add(1)
		name := "pub-" + strconv.FormatInt(g, 10)
		if _, err := h.join(app, name, int(g%16), nil, 0); err != nil {
			b.Fatal(err)
		}
		ops, routed := 0, 0
		for pb.Next() {
			ops++
			h.route(app, name, msg, false, func(int) { routed++ })
		}
		if routed != ops {
			b.Fatalf("%d of %d events routed", routed, ops)
		}
	})
}

// BenchmarkParallelPublishCache: publishing one event per op to a cache
// channel (the event is stored as its last one, then routed), each goroutine
// on its own channel.
func BenchmarkParallelPublishCache(b *testing.B) {
	h, app := parallelHub(b)
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		g := next.Add(1)
		name := "cache-pub-" + strconv.FormatInt(g, 10)
		if _, err := h.join(app, name, int(g%16), nil, 0); err != nil {
			b.Fatal(err)
		}
		msg := []byte(`{"event":"e","channel":` + strconv.Quote(name) + `,"data":"{}"}`)
		ops, routed := 0, 0
		for pb.Next() {
			ops++
			h.route(app, name, msg, true, func(int) { routed++ })
		}
		if routed != ops {
			b.Fatalf("%d of %d events routed", routed, ops)
		}
		if got := h.cached(app, name); ops > 0 && string(got) != string(msg) {
			b.Fatalf("cached %q, want %q", got, msg)
		}
	})
}

// BenchmarkParallelPresenceSubscribe: a presence subscribe and unsubscribe
// per op (the presence block is encoded), each goroutine on its own
// channel, with 8 other members present.
func BenchmarkParallelPresenceSubscribe(b *testing.B) {
	h, app := parallelHub(b)
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		g := next.Add(1)
		shard := int(g % 16)
		name := "presence-" + strconv.FormatInt(g, 10)
		for i := range 8 {
			k := strconv.Itoa(1000 + i)
			if _, err := h.join(app, name, shard, &member{key: k, id: []byte(k), data: `{"user_id":` + k + `}`}, 0); err != nil {
				b.Fatal(err)
			}
		}
		m := &member{key: "1", id: []byte("1"), info: []byte(`{"n":"x"}`), data: `{"user_id":1,"user_info":{"n":"x"}}`}
		for pb.Next() {
			res, err := h.join(app, name, shard, m, 0)
			if err != nil || !res.firstOfUser || len(res.presence) == 0 {
				b.Fatal(err, res.firstOfUser)
			}
			if r := h.leave(app, name, shard, m.key, true); !r.gone {
				b.Fatal("not gone")
			}
		}
	})
}
