package pusher

import "time"

// window is a fixed-window rate limiter: it counts the attempts made in the
// current window and refuses those past a limit. It holds no pointers, so a
// Session embeds it (for the app's rate_limiting; perSecond below holds the
// per-second caps) at no cost to the garbage collector. The
// caller passes the time and the window's length and limit on every
// attempt. Loop-only, like the Session that holds it.
type window struct {
	start int64 // unix ns at which the current window opened
	count int32 // attempts allowed in it
}

// allow counts an attempt at now (unix ns) and reports whether it is within
// limit attempts per window of length ns. A window opens at the first
// attempt after the previous one ended, as Laravel's rate limiter decays.
func (w *window) allow(now, length int64, limit int) bool {
	if w.count == 0 || now-w.start >= length {
		w.start, w.count = now, 0
	}
	return w.take(limit)
}

// perSecond holds a session's counts for its two per-second caps, client
// events and subscriptions, in windows of whole seconds since the epoch: an
// attempt in any other second than the current one, later or (after the
// clock stepped back) earlier, opens a new window for both counts. One
// window start for both keeps a Session 16 bytes smaller than a window
// each; the counts stay independent within a second, and a count only
// matters for the second it was made in. Loop-only, like the Session that
// holds it.
type perSecond struct {
	start        int64 // unix ns of the second counted
	clientEvents int32
	subscribes   int32
}

// at opens the window of the second holding now (unix ns) unless it is the
// current one.
func (p *perSecond) at(now int64) {
	if start := now - now%int64(time.Second); start != p.start {
		*p = perSecond{start: start}
	}
}

// allowClientEvent counts a client event at now and reports whether it is
// within limit per second.
func (p *perSecond) allowClientEvent(now int64, limit int) bool {
	p.at(now)
	return take(&p.clientEvents, limit)
}

// allowSubscribe counts a subscription at now and reports whether it is
// within limit per second.
func (p *perSecond) allowSubscribe(now int64, limit int) bool {
	p.at(now)
	return take(&p.subscribes, limit)
}

func (w *window) take(limit int) bool { return take(&w.count, limit) }

// take counts an attempt in *count unless limit attempts were counted.
func take(count *int32, limit int) bool {
	if int(*count) >= limit {
		return false
	}
	*count++
	return true
}
