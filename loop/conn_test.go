package loop

// Tests of the connection handlers over fake connections (see harness):
// exact splits of the input and exact write failures.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/reverbgo/reverb/pusher"
	"github.com/reverbgo/reverb/wsproto"
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

// Regression (crash): when the server's answer to a message could not be
// written (the client reset the connection right after sending it), gnet
// closed the connection inside the write, onClose set st.sess = nil while
// onWS was still running, and onWS then called st.sess.Closed() on nil: a
// panic on the event loop, which ended the process. Any client could crash
// the server with one frame and a RST. Expected: the write's failure ends
// the handling of the input, the session is released, and the connection is
// not touched again.
func TestRegressionWriteFailureClosesInsideWrite(t *testing.T) {
	ping := clientFrame(`{"event":"pusher:ping"}`)
	cases := []struct {
		name  string
		input []byte // sent after the handshake; the answer to its start fails
	}{
		{"pusher:pong", ping},
		{"pong frame", wsproto.AppendClientFrame(nil, ws.OpPing, true, []byte("p"), testMask)},
		{"subscription_succeeded", clientFrame(subscribeMsg("vanishing"))},
		{"pusher:error", clientFrame(`{"event":"pusher:nonsense"}`)},
		{"close frame for a protocol error", wsproto.AppendText(nil, []byte("unmasked"))},
		{"close frame echoed", wsproto.AppendClientFrame(nil, ws.OpClose, true, []byte{0x03, 0xe8}, testMask)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, pusher.Options{})
			// Write 1 is the 101 with connection_established (the replies
			// to one read go out in one write); more input follows in the
			// same read.
			f, _ := h.connect(testKey, 2)
			f.feed(append(append([]byte(nil), tc.input...), ping...))
			if !f.closed {
				t.Fatal("the connection is still open after its write failed")
			}
			f.expectNothing()
			if n := h.connections(testKey); n != 0 {
				t.Fatalf("app connections %d after the close", n)
			}
		})
	}
	t.Run("handshake and subscribe in one read", func(t *testing.T) {
		h := newHarness(t, pusher.Options{})
		f := h.dial(1) // the 101, connection_established and subscription_succeeded: one write
		f.feed(append(fakeUpgrade(testKey), clientFrame(subscribeMsg("vanishing"))...))
		if !f.closed || h.connections(testKey) != 0 {
			t.Fatalf("closed %v, app connections %d", f.closed, h.connections(testKey))
		}
	})
}

// Regression (leak, cross-connection writes): when the 101 or the
// connection_established write failed (the client closed right after sending
// its upgrade), gnet ran onClose inside that write, before upgrade() stored
// the session in st.sess, and the session was never released: the app's
// connection count and max_connections quota stayed taken (an app with
// max_connections = 50 then refused every client with 4004), and the leaked
// sessions' pings were written to the closed fd number, which the kernel had
// given to other clients. Expected: every session released, the quota free,
// nothing written after the close.
func TestRegressionUpgradeWriteFailureLeaksSession(t *testing.T) {
	quota := &pusher.App{ID: "q", Key: "quota-key", Secret: "s", MaxMessageSize: 10000, MaxConnections: 5, PingInterval: time.Second}
	h := newHarness(t, pusher.Options{Apps: []*pusher.App{quota}})
	for i := range 20 {
		// Write 1 carries the 101 and connection_established.
		f, _ := h.connect(quota.Key, 1)
		if !f.closed {
			t.Fatalf("connection %d still open after its first write failed", i)
		}
		f.expectNothing()
	}
	if n := h.connections(quota.Key); n != 0 {
		t.Fatalf("app connections %d after the failed upgrades", n)
	}
	// Pings are due: a leaked session would write one to its closed
	// connection, which the fake reports.
	h.sh.px.Sweep(time.Now().Add(time.Minute))
	h.settle()
	// The quota is free.
	for range quota.MaxConnections {
		if _, id := h.connect(quota.Key, 0); id == "" {
			t.Fatal("no socket id")
		}
	}
}

// Regression (ghost presence members): when subscription_succeeded could not
// be written (the client reset the connection right after subscribing), the
// write closed the connection inside the call, the close left the channel
// and announced member_removed, and the subscription then went on to
// announce member_added: every other member saw the user join after it
// left, a ghost (or, with only the crash fixed and member_added skipped, a
// member_removed for a user never added). Expected: for every user,
// member_added then member_removed, and the member list holds only real
// members.
func TestRegressionSubscribeWriteFailureAddsGhostMember(t *testing.T) {
	app := testApp()
	h := newHarness(t, pusher.Options{Apps: []*pusher.App{app}})
	join := func(user string, failAt int) *fakeConn {
		t.Helper()
		f, sid := h.connect(testKey, failAt)
		cd := `{"user_id":"` + user + `"}`
		f.feed(clientFrame(subscribeAuthMsg("presence-room", pusher.ChannelSignature(app, sid, "presence-room", cd), cd)))
		return f
	}
	obs := join("observer", 0)
	obs.expectEvent("pusher_internal:subscription_succeeded")
	for i := range 10 {
		// Write 1 is the 101 with connection_established.
		if f := join(fmt.Sprintf("ghost-%d", i), 2); !f.closed {
			t.Fatal("the connection is still open after its write failed")
		}
	}
	added := map[string]bool{}
	for obs.out.Len() > 0 {
		e := obs.takeEvent()
		var m struct {
			UserID string `json:"user_id"`
		}
		_ = json.Unmarshal([]byte(e.DataString()), &m)
		switch {
		case e.Event == "pusher_internal:member_added" && !added[m.UserID]:
			added[m.UserID] = true
		case e.Event == "pusher_internal:member_removed" && added[m.UserID]:
			added[m.UserID] = false
		default:
			t.Fatalf("the observer got %s %s (user added: %v)", e.Event, e.DataString(), added[m.UserID])
		}
	}
	for user, in := range added {
		if in {
			t.Errorf("the observer is left with member %s", user)
		}
	}
	late := join("late", 0)
	e := late.expectEvent("pusher_internal:subscription_succeeded")
	var d struct {
		Presence struct {
			IDs   []string `json:"ids"`
			Count int      `json:"count"`
		} `json:"presence"`
	}
	if err := json.Unmarshal([]byte(e.DataString()), &d); err != nil || d.Presence.Count != 2 || strings.Join(d.Presence.IDs, ",") != "observer,late" {
		t.Fatalf("members seen by a new member: %s", e.DataString())
	}
	if e := obs.expectEvent("pusher_internal:member_added"); !strings.Contains(e.DataString(), `"late"`) {
		t.Fatalf("member_added %s", e.DataString())
	}
	obs.expectNothing()
}

// The replies to one read go out in one write: an upgrade with a subscribe
// behind it is answered by the 101, connection_established and
// subscription_succeeded in a single write, and a read carrying two pings
// by both pongs in one.
func TestRepliesToOneReadAreOneWrite(t *testing.T) {
	h := newHarness(t, pusher.Options{})
	f := h.dial(0)
	f.feed(append(fakeUpgrade(testKey), clientFrame(subscribeMsg("news"))...))
	if f.writes != 1 {
		t.Fatalf("%d writes for the upgrade and the subscribe", f.writes)
	}
	if status := f.takeResponse(); status != 101 {
		t.Fatalf("status %d", status)
	}
	f.expectEvent("pusher:connection_established")
	f.expectEvent("pusher_internal:subscription_succeeded")
	ping := clientFrame(`{"event":"pusher:ping"}`)
	f.feed(append(append([]byte(nil), ping...), ping...))
	if f.writes != 2 {
		t.Fatalf("%d writes after two pings in one read, want 2 in all", f.writes)
	}
	f.expectEvent("pusher:pong")
	f.expectEvent("pusher:pong")
	f.expectNothing()
}
