package pusher

import "time"

// Tracker keeps the few cluster-wide facts that webhooks, subscription
// counts and watchlists are decided on, so that each transition is seen
// once in the whole cluster, not once per node: whether a key (a channel, a
// presence user on a channel, a signed-in user) is held by any node, and
// cluster-wide counters.
//
// Keys are opaque strings chosen by the engine, unique within an app (see
// the key* helpers). A node holds a key from its own first holder to its
// last: the engine calls Hold when its local count of a key goes 0 -> 1 and
// Release when it goes 1 -> 0, in that order, never Hold twice in a row.
//
// Implementations are goroutine-safe and never wait: every method only
// queues and returns; the engine calls it outside its registry locks but
// in the order of its changes (one change's calls at a time per stripe).
// Results come through the callbacks, from any goroutine, never from the
// calling one while it holds a lock of the caller's (so a callback may call
// back into the engine). For one key, the operations take effect in the
// order they were called and their callbacks run in that order.
//
// When the tracker cannot reach its store (Redis down), Hold answers
// first=false, Release last=false, Count is skipped (its callback is not
// called) and Holding answers all false: nothing is announced rather than
// something wrong, and the loss is counted by the implementation.
type Tracker interface {
	// Hold records that this node now holds key. cb (may be nil) gets
	// first=true when no node held the key and no Release of it was waiting
	// out its delay: the key has become held in the cluster. When a Release
	// was waiting, Hold cancels it (that Release's callback gets false) and
	// first is false: seen from outside the key was never released.
	Hold(app *App, key string, cb func(first bool))
	// Release records that this node no longer holds key. When no node holds
	// it any more, the release waits delay (0: none); cb then gets last=true
	// if the key is still held nowhere and was not held again meanwhile.
	// Otherwise cb gets false. cb (may be nil) is called exactly once. If
	// the node dies while the delay runs, cb is never called: the release
	// is not announced (see the implementation's guarantees).
	Release(app *App, key string, delay time.Duration, cb func(last bool))
	// Count adds delta (may be 0, to read) to the cluster-wide counter key
	// and reports its new total and a sequence number: of two totals of the
	// same key, the one with the larger seq is the later. cb must not be nil.
	Count(app *App, key string, delta int64, cb func(total int64, seq uint64))
	// Holding reports, for each of keys, whether any node holds it (a key
	// whose Release waits out its delay counts as not held). cb must not be
	// nil and gets a slice as long as keys.
	Holding(app *App, keys []string, cb func(held []bool))
}

// Tracker keys. Each names what it tracks; the separator cannot occur in a
// channel name.
func keyChannel(channel string) string      { return "c:" + channel }
func keyMember(channel, user string) string { return "m:" + channel + "\n" + user }
func keyUser(user string) string            { return "u:" + user }
func keyCount(channel string) string        { return "n:" + channel }
