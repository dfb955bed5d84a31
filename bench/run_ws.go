package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

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
				h.release()
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
	var ramped shardStatus
	for _, h := range handles {
		select {
		case rd := <-h.ready():
			ramped.add(rd.Status)
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
	if cfg.ReadyFile != "" {
		if err := writeReady(cfg.ReadyFile, ramped, readyErr); err != nil {
			r.res.Errors = appendErrs(r.res.Errors, err.Error())
		}
	}
	phase0 := srvConnected
	if runErr == nil && cfg.Hold > 0 && cfg.Scenario != ScenarioConnect {
		r.hold(ctx, total)
		phase0 = r.serverSample()
	}
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
		if held := r.serverSample(); r.res.Server != nil && held.RSSKB > 0 {
			r.res.Server.RSSHeldKB = held.RSSKB
			if st.Connected > 0 {
				r.res.Server.RSSHeldPerConnB = round1(float64((held.RSSKB-srv0.RSSKB)*1024) / float64(st.Connected))
			}
		}
	case cfg.Scenario == ScenarioFanout || cfg.Scenario == ScenarioBurst:
		r.res.Op = "delivery"
		r.setCounters("deliveries", func() int64 { return total().Received }, nil)
		runErr = r.trigger(ctx, perChan)
		if cfg.Reconnect {
			r.drainReconnect(ctx, handles, total)
		} else {
			r.drain(ctx, total)
		}
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
	var recs []*reconnectResult
	// Every shard finishes at once: a worker answers in a second or more on
	// a saturated machine, and one after another, 56 of them took a minute.
	type finished struct {
		res shardResult
		err error
	}
	results := make([]finished, len(handles))
	var fwg sync.WaitGroup
	for i, h := range handles {
		fwg.Go(func() {
			res, err := h.finish()
			results[i] = finished{res, err}
		})
	}
	fwg.Wait()
	release := func() {
		for _, h := range handles {
			h.release()
		}
	}
	if cfg.KeepWorkers {
		r.res.release = release
	} else {
		release()
	}
	for _, f := range results {
		res, err := f.res, f.err
		fin.add(res.Status)
		recs = append(recs, res.Reconnect)
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
	r.res.Deflate = cfg.Deflate
	if (cfg.Scenario == ScenarioFanout || cfg.Scenario == ScenarioBurst) && fin.Received > 0 {
		r.res.WireBytesPerDelivery = round2(float64(fin.WireBytes) / float64(fin.Received))
	}
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
		if cfg.Reconnect && cfg.Scenario == ScenarioFanout {
			r.res.Reconnect, r.res.Expected, r.res.Received = combineReconnect(recs, r.accepted)
		}
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
			r.res.DrainEnd = "complete"
			return
		}
		sleepCtx(ctx, 20*time.Millisecond)
	}
	r.res.DrainEnd = drainTimedOut(ctx)
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
	fire := func(c *apiClient, seq int64) {
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
					data[j] = eventDataFor(cfg, time.Now())
				}
				body, route = batchBody(chs, data), "batch_events"
			} else {
				body, route = triggerBody(channels, eventDataForSeq(cfg, time.Now(), seq)), "events"
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
					r.accept(seq)
				}
			} else {
				triggers++
				events += int64(k)
				expected += exp
				r.accept(seq)
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
		seq := int64(-1)
		if cfg.Reconnect {
			seq = int64(i)
		}
		wg.Add(1)
		go fire(c, seq)
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

// writeReady writes --ready-file: the ramp's connected and failed counts
// and its error, if any, a line each. It writes a temporary file and
// renames it, so that a reader that sees the file sees all of it.
func writeReady(path string, st shardStatus, rampErr string) error {
	body := fmt.Sprintf("connected %d\nfailed %d\n", st.Connected, st.Failed)
	if rampErr != "" {
		body += "error " + strings.ReplaceAll(rampErr, "\n", " ") + "\n"
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return fmt.Errorf("--ready-file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("--ready-file: %w", err)
	}
	return nil
}

// holdPoll is how often the hold looks for --hold-until and the count of
// connections down.
const holdPoll = 100 * time.Millisecond

// hold keeps the connections open and quiet after the ramp: for cfg.Hold
// or, with cfg.HoldUntil, until that file exists and (with --reconnect) no
// connection is down, if that comes first. It records how long it held and,
// with HoldUntil, what ended it.
func (r *runner) hold(ctx context.Context, total func() shardStatus) {
	cfg := &r.cfg
	t0 := time.Now()
	defer func() { r.res.HoldS = round2(time.Since(t0).Seconds()) }()
	if cfg.HoldUntil == "" {
		sleepCtx(ctx, cfg.Hold)
		return
	}
	deadline := t0.Add(cfg.Hold)
	for {
		if _, err := os.Stat(cfg.HoldUntil); err == nil && total().Down == 0 {
			r.res.HoldEnd = "signalled"
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			r.res.HoldEnd = "timeout"
			return
		}
		if !sleepCtx(ctx, min(left, holdPoll)) {
			r.res.HoldEnd = "cancelled"
			return
		}
	}
}
