package pusher

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// trackerLog records the tracker's callbacks in the order they ran.
type trackerLog struct {
	mu  sync.Mutex
	got []string
	ch  chan struct{}
}

func newTrackerLog() *trackerLog { return &trackerLog{ch: make(chan struct{}, 1024)} }

func (l *trackerLog) add(s string) {
	l.mu.Lock()
	l.got = append(l.got, s)
	l.mu.Unlock()
	l.ch <- struct{}{}
}

func (l *trackerLog) hold(name string) func(bool) {
	return func(first bool) { l.add(fmt.Sprintf("%s:first=%v", name, first)) }
}

func (l *trackerLog) release(name string) func(bool) {
	return func(last bool) { l.add(fmt.Sprintf("%s:last=%v", name, last)) }
}

// wait waits until n callbacks ran and returns them all.
func (l *trackerLog) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		l.mu.Lock()
		if len(l.got) >= n {
			out := append([]string(nil), l.got...)
			l.mu.Unlock()
			return out
		}
		l.mu.Unlock()
		select {
		case <-l.ch:
		case <-deadline:
			t.Fatalf("waited for %d callbacks, got %q", n, l.got)
		}
	}
}

func TestMemoryTrackerHoldRelease(t *testing.T) {
	app := &App{ID: "a"}
	const long = time.Hour
	type step struct {
		op    string // hold, release, releaseLong
		name  string // callback label
		delay time.Duration
	}
	tests := []struct {
		name  string
		steps []step
		want  []string
	}{
		{"one holder", []step{{op: "hold", name: "h1"}, {op: "release", name: "r1"}},
			[]string{"h1:first=true", "r1:last=true"}},
		{"two holders", []step{{op: "hold", name: "h1"}, {op: "hold", name: "h2"}, {op: "release", name: "r1"}, {op: "release", name: "r2"}},
			[]string{"h1:first=true", "h2:first=false", "r1:last=false", "r2:last=true"}},
		{"hold inside the delay", []step{{op: "hold", name: "h1"}, {op: "release", name: "r1", delay: long}, {op: "hold", name: "h2"}, {op: "release", name: "r2"}},
			[]string{"h1:first=true", "r1:last=false", "h2:first=false", "r2:last=true"}},
		{"release after the delay", []step{{op: "hold", name: "h1"}, {op: "release", name: "r1", delay: 5 * time.Millisecond}},
			[]string{"h1:first=true", "r1:last=true"}},
		{"release more than held", []step{{op: "release", name: "r0"}, {op: "hold", name: "h1"}},
			[]string{"r0:last=false", "h1:first=true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 20 {
				tr := NewMemoryTracker()
				l := newTrackerLog()
				for _, s := range tt.steps {
					switch s.op {
					case "hold":
						tr.Hold(app, "k", l.hold(s.name))
					case "release":
						tr.Release(app, "k", s.delay, l.release(s.name))
					}
				}
				got := l.wait(t, len(tt.want))
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Fatalf("got %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestMemoryTrackerReleaseAfterDelayThenHold(t *testing.T) {
	app := &App{ID: "a"}
	tr := NewMemoryTracker()
	l := newTrackerLog()
	tr.Hold(app, "k", l.hold("h1"))
	tr.Release(app, "k", 5*time.Millisecond, l.release("r1"))
	l.wait(t, 2)
	// The delay passed: a new hold is a new first.
	tr.Hold(app, "k", l.hold("h2"))
	got := l.wait(t, 3)
	if got[2] != "h2:first=true" {
		t.Errorf("got %q", got)
	}
}

func TestMemoryTrackerHoldingAndCount(t *testing.T) {
	app, other := &App{ID: "a"}, &App{ID: "b"}
	tr := NewMemoryTracker()
	tr.Hold(app, "held", nil)
	tr.Hold(app, "waiting", nil)
	tr.Release(app, "waiting", time.Hour, nil)
	res := make(chan []bool, 1)
	tr.Holding(app, []string{"held", "waiting", "never", "held"}, func(h []bool) { res <- h })
	if got := fmt.Sprint(<-res); got != "[true false false true]" {
		t.Errorf("Holding = %s", got)
	}
	tr.Holding(other, []string{"held"}, func(h []bool) { res <- h })
	if got := fmt.Sprint(<-res); got != "[false]" {
		t.Errorf("Holding of another app = %s", got)
	}

	type total struct {
		n   int64
		seq uint64
	}
	counts := make(chan total, 16)
	cb := func(n int64, seq uint64) { counts <- total{n, seq} }
	for _, d := range []int64{1, 1, -1, 0, -1, 3} {
		tr.Count(app, "n", d, cb)
	}
	tr.Count(other, "n", 5, cb)
	var last uint64
	for i, want := range []int64{1, 2, 1, 1, 0, 3, 5} {
		got := <-counts
		if got.n != want || got.seq <= last {
			t.Errorf("count %d: got %d seq %d (last seq %d), want %d", i, got.n, got.seq, last, want)
		}
		last = got.seq
	}
}

// TestMemoryTrackerConcurrent holds and releases from many goroutines, for
// the race detector: every key ends up announced as first as often as last.
func TestMemoryTrackerConcurrent(t *testing.T) {
	app := &App{ID: "a"}
	tr := NewMemoryTracker()
	var mu sync.Mutex
	firsts, lasts := map[string]int{}, map[string]int{}
	var wg sync.WaitGroup
	const workers, rounds = 8, 200
	done := make(chan struct{}, workers*rounds*2)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				key := fmt.Sprintf("k%d", (w+i)%3)
				tr.Hold(app, key, func(first bool) {
					mu.Lock()
					if first {
						firsts[key]++
					}
					mu.Unlock()
					done <- struct{}{}
				})
				tr.Release(app, key, 0, func(last bool) {
					mu.Lock()
					if last {
						lasts[key]++
					}
					mu.Unlock()
					done <- struct{}{}
				})
				tr.Count(app, "n", 1, func(int64, uint64) {})
			}
		}()
	}
	wg.Wait()
	for range workers * rounds * 2 {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("callbacks missing")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for k, n := range firsts {
		if lasts[k] != n || n == 0 {
			t.Errorf("key %s: %d firsts, %d lasts", k, n, lasts[k])
		}
	}
	res := make(chan []bool, 1)
	tr.Holding(app, []string{"k0", "k1", "k2"}, func(h []bool) { res <- h })
	if got := fmt.Sprint(<-res); got != "[false false false]" {
		t.Errorf("still held: %s", got)
	}
}
