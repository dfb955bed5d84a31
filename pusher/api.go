package pusher

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// APIRequest is a complete HTTP request for the HTTP API, read by the
// transport. Its slices are owned by the request.
type APIRequest struct {
	Method string
	// RawPath is the path as sent (before percent-decoding), with the
	// server's path prefix still on it.
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
}

// AppendHTTP appends the response as HTTP/1.1 bytes. keepAlive says whether
// the connection stays open after it.
func (r *APIResponse) AppendHTTP(dst []byte, keepAlive bool) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(r.Status), 10)
	dst = append(dst, ' ')
	dst = append(dst, http.StatusText(r.Status)...)
	dst = append(dst, "\r\nContent-Type: application/json\r\nCache-Control: no-cache, private\r\nX-Powered-By: Laravel Reverb\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(r.Body)), 10)
	if r.Allow != "" {
		dst = append(dst, "\r\nAllow: "...)
		dst = append(dst, r.Allow...)
	}
	if keepAlive {
		dst = append(dst, "\r\nConnection: keep-alive\r\n\r\n"...)
	} else {
		dst = append(dst, "\r\nConnection: close\r\n\r\n"...)
	}
	return append(dst, r.Body...)
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

// StripPrefix removes the configured path prefix from a path; ok is false
// when the path is outside it.
func (srv *Server) StripPrefix(path string) (string, bool) {
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

// ServeAPI answers one HTTP API request. It verifies the signature and runs
// the request; it may take locks but never waits on the network.
// Goroutine-safe: it runs on the API worker pool, never on a loop.
func (srv *Server) ServeAPI(req *APIRequest) APIResponse {
	start := time.Now()
	resp, route := srv.serveAPI(req)
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

func (srv *Server) serveAPI(req *APIRequest) (APIResponse, string) {
	path, ok := srv.StripPrefix(req.Path)
	rawPath, _ := srv.StripPrefix(req.RawPath)
	if !ok {
		return ErrorResponse(404, "Not found."), RouteUnknown
	}
	if path == "/up" {
		if req.Method != "GET" && req.Method != "HEAD" {
			return APIResponse{Status: 405, Body: []byte(`{"error":"Method not allowed."}`), Allow: "GET, HEAD"}, RouteUp
		}
		return HealthResponse(), RouteUp
	}
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
	signPath := rawPath
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
	for _, ch := range ev.channels {
		srv.Trigger(app, ch, ev.name, ev.data, ev.socketID)
	}
	if len(ev.info) == 0 {
		return APIResponse{Status: 200, Body: respEmpty}
	}
	subs := srv.gather(app, Query{Kind: QuerySubscriptions, Channels: ev.channels}).Subscriptions
	out := []byte(`{"channels":{`)
	for i, ch := range ev.channels {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendJSONString(out, ch)
		out = append(out, ':')
		out = srv.appendCounts(out, app, ch, subs[ch], ev.info, false)
	}
	return APIResponse{Status: 200, Body: append(out, "}}"...)}
}

// appendCounts writes {"user_count":N} / {"subscription_count":N} as asked,
// user_count only for presence channels and subscription_count only for the
// others (Reverb's and Pusher's rule); withOccupied adds "occupied" first.
// subs is the cluster's subscription count of the channel.
func (srv *Server) appendCounts(b []byte, app *App, name string, subs int, want []string, withOccupied bool) []byte {
	info, _ := srv.hub.info(app, name)
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
			b = strconv.AppendInt(b, int64(srv.hub.userCount(app, name)), 10)
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
	for _, ev := range events {
		srv.Trigger(app, ev.channels[0], ev.name, ev.data, ev.socketID)
	}
	if !anyInfo {
		return APIResponse{Status: 200, Body: []byte(`{"batch":{}}`)}
	}
	names := make([]string, len(events))
	for i, ev := range events {
		names[i] = ev.channels[0]
	}
	subs := srv.gather(app, Query{Kind: QuerySubscriptions, Channels: names}).Subscriptions
	out := []byte(`{"batch":[`)
	for i, ev := range events {
		if i > 0 {
			out = append(out, ',')
		}
		out = srv.appendCounts(out, app, ev.channels[0], subs[ev.channels[0]], ev.info, false)
	}
	return APIResponse{Status: 200, Body: append(out, "]}"...)}
}

func (srv *Server) apiChannels(app *App, q url.Values) APIResponse {
	want := strings.Split(q.Get("info"), ",")
	subs := srv.gather(app, Query{Kind: QuerySubscriptions, Prefix: q.Get("filter_by_prefix")}).Subscriptions
	names := make([]string, 0, len(subs))
	for name := range subs {
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
		out = srv.appendCounts(out, app, name, subs[name], want, false)
	}
	return APIResponse{Status: 200, Body: append(out, "}}"...)}
}

func (srv *Server) apiChannel(app *App, name string, q url.Values) APIResponse {
	subs := srv.gather(app, Query{Kind: QuerySubscriptions, Channels: []string{name}}).Subscriptions
	return APIResponse{Status: 200, Body: srv.appendCounts(nil, app, name, subs[name], strings.Split(q.Get("info"), ","), true)}
}

func (srv *Server) apiUsers(app *App, name string) APIResponse {
	if kind, _ := Classify(name); kind != KindPresence {
		return ErrorResponse(400, "Only presence channels have users.")
	}
	ids, ok := srv.hub.users(app, name)
	if !ok {
		return ErrorResponse(404, "Channel not found.")
	}
	out := []byte(`{"users":[`)
	for i, id := range ids {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"id":`...)
		out = append(out, id...)
		out = append(out, '}')
	}
	return APIResponse{Status: 200, Body: append(out, "]}"...)}
}
