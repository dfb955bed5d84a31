package pusher

import (
	"math/rand/v2"
	"time"
)

// Draining reports whether Drain was called. Goroutine-safe.
func (srv *Server) Draining() bool { return srv.draining.Load() }

// drainBatch is how many sessions one drain step closes on a shard.
const drainBatch = 200

// Drain starts a graceful shutdown: new connections are refused with 4200,
// and every open session gets pusher:error 4200 and a close frame 4200, in
// batches spread at random over spread so that clients do not all reconnect
// at the same instant. It returns at once; the transport waits for the
// connections to go. Goroutine-safe.
func (srv *Server) Drain(spread time.Duration) {
	if srv.draining.Swap(true) {
		return
	}
	for _, sh := range srv.shardList() {
		sh.exec(func() {
			sessions := append([]*Session(nil), sh.sessions...)
			n := (len(sessions) + drainBatch - 1) / drainBatch
			for i := 0; i < n; i++ {
				batch := sessions[i*drainBatch : min((i+1)*drainBatch, len(sessions))]
				var delay time.Duration
				if spread > 0 && n > 1 {
					slot := spread / time.Duration(n)
					delay = slot*time.Duration(i) + time.Duration(rand.Int64N(int64(slot)+1))
				}
				time.AfterFunc(delay, func() {
					sh.exec(func() {
						for _, s := range batch {
							if !s.closed {
								s.fail(ErrShuttingDown)
							}
						}
					})
				})
			}
		})
	}
}
