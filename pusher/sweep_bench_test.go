package pusher

import (
	"testing"
	"time"
)

// answeringConn is a Conn that records its session on every write, so a
// benchmark can have the pinged connections answer.
type answeringConn struct {
	sess    *Session
	written *[]*Session
}

func (c *answeringConn) Write(b []byte) (int, error) {
	if c.sess != nil {
		*c.written = append(*c.written, c.sess)
	}
	return len(b), nil
}

func (c *answeringConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	if c.sess != nil {
		*c.written = append(*c.written, c.sess)
	}
	return n, nil
}

func (c *answeringConn) OutboundBuffered() int { return 0 }
func (c *answeringConn) Close() error          { return nil }

// BenchmarkSweepIdle measures one second's sweep of a shard of 20,000 idle
// connections whose app pings after 120 s of silence: their activity is
// spread evenly over the interval, and every pinged connection answers at
// once (its pong is the Touch after the sweep), so each tick pings about
// 1/120 of them. One iteration is one tick: the sweep and the pongs.
func BenchmarkSweepIdle(b *testing.B) {
	const n = 20000
	const interval = 120 * time.Second
	clock := newTestClock()
	srv, sh, _ := benchServer(b, func(o *Options) {
		o.Apps[0].PingInterval = interval
		o.PongTimeout = 30 * time.Second
		o.Now = clock.Now
	})
	var written []*Session
	start := clock.Now()
	for i := range n {
		clock.Set(start.Add(time.Duration(i) * (interval / n)))
		c := &answeringConn{written: &written}
		s := srv.Open(sh, c, testKey, "")
		if s == nil {
			b.Fatal("Open refused")
		}
		c.sess = s
	}
	now := start.Add(interval)
	tick := func() int {
		now = now.Add(time.Second)
		clock.Set(now)
		sh.Sweep(now)
		pinged := len(written)
		for _, s := range written {
			s.Touch(false)
		}
		clear(written)
		written = written[:0]
		return pinged
	}
	// Two rounds of the interval, so every connection has been pinged and
	// the shard's structures have reached their steady size.
	for range 2 * int(interval/time.Second) {
		tick()
	}
	b.ReportAllocs()
	b.ResetTimer()
	pings := 0
	for b.Loop() {
		pings += tick()
	}
	b.ReportMetric(float64(pings)/float64(b.N), "pings/tick")
}
