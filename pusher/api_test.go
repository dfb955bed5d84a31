package pusher

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

const appsPath = "/apps/" + testAppID

func TestAPIUp(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		method     string
		wantStatus int
		wantBody   string
		wantAllow  string
	}{
		{method: "GET", wantStatus: 200, wantBody: `{"health":"OK"}`},
		{method: "HEAD", wantStatus: 200, wantBody: `{"health":"OK"}`},
		{method: "POST", wantStatus: 405, wantBody: `{"error":"Method not allowed."}`, wantAllow: "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			r := e.srv.ServeAPI(&APIRequest{Method: tt.method, RawPath: "/up", Path: "/up"})
			if r.Status != tt.wantStatus || string(r.Body) != tt.wantBody || r.Allow != tt.wantAllow {
				t.Errorf("got %d %s allow=%q", r.Status, r.Body, r.Allow)
			}
		})
	}
	if r := HealthResponse(); len(r.Body) != 15 {
		t.Errorf("health Content-Length %d, want 15", len(r.Body))
	}
}

// TestAPIRoutingErrors covers every status decided before a handler runs.
func TestAPIRoutingErrors(t *testing.T) {
	e := newEnv(t, nil)
	now := time.Now().Unix()
	signed := func(method, path, body string) string {
		return signAPI(method, path, nil, []byte(body), testKey, testSecret, now)
	}
	tests := []struct {
		name       string
		method     string
		path       string
		query      string
		body       string
		wantStatus int
		wantBody   string
		wantAllow  string
	}{
		{name: "unknown route", method: "GET", path: "/nope", wantStatus: 404, wantBody: `{"error":"Not found."}`},
		{name: "root", method: "GET", path: "/", wantStatus: 404, wantBody: `{"error":"Not found."}`},
		{name: "apps only", method: "GET", path: "/apps/" + testAppID, wantStatus: 404, wantBody: `{"error":"Not found."}`},
		{name: "unknown leaf", method: "GET", path: appsPath + "/foo", wantStatus: 404, wantBody: `{"error":"Not found."}`},
		{name: "trailing slash", method: "POST", path: appsPath + "/events/", wantStatus: 404, wantBody: `{"error":"Not found."}`},
		{name: "channel trailing slash", method: "GET", path: appsPath + "/channels/", wantStatus: 404, wantBody: `{"error":"Not found."}`},
		{name: "Reverb's channels/users/terminate", method: "POST", path: appsPath + "/channels/users/1/terminate_connections", wantStatus: 404, wantBody: `{"error":"Not found."}`},
		{name: "unknown app id", method: "GET", path: "/apps/999/channels", query: signed("GET", "/apps/999/channels", ""),
			wantStatus: 404, wantBody: `{"error":"No matching application for ID [999]."}`},
		{name: "GET events", method: "GET", path: appsPath + "/events", wantStatus: 405, wantBody: `{"error":"Method not allowed."}`, wantAllow: "POST"},
		{name: "GET batch_events", method: "GET", path: appsPath + "/batch_events", wantStatus: 405, wantBody: `{"error":"Method not allowed."}`, wantAllow: "POST"},
		{name: "POST channels", method: "POST", path: appsPath + "/channels", wantStatus: 405, wantBody: `{"error":"Method not allowed."}`, wantAllow: "GET"},
		{name: "DELETE channel", method: "DELETE", path: appsPath + "/channels/x", wantStatus: 405, wantBody: `{"error":"Method not allowed."}`, wantAllow: "GET"},
		{name: "POST users", method: "POST", path: appsPath + "/channels/presence-x/users", wantStatus: 405, wantBody: `{"error":"Method not allowed."}`, wantAllow: "GET"},
		{name: "GET terminate", method: "GET", path: appsPath + "/users/1/terminate_connections", wantStatus: 405, wantBody: `{"error":"Method not allowed."}`, wantAllow: "POST"},
		{name: "POST connections", method: "POST", path: appsPath + "/connections", wantStatus: 405, wantBody: `{"error":"Method not allowed."}`, wantAllow: "GET"},
		{name: "unsigned", method: "GET", path: appsPath + "/channels", wantStatus: 401, wantBody: `{"error":"Missing authentication parameters."}`},
		{name: "unsigned events", method: "POST", path: appsPath + "/events", body: `{"name":"a","channel":"b","data":"c"}`, wantStatus: 401, wantBody: `{"error":"Missing authentication parameters."}`},
		{name: "bad signature", method: "GET", path: appsPath + "/channels",
			query:      strings.Replace(signed("GET", appsPath+"/channels", ""), "auth_signature=", "auth_signature=0", 1),
			wantStatus: 401, wantBody: `{"error":"Authentication signature invalid."}`},
		{name: "signed for another path", method: "GET", path: appsPath + "/channels", query: signed("GET", appsPath+"/connections", ""),
			wantStatus: 401, wantBody: `{"error":"Authentication signature invalid."}`},
		{name: "wrong key", method: "GET", path: appsPath + "/channels",
			query:      signAPI("GET", appsPath+"/channels", nil, nil, "other-key", testSecret, now),
			wantStatus: 401, wantBody: `{"error":"Authentication key is not the app's key."}`},
		{name: "expired", method: "GET", path: appsPath + "/channels",
			query:      signAPI("GET", appsPath+"/channels", nil, nil, testKey, testSecret, now-3600),
			wantStatus: 401, wantBody: `{"error":"Timestamp expired: auth_timestamp is outside the allowed window."}`},
		{name: "tampered body", method: "POST", path: appsPath + "/events", query: signed("POST", appsPath+"/events", `{"name":"a","channel":"b","data":"c"}`),
			body: `{"name":"a","channel":"b","data":"X"}`, wantStatus: 401, wantBody: `{"error":"body_md5 does not match the body."}`},
		{name: "bad query", method: "GET", path: appsPath + "/channels", query: "a=%zz", wantStatus: 400, wantBody: `{"error":"Invalid query string."}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.srv.ServeAPI(&APIRequest{Method: tt.method, RawPath: tt.path, Path: tt.path, RawQuery: tt.query, Body: []byte(tt.body)})
			if r.Status != tt.wantStatus || string(r.Body) != tt.wantBody || r.Allow != tt.wantAllow {
				t.Errorf("got %d %s allow=%q; want %d %s allow=%q", r.Status, r.Body, r.Allow, tt.wantStatus, tt.wantBody, tt.wantAllow)
			}
		})
	}
}

func TestAPIEventsValidation(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Apps[0].MaxMessageSize = 100 })
	many := make([]string, 101)
	for i := range many {
		many[i] = `"c` + strconv.Itoa(i) + `"`
	}
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantBody   string
	}{
		{name: "empty body", body: ``, wantStatus: 400, wantBody: `{"error":"The request body is empty."}`},
		{name: "blank body", body: "  \n", wantStatus: 400, wantBody: `{"error":"The request body is empty."}`},
		{name: "bad JSON", body: `{"name":`, wantStatus: 400, wantBody: `{"error":"The request body is not valid JSON."}`},
		{name: "JSON array", body: `[1]`, wantStatus: 400, wantBody: `{"error":"The request body is not valid JSON."}`},
		{name: "missing name", body: `{"channel":"c","data":"d"}`, wantStatus: 422, wantBody: `{"name":["The name field is required."]}`},
		{name: "missing data", body: `{"name":"n","channel":"c"}`, wantStatus: 422, wantBody: `{"data":["The data field is required."]}`},
		{name: "data object", body: `{"name":"n","channel":"c","data":{"a":1}}`, wantStatus: 422, wantBody: `{"data":["The data field must be a string."]}`},
		{name: "name number", body: `{"name":5,"channel":"c","data":"d"}`, wantStatus: 422, wantBody: `{"name":["The name field must be a string."]}`},
		{name: "socket_id number", body: `{"name":"n","channel":"c","data":"d","socket_id":1234}`, wantStatus: 422, wantBody: `{"socket_id":["The socket_id field must be a string."]}`},
		{name: "info number", body: `{"name":"n","channel":"c","data":"d","info":1}`, wantStatus: 422, wantBody: `{"info":["The info field must be a string."]}`},
		{name: "no channel", body: `{"name":"n","data":"d"}`, wantStatus: 422, wantBody: `{"channels":["The channels field is required when channel is not present."]}`},
		{name: "channel number", body: `{"name":"n","channel":1,"data":"d"}`, wantStatus: 422, wantBody: `{"channel":["The channel field must be a string."]}`},
		{name: "channels string", body: `{"name":"n","channels":"c","data":"d"}`, wantStatus: 422, wantBody: `{"channels":["The channels field must be an array of strings."]}`},
		{name: "too many channels", body: `{"name":"n","channels":[` + strings.Join(many, ",") + `],"data":"d"}`, wantStatus: 422, wantBody: `{"channels":["The channels field must not have more than 100 items."]}`},
		{name: "invalid channel name", body: `{"name":"n","channels":["ok","bad name"],"data":"d"}`, wantStatus: 422, wantBody: `{"channels":["Invalid channel name: bad name"]}`},
		{name: "name too long", body: `{"name":"` + strings.Repeat("n", 201) + `","channel":"c","data":"d"}`, wantStatus: 422, wantBody: `{"name":["The name field must be 1 to 200 characters."]}`},
		{name: "name 200 bytes", body: `{"name":"` + strings.Repeat("n", 200) + `","channel":"c","data":"d"}`, wantStatus: 200, wantBody: `{}`},
		{name: "several errors", body: `{"socket_id":1}`, wantStatus: 422,
			wantBody: `{"name":["The name field is required."],"data":["The data field is required."],"channels":["The channels field is required when channel is not present."],"socket_id":["The socket_id field must be a string."]}`},
		{name: "data over max_message_size", body: `{"name":"n","channel":"c","data":"` + strings.Repeat("x", 101) + `"}`, wantStatus: 413, wantBody: `{"error":"Payload too large."}`},
		{name: "data at max_message_size", body: `{"name":"n","channel":"c","data":"` + strings.Repeat("x", 100) + `"}`, wantStatus: 200, wantBody: `{}`},
		{name: "channels and channel: channels wins", body: `{"name":"n","channels":["a","b"],"channel":5,"data":"d"}`, wantStatus: 200, wantBody: `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.api("POST", appsPath+"/events", "", tt.body)
			if status != tt.wantStatus || body != tt.wantBody {
				t.Errorf("got %d %s\nwant %d %s", status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

// Regression: "channels": [] passed validation and /events answered 200 {}
// without triggering anything (Reverb/Laravel's required_without gives 422).
func TestRegressionEventsAcceptedEmptyChannels(t *testing.T) {
	e := newEnv(t, nil)
	status, body := e.api("POST", appsPath+"/events", "", `{"name":"n","channels":[],"data":"d"}`)
	want := `{"channels":["The channels field is required when channel is not present."]}`
	if status != 422 || body != want {
		t.Errorf("got %d %s, want 422 %s", status, body, want)
	}
}

// Regression: a batch item with "channels": [] passed validation and
// apiBatch then indexed ev.channels[0], panicking the API worker.
func TestRegressionBatchEmptyChannelsPanicked(t *testing.T) {
	e := newEnv(t, nil)
	var status int
	var body string
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("ServeAPI panicked: %v", r)
			}
		}()
		status, body = e.api("POST", appsPath+"/batch_events", "", `{"batch":[{"name":"n","channels":[],"data":"d"}]}`)
	}()
	want := `{"batch.0.channels":["The channels field is required when channel is not present."]}`
	if status != 422 || body != want {
		t.Errorf("got %d %s, want 422 %s", status, body, want)
	}
}

func TestAPIEventsDelivery(t *testing.T) {
	e := newEnv(t, nil)
	a, b, other := e.connect(), e.connect(), e.connect()
	e.subscribe(a, "test-channel", "")
	e.subscribe(b, "test-channel", "")
	e.subscribe(a, "test-channel-2", "")
	e.subscribe(other, "unrelated", "")

	status, body := e.api("POST", appsPath+"/events", "", `{"name":"App\\Events\\Ev","channel":"test-channel","data":"{\"a\":\"<b>\"}"}`)
	if status != 200 || body != `{}` {
		t.Fatalf("got %d %s", status, body)
	}
	want := `{"event":"App\\Events\\Ev","data":"{\"a\":\"<b>\"}","channel":"test-channel"}`
	a.expect(want)
	b.expect(want)
	other.expectNothing()

	// A list of channels: one message per channel.
	e.api("POST", appsPath+"/events", "", `{"name":"e","channels":["test-channel","test-channel-2","nobody"],"data":"x"}`)
	a.expect(apiEvent("e", "x", "test-channel"), apiEvent("e", "x", "test-channel-2"))
	b.expect(apiEvent("e", "x", "test-channel"))

	// socket_id excludes that socket only.
	status, body = e.api("POST", appsPath+"/events", "", `{"name":"e","channel":"test-channel","data":"y","socket_id":"`+a.id()+`"}`)
	if status != 200 || body != `{}` {
		t.Fatalf("got %d %s", status, body)
	}
	a.expectNothing()
	b.expect(apiEvent("e", "y", "test-channel"))

	// An unknown socket_id is ignored.
	e.api("POST", appsPath+"/events", "", `{"name":"e","channel":"test-channel","data":"z","socket_id":"1234.5678"}`)
	a.expect(apiEvent("e", "z", "test-channel"))
	b.expect(apiEvent("e", "z", "test-channel"))
}

func TestAPIEventsInfo(t *testing.T) {
	e := newEnv(t, nil)
	p1, p2, pub := e.connect(), e.connect(), e.connect()
	e.subscribe(p1, "presence-test-channel-one", presenceData(`1`, "a"))
	e.subscribe(p2, "presence-test-channel-one", presenceData(`1`, "a")) // same user
	e.subscribe(pub, "test-channel-two", "")
	e.subscribe(p1, "test-channel-two", "")

	tests := []struct {
		name string
		info string
		want string
	}{
		{name: "user_count", info: "user_count",
			want: `{"channels":{"presence-test-channel-one":{"user_count":1},"test-channel-two":{}}}`},
		{name: "subscription_count", info: "subscription_count",
			want: `{"channels":{"presence-test-channel-one":{},"test-channel-two":{"subscription_count":2}}}`},
		{name: "both", info: "user_count,subscription_count",
			want: `{"channels":{"presence-test-channel-one":{"user_count":1},"test-channel-two":{"subscription_count":2}}}`},
		{name: "unknown attribute", info: "foo",
			want: `{"channels":{"presence-test-channel-one":{},"test-channel-two":{}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.api("POST", appsPath+"/events", "",
				`{"name":"e","channels":["presence-test-channel-one","test-channel-two"],"data":"d","info":"`+tt.info+`"}`)
			if status != 200 || body != tt.want {
				t.Errorf("got %d %s\nwant %s", status, body, tt.want)
			}
		})
	}
	status, body := e.api("POST", appsPath+"/events", "", `{"name":"e","channel":"empty-channel","data":"d","info":"subscription_count,user_count"}`)
	if want := `{"channels":{"empty-channel":{}}}`; status != 200 || body != want {
		t.Errorf("unoccupied: %d %s, want %s", status, body, want)
	}
}

func TestAPIBatch(t *testing.T) {
	e := newEnv(t, nil)
	p, a, b := e.connect(), e.connect(), e.connect()
	e.subscribe(p, "presence-room", presenceData(`1`, "a"))
	e.subscribe(a, "test-channel", "")
	e.subscribe(b, "test-channel", "")

	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantBody   string
	}{
		{name: "one item", body: `{"batch":[{"name":"e","channel":"test-channel","data":"1"}]}`, wantStatus: 200, wantBody: `{"batch":{}}`},
		{name: "info per item", body: `{"batch":[` +
			`{"name":"e","channel":"presence-room","data":"1","info":"user_count"},` +
			`{"name":"e","channel":"test-channel","data":"2","info":"subscription_count,user_count"},` +
			`{"name":"e","channel":"test-channel","data":"3"},` +
			`{"name":"e","channel":"nobody","data":"4","info":"subscription_count"}]}`,
			wantStatus: 200, wantBody: `{"batch":[{"user_count":1},{"subscription_count":2},{},{}]}`},
		{name: "empty batch", body: `{"batch":[]}`, wantStatus: 422, wantBody: `{"batch":["The batch field is required."]}`},
		{name: "no batch", body: `{}`, wantStatus: 422, wantBody: `{"batch":["The batch field is required."]}`},
		{name: "batch not a list", body: `{"batch":{}}`, wantStatus: 400, wantBody: `{"error":"The request body is not valid JSON."}`},
		{name: "too big", body: `{"batch":[` + strings.TrimSuffix(strings.Repeat(`{"name":"e","channel":"c","data":"d"},`, 11), ",") + `]}`,
			wantStatus: 422, wantBody: `{"batch":["The batch field must not have more than 10 items."]}`},
		{name: "item errors are prefixed", body: `{"batch":[{"name":"e","channel":"c","data":"d"},{"channel":"c","data":{}}]}`,
			wantStatus: 422, wantBody: `{"batch.1.name":["The name field is required."],"batch.1.data":["The data field must be a string."]}`},
		{name: "item with two channels", body: `{"batch":[{"name":"e","channels":["a","b"],"data":"d"}]}`,
			wantStatus: 422, wantBody: `{"batch.0.channel":["A batch item has exactly one channel."]}`},
		{name: "empty body", body: ``, wantStatus: 400, wantBody: `{"error":"The request body is empty."}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.api("POST", appsPath+"/batch_events", "", tt.body)
			if status != tt.wantStatus || body != tt.wantBody {
				t.Errorf("got %d %s\nwant %d %s", status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	// Only the two successful batches were delivered.
	a.expect(apiEvent("e", "1", "test-channel"), apiEvent("e", "2", "test-channel"), apiEvent("e", "3", "test-channel"))
	b.expect(apiEvent("e", "1", "test-channel"), apiEvent("e", "2", "test-channel"), apiEvent("e", "3", "test-channel"))
	p.expect(apiEvent("e", "1", "presence-room"))

	// socket_id in a batch item.
	e.api("POST", appsPath+"/batch_events", "", `{"batch":[{"name":"x","channel":"test-channel","data":"d","socket_id":"`+a.id()+`"}]}`)
	a.expectNothing()
	b.expect(apiEvent("x", "d", "test-channel"))
}

func TestAPIChannels(t *testing.T) {
	e := newEnv(t, nil)
	c1, c2 := e.connect(), e.connect()
	e.subscribe(c1, "test-channel-one", "")
	e.subscribe(c2, "test-channel-one", "")
	e.subscribe(c1, "presence-test-channel-two", presenceData(`1`, "a"))
	e.subscribe(c2, "presence-test-channel-two", presenceData(`2`, "b"))
	c1.expect(memberAdded("presence-test-channel-two", presenceData(`2`, "b")))
	e.subscribe(c1, "private-x", "")
	e.subscribe(c1, "left-empty", "")
	c1.send(unsubMsg("left-empty"))

	tests := []struct {
		name  string
		query string
		want  string
	}{
		{name: "no info", query: "",
			want: `{"channels":{"presence-test-channel-two":{},"private-x":{},"test-channel-one":{}}}`},
		{name: "user_count", query: "info=user_count",
			want: `{"channels":{"presence-test-channel-two":{"user_count":2},"private-x":{},"test-channel-one":{}}}`},
		{name: "subscription_count", query: "info=subscription_count",
			want: `{"channels":{"presence-test-channel-two":{},"private-x":{"subscription_count":1},"test-channel-one":{"subscription_count":2}}}`},
		{name: "filter presence", query: "filter_by_prefix=presence-&info=user_count",
			want: `{"channels":{"presence-test-channel-two":{"user_count":2}}}`},
		{name: "filter test", query: "filter_by_prefix=test-",
			want: `{"channels":{"test-channel-one":{}}}`},
		{name: "filter matches nothing", query: "filter_by_prefix=zzz",
			want: `{"channels":{}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.api("GET", appsPath+"/channels", tt.query, "")
			if status != 200 || body != tt.want {
				t.Errorf("got %d %s\nwant %s", status, body, tt.want)
			}
		})
	}
	// Reverb's fixture: Content-Length 81.
	e2 := newEnv(t, nil)
	x, y := e2.connect(), e2.connect()
	e2.subscribe(x, "test-channel-one", "")
	e2.subscribe(y, "presence-test-channel-two", presenceData(`1`, "a"))
	status, body := e2.api("GET", appsPath+"/channels", "info=user_count", "")
	if want := `{"channels":{"presence-test-channel-two":{"user_count":1},"test-channel-one":{}}}`; status != 200 || body != want || len(body) != 81 {
		t.Errorf("got %d %s (%d bytes)", status, body, len(body))
	}
}

func TestAPIChannel(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.connect(), e.connect()
	e.subscribe(a, "test-channel", "")
	e.subscribe(b, "test-channel", "")
	e.subscribe(a, "presence-room", presenceData(`1`, "a"))
	e.subscribe(b, "presence-room", presenceData(`"1"`, "a"))
	e.subscribe(a, "cache-x", "")
	e.subscribe(a, "cache-empty", "")
	e.srv.Trigger(e.app, "cache-x", "ev", `{"some":"data"}`, "")

	tests := []struct {
		name    string
		channel string
		query   string
		want    string
	}{
		{name: "occupied", channel: "test-channel", query: "info=user_count,subscription_count,cache",
			want: `{"occupied":true,"subscription_count":2}`},
		{name: "no info", channel: "test-channel", query: "",
			want: `{"occupied":true}`},
		{name: "cache asked on public", channel: "test-channel", query: "info=cache",
			want: `{"occupied":true}`},
		{name: "unoccupied", channel: "nobody", query: "info=subscription_count",
			want: `{"occupied":false}`},
		{name: "presence de-duplicated", channel: "presence-room", query: "info=user_count,subscription_count",
			want: `{"occupied":true,"user_count":1}`},
		{name: "cache", channel: "cache-x", query: "info=subscription_count,cache",
			want: `{"occupied":true,"subscription_count":1,"cache":{"event":"ev","data":"{\"some\":\"data\"}","channel":"cache-x"}}`},
		{name: "cache without payload", channel: "cache-empty", query: "info=subscription_count,cache",
			want: `{"occupied":true,"subscription_count":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.api("GET", appsPath+"/channels/"+tt.channel, tt.query, "")
			if status != 200 || body != tt.want {
				t.Errorf("got %d %s\nwant %s", status, body, tt.want)
			}
		})
	}
	_, body := e.api("GET", appsPath+"/channels/test-channel", "info=subscription_count", "")
	if len(body) != 40 {
		t.Errorf("Content-Length %d, want 40", len(body))
	}
}

func TestAPIChannelEncodedName(t *testing.T) {
	e := newEnv(t, nil)
	c := e.connect()
	ud := `{"id":"1"}`
	c.send(signinMsg(userAuth(testKey, testSecret, c.id(), ud), ud))
	c.take()
	e.subscribe(c, "#server-to-user-1", "")

	raw := appsPath + "/channels/%23server-to-user-1"
	decoded := appsPath + "/channels/#server-to-user-1"
	for _, signOver := range []string{raw, decoded} {
		t.Run(signOver, func(t *testing.T) {
			qs := signAPI("GET", signOver, url.Values{"info": {"subscription_count"}}, nil, testKey, testSecret, time.Now().Unix())
			r := e.srv.ServeAPI(&APIRequest{Method: "GET", RawPath: raw, Path: decoded, RawQuery: qs})
			if r.Status != 200 || string(r.Body) != `{"occupied":true,"subscription_count":1}` {
				t.Errorf("got %d %s", r.Status, r.Body)
			}
		})
	}
}

func TestAPIUsers(t *testing.T) {
	e := newEnv(t, nil)
	u3, u2, u3b, pub := e.connect(), e.connect(), e.connect(), e.connect()
	e.subscribe(u3, "presence-room", presenceData(`3`, "c"))
	e.subscribe(u2, "presence-room", presenceData(`"2"`, "b"))
	e.subscribe(u3b, "presence-room", presenceData(`3`, "c"))
	e.subscribe(pub, "test-channel", "")

	tests := []struct {
		name       string
		channel    string
		wantStatus int
		wantBody   string
	}{
		{name: "first-seen order, de-duplicated", channel: "presence-room", wantStatus: 200, wantBody: `{"users":[{"id":3},{"id":"2"}]}`},
		{name: "not presence", channel: "test-channel", wantStatus: 400, wantBody: `{"error":"Only presence channels have users."}`},
		{name: "missing presence", channel: "presence-nobody", wantStatus: 404, wantBody: `{"error":"Channel not found."}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.api("GET", appsPath+"/channels/"+tt.channel+"/users", "", "")
			if status != tt.wantStatus || body != tt.wantBody {
				t.Errorf("got %d %s\nwant %d %s", status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	// Reverb's fixture: three users, Content-Length 38.
	e2 := newEnv(t, nil)
	for i := 1; i <= 3; i++ {
		e2.subscribe(e2.connect(), "presence-test-channel", presenceData(strconv.Itoa(i), "u"))
	}
	_, body := e2.api("GET", appsPath+"/channels/presence-test-channel/users", "", "")
	if body != `{"users":[{"id":1},{"id":2},{"id":3}]}` || len(body) != 38 {
		t.Errorf("got %s", body)
	}
}

func TestAPITerminateConnections(t *testing.T) {
	e := newEnv(t, nil)
	m1, m2, other := e.connect(), e.connect(), e.connect()
	e.subscribe(m1, "presence-a", presenceData(`"456"`, "x"))
	e.subscribe(m2, "presence-b", presenceData(`456`, "x"))
	e.subscribe(other, "presence-a", presenceData(`"789"`, "y"))
	e.subscribe(other, "presence-b", presenceData(`"789"`, "y"))
	m1.take()
	m2.take()
	status, body := e.api("POST", appsPath+"/users/456/terminate_connections", "", "")
	if status != 200 || body != `{}` {
		t.Fatalf("got %d %s", status, body)
	}
	for _, c := range []*client{m1, m2} {
		if c.conn.closes != 1 || !c.sess.Closed() {
			t.Errorf("%s not closed", c.id())
		}
		frames := c.conn.takeFrames()
		if len(frames) != 2 || string(frames[0].payload) != errMsg(4009, "Connection terminated by the application.") {
			t.Errorf("got %v", frames)
		} else if code, reason := frames[1].closeCode(); code != 4009 || reason != "Connection terminated by the application." {
			t.Errorf("close %d %q", code, reason)
		}
		e.close(c)
	}
	if other.conn.closes != 0 {
		t.Errorf("user 789 closed")
	}
	other.expect(memberRemoved("presence-a", `"456"`), memberRemoved("presence-b", `456`))
	for _, ch := range []string{"presence-a", "presence-b"} {
		if info, _ := e.srv.hub.info(e.app, ch); info.SubscriptionCount != 1 {
			t.Errorf("%s: %+v", ch, info)
		}
	}
	// Unknown user: still {}.
	if status, body := e.api("POST", appsPath+"/users/nobody/terminate_connections", "", ""); status != 200 || body != `{}` {
		t.Errorf("got %d %s", status, body)
	}
}

func TestAPIConnections(t *testing.T) {
	e := newEnv(t, nil)
	check := func(want int) {
		t.Helper()
		status, body := e.api("GET", appsPath+"/connections", "", "")
		if w := fmt.Sprintf(`{"connections":%d}`, want); status != 200 || body != w {
			t.Errorf("got %d %s, want %s", status, body, w)
		}
	}
	check(0)
	a, b, idle := e.connect(), e.connect(), e.connect()
	_ = idle
	e.subscribe(a, "one", "")
	e.subscribe(a, "two", "")
	check(1)
	e.subscribe(b, "one", "")
	check(2)
	e.close(a)
	check(1)
	b.send(unsubMsg("one"))
	check(0)
}

func TestAPIPathPrefix(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PathPrefix = "/ws" })
	c := e.connect()
	e.subscribe(c, "test-channel", "")
	body := `{"name":"e","channel":"test-channel","data":"d"}`
	qs := signAPI("POST", appsPath+"/events", nil, []byte(body), testKey, testSecret, time.Now().Unix())

	tests := []struct {
		name       string
		path       string
		query      string
		wantStatus int
		wantBody   string
	}{
		{name: "prefixed, signed without prefix", path: "/ws" + appsPath + "/events", query: qs, wantStatus: 200, wantBody: `{}`},
		{name: "without prefix", path: appsPath + "/events", query: qs, wantStatus: 404, wantBody: `{"error":"Not found."}`},
		{name: "prefix glued", path: "/wsapps/" + testAppID + "/events", query: qs, wantStatus: 404, wantBody: `{"error":"Not found."}`},
		{name: "signed with prefix", path: "/ws" + appsPath + "/events",
			query:      signAPI("POST", "/ws"+appsPath+"/events", nil, []byte(body), testKey, testSecret, time.Now().Unix()),
			wantStatus: 401, wantBody: `{"error":"Authentication signature invalid."}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.srv.ServeAPI(&APIRequest{Method: "POST", RawPath: tt.path, Path: tt.path, RawQuery: tt.query, Body: []byte(body)})
			if r.Status != tt.wantStatus || string(r.Body) != tt.wantBody {
				t.Errorf("got %d %s, want %d %s", r.Status, r.Body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	c.expect(apiEvent("e", "d", "test-channel"))
	for _, p := range []string{"/ws/up", "/up"} {
		r := e.srv.ServeAPI(&APIRequest{Method: "GET", RawPath: p, Path: p})
		want := 200
		if p == "/up" {
			want = 404
		}
		if r.Status != want {
			t.Errorf("GET %s = %d, want %d", p, r.Status, want)
		}
	}
}

func TestAPITimestampWindowOff(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AuthTimestampWindow = -1 })
	qs := signAPI("GET", appsPath+"/connections", nil, nil, testKey, testSecret, 1)
	r := e.srv.ServeAPI(&APIRequest{Method: "GET", RawPath: appsPath + "/connections", Path: appsPath + "/connections", RawQuery: qs})
	if r.Status != 200 || string(r.Body) != `{"connections":0}` {
		t.Errorf("got %d %s", r.Status, r.Body)
	}
}

func TestAPIResponseAppendHTTP(t *testing.T) {
	r := APIResponse{Status: 405, Body: []byte(`{"error":"Method not allowed."}`), Allow: "POST"}
	got := string(r.AppendHTTP(nil, false))
	want := "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nCache-Control: no-cache, private\r\nX-Powered-By: Laravel Reverb\r\nContent-Length: 31\r\nAllow: POST\r\nConnection: close\r\n\r\n" + `{"error":"Method not allowed."}`
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	r = APIResponse{Status: 200, Body: []byte(`{}`)}
	if got := string(r.AppendHTTP(nil, true)); !strings.HasSuffix(got, "Content-Length: 2\r\nConnection: keep-alive\r\n\r\n{}") || !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") {
		t.Errorf("got %q", got)
	}
}

func TestAPIObserver(t *testing.T) {
	type call struct {
		route  string
		status int
	}
	var calls []call
	e := newEnv(t, func(o *Options) {
		o.APIObserver = func(route string, status int, d time.Duration) { calls = append(calls, call{route, status}) }
	})
	e.srv.ServeAPI(&APIRequest{Method: "GET", RawPath: "/up", Path: "/up"})
	e.api("GET", appsPath+"/connections", "", "")
	e.srv.ServeAPI(&APIRequest{Method: "GET", RawPath: "/x", Path: "/x"})
	e.api("POST", appsPath+"/events", "", `{}`)
	want := []call{{RouteUp, 200}, {RouteConnections, 200}, {RouteUnknown, 404}, {RouteEvents, 422}}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("calls = %v, want %v", calls, want)
	}
}
