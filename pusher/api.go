package pusher

import (
	"net/url"
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
