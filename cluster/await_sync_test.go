package cluster

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/reverbgo/reverb/pusher"
)

// Await calls done exactly once whether its conditions complete before,
// after or at the very moment its timeout fires. The bubble's fake clock
// makes each order certain.
func TestMemAwaitDoneOnceWithTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := newMemBus()
		n := bus.newNode(t, func(c *Config, _ *pusher.Options) {
			c.PublishTimeout = 100 * time.Millisecond
			c.GatherTimeout = 100 * time.Millisecond
		})
		defer n.close()
		n.b.Start()
		synctest.Wait()
		if n.b.Degraded() {
			t.Fatal("not connected")
		}
		timeout := n.b.awaitTimeout()
		barriers := func() int {
			n.b.imu.Lock()
			defer n.b.imu.Unlock()
			return len(n.b.barriers)
		}

		// The barrier comes back first, the timeout fires later.
		done, calls := counter()
		if n.b.Await(n.app, "cache-1", done) {
			t.Fatal("Await of a cache channel returned true")
		}
		synctest.Wait()
		if calls.Load() != 1 {
			t.Fatalf("done called %d times once the barrier was back", calls.Load())
		}
		time.Sleep(timeout)
		synctest.Wait()
		if calls.Load() != 1 {
			t.Fatalf("done called %d times after the timeout too", calls.Load())
		}

		// The timeout fires first, the barrier comes back later.
		done, calls = counter()
		n.tr.pause()
		if n.b.Await(n.app, "cache-2", done) {
			t.Fatal("Await of a cache channel returned true")
		}
		synctest.Wait()
		if calls.Load() != 0 {
			t.Fatal("done called before the barrier or the timeout")
		}
		time.Sleep(timeout)
		synctest.Wait()
		if calls.Load() != 1 {
			t.Fatalf("done called %d times by the timeout", calls.Load())
		}
		n.tr.resume()
		synctest.Wait()
		if calls.Load() != 1 || barriers() != 0 {
			t.Fatalf("done called %d times after the barrier came back too (%d barriers waiting)", calls.Load(), barriers())
		}

		// Both at the same instant, for a presence channel (two conditions).
		done, calls = counter()
		n.tr.pause()
		n.b.Interest(n.app, "presence-3", true)
		if n.b.Await(n.app, "presence-3", done) {
			t.Fatal("Await of a presence channel returned true")
		}
		time.Sleep(timeout)
		n.tr.resume()
		synctest.Wait()
		if calls.Load() != 1 || barriers() != 0 {
			t.Fatalf("done called %d times (%d barriers waiting)", calls.Load(), barriers())
		}
	})
}
