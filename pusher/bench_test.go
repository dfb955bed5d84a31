package pusher

import (
	"net/url"
	"testing"
	"time"
)

func benchServer(b testing.TB, mod func(o *Options)) (*Server, *Shard, *App) {
	b.Helper()
	app := &App{ID: testAppID, Key: testKey, Secret: testSecret}
	opts := Options{Apps: []*App{app}, Logger: quietLogger()}
	if mod != nil {
		mod(&opts)
	}
	srv, err := NewServer(opts, 1)
	if err != nil {
		b.Fatal(err)
	}
	return srv, srv.NewShard(syncExec), app
}

func BenchmarkHandlePing(b *testing.B) {
	srv, sh, _ := benchServer(b, nil)
	conn := &discardConn{}
	s := srv.Open(sh, conn, testKey, "")
	msg := []byte(`{"event":"pusher:ping"}`)
	b.ReportAllocs()
	for b.Loop() {
		s.HandleMessage(msg)
	}
	if conn.frames < b.N {
		b.Fatalf("%d frames for %d pings", conn.frames, b.N)
	}
}

func BenchmarkSubscribePublic(b *testing.B) {
	srv, sh, app := benchServer(b, nil)
	conn := &discardConn{}
	msg := []byte(`{"event":"pusher:subscribe","data":{"channel":"test-channel"}}`)
	b.ReportAllocs()
	for b.Loop() {
		s := srv.Open(sh, conn, testKey, "")
		s.HandleMessage(msg)
		srv.Closed(s)
	}
	if srv.Connections(app) != 0 {
		b.Fatal("leaked connections")
	}
}

func BenchmarkBroadcast10k(b *testing.B) {
	srv, sh, app := benchServer(b, nil)
	conns := make([]*discardConn, 10_000)
	msg := []byte(`{"event":"pusher:subscribe","data":{"channel":"bench"}}`)
	for i := range conns {
		conns[i] = &discardConn{}
		srv.Open(sh, conns[i], testKey, "").HandleMessage(msg)
	}
	data := `{"message":"hello, this is a typical small broadcast payload","id":12345}`
	b.ReportAllocs()
	for b.Loop() {
		srv.Trigger(app, "bench", "App\\Events\\Bench", data, "")
	}
	if conns[0].frames < 3 {
		b.Fatalf("subscriber got %d frames", conns[0].frames)
	}
}

func BenchmarkClientEvent(b *testing.B) {
	srv, sh, _ := benchServer(b, func(o *Options) { o.ClientEventsPerSecond = 1 << 30 })
	ca, cb := &discardConn{}, &discardConn{}
	sa := srv.Open(sh, ca, testKey, "")
	sbb := srv.Open(sh, cb, testKey, "")
	for _, s := range []*Session{sa, sbb} {
		s.HandleMessage([]byte(subMsg("private-chat", chanAuth(testKey, testSecret, s.id, "private-chat", ""), "")))
	}
	before := cb.frames
	msg := []byte(`{"event":"client-typing","channel":"private-chat","data":{"id":123,"name":"Joe Dixon"}}`)
	b.ReportAllocs()
	for b.Loop() {
		sa.HandleMessage(msg)
	}
	if cb.frames-before < b.N {
		b.Fatalf("receiver got %d frames for %d events", cb.frames-before, b.N)
	}
}

func BenchmarkVerifyAPISignature(b *testing.B) {
	app := &App{ID: testAppID, Key: testKey, Secret: testSecret}
	body := []byte(`{"name":"App\\Events\\Ev","channels":["test-channel"],"data":"{\"a\":1}"}`)
	now := time.Now()
	qv, err := url.ParseQuery(signAPI("POST", "/apps/123456/events", nil, body, testKey, testSecret, now.Unix()))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := verifyAPISignature(app, "POST", "/apps/123456/events", qv, body, now, 600*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// benchSubscribe handles, per op, a pusher:subscribe message and the
// pusher:unsubscribe that undoes it, on one connection.
func benchSubscribe(b *testing.B, channel, sub func(socketID string) string) {
	srv, sh, _ := benchServer(b, func(o *Options) { o.SubscriptionsPerSecond = 1 << 30 })
	conn := &discardConn{}
	s := srv.Open(sh, conn, testKey, "")
	msg := []byte(sub(s.id))
	unsub := []byte(`{"event":"pusher:unsubscribe","data":{"channel":` + q(channel(s.id)) + `}}`)
	before := conn.frames
	b.ReportAllocs()
	for b.Loop() {
		s.HandleMessage(msg)
		s.HandleMessage(unsub)
	}
	if conn.frames-before < b.N || len(s.subs) != 0 {
		b.Fatalf("%d answers for %d subscribes", conn.frames-before, b.N)
	}
}

func BenchmarkHandleSubscribePrivate(b *testing.B) {
	benchSubscribe(b, func(string) string { return "private-chat" }, func(id string) string {
		return `{"event":"pusher:subscribe","data":{"auth":"` + chanAuth(testKey, testSecret, id, "private-chat", "") + `","channel":"private-chat"}}`
	})
}

func BenchmarkHandleSubscribePresence(b *testing.B) {
	cd := `{"user_id":"42","user_info":{"name":"Joe Dixon"}}`
	benchSubscribe(b, func(string) string { return "presence-room" }, func(id string) string {
		return subMsg("presence-room", chanAuth(testKey, testSecret, id, "presence-room", cd), cd)
	})
}

func BenchmarkHandleSubscribeStringData(b *testing.B) {
	benchSubscribe(b, func(string) string { return "test-channel" }, func(string) string {
		return `{"event":"pusher:subscribe","data":"{\"channel\":\"test-channel\"}"}`
	})
}

// BenchmarkBroadcastBurst1k is ten events to a channel of 1,000 subscribers
// drained at once: every connection gets ten frames in one Writev.
func BenchmarkBroadcastBurst1k(b *testing.B) {
	app := &App{ID: testAppID, Key: testKey, Secret: testSecret}
	srv, err := NewServer(Options{Apps: []*App{app}, Logger: quietLogger(), FanoutChunk: 1 << 20}, 1)
	if err != nil {
		b.Fatal(err)
	}
	var q []func()
	sh := srv.NewShard(func(f func()) { q = append(q, f) })
	run := func() {
		for len(q) > 0 {
			f := q[0]
			q = q[1:]
			f()
		}
	}
	conns := make([]*discardConn, 1_000)
	msg := []byte(`{"event":"pusher:subscribe","data":{"channel":"bench"}}`)
	for i := range conns {
		conns[i] = &discardConn{}
		srv.Open(sh, conns[i], testKey, "").HandleMessage(msg)
		run()
	}
	data := `{"message":"hello, this is a typical small broadcast payload","id":12345}`
	b.ReportAllocs()
	for b.Loop() {
		for range 10 {
			srv.Trigger(app, "bench", "App\\Events\\Bench", data, "")
		}
		run()
	}
	if conns[0].frames < 12 {
		b.Fatalf("subscriber got %d frames", conns[0].frames)
	}
}
