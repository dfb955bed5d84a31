package pusher

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// logBroker records, in one sequence, the envelopes the hub hands it and
// the snapshots withLocalPresence passes on.
type logBroker struct {
	NopBroker
	mu  sync.Mutex
	log []logEntry
}

type logEntry struct {
	op      string // join, leave, on, off, held, freed, mheld, mfreed, state
	channel string
	user    string
	state   map[string]bool // op "state": channel+"\n"+user present
}

func (b *logBroker) add(e logEntry) {
	b.mu.Lock()
	b.log = append(b.log, e)
	b.mu.Unlock()
}

func (b *logBroker) PresenceJoin(_ *App, ch string, m PresenceMember) {
	b.add(logEntry{op: "join", channel: ch, user: m.Key})
}
func (b *logBroker) PresenceLeave(_ *App, ch, key string) {
	b.add(logEntry{op: "leave", channel: ch, user: key})
}
func (b *logBroker) Interest(_ *App, ch string, on bool) {
	op := "off"
	if on {
		op = "on"
	}
	b.add(logEntry{op: op, channel: ch})
}

// logHooks records the hub's hook calls into the same log.
type logHooks struct{ b *logBroker }

func (h logHooks) channelHeld(_ *App, name string) { h.b.add(logEntry{op: "held", channel: name}) }
func (h logHooks) channelFreed(_ *App, name string) {
	h.b.add(logEntry{op: "freed", channel: name})
}
func (h logHooks) memberHeld(_ *App, ch, user string) {
	h.b.add(logEntry{op: "mheld", channel: ch, user: user})
}
func (h logHooks) memberFreed(_ *App, ch, user string) {
	h.b.add(logEntry{op: "mfreed", channel: ch, user: user})
}

func TestHubStripes(t *testing.T) {
	n := hubStripes()
	if n < 1024 || n&(n-1) != 0 {
		t.Fatalf("hubStripes() = %d, want a power of two >= 1024", n)
	}
	app := &App{ID: "1"}
	h := newHub([]*App{app}, 1, time.Now)
	used := map[*stripe]bool{}
	for i := range 4000 {
		used[h.stripeOf(app, "c-"+strconv.Itoa(i))] = true
	}
	if len(used) < n/2 {
		t.Errorf("4000 channels use %d of %d stripes", len(used), n)
	}
}

// Concurrent subscribes and unsubscribes of the same channels: the effects
// of each channel reach the broker and the hooks in the registry's order
// (on/held, then off/freed, alternating; member joins and leaves of a user
// alternating, member_added after occupied, member_removed before vacated),
// and the last word of each channel says nobody is there.
func TestHubEffectsOrderConcurrent(t *testing.T) {
	app := &App{ID: "1"}
	for round := range 20 {
		b := &logBroker{}
		h := newHub([]*App{app}, 4, time.Now)
		h.broker, h.hooks = b, logHooks{b}
		chans := []string{"a", "b", "presence-c", "presence-d"}
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 200 {
					name := chans[(g+i)%len(chans)]
					var m *member
					key := ""
					if name[0] == 'p' {
						key = strconv.Itoa(i % 2)
						m = &member{key: key, id: []byte(key), data: "{}"}
					}
					if _, err := h.join(app, name, g, m, 0); err != nil {
						t.Error(err)
						return
					}
					h.leave(app, name, g, key, m != nil)
				}
			}()
		}
		wg.Wait()
		on := map[string]bool{}
		held := map[string]bool{}
		users := map[string]bool{}
		mheld := map[string]bool{}
		for i, e := range b.log {
			u := e.channel + "\n" + e.user
			bad := false
			switch e.op {
			case "on":
				bad, on[e.channel] = on[e.channel], true
			case "off":
				bad, on[e.channel] = !on[e.channel], false
			case "held":
				bad, held[e.channel] = held[e.channel], true
			case "freed":
				bad, held[e.channel] = !held[e.channel] || mheldIn(mheld, e.channel), false
			case "join":
				bad, users[u] = users[u], true
			case "leave":
				bad, users[u] = !users[u], false
			case "mheld":
				bad, mheld[u] = mheld[u] || !held[e.channel], true
			case "mfreed":
				bad, mheld[u] = !mheld[u], false
			}
			if bad {
				t.Fatalf("round %d: entry %d %+v out of order", round, i, e)
			}
		}
		for k, v := range on {
			if v || held[k] {
				t.Fatalf("round %d: channel %q left with interest or held", round, k)
			}
		}
		for k, v := range users {
			if v || mheld[k] {
				t.Fatalf("round %d: user %q left joined", round, k)
			}
		}
	}
}

func mheldIn(mheld map[string]bool, channel string) bool {
	for k, v := range mheld {
		if v && len(k) > len(channel) && k[:len(channel)+1] == channel+"\n" {
			return true
		}
	}
	return false
}

// withLocalPresence while presence users join and leave: replaying the
// envelopes queued before each snapshot gives exactly that snapshot.
func TestHubLocalPresenceConsistent(t *testing.T) {
	app := &App{ID: "1"}
	for round := range 20 {
		b := &logBroker{}
		h := newHub([]*App{app}, 2, time.Now)
		h.broker = b
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("presence-%d", i%5)
					key := strconv.Itoa(g*10 + i%3)
					m := &member{key: key, id: []byte(key), data: "{}"}
					if _, err := h.join(app, name, g%2, m, 0); err != nil {
						t.Error(err)
						return
					}
					_ = h.presenceOf(app, name)
					if i%2 == 0 {
						h.leave(app, name, g%2, key, true)
					}
				}
			}()
		}
		for range 10 {
			h.withLocalPresence(func(state []PresenceChange) {
				m := map[string]bool{}
				for _, c := range state {
					m[c.Channel+"\n"+c.Member.Key] = true
				}
				b.add(logEntry{op: "state", state: m})
			})
		}
		close(stop)
		wg.Wait()
		cur := map[string]bool{}
		for i, e := range b.log {
			switch e.op {
			case "join":
				cur[e.channel+"\n"+e.user] = true
			case "leave":
				delete(cur, e.channel+"\n"+e.user)
			case "state":
				if fmt.Sprint(cur) != fmt.Sprint(e.state) {
					t.Fatalf("round %d: snapshot at %d is %v, envelopes say %v", round, i, e.state, cur)
				}
			}
		}
	}
}

// A cache channel's stored event and its routing are one step: a
// subscriber that joined is routed every event stored after its join, and
// the cached event is the last one routed.
func TestHubCacheRouteConcurrent(t *testing.T) {
	app := &App{ID: "1"}
	h := newHub([]*App{app}, 2, time.Now)
	const name = "cache-x"
	if _, err := h.join(app, name, 1, nil, 0); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				msg := []byte(fmt.Sprintf(`{"event":"e","data":"%d-%d"}`, g, i))
				n := 0
				h.route(app, name, msg, true, func(int) { n++ })
				if n != 1 {
					t.Errorf("routed to %d shards", n)
					return
				}
				if h.cached(app, name) == nil {
					t.Error("no cached event")
					return
				}
			}
		}()
	}
	wg.Wait()
	if c := string(h.cached(app, name)); len(c) == 0 {
		t.Fatal("nothing cached")
	}
}

// The app-wide views visit every stripe: count and list see each channel
// with subscribers once, of their own app only.
func TestHubCountAndList(t *testing.T) {
	a, b := &App{ID: "1"}, &App{ID: "2"}
	h := newHub([]*App{a, b}, 2, time.Now)
	if n := h.count(a); n != 0 {
		t.Fatalf("empty hub: count %d", n)
	}
	if l := h.list(a, ""); l == nil || len(l) != 0 {
		t.Fatalf("empty hub: list %v", l)
	}
	const n = 300
	for i := range n {
		name := fmt.Sprintf("c-%03d", i)
		if _, err := h.join(a, name, i%2, nil, 0); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if _, err := h.join(b, "other-"+name, 0, nil, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := h.count(a); got != n {
		t.Fatalf("count(a) = %d, want %d", got, n)
	}
	if got := h.count(b); got != n/3 {
		t.Fatalf("count(b) = %d, want %d", got, n/3)
	}
	l := h.list(a, "c-1")
	if len(l) != 100 || l[0].Name != "c-100" || l[99].Name != "c-199" {
		t.Fatalf("list(a, c-1): %d channels, %v ... %v", len(l), l[0], l[len(l)-1])
	}
	for i := range n {
		h.leave(a, fmt.Sprintf("c-%03d", i), i%2, "", false)
	}
	if got := h.count(a); got != 0 {
		t.Fatalf("after leaving, count(a) = %d", got)
	}
	if got := h.count(b); got != n/3 {
		t.Fatalf("after a left, count(b) = %d, want %d", got, n/3)
	}
}
