package bench

import (
	"math"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram ranges: latencies are recorded in microseconds from 1 µs to
// 60 s with 3 significant figures (about 140 KB per histogram).
const (
	histMin     = 1
	histMax     = 60_000_000
	histSigFigs = 3
)

// newHist returns an empty latency histogram in microseconds. It is not
// goroutine-safe: keep one per event loop (or lock it) and merge.
func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMin, histMax, histSigFigs)
}

// recordLatency records d (clamped into the histogram's range) in h.
func recordLatency(h *hdrhistogram.Histogram, d time.Duration) {
	us := d.Microseconds()
	if us < histMin {
		us = histMin
	} else if us > histMax {
		us = histMax
	}
	_ = h.RecordValue(us)
}

// Summary is the digest of a latency histogram, in microseconds.
type Summary struct {
	Count int64   `json:"count"`
	Min   int64   `json:"min_us"`
	Mean  float64 `json:"mean_us"`
	P50   int64   `json:"p50_us"`
	P90   int64   `json:"p90_us"`
	P99   int64   `json:"p99_us"`
	P999  int64   `json:"p999_us"`
	Max   int64   `json:"max_us"`
}

// Summarize digests h. An empty histogram gives a zero Summary.
func Summarize(h *hdrhistogram.Histogram) Summary {
	if h == nil || h.TotalCount() == 0 {
		return Summary{}
	}
	return Summary{
		Count: h.TotalCount(),
		Min:   h.Min(),
		Mean:  math.Round(h.Mean()*10) / 10,
		P50:   h.ValueAtQuantile(50),
		P90:   h.ValueAtQuantile(90),
		P99:   h.ValueAtQuantile(99),
		P999:  h.ValueAtQuantile(99.9),
		Max:   h.Max(),
	}
}

// Bucket is one bar of a latency distribution: Count values in [From, To)
// microseconds.
type Bucket struct {
	From  int64 `json:"from_us"`
	To    int64 `json:"to_us"`
	Count int64 `json:"count"`
}

// Distribution groups the values of h into log-spaced buckets (perDecade
// per power of ten), dropping empty buckets before the first and after
// the last value.
func Distribution(h *hdrhistogram.Histogram, perDecade int) []Bucket {
	if h == nil || h.TotalCount() == 0 || perDecade <= 0 {
		return nil
	}
	step := math.Pow(10, 1/float64(perDecade))
	var edges []int64
	for e := 1.0; e <= float64(histMax)*step; e *= step {
		v := int64(math.Round(e))
		if len(edges) == 0 || v > edges[len(edges)-1] {
			edges = append(edges, v)
		}
	}
	counts := make([]int64, len(edges))
	for _, bar := range h.Distribution() {
		if bar.Count == 0 {
			continue
		}
		// Place the bar by its midpoint.
		mid := (bar.From + bar.To) / 2
		i := 0
		for i+1 < len(edges) && edges[i+1] <= mid {
			i++
		}
		counts[i] += bar.Count
	}
	first, last := -1, -1
	for i, c := range counts {
		if c > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return nil
	}
	out := make([]Bucket, 0, last-first+1)
	for i := first; i <= last; i++ {
		to := edges[i] + 1
		if i+1 < len(edges) {
			to = edges[i+1]
		}
		out = append(out, Bucket{From: edges[i], To: to, Count: counts[i]})
	}
	return out
}

// mergeSnapshot adds an exported histogram into dst.
func mergeSnapshot(dst *hdrhistogram.Histogram, s *hdrhistogram.Snapshot) {
	if s == nil {
		return
	}
	dst.Merge(hdrhistogram.Import(s))
}

// perSecond returns n/d in units per second, 0 for d <= 0.
func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return round1(float64(n) / d.Seconds())
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }
func round2(f float64) float64 { return math.Round(f*100) / 100 }
