package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/time/rate"
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

	// Cross holds the figures of the cross scenario.
	Cross *CrossStats `json:"cross,omitempty"`

	Server        *ServerStats `json:"server_proc,omitempty"`
	ClientCPUS    float64      `json:"client_cpu_s"`
	ClientRSSConn float64      `json:"client_rss_per_conn_bytes,omitempty"`
	Errors        []string     `json:"errors,omitempty"`
	TimedOut      bool         `json:"timed_out,omitempty"`

	// Series and Dist feed the HTML report; they are not in the JSON line.
	Series []Point   `json:"-"`
	Dist   []Bucket  `json:"-"`
	Start  time.Time `json:"-"`
}

// runner holds the state of one run.
type runner struct {
	cfg    Config
	stderr io.Writer
	tag    string
	res    *Result
	start  time.Time
	// progress: what the progress sampler reads (see setCounters)
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
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var tb [3]byte
	_, _ = rand.Read(tb[:])
	r := &runner{cfg: cfg, stderr: stderr, tag: hex.EncodeToString(tb[:]), start: time.Now()}
	r.res = &Result{
		Scenario: cfg.Scenario, Target: cfg.Addr(), Client: cfg.Client, Connections: cfg.Connections,
		Workers: cfg.Workers, Rate: cfg.Rate, Start: r.start,
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
		case ScenarioFanout, ScenarioBurst, ScenarioAPI, ScenarioCross:
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

// runWS runs the WebSocket scenarios: connect, fanout, burst, client-events.
func (r *runner) runWS(ctx context.Context) error {
	cfg := &r.cfg
	n := cfg.Connections
	workers := cfg.Workers
	parts := 1
	if workers > 0 {
		parts = workers
	}
	connectRate := cfg.ConnectRate
	if cfg.Scenario == ScenarioConnect {
		connectRate = cfg.Rate
	}
	srv0 := r.serverSample()
	cpuStart := selfCPU()
	rssStart := selfRSSKB()

	var handles []shardHandle
	first := 0
	for p := 0; p < parts; p++ {
		count := (n - first) / (parts - p)
		if cfg.Scenario == ScenarioClientEvents && p < parts-1 {
			count = (count + cfg.Group - 1) / cfg.Group * cfg.Group
		}
		if count <= 0 {
			continue
		}
		spec := shardSpec{Config: *cfg, First: first, Count: count, Tag: r.tag, ConnectRate: connectRate / float64(parts)}
		var h shardHandle
		var err error
		if workers > 0 {
			h, err = startRemote(spec, r.stderr)
		} else {
			h, err = startLocal(ctx, spec)
		}
		if err != nil {
			for _, h := range handles {
				_, _ = h.finish()
			}
			return err
		}
		handles = append(handles, h)
		first += count
	}
	total := func() shardStatus {
		var st shardStatus
		for _, h := range handles {
			st.add(h.status())
		}
		return st
	}
	r.setCounters("connects", func() int64 {
		st := total()
		return st.Connected + st.Failed
	}, func() int64 { return total().Connected })
	// Connection ramp.
	t0 := time.Now()
	perChan := make([]int64, max(1, cfg.Channels))
	var readyErr string
	var clientRSS int64
	for _, h := range handles {
		select {
		case rd := <-h.ready():
			if rd.Err != "" && readyErr == "" {
				readyErr = rd.Err
			}
			for i, c := range rd.PerChannel {
				if i < len(perChan) {
					perChan[i] += c
				}
			}
			clientRSS += rd.RSSReadyKB - rd.RSSStartKB
		case <-ctx.Done():
			readyErr = "timed out while connecting"
		}
	}
	connectDur := time.Since(t0)
	srvConnected := r.serverSample()
	st := total()
	r.res.ConnectS = round2(connectDur.Seconds())
	r.res.ConnectsPerSec = perSecond(st.Connected, connectDur)
	if workers == 0 {
		clientRSS = selfRSSKB() - rssStart
	}
	if st.Connected > 0 {
		r.res.ClientRSSConn = round1(float64(clientRSS*1024) / float64(st.Connected))
	}

	var runErr error
	if readyErr != "" {
		runErr = fmt.Errorf("%s", readyErr)
	}
	phase0 := srvConnected
	var phaseOps int64
	measureStart := time.Now()
	switch {
	case runErr != nil:
	case cfg.Scenario == ScenarioConnect:
		r.res.Op = "connect+subscribe"
		// Let the server settle, read its RSS, then hold the connections.
		sleepCtx(ctx, time.Second)
		srvIdle := r.serverSample()
		if r.res.Server != nil {
			r.res.Server.RSSBeforeKB = srv0.RSSKB
			r.res.Server.RSSAfterKB = srvIdle.RSSKB
			if st.Connected > 0 {
				r.res.Server.RSSPerConnB = round1(float64((srvIdle.RSSKB-srv0.RSSKB)*1024) / float64(st.Connected))
			}
		}
		r.serverCPU(srv0, srvConnected, st.Connected)
		phase0 = srvIdle
		sleepCtx(ctx, cfg.Duration)
	case cfg.Scenario == ScenarioFanout || cfg.Scenario == ScenarioBurst:
		r.res.Op = "delivery"
		r.setCounters("deliveries", func() int64 { return total().Received }, nil)
		runErr = r.trigger(ctx, perChan)
		r.drain(ctx, total)
	case cfg.Scenario == ScenarioClientEvents:
		r.res.Op = "relay"
		r.setCounters("relays", func() int64 { return total().Received }, nil)
		for _, h := range handles {
			h.startSending()
		}
		sleepCtx(ctx, cfg.Duration)
		for _, h := range handles {
			h.stopSending()
		}
		r.res.Expected = -1 // filled below from the shards' counts
		r.drain(ctx, total)
	}
	measureDur := time.Since(measureStart)
	srv1 := r.serverSample()
	if r.res.Server != nil && r.res.Server.RSSAfterKB == 0 {
		r.res.Server.RSSBeforeKB = srv0.RSSKB
		r.res.Server.RSSAfterKB = srv1.RSSKB
	}

	// Collect.
	connHist, delHist := newHist(), newHist()
	var fin shardStatus
	var cpu time.Duration
	for _, h := range handles {
		res, err := h.finish()
		fin.add(res.Status)
		mergeSnapshot(connHist, res.Connect)
		mergeSnapshot(delHist, res.Deliveries)
		cpu += time.Duration(res.CPUNS)
		r.res.Errors = appendErrs(r.res.Errors, res.Errs...)
		if err != nil {
			r.res.Errors = appendErrs(r.res.Errors, err.Error())
		}
	}
	if workers == 0 {
		cpu = selfCPU() - cpuStart
	} else {
		cpu += selfCPU() - cpuStart
	}
	r.res.ClientCPUS = round2(cpu.Seconds())
	r.res.Connected = fin.Connected
	r.res.Failed = fin.Failed
	r.res.ClosedEarly = fin.ClosedEarly
	r.res.ServerErrors = fin.Errors
	r.res.ConnectLatency = Summarize(connHist)
	switch cfg.Scenario {
	case ScenarioConnect:
		r.res.Ops = fin.Connected
		r.res.OpsPerSec = r.res.ConnectsPerSec
		r.res.Latency = r.res.ConnectLatency
		r.res.Dist = Distribution(connHist, 10)
		r.res.DurationS = round2(connectDur.Seconds())
	default:
		if cfg.Scenario == ScenarioClientEvents {
			r.res.Expected = fin.Expected
			r.res.Events = fin.Sent
		}
		r.res.Received = fin.Received
		r.res.Ops = fin.Received
		r.res.OpsPerSec = perSecond(fin.Received, measureDur)
		r.res.Latency = Summarize(delHist)
		r.res.Dist = Distribution(delHist, 10)
		r.res.DurationS = round2(measureDur.Seconds())
		phaseOps = fin.Received
		r.serverCPU(phase0, srv1, phaseOps)
	}
	if fin.Connected < int64(cfg.Connections) && runErr == nil {
		runErr = fmt.Errorf("%d of %d connections failed", int64(cfg.Connections)-fin.Connected, cfg.Connections)
	}
	return runErr
}

// drain waits until every expected delivery arrived, or Drain passed.
func (r *runner) drain(ctx context.Context, total func() shardStatus) {
	deadline := time.Now().Add(r.cfg.Drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st := total()
		exp := r.res.Expected
		if exp < 0 {
			exp = st.Expected
		}
		if st.Received >= exp {
			return
		}
		sleepCtx(ctx, 20*time.Millisecond)
	}
}

// trigger sends events through the HTTP API at cfg.Rate triggers (or
// bursts) per second for cfg.Duration, and sets Triggers, Events and
// Expected.
func (r *runner) trigger(ctx context.Context, perChan []int64) error {
	cfg := &r.cfg
	channels := make([]string, cfg.Channels)
	var subs int64
	for i := range channels {
		channels[i] = fmt.Sprintf("bench-%s-fan-%d", r.tag, i)
		subs += perChan[i]
	}
	perBurst := 1
	if cfg.Scenario == ScenarioBurst {
		perBurst = cfg.Burst
	}
	const poolSize = 4
	pool := make(chan *apiClient, poolSize)
	for i := range poolSize {
		pool <- newAPIClient(cfg, i)
	}
	var (
		mu               sync.Mutex
		triggers, errs   int64
		unconfirmed      int64
		events, expected int64
		trigHist         = newHist()
		wg               sync.WaitGroup
		firstErr         error
	)
	fire := func(c *apiClient) {
		defer func() { pool <- c; wg.Done() }()
		for sent := 0; sent < perBurst; {
			k := 1
			var body []byte
			var route string
			var exp int64
			if cfg.Scenario == ScenarioBurst {
				k = min(10, perBurst-sent)
				chs := make([]string, k)
				data := make([][]byte, k)
				for j := range k {
					ci := (sent + j) % len(channels)
					chs[j] = channels[ci]
					exp += perChan[ci]
					data[j] = eventData(time.Now(), cfg.Payload)
				}
				body, route = batchBody(chs, data), "batch_events"
			} else {
				body, route = triggerBody(channels, eventData(time.Now(), cfg.Payload)), "events"
				exp = subs
			}
			t0 := time.Now()
			status, err := c.post(ctx, route, body)
			lat := time.Since(t0)
			if err == nil {
				err = statusErr(status)
			}
			mu.Lock()
			recordLatency(trigHist, lat)
			if err != nil {
				errs++
				if firstErr == nil {
					firstErr = fmt.Errorf("trigger: %w", err)
				}
				if status == 0 && os.IsTimeout(err) {
					// No answer in time: the server may still deliver, so
					// the events stay expected (they count as loss if not).
					unconfirmed++
					events += int64(k)
					expected += exp
				}
			} else {
				triggers++
				events += int64(k)
				expected += exp
			}
			mu.Unlock()
			sent += k
		}
	}
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	start := time.Now()
	end := start.Add(cfg.Duration)
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if !at.Before(end) {
			break
		}
		if !sleepUntil(ctx, at) {
			break
		}
		var c *apiClient
		select {
		case c = <-pool:
		case <-ctx.Done():
		}
		if c == nil {
			break
		}
		wg.Add(1)
		go fire(c)
	}
	wg.Wait()
	close(pool)
	for c := range pool {
		c.close()
	}
	r.res.Triggers, r.res.TriggerErrors = triggers, errs
	r.res.Unconfirmed = unconfirmed
	r.res.Events, r.res.Expected = events, expected
	r.res.TriggerLat = Summarize(trigHist)
	if firstErr != nil {
		r.res.Errors = appendErrs(r.res.Errors, firstErr.Error())
	}
	return nil
}

// runAPI runs the api scenario: Connections keep-alive clients posting
// triggers for Duration.
func (r *runner) runAPI(ctx context.Context) error {
	cfg := &r.cfg
	r.res.Op = "request"
	var lim *rate.Limiter
	if cfg.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	}
	var ok, bad atomic.Int64
	r.setCounters("requests", func() int64 { return ok.Load() + bad.Load() }, nil)
	cpu0 := selfCPU()
	srv0 := r.serverSample()
	start := time.Now()
	end := start.Add(cfg.Duration)
	hists := make([]*hdrhistogram.Histogram, cfg.Connections)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	channel := []string{fmt.Sprintf("bench-%s-api", r.tag)}
	for i := range cfg.Connections {
		hists[i] = newHist()
		wg.Add(1)
		go func(h *hdrhistogram.Histogram) {
			defer wg.Done()
			c := newAPIClient(cfg, i)
			defer c.close()
			for time.Now().Before(end) && ctx.Err() == nil {
				if lim != nil && lim.Wait(ctx) != nil {
					return
				}
				body := triggerBody(channel, eventData(time.Now(), cfg.Payload))
				t0 := time.Now()
				status, err := c.post(ctx, "events", body)
				recordLatency(h, time.Since(t0))
				if err == nil {
					err = statusErr(status)
				}
				if err != nil {
					bad.Add(1)
					errMu.Lock()
					r.res.Errors = appendErrs(r.res.Errors, err.Error())
					errMu.Unlock()
					if status == 0 {
						sleepCtx(ctx, 10*time.Millisecond)
					}
					continue
				}
				ok.Add(1)
			}
		}(hists[i])
	}
	wg.Wait()
	dur := time.Since(start)
	srv1 := r.serverSample()
	all := newHist()
	for _, h := range hists {
		all.Merge(h)
	}
	r.res.DurationS = round2(dur.Seconds())
	r.res.Triggers, r.res.TriggerErrors = ok.Load(), bad.Load()
	r.res.Ops = ok.Load()
	r.res.OpsPerSec = perSecond(ok.Load(), dur)
	r.res.Latency = Summarize(all)
	r.res.TriggerLat = r.res.Latency
	r.res.Dist = Distribution(all, 10)
	r.res.ClientCPUS = round2((selfCPU() - cpu0).Seconds())
	r.serverCPU(srv0, srv1, ok.Load())
	if r.res.Server != nil {
		r.res.Server.RSSBeforeKB, r.res.Server.RSSAfterKB = srv0.RSSKB, srv1.RSSKB
	}
	if ok.Load() == 0 {
		return fmt.Errorf("no request succeeded")
	}
	return nil
}

// runChurn runs the churn scenario: Connections lanes each connecting,
// subscribing and closing in a loop for Duration.
func (r *runner) runChurn(ctx context.Context) error {
	cfg := &r.cfg
	r.res.Op = "cycle"
	r.res.Channels = 0
	var lim *rate.Limiter
	if cfg.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	}
	var cycles, failed, seq atomic.Int64
	r.setCounters("cycles", func() int64 { return cycles.Load() }, nil)
	cpu0 := selfCPU()
	srv0 := r.serverSample()
	d := newDialer(cfg)
	start := time.Now()
	end := start.Add(cfg.Duration)
	connH := make([]*hdrhistogram.Histogram, cfg.Connections)
	cycH := make([]*hdrhistogram.Histogram, cfg.Connections)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	for i := range cfg.Connections {
		connH[i], cycH[i] = newHist(), newHist()
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			buf := make([]byte, 2048)
			for time.Now().Before(end) && ctx.Err() == nil {
				if lim != nil && lim.Wait(ctx) != nil {
					return
				}
				n := int(seq.Add(1))
				t0 := time.Now()
				sub, err := churnOnce(ctx, d, cfg, fmt.Sprintf("bench-%s-churn-%d", r.tag, n%max(1, cfg.Channels)), n, buf)
				if err != nil {
					failed.Add(1)
					errMu.Lock()
					r.res.Errors = appendErrs(r.res.Errors, err.Error())
					errMu.Unlock()
					sleepCtx(ctx, 10*time.Millisecond)
					continue
				}
				recordLatency(connH[i], sub)
				recordLatency(cycH[i], time.Since(t0))
				cycles.Add(1)
			}
		}(i)
	}
	wg.Wait()
	dur := time.Since(start)
	srv1 := r.serverSample()
	ch, cy := newHist(), newHist()
	for i := range connH {
		ch.Merge(connH[i])
		cy.Merge(cycH[i])
	}
	r.res.DurationS = round2(dur.Seconds())
	r.res.Ops = cycles.Load()
	r.res.Connected = cycles.Load()
	r.res.Failed = failed.Load()
	r.res.OpsPerSec = perSecond(cycles.Load(), dur)
	r.res.ConnectLatency = Summarize(ch)
	r.res.Latency = Summarize(cy)
	r.res.Dist = Distribution(cy, 10)
	r.res.ClientCPUS = round2((selfCPU() - cpu0).Seconds())
	r.serverCPU(srv0, srv1, cycles.Load())
	if r.res.Server != nil {
		r.res.Server.RSSBeforeKB, r.res.Server.RSSAfterKB = srv0.RSSKB, srv1.RSSKB
	}
	if cycles.Load() == 0 {
		return fmt.Errorf("no churn cycle succeeded")
	}
	return nil
}

// churnOnce connects, subscribes, closes with a close frame and waits for
// the server to close (so TIME_WAIT stays on the server's side). It returns
// the connect+subscribe latency.
func churnOnce(ctx context.Context, d *dialer, cfg *Config, channel string, idx int, buf []byte) (time.Duration, error) {
	t0 := time.Now()
	nc, err := d.dial(ctx, idx)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(t0.Add(10 * time.Second))
	bc := &blockConn{c: nc, buf: buf}
	if err := bc.upgrade(d); err != nil {
		return 0, err
	}
	if _, err := bc.established(); err != nil {
		return 0, err
	}
	if err := bc.subscribe(channel, ""); err != nil {
		return 0, err
	}
	sub := time.Since(t0)
	if _, err := nc.Write(closeFrame); err != nil {
		return sub, nil
	}
	_ = nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		if _, err := nc.Read(buf); err != nil {
			if tc, ok := nc.(interface{ SetLinger(int) error }); ok && os.IsTimeout(err) {
				_ = tc.SetLinger(0)
			}
			return sub, nil
		}
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
