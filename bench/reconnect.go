package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// --reconnect (fanout): a connection the server closes once it was
// subscribed (during the ramp as well, so that a restart need not wait for
// every worker to finish its ramp) and before the end of the run is
// dialed, upgraded and subscribed again, then handed back to the runtime,
// after a capped exponential backoff
// (reconnectBase doubling up to reconnectMax, each wait drawn at random in
// [0.5, 1.5) of it), at most --connect-concurrency attempts at a time per
// process (what a restarted node's clients, each reconnecting on its own,
// amount to), until it succeeds or the run ends. Every close reconnects but a
// close frame with a code in 4000-4099 (Pusher's "do not reconnect"): the
// 4200 of a draining node, other close codes and a plain EOF or reset
// alike.
//
// Every event carries a sequence number and its send time, and each
// connection slot keeps the set of numbers it received across its
// reconnects. A slot never dropped must receive every accepted event: what
// it misses is lost, and that is the figure that must stay 0. A dropped
// slot records a gap per drop, from gapSlack before the close to the
// moment it was subscribed again (open-ended while it is down): an event
// it misses that was still being delivered during a gap (sent before the
// gap's end, and received by some slot of the process after its start) is
// reported apart; one it missed while connected for the whole of the
// event's delivery is lost as well. At a million connections one
// broadcast takes up to a minute to reach the last of them, so a slot
// dropped 30 s after an event was sent may well have been closed before
// the event reached it. Gaps are times, not sequence numbers, because
// events reach the nodes of a cluster in different orders. An event no
// connection of the process received has no known send time: a dropped
// slot is excused it only while still down.
const (
	reconnectBase = 100 * time.Millisecond
	reconnectMax  = 5 * time.Second
	// maxTrackSeq bounds the sequence numbers a slot records.
	maxTrackSeq = 1 << 20
	// gapSlack is how long before a close a missed event counts in the
	// gap: an event in flight to the node (up to this delivery latency)
	// may be cut off by the close.
	gapSlack = 5 * time.Second
)

// closeError is a close frame received from the server.
type closeError struct {
	code   int
	reason string
}

func (e *closeError) Error() string {
	if e.code == 0 {
		return "close frame"
	}
	return fmt.Sprintf("close frame %d %s", e.code, e.reason)
}

// closeFrameErr returns the error of a close frame with payload p.
func closeFrameErr(p []byte) error {
	if len(p) < 2 {
		return &closeError{}
	}
	return &closeError{code: int(p[0])<<8 | int(p[1]), reason: string(p[2:min(len(p), 125)])}
}

// dropKey names why a connection closed, for Reconnect.DropsByCode: the
// code of the server's close frame, "eof" for a close without one, "error"
// for another read error. code is the close code, 0 without one.
func dropKey(err error) (key string, code int) {
	var ce *closeError
	switch {
	case errors.As(err, &ce):
		if ce.code == 0 {
			return "close", 0
		}
		return strconv.Itoa(ce.code), ce.code
	case err == nil, errors.Is(err, io.EOF):
		return "eof", 0
	default:
		return "error", 0
	}
}

// reconnectable reports whether a close with code is re-opened.
func reconnectable(code int) bool { return code < 4000 || code > 4099 }

// timeGap is when a dropped slot was closed: from the close (Unix
// nanoseconds) to its resubscription (0 while down).
type timeGap struct{ from, to int64 }

// holds reports whether an event sent at sent and last received by a slot
// of the process at last may be missed in g: it was still in flight when g
// began (or gapSlack before) and sent before g ended.
func (g timeGap) holds(sent, last int64) bool {
	return max(sent, last) >= g.from-int64(gapSlack) && (g.to == 0 || sent <= g.to)
}

// connTrack is what one connection slot received across its reconnects.
// Goroutine-safe.
type connTrack struct {
	mu    sync.Mutex
	top   int64 // highest sequence number received, -1 for none
	words []uint64
	gaps  []timeGap // one per drop; a drop while down extends the open one
	drops int32
	dups  int64
}

func newConnTrack() *connTrack { return &connTrack{top: -1} }

// mark records the event seq; the first one after a drop closes its gap.
func (t *connTrack) mark(seq int64) {
	if seq < 0 || seq >= maxTrackSeq {
		return
	}
	w, b := int(seq>>6), uint64(1)<<(seq&63)
	t.mu.Lock()
	defer t.mu.Unlock()
	if w >= len(t.words) {
		nw := make([]uint64, max(w+1, 2*len(t.words)))
		copy(nw, t.words)
		t.words = nw
	}
	if t.words[w]&b != 0 {
		t.dups++
		return
	}
	t.words[w] |= b
	t.top = max(t.top, seq)
}

// drop records that the slot's connection closed at now (Unix ns).
func (t *connTrack) drop(now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.drops++
	if n := len(t.gaps); n > 0 && t.gaps[n-1].to == 0 {
		return // still down
	}
	t.gaps = append(t.gaps, timeGap{from: now})
}

// back records that the slot was subscribed again at now (Unix ns).
func (t *connTrack) back(now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := len(t.gaps); n > 0 && t.gaps[n-1].to == 0 {
		t.gaps[n-1].to = now
	}
}

// down reports whether the slot is closed now. Call with t.mu held.
func (t *connTrack) down() bool { return len(t.gaps) > 0 && t.gaps[len(t.gaps)-1].to == 0 }

// has reports whether seq was received. Call with t.mu held.
func (t *connTrack) has(seq int64) bool {
	w := int(seq >> 6)
	return w < len(t.words) && t.words[w]&(1<<(seq&63)) != 0
}

// excused reports whether the slot may have missed an event sent at sent
// (0: unknown) and last received by a slot of the process at last in one
// of its gaps. Call with t.mu held.
func (t *connTrack) excused(sent, last int64) bool {
	if sent == 0 {
		return t.down()
	}
	for _, g := range t.gaps {
		if g.holds(sent, last) {
			return true
		}
	}
	return false
}

// reconnector is a shard's state for --reconnect. Goroutine-safe.
type reconnector struct {
	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	wg     sync.WaitGroup // reconnect goroutines

	mu      sync.Mutex
	tracks  []*connTrack // by local slot; nil for a slot that never connected
	byCode  map[string]int64
	hist    *hdrhistogram.Histogram // drop to resubscribed, µs
	lastErr string
	// sent maps the sequence numbers received to their send times, recv
	// to the latest time a slot received them (*atomic.Int64, Unix ns).
	sent, recv sync.Map

	drops, down, reconnects, failed atomic.Int64
}

func newReconnector(slots, concurrency int) *reconnector {
	r := &reconnector{
		sem:    make(chan struct{}, max(1, concurrency)),
		tracks: make([]*connTrack, slots),
		byCode: map[string]int64{},
		hist:   newHist(),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r
}

// track returns the accounting of slot i, created on its first connect.
func (r *reconnector) track(i int) *connTrack {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tracks[i] == nil {
		r.tracks[i] = newConnTrack()
	}
	return r.tracks[i]
}

// seen records the send time of event seq (Unix ns), once, and that a
// slot received it at recv.
func (r *reconnector) seen(seq, sent, recv int64) {
	if _, ok := r.sent.Load(seq); !ok {
		r.sent.Store(seq, sent)
	}
	v, ok := r.recv.Load(seq)
	if !ok {
		v, _ = r.recv.LoadOrStore(seq, new(atomic.Int64))
	}
	last := v.(*atomic.Int64)
	for {
		old := last.Load()
		if recv <= old || last.CompareAndSwap(old, recv) {
			return
		}
	}
}

// lastRecv returns the latest time a slot received event seq, 0 if none.
func (r *reconnector) lastRecv(seq int64) int64 {
	if v, ok := r.recv.Load(seq); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// sentAt returns the send time of event seq, 0 if unknown.
func (r *reconnector) sentAt(seq int64) int64 {
	if v, ok := r.sent.Load(seq); ok {
		return v.(int64)
	}
	return 0
}

// untrack forgets slot i, whose first connection failed after all.
func (r *reconnector) untrack(i int) {
	r.mu.Lock()
	r.tracks[i] = nil
	r.mu.Unlock()
}

// stopAll sets finishing, so that no reconnect starts any more, stops the
// reconnects under way and waits for them.
func (r *reconnector) stopAll(finishing *atomic.Bool) {
	r.mu.Lock()
	finishing.Store(true)
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// dropped records that the server closed wc and starts re-opening it when
// the ramp is over and the close allows it. It returns false when wc stays
// closed (the caller counts it closed early).
func (s *shard) dropped(wc *wsConn, err error) bool {
	r := s.rec
	if wc.track == nil {
		return false
	}
	key, code := dropKey(err)
	if key == "error" {
		s.addErr("dropped: " + err.Error())
	}
	again := reconnectable(code)
	r.mu.Lock()
	if s.finishing.Load() {
		r.mu.Unlock()
		return true
	}
	r.byCode[key]++
	r.drops.Add(1)
	r.down.Add(1)
	wc.track.drop(time.Now().UnixNano())
	if again {
		r.wg.Add(1)
	}
	r.mu.Unlock()
	if again {
		go s.reconnect(wc.idx-s.spec.First, time.Now())
	}
	return again
}

// reconnect re-opens slot i, dropped at since, until it succeeds or the
// run ends.
func (s *shard) reconnect(i int, since time.Time) {
	r := s.rec
	defer r.wg.Done()
	backoff := reconnectBase
	var buf []byte
	// A slot's connections alternate between its two source ports, so that
	// a reconnect does not reuse the four-tuple of the connection that just
	// closed: under load the server's end of it can linger for seconds
	// (its node draining), and a SYN that meets it is answered with a
	// challenge ACK and reset instead of a SYN-ACK.
	r.mu.Lock()
	tr := r.tracks[i]
	r.mu.Unlock()
	alt := false
	if tr != nil {
		tr.mu.Lock()
		alt = tr.drops%2 == 1
		tr.mu.Unlock()
	}
	for {
		wait := backoff/2 + rand.N(backoff)
		if !sleepCtx(r.ctx, wait) {
			return
		}
		select {
		case r.sem <- struct{}{}:
		case <-r.ctx.Done():
			return
		}
		if buf == nil {
			buf = make([]byte, 2048)
		}
		err := s.open(r.ctx, i, buf, true, alt)
		<-r.sem
		if err == nil {
			r.track(i).back(time.Now().UnixNano())
			r.reconnects.Add(1)
			r.down.Add(-1)
			r.mu.Lock()
			recordLatency(r.hist, time.Since(since))
			r.mu.Unlock()
			return
		}
		if r.ctx.Err() != nil {
			return
		}
		r.failed.Add(1)
		r.mu.Lock()
		r.lastErr = err.Error()
		r.mu.Unlock()
		backoff = min(2*backoff, reconnectMax)
	}
}

// reconnectResult is a shard's accounting of --reconnect. The per-event
// slices are indexed by sequence number, up to the highest any slot of the
// shard received: an event past them reached no slot of the shard.
type reconnectResult struct {
	// Undropped and Dropped count the slots that connected, by whether
	// the server ever closed them.
	Undropped int64 `json:"undropped"`
	Dropped   int64 `json:"dropped"`
	// Drops counts the closes, ByCode by dropKey.
	Drops  int64            `json:"drops"`
	ByCode map[string]int64 `json:"by_code,omitempty"`
	// Reconnects succeeded; Failed attempts; Down slots at the end.
	Reconnects int64                  `json:"reconnects"`
	Failed     int64                  `json:"failed"`
	Down       int64                  `json:"down"`
	Time       *hdrhistogram.Snapshot `json:"time"`
	LastErr    string                 `json:"last_err,omitempty"`
	Dups       int64                  `json:"dups"`
	// UndroppedGot[q] and DroppedGot[q] count the slots that received
	// event q; GapMissed[q] the dropped slots that missed it inside a gap.
	UndroppedGot []int64 `json:"undropped_got"`
	DroppedGot   []int64 `json:"dropped_got"`
	GapMissed    []int64 `json:"gap_missed"`
	// DownDropped counts the dropped slots still down at the end: every
	// event past the slices is inside their gap.
	DownDropped int64 `json:"down_dropped"`
}

// result digests the slots. Call it once the connections are closed.
func (r *reconnector) result() *reconnectResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &reconnectResult{
		ByCode: maps.Clone(r.byCode), Drops: r.drops.Load(), Reconnects: r.reconnects.Load(),
		Failed: r.failed.Load(), Down: r.down.Load(), Time: r.hist.Export(), LastErr: r.lastErr,
	}
	n := int64(0)
	for _, t := range r.tracks {
		if t != nil {
			t.mu.Lock()
			n = max(n, t.top+1)
			t.mu.Unlock()
		}
	}
	res.UndroppedGot, res.DroppedGot, res.GapMissed = make([]int64, n), make([]int64, n), make([]int64, n)
	sent, last := make([]int64, n), make([]int64, n)
	for q := range n {
		sent[q], last[q] = r.sentAt(q), r.lastRecv(q)
	}
	for _, t := range r.tracks {
		if t == nil {
			continue
		}
		t.mu.Lock()
		res.Dups += t.dups
		if len(t.gaps) == 0 {
			res.Undropped++
			for q := range n {
				if t.has(q) {
					res.UndroppedGot[q]++
				}
			}
		} else {
			res.Dropped++
			for q := range n {
				if t.has(q) {
					res.DroppedGot[q]++
				} else if t.excused(sent[q], last[q]) {
					res.GapMissed[q]++
				}
			}
			if t.down() {
				res.DownDropped++
			}
		}
		t.mu.Unlock()
	}
	return res
}

// owing counts the deliveries of the events seqs that the slots
// connected now still await: each slot that is not down, for each event it
// has not received and did not miss in one of its gaps. A slot that is down
// owes nothing until it is back: what it misses meanwhile is in its gap.
// 0 means every connected slot has everything it can get. It costs one
// lock per slot; call it a few times a second at most.
func (r *reconnector) owing(seqs []int64) int64 {
	sent, last := make([]int64, len(seqs)), make([]int64, len(seqs))
	for i, q := range seqs {
		sent[i], last[i] = r.sentAt(q), r.lastRecv(q)
	}
	r.mu.Lock()
	tracks := append([]*connTrack(nil), r.tracks...)
	r.mu.Unlock()
	var n int64
	for _, t := range tracks {
		if t == nil {
			continue
		}
		t.mu.Lock()
		if !t.down() {
			for i, q := range seqs {
				if !t.has(q) && !t.excused(sent[i], last[i]) {
					n++
				}
			}
		}
		t.mu.Unlock()
	}
	return n
}

// ReconnectStats are the figures of --reconnect.
type ReconnectStats struct {
	// Undropped connections were never closed by the server: each must
	// receive every accepted event. UndroppedLost counts the deliveries
	// they missed (the figure that must be 0), UndroppedLostEvents the
	// events some of them missed.
	Undropped           int64 `json:"undropped_connections"`
	UndroppedExpected   int64 `json:"undropped_expected"`
	UndroppedReceived   int64 `json:"undropped_received"`
	UndroppedLost       int64 `json:"undropped_lost"`
	UndroppedLostEvents int64 `json:"undropped_lost_events"`
	// Dropped connections were closed by the server at least once; Drops
	// counts the closes, by close code ("eof": no close frame).
	Dropped     int64            `json:"dropped_connections"`
	Drops       int64            `json:"drops"`
	DropsByCode map[string]int64 `json:"drops_by_code,omitempty"`
	// Reconnects succeeded; ReconnectFailures are failed attempts (each
	// retried); DownAtEnd connections were still closed at the end.
	Reconnects        int64   `json:"reconnects"`
	ReconnectFailures int64   `json:"reconnect_failures"`
	DownAtEnd         int64   `json:"down_at_end"`
	ReconnectTime     Summary `json:"reconnect_time,omitzero"`
	LastError         string  `json:"last_reconnect_error,omitempty"`
	// DroppedReceived counts the deliveries of accepted events to dropped
	// connections, MissedInGaps those they missed while closed (between
	// the last event before a drop and the first after its reconnect), and
	// DroppedLost those they missed while connected.
	DroppedReceived int64 `json:"dropped_received"`
	MissedInGaps    int64 `json:"missed_in_gaps"`
	DroppedLost     int64 `json:"dropped_lost"`
	Duplicates      int64 `json:"duplicates"`
}

// combineReconnect adds up the shards' accounting against the accepted
// events (accepted[q] for sequence number q). expected is every delivery
// due outside the gaps, received those that arrived (each connection and
// event once): their difference is UndroppedLost + DroppedLost.
func combineReconnect(parts []*reconnectResult, accepted []bool) (st *ReconnectStats, expected, received int64) {
	st = &ReconnectStats{DropsByCode: map[string]int64{}}
	hist := newHist()
	lostPer := make([]int64, len(accepted))
	at := func(s []int64, q int) int64 {
		if q < len(s) {
			return s[q]
		}
		return 0
	}
	var events int64
	for _, ok := range accepted {
		if ok {
			events++
		}
	}
	for _, p := range parts {
		if p == nil {
			continue
		}
		st.Undropped += p.Undropped
		st.Dropped += p.Dropped
		st.Drops += p.Drops
		for k, v := range p.ByCode {
			st.DropsByCode[k] += v
		}
		st.Reconnects += p.Reconnects
		st.ReconnectFailures += p.Failed
		st.DownAtEnd += p.Down
		st.Duplicates += p.Dups
		if p.LastErr != "" {
			st.LastError = p.LastErr
		}
		mergeSnapshot(hist, p.Time)
		for q, ok := range accepted {
			if !ok {
				continue
			}
			ug, dg := at(p.UndroppedGot, q), at(p.DroppedGot, q)
			gm := at(p.GapMissed, q)
			if q >= len(p.GapMissed) {
				gm = p.DownDropped
			}
			lostPer[q] += p.Undropped - ug
			st.UndroppedReceived += ug
			st.DroppedReceived += dg
			st.MissedInGaps += gm
			st.DroppedLost += p.Dropped - dg - gm
		}
	}
	st.UndroppedExpected = st.Undropped * events
	for _, n := range lostPer {
		st.UndroppedLost += n
		if n > 0 {
			st.UndroppedLostEvents++
		}
	}
	if len(st.DropsByCode) == 0 {
		st.DropsByCode = nil
	}
	st.ReconnectTime = Summarize(hist)
	expected = (st.Undropped+st.Dropped)*events - st.MissedInGaps
	received = st.UndroppedReceived + st.DroppedReceived
	return st, expected, received
}

// checkReconnect validates --reconnect against the scenario.
func (c *Config) checkReconnect() error {
	if c.Reconnect && c.Scenario != ScenarioFanout {
		return fmt.Errorf("--reconnect: only the fanout scenario reconnects (not %s)", c.Scenario)
	}
	return nil
}

// drainReconnect is drain for --reconnect, where the dropped connections
// make fewer deliveries than expected: it ends when every expected
// delivery arrived, or when every shard reports that its connected slots
// owe nothing (a slot still down owes nothing: what it misses is in its
// gap), or when no connection is down and no delivery came for a second,
// or after Drain.
func (r *runner) drainReconnect(ctx context.Context, handles []shardHandle, total func() shardStatus) {
	deadline := time.Now().Add(r.cfg.Drain)
	var seqs []int64
	for q, ok := range r.accepted {
		if ok {
			seqs = append(seqs, int64(q))
		}
	}
	for _, h := range handles {
		h.settle(seqs)
	}
	last, since := int64(-1), time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st := total()
		if st.Received >= r.res.Expected {
			r.res.DrainEnd = "complete"
			return
		}
		if st.Settled == int64(len(handles)) && st.Owing == 0 {
			r.res.DrainEnd = "owed nothing"
			return
		}
		if st.Received != last {
			last, since = st.Received, time.Now()
		} else if st.Down == 0 && time.Since(since) >= time.Second {
			r.res.DrainEnd = "quiet"
			return
		}
		sleepCtx(ctx, 20*time.Millisecond)
	}
	r.res.DrainEnd = drainTimedOut(ctx)
}

// drainTimedOut is DrainEnd for a drain that ran out of time: "timeout"
// when --drain passed, "cancelled" when the run's context ended first.
func drainTimedOut(ctx context.Context) string {
	if ctx.Err() != nil {
		return "cancelled"
	}
	return "timeout"
}

// reconnectRows are the table rows of res.Reconnect.
func reconnectRows(c *ReconnectStats) [][2]string {
	codes := make([]string, 0, len(c.DropsByCode))
	for k := range c.DropsByCode {
		codes = append(codes, k)
	}
	sort.Strings(codes)
	for i, k := range codes {
		codes[i] = fmt.Sprintf("%s x %d", k, c.DropsByCode[k])
	}
	by := ""
	if len(codes) > 0 {
		by = " (" + strings.Join(codes, ", ") + ")"
	}
	rows := [][2]string{
		{"undropped connections", fmt.Sprintf("%d: %d of %d deliveries, %d lost (%d events)",
			c.Undropped, c.UndroppedReceived, c.UndroppedExpected, c.UndroppedLost, c.UndroppedLostEvents)},
		{"dropped connections", fmt.Sprintf("%d, %d drops%s, %d reconnects, %d failed attempts, %d down at the end",
			c.Dropped, c.Drops, by, c.Reconnects, c.ReconnectFailures, c.DownAtEnd)},
		{"dropped: deliveries", fmt.Sprintf("%d received, %d missed in their gaps, %d lost while connected",
			c.DroppedReceived, c.MissedInGaps, c.DroppedLost)},
	}
	if c.ReconnectTime.Count > 0 {
		rows = append(rows, [2]string{"time to reconnect", fmt.Sprintf("p50 %s  p99 %s  max %s  (n=%d)",
			fmtUS(c.ReconnectTime.P50), fmtUS(c.ReconnectTime.P99), fmtUS(c.ReconnectTime.Max), c.ReconnectTime.Count)})
	}
	if c.Duplicates > 0 {
		rows = append(rows, [2]string{"duplicate deliveries", fmt.Sprint(c.Duplicates)})
	}
	if c.LastError != "" {
		rows = append(rows, [2]string{"last reconnect error", c.LastError})
	}
	return rows
}

// accept records that the event of sequence number seq is due (its
// trigger was accepted or went unanswered); a negative seq is ignored.
// Called under trigger's lock.
func (r *runner) accept(seq int64) {
	if seq < 0 || seq >= maxTrackSeq {
		return
	}
	for int64(len(r.accepted)) <= seq {
		r.accepted = append(r.accepted, false)
	}
	r.accepted[seq] = true
}

// reconnectCode reports whether msg is a pusher:error whose code, 4100 to
// 4299, asks the client to reconnect.
func reconnectCode(msg []byte) bool {
	if !bytes.Contains(msg, []byte(`"pusher:error"`)) {
		return false
	}
	i := bytes.Index(msg, []byte(`code`))
	if i < 0 {
		return false
	}
	j := i + len("code")
	for k := 0; k < 4 && j < len(msg) && (msg[j] < '0' || msg[j] > '9'); k++ {
		j++ // the quotes and colon between, escaped or not
	}
	code := 0
	for k := 0; k < 5 && j < len(msg) && msg[j] >= '0' && msg[j] <= '9'; k++ {
		code = code*10 + int(msg[j]-'0')
		j++
	}
	return code >= 4100 && code <= 4299
}
