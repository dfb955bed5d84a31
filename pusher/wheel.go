package pusher

import (
	"math"
	"time"
)

// wheelSlots is the number of one-second slots of a shard's timing wheel,
// a power of two: the wheel spans 256 s, more than the usual ping_interval
// plus pong_timeout. A later deadline waits in the farthest slot and is
// looked at again from there.
const wheelSlots = 256

// wheelShrinkMin is the capacity under which an emptied slot always keeps
// its array.
const wheelShrinkMin = 4096

// wheel is a shard's lazy timing wheel of sessions: each open session sits
// in the slot of the second when Sweep must look at it next (its check
// time, see checkAt). Inbound traffic does not move a session: Touch only
// makes its deadline later (unless the clock went back, see wheelBehind),
// and the sweep that reaches its slot finds that out and moves it to the
// slot of its new check time. A session is thus never in a slot later than
// the one where it comes due, and a sweep looks only at the sessions of the
// slots it reaches. A session closed but not yet released leaves the wheel
// when its slot comes; one released leaves at once. Loop-only, like its
// Shard.
//
// A slot is a slice of sessions; a session knows its slot and its index in
// it, so it leaves in O(1) by swapping the last one into its place. Slots
// keep their arrays, so steady traffic allocates nothing; an emptied slot
// whose array is far larger than the average slot needs gives it up.
type wheel struct {
	slots [wheelSlots][]*Session
	// next is the second (Unix time / 1 s) of the first slot that a sweep
	// has not fully processed: the wheel's slots hold seconds next to
	// next+wheelSlots-1.
	next  int64
	n     int   // sessions in the wheel
	lastT int64 // the time (Unix ns) of the latest sweep since the wheel was built
}

// floorSec returns the second (Unix time / 1 s, rounded down) of ns.
func floorSec(ns int64) int64 {
	s := ns / int64(time.Second)
	if ns%int64(time.Second) < 0 {
		s--
	}
	return s
}

// satAdd returns a+b, saturated at math.MaxInt64 or math.MinInt64.
func satAdd(a, b int64) int64 {
	c := a + b
	if (b > 0 && c < a) || (b < 0 && c > a) {
		if b > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return c
}

// checkAt returns when, at the earliest, s may need a ping or a close,
// seen at time t (Unix ns) of a sweep, or at its opening: a silent session
// at lastSeen+ping_interval; a pinged one at its pong deadline, or at
// t+ping_interval if sooner, since a message arriving after t makes it due
// for a ping from then on. That holds while messages are dated no earlier
// than lastSeen and the last sweep; Touch moves a session whose message
// is dated earlier (wheelBehind), so the wheel stays exact whatever the
// clocks do.
func (sh *Shard) checkAt(s *Session, t int64) int64 {
	pi := int64(s.app.PingInterval)
	if s.pingedAt != 0 {
		return min(satAdd(s.pingedAt, int64(sh.srv.opts.PongTimeout)), satAdd(t, pi))
	}
	return satAdd(s.lastSeen, pi)
}

// add puts s in the slot of second sec, brought within [lo, hi], which
// must lie within the wheel's span.
func (w *wheel) add(s *Session, sec, lo, hi int64) {
	sec = max(lo, min(sec, hi))
	i := int(sec & (wheelSlots - 1))
	s.wslot = int32(i) + 1
	s.wpos = int32(len(w.slots[i]))
	w.slots[i] = append(w.slots[i], s)
	w.n++
}

// remove takes s out of the wheel, if it is in it.
func (w *wheel) remove(s *Session) {
	if s.wslot == 0 {
		return
	}
	slot := w.slots[s.wslot-1]
	last := len(slot) - 1
	moved := slot[last]
	slot[s.wpos] = moved
	moved.wpos = s.wpos
	slot[last] = nil
	w.slots[s.wslot-1] = slot[:last]
	s.wslot = 0
	w.n--
}

// wheelAdd puts a new session in the wheel. Its clock is the session's.
func (sh *Shard) wheelAdd(s *Session) {
	w := &sh.wheel
	if w.n == 0 {
		// Nothing placed yet: the wheel starts at the session's clock.
		w.next = floorSec(s.lastSeen)
		w.lastT = s.lastSeen
	}
	w.add(s, floorSec(sh.checkAt(s, s.lastSeen)), w.next, w.next+wheelSlots-1)
}

// wheelBehind moves s, just touched at a time before its previous message
// or the last sweep, to the slot of its new deadline. Only a clock that
// went back, or a sweep given a time ahead of Options.Now, gets here.
func (sh *Shard) wheelBehind(s *Session) {
	if s.wslot == 0 {
		return
	}
	w := &sh.wheel
	w.remove(s)
	w.add(s, floorSec(sh.checkAt(s, s.lastSeen)), w.next, w.next+wheelSlots-1)
}

// rewheel empties the wheel and puts every open session in it again from
// second cur, for a sweep at t: when the clock went back, or forward by
// the whole span or more, which costs one pass over the shard's sessions,
// as many as a slot-by-slot advance would at least cost.
func (sh *Shard) rewheel(t, cur int64) {
	w := &sh.wheel
	for i := range w.slots {
		clear(w.slots[i])
		w.slots[i] = w.slots[i][:0]
	}
	w.n = 0
	w.next = cur
	for _, s := range sh.sessions {
		s.wslot = 0
		if !s.closed {
			w.add(s, floorSec(sh.checkAt(s, t)), cur, cur+wheelSlots-1)
		}
	}
}

// sweepWheel is Sweep's work at t (Unix ns): every slot before t's second
// is processed in full, the slot of t's second as far as it is due.
func (sh *Shard) sweepWheel(t int64) {
	w := &sh.wheel
	cur := floorSec(t)
	if w.n == 0 {
		w.next = cur
		w.lastT = t
		return
	}
	if cur < w.next || cur-w.next >= wheelSlots-1 {
		w.lastT = t
		sh.rewheel(t, cur)
	} else {
		// A sweep that went back within the second must not lower it:
		// pinged sessions were placed with the later time.
		w.lastT = max(w.lastT, t)
	}
	for ; w.next < cur; w.next++ {
		sh.sweepSlot(w.next, t, w.next+1)
		i := int(w.next & (wheelSlots - 1))
		if c := cap(w.slots[i]); len(w.slots[i]) == 0 && c > wheelShrinkMin && c > 8*w.n/wheelSlots+wheelShrinkMin {
			w.slots[i] = nil
		}
	}
	sh.sweepSlot(cur, t, cur)
}

// sweepSlot looks at the sessions of the slot of second sec at t: those
// due are pinged or closed as Sweep says, the others whose check time
// moved past sec go to its slot (not before second lo). When sec is t's
// second, the sessions checked again within it stay.
func (sh *Shard) sweepSlot(sec, t, lo int64) {
	w := &sh.wheel
	hi := w.next + wheelSlots - 1
	idx := int(sec & (wheelSlots - 1))
	pongTimeout := int64(sh.srv.opts.PongTimeout)
	// Downwards: a session taken out is replaced by the last one, already
	// looked at; one added (to this slot when it is t's) goes after those
	// left to look at. A ping or a close may release other sessions at once
	// (a transport closing a connection whose write failed), hence the
	// bound on every step.
	for i := len(w.slots[idx]) - 1; i >= 0; i = min(i-1, len(w.slots[idx])-1) {
		s := w.slots[idx][i]
		if s.closed {
			// Nothing more for it: it leaves the wheel until it is released.
			w.remove(s)
			continue
		}
		var due bool
		if s.pingedAt != 0 {
			due = t-s.pingedAt >= pongTimeout
		} else {
			due = t-s.lastSeen >= int64(s.app.PingInterval)
		}
		if !due {
			at := max(lo, min(floorSec(sh.checkAt(s, t)), hi))
			if at == sec {
				continue
			}
			w.remove(s)
			w.add(s, at, lo, hi)
			continue
		}
		w.remove(s)
		if s.pingedAt != 0 {
			s.fail(ErrPongTimeout)
			continue
		}
		s.pingedAt = t
		if s.controlFrames {
			s.writeFrame(framePing)
		} else {
			s.writeFrame(framePusherPing)
		}
		if !s.closed && s.idx >= 0 {
			w.add(s, floorSec(sh.checkAt(s, t)), lo, hi)
		}
	}
}
