package cluster

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reverbgo/reverb/pusher"
)

func queueMsgs(k kind, n int) []outMsg {
	out := make([]outMsg, n)
	for i := range out {
		out[i] = outMsg{channel: "ch", payload: []byte(string(k) + strconv.Itoa(i)), kind: k}
	}
	return out
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestPublishQueueBatching(t *testing.T) {
	q := newPublishQueue(100)
	if q.take() != nil {
		t.Fatal("take of an empty queue returned a batch")
	}
	select {
	case <-q.wake:
		t.Fatal("wake token before anything was queued")
	default:
	}
	done1, ok := q.addEvents(queueMsgs(kindEvent, 2))
	if !ok {
		t.Fatal("addEvents refused")
	}
	select {
	case <-q.wake:
	default:
		t.Fatal("no wake token after addEvents")
	}
	first := q.take()
	if first == nil || len(first.msgs) != 2 || first.events != 2 || first.done != done1 {
		t.Fatalf("first batch %+v", first)
	}
	// The first batch is in flight: everything added now leaves together.
	done2, ok := q.addEvents(queueMsgs(kindEvent, 3))
	if !ok {
		t.Fatal("addEvents refused")
	}
	if !q.addControl(outMsg{channel: "ctl", payload: []byte("p"), kind: kindPing}) {
		t.Fatal("addControl refused")
	}
	done3, _ := q.addEvents(queueMsgs(kindEvent, 1))
	if done2 != done3 || done2 == done1 {
		t.Error("events added while a batch is in flight do not share the next batch's done")
	}
	if q.len() != 5 {
		t.Errorf("len = %d, want 5", q.len())
	}
	second := q.take()
	if second == nil || len(second.msgs) != 5 || second.events != 4 {
		t.Fatalf("second batch: %+v", second)
	}
	var order []string
	for _, m := range second.msgs {
		order = append(order, string(m.payload))
	}
	if want := "e0 e1 e2 p e0"; strings.Join(order, " ") != want {
		t.Errorf("second batch order %q, want %q", strings.Join(order, " "), want)
	}
	if q.take() != nil || q.len() != 0 {
		t.Error("the queue is not empty after two takes")
	}
	if isClosed(first.done) || isClosed(second.done) {
		t.Error("done closed before the flush")
	}
}

func TestPublishQueueRefusesEventsAllOrNone(t *testing.T) {
	q := newPublishQueue(5)
	if _, ok := q.addEvents(queueMsgs(kindEvent, 3)); !ok {
		t.Fatal("3 of 5 refused")
	}
	if _, ok := q.addEvents(queueMsgs(kindEvent, 3)); ok {
		t.Fatal("3 more accepted past the limit of 5")
	}
	if q.len() != 3 {
		t.Fatalf("a refused addEvents queued part of its events: len %d", q.len())
	}
	if _, ok := q.addEvents(queueMsgs(kindEvent, 2)); !ok {
		t.Fatal("2 more (exactly the limit) refused")
	}
	if _, ok := q.addEvents(queueMsgs(kindEvent, 1)); ok {
		t.Fatal("an event past the limit accepted")
	}
	// Control envelopes count against the events' limit too.
	q.take()
	for i := 0; i < 4; i++ {
		q.addControl(outMsg{kind: kindPing})
	}
	if _, ok := q.addEvents(queueMsgs(kindEvent, 2)); ok {
		t.Fatal("2 events accepted behind 4 control envelopes, limit 5")
	}
	if _, ok := q.addEvents(queueMsgs(kindEvent, 1)); !ok {
		t.Fatal("1 event refused behind 4 control envelopes, limit 5")
	}
	// A taken batch frees the room at once.
	q.take()
	if _, ok := q.addEvents(queueMsgs(kindEvent, 5)); !ok {
		t.Fatal("a full limit refused after take")
	}
}

func TestPublishQueueControlUpToTwiceTheLimit(t *testing.T) {
	q := newPublishQueue(5)
	if _, ok := q.addEvents(queueMsgs(kindEvent, 5)); !ok {
		t.Fatal("refused")
	}
	for i := 0; i < 5; i++ {
		if !q.addControl(outMsg{kind: kindJoin}) {
			t.Fatalf("control envelope %d refused below twice the limit", i)
		}
	}
	if q.addControl(outMsg{kind: kindJoin}) {
		t.Fatal("control envelope accepted at twice the limit")
	}
	if q.len() != 10 {
		t.Fatalf("len %d, want 10", q.len())
	}
	b := q.take()
	if b.events != 5 || len(b.msgs) != 10 {
		t.Fatalf("batch events %d msgs %d", b.events, len(b.msgs))
	}
	if !q.addControl(outMsg{kind: kindJoin}) {
		t.Fatal("control refused after take")
	}
}

// The done channel of a Publish is closed once the round trip carrying
// its events is over, not before.
func TestMemPublishDoneAfterFlush(t *testing.T) {
	bus := newMemBus()
	n1 := bus.startNode(t, nil)
	n2 := bus.startNode(t, nil)
	n2.waitNodes(1)
	c := n2.connect()
	c.subscribe("flush", "")
	bus2 := n2.busChannel("flush")

	release := n1.tr.blockPublishes()
	done, err := n1.b.Publish(n1.app, []pusher.Outgoing{{Channel: "flush", Msg: eventMsg("flush", "e", "1")}})
	if err != nil || done == nil {
		t.Fatalf("Publish: %v, done %v", err, done)
	}
	waitUntil(t, "the publish is in flight", func() bool { return n1.tr.blockedPublishes() == 1 })
	if isClosed(done) {
		t.Fatal("done closed while the publish is in flight")
	}
	if n2.tr.queued(kindEvent) != 0 {
		t.Fatal("event reached node 2 before the publish was executed")
	}
	release()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("done not closed after the flush")
	}
	// Redis executed the publish: node 2 has it queued already.
	if n2.tr.queued(kindEvent) != 1 {
		t.Fatalf("done closed but node 2 has %d events queued", n2.tr.queued(kindEvent))
	}
	c.waitEvent("flush", "e", "1")
	if got := n2.tr.receivedOn(bus2); got != 1 {
		t.Errorf("node 2 received %d envelopes on %s", got, bus2)
	}
	if st := n1.b.Stats(); st.Batches < 1 || st.Published < 1 || st.Queued != 0 {
		t.Errorf("stats %+v", st)
	}
}
