package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gobwas/ws"
	"github.com/reverbgo/reverb/pusher"
	"github.com/reverbgo/reverb/wsproto"
)

// The presence scenario checks presence channels across a cluster: M
// members (Config.Connections), each on its own connection, user_id "u<i>"
// with user_info {"name":"member <i>"}, join one channel
// presence-bench-<tag> one after another: member i+1 subscribes only once
// member i got pusher_internal:subscription_succeeded. Behind one port
// shared by every node (SO_REUSEPORT), each connection and each HTTP API
// request lands on a node the kernel picks.
//
// What must hold, member i against user u<j>:
//
//   - i < j: u<j> is not in i's initial member list, and i receives
//     member_added for u<j> exactly once.
//   - i >= j: u<j> is in i's initial member list (the one of its
//     subscription_succeeded; i's own user included) and i never receives
//     member_added for it.
//   - nobody receives member_removed, nor hears of a user other than
//     u0..u<M-1>, nor a user_info other than the one sent.
//
// The initial list must already hold every earlier member, even across
// nodes: that is strict on purpose. A node answers a presence subscription
// only after a barrier, a marker it publishes on the cluster's control
// channel, came back to it (cluster.Redis.Await); a node publishes a
// member's join on that channel before its own barrier for that member, so
// by the time member i's subscription_succeeded reached the bench, i's join
// was in the control channel's order ahead of any barrier published after,
// and the node of member i+1 has applied it before answering. An earlier
// member missing from an initial list is therefore a failure (counted in
// MissingInitial); if it arrives later as member_added it is counted in
// Late as well, so that a slow or degraded cluster (a barrier that timed
// out) can be told from a lost join.
//
// The server refuses members past its limit on one presence channel
// (limits.max_presence_members, 100 by default): raise it for a larger M.
//
// Once every member has subscribed, the bench waits (at most until
// Config.Timeout) until every member knows all M users, then asks the
// HTTP API Config.Queries times, each request on a new connection:
// GET /apps/{id}/channels/{channel}/users must list exactly the M users and
// GET /apps/{id}/channels/{channel}?info=user_count must say M. Events
// arriving meanwhile are still checked: the API phase doubles as a grace
// period for late duplicates or removals.

// PresenceStats are the figures of the presence scenario.
type PresenceStats struct {
	// OK is true when every check passed.
	OK      bool   `json:"ok"`
	Channel string `json:"channel"`
	// Members is M; Joined the members whose subscription succeeded.
	Members int `json:"members"`
	Joined  int `json:"joined"`
	// JoinS is the time from the first subscribe sent to the last
	// subscription_succeeded received.
	JoinS float64 `json:"join_s"`
	// SubscribeLatency is each member's subscribe to its
	// subscription_succeeded.
	SubscribeLatency Summary `json:"subscribe_latency,omitzero"`
	// Converged counts the members that knew all M users by the end of the
	// wait; ConvergenceMS is the time from the last member's subscribe
	// sent to the moment the last member knew all M (-1 if never).
	Converged     int     `json:"converged"`
	ConvergenceMS float64 `json:"convergence_ms"`
	// MemberAdded counts the member_added events received;
	// ExpectedAdded is M(M-1)/2.
	MemberAdded   int64 `json:"member_added"`
	ExpectedAdded int64 `json:"expected_member_added"`
	// Failures by kind (see PresenceTally).
	Duplicates     int64 `json:"duplicates"`
	Removed        int64 `json:"member_removed"`
	Unknown        int64 `json:"unknown"`
	Early          int64 `json:"early"`
	MissingInitial int64 `json:"missing_initial"`
	Late           int64 `json:"late"`
	BadInfo        int64 `json:"bad_info"`
	Missing        int64 `json:"missing"`
	// ClosedEarly counts member connections lost before the end.
	ClosedEarly int64 `json:"closed_early"`
	// ConnectRetries counts the connection attempts that timed out and
	// were tried again (see memberConnectTimeouts).
	ConnectRetries int `json:"connect_retries,omitempty"`
	// APIServer is where the HTTP API requests went; Queries the rounds
	// (one users and one user_count request each).
	APIServer string `json:"api_server"`
	Queries   int    `json:"queries"`
	UsersOK   int    `json:"users_ok"`
	UsersBad  int    `json:"users_bad"`
	CountOK   int    `json:"user_count_ok"`
	CountBad  int    `json:"user_count_bad"`
	// UsersLatency and CountLatency time each request from the dial of its
	// connection to the end of its answer.
	UsersLatency Summary `json:"users_latency,omitzero"`
	CountLatency Summary `json:"user_count_latency,omitzero"`
	// Failures describes the first failures found.
	Failures []string `json:"failures,omitempty"`
}

func presenceChannel(tag string) string { return "presence-bench-" + tag }

func presenceUser(i int) string { return "u" + strconv.Itoa(i) }

func presenceName(i int) string { return "member " + strconv.Itoa(i) }

// presenceChannelData is the channel_data of member i.
func presenceChannelData(i int) string {
	b, _ := json.Marshal(map[string]any{"user_id": presenceUser(i), "user_info": map[string]string{"name": presenceName(i)}})
	return string(b)
}

// presenceIndex returns k for the user id "u<k>" with 0 <= k < m.
func presenceIndex(id string, m int) (int, bool) {
	if !strings.HasPrefix(id, "u") {
		return 0, false
	}
	k, err := strconv.Atoi(id[1:])
	if err != nil || k < 0 || k >= m || presenceUser(k) != id {
		return 0, false
	}
	return k, true
}

// PresenceTally counts the failures found by a presenceBook.
type PresenceTally struct {
	// Added counts the member_added events.
	Added int64
	// Duplicates: member_added for a user the member already knew (its
	// own, one of its initial list or one added before).
	Duplicates int64
	// Removed: member_removed events (nobody leaves).
	Removed int64
	// Unknown: user ids other than u0..u<M-1> (or not strings).
	Unknown int64
	// Early: a later member in an initial list, or an event before the
	// member's own subscription_succeeded.
	Early int64
	// MissingInitial: earlier members (or the member itself) absent from
	// an initial list. Late: those of them that arrived as member_added.
	MissingInitial int64
	Late           int64
	// BadInfo: a user_info other than {"name":"member <k>"}.
	BadInfo int64
	// Complete counts the members that know all M users; Subscribed those
	// whose initial list arrived.
	Complete   int
	Subscribed int
	// LastComplete is when the last member came to know all M users.
	LastComplete time.Time
	// Failures describes the first failures.
	Failures []string
}

// failed reports whether the tally holds any failure.
func (t *PresenceTally) failed() bool {
	return t.Duplicates+t.Removed+t.Unknown+t.Early+t.MissingInitial+t.BadInfo > 0
}

// presenceBook is the bookkeeping of what every member learned. It is
// goroutine-safe.
type presenceBook struct {
	mu    sync.Mutex
	m     int
	views []presenceView
	sent  []time.Time // when member k's subscribe was sent
	prop  *hdrhistogram.Histogram
	t     PresenceTally
}

// presenceView is what one member knows.
type presenceView struct {
	subscribed bool
	known      bitset
	n          int
}

func newPresenceBook(m int) *presenceBook {
	b := &presenceBook{m: m, views: make([]presenceView, m), sent: make([]time.Time, m), prop: newHist()}
	for i := range b.views {
		b.views[i].known = make(bitset, (m+63)/64)
	}
	return b
}

func (b *presenceBook) failLocked(format string, args ...any) {
	if len(b.t.Failures) < 10 {
		b.t.Failures = append(b.t.Failures, fmt.Sprintf(format, args...))
	}
}

// subscribing records that member k's subscribe is sent now.
func (b *presenceBook) subscribing(k int, at time.Time) {
	b.mu.Lock()
	b.sent[k] = at
	b.mu.Unlock()
}

// user checks a user id and user_info and returns its index; ok is false
// (and the failure counted) for an unknown user.
func (b *presenceBook) userLocked(i int, id json.RawMessage, info json.RawMessage, hasInfo bool, what string) (int, bool) {
	var s string
	if json.Unmarshal(id, &s) != nil {
		b.t.Unknown++
		b.failLocked("member u%d: %s: user_id %s is not a string", i, what, id)
		return 0, false
	}
	k, ok := presenceIndex(s, b.m)
	if !ok {
		b.t.Unknown++
		b.failLocked("member u%d: %s: unknown user %q", i, what, s)
		return 0, false
	}
	if hasInfo {
		var in struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(info, &in) != nil || in.Name != presenceName(k) {
			b.t.BadInfo++
			b.failLocked("member u%d: %s: user %s has user_info %s", i, what, s, info)
		}
	}
	return k, true
}

// knowLocked marks user k known to member i.
func (b *presenceBook) knowLocked(i, k int, at time.Time) {
	v := &b.views[i]
	v.known.set(int64(k))
	v.n++
	if v.n == b.m {
		b.t.Complete++
		if at.After(b.t.LastComplete) {
			b.t.LastComplete = at
		}
	}
}

func (v *presenceView) knows(k int) bool { return v.known[k>>6]&(1<<(k&63)) != 0 }

// presenceData is the data of pusher_internal:subscription_succeeded on a
// presence channel.
type presenceData struct {
	Presence struct {
		Count int                        `json:"count"`
		IDs   []json.RawMessage          `json:"ids"`
		Hash  map[string]json.RawMessage `json:"hash"`
	} `json:"presence"`
}

// initial records member i's initial member list (the data of its
// subscription_succeeded) received at at.
func (b *presenceBook) initial(i int, data string, at time.Time) {
	var d presenceData
	err := json.Unmarshal([]byte(data), &d)
	b.mu.Lock()
	defer b.mu.Unlock()
	v := &b.views[i]
	if v.subscribed {
		b.t.Duplicates++
		b.failLocked("member u%d: a second subscription_succeeded", i)
		return
	}
	v.subscribed = true
	b.t.Subscribed++
	if err != nil {
		b.t.MissingInitial += int64(i + 1)
		b.failLocked("member u%d: bad subscription_succeeded data %q", i, data)
		return
	}
	if d.Presence.Count != len(d.Presence.IDs) || len(d.Presence.Hash) != len(d.Presence.IDs) {
		b.failLocked("member u%d: initial list count %d, %d ids, %d hash entries", i, d.Presence.Count, len(d.Presence.IDs), len(d.Presence.Hash))
		b.t.Unknown++
	}
	for _, id := range d.Presence.IDs {
		var s string
		_ = json.Unmarshal(id, &s)
		info, has := d.Presence.Hash[s]
		k, ok := b.userLocked(i, id, info, has, "initial list")
		if !ok {
			continue
		}
		switch {
		case v.knows(k):
			b.t.Duplicates++
			b.failLocked("member u%d: u%d twice in the initial list", i, k)
		case k > i:
			b.t.Early++
			b.failLocked("member u%d: later member u%d in the initial list", i, k)
			b.knowLocked(i, k, at)
		default:
			b.knowLocked(i, k, at)
		}
	}
	for k := 0; k <= i; k++ {
		if !v.knows(k) {
			b.t.MissingInitial++
			b.failLocked("member u%d: u%d missing from the initial list", i, k)
		}
	}
}

// added records a member_added of user id (with user_info info) received
// by member i at at.
func (b *presenceBook) added(i int, id, info json.RawMessage, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.t.Added++
	v := &b.views[i]
	k, ok := b.userLocked(i, id, info, true, "member_added")
	if !ok {
		return
	}
	switch {
	case !v.subscribed:
		b.t.Early++
		b.failLocked("member u%d: member_added for u%d before its subscription_succeeded", i, k)
	case v.knows(k):
		b.t.Duplicates++
		b.failLocked("member u%d: duplicate member_added for u%d", i, k)
		return
	case k <= i:
		b.t.Late++
		b.failLocked("member u%d: u%d arrived as member_added instead of in the initial list", i, k)
	default:
		if !b.sent[k].IsZero() {
			recordLatency(b.prop, at.Sub(b.sent[k]))
		}
	}
	b.knowLocked(i, k, at)
}

// removed records a member_removed of user id received by member i.
func (b *presenceBook) removed(i int, id json.RawMessage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.t.Removed++
	b.failLocked("member u%d: member_removed for %s", i, id)
}

// lost records that member i's connection failed.
func (b *presenceBook) lost(i int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failLocked("member u%d: connection lost: %v", i, err)
}

// tally returns the counts so far.
func (b *presenceBook) tally() PresenceTally {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.t
	t.Failures = append([]string(nil), b.t.Failures...)
	return t
}

// missing counts the (member, user) pairs not known, over the members
// that subscribed.
func (b *presenceBook) missing() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n int64
	for i := range b.views {
		if b.views[i].subscribed {
			n += int64(b.m - b.views[i].n)
		}
	}
	return n
}

// presenceMsg is the envelope of the messages a member reads.
type presenceMsg struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// memberEvent is the data of member_added and member_removed.
type memberEvent struct {
	UserID   json.RawMessage `json:"user_id"`
	UserInfo json.RawMessage `json:"user_info"`
}

// presenceMember is one member's connection.
type presenceMember struct {
	idx int
	nc  net.Conn
	bc  *blockConn
	sid string
}

// memberConnectTimeouts are how long a member waits for its connection to
// be established, attempt after attempt, as pusher-js does (its WebSocket
// strategy waits 15 s, then twice as long, up to 60 s): on a saturated
// machine a node can take longer than 15 s to answer an upgrade.
var memberConnectTimeouts = []time.Duration{15 * time.Second, 30 * time.Second, 60 * time.Second}

// connectMember dials, upgrades and reads connection_established, trying
// again with the next of memberConnectTimeouts when an attempt times out.
// retries counts the attempts that timed out and were tried again.
func connectMember(ctx context.Context, d *dialer, i int) (pm *presenceMember, retries int, err error) {
	for k, timeout := range memberConnectTimeouts {
		pm, err = connectMemberOnce(ctx, d, i, timeout)
		if err == nil || !os.IsTimeout(err) || k == len(memberConnectTimeouts)-1 || ctx.Err() != nil {
			return pm, retries, err
		}
		retries++
	}
	return nil, retries, err
}

func connectMemberOnce(ctx context.Context, d *dialer, i int, timeout time.Duration) (*presenceMember, error) {
	nc, err := d.dial(ctx, i)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(timeout))
	bc := &blockConn{c: nc, buf: make([]byte, 4096)}
	if err := bc.upgrade(d); err != nil {
		nc.Close()
		return nil, err
	}
	sid, err := bc.established()
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return &presenceMember{idx: i, nc: nc, bc: bc, sid: sid}, nil
}

func (pm *presenceMember) write(msg []byte) error {
	_, err := pm.nc.Write(wsproto.AppendClientFrame(nil, ws.OpText, true, msg, clientMask))
	return err
}

// subscribe subscribes member pm to channel and records its initial list
// in book. Any member event before subscription_succeeded is recorded too.
func (pm *presenceMember) subscribe(cfg *Config, channel string, book *presenceBook) error {
	cd := presenceChannelData(pm.idx)
	msg, _ := json.Marshal(map[string]any{"event": "pusher:subscribe", "data": map[string]string{
		"channel": channel, "auth": pusher.ChannelAuth(cfg.Key, cfg.Secret, pm.sid, channel, cd), "channel_data": cd}})
	_ = pm.nc.SetDeadline(time.Now().Add(15 * time.Second))
	defer pm.nc.SetDeadline(time.Time{})
	if err := pm.write(msg); err != nil {
		return err
	}
	for {
		p, err := pm.bc.next()
		if err != nil {
			return err
		}
		done, err := pm.handle(p, channel, book)
		if err != nil || done {
			return err
		}
	}
}

// handle handles one message of member pm; done reports its
// subscription_succeeded.
func (pm *presenceMember) handle(p []byte, channel string, book *presenceBook) (done bool, err error) {
	var m presenceMsg
	if err := json.Unmarshal(p, &m); err != nil {
		return false, fmt.Errorf("bad message %q", p)
	}
	now := time.Now()
	switch m.Event {
	case "pusher_internal:subscription_succeeded":
		if m.Channel == channel {
			var data string
			if json.Unmarshal(m.Data, &data) != nil {
				data = string(m.Data)
			}
			book.initial(pm.idx, data, now)
			return true, nil
		}
	case "pusher_internal:member_added", "pusher_internal:member_removed":
		if m.Channel != channel {
			return false, nil
		}
		var data string
		if json.Unmarshal(m.Data, &data) != nil {
			data = string(m.Data)
		}
		var ev memberEvent
		if json.Unmarshal([]byte(data), &ev) != nil {
			return false, fmt.Errorf("bad %s %q", m.Event, p)
		}
		if m.Event == "pusher_internal:member_added" {
			book.added(pm.idx, ev.UserID, ev.UserInfo, now)
		} else {
			book.removed(pm.idx, ev.UserID)
		}
	case "pusher:ping":
		return false, pm.write(pongMsg)
	case "pusher:error", "pusher:subscription_error":
		var data string
		if json.Unmarshal(m.Data, &data) != nil {
			data = string(m.Data)
		}
		return false, fmt.Errorf("%s: %s", m.Event, data)
	}
	return false, nil
}

// read handles member pm's messages until its connection fails or is
// closed; stopping tells a close of the bench's own from a failure.
func (pm *presenceMember) read(channel string, book *presenceBook, stopping *atomic.Bool, closedEarly *atomic.Int64) {
	for {
		p, err := pm.bc.next()
		if err == nil {
			_, err = pm.handle(p, channel, book)
		}
		if err != nil {
			if !stopping.Load() {
				closedEarly.Add(1)
				book.lost(pm.idx, err)
				pm.nc.Close()
			}
			return
		}
	}
}

// runPresence runs the presence scenario (see PresenceStats).
func (r *runner) runPresence(ctx context.Context) error {
	cfg := &r.cfg
	m := cfg.Connections
	channel := presenceChannel(r.tag)
	ps := &PresenceStats{Channel: channel, Members: m, ExpectedAdded: int64(m) * int64(m-1) / 2,
		APIServer: cfg.APIAddr(), Queries: cfg.Queries, ConvergenceMS: -1}
	r.res.Presence = ps
	r.res.Op = "member_added event"
	cpu0 := selfCPU()
	book := newPresenceBook(m)
	d := newDialer(cfg)

	// Connect every member, ConnectConcurrency at a time.
	members := make([]*presenceMember, m)
	var connected, failed, joined, closedEarly atomic.Int64
	var stopping atomic.Bool
	var readers sync.WaitGroup
	end := func(err error) error {
		ps.ClosedEarly = closedEarly.Load()
		r.res.ClosedEarly = ps.ClosedEarly
		return r.presenceEnd(ps, book, cpu0, err)
	}
	defer func() {
		stopping.Store(true)
		for _, pm := range members {
			if pm != nil {
				pm.nc.Close()
			}
		}
		readers.Wait()
	}()
	r.setCounters("connects", func() int64 { return connected.Load() + failed.Load() }, connected.Load)
	connHist := newHist()
	var mu sync.Mutex
	var next atomic.Int64
	t0 := time.Now()
	var wg sync.WaitGroup
	for range min(cfg.ConnectConcurrency, m) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= m || ctx.Err() != nil {
					return
				}
				c0 := time.Now()
				pm, retries, err := connectMember(ctx, d, i)
				mu.Lock()
				ps.ConnectRetries += retries
				if err != nil {
					failed.Add(1)
					r.res.Errors = appendErrs(r.res.Errors, "connect: "+err.Error())
				} else {
					connected.Add(1)
					members[i] = pm
					recordLatency(connHist, time.Since(c0))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	connectDur := time.Since(t0)
	r.res.ConnectS = round2(connectDur.Seconds())
	r.res.ConnectsPerSec = perSecond(connected.Load(), connectDur)
	r.res.ConnectLatency = Summarize(connHist)
	r.res.Connected, r.res.Failed = connected.Load(), failed.Load()
	if n := connected.Load(); n < int64(m) {
		return end(fmt.Errorf("%d of %d members failed to connect", int64(m)-n, m))
	}

	// Subscribe the members one after another.
	srv0 := r.serverSample()
	r.setCounters("joins", joined.Load, nil)
	subHist := newHist()
	j0 := time.Now()
	var lastSent, lastJoined time.Time
	for i, pm := range members {
		if ctx.Err() != nil {
			break
		}
		lastSent = time.Now()
		book.subscribing(i, lastSent)
		if err := pm.subscribe(cfg, channel, book); err != nil {
			ps.JoinS = round2(time.Since(j0).Seconds())
			ps.SubscribeLatency = Summarize(subHist)
			return end(fmt.Errorf("member u%d: subscribe: %w", i, err))
		}
		lastJoined = time.Now()
		recordLatency(subHist, lastJoined.Sub(lastSent))
		joined.Add(1)
		readers.Add(1)
		go func() {
			defer readers.Done()
			pm.read(channel, book, &stopping, &closedEarly)
		}()
	}
	ps.JoinS = round2(lastJoined.Sub(j0).Seconds())
	ps.SubscribeLatency = Summarize(subHist)
	if joined.Load() < int64(m) {
		return end(fmt.Errorf("timed out after %d of %d members joined", joined.Load(), m))
	}

	// Wait until every member knows every member.
	r.setCounters("member_added", func() int64 { return book.tally().Added }, nil)
	for ctx.Err() == nil {
		if t := book.tally(); t.Complete == m {
			ps.ConvergenceMS = round1(float64(max(0, t.LastComplete.Sub(lastSent)).Microseconds()) / 1000)
			break
		}
		sleepCtx(ctx, 5*time.Millisecond)
	}
	r.res.DurationS = round2(time.Since(j0).Seconds())
	srv1 := r.serverSample()
	if r.res.Server != nil {
		r.res.Server.RSSBeforeKB, r.res.Server.RSSAfterKB = srv0.RSSKB, srv1.RSSKB
	}
	if ps.ConvergenceMS < 0 {
		return end(fmt.Errorf("members did not converge within --timeout"))
	}
	r.serverCPU(srv0, srv1, book.tally().Added)

	// Ask the HTTP API, each request on a new connection.
	r.presenceQueries(ctx, ps, channel)
	var err error
	if ps.UsersBad+ps.CountBad > 0 {
		err = fmt.Errorf("%d of %d HTTP API answers wrong", ps.UsersBad+ps.CountBad, 2*cfg.Queries)
	}
	return end(err)
}

// presenceEnd fills the figures from book and returns err, or the first
// failure book found.
func (r *runner) presenceEnd(ps *PresenceStats, book *presenceBook, cpu0 time.Duration, err error) error {
	t := book.tally()
	ps.Joined = t.Subscribed
	ps.Converged = t.Complete
	ps.MemberAdded = t.Added
	ps.Duplicates, ps.Removed, ps.Unknown, ps.Early = t.Duplicates, t.Removed, t.Unknown, t.Early
	ps.MissingInitial, ps.Late, ps.BadInfo = t.MissingInitial, t.Late, t.BadInfo
	ps.Missing = book.missing()
	ps.Failures = appendErrs(ps.Failures, t.Failures...)
	book.mu.Lock()
	r.res.Latency = Summarize(book.prop)
	r.res.Dist = Distribution(book.prop, 10)
	book.mu.Unlock()
	r.res.Ops = t.Added
	r.res.OpsPerSec = perSecond(t.Added, time.Duration(r.res.DurationS*float64(time.Second)))
	r.res.ClientCPUS = round2((selfCPU() - cpu0).Seconds())
	bookErr := err == nil && t.failed()
	if bookErr {
		err = fmt.Errorf("presence check failed: %s", t.Failures[0])
	}
	if err == nil && ps.ClosedEarly > 0 {
		err = fmt.Errorf("%d member connections lost", ps.ClosedEarly)
	}
	if err == nil && (ps.Converged < ps.Members || ps.Missing > 0) {
		err = fmt.Errorf("%d of %d members know every member", ps.Converged, ps.Members)
	}
	ps.OK = err == nil
	if err != nil && !bookErr {
		ps.Failures = appendErrs(ps.Failures, err.Error())
	}
	return err
}

// presenceQueries asks the HTTP API Config.Queries times for the channel's
// users and user count and checks the answers.
func (r *runner) presenceQueries(ctx context.Context, ps *PresenceStats, channel string) {
	cfg := &r.cfg
	usersHist, countHist := newHist(), newHist()
	var asked atomic.Int64
	r.setCounters("API requests", asked.Load, nil)
	fail := func(format string, args ...any) {
		ps.Failures = appendErrs(ps.Failures, fmt.Sprintf(format, args...))
	}
	for q := range cfg.Queries {
		if ctx.Err() != nil {
			fail("HTTP API: timed out after %d of %d rounds", q, cfg.Queries)
			ps.UsersBad += cfg.Queries - q
			ps.CountBad += cfg.Queries - q
			break
		}
		t0 := time.Now()
		status, body, err := apiGet(ctx, cfg, 2*q, "channels/"+channel+"/users", nil)
		recordLatency(usersHist, time.Since(t0))
		asked.Add(1)
		if msg := checkUsers(status, body, err, cfg.Connections); msg != "" {
			ps.UsersBad++
			fail("users (round %d): %s", q+1, msg)
		} else {
			ps.UsersOK++
		}
		t0 = time.Now()
		status, body, err = apiGet(ctx, cfg, 2*q+1, "channels/"+channel, url.Values{"info": {"user_count"}})
		recordLatency(countHist, time.Since(t0))
		asked.Add(1)
		if msg := checkUserCount(status, body, err, cfg.Connections); msg != "" {
			ps.CountBad++
			fail("user_count (round %d): %s", q+1, msg)
		} else {
			ps.CountOK++
		}
	}
	ps.UsersLatency, ps.CountLatency = Summarize(usersHist), Summarize(countHist)
}

// checkUsers checks an answer of GET .../users: exactly u0..u<m-1>. It
// returns what is wrong, or "".
func checkUsers(status int, body []byte, err error, m int) string {
	if err != nil {
		return err.Error()
	}
	if status != 200 {
		return fmt.Sprintf("HTTP %d: %.200s", status, body)
	}
	var ans struct {
		Users []struct {
			ID json.RawMessage `json:"id"`
		} `json:"users"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return fmt.Sprintf("bad answer %.200q", body)
	}
	seen := make([]bool, m)
	var bad []string
	for _, u := range ans.Users {
		var s string
		_ = json.Unmarshal(u.ID, &s)
		k, ok := presenceIndex(s, m)
		switch {
		case !ok:
			bad = append(bad, "unknown "+string(u.ID))
		case seen[k]:
			bad = append(bad, "twice "+s)
		default:
			seen[k] = true
		}
	}
	missing := 0
	for _, s := range seen {
		if !s {
			missing++
		}
	}
	if missing > 0 || len(bad) > 0 {
		if len(bad) > 5 {
			bad = bad[:5]
		}
		return fmt.Sprintf("%d users listed, %d of %d missing, %d wrong %v", len(ans.Users), missing, m, len(bad), bad)
	}
	return ""
}

// checkUserCount checks an answer of GET .../channels/{channel}?info=user_count.
func checkUserCount(status int, body []byte, err error, m int) string {
	if err != nil {
		return err.Error()
	}
	if status != 200 {
		return fmt.Sprintf("HTTP %d: %.200s", status, body)
	}
	var ans struct {
		Occupied  bool `json:"occupied"`
		UserCount *int `json:"user_count"`
	}
	if err := json.Unmarshal(body, &ans); err != nil || ans.UserCount == nil {
		return fmt.Sprintf("bad answer %.200q", body)
	}
	if *ans.UserCount != m || !ans.Occupied {
		return fmt.Sprintf("user_count %d (occupied %v), want %d", *ans.UserCount, ans.Occupied, m)
	}
	return ""
}

// apiGet sends a signed GET /apps/{id}/{route} to cfg.APIAddr() on a new
// connection (bound to source address idx, round robin) and returns the
// answer's status and body.
func apiGet(ctx context.Context, cfg *Config, idx int, route string, query url.Values) (int, []byte, error) {
	d := newAPIClient(cfg, idx).d
	conn, err := d.dial(ctx, idx)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	path := "/apps/" + cfg.AppID + "/" + route
	q := pusher.SignQuery(cfg.Key, cfg.Secret, "GET", path, query, nil, time.Now()).Encode()
	req := "GET " + cfg.Path + path + "?" + q + " HTTP/1.1\r\nHost: " + d.hostHdr + "\r\nConnection: close\r\n\r\n"
	_ = conn.SetDeadline(time.Now().Add(cfg.apiTimeout()))
	if _, err := io.WriteString(conn, req); err != nil {
		return 0, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, body, err
}

// presenceRows adds the table rows of the presence scenario.
func presenceRows(res *Result, add func(k, v string)) {
	p := res.Presence
	verdict := "OK"
	if !p.OK {
		verdict = "FAILED"
	}
	add("presence", fmt.Sprintf("%s: %d members on %s", verdict, p.Members, p.Channel))
	add("members", fmt.Sprintf("%d connected (%d attempts timed out and tried again), %d failed, %d joined in %.2f s, %d lost",
		res.Connected, p.ConnectRetries, res.Failed, p.Joined, p.JoinS, p.ClosedEarly))
	add("connect phase", fmt.Sprintf("%.2f s, %.0f connects/s", res.ConnectS, res.ConnectsPerSec))
	add("subscribe", fmtSummary(p.SubscribeLatency))
	conv := "never"
	if p.ConvergenceMS >= 0 {
		conv = fmt.Sprintf("%.1f ms after the last subscribe", p.ConvergenceMS)
	}
	add("converged", fmt.Sprintf("%d of %d members know all, %s", p.Converged, p.Members, conv))
	add("member_added", fmt.Sprintf("%d of %d expected; propagation %s", p.MemberAdded, p.ExpectedAdded, fmtSummary(res.Latency)))
	add("failures", fmt.Sprintf("%d duplicates, %d member_removed, %d unknown, %d early, %d missing from initial lists (%d late), %d bad user_info, %d missing at the end",
		p.Duplicates, p.Removed, p.Unknown, p.Early, p.MissingInitial, p.Late, p.BadInfo, p.Missing))
	add("HTTP API", fmt.Sprintf("%d rounds to %s: users %d ok %d wrong, user_count %d ok %d wrong", p.Queries, p.APIServer, p.UsersOK, p.UsersBad, p.CountOK, p.CountBad))
	add("users latency", fmtSummary(p.UsersLatency))
	add("user_count latency", fmtSummary(p.CountLatency))
	for _, f := range p.Failures {
		add("failure", f)
	}
}
