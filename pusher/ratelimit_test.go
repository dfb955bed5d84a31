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
			for i, s := range tt.steps {
				var got bool
				if tt.aligned {
					got = w.allowAligned(base+s.at, sec, tt.limit)
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
