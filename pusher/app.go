package pusher

import (
	"strings"
	"time"
)

// ClientEventPolicy says who may send client events (whispers) on an app's channels.
type ClientEventPolicy uint8

const (
	// ClientEventsMembers accepts client events only from connections subscribed
	// to the channel they send on. It is Reverb's configured default ("members").
	ClientEventsMembers ClientEventPolicy = iota
	// ClientEventsAll accepts client events from any connection of the app ("all").
	ClientEventsAll
	// ClientEventsNone refuses every client event with 4301 ("none", or any other value).
	ClientEventsNone
)

// ParseClientEventPolicy maps a config string to a policy the way Reverb does:
// "members" and "all" are themselves, anything else disables client events.
func ParseClientEventPolicy(s string) ClientEventPolicy {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "members", "":
		return ClientEventsMembers
	case "all":
		return ClientEventsAll
	default:
		return ClientEventsNone
	}
}

// String returns the config spelling of p.
func (p ClientEventPolicy) String() string {
	switch p {
	case ClientEventsMembers:
		return "members"
	case ClientEventsAll:
		return "all"
	default:
		return "none"
	}
}

// RateLimit is the per-connection inbound message limit of an app (Reverb's
// rate_limiting block): at most MaxAttempts data messages per fixed window of
// Decay, counted per connection.
type RateLimit struct {
	// Enabled turns the limit on. Default: false.
	Enabled bool
	// MaxAttempts is the number of messages allowed per window. Default: 60.
	MaxAttempts int
	// Decay is the window length. Default: 60 s.
	Decay time.Duration
	// TerminateOnLimit closes the connection (after 4301) when the limit trips.
	// Default: false.
	TerminateOnLimit bool
}

// App is one application served by the server: its credentials and the
// per-app limits. An App is immutable once the server has started and is safe
// to read from any goroutine.
type App struct {
	// ID is the app id used in HTTP API paths (/apps/{id}/...). Required.
	ID string
	// Key is the public key used in WebSocket URLs (/app/{key}). Required.
	Key string
	// Secret signs channel authorizations and HTTP API requests. Required.
	// Never logged.
	Secret string
	// AllowedOrigins are host patterns ('*' wildcard) matched against the host
	// of the Origin header. A "*" entry allows every origin. Default: ["*"].
	AllowedOrigins []string
	// PingInterval is how long a connection may be silent before the server
	// pings it. Default: 60 s.
	PingInterval time.Duration
	// ActivityTimeout is sent to clients in pusher:connection_established;
	// clients ping after that much silence. Default: 30 s.
	ActivityTimeout time.Duration
	// MaxMessageSize is the largest inbound WebSocket message in bytes; larger
	// ones close the connection with 1009. Zero means unlimited. Default: 10000.
	MaxMessageSize int
	// MaxConnections caps this app's connections on this node; the next one
	// gets pusher:error 4004. Zero means unlimited. Default: 0.
	MaxConnections int
	// ClientEvents says who may send client events. Default: ClientEventsMembers.
	ClientEvents ClientEventPolicy
	// RateLimit limits inbound messages per connection. Default: off.
	RateLimit RateLimit
	// SubscriptionCounting sends pusher_internal:subscription_count to the
	// subscribers of a (non-presence) channel when its cluster-wide count
	// changes, as Pusher's app setting does. Default: false.
	SubscriptionCounting bool
	// WatchlistEvents sends pusher_internal:watchlist_events to signed-in
	// connections whose user_data carries a watchlist. Default: false.
	WatchlistEvents bool
	// Compression offers permessage-deflate (no context takeover) to clients
	// that ask for it. Default: false.
	Compression bool
}

// originAllowed reports whether the host of an Origin header value matches
// one of the app's patterns. Scheme and port are ignored, as Reverb does.
func (a *App) originAllowed(origin string) bool {
	for _, p := range a.AllowedOrigins {
		if p == "*" {
			return true
		}
	}
	host := originHost(origin)
	for _, p := range a.AllowedOrigins {
		if globMatch(p, host) {
			return true
		}
	}
	return false
}

// originHost extracts the host (without port) from an Origin header value such
// as "https://app.example.com:8443".
func originHost(origin string) string {
	h := origin
	if i := strings.Index(h, "://"); i >= 0 {
		h = h[i+3:]
	}
	if i := strings.IndexAny(h, "/?#"); i >= 0 {
		h = h[:i]
	}
	if strings.HasPrefix(h, "[") { // IPv6 literal
		if i := strings.IndexByte(h, ']'); i >= 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	return h
}

// globMatch matches s against pattern where '*' matches any run of
// characters (including none). Matching is case-sensitive, as in Reverb.
func globMatch(pattern, s string) bool {
	// Iterative wildcard match with backtracking to the last star.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
