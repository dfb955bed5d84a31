package pusher

import (
	"testing"
	"unsafe"
)

// Every subscribed connection holds a Session and at least one
// subscription, so at a million connections each byte of theirs is a
// megabyte of heap. The Go allocator rounds an object up to its size class
// (..., 32, 48, 64, ..., 176, 192, 208, ...): these tests pin the classes
// the structs were brought down to, so that a new field shows up here as a
// choice (find the room, or accept the next class) rather than as a silent
// 8 or 16 bytes more per connection.

func TestSessionSize(t *testing.T) {
	// 176-byte class; 208 before the fields were reordered, the per-second
	// caps shared a window start and the signed-in user went behind a
	// pointer.
	if n := unsafe.Sizeof(Session{}); n > 176 {
		t.Errorf("Session is %d bytes, past the 176-byte size class", n)
	}
}

func TestSubscriptionSize(t *testing.T) {
	// 48-byte class; 112 while the presence fields were inline.
	if n := unsafe.Sizeof(subscription{}); n > 48 {
		t.Errorf("subscription is %d bytes, past the 48-byte size class", n)
	}
}

// Subscriptions keep the registry's copy of the channel name, not the one
// decoded from their message: a channel's name is stored once on the node
// however many connections subscribe, whether or not they escaped it in the
// JSON. Unsubscribing and resubscribing by either spelling still works, and
// so does delivery.
func TestSubscriptionNameShared(t *testing.T) {
	e := newEnv(t, nil)
	a, b, c := e.connect(), e.connect(), e.connect()
	a.send(`{"event":"pusher:subscribe","data":{"channel":"shared-name"}}`)
	a.expect(succeeded("shared-name", ""))
	b.send(`{"event":"pusher:subscribe","data":{"channel":"shared\u002dname"}}`)
	b.expect(succeeded("shared-name", ""))
	c.send(`{"event":"pusher:subscribe","data":"{\"channel\":\"shared-name\"}"}`)
	c.expect(succeeded("shared-name", ""))
	want := unsafe.StringData(a.sess.subs[0].name)
	for i, cl := range []*client{b, c} {
		sub := cl.sess.subs[0]
		if sub.name != "shared-name" || unsafe.StringData(sub.name) != want {
			t.Errorf("client %d: name %q not the shared copy", i+1, sub.name)
		}
	}
	e.srv.Trigger(e.app, "shared-name", "ev", `{}`, "")
	for _, cl := range []*client{a, b, c} {
		cl.expect(apiEvent("ev", `{}`, "shared-name"))
	}
	b.send(`{"event":"pusher:unsubscribe","data":{"channel":"shared\u002dname"}}`)
	if len(b.sess.subs) != 0 {
		t.Fatalf("escaped unsubscribe left %d subscriptions", len(b.sess.subs))
	}
	e.srv.Trigger(e.app, "shared-name", "ev", `{}`, "")
	a.expect(apiEvent("ev", `{}`, "shared-name"))
	b.expectNothing()
}
