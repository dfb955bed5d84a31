package pusher

import (
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	const sec = int64(time.Second)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	type step struct {
		at   int64 // ns after base
		want bool
	}
	tests := []struct {
		name    string
		aligned bool
		limit   int
		steps   []step
	}{
		{name: "decay window opens at the first attempt", limit: 2, steps: []step{
			{at: 500 * 1e6, want: true}, {at: 900 * 1e6, want: true}, {at: 1400 * 1e6, want: false},
			{at: 1500 * 1e6, want: true}, {at: 1600 * 1e6, want: true}, {at: 2499 * 1e6, want: false},
		}},
		{name: "decay window ignores a step back", limit: 1, steps: []step{
			{at: 2 * sec, want: true}, {at: sec, want: false}, {at: 3 * sec, want: true},
		}},
		{name: "aligned windows are whole seconds", aligned: true, limit: 2, steps: []step{
			{at: 500 * 1e6, want: true}, {at: 900 * 1e6, want: true}, {at: 999 * 1e6, want: false},
			{at: 1000 * 1e6, want: true}, {at: 1999 * 1e6, want: true}, {at: 1999 * 1e6, want: false},
		}},
		{name: "aligned window reopens after a step back", aligned: true, limit: 1, steps: []step{
			{at: 2 * sec, want: true}, {at: 2 * sec, want: false}, {at: sec, want: true}, {at: sec, want: false},
		}},
		{name: "no limit refuses everything", limit: 0, steps: []step{{at: 0, want: false}, {at: 5 * sec, want: false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w window
			var p, q perSecond
			for i, s := range tt.steps {
				var got bool
				if tt.aligned {
					// Both per-second counts behave alike.
					got = p.allowSubscribe(base+s.at, tt.limit)
					if got2 := q.allowClientEvent(base+s.at, tt.limit); got2 != got {
						t.Errorf("step %d: subscribe allowed %v, client event %v", i, got, got2)
					}
				} else {
					got = w.allow(base+s.at, sec, tt.limit)
				}
				if got != s.want {
					t.Errorf("step %d at +%v: allowed %v, want %v", i, time.Duration(s.at), got, s.want)
				}
			}
		})
	}
}

// The two per-second counts share a window start but not their budgets:
// within a second each has its own limit, and a new second (or a step back
// to an earlier one) gives both a fresh budget.
func TestPerSecondCountsIndependent(t *testing.T) {
	const sec = int64(time.Second)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	var p perSecond
	steps := []struct {
		at        int64
		subscribe bool
		want      bool
	}{
		{at: 100 * 1e6, subscribe: true, want: true},
		{at: 200 * 1e6, subscribe: true, want: true},
		{at: 300 * 1e6, subscribe: true, want: false}, // subscribes spent
		{at: 400 * 1e6, subscribe: false, want: true}, // client events are not
		{at: 500 * 1e6, subscribe: false, want: true},
		{at: 600 * 1e6, subscribe: false, want: false},
		{at: sec, subscribe: false, want: true}, // a new second for both
		{at: sec + 1, subscribe: true, want: true},
		{at: sec + 2, subscribe: true, want: true},
		{at: sec + 3, subscribe: true, want: false},
		{at: 0, subscribe: true, want: true}, // clock stepped back: a new window
	}
	for i, s := range steps {
		var got bool
		if s.subscribe {
			got = p.allowSubscribe(base+s.at, 2)
		} else {
			got = p.allowClientEvent(base+s.at, 2)
		}
		if got != s.want {
			t.Errorf("step %d (subscribe %v at +%v): allowed %v, want %v", i, s.subscribe, time.Duration(s.at), got, s.want)
		}
	}
}
