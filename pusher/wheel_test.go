package pusher

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// wheelSecond returns the second of the wheel slot s sits in, or -1 when it
// is not in the wheel (a slot stands for one second of the wheel's span).
func wheelSecond(sh *Shard, s *Session) int64 {
	if s.wslot == 0 {
		return -1
	}
	w := &sh.wheel
	for sec := w.next; sec < w.next+wheelSlots; sec++ {
		if int(sec&(wheelSlots-1)) == int(s.wslot-1) {
			return sec
		}
	}
	return -1
}

// checkWheel verifies the wheel's bookkeeping: every open session once, at
// its recorded slot and position, no closed or released one, no stale
// pointer kept past a slot's length, and no session in a slot later than
// the second it comes due in.
func checkWheel(t *testing.T, sh *Shard) {
	t.Helper()
	w := &sh.wheel
	n := 0
	for i := range w.slots {
		slot := w.slots[i]
		for j, s := range slot {
			if s.wslot != int32(i)+1 || s.wpos != int32(j) {
				t.Fatalf("session %s in slot %d at %d records slot %d at %d", s.id, i, j, s.wslot-1, s.wpos)
			}
			if s.idx < 0 {
				t.Fatalf("released session %s still in the wheel", s.id)
			}
		}
		for _, s := range slot[len(slot):cap(slot)] {
			if s != nil {
				t.Fatalf("slot %d keeps a pointer past its length", i)
			}
		}
		n += len(slot)
	}
	if n != w.n {
		t.Fatalf("wheel counts %d sessions, holds %d", w.n, n)
	}
	for _, s := range sh.sessions {
		if s.closed {
			continue
		}
		if s.wslot == 0 {
			t.Fatalf("open session %s not in the wheel", s.id)
		}
		sec := wheelSecond(sh, s)
		due := s.lastSeen + int64(s.app.PingInterval)
		if s.pingedAt != 0 {
			due = s.pingedAt + int64(sh.srv.opts.PongTimeout)
		}
		if sec > floorSec(due) && sec > w.next {
			t.Fatalf("session %s in the slot of second %d, due in second %d", s.id, sec, floorSec(due))
		}
	}
}

func TestWheelPingExactlyWhenDue(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Apps[0].PingInterval = 10 * time.Second; o.PongTimeout = 5 * time.Second })
	base := e.clock.Now().Add(300 * time.Millisecond) // not on a second
	e.clock.Set(base)
	c := e.connect()
	for _, d := range []time.Duration{0, time.Second, 5 * time.Second, 9 * time.Second, 9900 * time.Millisecond, 10*time.Second - 1} {
		e.sweepAt(base.Add(d))
		c.expectNothing()
		checkWheel(t, e.sh)
	}
	e.sweepAt(base.Add(10 * time.Second))
	c.expect(`{"event":"pusher:ping"}`)
	checkWheel(t, e.sh)
	// Pinged once, not again while the ping is unanswered.
	e.sweepAt(base.Add(10*time.Second + 500*time.Millisecond))
	e.sweepAt(base.Add(14 * time.Second))
	c.expectNothing()
	if c.sess.pingedAt != base.Add(10*time.Second).UnixNano() {
		t.Errorf("pingedAt %d", c.sess.pingedAt)
	}
}

func TestWheelTrafficReschedules(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Apps[0].PingInterval = 10 * time.Second; o.PongTimeout = 5 * time.Second })
	base := e.clock.Now()
	c := e.connect()
	first := wheelSecond(e.sh, c.sess)
	if want := floorSec(base.Add(10 * time.Second).UnixNano()); first != want {
		t.Fatalf("opened into the slot of second %d, want %d", first, want)
	}
	// Traffic does not move it...
	e.clock.Set(base.Add(4500 * time.Millisecond))
	c.send(`{"event":"pusher:ping"}`)
	c.expect(`{"event":"pusher:pong"}`)
	if got := wheelSecond(e.sh, c.sess); got != first {
		t.Fatalf("a message moved the session to second %d", got)
	}
	// ...the sweep that reaches its slot does, without pinging it.
	e.sweepAt(base.Add(10 * time.Second))
	c.expectNothing()
	if got, want := wheelSecond(e.sh, c.sess), floorSec(base.Add(14500*time.Millisecond).UnixNano()); got != want {
		t.Fatalf("rescheduled to second %d, want %d", got, want)
	}
	checkWheel(t, e.sh)
	e.sweepAt(base.Add(14499 * time.Millisecond))
	c.expectNothing()
	e.sweepAt(base.Add(14500 * time.Millisecond))
	c.expect(`{"event":"pusher:ping"}`)
}

func TestWheelPongTimeout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Apps[0].PingInterval = 10 * time.Second; o.PongTimeout = 5 * time.Second })
	base := e.clock.Now()
	c := e.connect()
	e.sweepAt(base.Add(10 * time.Second))
	c.expect(`{"event":"pusher:ping"}`)
	e.sweepAt(base.Add(15*time.Second - 1))
	c.expectNothing()
	e.sweepAt(base.Add(15 * time.Second))
	f := c.conn.takeFrames()
	if len(f) != 2 || f[0].op != ws.OpText || f[1].op != ws.OpClose {
		t.Fatalf("frames %+v, want pusher:error and a close", f)
	}
	if code, _ := f[1].closeCode(); code != ErrPongTimeout.Code {
		t.Errorf("close code %d", code)
	}
	if c.conn.closes != 1 || !c.sess.closed {
		t.Errorf("closes %d, closed %v", c.conn.closes, c.sess.closed)
	}
	if e.sh.stats.closes[4201] != 1 || e.sh.stats.errors[4201] != 1 {
		t.Errorf("counted closes %v errors %v", e.sh.stats.closes, e.sh.stats.errors)
	}
	// Closed: out of the wheel, nothing more is written.
	if c.sess.wslot != 0 {
		t.Errorf("a closed session stays in the wheel")
	}
	e.sweepAt(base.Add(time.Hour))
	c.expectNothing()
	e.srv.Closed(c.sess)
	checkWheel(t, e.sh)
}

// A pinged session that answers is pinged again ping_interval after its
// answer, even when pong_timeout is longer than ping_interval.
func TestWheelPongTimeoutLongerThanInterval(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Apps[0].PingInterval = 5 * time.Second; o.PongTimeout = 60 * time.Second })
	base := e.clock.Now()
	c := e.connect()
	e.sweepAt(base.Add(5 * time.Second))
	c.expect(`{"event":"pusher:ping"}`)
	e.clock.Set(base.Add(6 * time.Second))
	c.send(`{"event":"pusher:pong"}`)
	for s := 7; s < 11; s++ {
		e.sweepAt(base.Add(time.Duration(s) * time.Second))
		c.expectNothing()
	}
	e.sweepAt(base.Add(11 * time.Second))
	c.expect(`{"event":"pusher:ping"}`)
}

func TestWheelClosedSessionsLeave(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Apps[0].PingInterval = 10 * time.Second })
	base := e.clock.Now()
	var cs []*client
	for i := range 300 {
		e.clock.Set(base.Add(time.Duration(i) * 100 * time.Millisecond))
		cs = append(cs, e.connect())
	}
	checkWheel(t, e.sh)
	if e.sh.wheel.n != 300 {
		t.Fatalf("wheel holds %d", e.sh.wheel.n)
	}
	// Close in a shuffled order, some after a sweep moved them.
	e.sweepAt(base.Add(25 * time.Second))
	rand.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
	for i, c := range cs {
		e.srv.Closed(c.sess)
		if i%37 == 0 {
			checkWheel(t, e.sh)
		}
	}
	checkWheel(t, e.sh)
	if e.sh.wheel.n != 0 || len(e.sh.sessions) != 0 {
		t.Fatalf("wheel %d, sessions %d after closing all", e.sh.wheel.n, len(e.sh.sessions))
	}
	for _, c := range cs {
		if c.sess.wslot != 0 {
			t.Fatalf("session %s still records a slot", c.sess.id)
		}
	}
}

func TestWheelLargeTimeJumps(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Apps[0].PingInterval = 10 * time.Second; o.PongTimeout = 5 * time.Second })
	base := e.clock.Now()
	a := e.connect()
	for _, jump := range []time.Duration{time.Minute, 10 * time.Minute, 24 * time.Hour} {
		// Only the sweep's time jumps (as the transport's tests do): the
		// session is pinged once, then closed by the next such sweep.
		e.sh.Sweep(base.Add(jump))
		a.expect(`{"event":"pusher:ping"}`)
		checkWheel(t, e.sh)
		e.sh.Sweep(base.Add(jump + 5*time.Second))
		if f := a.conn.takeFrames(); len(f) != 2 || f[1].op != ws.OpClose {
			t.Fatalf("after a jump of %v: %+v, want pusher:error and close", jump, f)
		}
		e.srv.Closed(a.sess)
		checkWheel(t, e.sh)
		// A client that opens at the clock, behind the last sweep.
		a = e.connect()
		checkWheel(t, e.sh)
	}
	// A message from a clock behind the sweeps, then sweeps at that clock.
	e.sh.Sweep(base.Add(48 * time.Hour))
	a.expect(`{"event":"pusher:ping"}`)
	e.clock.Set(base.Add(time.Second))
	a.send(`{"event":"pusher:pong"}`)
	checkWheel(t, e.sh)
	e.sweepAt(base.Add(10 * time.Second))
	a.expectNothing()
	e.sweepAt(base.Add(11 * time.Second))
	a.expect(`{"event":"pusher:ping"}`)
	checkWheel(t, e.sh)
}

func TestWheelMixedIntervals(t *testing.T) {
	intervals := []time.Duration{time.Second, 7 * time.Second, 60 * time.Second, 255 * time.Second, 300 * time.Second, 1000 * time.Second}
	var apps []*App
	for i, d := range intervals {
		apps = append(apps, &App{ID: fmt.Sprint("app", i), Key: fmt.Sprint("key", i), Secret: "s", PingInterval: d})
	}
	clock := newTestClock()
	srv, err := NewServer(Options{Apps: apps, Logger: quietLogger(), Now: clock.Now, PongTimeout: 2000 * time.Second}, 1)
	if err != nil {
		t.Fatal(err)
	}
	sh := srv.NewShard(syncExec)
	base := clock.Now().Add(250 * time.Millisecond)
	clock.Set(base)
	conns := make([]*fakeConn, len(apps))
	for i, a := range apps {
		conns[i] = newFakeConn(t)
		if srv.Open(sh, conns[i], a.Key, "") == nil {
			t.Fatal("refused")
		}
		conns[i].take()
	}
	pings := make([][]time.Duration, len(apps))
	for s := 1; s <= 1100; s++ {
		at := base.Add(time.Duration(s) * time.Second)
		clock.Set(at)
		sh.Sweep(at)
		for i, c := range conns {
			if len(c.takeFrames()) > 0 {
				pings[i] = append(pings[i], at.Sub(base))
			}
		}
	}
	checkWheel(t, sh)
	for i, d := range intervals {
		// Never answered: one ping, at the interval.
		if !slices.Equal(pings[i], []time.Duration{d}) {
			t.Errorf("app with ping_interval %v pinged at %v", d, pings[i])
		}
	}
}

// refSweep is Sweep as it was before the wheel: a scan of every session.
func refSweep(sh *Shard, now time.Time) {
	t := now.UnixNano()
	pongTimeout := int64(sh.srv.opts.PongTimeout)
	for i := len(sh.sessions) - 1; i >= 0; i-- {
		s := sh.sessions[i]
		if s.closed {
			continue
		}
		if s.pingedAt != 0 {
			if t-s.pingedAt >= pongTimeout {
				s.fail(ErrPongTimeout)
			}
			continue
		}
		if t-s.lastSeen >= int64(s.app.PingInterval) {
			s.pingedAt = t
			if s.controlFrames {
				s.writeFrame(framePing)
			} else {
				s.writeFrame(framePusherPing)
			}
		}
	}
}

// TestWheelMatchesScan drives two identical servers with the same random
// opens, messages, closes and clock moves, one swept by the wheel, the other
// by the scan the wheel replaced, and compares every connection's frames
// and the shards' counters after every step.
func TestWheelMatchesScan(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { wheelVersusScan(t, seed) })
	}
}

func wheelVersusScan(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	intervals := []time.Duration{time.Second, 3 * time.Second, 10*time.Second + 300*time.Millisecond, 60 * time.Second, 400 * time.Second}
	pongs := []time.Duration{500 * time.Millisecond, 5 * time.Second, 30 * time.Second, 90 * time.Second}
	pong := pongs[seed%uint64(len(pongs))]
	type side struct {
		srv   *Server
		sh    *Shard
		clock *testClock
		conns []*fakeConn
		sess  []*Session
	}
	mk := func() *side {
		var apps []*App
		for i, d := range intervals {
			apps = append(apps, &App{ID: fmt.Sprint("app", i), Key: fmt.Sprint("key", i), Secret: "s", PingInterval: d})
		}
		clock := newTestClock()
		srv, err := NewServer(Options{Apps: apps, Logger: quietLogger(), Now: clock.Now, PongTimeout: pong}, 1)
		if err != nil {
			t.Fatal(err)
		}
		return &side{srv: srv, sh: srv.NewShard(syncExec), clock: clock}
	}
	wh, ref := mk(), mk()
	both := []*side{wh, ref}
	now := wh.clock.Now()
	var sweepT time.Time // time of the last sweep
	for step := range 4000 {
		op := rng.IntN(100)
		switch {
		case op < 15 || len(wh.sess) == 0: // open
			key := fmt.Sprint("key", rng.IntN(len(intervals)))
			for _, x := range both {
				c := newFakeConn(t)
				s := x.srv.Open(x.sh, c, key, "")
				if s == nil {
					t.Fatal("refused")
				}
				c.takeFrames() // connection_established, with its random id
				x.conns = append(x.conns, c)
				x.sess = append(x.sess, s)
			}
		case op < 35: // a message (or a control frame) on a random connection
			i := rng.IntN(len(wh.sess))
			control := rng.IntN(4) == 0
			msg := []string{`{"event":"pusher:ping"}`, `{"event":"pusher:pong"}`, `{"event":"x"}`}[rng.IntN(3)]
			for _, x := range both {
				if control {
					x.sess[i].Touch(true)
				} else {
					x.sess[i].HandleMessage([]byte(msg))
				}
			}
		case op < 42: // the transport releases a connection
			i := rng.IntN(len(wh.sess))
			for _, x := range both {
				x.srv.Closed(x.sess[i])
				x.sess = slices.Delete(x.sess, i, i+1)
				x.conns = slices.Delete(x.conns, i, i+1)
			}
		case op < 70: // the clock moves
			var d time.Duration
			switch r := rng.IntN(100); {
			case r < 60:
				d = time.Duration(rng.Int64N(int64(1500 * time.Millisecond)))
			case r < 90:
				d = time.Duration(rng.Int64N(int64(20 * time.Second)))
			case r < 97:
				d = time.Duration(rng.Int64N(int64(10 * time.Minute)))
			default:
				d = -time.Duration(rng.Int64N(int64(3 * time.Minute))) // back
			}
			now = now.Add(d)
			for _, x := range both {
				x.clock.Set(now)
			}
		default: // a sweep, at the clock or, now and then, ahead of it
			at := now
			switch rng.IntN(20) {
			case 0:
				at = now.Add(time.Minute)
			case 1:
				at = sweepT // again at the last sweep's time
			}
			sweepT = at
			wh.sh.Sweep(at)
			refSweep(ref.sh, at)
		}
		for i := range wh.conns {
			got, want := frameText(wh.conns[i].takeFrames()), frameText(ref.conns[i].takeFrames())
			if got != want || wh.conns[i].closes != ref.conns[i].closes {
				t.Fatalf("step %d (op %d), connection %d: wheel wrote %v (closes %d), scan %v (closes %d)",
					step, op, i, got, wh.conns[i].closes, want, ref.conns[i].closes)
			}
			if a, b := wh.sess[i], ref.sess[i]; a.pingedAt != b.pingedAt || a.closed != b.closed {
				t.Fatalf("step %d, connection %d: wheel pingedAt %d closed %v, scan %d %v", step, i, a.pingedAt, a.closed, b.pingedAt, b.closed)
			}
		}
		if fmt.Sprint(wh.sh.stats.closes, wh.sh.stats.errors) != fmt.Sprint(ref.sh.stats.closes, ref.sh.stats.errors) {
			t.Fatalf("step %d: counters %v %v, scan %v %v", step, wh.sh.stats.closes, wh.sh.stats.errors, ref.sh.stats.closes, ref.sh.stats.errors)
		}
		if step%50 == 0 {
			checkWheel(t, wh.sh)
		}
	}
	checkWheel(t, wh.sh)
}

// frameText shows frames as their opcodes and payloads.
func frameText(fs []wsFrame) string {
	var b []byte
	for _, f := range fs {
		b = fmt.Appendf(b, "%d:%q ", f.op, f.payload)
	}
	return string(b)
}

// An inbound pusher:ping is answered with pusher:pong without allocating,
// and neither it nor a WebSocket control frame moves the session in the
// wheel.
func TestPusherPingAllocatesNothing(t *testing.T) {
	clock := newTestClock()
	srv, sh, _ := benchServer(t, func(o *Options) { o.Now = clock.Now })
	conn := &discardConn{}
	s := srv.Open(sh, conn, testKey, "")
	slot, pos := s.wslot, s.wpos
	sh.Sweep(clock.Now())
	msg := []byte(`{"event":"pusher:ping"}`)
	frames := conn.frames
	allocs := testing.AllocsPerRun(1000, func() {
		clock.Advance(time.Millisecond)
		s.HandleMessage(msg)
		s.Touch(true)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per pusher:ping", allocs)
	}
	if conn.frames-frames < 1000 {
		t.Errorf("%d pongs for 1000 pings", conn.frames-frames)
	}
	if s.wslot != slot || s.wpos != pos {
		t.Errorf("messages moved the session in the wheel")
	}
}
