package pusher

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/reverbgo/reverb/wsproto"
)

// rawConn records the frames written to it, as written (the test keeps
// the slices to compare their identity; the server never reuses them).
// Goroutine-safe.
type rawConn struct {
	mu     sync.Mutex
	frames [][]byte
}

func (c *rawConn) Write(b []byte) (int, error) { return c.Writev([][]byte{b}) }

func (c *rawConn) Writev(bs [][]byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, b := range bs {
		c.frames = append(c.frames, b)
		n += len(b)
	}
	return n, nil
}

func (c *rawConn) OutboundBuffered() int { return 0 }
func (c *rawConn) Close() error          { return nil }

func (c *rawConn) take() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.frames
	c.frames = nil
	return f
}

// testLoop runs functions one at a time on its own goroutine, as an event
// loop does.
type testLoop struct{ jobs chan func() }

func newTestLoop(t *testing.T) *testLoop {
	l := &testLoop{jobs: make(chan func(), 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := range l.jobs {
			f()
		}
	}()
	t.Cleanup(func() { close(l.jobs); <-done })
	return l
}

func (l *testLoop) exec(f func()) { l.jobs <- f }

// run runs f on the loop and waits for it.
func (l *testLoop) run(f func()) {
	done := make(chan struct{})
	l.jobs <- func() { f(); close(done) }
	<-done
}

// inflateFrame returns the payload of a server text frame, inflated when
// RSV1 is set, and whether it was.
func inflateFrame(t testing.TB, f []byte) (string, bool) {
	t.Helper()
	h, n, err := wsproto.ParseHeader(f)
	if err != nil || n == 0 || h.OpCode != ws.OpText || !h.Fin || int(h.Length) != len(f)-n {
		t.Fatalf("bad frame %+v %v", h, err)
	}
	if h.Rsv == 0 {
		return string(f[n:]), false
	}
	if h.Rsv != 4 {
		t.Fatalf("rsv %d", h.Rsv)
	}
	r := flate.NewReader(io.MultiReader(bytes.NewReader(f[n:]), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
	out, err := io.ReadAll(r)
	if err != io.ErrUnexpectedEOF && err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return string(out), true
}

// bigData is a JSON payload of about 1 KB with repetitive keys.
func bigData() string {
	var b strings.Builder
	b.WriteString(`{"items":[`)
	for i := range 12 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"symbol":"SYM%d","price":%d.25,"currency":"EUR","status":"open"}`, 1000+i, i, 40+i)
	}
	b.WriteString(`]}`)
	return b.String()
}

// TestBroadcastCompressedOnce subscribes deflate and plain sessions on two
// shards, each on its own goroutine, and checks, round after round, that a
// broadcast is compressed exactly once and that every deflate subscriber is
// handed the very same compressed frame.
func TestBroadcastCompressedOnce(t *testing.T) {
	app := &App{ID: testAppID, Key: testKey, Secret: testSecret, Compression: true}
	srv, err := NewServer(Options{Apps: []*App{app}, Logger: quietLogger()}, 2)
	if err != nil {
		t.Fatal(err)
	}
	loops := []*testLoop{newTestLoop(t), newTestLoop(t)}
	shards := []*Shard{srv.NewShard(loops[0].exec), srv.NewShard(loops[1].exec)}
	const perShard = 25
	type sub struct {
		conn    *rawConn
		deflate bool
	}
	var subs []sub
	for i, sh := range shards {
		for j := range perShard {
			c := &rawConn{}
			deflate := j != 0 // one plain subscriber per shard
			loops[i].run(func() {
				s := srv.Open(sh, c, app.Key, "")
				if deflate {
					s.EnableDeflate()
				}
				s.HandleMessage([]byte(subMsg("news", "", "")))
			})
			if got := len(c.take()); got != 2 { // established, succeeded
				t.Fatalf("%d frames on subscribe", got)
			}
			subs = append(subs, sub{c, deflate})
		}
	}
	data := bigData()
	for round := range 20 {
		before := deflations.Load()
		if err := srv.Trigger(app, "news", "update", data, ""); err != nil {
			t.Fatal(err)
		}
		var shared []byte
		for _, s := range subs {
			var frames [][]byte
			deadline := time.Now().Add(5 * time.Second)
			for len(frames) == 0 && time.Now().Before(deadline) {
				frames = s.conn.take()
				if len(frames) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			if len(frames) != 1 {
				t.Fatalf("round %d: %d frames", round, len(frames))
			}
			msg, z := inflateFrame(t, frames[0])
			if z != s.deflate || msg != string(eventJSON(nil, "update", data, "news")) {
				t.Fatalf("round %d: compressed %v (want %v), %.60q", round, z, s.deflate, msg)
			}
			if z {
				if shared == nil {
					shared = frames[0]
					if len(shared) > len(msg)/2 {
						t.Errorf("compressed %d -> %d only", len(msg), len(shared))
					}
				} else if &shared[0] != &frames[0][0] {
					t.Fatalf("round %d: subscribers got different compressed frames", round)
				}
			}
		}
		if n := deflations.Load() - before; n != 1 {
			t.Fatalf("round %d: %d compressions for one broadcast", round, n)
		}
	}
}

// TestDeflateThreshold checks that small messages go out plain on a
// deflate connection, large replies compressed, and nothing is compressed
// for a session that did not negotiate.
func TestDeflateThreshold(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Apps[0].Compression = true })
	conn := &rawConn{}
	s := e.srv.Open(e.sh, conn, testKey, "")
	s.EnableDeflate()
	plainConn := &rawConn{}
	plain := e.srv.Open(e.sh, plainConn, testKey, "")
	conn.take()
	plainConn.take()

	small := strings.Repeat("a", wsproto.DeflateThreshold-1)
	large := strings.Repeat("a", wsproto.DeflateThreshold)
	for _, tc := range []struct {
		msg  string
		sess *Session
		c    *rawConn
		z    bool
	}{
		{small, s, conn, false},
		{large, s, conn, true},
		{large, plain, plainConn, false},
	} {
		tc.sess.send([]byte(tc.msg))
		f := tc.c.take()
		if len(f) != 1 {
			t.Fatalf("%d frames", len(f))
		}
		if got, z := inflateFrame(t, f[0]); got != tc.msg || z != tc.z {
			t.Fatalf("len %d: compressed %v, want %v", len(tc.msg), z, tc.z)
		}
	}
	// A subscription reply follows the same rule: a small one is plain.
	s.HandleMessage([]byte(subMsg("news", "", "")))
	f := conn.take()
	if len(f) != 1 {
		t.Fatalf("%d frames", len(f))
	}
	if _, z := inflateFrame(t, f[0]); z {
		t.Fatal("small subscription_succeeded compressed")
	}
	// A small broadcast is not compressed either, and costs no compression.
	before := deflations.Load()
	if err := e.srv.Trigger(e.app, "news", "tiny", `{"a":1}`, ""); err != nil {
		t.Fatal(err)
	}
	f = conn.take()
	if len(f) != 1 {
		t.Fatalf("%d frames", len(f))
	}
	if _, z := inflateFrame(t, f[0]); z || deflations.Load() != before {
		t.Fatal("small broadcast compressed")
	}
}

// TestDeliveryWithoutSharedDeflate covers a delivery built without a
// shared variant: the shard builds one, once, for its subscribers.
func TestDeliveryWithoutSharedDeflate(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Apps[0].Compression = true })
	var conns []*rawConn
	for range 5 {
		c := &rawConn{}
		s := e.srv.Open(e.sh, c, testKey, "")
		s.EnableDeflate()
		s.HandleMessage([]byte(subMsg("news", "", "")))
		c.take()
		conns = append(conns, c)
	}
	msg := eventJSON(nil, "update", bigData(), "news")
	before := deflations.Load()
	e.sh.enqueue(delivery{app: e.app, channel: "news", frame: wsproto.AppendText(nil, msg)})
	for _, c := range conns {
		f := c.take()
		if len(f) != 1 {
			t.Fatalf("%d frames", len(f))
		}
		if got, z := inflateFrame(t, f[0]); !z || got != string(msg) {
			t.Fatal("not compressed")
		}
	}
	if n := deflations.Load() - before; n != 1 {
		t.Fatalf("%d compressions", n)
	}
}
