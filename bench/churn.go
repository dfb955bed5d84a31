package bench

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/time/rate"
)

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
