package bench

import (
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

// Regression: the pinger starts at the ramp's end, and every connection
// older than the ping interval was due at once: at a million connections,
// ~600,000 pings in one second, which kept the nodes saturated for tens of
// seconds (the presence check's upgrades timed out after 15 s). Overdue
// connections now ping at random points of the next interval; the others
// keep their schedule.
func TestSpreadOverdue(t *testing.T) {
	const n, interval = 10000, 120 * time.Second
	now := time.Unix(1_000_000, 0)
	conns := make([]atomic.Pointer[wsConn], n+2)
	for i := range n {
		c := &wsConn{}
		c.heard.Store(now.Add(-interval - time.Duration(i)*time.Millisecond).UnixNano())
		conns[i].Store(c)
	}
	fresh := &wsConn{}
	freshAt := now.Add(-interval / 2).UnixNano()
	fresh.heard.Store(freshAt)
	conns[n].Store(fresh) // conns[n+1] stays empty
	spreadOverdue(conns, now, interval, rand.Int64N)

	if got := fresh.heard.Load(); got != freshAt {
		t.Fatalf("a connection not due was moved: heard %d, want %d", got, freshAt)
	}
	perSecond := map[int64]int{}
	for i := range n {
		due := time.Duration(conns[i].Load().heard.Load() + int64(interval) - now.UnixNano())
		if due < 0 || due >= interval {
			t.Fatalf("connection %d due %v after now, want within [0, %v)", i, due, interval)
		}
		perSecond[int64(due/time.Second)]++
	}
	// Uniform over 120 one-second slots: ~83 each. Before, all 10,000 in
	// the first.
	for sec, k := range perSecond {
		if k > 3*n/int(interval/time.Second) {
			t.Fatalf("%d of %d pings due in second %d", k, n, sec)
		}
	}
	if len(perSecond) < 100 {
		t.Fatalf("pings spread over %d seconds of %d", len(perSecond), int(interval/time.Second))
	}
}
