package pusher

import (
	"bytes"
	"encoding/json"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/reverbgo/reverb/wsproto"
)

// APIRequest is a complete HTTP request for the HTTP API, read by the
// transport. Its slices are owned by the request.
type APIRequest struct {
	Method string
	// RawPath is the path as sent (before percent-decoding), with the
	// server's path prefix still on it. ServeAPI routes the request by it
	// and Path; ServeTarget is given the route instead.
	RawPath string
	// Path is RawPath percent-decoded.
	Path     string
	RawQuery string
	Body     []byte
}

// APIResponse is the answer to an APIRequest: a status and a JSON body.
type APIResponse struct {
	Status int
	Body   []byte
	// Allow lists the methods of the route on a 405.
	Allow string
	// RetryAfter, when > 0, is sent as a Retry-After header (seconds).
	RetryAfter int
}

// apiHead is the fixed part of the header of every API response.
const apiHead = "Content-Type: application/json\r\nCache-Control: no-cache, private\r\n" + wsproto.PoweredByHeader

// AppendHTTP appends the response as HTTP/1.1 bytes. keepAlive says whether
// the connection stays open after it.
func (r *APIResponse) AppendHTTP(dst []byte, keepAlive bool) []byte {
	var buf [64]byte
	tail := buf[:0]
	if r.Allow != "" {
		tail = append(tail, "Allow: "...)
		tail = append(tail, r.Allow...)
		tail = append(tail, "\r\n"...)
	}
	if r.RetryAfter > 0 {
		tail = append(tail, "Retry-After: "...)
		tail = strconv.AppendInt(tail, int64(r.RetryAfter), 10)
		tail = append(tail, "\r\n"...)
	}
	if keepAlive {
		tail = append(tail, "Connection: keep-alive\r\n"...)
	} else {
		tail = append(tail, "Connection: close\r\n"...)
	}
	return wsproto.AppendResponse(dst, r.Status, apiHead, tail, r.Body)
}

// ErrorResponse is a response with status and body {"error":message}.
func ErrorResponse(status int, message string) APIResponse {
	b := append([]byte(`{"error":`), appendJSONString(nil, message)...)
	return APIResponse{Status: status, Body: append(b, '}')}
}

var (
	respEmpty  = []byte(`{}`)
	respHealth = []byte(`{"health":"OK"}`)
)

// HealthResponse is the answer to GET /up.
func HealthResponse() APIResponse { return APIResponse{Status: 200, Body: respHealth} }

// TargetKind is what a request's path leads to; see Server.Route.
type TargetKind uint8

// Target kinds.
const (
	// TargetNotFound is a path outside the path prefix.
	TargetNotFound TargetKind = iota
	// TargetHealth is /up, the health check.
	TargetHealth
	// TargetSocket is /app/{key}, where WebSocket clients connect.
	TargetSocket
	// TargetAPI is any other path inside the prefix: the HTTP API (/apps/...),
	// which answers 404 for what it does not know.
	TargetAPI
)

// Target is where Route sends a request.
type Target struct {
	Kind TargetKind
	// Key is, for TargetSocket, the app key of /app/{key}; it is empty when
	// the path has no valid key (nothing after "/app/", or another '/').
	Key string
	// Path is the percent-decoded path without the prefix ("" for
	// TargetNotFound).
	Path string
	// RawPath is the path as sent without the prefix, or "" when the raw
	// path does not start with the prefix (it has an escape in it).
	RawPath string
}

// Route is the server's router: it strips the configured path prefix, once,
// from a request's decoded path and from its raw path (as sent), and says
// what the request is for. The transport routes every request with it,
// answers TargetSocket (the upgrade, or 426) and a GET or HEAD of
// TargetHealth itself, and hands the others to ServeTarget.
// Goroutine-safe.
func (srv *Server) Route(path, rawPath string) Target {
	p, ok := srv.stripPrefix(path)
	if !ok {
		return Target{Kind: TargetNotFound}
	}
	raw, _ := srv.stripPrefix(rawPath)
	t := Target{Kind: TargetAPI, Path: p, RawPath: raw}
	switch {
	case p == "/up":
		t.Kind = TargetHealth
	case strings.HasPrefix(p, "/app/"):
		t.Kind = TargetSocket
		if key := p[len("/app/"):]; key != "" && !strings.Contains(key, "/") {
			t.Key = key
		}
	}
	return t
}

// stripPrefix removes the configured path prefix from a path; ok is false
// when the path is outside it.
func (srv *Server) stripPrefix(path string) (string, bool) {
	p := srv.opts.PathPrefix
	if p == "" {
		return path, true
	}
	if !strings.HasPrefix(path, p) {
		return "", false
	}
	rest := path[len(p):]
	if rest == "" || rest[0] != '/' {
		return "", false
	}
	return rest, true
}

// ServeAPI answers one HTTP API request whose paths are as sent, with the
// path prefix: it is ServeTarget for the request's Route.
// Goroutine-safe: it runs on the API worker pool, never on a loop.
func (srv *Server) ServeAPI(req *APIRequest) APIResponse {
	return srv.ServeTarget(srv.Route(req.Path, req.RawPath), req)
}

// ServeTarget answers one HTTP request that Route sent to t: the health
// check, the HTTP API, or 404. It takes the paths from t, not from req. It
// verifies the API signature and runs the request; it may take locks but
// never waits on the network.
// Goroutine-safe: it runs on the API worker pool, never on a loop.
func (srv *Server) ServeTarget(t Target, req *APIRequest) APIResponse {
	start := time.Now()
	resp, route := srv.serveAPI(t, req)
	if obs := srv.opts.APIObserver; obs != nil {
		obs(route, resp.Status, time.Since(start))
	}
	return resp
}

// API route names, as passed to Options.APIObserver.
const (
	RouteEvents      = "events"
	RouteBatchEvents = "batch_events"
	RouteChannels    = "channels"
	RouteChannel     = "channel"
	RouteUsers       = "users"
	RouteTerminate   = "terminate_connections"
	RouteConnections = "connections"
	RouteUp          = "up"
	RouteUnknown     = "unknown"
)

func (srv *Server) serveAPI(t Target, req *APIRequest) (APIResponse, string) {
	switch t.Kind {
	case TargetHealth:
		if req.Method != "GET" && req.Method != "HEAD" {
			return APIResponse{Status: 405, Body: []byte(`{"error":"Method not allowed."}`), Allow: "GET, HEAD"}, RouteUp
		}
		return HealthResponse(), RouteUp
	case TargetAPI:
	default:
		return ErrorResponse(404, "Not found."), RouteUnknown
	}
	path := t.Path
	seg := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(seg) < 3 || seg[0] != "apps" {
		return ErrorResponse(404, "Not found."), RouteUnknown
	}
	var route, method string
	switch {
	case len(seg) == 3 && seg[2] == "events":
		route, method = RouteEvents, "POST"
	case len(seg) == 3 && seg[2] == "batch_events":
		route, method = RouteBatchEvents, "POST"
	case len(seg) == 3 && seg[2] == "channels":
		route, method = RouteChannels, "GET"
	case len(seg) == 4 && seg[2] == "channels" && seg[3] != "":
		route, method = RouteChannel, "GET"
	case len(seg) == 5 && seg[2] == "channels" && seg[4] == "users" && seg[3] != "":
		route, method = RouteUsers, "GET"
	case len(seg) == 5 && seg[2] == "users" && seg[4] == "terminate_connections" && seg[3] != "":
		route, method = RouteTerminate, "POST"
	case len(seg) == 3 && seg[2] == "connections":
		route, method = RouteConnections, "GET"
	default:
		return ErrorResponse(404, "Not found."), RouteUnknown
	}
	if req.Method != method {
		r := ErrorResponse(405, "Method not allowed.")
		r.Allow = method
		return r, route
	}
	app := srv.byID[seg[1]]
	if app == nil {
		return ErrorResponse(404, "No matching application for ID ["+seg[1]+"]."), route
	}
	query, err := url.ParseQuery(req.RawQuery)
	if err != nil {
		return ErrorResponse(400, "Invalid query string."), route
	}
	signPath := t.RawPath
	if signPath == "" {
		signPath = path
	}
	if err := verifyAPISignature(app, req.Method, signPath, query, req.Body, time.Now(), srv.opts.AuthTimestampWindow); err != nil {
		if signPath != path {
			// Clients differ in whether they sign the encoded or decoded path.
			err = verifyAPISignature(app, req.Method, path, query, req.Body, time.Now(), srv.opts.AuthTimestampWindow)
		}
		if err != nil {
			return ErrorResponse(401, err.Error()), route
		}
	}
	switch route {
	case RouteEvents:
		return srv.apiEvents(app, req.Body), route
	case RouteBatchEvents:
		return srv.apiBatch(app, req.Body), route
	case RouteChannels:
		return srv.apiChannels(app, query), route
	case RouteChannel:
		return srv.apiChannel(app, seg[3], query), route
	case RouteUsers:
		return srv.apiUsers(app, seg[3]), route
	case RouteTerminate:
		srv.TerminateUser(app, seg[3])
		return APIResponse{Status: 200, Body: respEmpty}, route
	default: // connections
		n := srv.gather(app, Query{Kind: QueryConnections}).Connections
		b := append([]byte(`{"connections":`), strconv.AppendInt(nil, n, 10)...)
		return APIResponse{Status: 200, Body: append(b, '}')}, route
	}
}

// validation collects Laravel-style validation errors: {"field":["message"]}.
type validation struct {
	fields []string
	msgs   []string
}

func (v *validation) add(field, msg string) {
	v.fields = append(v.fields, field)
	v.msgs = append(v.msgs, msg)
}

func (v *validation) response() APIResponse {
	b := []byte{'{'}
	for i := range v.fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v.fields[i])
		b = append(b, ":["...)
		b = appendJSONString(b, v.msgs[i])
		b = append(b, ']')
	}
	return APIResponse{Status: 422, Body: append(b, '}')}
}

type eventBody struct {
	Name     json.RawMessage `json:"name"`
	Data     json.RawMessage `json:"data"`
	Channels json.RawMessage `json:"channels"`
	Channel  json.RawMessage `json:"channel"`
	SocketID json.RawMessage `json:"socket_id"`
	Info     json.RawMessage `json:"info"`
}

// event is a validated event to trigger.
type event struct {
	name, data, socketID string
	channels             []string
	info                 []string
}

// validateEvent checks one event; prefix names fields in batch items.
func (srv *Server) validateEvent(app *App, b *eventBody, prefix string, v *validation) (ev event, tooLarge bool) {
	name, ok := jsonString(b.Name)
	switch {
	case isNull(b.Name):
		v.add(prefix+"name", "The name field is required.")
	case !ok:
		v.add(prefix+"name", "The name field must be a string.")
	case !validEventName(name, srv.opts.MaxNameLength):
		v.add(prefix+"name", "The name field must be 1 to "+strconv.Itoa(srv.opts.MaxNameLength)+" characters.")
	}
	data, ok := jsonString(b.Data)
	switch {
	case isNull(b.Data):
		v.add(prefix+"data", "The data field is required.")
	case !ok:
		v.add(prefix+"data", "The data field must be a string.")
	case app.MaxMessageSize > 0 && len(data) > app.MaxMessageSize:
		tooLarge = true
	}
	var channels []string
	if !isNull(b.Channels) {
		if json.Unmarshal(b.Channels, &channels) != nil {
			v.add(prefix+"channels", "The channels field must be an array of strings.")
		} else if len(channels) == 0 {
			v.add(prefix+"channels", "The channels field is required when channel is not present.")
		}
	} else if !isNull(b.Channel) {
		ch, ok := jsonString(b.Channel)
		if !ok {
			v.add(prefix+"channel", "The channel field must be a string.")
		} else {
			channels = []string{ch}
		}
	} else {
		v.add(prefix+"channels", "The channels field is required when channel is not present.")
	}
	if len(channels) > srv.opts.MaxChannelsPerEvent {
		v.add(prefix+"channels", "The channels field must not have more than "+strconv.Itoa(srv.opts.MaxChannelsPerEvent)+" items.")
	}
	for _, c := range channels {
		if !validChannelName(c, srv.opts.MaxNameLength) {
			v.add(prefix+"channels", "Invalid channel name: "+truncate(c, 64))
			break
		}
	}
	socketID, ok := optString(b.SocketID)
	if !ok {
		v.add(prefix+"socket_id", "The socket_id field must be a string.")
	}
	info, ok := optString(b.Info)
	if !ok {
		v.add(prefix+"info", "The info field must be a string.")
	}
	ev = event{name: name, data: data, socketID: socketID, channels: channels}
	if info != "" {
		ev.info = strings.Split(info, ",")
	}
	return ev, tooLarge
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func decodeBody(body []byte, into any) *APIResponse {
	if len(bytes.TrimSpace(body)) == 0 {
		r := ErrorResponse(400, "The request body is empty.")
		return &r
	}
	if err := json.Unmarshal(body, into); err != nil {
		r := ErrorResponse(400, "The request body is not valid JSON.")
		return &r
	}
	return nil
}

func (srv *Server) apiEvents(app *App, body []byte) APIResponse {
	var b eventBody
	if r := decodeBody(body, &b); r != nil {
		return *r
	}
	var v validation
	ev, tooLarge := srv.validateEvent(app, &b, "", &v)
	if len(v.fields) > 0 {
		return v.response()
	}
	if tooLarge {
		return ErrorResponse(413, "Payload too large.")
	}
	out := make([]Outgoing, len(ev.channels))
	for i, ch := range ev.channels {
		out[i] = Outgoing{Channel: ch, Msg: eventJSON(nil, ev.name, ev.data, ch), Except: ev.socketID}
	}
	if r := srv.publishAPI(app, out); r != nil {
		return *r
	}
	if len(ev.info) == 0 {
		return APIResponse{Status: 200, Body: respEmpty}
	}
	counts := srv.gather(app, Query{Kind: QuerySubscriptions, Channels: ev.channels, Users: has(ev.info, "user_count")})
	rb := []byte(`{"channels":{`)
	for i, ch := range ev.channels {
		if i > 0 {
			rb = append(rb, ',')
		}
		rb = appendJSONString(rb, ch)
		rb = append(rb, ':')
		rb = srv.appendCounts(rb, app, ch, counts, ev.info, false)
	}
	return APIResponse{Status: 200, Body: append(rb, "}}"...)}
}

// publishTimeout bounds how long a trigger waits for the cluster to take
// events of cache channels before answering.
const publishTimeout = 5 * time.Second

// publishAPI publishes the events of one API request, all or none. It
// returns the 503 to answer when the cluster cannot take them now. When an
// event is for a cache channel it waits until the other nodes were handed
// it, so that a subscriber arriving anywhere after the answer gets it.
func (srv *Server) publishAPI(app *App, events []Outgoing) *APIResponse {
	done, err := srv.publish(app, events)
	if err != nil {
		r := ErrorResponse(503, "Cross-node queue full, retry later.")
		r.RetryAfter = 1
		return &r
	}
	if done == nil {
		return nil
	}
	for _, e := range events {
		if _, cache := Classify(e.Channel); cache {
			t := time.NewTimer(publishTimeout)
			select {
			case <-done:
			case <-t.C:
			}
			t.Stop()
			break
		}
	}
	return nil
}

// appendCounts writes {"user_count":N} / {"subscription_count":N} as asked,
// user_count only for presence channels and subscription_count only for the
// others (Reverb's and Pusher's rule); withOccupied adds "occupied" first.
// counts is the cluster's answer gathered for the request.
func (srv *Server) appendCounts(b []byte, app *App, name string, counts Reply, want []string, withOccupied bool) []byte {
	info, _ := srv.hub.info(app, name)
	subs := counts.Subscriptions[name]
	occupied := subs > 0
	b = append(b, '{')
	n := 0
	sep := func() {
		if n > 0 {
			b = append(b, ',')
		}
		n++
	}
	if withOccupied {
		sep()
		b = append(b, `"occupied":`...)
		b = strconv.AppendBool(b, occupied)
	}
	if occupied {
		presence := info.Kind == KindPresence
		if !presence && has(want, "subscription_count") {
			sep()
			b = append(b, `"subscription_count":`...)
			b = strconv.AppendInt(b, int64(subs), 10)
		}
		if presence && has(want, "user_count") {
			sep()
			b = append(b, `"user_count":`...)
			b = strconv.AppendInt(b, int64(len(counts.Users[name])), 10)
		}
		if info.Cache && info.Cached != nil && has(want, "cache") {
			sep()
			b = append(b, `"cache":`...)
			b = append(b, info.Cached...)
		}
	}
	return append(b, '}')
}

func has(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}

func (srv *Server) apiBatch(app *App, body []byte) APIResponse {
	var b struct {
		Batch []eventBody `json:"batch"`
	}
	if r := decodeBody(body, &b); r != nil {
		return *r
	}
	var v validation
	if len(b.Batch) == 0 {
		v.add("batch", "The batch field is required.")
		return v.response()
	}
	if len(b.Batch) > srv.opts.MaxBatchSize {
		v.add("batch", "The batch field must not have more than "+strconv.Itoa(srv.opts.MaxBatchSize)+" items.")
		return v.response()
	}
	events := make([]event, len(b.Batch))
	anyInfo, anyTooLarge := false, false
	for i := range b.Batch {
		prefix := "batch." + strconv.Itoa(i) + "."
		ev, tooLarge := srv.validateEvent(app, &b.Batch[i], prefix, &v)
		if len(ev.channels) > 1 {
			v.add(prefix+"channel", "A batch item has exactly one channel.")
		}
		events[i] = ev
		anyInfo = anyInfo || len(ev.info) > 0
		anyTooLarge = anyTooLarge || tooLarge
	}
	if len(v.fields) > 0 {
		return v.response()
	}
	if anyTooLarge {
		return ErrorResponse(413, "Payload too large.")
	}
	out := make([]Outgoing, len(events))
	wantUsers := false
	for i, ev := range events {
		ch := ev.channels[0]
		out[i] = Outgoing{Channel: ch, Msg: eventJSON(nil, ev.name, ev.data, ch), Except: ev.socketID}
		wantUsers = wantUsers || has(ev.info, "user_count")
	}
	if r := srv.publishAPI(app, out); r != nil {
		return *r
	}
	if !anyInfo {
		return APIResponse{Status: 200, Body: []byte(`{"batch":{}}`)}
	}
	names := make([]string, len(events))
	for i, ev := range events {
		names[i] = ev.channels[0]
	}
	counts := srv.gather(app, Query{Kind: QuerySubscriptions, Channels: names, Users: wantUsers})
	rb := []byte(`{"batch":[`)
	for i, ev := range events {
		if i > 0 {
			rb = append(rb, ',')
		}
		rb = srv.appendCounts(rb, app, ev.channels[0], counts, ev.info, false)
	}
	return APIResponse{Status: 200, Body: append(rb, "]}"...)}
}

func (srv *Server) apiChannels(app *App, q url.Values) APIResponse {
	want := strings.Split(q.Get("info"), ",")
	counts := srv.gather(app, Query{Kind: QuerySubscriptions, Prefix: q.Get("filter_by_prefix"), Users: has(want, "user_count")})
	names := make([]string, 0, len(counts.Subscriptions))
	for name := range counts.Subscriptions {
		names = append(names, name)
	}
	sort.Strings(names)
	out := []byte(`{"channels":{`)
	for i, name := range names {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendJSONString(out, name)
		out = append(out, ':')
		out = srv.appendCounts(out, app, name, counts, want, false)
	}
	return APIResponse{Status: 200, Body: append(out, "}}"...)}
}

func (srv *Server) apiChannel(app *App, name string, q url.Values) APIResponse {
	want := strings.Split(q.Get("info"), ",")
	counts := srv.gather(app, Query{Kind: QuerySubscriptions, Channels: []string{name}, Users: has(want, "user_count")})
	return APIResponse{Status: 200, Body: srv.appendCounts(nil, app, name, counts, want, true)}
}

func (srv *Server) apiUsers(app *App, name string) APIResponse {
	if kind, _ := Classify(name); kind != KindPresence {
		return ErrorResponse(400, "Only presence channels have users.")
	}
	// Asked of every node, so that a user whose client was told it joined
	// (or left) is listed (or not) through any node at once.
	users := srv.gather(app, Query{Kind: QueryUsers, Channels: []string{name}, Users: true}).Users[name]
	if len(users) == 0 {
		return ErrorResponse(404, "Channel not found.")
	}
	// In the order this node saw the users join, then the others by key.
	ids, _ := srv.hub.users(app, name)
	seen := make(map[string]bool, len(users))
	out := []byte(`{"users":[`)
	n := 0
	add := func(id json.RawMessage) {
		if n > 0 {
			out = append(out, ',')
		}
		n++
		out = append(out, `{"id":`...)
		out = append(out, id...)
		out = append(out, '}')
	}
	for _, id := range ids {
		key := userKey(id)
		if _, ok := users[key]; ok && !seen[key] {
			seen[key] = true
			add(id)
		}
	}
	rest := make([]string, 0, len(users)-len(seen))
	for key := range users {
		if !seen[key] {
			rest = append(rest, key)
		}
	}
	sort.Strings(rest)
	for _, key := range rest {
		add(users[key])
	}
	return APIResponse{Status: 200, Body: append(out, "]}"...)}
}

// userKey is the identity of a user_id as sent: a JSON string's value or a
// number's text.
func userKey(id json.RawMessage) string {
	if s, ok := jsonString(id); ok {
		return s
	}
	return string(id)
}
