package pusher

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

var establishedRE = regexp.MustCompile(`^\{"event":"pusher:connection_established","data":"\{\\"socket_id\\":\\"([0-9]+)\.([0-9]+)\\",\\"activity_timeout\\":([0-9]+)\}"\}$`)

func TestConnectionEstablished(t *testing.T) {
	tests := []struct {
		name            string
		activityTimeout time.Duration
		want            string
	}{
		{name: "default 30 s", activityTimeout: 0, want: "30"},
		{name: "configured 120 s", activityTimeout: 120 * time.Second, want: "120"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.Apps[0].ActivityTimeout = tt.activityTimeout })
			conn := newFakeConn(t)
			sess := e.srv.Open(e.sh, conn, testKey, "http://localhost")
			if sess == nil {
				t.Fatal("Open returned nil")
			}
			msgs := conn.take()
			if len(msgs) != 1 {
				t.Fatalf("got %d messages: %q", len(msgs), msgs)
			}
			m := establishedRE.FindStringSubmatch(msgs[0])
			if m == nil {
				t.Fatalf("connection_established = %s", msgs[0])
			}
			if m[1]+"."+m[2] != sess.id {
				t.Errorf("socket_id %s.%s, session id %s", m[1], m[2], sess.id)
			}
			for _, part := range m[1:3] {
				n, _ := strconv.Atoi(part)
				if n < 1 || n > 1_000_000_000 {
					t.Errorf("socket id part %d outside [1, 1e9]", n)
				}
			}
			if m[3] != tt.want {
				t.Errorf("activity_timeout = %s, want %s", m[3], tt.want)
			}
			if conn.closes != 0 || sess.Closed() {
				t.Errorf("connection closed")
			}
			if sess.App() != e.app {
				t.Errorf("App() = %v", sess.App())
			}
			if got := e.srv.Connections(e.app); got != 1 {
				t.Errorf("Connections = %d, want 1", got)
			}
			e.srv.Closed(sess)
			if got := e.srv.Connections(e.app); got != 0 {
				t.Errorf("Connections after close = %d, want 0", got)
			}
		})
	}
}

func TestSocketIDsDiffer(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := newSocketID()
		if seen[id] {
			t.Fatalf("duplicate socket id %s", id)
		}
		seen[id] = true
	}
}

func TestOpenRejected(t *testing.T) {
	tests := []struct {
		name     string
		key      string
		origin   string
		allowed  []string
		maxConns int
		wantCode int
		wantMsg  string
	}{
		{name: "unknown key", key: "nope", origin: "", wantCode: 4001, wantMsg: "Application does not exist"},
		{name: "localhost vs laravel.com", key: testKey, origin: "http://localhost", allowed: []string{"laravel.com"}, wantCode: 4009, wantMsg: "Origin not allowed"},
		{name: "sub.laravel.com vs laravel.com", key: testKey, origin: "http://sub.laravel.com", allowed: []string{"laravel.com"}, wantCode: 4009, wantMsg: "Origin not allowed"},
		{name: "laravel.com vs *.laravel.com", key: testKey, origin: "http://laravel.com", allowed: []string{"*.laravel.com"}, wantCode: 4009, wantMsg: "Origin not allowed"},
		{name: "no origin vs laravel.com", key: testKey, origin: "", allowed: []string{"laravel.com"}, wantCode: 4009, wantMsg: "Origin not allowed"},
		{name: "case-sensitive", key: testKey, origin: "https://LARAVEL.com", allowed: []string{"laravel.com"}, wantCode: 4009, wantMsg: "Origin not allowed"},
		{name: "over quota", key: testKey, origin: "", maxConns: 1, wantCode: 4004, wantMsg: "Application is over connection quota"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) {
				o.Apps[0].AllowedOrigins = tt.allowed
				o.Apps[0].MaxConnections = tt.maxConns
			})
			if tt.maxConns > 0 {
				for range tt.maxConns {
					c := e.connect()
					e.subscribe(c, "test-channel", "")
				}
			}
			conn := newFakeConn(t)
			if sess := e.srv.Open(e.sh, conn, tt.key, tt.origin); sess != nil {
				t.Fatalf("Open accepted the connection")
			}
			frames := conn.takeFrames()
			if len(frames) != 2 {
				t.Fatalf("got %d frames, want error + close", len(frames))
			}
			if frames[0].op != ws.OpText || string(frames[0].payload) != errMsg(tt.wantCode, tt.wantMsg) {
				t.Errorf("first frame op=%v %s, want %s", frames[0].op, frames[0].payload, errMsg(tt.wantCode, tt.wantMsg))
			}
			code, reason := frames[1].closeCode()
			if frames[1].op != ws.OpClose || code != tt.wantCode || reason != tt.wantMsg {
				t.Errorf("second frame op=%v code=%d reason=%q", frames[1].op, code, reason)
			}
			if conn.closes != 1 {
				t.Errorf("Close called %d times, want 1", conn.closes)
			}
			if got := e.srv.Connections(e.app); got != int64(tt.maxConns) {
				t.Errorf("Connections = %d, want %d", got, tt.maxConns)
			}
		})
	}
}

func TestOpenOriginAllowed(t *testing.T) {
	tests := []struct {
		name    string
		origin  string
		allowed []string
	}{
		{name: "localhost vs localhost", origin: "http://localhost", allowed: []string{"localhost"}},
		{name: "sub.localhost vs localhost,*.localhost", origin: "http://sub.localhost", allowed: []string{"localhost", "*.localhost"}},
		{name: "port ignored", origin: "https://localhost:8443", allowed: []string{"localhost"}},
		{name: "path ignored", origin: "https://app.example.com/x?y", allowed: []string{"app.example.com"}},
		{name: "star allows all", origin: "http://evil.test", allowed: []string{"laravel.com", "*"}},
		{name: "default allows all", origin: "http://evil.test", allowed: nil},
		{name: "ipv6 literal", origin: "http://[::1]:8080", allowed: []string{"::1"}},
		{name: "0.0.0.0", origin: "http://0.0.0.0", allowed: []string{"0.0.0.0"}},
		{name: "middle wildcard", origin: "http://a.b.example.com", allowed: []string{"a.*.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.Apps[0].AllowedOrigins = tt.allowed })
			c := e.connectOrigin(tt.origin)
			if c.conn.closes != 0 {
				t.Errorf("connection closed")
			}
		})
	}
}

func TestQuotaFreedOnClose(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Apps[0].MaxConnections = 1 })
	a := e.connect()
	e.close(a)
	b := e.connect() // fits again
	b.send(`{"event":"pusher:ping"}`)
	b.expect(pongMsg)
}
