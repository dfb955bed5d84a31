package webhooks

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testKey    = "app-key"
	testSecret = "app-secret"
)

// allTypes lists every event type.
var allTypes = []string{
	ChannelOccupied, ChannelVacated, MemberAdded, MemberRemoved,
	ClientEvent, CacheMiss, SubscriptionCount,
}

// testApp is one app with the given endpoints.
func testApp(endpoints ...Endpoint) []App {
	return []App{{ID: "app", Key: testKey, Secret: testSecret, Endpoints: endpoints}}
}

// request is one request a fakeTransport or a test server received.
type request struct {
	at     time.Time
	url    string
	header http.Header
	body   []byte
}

// fakeTransport is an http.RoundTripper that answers from memory, for tests
// inside a synctest bubble (no sockets). respond returns the status of the
// n-th request (from 0) to a URL, or 0 to hang until the request's context
// ends.
type fakeTransport struct {
	respond func(url string, n int) int

	mu   sync.Mutex
	reqs []request
	per  map[string]int
}

func (f *fakeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body.Close()
	url := r.URL.String()
	f.mu.Lock()
	if f.per == nil {
		f.per = make(map[string]int)
	}
	n := f.per[url]
	f.per[url]++
	f.reqs = append(f.reqs, request{at: time.Now(), url: url, header: r.Header.Clone(), body: body})
	f.mu.Unlock()
	status := http.StatusOK
	if f.respond != nil {
		status = f.respond(url, n)
	}
	if status == 0 {
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	return &http.Response{
		StatusCode: status,
		Body:       io.NopCloser(strings.NewReader("")),
		Header:     make(http.Header),
		Request:    r,
	}, nil
}

func newClient(rt http.RoundTripper) *http.Client { return &http.Client{Transport: rt} }

// requests returns the requests so far, to url ("" for all).
func (f *fakeTransport) requests(url string) []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []request
	for _, r := range f.reqs {
		if url == "" || r.url == url {
			out = append(out, r)
		}
	}
	return out
}

// body is a decoded webhook body.
type body struct {
	TimeMS int64            `json:"time_ms"`
	Events []map[string]any `json:"events"`
}

func decode(t *testing.T, b []byte) body {
	t.Helper()
	var out body
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("body %q: %v", b, err)
	}
	return out
}

// summary is "name channel [user_id]" for each event of the bodies, in order.
func summary(t *testing.T, reqs []request) []string {
	t.Helper()
	var out []string
	for _, r := range reqs {
		for _, ev := range decode(t, r.body).Events {
			s := ev["name"].(string) + " " + ev["channel"].(string)
			if u, ok := ev["user_id"].(string); ok {
				s += " " + u
			}
			out = append(out, s)
		}
	}
	return out
}

// checkSigned verifies the key and signature headers of a request against
// an HMAC computed here, independently of the package.
func checkSigned(t *testing.T, r request) {
	t.Helper()
	if got := r.header.Get("X-Pusher-Key"); got != testKey {
		t.Errorf("X-Pusher-Key = %q, want %q", got, testKey)
	}
	mac := hmac.New(sha256.New, []byte(testSecret))
	mac.Write(r.body)
	want := hex.EncodeToString(mac.Sum(nil))
	if got := r.header.Get("X-Pusher-Signature"); got != want {
		t.Errorf("X-Pusher-Signature = %q, want %q (body %s)", got, want, r.body)
	}
	if got := r.header.Values("Content-Type"); len(got) != 1 || got[0] != "application/json" {
		t.Errorf("Content-Type = %q, want exactly application/json", got)
	}
}

// mustNew builds a Dispatcher or fails the test.
func mustNew(t *testing.T, cfg Config, apps []App) *Dispatcher {
	t.Helper()
	d, err := New(cfg, apps)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// closeNow closes d, failing the test if that takes more than a minute (of
// the bubble's clock, in synctest).
func closeNow(t *testing.T, d *Dispatcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// eventually polls cond until it holds or the deadline passes (real time,
// for tests with real sockets).
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// endpointStats returns the stats of the app's i-th endpoint.
func endpointStats(d *Dispatcher, i int) EndpointStats {
	return d.Stats().Apps[0].Endpoints[i]
}

// queued returns what Emit queued on the app's i-th endpoint so far, as
// "name channel [user]", emptying the queue. For Dispatchers not started.
func queued(d *Dispatcher, i int) []string {
	e := d.order[0].endpoints[i]
	var out []string
	for {
		select {
		case it := <-e.q:
			s := it.kind.String() + " " + it.ev.Channel
			if it.kind == kAdded || it.kind == kRemoved {
				s += " " + it.ev.UserID
			}
			out = append(out, s)
		default:
			return out
		}
	}
}
