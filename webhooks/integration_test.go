package webhooks

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// Tests against real HTTP servers on 127.0.0.1.

func newServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// receiver is a test server that records what it receives and answers with
// status(n) for its n-th request (from 0); status 0 hangs until the client
// gives up or the test ends.
type receiver struct {
	srv     *httptest.Server
	status  func(n int) int
	release chan struct{}
	got     chan request // every request, in arrival order

	mu   sync.Mutex
	reqs []request
}

func newReceiver(t *testing.T, status func(n int) int) *receiver {
	rc := &receiver{status: status, release: make(chan struct{}), got: make(chan request, 1000)}
	rc.srv = newServer(t, rc.serve)
	t.Cleanup(func() { close(rc.release) }) // runs before srv.Close
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	req := request{at: time.Now(), url: r.Method + " " + r.Host + r.URL.Path, header: r.Header.Clone(), body: b}
	rc.mu.Lock()
	n := len(rc.reqs)
	rc.reqs = append(rc.reqs, req)
	rc.mu.Unlock()
	rc.got <- req
	status := http.StatusOK
	if rc.status != nil {
		status = rc.status(n)
	}
	if status == 0 {
		select {
		case <-r.Context().Done():
		case <-rc.release:
		}
		return
	}
	w.WriteHeader(status)
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.reqs)
}

// next waits for the receiver's next request.
func (rc *receiver) next(t *testing.T, within time.Duration) request {
	t.Helper()
	select {
	case r := <-rc.got:
		return r
	case <-time.After(within):
		t.Fatalf("no request within %s", within)
		return request{}
	}
}

func TestWireFormatOverHTTP(t *testing.T) {
	rc := newReceiver(t, nil)
	d := mustNew(t, Config{}, testApp(Endpoint{
		URL:        rc.srv.URL + "/pusher/webhook",
		EventTypes: allTypes,
		Headers:    map[string]string{"X-Tenant": "a", "Host": "tenant.example"},
	}))
	d.Start()
	defer closeNow(t, d)
	before := time.Now().UnixMilli()
	d.Emit("app", Event{Name: MemberAdded, Channel: "presence-room", UserID: "42"})
	r := rc.next(t, 10*time.Second)
	checkSigned(t, r)
	if r.url != "POST tenant.example/pusher/webhook" {
		t.Errorf("request %q", r.url)
	}
	if got := r.header.Get("X-Tenant"); got != "a" {
		t.Errorf("X-Tenant = %q", got)
	}
	b := decode(t, r.body)
	if b.TimeMS < before || b.TimeMS > time.Now().UnixMilli() {
		t.Errorf("time_ms %d not between %d and now", b.TimeMS, before)
	}
	want := `{"name":"member_added","channel":"presence-room","user_id":"42"}]}`
	if got := string(r.body); len(got) < len(want) || got[len(got)-len(want):] != want {
		t.Errorf("body %s", got)
	}
}

// An endpoint that answers 500 three times, then 200: the body is delivered
// once, after three retries, each the same bytes.
func TestFailingThenSucceeding(t *testing.T) {
	const failures = 3
	rc := newReceiver(t, func(n int) int {
		if n < failures {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	d := mustNew(t, Config{InitialBackoff: 10 * time.Millisecond, Jitter: -1},
		testApp(Endpoint{URL: rc.srv.URL + "/hook", EventTypes: allTypes}))
	d.Start()
	d.Emit("app", Event{Name: ChannelOccupied, Channel: "private-a"})
	for range failures + 1 {
		rc.next(t, 10*time.Second)
	}
	eventually(t, 10*time.Second, "the delivery to be counted", func() bool { return endpointStats(d, 0).Delivered == 1 })
	closeNow(t, d)

	reqs := rc.requests()
	if len(reqs) != failures+1 {
		t.Fatalf("%d requests, want %d", len(reqs), failures+1)
	}
	for i, r := range reqs {
		checkSigned(t, r)
		if string(r.body) != string(reqs[0].body) {
			t.Errorf("attempt %d sent %s, first sent %s", i, r.body, reqs[0].body)
		}
	}
	// Waits of 10, 20, 40 ms between the attempts.
	for i := 1; i < len(reqs); i++ {
		if gap, min := reqs[i].at.Sub(reqs[i-1].at), 10*time.Millisecond<<(i-1); gap < min {
			t.Errorf("retry %d after %v, want at least %v", i, gap, min)
		}
	}
	es := endpointStats(d, 0)
	want := EndpointStats{URL: rc.srv.URL + "/hook", Enqueued: 1, Delivered: 1, Requests: failures + 1, Retries: failures,
		Failures: Failures{Status: failures}, LastError: "HTTP status 500", LastErrorAt: es.LastErrorAt}
	if es != want {
		t.Errorf("stats\n got %+v\nwant %+v", es, want)
	}
}

// One endpoint of the app hangs: its requests time out and are retried,
// while the app's other endpoint keeps receiving each event promptly.
func TestHangingEndpointDoesNotSlowOthers(t *testing.T) {
	const timeout = time.Second
	hang := newReceiver(t, func(int) int { return 0 })
	good := newReceiver(t, nil)
	d := mustNew(t, Config{Timeout: timeout, InitialBackoff: 10 * time.Millisecond, Jitter: -1, Concurrency: 2},
		testApp(
			Endpoint{URL: hang.srv.URL + "/hook", EventTypes: allTypes},
			Endpoint{URL: good.srv.URL + "/hook", EventTypes: allTypes},
		))
	d.Start()

	// Fill the hanging endpoint's senders first.
	d.Emit("app", Event{Name: ChannelOccupied, Channel: "private-0"})
	d.Emit("app", Event{Name: ChannelOccupied, Channel: "private-1"})
	hang.next(t, 10*time.Second)
	hang.next(t, 10*time.Second)
	good.next(t, 10*time.Second)
	good.next(t, 10*time.Second)

	var worst time.Duration
	for i := range 20 {
		start := time.Now()
		d.Emit("app", Event{Name: ClientEvent, Channel: "private-a", Event: "client-n", Data: string(rune('a' + i)), SocketID: "1.1"})
		r := good.next(t, 10*time.Second)
		worst = max(worst, time.Since(start))
		if got := summary(t, []request{r}); !slices.Equal(got, []string{"client_event private-a"}) {
			t.Fatalf("good endpoint got %q", got)
		}
	}
	if worst >= timeout/2 {
		t.Errorf("slowest delivery to the good endpoint took %v, with the other endpoint's timeout at %v", worst, timeout)
	}
	if es := endpointStats(d, 0); es.Queued == 0 {
		t.Errorf("hanging endpoint: nothing queued: %+v", es)
	}

	// The hanging endpoint's requests time out and are retried: it receives
	// a body a second time.
	retried := func() bool {
		seen := map[string]bool{}
		for _, r := range hang.requests() {
			if seen[string(r.body)] {
				return true
			}
			seen[string(r.body)] = true
		}
		return false
	}
	eventually(t, 20*time.Second, "a timeout and a retry", func() bool {
		es := endpointStats(d, 0)
		return es.Failures.Timeout >= 1 && es.Retries >= 1 && retried()
	})
	for _, r := range hang.requests() {
		checkSigned(t, r)
	}

	eventually(t, 10*time.Second, "the good endpoint's answers", func() bool { return endpointStats(d, 1).Delivered == 22 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := d.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close: %v, want the deadline", err)
	}
	st := d.Stats().Apps[0]
	if es := st.Endpoints[1]; es.Delivered != 22 || es.Failures != (Failures{}) {
		t.Errorf("good endpoint: %+v", es)
	}
	es := st.Endpoints[0]
	if es.Delivered != 0 || es.Enqueued != es.Failed+es.Dropped.Abandoned || es.Dropped.Abandoned == 0 {
		t.Errorf("hanging endpoint after Close: %+v", es)
	}
}
