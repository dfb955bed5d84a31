package pusher

import "strings"

// ChannelKind is the type of a channel, chosen by its name's prefix.
type ChannelKind uint8

const (
	// KindPublic channels need no authorization.
	KindPublic ChannelKind = iota
	// KindPrivate channels ("private-", including "private-encrypted-") need a signed auth.
	KindPrivate
	// KindPresence channels ("presence-") need a signed auth with channel_data and track members.
	KindPresence
	// KindUser is "#server-to-user-{id}": only a connection signed in as {id} may subscribe.
	KindUser
)

// String names the kind.
func (k ChannelKind) String() string {
	switch k {
	case KindPrivate:
		return "private"
	case KindPresence:
		return "presence"
	case KindUser:
		return "user"
	default:
		return "public"
	}
}

// serverToUserPrefix is the channel pusher-js subscribes to after a sign-in.
const serverToUserPrefix = "#server-to-user-"

// Classify returns the kind of a channel and whether it is a cache channel.
// The rules are Pusher's: "private-", "private-encrypted-", "presence-",
// "cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-".
func Classify(name string) (kind ChannelKind, cache bool) {
	switch {
	case strings.HasPrefix(name, "private-"):
		rest := name[len("private-"):]
		rest = strings.TrimPrefix(rest, "encrypted-")
		return KindPrivate, strings.HasPrefix(rest, "cache-")
	case strings.HasPrefix(name, "presence-"):
		return KindPresence, strings.HasPrefix(name, "presence-cache-")
	case strings.HasPrefix(name, "cache-"):
		return KindPublic, true
	case strings.HasPrefix(name, serverToUserPrefix):
		return KindUser, false
	}
	return KindPublic, false
}

// validChannelName reports whether name may be subscribed to or triggered on:
// non-empty, at most max bytes, and no control characters, spaces or quotes.
// It is laxer than Pusher's character set on purpose, so that channel names
// Laravel applications use with Reverb keep working.
func validChannelName(name string, max int) bool {
	if name == "" || len(name) > max {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= 0x20 || c == 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// validEventName reports whether an event name is acceptable.
func validEventName(name string, max int) bool {
	if name == "" || len(name) > max {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 0x20 || name[i] == 0x7f {
			return false
		}
	}
	return true
}
