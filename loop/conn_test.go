package loop

// Tests of the connection handlers over fake connections (see harness):
// exact splits of the input and exact write failures.

import (
	"strings"
	"testing"

	"github.com/reverbgo/reverb/pusher"
)

// TestHandshakeSplitAtEveryPoint delivers an upgrade request with a
// subscribe frame right behind it in two reads, split at every byte, and
// one byte per read: the answers are the same and nothing is answered before
// the head is complete.
func TestHandshakeSplitAtEveryPoint(t *testing.T) {
	h := newHarness(t, pusher.Options{})
	req := fakeUpgrade(testKey)
	all := append(req, clientFrame(subscribeMsg("news"))...)
	check := func(t *testing.T, f *fakeConn) {
		t.Helper()
		if status := f.takeResponse(); status != 101 {
			t.Fatalf("status %d", status)
		}
		f.expectEvent("pusher:connection_established")
		if e := f.expectEvent("pusher_internal:subscription_succeeded"); e.Channel != "news" {
			t.Fatalf("channel %q", e.Channel)
		}
		f.expectNothing()
	}
	for i := 1; i < len(all); i++ {
		f := h.dial(0)
		f.feed(all[:i])
		if i < len(req) {
			f.expectNothing()
		}
		f.feed(all[i:])
		check(t, f)
	}
	f := h.dial(0)
	for i := range all {
		f.feed(all[i : i+1])
	}
	check(t, f)
}

// Regression: a frame whose header arrived in one read and its payload in
// the next was corrupted, because Discard(0) makes gnet drop everything
// buffered.
func TestRegressionDiscardZeroDropsBuffer(t *testing.T) {
	h := newHarness(t, pusher.Options{})
	f, _ := h.connect(testKey, 0)
	channel := strings.Repeat("a", 150) // a 16-bit length: an 8-byte header
	fr := clientFrame(subscribeMsg(channel))
	for _, cut := range []int{1, 2, 4, 7, 8, 20} {
		f.feed(fr[:cut])
		f.expectNothing()
		f.feed(fr[cut:])
		if e := f.expectEvent("pusher_internal:subscription_succeeded"); e.Channel != channel {
			t.Fatalf("cut %d: channel %q", cut, e.Channel)
		}
	}
}
