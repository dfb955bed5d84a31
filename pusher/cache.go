package pusher

import (
	"bytes"
	"time"
)

// cacheTTL is how long the last event of a cache channel is kept (Pusher's
// 30 minutes), whether or not the channel has subscribers.
const cacheTTL = 30 * time.Minute

type cacheEntry struct {
	msg []byte
	at  time.Time
}

// storeCache keeps msg as the cached event of a cache channel; it reports
// whether it did (not for other channels, nor for presence bookkeeping).
func (h *hub) storeCache(app *App, name string, msg []byte) bool {
	if _, cache := Classify(name); !cache || bytes.HasPrefix(msg, []byte(`{"event":"pusher_internal:`)) {
		return false
	}
	h.mu.Lock()
	h.caches[app][name] = cacheEntry{msg: msg, at: h.now()}
	h.mu.Unlock()
	return true
}

// cached returns the cached event of a cache channel, or nil.
func (h *hub) cached(app *App, name string) []byte {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if e, ok := h.caches[app][name]; ok && h.now().Sub(e.at) < cacheTTL {
		return e.msg
	}
	return nil
}

// sweepCaches drops cached events older than cacheTTL.
func (h *hub) sweepCaches(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.caches {
		for name, e := range m {
			if now.Sub(e.at) >= cacheTTL {
				delete(m, name)
			}
		}
	}
}

// SweepCaches drops cached events of cache channels older than 30 minutes.
// Call it now and then (the transport does, once a minute). Goroutine-safe.
func (srv *Server) SweepCaches(now time.Time) { srv.hub.sweepCaches(now) }
