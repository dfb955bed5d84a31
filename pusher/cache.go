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

// cacheable reports whether msg is kept as the last event of channel name:
// it is a cache channel and msg is not presence bookkeeping.
func cacheable(name string, msg []byte) bool {
	_, cache := Classify(name)
	return cache && !bytes.HasPrefix(msg, []byte(`{"event":"pusher_internal:`))
}

// storeCache keeps msg as the cached event of a cache channel; it reports
// whether it did (not for other channels, nor for presence bookkeeping).
func (h *hub) storeCache(app *App, name string, msg []byte) bool {
	if !cacheable(name, msg) {
		return false
	}
	s := h.stripeOf(app, name)
	at := h.now()
	s.mu.Lock()
	s.storeCacheLocked(app, name, msg, at)
	s.mu.Unlock()
	return true
}

func (s *stripe) storeCacheLocked(app *App, name string, msg []byte, at time.Time) {
	m := s.caches[app]
	if m == nil {
		m = make(map[string]cacheEntry)
		s.caches[app] = m
	}
	m[name] = cacheEntry{msg: msg, at: at}
}

// cached returns the cached event of a cache channel, or nil.
func (h *hub) cached(app *App, name string) []byte {
	s := h.stripeOf(app, name)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e, ok := s.caches[app][name]; ok && h.now().Sub(e.at) < cacheTTL {
		return e.msg
	}
	return nil
}

// sweepCaches drops cached events older than cacheTTL, one stripe at a
// time.
func (h *hub) sweepCaches(now time.Time) {
	for i := range h.stripes {
		s := &h.stripes[i]
		s.mu.Lock()
		for _, m := range s.caches {
			for name, e := range m {
				if now.Sub(e.at) >= cacheTTL {
					delete(m, name)
				}
			}
		}
		s.mu.Unlock()
	}
}

// SweepCaches drops cached events of cache channels older than 30 minutes.
// Call it now and then (the transport does, once a minute). Goroutine-safe.
func (srv *Server) SweepCaches(now time.Time) { srv.hub.sweepCaches(now) }
