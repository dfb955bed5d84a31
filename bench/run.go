package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"time"
)

// ServerStats are the server process figures read from /proc.
type ServerStats struct {
	PID int `json:"pid"`
	// PIDs lists every process measured when there are several (the
	// nodes of a cluster); the RSS and CPU figures are their sums.
	PIDs        []int   `json:"pids,omitempty"`
	RSSBeforeKB int64   `json:"rss_before_kb"`
	RSSAfterKB  int64   `json:"rss_after_kb"`
	RSSPerConnB float64 `json:"rss_per_conn_bytes,omitempty"`
	// RSSHeldKB and RSSHeldPerConnB are read at the end of the connect
	// scenario's hold (--duration), the connections idle all along; the
	// figures above are read 1 s after the ramp.
	RSSHeldKB       int64   `json:"rss_held_kb,omitempty"`
	RSSHeldPerConnB float64 `json:"rss_held_per_conn_bytes,omitempty"`
	// CPUSeconds is the server's user+system CPU over the measured phase.
	CPUSeconds float64 `json:"cpu_s"`
	// CPUPerOpUS is CPUSeconds divided by the scenario's operations (see
	// Result.Op), in microseconds.
	CPUPerOpUS float64 `json:"cpu_per_op_us"`
}

// Point is one second of a run.
type Point struct {
	T         float64 `json:"t"`
	Connected int64   `json:"connected"`
	// Rate is operations (deliveries, requests, cycles, connects) in the
	// last interval, per second.
	Rate float64 `json:"rate"`
}

// Result is the outcome of a run; it is printed as a table and as one JSON
// line.
type Result struct {
	Scenario string `json:"scenario"`
	Target   string `json:"server"`
	// APITarget is where the HTTP API triggers went when not Target.
	APITarget   string  `json:"api_server,omitempty"`
	Client      string  `json:"client"`
	Connections int     `json:"connections"`
	Channels    int     `json:"channels,omitempty"`
	Workers     int     `json:"workers"`
	Rate        float64 `json:"rate,omitempty"`
	Payload     int     `json:"payload,omitempty"`
	Burst       int     `json:"burst,omitempty"`
	Group       int     `json:"group,omitempty"`
	DurationS   float64 `json:"duration_s"`

	Connected      int64   `json:"connected"`
	Failed         int64   `json:"failed"`
	ClosedEarly    int64   `json:"closed_early"`
	ConnectS       float64 `json:"connect_s,omitempty"`
	ConnectsPerSec float64 `json:"connects_per_s,omitempty"`
	ConnectLatency Summary `json:"connect_latency,omitzero"`

	// Op names what Latency, OpsPerSec and Server.CPUPerOpUS count:
	// "connect+subscribe", "delivery", "relay", "request" or "cycle".
	Op        string  `json:"op"`
	Ops       int64   `json:"ops"`
	OpsPerSec float64 `json:"ops_per_s"`
	Latency   Summary `json:"latency,omitzero"`

	Triggers      int64 `json:"triggers,omitempty"`
	TriggerErrors int64 `json:"trigger_errors,omitempty"`
	// Unconfirmed triggers timed out without an answer; their events are
	// still counted in Events and Expected.
	Unconfirmed  int64   `json:"unconfirmed_triggers,omitempty"`
	Events       int64   `json:"events,omitempty"`
	Expected     int64   `json:"expected,omitempty"`
	Received     int64   `json:"received,omitempty"`
	Loss         int64   `json:"loss"`
	LossPct      float64 `json:"loss_pct"`
	TriggerLat   Summary `json:"trigger_latency,omitzero"`
	ServerErrors int64   `json:"server_errors"`
	// WireBytesPerDelivery is the bytes of the data frames (headers
	// included, compressed when permessage-deflate is on) the subscribers
	// received in the steady state, per delivery (fanout, burst).
	WireBytesPerDelivery float64 `json:"wire_bytes_per_delivery,omitempty"`
	// Deflate reports that the connections negotiated permessage-deflate.
	Deflate bool `json:"deflate,omitempty"`

	// TLS reports wss:// connections; APITLS https:// API triggers;
	// TLSResume a shared session cache (else a full handshake per
	// connection).
	TLS       bool `json:"tls,omitempty"`
	APITLS    bool `json:"api_tls,omitempty"`
	TLSResume bool `json:"tls_resume,omitempty"`

	// Cross holds the figures of the cross scenario.
	Cross *CrossStats `json:"cross,omitempty"`
	// Presence holds the figures of the presence scenario.
	Presence *PresenceStats `json:"presence,omitempty"`
	// Reconnect holds the figures of --reconnect; with it, Expected counts
	// the deliveries due outside the dropped connections' gaps and
	// Received each connection's deliveries of accepted events once, so
	// that Loss is what connections missed while connected.
	Reconnect *ReconnectStats `json:"reconnect,omitempty"`
	// DrainEnd says what ended the wait for deliveries after the last
	// event (fanout, burst, client-events): "complete" (every expected
	// delivery arrived), "owed nothing" (--reconnect: the connections
	// connected at the end had everything due to them; those still down
	// are counted in their gaps), "quiet" (--reconnect: none down and
	// nothing arrived for a second), "timeout" (--drain passed) or
	// "cancelled".
	DrainEnd string `json:"drain_end,omitempty"`
	// HoldS is how long the connections were held between the ramp and
	// the first event (--hold), HoldEnd what ended a hold with
	// --hold-until: "signalled" (the file was there and no connection
	// down), "timeout" (--hold passed) or "cancelled".
	HoldS   float64 `json:"hold_s,omitempty"`
	HoldEnd string  `json:"hold_end,omitempty"`

	Server        *ServerStats `json:"server_proc,omitempty"`
	ClientCPUS    float64      `json:"client_cpu_s"`
	ClientRSSConn float64      `json:"client_rss_per_conn_bytes,omitempty"`
	Errors        []string     `json:"errors,omitempty"`
	TimedOut      bool         `json:"timed_out,omitempty"`

	// Series and Dist feed the HTML report; they are not in the JSON line.
	Series []Point   `json:"-"`
	Dist   []Bucket  `json:"-"`
	Start  time.Time `json:"-"`

	// release lets the worker processes exit (Config.KeepWorkers).
	release func()
}

// Release lets the worker processes of a run with Config.KeepWorkers exit,
// which closes their connections. It does nothing for other runs or when
// called again. Not safe for concurrent use.
func (r *Result) Release() {
	if f := r.release; f != nil {
		r.release = nil
		f()
	}
}

// runner holds the state of one run.
type runner struct {
	cfg    Config
	stderr io.Writer
	tag    string
	res    *Result
	start  time.Time
	// progress: what the progress sampler reads (see setCounters)
	// accepted[q] says the trigger of sequence number q was accepted or
	// unanswered (--reconnect).
	accepted  []bool
	cntMu     sync.Mutex
	opCount   func() int64
	connCount func() int64
	opLabel   string
	gen       int
	series    []Point
}

// Run executes cfg (already normalized) and returns its result. Progress
// goes to stdout when it is a terminal (cfg.Progress decides otherwise),
// else periodic lines to stderr. Run does not print the result; see
// WriteTable, WriteJSON and WriteHTML.
func Run(ctx context.Context, cfg Config, stdout, stderr io.Writer) (*Result, error) {
	if cfg.worker {
		return nil, fmt.Errorf("worker config")
	}
	if err := cfg.checkReconnect(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var tb [3]byte
	_, _ = rand.Read(tb[:])
	r := &runner{cfg: cfg, stderr: stderr, tag: hex.EncodeToString(tb[:]), start: time.Now()}
	r.res = &Result{
		Scenario: cfg.Scenario, Target: cfg.Addr(), Client: cfg.Client, Connections: cfg.Connections,
		Workers: cfg.Workers, Rate: cfg.Rate, Start: r.start,
		TLS: cfg.TLS, TLSResume: cfg.TLSResume && (cfg.TLS || cfg.apiTLS()),
	}
	switch cfg.Scenario {
	case ScenarioFanout, ScenarioBurst, ScenarioAPI, ScenarioCross, ScenarioPresence:
		r.res.APITLS = cfg.apiTLS()
	}
	switch cfg.Scenario {
	case ScenarioConnect, ScenarioFanout, ScenarioBurst, ScenarioCross:
		r.res.Channels = cfg.Channels
	}
	switch cfg.Scenario {
	case ScenarioFanout, ScenarioBurst, ScenarioClientEvents, ScenarioAPI, ScenarioCross:
		r.res.Payload = cfg.Payload
	}
	if cfg.APIAddr() != cfg.Addr() {
		switch cfg.Scenario {
		case ScenarioFanout, ScenarioBurst, ScenarioAPI, ScenarioCross, ScenarioPresence:
			r.res.APITarget = cfg.APIAddr()
		}
	}
	if cfg.Scenario == ScenarioBurst {
		r.res.Burst = cfg.Burst
	}
	if cfg.Scenario == ScenarioClientEvents {
		r.res.Group = cfg.Group
	}
	if len(cfg.ServerPIDs) == 0 && cfg.ServerPID > 0 {
		r.cfg.ServerPIDs = []int{cfg.ServerPID}
	}
	for _, pid := range r.cfg.ServerPIDs {
		if _, err := ReadProc(pid); err != nil {
			return nil, fmt.Errorf("--server-pid %d: %w", pid, err)
		}
	}
	if pids := r.cfg.ServerPIDs; len(pids) > 0 {
		r.res.Server = &ServerStats{PID: pids[0]}
		if len(pids) > 1 {
			r.res.Server.PIDs = pids
		}
	}
	stopProgress := r.progress(stdout)
	var err error
	switch cfg.Scenario {
	case ScenarioAPI:
		err = r.runAPI(ctx)
	case ScenarioChurn:
		err = r.runChurn(ctx)
	case ScenarioCross:
		err = r.runCross(ctx)
	case ScenarioPresence:
		err = r.runPresence(ctx)
	default:
		err = r.runWS(ctx)
	}
	stopProgress()
	r.res.Series = r.series
	if ctx.Err() != nil {
		r.res.TimedOut = true
	}
	if r.res.Expected > 0 {
		r.res.Loss = r.res.Expected - r.res.Received
		r.res.LossPct = round2(100 * float64(r.res.Loss) / float64(r.res.Expected))
	}
	return r.res, err
}

// serverSample reads the servers' /proc figures, summed over every PID
// (zero without one).
func (r *runner) serverSample() ProcSample {
	var sum ProcSample
	for _, pid := range r.cfg.ServerPIDs {
		s, _ := ReadProc(pid)
		sum.RSSKB += s.RSSKB
		sum.CPU += s.CPU
	}
	return sum
}

// serverCPU fills the server's CPU figures between two samples.
func (r *runner) serverCPU(a, b ProcSample, ops int64) {
	if r.res.Server == nil {
		return
	}
	cpu := b.CPU - a.CPU
	r.res.Server.CPUSeconds = round2(cpu.Seconds())
	if ops > 0 {
		r.res.Server.CPUPerOpUS = round2(float64(cpu.Microseconds()) / float64(ops))
	}
}

func appendErrs(errs []string, more ...string) []string {
	for _, e := range more {
		if len(errs) >= 10 {
			return errs
		}
		dup := false
		for _, x := range errs {
			if x == e {
				dup = true
				break
			}
		}
		if !dup {
			errs = append(errs, e)
		}
	}
	return errs
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func sleepUntil(ctx context.Context, at time.Time) bool {
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err() == nil
	}
	return sleepCtx(ctx, d)
}
