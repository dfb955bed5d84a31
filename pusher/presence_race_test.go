package pusher

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// The tests below hold a shard's drain (its loop tasks wait in a queue, see
// queuedEnv) between a change of a presence channel's members and a new
// subscription on the same shard, so that the member_added or
// member_removed of the change is still in the shard's inbox when the new
// subscriber reads its member list: the race happens every time. The new
// subscriber must see the change once, in its list, and not again as an
// event.

const raceChannel = "presence-room"

// presenceBlock is the presence data of subscription_succeeded for users
// "1".."9" named as in presenceData(id, "u"+id), in the given order.
func presenceBlock(ids ...string) string {
	var b strings.Builder
	b.WriteString(`{"presence":{"count":`)
	b.WriteString(strconv.Itoa(len(ids)))
	b.WriteString(`,"ids":[`)
	b.WriteString(strings.Join(ids, ","))
	b.WriteString(`],"hash":{`)
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + id + `":{"name":"u` + id + `"}`)
	}
	b.WriteString(`}}}`)
	return b.String()
}

// userData is the channel_data of user id.
func userData(id string) string { return presenceData(id, "u"+id) }

// joinQueued subscribes c to raceChannel as user id without running the
// shard's queued tasks, and asserts its subscription_succeeded lists want.
func (e *testEnv) joinQueued(c *client, id string, want ...string) {
	e.t.Helper()
	data := userData(id)
	c.send(subMsg(raceChannel, chanAuth(e.app.Key, e.app.Secret, c.id(), raceChannel, data), data))
	c.expect(succeeded(raceChannel, presenceBlock(want...)))
}

func runAll(q *[]func()) {
	for runOne(q) {
	}
}

// remoteMember is user id as another node reports it.
func remoteMember(id string) PresenceMember {
	return PresenceMember{Key: id, ID: json.RawMessage(id), Info: json.RawMessage(`{"name":"u` + id + `"}`), Data: userData(id)}
}

func TestMemberAddedNotDuplicatedWhenSubscribingBeforeDrain(t *testing.T) {
	for round := range 20 {
		e, q := queuedEnv(t, 1+round%3)
		a := e.connect()
		e.joinQueued(a, "1", "1")
		// a's member_added waits in the inbox while b subscribes.
		b := e.connect()
		e.joinQueued(b, "2", "1", "2")
		if len(*q) == 0 {
			t.Fatal("no drain queued")
		}
		runAll(q)
		a.expect(memberAdded(raceChannel, userData("2")))
		b.expectNothing()
		// A third member, with both changes queued.
		c := e.connect()
		e.joinQueued(c, "3", "1", "2", "3")
		d := e.connect()
		e.joinQueued(d, "4", "1", "2", "3", "4")
		runAll(q)
		a.expect(memberAdded(raceChannel, userData("3")), memberAdded(raceChannel, userData("4")))
		b.expect(memberAdded(raceChannel, userData("3")), memberAdded(raceChannel, userData("4")))
		c.expect(memberAdded(raceChannel, userData("4")))
		d.expectNothing()
		// A second connection of a user already there announces nothing.
		a2 := e.connect()
		e.joinQueued(a2, "1", "1", "2", "3", "4")
		runAll(q)
		for _, x := range []*client{a, b, c, d, a2} {
			x.expectNothing()
		}
	}
}

func TestMemberRemovedNotSentWhenSubscribingBeforeDrain(t *testing.T) {
	for round := range 20 {
		e, q := queuedEnv(t, 1+round%3)
		x := e.connect()
		e.joinQueued(x, "1", "1")
		a := e.connect()
		e.joinQueued(a, "2", "1", "2")
		runAll(q)
		x.expect(memberAdded(raceChannel, userData("2")))
		// a leaves; its member_removed waits in the inbox while b
		// subscribes.
		if round%2 == 0 {
			a.send(unsubMsg(raceChannel))
		} else {
			e.close(a)
		}
		b := e.connect()
		e.joinQueued(b, "3", "1", "3")
		runAll(q)
		x.expect(memberRemoved(raceChannel, "2"), memberAdded(raceChannel, userData("3")))
		b.expectNothing()
		a.expectNothing()
		// The user comes back and leaves again, both queued, before c
		// subscribes: c sees neither.
		a = e.connect()
		e.joinQueued(a, "2", "1", "3", "2")
		a.send(unsubMsg(raceChannel))
		c := e.connect()
		e.joinQueued(c, "4", "1", "3", "4")
		runAll(q)
		x.expect(memberAdded(raceChannel, userData("2")), memberRemoved(raceChannel, "2"), memberAdded(raceChannel, userData("4")))
		b.expect(memberAdded(raceChannel, userData("2")), memberRemoved(raceChannel, "2"), memberAdded(raceChannel, userData("4")))
		c.expectNothing()
	}
}

// The same with the changes another node reports, as the cluster broker
// applies them (RemotePresenceJoin and Leave, ReplaceNodePresence,
// DropNode).
func TestRemoteMemberChangesNotDuplicatedWhenSubscribingBeforeDrain(t *testing.T) {
	for round := range 20 {
		e, q := queuedEnv(t, 1+round%3)
		x := e.connect()
		e.joinQueued(x, "1", "1")
		runAll(q)

		e.srv.RemotePresenceJoin("n2", e.app, raceChannel, remoteMember("9"))
		b := e.connect()
		e.joinQueued(b, "2", "1", "9", "2")
		runAll(q)
		x.expect(memberAdded(raceChannel, userData("9")), memberAdded(raceChannel, userData("2")))
		b.expectNothing()

		e.srv.RemotePresenceLeave("n2", e.app, raceChannel, "9")
		c := e.connect()
		e.joinQueued(c, "3", "1", "2", "3")
		runAll(q)
		for _, s := range []*client{x, b} {
			s.expect(memberRemoved(raceChannel, "9"), memberAdded(raceChannel, userData("3")))
		}
		c.expectNothing()

		e.srv.ReplaceNodePresence("n2", []PresenceChange{{App: e.app, Channel: raceChannel, Member: remoteMember("8")}})
		d := e.connect()
		e.joinQueued(d, "4", "1", "2", "3", "8", "4")
		runAll(q)
		for _, s := range []*client{x, b, c} {
			s.expect(memberAdded(raceChannel, userData("8")), memberAdded(raceChannel, userData("4")))
		}
		d.expectNothing()

		e.srv.ReplaceNodePresence("n2", []PresenceChange{{App: e.app, Channel: raceChannel, Member: remoteMember("7")}})
		f := e.connect()
		e.joinQueued(f, "5", "1", "2", "3", "4", "7", "5")
		runAll(q)
		for _, s := range []*client{x, b, c, d} {
			s.expect(memberRemoved(raceChannel, "8"), memberAdded(raceChannel, userData("7")), memberAdded(raceChannel, userData("5")))
		}
		f.expectNothing()

		e.srv.DropNode("n2")
		g := e.connect()
		e.joinQueued(g, "6", "1", "2", "3", "4", "5", "6")
		runAll(q)
		for _, s := range []*client{x, b, c, d, f} {
			s.expect(memberRemoved(raceChannel, "7"), memberAdded(raceChannel, userData("6")))
		}
		g.expectNothing()
	}
}

// lateBroker is a broker whose Await keeps every subscription pending until
// the test completes it.
type lateBroker struct {
	NopBroker
	waiting []func()
}

func (b *lateBroker) Await(_ *App, _ string, done func()) bool {
	b.waiting = append(b.waiting, done)
	return false
}

// A subscription answered late reads its member list when it is answered:
// a change made before that and drained after it is in the list and not
// sent again.
func TestLateSubscriptionSkipsChangesInItsList(t *testing.T) {
	for round := range 20 {
		e, q := queuedEnv(t, 1+round%3)
		br := &lateBroker{}
		e.srv.SetBroker(br)
		x := e.connect()
		data := userData("1")
		x.send(subMsg(raceChannel, chanAuth(e.app.Key, e.app.Secret, x.id(), raceChannel, data), data))
		br.waiting[0]()
		br.waiting = nil
		runAll(q)
		x.expect(succeeded(raceChannel, presenceBlock("1")))

		b := e.connect()
		data = userData("2")
		b.send(subMsg(raceChannel, chanAuth(e.app.Key, e.app.Secret, b.id(), raceChannel, data), data))
		runAll(q) // the drain of user 2's member_added; b is pending
		x.expect(memberAdded(raceChannel, userData("2")))
		// b's answer is queued before the drain of user 9's member_added.
		br.waiting[0]()
		e.srv.RemotePresenceJoin("n2", e.app, raceChannel, remoteMember("9"))
		if len(*q) != 2 {
			t.Fatalf("%d loop tasks queued, want the answer and a drain", len(*q))
		}
		runAll(q)
		x.expect(memberAdded(raceChannel, userData("9")))
		b.expect(succeeded(raceChannel, presenceBlock("1", "2", "9")))
	}
}

// A subscriber that subscribes again gets the member list again; a change
// in it that is still queued is not sent after it.
func TestResubscribeSkipsChangesInItsList(t *testing.T) {
	for round := range 20 {
		e, q := queuedEnv(t, 1+round%3)
		x := e.connect()
		e.joinQueued(x, "1", "1")
		runAll(q)
		a := e.connect()
		e.joinQueued(a, "2", "1", "2")
		e.joinQueued(x, "1", "1", "2")
		runAll(q)
		x.expectNothing()
		a.expectNothing()
	}
}
