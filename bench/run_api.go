package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/time/rate"
)

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
