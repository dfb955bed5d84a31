package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The bubble's clock starts at midnight UTC, 2000-01-01.
var bubbleStartMS = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// Each event type goes out in its own body, signed, with the wire headers
// and the endpoint's extra headers.
func TestWireFormat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := &fakeTransport{}
		d := mustNew(t, Config{Client: newClient(ft)}, testApp(Endpoint{
			URL:        "http://hooks.test/pusher/webhook",
			EventTypes: allTypes,
			Headers:    map[string]string{"X-Tenant": "a", "authorization": "Bearer t"},
		}))
		d.Start()
		events := []struct {
			ev   Event
			want string
		}{
			{Event{Name: ChannelOccupied, Channel: "private-a"}, `{"name":"channel_occupied","channel":"private-a"}`},
			{Event{Name: MemberAdded, Channel: "presence-a", UserID: "7"}, `{"name":"member_added","channel":"presence-a","user_id":"7"}`},
			{Event{Name: ClientEvent, Channel: "presence-a", Event: "client-x", Data: `{"a":1}`, SocketID: "1.2", UserID: "7"},
				`{"name":"client_event","channel":"presence-a","event":"client-x","data":"{\"a\":1}","socket_id":"1.2","user_id":"7"}`},
			{Event{Name: ClientEvent, Channel: "private-a", Event: "client-x", Data: "d", SocketID: "1.2", UserID: "7"},
				`{"name":"client_event","channel":"private-a","event":"client-x","data":"d","socket_id":"1.2"}`},
			{Event{Name: CacheMiss, Channel: "cache-a"}, `{"name":"cache_miss","channel":"cache-a"}`},
			{Event{Name: SubscriptionCount, Channel: "private-a", SubscriptionCount: 5}, `{"name":"subscription_count","channel":"private-a","subscription_count":5}`},
		}
		for i, e := range events {
			time.Sleep(time.Second)
			d.Emit("app", e.ev)
			synctest.Wait()
			reqs := ft.requests("")
			if len(reqs) != i+1 {
				t.Fatalf("after %d events: %d requests", i+1, len(reqs))
			}
			r := reqs[i]
			want := fmt.Sprintf(`{"time_ms":%d,"events":[%s]}`, bubbleStartMS+int64(i+1)*1000, e.want)
			if string(r.body) != want {
				t.Errorf("body\n got %s\nwant %s", r.body, want)
			}
			checkSigned(t, r)
			if r.url != "http://hooks.test/pusher/webhook" {
				t.Errorf("url %q", r.url)
			}
			if got := r.header.Get("X-Tenant"); got != "a" {
				t.Errorf("X-Tenant = %q", got)
			}
			if got := r.header.Get("Authorization"); got != "Bearer t" {
				t.Errorf("Authorization = %q", got)
			}
		}
		closeNow(t, d)
		es := endpointStats(d, 0)
		if es.Delivered != uint64(len(events)) || es.Requests != uint64(len(events)) || es.Retries != 0 {
			t.Errorf("stats %+v", es)
		}
	})
}

// The injected Now dates the bodies.
func TestInjectedNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := &fakeTransport{}
		now := time.UnixMilli(1327078148132)
		d := mustNew(t, Config{Client: newClient(ft), Now: func() time.Time { return now }},
			testApp(Endpoint{URL: "http://a.test/", EventTypes: allTypes}))
		d.Start()
		d.Emit("app", Event{Name: ChannelOccupied, Channel: "a"})
		synctest.Wait()
		closeNow(t, d)
		if got := ft.requests(""); len(got) != 1 || !strings.HasPrefix(string(got[0].body), `{"time_ms":1327078148132,`) {
			t.Errorf("requests %+v", got)
		}
	})
}

func TestBatching(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := &fakeTransport{}
		d := mustNew(t, Config{Client: newClient(ft), Batch: true, MaxBatchEvents: 4, VacateDelay: -1}, testApp(
			Endpoint{URL: "http://a.test/existence", EventTypes: []string{ChannelOccupied, ChannelVacated}},
			Endpoint{URL: "http://a.test/private", EventTypes: allTypes, Filter: Filter{ChannelNameStartsWith: "private-"}},
		))
		d.Start()
		t0 := time.Now()
		emit := func(name, channel string) {
			d.Emit("app", Event{Name: name, Channel: channel, Event: "client-x", SubscriptionCount: 1})
		}

		// One window (250 ms from its first event).
		emit(ChannelOccupied, "public")
		emit(ChannelOccupied, "private-a")
		time.Sleep(100 * time.Millisecond)
		emit(ClientEvent, "private-a")
		time.Sleep(140 * time.Millisecond)
		emit(ChannelVacated, "public")
		synctest.Wait()
		if n := len(ft.requests("")); n != 0 {
			t.Fatalf("%d requests before the window closed", n)
		}
		time.Sleep(10 * time.Millisecond) // 250 ms
		synctest.Wait()
		// The next window: five events for /private, over its batch size.
		emit(ChannelOccupied, "private-b")
		for range 4 {
			emit(SubscriptionCount, "private-b")
		}
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		closeNow(t, d)

		at := func(rs []request) (out []time.Duration) {
			for _, r := range rs {
				out = append(out, r.at.Sub(t0))
			}
			return out
		}
		existence := ft.requests("http://a.test/existence")
		private := ft.requests("http://a.test/private")
		for _, r := range append(existence, private...) {
			checkSigned(t, r)
		}
		wantExistence := [][]string{
			{"channel_occupied public", "channel_occupied private-a", "channel_vacated public"},
			{"channel_occupied private-b"},
		}
		wantPrivate := [][]string{
			{"channel_occupied private-a", "client_event private-a"},
			{"channel_occupied private-b", "subscription_count private-b", "subscription_count private-b", "subscription_count private-b"},
			{"subscription_count private-b"},
		}
		check := func(name string, rs []request, want [][]string, wantAt []time.Duration) {
			t.Helper()
			if len(rs) != len(want) {
				t.Fatalf("%s: %d bodies, want %d", name, len(rs), len(want))
			}
			for i, r := range rs {
				if got := summary(t, []request{r}); !slices.Equal(got, want[i]) {
					t.Errorf("%s body %d: %q, want %q", name, i, got, want[i])
				}
			}
			if got := at(rs); !slices.Equal(got, wantAt) {
				t.Errorf("%s sent at %v, want %v", name, got, wantAt)
			}
		}
		ms := time.Millisecond
		check("existence", existence, wantExistence, []time.Duration{250 * ms, 500 * ms})
		// The full batch goes at once; the fifth event opens the next window.
		check("private", private, wantPrivate, []time.Duration{250 * ms, 250 * ms, 500 * ms})
	})
}

// Delay rule scenarios: each step emits an event at an offset from the
// start; the endpoint receives every type; want lists what it receives, and
// when.
func TestVacateDelay(t *testing.T) {
	type step struct {
		at   time.Duration
		name string
		ch   string
		user string
	}
	type got struct {
		at   time.Duration
		what string
	}
	s := time.Second
	tests := []struct {
		name      string
		delay     time.Duration
		types     []string
		steps     []step
		want      []got
		cancelled uint64
	}{
		{"vacated waits for the delay", 0, allTypes,
			[]step{{0, ChannelOccupied, "a", ""}, {s, ChannelVacated, "a", ""}},
			[]got{{0, "channel_occupied a"}, {4 * s, "channel_vacated a"}}, 0},
		{"re-occupied within the delay: neither is sent", 0, allTypes,
			[]step{{0, ChannelOccupied, "a", ""}, {s, ChannelVacated, "a", ""}, {3 * s, ChannelOccupied, "a", ""}},
			[]got{{0, "channel_occupied a"}}, 2},
		{"re-occupied after the delay: both are sent", 0, allTypes,
			[]step{{0, ChannelVacated, "a", ""}, {3*s + time.Millisecond, ChannelOccupied, "a", ""}},
			[]got{{3 * s, "channel_vacated a"}, {3*s + time.Millisecond, "channel_occupied a"}}, 0},
		{"another channel does not cancel", 0, allTypes,
			[]step{{0, ChannelVacated, "a", ""}, {s, ChannelOccupied, "b", ""}},
			[]got{{s, "channel_occupied b"}, {3 * s, "channel_vacated a"}}, 0},
		{"member back within the delay", 0, allTypes,
			[]step{{0, MemberRemoved, "presence-a", "1"}, {2 * s, MemberAdded, "presence-a", "1"}},
			nil, 2},
		{"another member does not cancel", 0, allTypes,
			[]step{{0, MemberRemoved, "presence-a", "1"}, {2 * s, MemberAdded, "presence-a", "2"}},
			[]got{{2 * s, "member_added presence-a 2"}, {3 * s, "member_removed presence-a 1"}}, 0},
		{"the same user on another channel does not cancel", 0, allTypes,
			[]step{{0, MemberRemoved, "presence-a", "1"}, {s, MemberAdded, "presence-b", "1"}},
			[]got{{s, "member_added presence-b 1"}, {3 * s, "member_removed presence-a 1"}}, 0},
		{"a second vacated while held is ignored", 0, allTypes,
			[]step{{0, ChannelVacated, "a", ""}, {s, ChannelVacated, "a", ""}},
			[]got{{3 * s, "channel_vacated a"}}, 0},
		{"held events go out in order", 500 * time.Millisecond, allTypes,
			[]step{{0, MemberRemoved, "presence-a", "1"}, {100 * time.Millisecond, ChannelVacated, "presence-a", ""},
				{200 * time.Millisecond, ChannelVacated, "b", ""}},
			[]got{{500 * time.Millisecond, "member_removed presence-a 1"}, {600 * time.Millisecond, "channel_vacated presence-a"},
				{700 * time.Millisecond, "channel_vacated b"}}, 0},
		{"an endpoint without vacated still does not see the cancelled occupied", 0, []string{ChannelOccupied},
			[]step{{0, ChannelOccupied, "a", ""}, {s, ChannelVacated, "a", ""}, {2 * s, ChannelOccupied, "a", ""}},
			[]got{{0, "channel_occupied a"}}, 2},
		{"no delay: nothing held nor cancelled", -1, allTypes,
			[]step{{0, ChannelVacated, "a", ""}, {s, ChannelOccupied, "a", ""}},
			[]got{{0, "channel_vacated a"}, {s, "channel_occupied a"}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ft := &fakeTransport{}
				d := mustNew(t, Config{Client: newClient(ft), VacateDelay: tt.delay, Concurrency: 1},
					testApp(Endpoint{URL: "http://a.test/", EventTypes: tt.types}))
				d.Start()
				t0 := time.Now()
				for _, st := range tt.steps {
					time.Sleep(time.Until(t0.Add(st.at)))
					d.Emit("app", Event{Name: st.name, Channel: st.ch, UserID: st.user})
					synctest.Wait()
				}
				time.Sleep(10 * time.Second)
				synctest.Wait()
				var gotten []got
				for _, r := range ft.requests("") {
					for _, w := range summary(t, []request{r}) {
						gotten = append(gotten, got{r.at.Sub(t0), w})
					}
				}
				if !slices.Equal(gotten, tt.want) {
					t.Errorf("received %v\nwant     %v", gotten, tt.want)
				}
				st := d.Stats().Apps[0]
				if st.Cancelled != tt.cancelled || st.Held != 0 {
					t.Errorf("Cancelled = %d, Held = %d; want %d, 0", st.Cancelled, st.Held, tt.cancelled)
				}
				closeNow(t, d)
			})
		})
	}
}

// Close sends the held events at once.
func TestCloseReleasesHeldEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := &fakeTransport{}
		d := mustNew(t, Config{Client: newClient(ft), Concurrency: 1}, testApp(Endpoint{URL: "http://a.test/", EventTypes: allTypes}))
		d.Start()
		t0 := time.Now()
		d.Emit("app", Event{Name: ChannelVacated, Channel: "a"})
		d.Emit("app", Event{Name: MemberRemoved, Channel: "presence-a", UserID: "1"})
		time.Sleep(time.Second)
		if h := d.Stats().Apps[0].Held; h != 2 {
			t.Fatalf("Held = %d, want 2", h)
		}
		closeNow(t, d)
		reqs := ft.requests("")
		if got := summary(t, reqs); !slices.Equal(got, []string{"channel_vacated a", "member_removed presence-a 1"}) {
			t.Errorf("sent %q", got)
		}
		for _, r := range reqs {
			if r.at.Sub(t0) != time.Second {
				t.Errorf("sent at %v, want 1s (at Close)", r.at.Sub(t0))
			}
		}
	})
}

// Past QueueSize held events, the next ones go out without delay.
func TestHeldEventsBounded(t *testing.T) {
	d := mustNew(t, Config{QueueSize: 2, AfterFunc: func(time.Duration, func()) func() bool { return func() bool { return true } }},
		testApp(Endpoint{URL: "http://a.test/", EventTypes: allTypes}))
	for _, ch := range []string{"a", "b", "c"} {
		d.Emit("app", Event{Name: ChannelVacated, Channel: ch})
	}
	if got := queued(d, 0); !slices.Equal(got, []string{"channel_vacated c"}) {
		t.Errorf("queued %q, want only c's", got)
	}
	if st := d.Stats().Apps[0]; st.Undelayed != 1 || st.Held != 2 {
		t.Errorf("Undelayed = %d, Held = %d; want 1, 2", st.Undelayed, st.Held)
	}
}

// manualClock is an injected clock: time moves only by Advance.
type manualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
}

type manualTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	tm := &manualTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, tm)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !tm.stopped
		tm.stopped = true
		return was
	}
}

// Advance moves the clock and runs the timers that are due, in this
// goroutine.
func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*manualTimer
	keep := c.timers[:0]
	for _, tm := range c.timers {
		switch {
		case tm.stopped:
		case !tm.at.After(c.now):
			tm.stopped = true
			due = append(due, tm)
		default:
			keep = append(keep, tm)
		}
	}
	c.timers = keep
	c.mu.Unlock()
	for _, tm := range due {
		tm.f()
	}
}

// The delay runs on the injected clock (no synctest, no goroutines: the
// Dispatcher is not started and the test reads its queue).
func TestVacateDelayInjectedClock(t *testing.T) {
	clock := &manualClock{now: time.Unix(1000, 0)}
	d := mustNew(t, Config{Now: clock.Now, AfterFunc: clock.AfterFunc, VacateDelay: 3 * time.Second},
		testApp(Endpoint{URL: "http://a.test/", EventTypes: allTypes}))
	d.Emit("app", Event{Name: ChannelVacated, Channel: "a"})
	clock.Advance(time.Second)
	d.Emit("app", Event{Name: ChannelVacated, Channel: "b"})
	clock.Advance(1999 * time.Millisecond)
	if got := queued(d, 0); len(got) != 0 {
		t.Fatalf("queued %q before the delay", got)
	}
	clock.Advance(time.Millisecond)
	if got := queued(d, 0); !slices.Equal(got, []string{"channel_vacated a"}) {
		t.Fatalf("at 3s: queued %q", got)
	}
	d.Emit("app", Event{Name: ChannelOccupied, Channel: "b"}) // cancels b's
	clock.Advance(time.Hour)
	if got := queued(d, 0); len(got) != 0 {
		t.Fatalf("queued %q after b was occupied again", got)
	}
	if st := d.Stats().Apps[0]; st.Cancelled != 2 || st.Held != 0 {
		t.Errorf("Cancelled = %d, Held = %d", st.Cancelled, st.Held)
	}
}

func TestBackoff(t *testing.T) {
	cfg := Config{Jitter: -1}.withDefaults()
	var got []time.Duration
	for retry := range 9 {
		got = append(got, backoff(&cfg, retry, nil))
	}
	s := time.Second
	want := []time.Duration{s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 60 * s, 60 * s, 60 * s}
	if !slices.Equal(got, want) {
		t.Errorf("backoff %v, want %v", got, want)
	}
	if w := backoff(&cfg, 1000, nil); w != time.Minute {
		t.Errorf("backoff after 1000 retries = %v", w)
	}
	cfg = Config{}.withDefaults() // jitter 0.2
	for _, tt := range []struct {
		rnd  float64
		want time.Duration
	}{{0, 3200 * time.Millisecond}, {0.5, 4 * s}, {0.75, 4400 * time.Millisecond}} {
		if w := backoff(&cfg, 2, func() float64 { return tt.rnd }); w != tt.want {
			t.Errorf("backoff(2) with rnd %v = %v, want %v", tt.rnd, w, tt.want)
		}
	}
}

// A body that keeps failing is retried at 1, 2, 4... 60 s intervals until
// the 5 minute budget would be passed, then counted as failed.
func TestRetryScheduleAndBudget(t *testing.T) {
	s := time.Second
	tests := []struct {
		name    string
		status  int // 0: hang until the timeout
		cfg     Config
		want    []time.Duration
		timeout bool
	}{
		{"500s", 500, Config{Jitter: -1},
			[]time.Duration{0, 1 * s, 3 * s, 7 * s, 15 * s, 31 * s, 63 * s, 123 * s, 183 * s, 243 * s}, false},
		{"timeouts", 0, Config{Jitter: -1, Timeout: 5 * s, RetryBudget: time.Minute},
			// each attempt takes 5 s, then waits 1, 2, 4, 8, 16 s; after
			// the sixth, 61 s + 32 s would pass the budget
			[]time.Duration{0, 6 * s, 13 * s, 22 * s, 35 * s, 56 * s}, true},
		{"no retries", 503, Config{RetryBudget: -1}, []time.Duration{0}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ft := &fakeTransport{respond: func(string, int) int { return tt.status }}
				cfg := tt.cfg
				cfg.Client = newClient(ft)
				d := mustNew(t, cfg, testApp(Endpoint{URL: "http://a.test/", EventTypes: allTypes}))
				d.Start()
				t0 := time.Now()
				d.Emit("app", Event{Name: ChannelOccupied, Channel: "a"})
				time.Sleep(time.Hour)
				synctest.Wait()
				reqs := ft.requests("")
				var at []time.Duration
				for _, r := range reqs {
					at = append(at, r.at.Sub(t0))
					if string(r.body) != string(reqs[0].body) {
						t.Errorf("retry with another body: %s vs %s", r.body, reqs[0].body)
					}
				}
				if !slices.Equal(at, tt.want) {
					t.Errorf("attempts at %v\nwant        %v", at, tt.want)
				}
				es := endpointStats(d, 0)
				n := uint64(len(tt.want))
				wantFailures := Failures{Status: n}
				if tt.timeout {
					wantFailures = Failures{Timeout: n}
				}
				if es.Requests != n || es.Retries != n-1 || es.Failed != 1 || es.Delivered != 0 || es.Failures != wantFailures {
					t.Errorf("stats %+v", es)
				}
				if es.LastError == "" || es.LastErrorAt.IsZero() {
					t.Errorf("no last error: %+v", es)
				}
				closeNow(t, d)
			})
		})
	}
}

// With jitter the waits stay within ±20% of the schedule.
func TestRetryJitterBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := &fakeTransport{respond: func(string, int) int { return 500 }}
		d := mustNew(t, Config{Client: newClient(ft), RetryBudget: time.Minute},
			testApp(Endpoint{URL: "http://a.test/", EventTypes: allTypes}))
		d.Start()
		d.Emit("app", Event{Name: ChannelOccupied, Channel: "a"})
		time.Sleep(time.Hour)
		synctest.Wait()
		reqs := ft.requests("")
		base := time.Second
		for i := 1; i < len(reqs); i++ {
			wait := reqs[i].at.Sub(reqs[i-1].at)
			if lo, hi := base*8/10, base*12/10; wait < lo || wait > hi {
				t.Errorf("wait %d = %v, want within [%v, %v]", i, wait, lo, hi)
			}
			base = min(2*base, time.Minute)
		}
		if len(reqs) < 5 {
			t.Errorf("%d attempts", len(reqs))
		}
		closeNow(t, d)
	})
}

// Emit never blocks: with the endpoint stuck, its queue fills and the rest
// is dropped and counted, exactly.
func TestQueueBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := &fakeTransport{respond: func(string, int) int { return 0 }} // hang
		d := mustNew(t, Config{Client: newClient(ft), QueueSize: 5, Concurrency: 1, Timeout: time.Hour},
			testApp(
				Endpoint{URL: "http://a.test/stuck", EventTypes: allTypes},
				Endpoint{URL: "http://a.test/other", EventTypes: []string{CacheMiss}},
			))
		d.Start()
		ev := Event{Name: ChannelOccupied, Channel: "a"}
		d.Emit("app", ev) // taken by the sender, which hangs
		synctest.Wait()
		d.Emit("app", ev) // held by the collector, waiting for a sender
		synctest.Wait()
		for range 98 {
			d.Emit("app", ev) // 5 queued, 93 dropped
		}
		es := endpointStats(d, 0)
		if es.Enqueued != 7 || es.Dropped.QueueFull != 93 || es.Queued != 5 || es.InFlight != 1 {
			t.Errorf("stats %+v", es)
		}
		// The other endpoint is unaffected.
		d.Emit("app", Event{Name: CacheMiss, Channel: "cache-a"})
		synctest.Wait()
		if n := len(ft.requests("http://a.test/other")); n != 1 {
			t.Errorf("other endpoint: %d requests", n)
		}
		// Close gives up after its context: everything held is abandoned.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := d.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Close: %v", err)
		}
		es = endpointStats(d, 0)
		if es.Dropped.Abandoned != 7 || es.Delivered != 0 || es.Failed != 0 || es.Queued != 0 || es.InFlight != 0 {
			t.Errorf("after Close: %+v", es)
		}
		d.Emit("app", ev)
		if es = endpointStats(d, 0); es.Dropped.AfterClose != 1 {
			t.Errorf("after Close, Emit: %+v", es)
		}
	})
}

// Close flushes the queues without waiting for batch windows, and retries
// while its context lasts.
func TestCloseFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := &fakeTransport{respond: func(_ string, n int) int {
			if n == 0 {
				return 500
			}
			return 200
		}}
		d := mustNew(t, Config{Client: newClient(ft), Batch: true, BatchWindow: time.Hour, MaxBatchEvents: 2, Jitter: -1},
			testApp(Endpoint{URL: "http://a.test/", EventTypes: allTypes}))
		t0 := time.Now()
		for _, ch := range []string{"a", "b", "c"} {
			d.Emit("app", Event{Name: ChannelOccupied, Channel: ch}) // before Start: queued
		}
		closeNow(t, d) // starts, flushes
		reqs := ft.requests("")
		var at []time.Duration
		for _, r := range reqs {
			at = append(at, r.at.Sub(t0))
		}
		// Bodies of at most 2 events; the first attempt fails and is retried
		// after 1 s.
		if got := summary(t, reqs[1:]); len(reqs) != 3 || len(got) != 3 {
			t.Fatalf("requests at %v: %q", at, got)
		}
		es := endpointStats(d, 0)
		if es.Delivered != 3 || es.Retries != 1 || es.Enqueued != 3 {
			t.Errorf("stats %+v", es)
		}
		if at[len(at)-1] > time.Second {
			t.Errorf("requests at %v: Close waited for the batch window", at)
		}
	})
}

// A 3xx is not followed by the default client: it is a failed attempt.
func TestRedirectIsAFailure(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	d := mustNew(t, Config{RetryBudget: -1}, testApp(Endpoint{URL: srv.URL + "/hook", EventTypes: allTypes}))
	d.Start()
	d.Emit("app", Event{Name: ChannelOccupied, Channel: "a"})
	eventually(t, 10*time.Second, "the attempt", func() bool { return endpointStats(d, 0).Failed == 1 })
	closeNow(t, d)
	if es := endpointStats(d, 0); es.Failures.Status != 1 || es.Requests != 1 || !strings.Contains(es.LastError, "302") {
		t.Errorf("stats %+v", es)
	}
}
