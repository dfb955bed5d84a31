package bench

import (
	"fmt"
	"io"
	"os"
	"time"
)

// setCounters tells the progress sampler what to count: label names it, op is the
// scenario's operations so far, conn the open connections (nil keeps the
// previous one).
func (r *runner) setCounters(label string, op, conn func() int64) {
	r.cntMu.Lock()
	r.opLabel = label
	r.opCount = op
	if conn != nil {
		r.connCount = conn
	}
	r.gen++
	r.cntMu.Unlock()
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress samples the counters every second into r.series and shows
// progress: a line redrawn in place on a terminal stdout, otherwise a line
// to stderr every 5 s. The returned function stops it.
func (r *runner) progress(stdout io.Writer) func() {
	tty := false
	show := r.cfg.Progress >= 0
	switch {
	case r.cfg.Progress > 0:
		tty = isTerminal(stdout)
	case r.cfg.Progress == 0:
		tty = !r.cfg.JSON && isTerminal(stdout)
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var prevOps int64
		prevGen := -1
		prevT := r.start
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprint(stdout, "\r\033[K")
				}
				return
			case now := <-t.C:
				r.cntMu.Lock()
				op, conn, gen := r.opCount, r.connCount, r.gen
				r.cntMu.Unlock()
				var ops, conns int64
				if op != nil {
					ops = op()
				}
				if conn != nil {
					conns = conn()
				}
				rate := 0.0
				if gen == prevGen {
					rate = round1(float64(ops-prevOps) / now.Sub(prevT).Seconds())
				}
				prevOps, prevGen, prevT = ops, gen, now
				el := now.Sub(r.start).Seconds()
				r.series = append(r.series, Point{T: round1(el), Connected: conns, Rate: rate})
				if !show {
					continue
				}
				line := fmt.Sprintf("[%5.0fs] %s: connected %d, %s %d (%.0f/s)", el, r.cfg.Scenario, conns, r.opName(), ops, rate)
				if tty {
					fmt.Fprintf(stdout, "\r\033[K%s", line)
				} else if len(r.series)%5 == 0 {
					fmt.Fprintln(r.stderr, line)
				}
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// opName is what the progress line counts.
func (r *runner) opName() string {
	r.cntMu.Lock()
	defer r.cntMu.Unlock()
	return r.opLabel
}
