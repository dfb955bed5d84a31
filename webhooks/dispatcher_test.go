package webhooks

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Routing is decided by Emit alone: these tests look at the endpoints'
// queues of a Dispatcher that was never started.
func TestRoutingPerEndpoint(t *testing.T) {
	endpoints := []Endpoint{
		{URL: "http://a.test/all", EventTypes: allTypes},
		{URL: "http://a.test/existence", EventTypes: []string{ChannelOccupied, ChannelVacated}},
		{URL: "http://a.test/private", EventTypes: allTypes, Filter: Filter{ChannelNameStartsWith: "private-"}},
		{URL: "http://a.test/orders", EventTypes: allTypes, Filter: Filter{ChannelNameEndsWith: "-orders"}},
		{URL: "http://a.test/both", EventTypes: []string{ClientEvent, SubscriptionCount},
			Filter: Filter{ChannelNameStartsWith: "private-", ChannelNameEndsWith: "-orders"}},
	}
	tests := []struct {
		ev   Event
		want []int // the endpoints that receive it
	}{
		{Event{Name: ChannelOccupied, Channel: "public"}, []int{0, 1}},
		{Event{Name: ChannelOccupied, Channel: "private-eu-orders"}, []int{0, 1, 2, 3}},
		{Event{Name: ChannelVacated, Channel: "private-x"}, []int{0, 1, 2}},
		{Event{Name: MemberAdded, Channel: "presence-orders", UserID: "1"}, []int{0, 3}},
		{Event{Name: MemberRemoved, Channel: "presence-x", UserID: "1"}, []int{0}},
		{Event{Name: ClientEvent, Channel: "private-eu-orders", Event: "client-a"}, []int{0, 2, 3, 4}},
		{Event{Name: ClientEvent, Channel: "presence-a", Event: "client-a"}, []int{0}},
		{Event{Name: CacheMiss, Channel: "private-cache-a"}, []int{0, 2}},
		{Event{Name: SubscriptionCount, Channel: "private-orders", SubscriptionCount: 2}, []int{0, 2, 3, 4}},
		// Impossible events are ignored whatever the endpoints want.
		{Event{Name: SubscriptionCount, Channel: "presence-orders"}, nil},
		{Event{Name: ClientEvent, Channel: "public-orders"}, nil},
		{Event{Name: MemberAdded, Channel: "private-orders", UserID: "1"}, nil},
		{Event{Name: "pusher:subscribe", Channel: "private-orders"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.ev.Name+" "+tt.ev.Channel, func(t *testing.T) {
			d := mustNew(t, Config{VacateDelay: -1}, testApp(endpoints...))
			d.Emit("app", tt.ev)
			var got []int
			for i := range endpoints {
				if q := queued(d, i); len(q) > 0 {
					got = append(got, i)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("received by %v, want %v", got, tt.want)
			}
			st := d.Stats().Apps[0]
			if tt.want == nil && st.Ignored != 1 {
				t.Errorf("Ignored = %d, want 1", st.Ignored)
			}
		})
	}
}

func TestUnknownAppCounted(t *testing.T) {
	d := mustNew(t, Config{}, testApp(Endpoint{URL: "http://a.test/", EventTypes: allTypes}))
	d.Emit("nope", Event{Name: ChannelOccupied, Channel: "a"})
	if got := d.Stats().UnknownApp; got != 1 {
		t.Errorf("UnknownApp = %d, want 1", got)
	}
}

func TestEnabled(t *testing.T) {
	apps := []App{
		{ID: "a", Key: "k", Secret: "s", Endpoints: []Endpoint{
			{URL: "http://a.test/", EventTypes: []string{ChannelVacated, ClientEvent}},
		}},
		{ID: "b", Key: "k", Secret: "s", Endpoints: []Endpoint{
			{URL: "http://b.test/", EventTypes: []string{MemberAdded}},
		}},
		{ID: "none"},
	}
	tests := []struct {
		delay time.Duration
		app   string
		name  string
		want  bool
	}{
		{0, "a", ChannelVacated, true},
		{0, "a", ChannelOccupied, true}, // it cancels a held vacated
		{0, "a", ClientEvent, true},
		{0, "a", MemberAdded, false},
		{0, "a", SubscriptionCount, false},
		{0, "b", MemberAdded, true},
		{0, "b", MemberRemoved, true}, // a held one cancels the next member_added
		{0, "b", ChannelOccupied, false},
		{-1, "a", ChannelOccupied, false}, // no delay, no pairing
		{-1, "b", MemberRemoved, false},
		{0, "none", ChannelOccupied, false},
		{0, "unknown", ChannelOccupied, false},
		{0, "a", "bogus", false},
	}
	for _, tt := range tests {
		d := mustNew(t, Config{VacateDelay: tt.delay}, apps)
		if got := d.Enabled(tt.app, tt.name); got != tt.want {
			t.Errorf("delay %v: Enabled(%q, %q) = %v, want %v", tt.delay, tt.app, tt.name, got, tt.want)
		}
	}
	d := mustNew(t, Config{}, apps)
	allocs := testing.AllocsPerRun(1000, func() {
		_ = d.Enabled("a", ChannelVacated)
		_ = d.Enabled("b", ClientEvent)
		_ = d.Enabled("unknown", ChannelVacated)
	})
	if allocs != 0 {
		t.Errorf("Enabled allocates %v times per run", allocs)
	}
}

// An event nobody receives costs Emit no allocation either.
func TestEmitUnwantedDoesNotAllocate(t *testing.T) {
	d := mustNew(t, Config{}, testApp(Endpoint{URL: "http://a.test/", EventTypes: []string{CacheMiss}}))
	ev := Event{Name: ClientEvent, Channel: "private-a", Event: "client-x", Data: "{}"}
	if allocs := testing.AllocsPerRun(1000, func() { d.Emit("app", ev) }); allocs != 0 {
		t.Errorf("Emit of an unwanted event allocates %v times", allocs)
	}
}

func TestNewValidation(t *testing.T) {
	good := Endpoint{URL: "https://example.com/hook", EventTypes: []string{ChannelOccupied}}
	tests := []struct {
		name string
		cfg  Config
		apps []App
		want []string // substrings of the error; nil for no error
	}{
		{"valid", Config{}, testApp(good), nil},
		{"app without endpoints needs no secret", Config{}, []App{{ID: "x"}}, nil},
		{"headers", Config{}, testApp(Endpoint{URL: "http://a/", EventTypes: allTypes,
			Headers: map[string]string{"X-Tenant": "a", "Authorization": "Bearer t", "Host": "h.test"}}), nil},
		{"everything wrong at once",
			Config{Timeout: -1, Jitter: 1, QueueSize: -1, Concurrency: -2, MaxBatchEvents: -1, BatchWindow: -1},
			[]App{
				{ID: "a", Key: "k", Secret: "s", Endpoints: []Endpoint{
					{URL: "ftp://a/", EventTypes: []string{"channel_occupied", "bogus"}},
					{URL: "http://a/", Headers: map[string]string{"content-type": "text/plain", "Bad Name": "x", "X-Ok": "a\r\nb"}},
					{URL: "http:///nohost", EventTypes: allTypes},
				}},
				{ID: "a"},
				{ID: "", Endpoints: []Endpoint{good}},
			},
			[]string{
				"timeout must not be negative", "jitter must be below 1", "queue size", "concurrency",
				"max batch events", "batch window",
				"scheme must be http or https", `unknown event type "bogus"`, "event_types: empty",
				"Content-Type is set by the webhook format", `invalid header name "Bad Name"`,
				`invalid value for "X-Ok"`, "no host", `app "a": listed twice`, "an app has no id",
				"need the app's key and secret",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, tt.apps)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("New: no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.Timeout != 5*time.Second || c.RetryBudget != 5*time.Minute || c.InitialBackoff != time.Second ||
		c.MaxBackoff != time.Minute || c.Jitter != 0.2 || c.Batch || c.BatchWindow != 250*time.Millisecond ||
		c.MaxBatchEvents != 20 || c.VacateDelay != 3*time.Second || c.QueueSize != 10000 || c.Concurrency != 4 ||
		c.Now == nil || c.AfterFunc == nil {
		t.Errorf("defaults: %+v", c)
	}
}

// Emit, Enabled and Stats from many goroutines while Close runs: for the
// race detector, and for the accounting once Close has returned.
func TestConcurrentEmitAndClose(t *testing.T) {
	ft := &fakeTransport{}
	d := mustNew(t, Config{Client: newClient(ft), Batch: true, BatchWindow: time.Millisecond, QueueSize: 100},
		testApp(
			Endpoint{URL: "http://a.test/1", EventTypes: allTypes},
			Endpoint{URL: "http://a.test/2", EventTypes: []string{ChannelOccupied, ChannelVacated}},
		))
	d.Start()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ch := "private-" + string(rune('a'+g))
				d.Emit("app", Event{Name: ChannelOccupied, Channel: ch})
				d.Emit("app", Event{Name: ClientEvent, Channel: ch, Event: "client-x", Data: "1"})
				d.Emit("app", Event{Name: ChannelVacated, Channel: ch})
				_ = d.Enabled("app", MemberAdded)
				if i%100 == 0 {
					_ = d.Stats()
				}
			}
		})
	}
	eventually(t, 10*time.Second, "deliveries", func() bool { return endpointStats(d, 0).Delivered > 100 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	d.Emit("app", Event{Name: ChannelOccupied, Channel: "private-late"})
	for i, es := range d.Stats().Apps[0].Endpoints {
		if es.Enqueued != es.Delivered+es.Failed+es.Dropped.Abandoned {
			t.Errorf("endpoint %d: enqueued %d != delivered %d + failed %d + abandoned %d",
				i, es.Enqueued, es.Delivered, es.Failed, es.Dropped.Abandoned)
		}
		if es.Queued != 0 || es.InFlight != 0 {
			t.Errorf("endpoint %d: %d queued, %d in flight after Close", i, es.Queued, es.InFlight)
		}
		if es.Dropped.AfterClose == 0 {
			t.Errorf("endpoint %d: no Emit after Close counted", i)
		}
	}
	if err := d.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
