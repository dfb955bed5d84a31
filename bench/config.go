package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Scenario names accepted by --scenario.
const (
	ScenarioConnect      = "connect"
	ScenarioFanout       = "fanout"
	ScenarioBurst        = "burst"
	ScenarioClientEvents = "client-events"
	ScenarioAPI          = "api"
	ScenarioChurn        = "churn"
	ScenarioCross        = "cross"
	ScenarioPresence     = "presence"
)

// Scenarios lists every scenario in the order the usage text shows them.
var Scenarios = []string{ScenarioConnect, ScenarioFanout, ScenarioBurst, ScenarioClientEvents, ScenarioAPI, ScenarioChurn, ScenarioCross, ScenarioPresence}

// MaxConnsPerWorker is how many WebSocket connections one process holds at
// most (one process may only have 20000 open files here).
const MaxConnsPerWorker = 18000

// Config is one bench run. ParseArgs fills it from the command line and
// applies the per-scenario defaults; a Config built in code must go
// through Normalize before Run.
type Config struct {
	// Host and Port of the server.
	Host string
	Port int
	// Path is the server's optional path prefix ("" or "/ws").
	Path string
	// APIHost and APIPort are where HTTP API triggers go (fanout, burst,
	// api, cross); by default Host and Port. With another node of a
	// cluster there, the events reach the subscribers across nodes.
	APIHost string
	APIPort int
	// AppID, Key and Secret of the app under test.
	AppID, Key, Secret string
	// Scenario is one of Scenarios.
	Scenario string
	// Connections: WebSocket connections (connect, fanout, burst,
	// client-events), concurrent HTTP clients (api), concurrent
	// connect/subscribe/close lanes (churn) or subscribers (cross, default
	// 100).
	Connections int
	// APITimeout bounds one HTTP API request, from its write to the end of
	// its answer; a trigger without an answer by then counts as
	// unconfirmed (its events stay expected). Default: 10 s.
	APITimeout time.Duration
	// APIClients is the number of keep-alive HTTP clients that trigger the
	// events of the cross scenario. Default: 16.
	APIClients int
	// Events is the number of events the cross scenario triggers; 0 means
	// as many as fit in Duration.
	Events int
	// Retry503 makes the cross scenario's clients retry a trigger answered
	// 503, after its Retry-After (default 1 s, at most 10 s). Off by
	// default: a 503 is a refusal and is counted, not retried.
	Retry503 bool
	// Queries is the number of HTTP API rounds of the presence scenario
	// (one users and one user_count request each). Default: 20.
	Queries int
	// Reconnect re-opens the connections the server closes during the
	// measured phase of the fanout scenario (a rolling restart) and
	// accounts for the connections never dropped apart from the others.
	// See reconnect.go. Default: false.
	Reconnect bool
	// Channels is the number of public channels the connections are spread
	// over (connect: default 100; fanout and burst: default 1, and each
	// trigger goes to all of them, at most 100).
	Channels int
	// Rate: connects/s (connect, 0 = as fast as ConnectConcurrency allows),
	// triggers/s (fanout, default 4), bursts/s (burst, default 2), client
	// events/s per connection (client-events, default 2), requests/s in all
	// (api, 0 = unlimited), cycles/s (churn, 0 = unlimited), triggers/s in
	// all (cross, 0 = as fast as the APIClients go).
	Rate float64
	// ConnectRate paces the connection ramp of the scenarios whose Rate
	// means something else; 0 means unpaced.
	ConnectRate float64
	// ConnectConcurrency bounds the handshakes in flight per process.
	ConnectConcurrency int
	// Payload is the size in bytes of each event's data (at least the
	// timestamp it carries).
	Payload int
	// Burst is the number of events per trigger in the burst scenario
	// (batch_events of up to 10 events, several requests back to back for
	// more).
	Burst int
	// Group is the size of a client-events group (one private channel per
	// group; every member whispers to the others).
	Group int
	// Duration of the measured phase (for connect: how long the idle
	// connections are held after the ramp).
	Duration time.Duration
	// Drain is how long to wait after the last event for in-flight
	// deliveries (cross: how long without any delivery ends the wait).
	Drain time.Duration
	// Hold is how long fanout, burst and client-events hold the connections
	// after the ramp before the first event, for checks that want them held
	// on a quiet server (memory, a presence check, a rolling restart with
	// Reconnect). Default: 0, the events start as soon as the ramp ends.
	// With HoldUntil it is the longest hold.
	Hold time.Duration
	// HoldUntil, when set, ends the hold early: once this file exists and,
	// with Reconnect, no connection is down. A script creates it when what
	// the hold was for is over (the drained nodes of a rolling restart have
	// exited), so that the events start when the server is quiet again,
	// neither sooner nor later. Default: "", the hold lasts Hold.
	HoldUntil string
	// ReadyFile, when set, is written once the ramp is over (every
	// connection subscribed or failed), before the hold: "connected N",
	// "failed N" and, if the ramp failed, "error TEXT", a line each. A
	// script waits for it to start what must run with every connection
	// held. Default: "", none.
	ReadyFile string
	// KeepWorkers leaves the worker processes (Workers), and so their
	// connections, open when Run returns, until Result.Release: the
	// command reports first, because once they exit the kernel and the
	// server close every connection (a million closes keep a machine busy
	// for tens of seconds). Default: false, Run lets them exit before it
	// returns. Not a flag.
	KeepWorkers bool `json:"-"`
	// Timeout bounds the whole run. Default: Hold + Duration + 2 min.
	Timeout time.Duration
	// PingInterval is how often an idle connection sends pusher:ping.
	PingInterval time.Duration
	// ServerPID, when non-zero, is the server process whose RSS and CPU are
	// read from /proc.
	ServerPID int
	// ServerPIDs are all the server processes (the nodes of a cluster)
	// whose RSS and CPU are read and summed; ServerPID is the first.
	// Normalize fills it from ServerPID when empty.
	ServerPIDs []int
	// Workers is the number of child processes holding the connections; 0
	// picks ceil(connections / MaxConnsPerWorker) when over that limit and
	// runs in-process otherwise.
	Workers int
	// SourceIPs are the local addresses the dialers bind to, round robin.
	SourceIPs []netip.Addr
	// Client is the connection runtime: "gnet" (event loops) or "goroutine"
	// (one goroutine per connection).
	Client string
	// Loops is the number of gnet client event loops. Default: GOMAXPROCS.
	Loops int
	// JSON prints only the JSON summary line.
	JSON bool
	// Report is the path of the HTML report to write, if any.
	Report string
	// Progress forces progress output on (1) or off (-1); 0 decides from
	// whether stdout is a terminal.
	Progress int
	// Deflate offers permessage-deflate (no context takeover) in every
	// upgrade; a connection the server answers without it fails. Compressed
	// frames are inflated by the client. Default: false.
	Deflate bool
	// JSONPayload makes the event data a JSON document with repetitive keys
	// (a list of small records, about Payload bytes) instead of the send
	// time followed by 'x' padding, which compresses unrealistically well.
	// Default: false.
	JSONPayload bool
	// TLS connects over TLS: wss:// for the WebSocket connections, and
	// https:// for the HTTP API unless APITLS says otherwise.
	TLS bool
	// APITLS, when not nil, decides whether the HTTP API triggers use TLS;
	// nil follows TLS.
	APITLS *bool
	// TLSInsecure skips the verification of the server's certificate (for
	// self-signed ones).
	TLSInsecure bool
	// TLSCA is a PEM file of the certificates to trust instead of the
	// system's roots; "" for the system's.
	TLSCA string
	// TLSServerName is the name the server's certificate is checked
	// against (and sent in SNI); "" means the host dialed.
	TLSServerName string
	// TLSResume shares one session cache per process so reconnects may
	// resume TLS sessions. Off by default: every connection runs a full
	// handshake, as distinct browsers would.
	TLSResume bool

	// worker marks a child process (hidden --worker flag).
	worker bool
	// candidates are the apps PickApp tries when the command line gave
	// none of --app-id, --key and --secret; AppID, Key and Secret hold the
	// first.
	candidates []appCreds
}

// Addr returns host:port.
func (c *Config) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// APIAddr returns the host:port of the HTTP API triggers.
func (c *Config) APIAddr() string {
	h, p := c.APIHost, c.APIPort
	if h == "" {
		h = c.Host
	}
	if p == 0 {
		p = c.Port
	}
	return net.JoinHostPort(h, strconv.Itoa(p))
}

// Normalize applies the defaults of c.Scenario and validates c.
func (c *Config) Normalize() error {
	var errs []string
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Port <= 0 || c.Port > 65535 {
		errs = append(errs, fmt.Sprintf("--port %d out of range", c.Port))
	}
	if c.APIHost == "" {
		c.APIHost = c.Host
	}
	if c.APIPort == 0 {
		c.APIPort = c.Port
	}
	if c.APIPort < 0 || c.APIPort > 65535 {
		errs = append(errs, fmt.Sprintf("--api-port %d out of range", c.APIPort))
	}
	if len(c.ServerPIDs) == 0 && c.ServerPID > 0 {
		c.ServerPIDs = []int{c.ServerPID}
	}
	if len(c.ServerPIDs) > 0 {
		c.ServerPID = c.ServerPIDs[0]
	}
	c.Path = strings.TrimRight(c.Path, "/")
	if c.Path != "" && !strings.HasPrefix(c.Path, "/") {
		c.Path = "/" + c.Path
	}
	if c.AppID == "" || c.Key == "" || c.Secret == "" {
		errs = append(errs, "--app-id, --key and --secret must not be empty")
	}
	defConns, defChannels, defRate := 0, 1, 0.0
	switch c.Scenario {
	case ScenarioConnect:
		defConns, defChannels = 1000, 100
	case ScenarioFanout:
		defConns, defRate = 1000, 4
	case ScenarioBurst:
		defConns, defRate = 1000, 2
	case ScenarioClientEvents:
		defConns, defRate = 100, 2
	case ScenarioAPI:
		defConns = 16
	case ScenarioChurn:
		defConns = 50
	case ScenarioPresence:
		defConns = 100
		if c.Queries == 0 {
			c.Queries = 20
		}
		if c.Workers > 0 {
			errs = append(errs, "--workers: the presence scenario runs in one process")
		}
		if c.Connections > MaxConnsPerWorker {
			errs = append(errs, fmt.Sprintf("--connections: the presence scenario holds at most %d members", MaxConnsPerWorker))
		}
	case ScenarioCross:
		defConns = 100
		if c.Channels > 1 {
			errs = append(errs, "--channels: the cross scenario uses one channel")
		}
		if c.APIClients == 0 {
			c.APIClients = 16
		}
	default:
		errs = append(errs, fmt.Sprintf("unknown --scenario %q (one of %s)", c.Scenario, strings.Join(Scenarios, ", ")))
	}
	if c.Connections == 0 {
		c.Connections = defConns
	}
	if c.Channels == 0 {
		c.Channels = defChannels
	}
	if c.Rate == 0 {
		c.Rate = defRate
	}
	if c.Connections < 0 || c.Channels < 0 || c.Rate < 0 || c.Payload < 0 || c.Burst < 0 || c.Group < 0 ||
		c.APIClients < 0 || c.Events < 0 || c.Queries < 0 || c.Hold < 0 {
		errs = append(errs, "counts and rates must not be negative")
	}
	if c.HoldUntil != "" && (c.Hold <= 0 || !c.wsScenario() || c.Scenario == ScenarioConnect) {
		errs = append(errs, "--hold-until: fanout, burst and client-events only, with --hold as the longest hold")
	}
	if (c.Scenario == ScenarioFanout || c.Scenario == ScenarioBurst) && c.Channels > 100 {
		errs = append(errs, "--channels: a trigger reaches at most 100 channels")
	}
	if c.Scenario == ScenarioClientEvents {
		if c.Group == 0 {
			c.Group = 2
		}
		if c.Group < 2 {
			errs = append(errs, "--group must be at least 2")
		}
		if c.Rate > 10 {
			errs = append(errs, "--rate: at most 10 client events per second per connection (Pusher's limit)")
		}
		if c.Connections%c.Group != 0 {
			c.Connections += c.Group - c.Connections%c.Group
		}
	}
	if c.Burst == 0 {
		c.Burst = 10
	}
	if c.Payload == 0 {
		c.Payload = 100
	}
	if c.ConnectConcurrency <= 0 {
		c.ConnectConcurrency = 64
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Drain <= 0 {
		c.Drain = 10 * time.Second
	}
	c.APITimeout = c.apiTimeout()
	if c.Timeout <= 0 {
		sending := c.Duration
		if c.Scenario == ScenarioCross && c.Events > 0 {
			// Paced: events/rate; unpaced: assume at least 1000 events/s.
			r := c.Rate
			if r <= 0 {
				r = 1000
			}
			sending = time.Duration(float64(c.Events) / r * float64(time.Second))
		}
		c.Timeout = c.Hold + sending + 2*time.Minute
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 30 * time.Second
	}
	switch c.Client {
	case "":
		c.Client = "gnet"
	case "gnet", "goroutine":
	default:
		errs = append(errs, fmt.Sprintf("--client %q: gnet or goroutine", c.Client))
	}
	if c.Loops <= 0 {
		c.Loops = runtime.GOMAXPROCS(0)
	}
	if c.Workers < 0 {
		errs = append(errs, "--workers must not be negative")
	}
	if c.Scenario == ScenarioCross {
		if c.Workers > 0 {
			errs = append(errs, "--workers: the cross scenario runs in one process")
		}
		if c.Connections > MaxConnsPerWorker {
			errs = append(errs, fmt.Sprintf("--connections: the cross scenario holds at most %d subscribers", MaxConnsPerWorker))
		}
	}
	if c.Workers == 0 && c.wsScenario() && c.Connections > MaxConnsPerWorker {
		c.Workers = (c.Connections + MaxConnsPerWorker - 1) / MaxConnsPerWorker
	}
	if !c.wsScenario() {
		c.Workers = 0
	}
	if c.Scenario == ScenarioClientEvents && c.Workers > 1 {
		// Groups must not straddle workers.
		per := (c.Connections/c.Workers + c.Group - 1) / c.Group * c.Group
		if per > MaxConnsPerWorker {
			errs = append(errs, "--workers too few for --connections")
		}
	}
	if !c.TLS && !c.apiTLS() && (c.TLSInsecure || c.TLSCA != "" || c.TLSServerName != "" || c.TLSResume) {
		errs = append(errs, "--tls-insecure, --tls-ca, --tls-server-name and --tls-resume need --tls or --api-tls")
	}
	if c.TLSCA != "" {
		if _, err := loadCAPool(c.TLSCA); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// apiTLS reports whether the HTTP API triggers use TLS.
func (c *Config) apiTLS() bool {
	if c.APITLS != nil {
		return *c.APITLS
	}
	return c.TLS
}

// wsScenario reports whether the scenario holds WebSocket connections that
// can be spread over worker processes.
func (c *Config) wsScenario() bool {
	switch c.Scenario {
	case ScenarioConnect, ScenarioFanout, ScenarioBurst, ScenarioClientEvents:
		return true
	}
	return false
}

// ParseArgs parses the arguments of `reverb bench` (without the command
// name) into a normalized Config. Usage and errors go to errOut. It returns
// flag.ErrHelp for -h.
//
// The server and the app default to what `reverb start` would serve with
// the same configuration file (--config, else ./reverb.toml if it exists)
// and environment (REVERB_APP_*, REVERB_SERVER_*): with neither, the
// built-in app on 127.0.0.1:8080. Flags given explicitly win. When no app
// flag is given, PickApp checks the app with the server before the run.
func ParseArgs(args []string, errOut io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("reverb bench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	configPath := fs.String("config", "", "the server's configuration `FILE`, read as reverb start reads it (then the REVERB_* environment) for whichever of --app-id, --key, --secret, --host, --port and --path is not given (default: ./reverb.toml if it exists)")
	fs.StringVar(&c.Host, "host", "", "server host (default: the server's server.host, REVERB_SERVER_HOST; 127.0.0.1 for 0.0.0.0)")
	fs.IntVar(&c.Port, "port", 0, "server port (default: the server's server.port, REVERB_SERVER_PORT, else 8080)")
	fs.StringVar(&c.Path, "path", "", "server path prefix (default: the server's server.path)")
	fs.StringVar(&c.APIHost, "api-host", "", "host of the HTTP API triggers (default --host)")
	fs.IntVar(&c.APIPort, "api-port", 0, "port of the HTTP API triggers (default --port), e.g. another node of a cluster")
	fs.StringVar(&c.AppID, "app-id", "", "app id (HTTP API; default: the server's app, see --config)")
	fs.StringVar(&c.Key, "key", "", "app key (default: the server's app, REVERB_APP_KEY, else the built-in local-key)")
	fs.StringVar(&c.Secret, "secret", "", "app secret, signs API calls and private channels (default: the server's app)")
	fs.StringVar(&c.Scenario, "scenario", ScenarioConnect, "one of "+strings.Join(Scenarios, ", "))
	fs.IntVar(&c.Connections, "connections", 0, "connections (api: HTTP clients, churn: lanes, cross: subscribers); 0 = scenario default")
	fs.DurationVar(&c.APITimeout, "api-timeout", 10*time.Second, "longest wait for the answer to one HTTP API request (pusher-http-php waits 30s)")
	fs.IntVar(&c.APIClients, "api-clients", 0, "keep-alive HTTP clients triggering the events (cross; default 16)")
	fs.IntVar(&c.Events, "events", 0, "events to trigger (cross; 0 = as many as fit in --duration)")
	fs.IntVar(&c.Queries, "queries", 0, "HTTP API rounds checking the users and user_count (presence; default 20)")
	fs.BoolVar(&c.Retry503, "retry-503", false, "retry triggers answered 503 after their Retry-After (cross; default: count them, no retry)")
	fs.BoolVar(&c.Reconnect, "reconnect", false, "fanout: re-open connections the server closes during the run (4200-4299 close or EOF, backoff from 100 ms), check every event on the never-dropped ones, report the dropped ones apart")
	fs.IntVar(&c.Channels, "channels", 0, "public channels (connect: default 100; fanout/burst: default 1)")
	fs.Float64Var(&c.Rate, "rate", 0, "connect: connects/s; fanout: triggers/s (4); burst: bursts/s (2); client-events: events/s per connection (2); api: requests/s; churn: cycles/s; cross: triggers/s; 0 = default/unlimited")
	fs.Float64Var(&c.ConnectRate, "connect-rate", 0, "connects/s during the ramp of fanout, burst, client-events (0 = unpaced)")
	fs.IntVar(&c.ConnectConcurrency, "connect-concurrency", 64, "handshakes in flight per process")
	fs.IntVar(&c.Payload, "payload", 100, "event data size in bytes")
	fs.BoolVar(&c.Deflate, "deflate", false, "offer permessage-deflate (no context takeover) on every connection; fail connections the server answers without it")
	fs.BoolVar(&c.JSONPayload, "json-payload", false, "event data is a JSON list of records with repetitive keys, about --payload bytes (default: the send time and 'x' padding)")
	fs.BoolVar(&c.TLS, "tls", false, "connect over TLS: wss:// and, unless --api-tls=false, https:// for the HTTP API (default: on when the server's configuration has [server.tls])")
	apiTLS := fs.Bool("api-tls", false, "use https:// for the HTTP API triggers (default: as --tls)")
	fs.BoolVar(&c.TLSInsecure, "tls-insecure", false, "do not verify the server's certificate (self-signed)")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "PEM `FILE` of the certificates to trust (default: the system's roots)")
	fs.StringVar(&c.TLSServerName, "tls-server-name", "", "name to verify the server's certificate against and send in SNI (default: the host dialed)")
	fs.BoolVar(&c.TLSResume, "tls-resume", false, "share a TLS session cache so connections may resume sessions (default: a full handshake per connection)")
	fs.IntVar(&c.Burst, "burst", 10, "events per trigger burst (burst)")
	fs.IntVar(&c.Group, "group", 2, "connections per private channel (client-events)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured phase")
	fs.DurationVar(&c.Drain, "drain", 10*time.Second, "longest wait for in-flight deliveries after the last event (cross: after the last delivery)")
	fs.DurationVar(&c.Hold, "hold", 0, "fanout, burst, client-events: hold the connections this long after the ramp before the first event")
	fs.StringVar(&c.HoldUntil, "hold-until", "", "end the --hold early once this `FILE` exists and (--reconnect) no connection is down")
	fs.StringVar(&c.ReadyFile, "ready-file", "", "write this `FILE` once the ramp is over (connected and failed counts)")
	fs.DurationVar(&c.Timeout, "timeout", 0, "bound on the whole run (default hold + duration + 2m; cross with --events: events/rate + 2m)")
	fs.DurationVar(&c.PingInterval, "ping-interval", 30*time.Second, "pusher:ping interval of idle connections")
	serverPIDs := fs.String("server-pid", "", "server PID, or a comma-separated list (the nodes of a cluster): read their RSS and CPU from /proc and sum them")
	fs.IntVar(&c.Workers, "workers", 0, "child processes holding connections (0 = one per 18000 connections when more)")
	srcIPs := fs.String("source-ips", "", "local addresses to dial from, e.g. 127.0.0.2-127.0.0.20 or a,b,c")
	fs.StringVar(&c.Client, "client", "gnet", "connection runtime: gnet or goroutine")
	fs.IntVar(&c.Loops, "loops", 0, "gnet client event loops (default GOMAXPROCS)")
	fs.BoolVar(&c.JSON, "json", false, "print only the JSON summary line")
	fs.StringVar(&c.Report, "report", "", "write an HTML report to this file")
	progress := fs.String("progress", "auto", "auto, on or off")
	fs.BoolVar(&c.worker, "worker", false, "internal: run as a worker process")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch *progress {
	case "auto":
	case "on":
		c.Progress = 1
	case "off":
		c.Progress = -1
	default:
		return c, fmt.Errorf("--progress %q: auto, on or off", *progress)
	}
	pids, err := ParsePIDs(*serverPIDs)
	if err != nil {
		return c, err
	}
	c.ServerPIDs = pids
	ips, err := ParseSourceIPs(*srcIPs)
	if err != nil {
		return c, err
	}
	c.SourceIPs = ips
	if c.worker {
		return c, nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["api-tls"] {
		c.APITLS = apiTLS
	}
	if err := c.resolveServer(*configPath, set, os.LookupEnv); err != nil {
		return c, err
	}
	return c, c.Normalize()
}

// ParsePIDs parses a comma-separated list of process ids; an empty string
// means none.
func ParsePIDs(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n, err := strconv.Atoi(part)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--server-pid: %q is not a process id", part)
		}
		out = append(out, n)
	}
	return out, nil
}

// ParseSourceIPs parses a comma-separated list of addresses and inclusive
// ranges ("127.0.0.2-127.0.0.20"). An empty string means none. A range must
// stay within one address family, go upwards and hold at most 65536
// addresses.
func ParseSourceIPs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("--source-ips: %q is not an address", lo)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b, err := netip.ParseAddr(strings.TrimSpace(hi))
		if err != nil {
			return nil, fmt.Errorf("--source-ips: %q is not an address", hi)
		}
		if a.Is4() != b.Is4() {
			return nil, fmt.Errorf("--source-ips: range %q mixes address families", part)
		}
		if b.Less(a) {
			return nil, fmt.Errorf("--source-ips: range %q goes downwards", part)
		}
		n := 0
		for x := a; ; x = x.Next() {
			if n++; n > 65536 {
				return nil, fmt.Errorf("--source-ips: range %q holds more than 65536 addresses", part)
			}
			out = append(out, x)
			if x == b {
				break
			}
		}
	}
	return out, nil
}

// apiTimeout is APITimeout, 10 s when not set.
func (c *Config) apiTimeout() time.Duration {
	if c.APITimeout <= 0 {
		return 10 * time.Second
	}
	return c.APITimeout
}
