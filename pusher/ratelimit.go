package pusher

// window is a fixed-window rate limiter: it counts the attempts made in the
// current window and refuses those past a limit. It holds no pointers, so a
// Session embeds one per limit at no cost to the garbage collector. The
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

// allowAligned is allow with windows aligned on multiples of length since
// the epoch (whole seconds for a per-second cap): an attempt in any other
// window than the current one, later or (after the clock stepped back)
// earlier, opens a new one.
func (w *window) allowAligned(now, length int64, limit int) bool {
	if start := now - now%length; start != w.start {
		w.start, w.count = start, 0
	}
	return w.take(limit)
}

func (w *window) take(limit int) bool {
	if int(w.count) >= limit {
		return false
	}
	w.count++
	return true
}
