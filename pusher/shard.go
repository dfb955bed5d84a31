package pusher

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/reverbgo/reverb/wsproto"
)

// Conn is the transport under a Session: a WebSocket connection owned by one
// event loop. Write and Writev take whole, already-encoded WebSocket frames
// and must not retain the slices after returning (gnet copies what it cannot
// write at once). All methods are called on the connection's loop only,
// except Close, which must be safe from any goroutine.
type Conn interface {
	Write(frame []byte) (int, error)
	Writev(frames [][]byte) (int, error)
	OutboundBuffered() int
	Close() error
}

// Shard is the part of the server owned by one event loop: that loop's
// sessions, which of them subscribe to which channel, and an inbox of
// deliveries from other goroutines. Its methods are loop-only unless they say
// otherwise.
type Shard struct {
	srv  *Server
	idx  int
	exec func(func()) // runs a function on the shard's loop; goroutine-safe
	// resume runs the rest of a chunked fan-out on the loop (SetResume).
	resume func(func())

	mu    sync.Mutex
	inbox []delivery
	spare []delivery
	armed bool

	local    map[localKey]*localChannel
	sessions []*Session
	// touched lists the connections a drain gathered frames for; those
	// before flushed have been written to. continued is set while a drain
	// continuation is queued.
	touched   []*Session
	flushed   int
	continued bool
	stats     shardStats
	// wheel orders the open sessions by when Sweep must look at them.
	wheel wheel
}

// shardStats are a shard's counters. They are written on the shard's loop
// only and summed by Server.Stats, which reads them on each loop.
type shardStats struct {
	apps                map[*App]*appCounters
	slowConsumerCloses  int64
	fanoutYields        int64 // drains that stopped after a chunk to let other work run
	rateLimited         int64
	clientEventsDropped int64
	errors              map[int]int64 // pusher:error events sent, by code
	closes              map[int]int64 // close frames sent by the server, by code
}

// appCounters are one app's counters on one shard.
type appCounters struct {
	connections      int64
	messagesReceived int64
	messagesSent     int64
	bytesReceived    int64
	bytesSent        int64
}

func (st *shardStats) app(a *App) *appCounters {
	if st.apps == nil {
		st.apps = make(map[*App]*appCounters)
	}
	c := st.apps[a]
	if c == nil {
		c = &appCounters{}
		st.apps[a] = c
	}
	return c
}

func (st *shardStats) countError(code int) {
	if st.errors == nil {
		st.errors = make(map[int]int64)
	}
	st.errors[code]++
}

func (st *shardStats) countClose(code int) {
	if st.closes == nil {
		st.closes = make(map[int]int64)
	}
	st.closes[code]++
}

type localKey struct {
	app  *App
	name string
}

// localChannel lists the subscriptions to one channel on one shard.
type localChannel struct {
	subs []*subscription
}

// delivery is one event for the subscribers of a channel on a shard.
type delivery struct {
	app     *App
	channel string
	frame   []byte // the encoded WebSocket frame, shared by every subscriber
	// z is its permessage-deflate variant, built on first need and shared
	// by every subscriber that negotiated the extension, on every shard;
	// nil when the delivery was built without one (drain then makes one
	// for this shard).
	z      *sharedDeflate
	except string // socket id that must not receive it, or ""
	// seq is, for a member_added or member_removed, the presence sequence
	// number of the change it announces (see hub); 0 for other events.
	// Subscribers whose member list was read at or after it skip it.
	seq uint64
}

// sharedDeflate is the compressed variant of a shared broadcast frame,
// built at most once. Goroutine-safe: the shards of a broadcast may ask for
// it at the same time, and the first builds it while the others wait.
type sharedDeflate struct {
	once  sync.Once
	frame []byte
}

// deflations counts the outbound frames compressed (broadcasts and
// single-connection replies), so tests can check that a broadcast is
// compressed once for all its subscribers.
var deflations atomic.Int64

// get returns the frame to send to a subscriber that negotiated
// permessage-deflate: the compressed variant of plain, or plain itself when
// its payload is under wsproto.DeflateThreshold or does not shrink.
func (z *sharedDeflate) get(plain []byte) []byte {
	z.once.Do(func() { z.frame = deflateFrame(plain) })
	return z.frame
}

// deflateFrame compresses an unmasked, unfragmented text frame, or returns
// it unchanged when it is not worth it.
func deflateFrame(plain []byte) []byte {
	h, hn, err := wsproto.ParseHeader(plain)
	if err != nil || hn == 0 || h.OpCode != ws.OpText || !h.Fin || h.Rsv != 0 {
		return plain
	}
	payload := plain[hn:]
	if len(payload) < wsproto.DeflateThreshold {
		return plain
	}
	deflations.Add(1)
	f, ok := wsproto.AppendDeflatedText(make([]byte, 0, len(payload)/2+16), payload)
	if !ok {
		return plain
	}
	return f
}

// enqueue adds a delivery to the inbox and makes sure the loop will drain it.
// Goroutine-safe; it never blocks on the loop.
func (sh *Shard) enqueue(d delivery) {
	sh.mu.Lock()
	sh.inbox = append(sh.inbox, d)
	if sh.armed {
		sh.mu.Unlock()
		return
	}
	sh.armed = true
	sh.mu.Unlock()
	sh.exec(sh.drain)
}

// drain delivers what is in the inbox: it gathers, for every subscriber, the
// frames of the deliveries (no system call), then writes to the gathered
// connections, all the frames pending for one connection with one Writev.
// It writes to at most Options.FanoutChunk connections and then, if some
// are left, runs again as a new loop task: between chunks the loop reads
// requests and writes HTTP answers and control replies, so that a large
// fan-out does not hold them up. A connection's frames stay in order: a
// reply written to a connection that still has gathered frames writes them
// first (Session.writeFrame). Loop-only.
func (sh *Shard) drain() {
	sh.continued = false
	sh.mu.Lock()
	batch := sh.inbox
	sh.inbox = sh.spare[:0]
	sh.armed = false
	sh.mu.Unlock()

	for i := range batch {
		d := &batch[i]
		lc := sh.local[localKey{d.app, d.channel}]
		if lc == nil {
			continue
		}
		seq := d.seq
		for _, sub := range lc.subs {
			s := sub.sess
			if s.closed || sub.pending || (d.except != "" && s.id == d.except) || (seq != 0 && sub.seen(seq)) {
				continue
			}
			if len(s.pending) == 0 && !s.gathered {
				s.gathered = true
				sh.touched = append(sh.touched, s)
			}
			f := d.frame
			if s.deflate {
				if d.z == nil {
					d.z = new(sharedDeflate)
				}
				f = d.z.get(d.frame)
			}
			s.pending = append(s.pending, f)
		}
	}
	clear(batch)
	sh.mu.Lock()
	sh.spare = batch[:0]
	sh.mu.Unlock()

	end := min(sh.flushed+sh.srv.opts.FanoutChunk, len(sh.touched))
	for i := sh.flushed; i < end; i++ {
		s := sh.touched[i]
		sh.touched[i] = nil
		s.gathered = false
		s.flush()
	}
	sh.flushed = end
	if end < len(sh.touched) {
		sh.stats.fanoutYields++
		if !sh.continued {
			sh.continued = true
			sh.resume(sh.drain)
		}
		return
	}
	sh.touched = sh.touched[:0]
	sh.flushed = 0
}

// SetResume sets how the rest of a fan-out paused after FanoutChunk
// connections is run on the shard's loop. It must run f on the loop after
// the loop has polled its sockets and run its urgent tasks (gnet runs the
// tasks queued by a task in the same pass, so the transport hands f over
// from another goroutine). Default: the shard's exec. Call it before the
// shard is used.
func (sh *Shard) SetResume(resume func(func())) { sh.resume = resume }

// addLocal records a subscription on this shard.
func (sh *Shard) addLocal(sub *subscription) {
	k := localKey{sub.sess.app, sub.name}
	lc := sh.local[k]
	if lc == nil {
		lc = &localChannel{}
		sh.local[k] = lc
	}
	sub.lc = lc
	sub.idx = int32(len(lc.subs))
	lc.subs = append(lc.subs, sub)
}

// removeLocal forgets a subscription on this shard.
func (sh *Shard) removeLocal(sub *subscription) {
	lc := sub.lc
	if lc == nil {
		return
	}
	last := len(lc.subs) - 1
	moved := lc.subs[last]
	lc.subs[sub.idx] = moved
	moved.idx = sub.idx
	lc.subs[last] = nil
	lc.subs = lc.subs[:last]
	sub.lc = nil
	if len(lc.subs) == 0 {
		delete(sh.local, localKey{sub.sess.app, sub.name})
	}
}

func (sh *Shard) addSession(s *Session) {
	s.idx = int32(len(sh.sessions))
	sh.sessions = append(sh.sessions, s)
	sh.wheelAdd(s)
	s.ac = sh.stats.app(s.app)
	s.ac.connections++
}

func (sh *Shard) removeSession(s *Session) {
	if s.idx < 0 {
		return
	}
	last := len(sh.sessions) - 1
	moved := sh.sessions[last]
	sh.sessions[s.idx] = moved
	moved.idx = s.idx
	sh.sessions[last] = nil
	sh.sessions = sh.sessions[:last]
	s.idx = -1
	sh.wheel.remove(s)
	s.ac.connections--
}

// Sweep pings connections that have been silent for their app's
// ping_interval and closes, with 4201, those that stayed silent for
// pong_timeout after the ping. It also covers connections that never
// subscribed to anything. Call it on the shard's loop about once a second,
// with the time of Options.Now.
//
// A connection is pinged at the first sweep at or after lastSeen +
// ping_interval (with a WebSocket ping frame once the client sent control
// frames, else pusher:ping) and closed at the first sweep at or after
// pingedAt + pong_timeout; any message in between answers the ping. Sweep does
// not scan the shard: it reads the shard's timing wheel (wheel.go), one
// slot per second, up to now's second, and looks only at the connections
// of those slots, so idle connections cost nothing between their pings.
// However far now jumped ahead, every slot up to it is processed; when it
// jumped by the wheel's span (256 s) or more, or went back, the wheel is
// rebuilt from the shard's sessions at the cost of one scan.
func (sh *Shard) Sweep(now time.Time) {
	sh.sweepWheel(now.UnixNano())
}

// CountClose records a close frame the transport sent with code (for
// protocol errors it detects itself). Loop-only.
func (sh *Shard) CountClose(code int) { sh.stats.countClose(code) }
