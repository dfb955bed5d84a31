package bench

import (
	"context"
	"fmt"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// CrossStats are the figures of the cross scenario: subscribers on one
// node (Config.Port), events triggered through the HTTP API of another
// (Config.APIPort), each event numbered so that every subscriber's
// deliveries can be checked one by one.
type CrossStats struct {
	// Mode is "paced" (Config.Rate triggers/s) or "unpaced".
	Mode       string `json:"mode"`
	APIServer  string `json:"api_server"`
	APIClients int    `json:"api_clients"`
	// Subscribers is the number of subscribed connections checked.
	Subscribers int64 `json:"subscribers"`
	// Sent counts the events triggered (one request each, retries aside).
	Sent int64 `json:"sent"`
	// Requests counts the HTTP requests, retries of 503s included.
	Requests int64 `json:"requests"`
	// Accepted events were answered 2xx: they must reach every subscriber.
	Accepted int64 `json:"accepted"`
	// Refused503 counts the 503 answers (refusals, not losses).
	Refused503 int64 `json:"refused_503"`
	// Retries counts the requests repeated after a 503 (Config.Retry503).
	Retries int64 `json:"retries"`
	// OtherErrors counts events answered with another status or not sent
	// (connection errors).
	OtherErrors int64 `json:"other_errors"`
	// Unconfirmed events got no answer in time; their fate is unknown and
	// they are not checked.
	Unconfirmed  int64   `json:"unconfirmed"`
	SendS        float64 `json:"send_s"`
	AcceptedPerS float64 `json:"accepted_per_s"`
	// Delivered counts every delivery of a bench event (duplicates and
	// deliveries of refused events included).
	Delivered          int64 `json:"delivered"`
	ExpectedDeliveries int64 `json:"expected_deliveries"`
	// MissingDeliveries counts (accepted event, subscriber) pairs never
	// delivered; LostEvents the accepted events with any missing delivery.
	MissingDeliveries int64 `json:"missing_deliveries"`
	LostEvents        int64 `json:"lost_events"`
	Duplicates        int64 `json:"duplicates"`
	// RefusedDelivered counts events answered other than 2xx that reached
	// a subscriber anyway.
	RefusedDelivered int64 `json:"refused_delivered"`
	// DrainS is the time from the last trigger to the last delivery.
	DrainS float64 `json:"drain_s"`
	P50US  int64   `json:"p50_us"`
	P99US  int64   `json:"p99_us"`
	MaxUS  int64   `json:"max_us"`
	// CPUPerEventUS is the servers' CPU (all of Config.ServerPIDs) from the
	// first trigger to the last delivery, per accepted event.
	CPUPerEventUS float64 `json:"cpu_us_per_event,omitempty"`
}

// maxSeq bounds the sequence numbers a subscriber records.
const maxSeq = 1 << 28

// seqSet is a growable bit set of the sequence numbers one subscriber
// received.
type seqSet struct {
	mu    sync.Mutex
	words []uint64
	dup   int64
}

func (s *seqSet) mark(seq int64) {
	if seq < 0 || seq >= maxSeq {
		return
	}
	w, b := int(seq>>6), uint64(1)<<(seq&63)
	s.mu.Lock()
	if w >= len(s.words) {
		n := max(w+1, 2*len(s.words))
		nw := make([]uint64, n)
		copy(nw, s.words)
		s.words = nw
	}
	if s.words[w]&b != 0 {
		s.dup++
	} else {
		s.words[w] |= b
	}
	s.mu.Unlock()
}

// bitset is a plain bit set of sequence numbers.
type bitset []uint64

func (b bitset) set(i int64) { b[i>>6] |= 1 << (i & 63) }

func (b bitset) count() int64 {
	var n int
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return int64(n)
}

// crossCheck compares what the subscribers received with the accepted and
// the refused events: missing deliveries, events with any missing
// delivery, refused events delivered somewhere, duplicates.
func crossCheck(subs []*wsConn, accepted, refused bitset) (missing, lost, refusedDelivered, dups int64) {
	lostMask := make(bitset, len(accepted))
	refMask := make(bitset, len(refused))
	for _, c := range subs {
		c.seen.mu.Lock()
		for w, a := range accepted {
			var got uint64
			if w < len(c.seen.words) {
				got = c.seen.words[w]
			}
			m := a &^ got
			missing += int64(bits.OnesCount64(m))
			lostMask[w] |= m
			refMask[w] |= refused[w] & got
		}
		dups += c.seen.dup
		c.seen.mu.Unlock()
	}
	return missing, lostMask.count(), refMask.count(), dups
}

func crossChannel(tag string) string { return fmt.Sprintf("bench-%s-cross", tag) }

// Outcomes of one cross event.
const (
	outNone uint8 = iota
	outAccepted
	outRefused
	outOther
	outUnconfirmed
)

type crossOutcome struct {
	seq int64
	out uint8
}

// runCross runs the cross scenario: Connections subscribers of one channel
// on Addr, APIClients keep-alive HTTP clients triggering Events numbered
// events (or for Duration) on APIAddr at Rate per second (0 = unpaced),
// then a drain that ends when everything arrived or nothing arrived for
// Drain, then a per-subscriber check of every accepted event.
func (r *runner) runCross(ctx context.Context) error {
	cfg := &r.cfg
	r.res.Op = "event"
	r.res.APITarget = cfg.APIAddr()
	cs := &CrossStats{Mode: "unpaced", APIServer: cfg.APIAddr(), APIClients: cfg.APIClients}
	if cfg.Rate > 0 {
		cs.Mode = "paced"
	}
	r.res.Cross = cs
	cpuStart := selfCPU()
	rssStart := selfRSSKB()

	h, err := startLocal(ctx, shardSpec{Config: *cfg, Count: cfg.Connections, Tag: r.tag, ConnectRate: cfg.ConnectRate})
	if err != nil {
		return err
	}
	r.setCounters("connects", func() int64 {
		st := h.status()
		return st.Connected + st.Failed
	}, func() int64 { return h.status().Connected })
	t0 := time.Now()
	var rd shardReady
	select {
	case rd = <-h.ready():
	case <-ctx.Done():
		rd.Err = "timed out while connecting"
	}
	connectDur := time.Since(t0)
	st := h.status()
	r.res.ConnectS = round2(connectDur.Seconds())
	r.res.ConnectsPerSec = perSecond(st.Connected, connectDur)
	if st.Connected > 0 {
		r.res.ClientRSSConn = round1(float64((selfRSSKB()-rssStart)*1024) / float64(st.Connected))
	}
	var subs []*wsConn
	for i := range h.s.conns {
		if c := h.s.conns[i].Load(); c != nil {
			subs = append(subs, c)
		}
	}
	cs.Subscribers = int64(len(subs))

	var runErr error
	if rd.Err != "" {
		runErr = fmt.Errorf("%s", rd.Err)
	} else if len(subs) == 0 {
		runErr = fmt.Errorf("no subscriber connected")
	} else {
		runErr = r.probe(ctx, subs)
	}
	srv0, srv1 := r.serverSample(), ProcSample{}
	var outcomes []crossOutcome
	var httpHist *hdrhistogram.Histogram
	if runErr == nil {
		r.setCounters("deliveries", func() int64 { return h.status().Received }, nil)
		start := time.Now()
		outcomes, httpHist = r.crossSend(ctx, cs)
		sendDur := time.Since(start)
		cs.SendS = round2(sendDur.Seconds())
		r.res.DurationS = cs.SendS

		// The accepted and refused events, by sequence number.
		var top int64 = -1
		for _, o := range outcomes {
			top = max(top, o.seq)
		}
		words := int(top>>6) + 1
		accepted, refused := make(bitset, words), make(bitset, words)
		for _, o := range outcomes {
			switch o.out {
			case outAccepted:
				accepted.set(o.seq)
			case outRefused, outOther:
				refused.set(o.seq)
			}
		}
		cs.Accepted = accepted.count()
		cs.AcceptedPerS = perSecond(cs.Accepted, sendDur)
		cs.ExpectedDeliveries = cs.Accepted * cs.Subscribers

		// Drain: until every accepted event reached every subscriber, or
		// no delivery arrived for Drain (a slow server is not taken for a
		// lossy one). The servers' CPU is read at the last delivery.
		d0 := time.Now()
		srv1 = r.serverSample()
		lastRecv, lastProgress := h.status().Received, d0
		for ctx.Err() == nil {
			if missing, _, _, _ := crossCheck(subs, accepted, refused); missing == 0 {
				srv1 = r.serverSample()
				lastProgress = time.Now()
				break
			}
			now := time.Now()
			if recv := h.status().Received; recv != lastRecv {
				lastRecv, lastProgress = recv, now
				srv1 = r.serverSample()
			} else if now.Sub(lastProgress) >= cfg.Drain {
				break
			}
			sleepCtx(ctx, 50*time.Millisecond)
		}
		cs.DrainS = round2(lastProgress.Sub(d0).Seconds())

		fin := h.s.finish()
		cs.MissingDeliveries, cs.LostEvents, cs.RefusedDelivered, cs.Duplicates = crossCheck(subs, accepted, refused)
		r.collectCross(fin, cs)
	} else {
		r.collectCross(h.s.finish(), cs)
	}

	r.res.ClientCPUS = round2((selfCPU() - cpuStart).Seconds())
	r.res.Triggers = cs.Accepted
	r.res.TriggerErrors = cs.Refused503 + cs.OtherErrors + cs.Unconfirmed
	r.res.Unconfirmed = cs.Unconfirmed
	r.res.Events = cs.Sent
	r.res.Expected = cs.ExpectedDeliveries
	r.res.Received = cs.ExpectedDeliveries - cs.MissingDeliveries
	r.res.Ops = cs.Accepted
	r.res.OpsPerSec = cs.AcceptedPerS
	if httpHist != nil {
		r.res.TriggerLat = Summarize(httpHist)
	}
	cs.P50US, cs.P99US, cs.MaxUS = r.res.Latency.P50, r.res.Latency.P99, r.res.Latency.Max
	if r.res.Server != nil {
		r.res.Server.RSSBeforeKB, r.res.Server.RSSAfterKB = srv0.RSSKB, srv1.RSSKB
		r.serverCPU(srv0, srv1, cs.Accepted)
		cs.CPUPerEventUS = r.res.Server.CPUPerOpUS
	}
	if runErr == nil && cs.Accepted == 0 {
		runErr = fmt.Errorf("no trigger was accepted")
	}
	if runErr == nil && st.Connected < int64(cfg.Connections) {
		runErr = fmt.Errorf("%d of %d subscribers failed to connect", int64(cfg.Connections)-st.Connected, cfg.Connections)
	}
	return runErr
}

// collectCross fills the connection and delivery figures from the shard's
// final report.
func (r *runner) collectCross(fin shardResult, cs *CrossStats) {
	r.res.Connected = fin.Status.Connected
	r.res.Failed = fin.Status.Failed
	r.res.ClosedEarly = fin.Status.ClosedEarly
	r.res.ServerErrors = fin.Status.Errors
	r.res.Errors = appendErrs(r.res.Errors, fin.Errs...)
	cs.Delivered = fin.Status.Received
	connHist, delHist := newHist(), newHist()
	mergeSnapshot(connHist, fin.Connect)
	mergeSnapshot(delHist, fin.Deliveries)
	r.res.ConnectLatency = Summarize(connHist)
	r.res.Latency = Summarize(delHist)
	r.res.Dist = Distribution(delHist, 10)
}

// probe triggers probe events on the API node until every subscriber got
// one: then the subscribers' node receives what the API node publishes
// (cluster membership and Redis subscriptions settle after start-up).
func (r *runner) probe(ctx context.Context, subs []*wsConn) error {
	const limit = 15 * time.Second
	c := newAPIClient(&r.cfg, 0)
	defer c.close()
	body := triggerBody([]string{crossChannel(r.tag)}, probeDataB)
	deadline := time.Now().Add(limit)
	last := "no answer"
	for ctx.Err() == nil && time.Now().Before(deadline) {
		status, err := c.post(ctx, "events", body)
		switch {
		case err != nil:
			last = err.Error()
		default:
			last = fmt.Sprintf("HTTP %d", status)
		}
		// Wait up to 250 ms for this probe before sending another.
		wait := time.Now().Add(250 * time.Millisecond)
		for time.Now().Before(wait) {
			all := true
			for _, s := range subs {
				if !s.probed.Load() && !s.closed.Load() {
					all = false
					break
				}
			}
			if all {
				return nil
			}
			if !sleepCtx(ctx, 5*time.Millisecond) {
				break
			}
		}
	}
	return fmt.Errorf("probe events triggered on %s did not reach the subscribers on %s within %s (last answer: %s)",
		r.cfg.APIAddr(), r.cfg.Addr(), limit, last)
}

// crossSend triggers the numbered events with APIClients keep-alive
// clients and returns each event's outcome and the HTTP latencies.
func (r *runner) crossSend(ctx context.Context, cs *CrossStats) ([]crossOutcome, *hdrhistogram.Histogram) {
	cfg := &r.cfg
	channel := []string{crossChannel(r.tag)}
	var next, requests, refused503, retries atomic.Int64
	var interval float64 // ns between events when paced
	if cfg.Rate > 0 {
		interval = float64(time.Second) / cfg.Rate
	}
	start := time.Now()
	end := start.Add(cfg.Duration)
	results := make([][]crossOutcome, cfg.APIClients)
	hists := make([]*hdrhistogram.Histogram, cfg.APIClients)
	var errMu sync.Mutex
	var wg sync.WaitGroup
	for k := range cfg.APIClients {
		hists[k] = newHist()
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			c := newAPIClient(cfg, k)
			defer c.close()
			var out []crossOutcome
			defer func() { results[k] = out }()
			for {
				seq := next.Add(1) - 1
				if cfg.Events > 0 && seq >= int64(cfg.Events) {
					return
				}
				if interval > 0 && !sleepUntil(ctx, start.Add(time.Duration(float64(seq)*interval))) {
					return
				}
				if (cfg.Events == 0 && !time.Now().Before(end)) || ctx.Err() != nil {
					return
				}
				o := crossOutcome{seq: seq}
				for {
					body := triggerBody(channel, eventDataSeq(time.Now(), seq, cfg.Payload))
					t0 := time.Now()
					status, err := c.post(ctx, "events", body)
					recordLatency(hists[k], time.Since(t0))
					requests.Add(1)
					if err == nil && status == 503 {
						refused503.Add(1)
						o.out = outRefused
						if cfg.Retry503 {
							wait := c.retryAfter
							if wait < 0 {
								wait = time.Second
							}
							if sleepCtx(ctx, min(wait, 10*time.Second)) {
								retries.Add(1)
								continue
							}
						}
						break
					}
					if err == nil {
						err = statusErr(status)
					}
					switch {
					case err == nil:
						o.out = outAccepted
					case status == 0 && os.IsTimeout(err):
						o.out = outUnconfirmed
					default:
						o.out = outOther
					}
					if err != nil {
						errMu.Lock()
						r.res.Errors = appendErrs(r.res.Errors, "trigger: "+err.Error())
						errMu.Unlock()
						if status == 0 {
							sleepCtx(ctx, 10*time.Millisecond)
						}
					}
					break
				}
				out = append(out, o)
			}
		}(k)
	}
	wg.Wait()
	var all []crossOutcome
	for _, o := range results {
		all = append(all, o...)
	}
	for _, o := range all {
		switch o.out {
		case outOther:
			cs.OtherErrors++
		case outUnconfirmed:
			cs.Unconfirmed++
		}
	}
	cs.Sent = int64(len(all))
	cs.Requests = requests.Load()
	cs.Refused503 = refused503.Load()
	cs.Retries = retries.Load()
	hist := newHist()
	for _, h := range hists {
		hist.Merge(h)
	}
	return all, hist
}
