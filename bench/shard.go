package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/reverbgo/reverb/pusher"
	"github.com/reverbgo/reverb/wsproto"
	"golang.org/x/time/rate"
)

// shardSpec is the part of a run one process holds: connections First ..
// First+Count-1 of the run.
type shardSpec struct {
	Config Config `json:"config"`
	First  int    `json:"first"`
	Count  int    `json:"count"`
	Tag    string `json:"tag"`
	// ConnectRate is this shard's share of the connection ramp rate.
	ConnectRate float64 `json:"connect_rate"`
}

// shardStatus is a shard's running counters.
type shardStatus struct {
	Connected   int64 `json:"connected"`
	Failed      int64 `json:"failed"`
	ClosedEarly int64 `json:"closed_early"`
	Received    int64 `json:"received"`
	WireBytes   int64 `json:"wire_bytes"`
	Sent        int64 `json:"sent"`
	Expected    int64 `json:"expected"`
	Errors      int64 `json:"errors"`
	// Drops, Down and Reconnects are the figures of --reconnect: server
	// closes of subscribed connections, connections down now, successful
	// reconnects.
	Drops      int64 `json:"drops,omitempty"`
	Down       int64 `json:"down,omitempty"`
	Reconnects int64 `json:"reconnects,omitempty"`
	// Settled counts the shards told which events were accepted (see
	// shard.settle), Owing the deliveries their connected slots still
	// await (reconnector.owing).
	Settled int64 `json:"settled,omitempty"`
	Owing   int64 `json:"owing,omitempty"`
}

func (s *shardStatus) add(o shardStatus) {
	s.Connected += o.Connected
	s.Failed += o.Failed
	s.ClosedEarly += o.ClosedEarly
	s.Received += o.Received
	s.WireBytes += o.WireBytes
	s.Sent += o.Sent
	s.Expected += o.Expected
	s.Errors += o.Errors
	s.Drops += o.Drops
	s.Down += o.Down
	s.Reconnects += o.Reconnects
	s.Settled += o.Settled
	s.Owing += o.Owing
}

// shardReady is what a shard reports when its connections are up.
type shardReady struct {
	// PerChannel counts the connected subscribers of each channel index.
	PerChannel   []int64 `json:"per_channel"`
	RSSStartKB   int64   `json:"rss_start_kb"`
	RSSReadyKB   int64   `json:"rss_ready_kb"`
	CPUConnectNS int64   `json:"cpu_connect_ns"`
	Err          string  `json:"err,omitempty"`
	// Status is the shard's status at the ramp's end (a worker's periodic
	// status may be older).
	Status shardStatus `json:"status"`
}

// shardResult is a shard's final report.
type shardResult struct {
	Status     shardStatus            `json:"status"`
	Connect    *hdrhistogram.Snapshot `json:"connect"`
	Deliveries *hdrhistogram.Snapshot `json:"deliveries"`
	CPUNS      int64                  `json:"cpu_ns"`
	Errs       []string               `json:"errs,omitempty"`
	// Reconnect has the per-connection accounting of --reconnect.
	Reconnect *reconnectResult `json:"reconnect,omitempty"`
}

// shard holds WebSocket connections in this process.
type shard struct {
	gnet.BuiltinEventEngine
	spec shardSpec
	cfg  *Config
	d    *dialer

	// conns holds the current connection of each slot; a reconnect
	// replaces it.
	conns    []atomic.Pointer[wsConn]
	connHist *hdrhistogram.Histogram
	connMu   sync.Mutex
	perChan  []atomic.Int64

	connected, failed, closedEarly atomic.Int64
	sent, expected                 atomic.Int64
	finishing                      atomic.Bool
	// ready is set once the ramp is over: from then on --reconnect
	// re-opens what the server closes.
	ready atomic.Bool
	// rec is the state of --reconnect; nil without it.
	rec *reconnector
	// settled holds the sequence numbers of the accepted events once the
	// coordinator drains (settle); status reports what is owed of them.
	settled atomic.Pointer[[]int64]

	errMu sync.Mutex
	errs  []string

	cli    *gnet.Client
	loopMu sync.Mutex
	loops  map[gnet.EventLoop]*loopStats
	gstats []*loopStats

	stop     chan struct{}
	stopSend chan struct{}
	sendDone chan struct{} // closed when the client-event sender has returned
	bg       sync.WaitGroup
	rssStart int64
	cpuStart time.Duration
}

// channelName is the channel of global connection idx.
func channelName(c *Config, tag string, idx int) string {
	switch c.Scenario {
	case ScenarioClientEvents:
		return fmt.Sprintf("private-bench-%s-%d", tag, idx/c.Group)
	case ScenarioFanout, ScenarioBurst:
		return fmt.Sprintf("bench-%s-fan-%d", tag, idx%c.Channels)
	case ScenarioCross:
		return crossChannel(tag)
	default:
		return fmt.Sprintf("bench-%s-%d", tag, idx%c.Channels)
	}
}

func newShard(spec shardSpec) (*shard, error) {
	s := &shard{
		spec:     spec,
		cfg:      &spec.Config,
		conns:    make([]atomic.Pointer[wsConn], spec.Count),
		connHist: newHist(),
		loops:    map[gnet.EventLoop]*loopStats{},
		stop:     make(chan struct{}),
		rssStart: selfRSSKB(),
		cpuStart: selfCPU(),
	}
	s.d = newDialer(s.cfg)
	if s.cfg.Reconnect {
		s.rec = newReconnector(spec.Count, s.cfg.ConnectConcurrency)
	}
	s.perChan = make([]atomic.Int64, max(1, s.cfg.Channels))
	if s.cfg.Client == "gnet" {
		cli, err := gnet.NewClient(s,
			gnet.WithNumEventLoop(s.cfg.Loops),
			gnet.WithLogger(nopLogger{}),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReadBufferCap(64<<10),
		)
		if err != nil {
			return nil, err
		}
		if err := cli.Start(); err != nil {
			return nil, err
		}
		s.cli = cli
	} else {
		for range 16 {
			s.gstats = append(s.gstats, newLoopStats())
		}
	}
	return s, nil
}

func (s *shard) addErr(err string) {
	s.errMu.Lock()
	if len(s.errs) < 5 {
		s.errs = append(s.errs, err)
	}
	s.errMu.Unlock()
}

// connect opens the shard's connections, ConnectConcurrency at a time, and
// starts the pinger.
func (s *shard) connect(ctx context.Context) shardReady {
	var lim *rate.Limiter
	if s.spec.ConnectRate > 0 {
		lim = rate.NewLimiter(rate.Limit(s.spec.ConnectRate), 1)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(s.cfg.ConnectConcurrency, s.spec.Count) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				i := int(next.Add(1) - 1)
				if i >= s.spec.Count || ctx.Err() != nil {
					return
				}
				if lim != nil && lim.Wait(ctx) != nil {
					return
				}
				if err := s.open(ctx, i, buf, false, false); err != nil {
					s.failed.Add(1)
					s.addErr(err.Error())
				}
			}
		}()
	}
	wg.Wait()
	// Return the garbage of the ramp (handshakes above all) to the OS, so
	// that the RSS read is what the idle connections hold.
	debug.FreeOSMemory()
	r := shardReady{RSSStartKB: s.rssStart, RSSReadyKB: selfRSSKB(), CPUConnectNS: int64(selfCPU() - s.cpuStart)}
	for i := range s.perChan {
		r.PerChannel = append(r.PerChannel, s.perChan[i].Load())
	}
	if ctx.Err() != nil {
		r.Err = ctx.Err().Error()
	}
	r.Status = s.status()
	s.ready.Store(true)
	s.bg.Add(1)
	go s.pinger()
	return r
}

// open dials, upgrades and subscribes local connection i; again says it
// re-opens a connection the server closed (--reconnect), which is not
// counted as connected again nor recorded in the connect latencies; alt
// dials from the connection's second source port (dialer.dialFrom).
// Cancelling ctx aborts the handshake.
func (s *shard) open(ctx context.Context, i int, buf []byte, again, alt bool) error {
	gidx := s.spec.First + i
	ch := channelName(s.cfg, s.spec.Tag, gidx)
	t0 := time.Now()
	nc, err := s.d.dialFrom(ctx, gidx, alt)
	if err != nil {
		return err
	}
	_ = nc.SetDeadline(t0.Add(15 * time.Second))
	// A past deadline aborts the blocking reads and writes below.
	abort := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer abort()
	bc := &blockConn{c: nc, buf: buf}
	if err := bc.upgrade(s.d); err != nil {
		nc.Close()
		return err
	}
	sid, err := bc.established()
	if err != nil {
		nc.Close()
		return err
	}
	auth := ""
	if s.cfg.Scenario == ScenarioClientEvents {
		auth = pusher.ChannelAuth(s.cfg.Key, s.cfg.Secret, sid, ch, "")
	}
	if err := bc.subscribe(ch, auth); err != nil {
		nc.Close()
		return err
	}
	if !abort() {
		nc.Close()
		return ctx.Err()
	}
	now := time.Now()
	if !again {
		s.connMu.Lock()
		recordLatency(s.connHist, now.Sub(t0))
		s.connMu.Unlock()
	}
	_ = nc.SetDeadline(time.Time{})
	c := &wsConn{sh: s, idx: gidx, channel: ch, leftover: bc.leftover()}
	c.heard.Store(now.UnixNano())
	if s.cfg.Scenario == ScenarioCross {
		c.seen = &seqSet{}
	}
	if s.rec != nil {
		c.track = s.rec.track(i)
	}
	// The slot is set before the connection runs: it may close (and be
	// re-opened) before EnrollContext returns.
	if s.cli != nil {
		if tc, ok := nc.(*tlsConn); ok {
			// The record layer stays with tc, over gnet (see tls.go).
			c.tls = tc
			nc = tc.t.detach()
		}
		s.conns[i].Store(c)
		if _, err := s.cli.EnrollContext(nc, c); err != nil {
			c.closed.Store(true)
			s.conns[i].CompareAndSwap(c, nil)
			if s.rec != nil && !again {
				s.rec.untrack(i)
			}
			return err
		}
	} else {
		c.nc = nc
		c.stats = s.gstats[gidx%len(s.gstats)]
		left := c.leftover
		c.leftover = nil
		s.conns[i].Store(c)
		s.bg.Add(1)
		go s.readLoop(c, left)
	}
	if again {
		return nil
	}
	s.connected.Add(1)
	if s.cfg.Scenario == ScenarioFanout || s.cfg.Scenario == ScenarioBurst || s.cfg.Scenario == ScenarioCross {
		s.perChan[gidx%len(s.perChan)].Add(1)
	}
	return nil
}

// OnOpen runs on the gnet loop when a connection is enrolled.
func (s *shard) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	wc := c.Context().(*wsConn)
	wc.gc = c
	wc.stats = s.loopStatsFor(c.EventLoop())
	if wc.tls != nil {
		wc.tls.t.attach(c)
		// Records read with the upgrade may wait in crypto/tls.
		if err := wc.tlsTraffic(nil, time.Now()); err != nil {
			wc.closeErr = err
			return nil, gnet.Close
		}
		return nil, gnet.None
	}
	if len(wc.leftover) > 0 {
		n, err := wc.consume(wc.leftover, time.Now(), c)
		if err != nil {
			wc.closeErr = err
			return nil, gnet.Close
		}
		wc.leftover = wc.leftover[n:]
		if len(wc.leftover) == 0 {
			wc.leftover = nil
		}
	}
	return nil, gnet.None
}

// OnTraffic runs on the gnet loop when bytes arrive.
func (s *shard) OnTraffic(c gnet.Conn) gnet.Action {
	wc := c.Context().(*wsConn)
	now := time.Now()
	if wc.tls != nil {
		buf, _ := c.Next(-1)
		if err := wc.tlsTraffic(buf, now); err != nil {
			wc.closeErr = err
			return gnet.Close
		}
		return gnet.None
	}
	if wc.leftover != nil {
		more, _ := c.Next(-1)
		wc.leftover = append(wc.leftover, more...)
		n, err := wc.consume(wc.leftover, now, c)
		if err != nil {
			wc.closeErr = err
			return gnet.Close
		}
		wc.leftover = append([]byte(nil), wc.leftover[n:]...)
		if len(wc.leftover) == 0 {
			wc.leftover = nil
		}
		return gnet.None
	}
	buf, _ := c.Peek(-1)
	n, err := wc.consume(buf, now, c)
	_, _ = c.Discard(n)
	if err != nil {
		wc.closeErr = err
		return gnet.Close
	}
	return gnet.None
}

// OnClose runs on the gnet loop when a connection closes.
func (s *shard) OnClose(c gnet.Conn, err error) gnet.Action {
	if wc, ok := c.Context().(*wsConn); ok {
		if wc.closeErr != nil {
			err = wc.closeErr // what consume saw, e.g. the close frame
		}
		s.lost(wc, err)
	}
	return gnet.None
}

func (s *shard) lost(wc *wsConn, err error) {
	if wc.closed.Swap(true) || s.finishing.Load() {
		return
	}
	if s.rec != nil && s.dropped(wc, err) {
		return
	}
	s.closedEarly.Add(1)
	msg := "connection closed by the server"
	if err != nil {
		msg += ": " + err.Error()
	}
	s.addErr(msg)
}

func (s *shard) loopStatsFor(el gnet.EventLoop) *loopStats {
	s.loopMu.Lock()
	defer s.loopMu.Unlock()
	st := s.loops[el]
	if st == nil {
		st = newLoopStats()
		s.loops[el] = st
	}
	return st
}

// Write lets the goroutine runtime answer pings from its read loop.
func (c *wsConn) Write(b []byte) (int, error) {
	c.send(b)
	return len(b), nil
}

// readLoop is the goroutine runtime's reader of one connection.
func (s *shard) readLoop(c *wsConn, left []byte) {
	defer s.bg.Done()
	buf := make([]byte, max(512, 2*len(left)))
	w := copy(buf, left)
	for {
		if w > 0 {
			n, err := c.consume(buf[:w], time.Now(), c)
			if err != nil {
				c.nc.Close()
				s.lost(c, err)
				return
			}
			w = copy(buf, buf[n:w])
		}
		if w == len(buf) {
			nb := make([]byte, 2*len(buf))
			copy(nb, buf[:w])
			buf = nb
		}
		n, err := c.nc.Read(buf[w:])
		w += n
		if err != nil && n == 0 {
			c.nc.Close()
			s.lost(c, err)
			return
		}
	}
}

// pinger sends pusher:ping on every connection that has heard nothing from
// the server for PingInterval, as pusher-js does with its activity timeout.
// It starts when the shard's ramp is over; see spreadOverdue.
func (s *shard) pinger() {
	defer s.bg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	spreadOverdue(s.conns, time.Now(), s.cfg.PingInterval, rand.Int64N)
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			for i := range s.conns {
				c := s.conns[i].Load()
				if c != nil && !c.closed.Load() && now.UnixNano()-c.heard.Load() >= int64(s.cfg.PingInterval) {
					// The pong moves heard on; until then, one ping per
					// interval.
					c.heard.Store(now.UnixNano())
					c.send(pingFrame)
				}
			}
		}
	}
}

// startSending starts whispering client events (client-events scenario):
// every connection sends Rate events per second, spread evenly, to its
// group's private channel.
func (s *shard) startSending() {
	if s.cfg.Scenario != ScenarioClientEvents || s.stopSend != nil {
		return
	}
	var live []*wsConn
	var peers []int64
	alive := map[string]int64{}
	for i := range s.conns {
		if c := s.conns[i].Load(); c != nil {
			live = append(live, c)
			alive[c.channel]++
		}
	}
	for _, c := range live {
		peers = append(peers, alive[c.channel]-1)
	}
	s.stopSend = make(chan struct{})
	if len(live) == 0 || s.cfg.Rate <= 0 {
		return
	}
	total := s.cfg.Rate * float64(len(live))
	s.sendDone = make(chan struct{})
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer close(s.sendDone)
		t0 := time.Now()
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		var cursor int64
		for {
			select {
			case <-s.stopSend:
				return
			case <-s.stop:
				return
			case now := <-tk.C:
				due := int64(now.Sub(t0).Seconds() * total)
				for ; cursor < due; cursor++ {
					k := int(cursor % int64(len(live)))
					c := live[k]
					if c.closed.Load() {
						continue
					}
					// Client event data must be a JSON object for Pusher.
					data := eventData(time.Now(), max(0, s.cfg.Payload-8))
					msg := fmt.Appendf(nil, `{"event":%q,"channel":%q,"data":{"m":%q}}`, clientEvent, c.channel, data)
					c.send(wsproto.AppendClientFrame(nil, ws.OpText, true, msg, clientMask))
					s.sent.Add(1)
					s.expected.Add(peers[k])
				}
			}
		}
	}()
}

// settle records the sequence numbers of the accepted events: from then
// on status reports the deliveries of them that the connected slots still
// await. Goroutine-safe.
func (s *shard) settle(seqs []int64) {
	s.settled.Store(&seqs)
}

// stopSending stops the client-event sender.
func (s *shard) stopSending() {
	if s.stopSend != nil {
		select {
		case <-s.stopSend:
		default:
			close(s.stopSend)
		}
	}
	// Wait for the sender, so that the sent and expected counts read next
	// include its last events.
	if s.sendDone != nil {
		<-s.sendDone
	}
}

// status returns the shard's counters. It is goroutine-safe.
func (s *shard) status() shardStatus {
	st := shardStatus{
		Connected:   s.connected.Load(),
		Failed:      s.failed.Load(),
		ClosedEarly: s.closedEarly.Load(),
		Sent:        s.sent.Load(),
		Expected:    s.expected.Load(),
	}
	if s.rec != nil {
		st.Drops, st.Down, st.Reconnects = s.rec.drops.Load(), s.rec.down.Load(), s.rec.reconnects.Load()
		if seqs := s.settled.Load(); seqs != nil {
			st.Settled, st.Owing = 1, s.rec.owing(*seqs)
		}
	}
	for _, ls := range s.allStats() {
		st.Received += ls.received.Load()
		st.WireBytes += ls.wire.Load()
		st.Errors += ls.errors.Load()
	}
	return st
}

func (s *shard) allStats() []*loopStats {
	if s.cli == nil {
		return s.gstats
	}
	s.loopMu.Lock()
	defer s.loopMu.Unlock()
	out := make([]*loopStats, 0, len(s.loops))
	for _, ls := range s.loops {
		out = append(out, ls)
	}
	return out
}

// finish closes every connection and returns the shard's results.
func (s *shard) finish() shardResult { return s.finishWith(true) }

// finishOpen returns the shard's results like finish but leaves the
// connections open: a worker process calls it just before it exits, which
// closes them in the kernel, so that the figures are reported without
// waiting for tens of thousands of closes per worker (at a million
// connections the closes took minutes of the machine's CPU).
func (s *shard) finishOpen() shardResult { return s.finishWith(false) }

func (s *shard) finishWith(closeConns bool) shardResult {
	if s.rec != nil {
		s.rec.stopAll(&s.finishing)
	} else {
		s.finishing.Store(true)
	}
	s.stopSending()
	close(s.stop)
	st := s.status()
	for i := range s.conns {
		if !closeConns {
			break
		}
		c := s.conns[i].Load()
		if c == nil {
			continue
		}
		c.closed.Store(true)
		if c.gc != nil {
			_ = c.gc.Close()
		} else if c.nc != nil {
			c.nc.Close()
		}
	}
	if closeConns {
		s.bg.Wait()
		if s.cli != nil {
			_ = s.cli.Stop()
		}
	}
	res := shardResult{Status: st, CPUNS: int64(selfCPU() - s.cpuStart)}
	s.connMu.Lock()
	res.Connect = s.connHist.Export()
	s.connMu.Unlock()
	all := newHist()
	var lastErr string
	for _, ls := range s.allStats() {
		ls.mu.Lock()
		all.Merge(ls.hist)
		ls.mu.Unlock()
		if v, ok := ls.lastErr.Load().(string); ok && lastErr == "" {
			lastErr = v
		}
	}
	res.Deliveries = all.Export()
	if s.rec != nil {
		res.Reconnect = s.rec.result()
	}
	s.errMu.Lock()
	res.Errs = append(res.Errs, s.errs...)
	s.errMu.Unlock()
	if lastErr != "" {
		res.Errs = append(res.Errs, "last error message: "+lastErr)
	}
	return res
}

// nopLogger silences gnet's logging (it would write to stdout).
type nopLogger struct{}

func (nopLogger) Debugf(string, ...any) {}
func (nopLogger) Infof(string, ...any)  {}
func (nopLogger) Warnf(string, ...any)  {}
func (nopLogger) Errorf(string, ...any) {}
func (nopLogger) Fatalf(string, ...any) {}

// spreadOverdue moves the first ping of every connection already silent for
// interval at now to a random point of the next interval (by back-dating
// when it last heard the server). The pinger starts at the ramp's end, when
// every connection older than the interval is due at once: at a million
// connections that was ~600,000 pings in one second, a burst that kept
// the nodes saturated for tens of seconds (upgrades then took over 15 s);
// clients that connected at random times ping at random times. rnd(n)
// returns a number in [0, n).
func spreadOverdue(conns []atomic.Pointer[wsConn], now time.Time, interval time.Duration, rnd func(int64) int64) {
	if interval <= 0 {
		return
	}
	for i := range conns {
		c := conns[i].Load()
		if c != nil && now.UnixNano()-c.heard.Load() >= int64(interval) {
			// Due at now + r: heard at now - interval + r.
			c.heard.Store(now.UnixNano() - int64(interval) + rnd(int64(interval)))
		}
	}
}
