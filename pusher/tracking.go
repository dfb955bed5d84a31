package pusher

import (
	"strings"
	"time"

	"github.com/reverbgo/reverb/webhooks"
)

// hubHooks is what the registry tells, under its lock and in the order it
// changed, about the keys this node starts and stops holding. The
// implementation (the Server) only queues on the Tracker.
type hubHooks interface {
	channelHeld(app *App, name string)
	channelFreed(app *App, name string)
	memberHeld(app *App, channel, userKey string)
	memberFreed(app *App, channel, userKey string)
}

// hookEnabled reports whether an app's webhooks of that name are sent.
func (srv *Server) hookEnabled(app *App, name string) bool {
	return srv.sink != nil && srv.sink.Enabled(app.ID, name)
}

func (srv *Server) emit(app *App, ev webhooks.Event) {
	if srv.sink != nil {
		srv.sink.Emit(app.ID, ev)
	}
}

// vacateDelay is Options.VacateDelay, with negative as none.
func (srv *Server) vacateDelay() time.Duration {
	return max(srv.opts.VacateDelay, 0)
}

// channelHeld: this node's first subscription to a channel. Called from
// the hub's effects (in its stripe's order, no lock held).
func (srv *Server) channelHeld(app *App, name string) {
	if !srv.hookEnabled(app, webhooks.ChannelOccupied) {
		return
	}
	srv.tracker.Hold(app, keyChannel(name), func(first bool) {
		if first {
			srv.emit(app, webhooks.Event{Name: webhooks.ChannelOccupied, Channel: name})
		}
	})
}

// channelFreed: this node's last subscription to a channel left. Called
// from the hub's effects (in its stripe's order, no lock held).
func (srv *Server) channelFreed(app *App, name string) {
	if !srv.hookEnabled(app, webhooks.ChannelVacated) {
		return
	}
	srv.tracker.Release(app, keyChannel(name), srv.vacateDelay(), func(last bool) {
		if last {
			srv.emit(app, webhooks.Event{Name: webhooks.ChannelVacated, Channel: name})
		}
	})
}

// memberHeld: a presence user's first connection to a channel on this node.
// Called from the hub's effects (in its stripe's order, no lock held).
func (srv *Server) memberHeld(app *App, channel, userKey string) {
	if !srv.hookEnabled(app, webhooks.MemberAdded) {
		return
	}
	srv.tracker.Hold(app, keyMember(channel, userKey), func(first bool) {
		if first {
			srv.emit(app, webhooks.Event{Name: webhooks.MemberAdded, Channel: channel, UserID: userKey})
		}
	})
}

// memberFreed: a presence user's last connection to a channel on this node
// left. Called from the hub's effects (in its stripe's order, no lock held).
func (srv *Server) memberFreed(app *App, channel, userKey string) {
	if !srv.hookEnabled(app, webhooks.MemberRemoved) {
		return
	}
	srv.tracker.Release(app, keyMember(channel, userKey), srv.vacateDelay(), func(last bool) {
		if last {
			srv.emit(app, webhooks.Event{Name: webhooks.MemberRemoved, Channel: channel, UserID: userKey})
		}
	})
}

// splitMemberKey undoes keyMember's "m:" + channel + "\n" + user (without
// the prefix): channel names cannot hold a newline, user keys may.
func splitMemberKey(rest string) (channel, user string, ok bool) {
	i := strings.IndexByte(rest, '\n')
	if i <= 0 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

// KeyReleased implements Node: a key a dead or stopped node held is now
// held nowhere, and is announced as this node announces its own releases:
// channel_vacated for a channel, member_removed for a presence user,
// offline (to the other nodes and this node's watchers) for a signed-in
// user. Unknown keys are ignored. Goroutine-safe.
func (srv *Server) KeyReleased(app *App, key string) {
	if app == nil || len(key) < 2 {
		return
	}
	rest := key[2:]
	switch key[:2] {
	case "c:":
		if srv.hookEnabled(app, webhooks.ChannelVacated) {
			srv.emit(app, webhooks.Event{Name: webhooks.ChannelVacated, Channel: rest})
		}
	case "m:":
		if ch, user, ok := splitMemberKey(rest); ok && srv.hookEnabled(app, webhooks.MemberRemoved) {
			srv.emit(app, webhooks.Event{Name: webhooks.MemberRemoved, Channel: ch, UserID: user})
		}
	case "u:":
		if rest != "" {
			srv.announceOnline(app, rest, false)
		}
	}
}

// KeyCounted implements Node: a dead or stopped node's share of a channel's
// subscription count was removed; the new total is announced as this node's
// own counts are (to the other nodes, this node's subscribers and the
// subscription_count webhook). Other keys are ignored. Goroutine-safe.
func (srv *Server) KeyCounted(app *App, key string, total int64, seq uint64) {
	if app == nil || !strings.HasPrefix(key, "n:") || len(key) == 2 {
		return
	}
	srv.counted(app, key[2:], total, seq)
}
