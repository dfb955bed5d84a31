package looptls

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	mrand "math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// roundTrip checks messages both ways after a handshake.
func roundTrip(t *testing.T, p *pair, rounds, size int) {
	t.Helper()
	total := 0
	for i := range rounds {
		msg := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		if _, err := p.client.Write(msg); err != nil {
			t.Fatal(err)
		}
		total += size
		got := p.waitPlain(t, total)
		if !bytes.Equal(got[total-size:total], msg) {
			t.Fatalf("round %d: server got wrong plaintext", i)
		}
		reply := bytes.Repeat([]byte{byte('A' + i%26)}, size)
		var werr error
		p.l.do(func() { werr = p.c.Write(reply) })
		if werr != nil {
			t.Fatal(werr)
		}
		buf := make([]byte, size)
		if _, err := io.ReadFull(p.client, buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, reply) {
			t.Fatalf("round %d: client got wrong plaintext", i)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	base := runtime.NumGoroutine()
	srv := NewServer(serverConfig(t), Options{})
	l := newLoop()
	for _, zero := range []bool{false, true} {
		p := newPair(srv, l, clientConfig(t), nil)
		p.zero = zero
		p.handshake(t)
		if cs := p.c.ConnectionState(); cs.Version != tls.VersionTLS13 || !cs.HandshakeComplete {
			t.Fatalf("state %+v", cs)
		}
		roundTrip(t, p, 20, 100)
		p.close()
	}
	if st := srv.Stats(); st.Completed != 2 || st.Lean != 2 || st.InProgress != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The worker retires after done returns.
	waitFor(t, "idle pool", func() bool { return srv.Stats().Running == 0 })
	l.stop()
	srv.Close()
	waitGoroutines(t, base)
}

func TestTLS12(t *testing.T) {
	srv := NewServer(serverConfig(t), Options{})
	l := newLoop()
	defer l.stop()
	cc := clientConfig(t)
	cc.MaxVersion = tls.VersionTLS12
	p := newPair(srv, l, cc, splitEvery(1))
	p.handshake(t)
	roundTrip(t, p, 5, 300)
	p.close()
	if st := srv.Stats(); st.Completed != 1 || st.Lean != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestSplitEveryByte feeds the client's ciphertext one byte at a time, the
// handshake included: every record is split at every byte.
func TestSplitEveryByte(t *testing.T) {
	srv := NewServer(serverConfig(t), Options{})
	l := newLoop()
	defer l.stop()
	for _, zero := range []bool{false, true} {
		p := newPair(srv, l, clientConfig(t), splitEvery(1))
		p.zero = zero
		p.handshake(t)
		roundTrip(t, p, 5, 100)
		p.close()
	}
}

// TestSplitRandom repeats handshakes and exchanges with random splits.
func TestSplitRandom(t *testing.T) {
	srv := NewServer(serverConfig(t), Options{})
	l := newLoop()
	defer l.stop()
	for i := range 20 {
		r := mrand.New(mrand.NewPCG(uint64(i), 7))
		p := newPair(srv, l, clientConfig(t), splitRandom(r))
		p.zero = i%2 == 0
		p.handshake(t)
		roundTrip(t, p, 3, 1+r.IntN(3000))
		p.close()
	}
}

// TestLargeWrites sends messages over one record in both directions.
func TestLargeWrites(t *testing.T) {
	srv := NewServer(serverConfig(t), Options{})
	l := newLoop()
	defer l.stop()
	p := newPair(srv, l, clientConfig(t), splitEvery(7000))
	p.handshake(t)
	roundTrip(t, p, 3, 100_000)
	p.close()
}

// TestEarlyData: the client writes right after its handshake, before the
// server's done has re-entered the loop; the bytes must come out of the
// first Read after done.
func TestEarlyData(t *testing.T) {
	srv := NewServer(serverConfig(t), Options{})
	l := newLoop()
	defer l.stop()
	for range 20 {
		p := newPair(srv, l, clientConfig(t), nil)
		msg := []byte("GET /app/key HTTP/1.1\r\n\r\n")
		cerr := make(chan error, 1)
		go func() {
			if err := p.client.Handshake(); err != nil {
				cerr <- err
				return
			}
			_, err := p.client.Write(msg)
			cerr <- err
		}()
		if err := <-p.doneCh; err != nil {
			t.Fatal(err)
		}
		if err := <-cerr; err != nil {
			t.Fatal(err)
		}
		if got := p.waitPlain(t, len(msg)); !bytes.Equal(got, msg) {
			t.Fatalf("got %q", got)
		}
		p.close()
	}
}

// TestCloseNotify: the client's close_notify ends Read with io.EOF, and the
// server's reaches the client.
func TestCloseNotify(t *testing.T) {
	srv := NewServer(serverConfig(t), Options{})
	l := newLoop()
	defer l.stop()
	p := newPair(srv, l, clientConfig(t), nil)
	p.handshake(t)
	var err error
	l.do(func() { err = p.c.CloseNotify() })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client read: %v", err)
	}
	if err := p.client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "EOF", func() bool {
		var e error
		l.do(func() { e = p.rerr })
		return e == io.EOF
	})
	p.close()
}

func TestHandshakeTimeout(t *testing.T) {
	base := runtime.NumGoroutine()
	srv := NewServer(serverConfig(t), Options{HandshakeTimeout: 50 * time.Millisecond})
	l := newLoop()
	hello := clientHello(t)
	cases := []struct {
		name string
		feed []byte
	}{
		{"nothing", nil},
		{"header only", hello[:3]},
		{"half a ClientHello", hello[:len(hello)/2]},
		{"whole ClientHello, no Finished", hello},
	}
	for i, tc := range cases {
		done := make(chan error, 1)
		var c *Conn
		l.do(func() {
			c = srv.NewConn(nil, func([]byte) {}, func(err error) { done <- err })
			if tc.feed != nil {
				if err := c.Feed(tc.feed); err != nil {
					t.Error(err)
				}
			}
		})
		select {
		case err := <-done:
			if err != ErrHandshakeTimeout {
				t.Fatalf("%s: %v", tc.name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no timeout", tc.name)
		}
		if st := srv.Stats(); st.TimedOut != int64(i+1) || st.InProgress != 0 {
			t.Fatalf("%s: stats %+v", tc.name, st)
		}
		var err error
		l.do(func() { err = c.Feed([]byte{1}) })
		if err != ErrHandshakeTimeout {
			t.Fatalf("%s: Feed after timeout: %v", tc.name, err)
		}
		l.do(c.Close)
	}
	l.stop()
	waitGoroutines(t, base)
}

// clientHello captures a real ClientHello.
func clientHello(t testing.TB) []byte {
	var hello []byte
	cp := &pipe{}
	cp.setBlocking(true)
	cp.out = func(b []byte) {
		if hello == nil {
			hello = append([]byte(nil), b...)
			cp.closeWith(io.EOF)
		}
	}
	_ = tls.Client(cp, clientConfig(t)).Handshake()
	return hello
}

func TestBadClientHello(t *testing.T) {
	base := runtime.NumGoroutine()
	srv := NewServer(serverConfig(t), Options{HandshakeTimeout: 5 * time.Second})
	l := newLoop()
	hello := clientHello(t)
	bad := append([]byte(nil), hello...)
	bad[5] = 11 // a Certificate message instead of the ClientHello
	cases := [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{0x16, 0x03, 0x01, 0xff, 0xff},                // oversized record
		{0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0}, // a ServerHello
		append([]byte{0x16, 0x03, 0x03, 0x00, 0x04}, 1, 0, 0, 0),
		bad,
		bytes.Repeat([]byte{0x16}, 2000),
	}
	for i, in := range cases {
		var out bytes.Buffer
		done := make(chan error, 1)
		var c *Conn
		l.do(func() {
			c = srv.NewConn(nil, func(b []byte) { out.Write(b) }, func(err error) { done <- err })
			_ = c.Feed(in)
		})
		select {
		case err := <-done:
			if err == nil || err == ErrHandshakeTimeout {
				t.Fatalf("case %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("case %d: no error", i)
		}
		l.do(c.Close)
	}
	if st := srv.Stats(); st.Failed != int64(len(cases)) || st.InProgress != 0 {
		t.Fatalf("stats %+v", st)
	}
	l.stop()
	waitGoroutines(t, base)
}

func TestPoolFull(t *testing.T) {
	base := runtime.NumGoroutine()
	srv := NewServer(serverConfig(t), Options{Workers: 2, Queue: -1, HandshakeTimeout: 5 * time.Second})
	if srv.Options().Queue != 0 {
		t.Fatal("Queue -1 should mean no queue")
	}
	srv.opts.Queue = 1
	l := newLoop()
	hello := clientHello(t)
	var conns []*Conn
	dones := make([]chan error, 5)
	errs := make([]error, 5)
	for i := range 5 {
		dones[i] = make(chan error, 1)
		d := dones[i]
		l.do(func() {
			c := srv.NewConn(nil, func([]byte) {}, func(err error) { d <- err })
			conns = append(conns, c)
			errs[i] = c.Feed(hello) // a worker now waits for the Finished
		})
	}
	// Two run, one waits in the queue, two are refused.
	for i, err := range errs {
		want := error(nil)
		if i >= 3 {
			want = ErrOverloaded
		}
		if err != want {
			t.Fatalf("conn %d: %v, want %v", i, err, want)
		}
	}
	st := srv.Stats()
	if st.Refused != 2 || st.Running != 2 || st.Queued != 1 || st.InProgress != 3 {
		t.Fatalf("stats %+v", st)
	}
	for _, d := range dones[3:] {
		select {
		case err := <-d:
			t.Fatalf("done called for a refused conn: %v", err)
		default:
		}
	}
	// Closing the running ones frees the workers; the queued one runs, and
	// closing it drains the pool.
	for _, c := range conns {
		l.do(c.Close)
	}
	waitFor(t, "idle pool", func() bool {
		st := srv.Stats()
		return st.Running == 0 && st.Queued == 0 && st.InProgress == 0
	})
	l.stop()
	waitGoroutines(t, base)
}

// TestCloseRace closes Conns at random points of their handshakes, repeated,
// under -race: no panic, no leak, counters back to zero.
func TestCloseRace(t *testing.T) {
	base := runtime.NumGoroutine()
	srv := NewServer(serverConfig(t), Options{Workers: 4, Queue: 4, HandshakeTimeout: 20 * time.Millisecond})
	l := newLoop()
	for i := range 40 {
		p := newPair(srv, l, clientConfig(t), splitEvery(1+i%50))
		cerr := make(chan error, 1)
		go func() { cerr <- p.client.Handshake() }()
		if i%3 != 0 {
			time.Sleep(time.Duration(i%7) * 100 * time.Microsecond)
		}
		p.close()
		<-cerr
	}
	waitFor(t, "idle pool", func() bool {
		st := srv.Stats()
		return st.Running == 0 && st.Queued == 0 && st.InProgress == 0
	})
	l.stop()
	waitGoroutines(t, base)
}

func TestServerClose(t *testing.T) {
	srv := NewServer(serverConfig(t), Options{Workers: 1, Queue: 4})
	l := newLoop()
	defer l.stop()
	hello := clientHello(t)
	dones := make([]chan error, 3)
	var conns []*Conn
	for i := range dones {
		dones[i] = make(chan error, 1)
		d := dones[i]
		l.do(func() {
			c := srv.NewConn(nil, func([]byte) {}, func(err error) { d <- err })
			conns = append(conns, c)
			_ = c.Feed(hello)
		})
	}
	srv.Close()
	for _, d := range dones[1:] {
		if err := <-d; err != ErrServerClosed {
			t.Fatalf("queued conn: %v", err)
		}
	}
	l.do(conns[0].Close)
	var err error
	l.do(func() {
		c := srv.NewConn(nil, func([]byte) {}, nil)
		err = c.Feed(hello)
		c.Close()
	})
	if !errors.Is(err, ErrServerClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestGarbageAfterHandshake: random bytes after the handshake end Read with
// an error, never a panic.
func TestGarbageAfterHandshake(t *testing.T) {
	srv := NewServer(serverConfig(t), Options{})
	l := newLoop()
	defer l.stop()
	for i := range 20 {
		r := mrand.New(mrand.NewPCG(uint64(i), 1))
		p := newPair(srv, l, clientConfig(t), nil)
		p.handshake(t)
		junk := make([]byte, 1+r.IntN(5000))
		for j := range junk {
			junk[j] = byte(r.Uint32())
		}
		if i%2 == 0 {
			junk[0] = 0x17 // application data
		}
		var err error
		l.do(func() {
			for _, piece := range splitRandom(r)(junk) {
				var e error
				if _, e = p.c.Decrypt(nil, piece); e != nil {
					err = e
					break
				}
			}
		})
		if err == nil && len(junk) > 5+16384+256 {
			t.Fatalf("round %d: %d junk bytes accepted", i, len(junk))
		}
		p.close()
	}
}

// FuzzFeed feeds arbitrary bytes, split at arbitrary points, as a
// ClientHello and, after a real handshake, as records.
func FuzzFeed(f *testing.F) {
	f.Add([]byte("\x16\x03\x01\x00\x05hello"), uint64(1), false)
	f.Add(clientHello(f), uint64(2), false)
	f.Add([]byte("\x17\x03\x03\x00\x20aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), uint64(3), true)
	srv := NewServer(serverConfig(f), Options{HandshakeTimeout: 200 * time.Millisecond})
	l := newLoop()
	f.Cleanup(l.stop)
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, after bool) {
		r := mrand.New(mrand.NewPCG(seed, seed))
		pieces := splitRandom(r)(data)
		if !after {
			done := make(chan error, 1)
			var c *Conn
			l.do(func() {
				c = srv.NewConn(nil, func([]byte) {}, func(err error) { done <- err })
				for _, piece := range pieces {
					if c.Feed(piece) != nil {
						break
					}
				}
			})
			l.do(c.Close)
			return
		}
		p := newPair(srv, l, clientConfig(t), nil)
		p.handshake(t)
		l.do(func() {
			for _, piece := range pieces {
				if _, err := p.c.Decrypt(nil, piece); err != nil {
					break
				}
			}
		})
		p.close()
	})
}
