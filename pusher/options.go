package pusher

import (
	"github.com/reverbgo/reverb/webhooks"

	"log/slog"
	"time"
)

// Options are the node-wide settings of a Server. The zero value of each
// field means its documented default; Normalize fills them in.
type Options struct {
	// Apps served by this node. At least one is required.
	Apps []*App
	// PathPrefix is the optional prefix of every route ("/ws" serves
	// "/ws/app/{key}" and "/ws/apps/{id}/..."). It is stripped before HTTP API
	// signatures are checked. Default: "" (none).
	PathPrefix string
	// MaxRequestSize caps a whole HTTP request (head and body), for API calls
	// and WebSocket upgrades alike; larger ones get 413. Default: 10000 bytes.
	MaxRequestSize int
	// AuthTimestampWindow is how far an HTTP API request's auth_timestamp may
	// be from the server clock. Negative turns the check off. Default: 600 s.
	AuthTimestampWindow time.Duration
	// MaxChannelsPerEvent caps the channels of one triggered event. Default: 100.
	MaxChannelsPerEvent int
	// MaxBatchSize caps the events of one batch_events request. Default: 10.
	MaxBatchSize int
	// MaxNameLength caps channel and event names, in bytes. Default: 200.
	MaxNameLength int
	// MaxChannelsPerConnection caps the subscriptions of one connection; the
	// next subscribe gets pusher:subscription_error / 4301. Default: 1000.
	MaxChannelsPerConnection int
	// MaxPresenceMembers caps the distinct users of one presence channel on
	// this node. Default: 100 (Pusher's limit).
	MaxPresenceMembers int
	// MaxUserInfoSize caps the user_info of a presence member, in bytes.
	// Default: 1024 (Pusher's limit).
	MaxUserInfoSize int
	// ClientEventsPerSecond caps client events per connection per second;
	// excess ones get pusher:error 4301 and are dropped. Default: 10 (Pusher's).
	ClientEventsPerSecond int
	// SubscriptionsPerSecond caps pusher:subscribe messages per connection
	// per second; excess ones get pusher:subscription_error and 4301.
	// Default: 100.
	SubscriptionsPerSecond int
	// MaxOutboundBuffer caps the bytes waiting to be written to one
	// connection; a connection past it is a slow consumer and is closed.
	// Negative means no cap. Default: 1 MiB.
	MaxOutboundBuffer int
	// FanoutChunk is how many connections a loop writes broadcasts to
	// before it lets other work run (reading requests, writing HTTP answers
	// and control replies); the rest of the fan-out follows right after.
	// Default: 256.
	FanoutChunk int
	// PongTimeout is how long a pinged connection may stay silent before it is
	// closed with 4201. Default: 30 s.
	PongTimeout time.Duration
	// Now is the engine's clock: it dates inbound activity (which decides
	// when a silent connection is pinged), the rate limit windows and the
	// cached events of cache channels. Shard.Sweep and Server.SweepCaches
	// take the time from their caller instead, which should read the same
	// clock. Tests set it to move time by hand. It must be goroutine-safe.
	// Default: nil, which means time.Now.
	Now func() time.Time
	// APIObserver, when set, is called after every HTTP API request with its
	// route (one of the Route* names), status and duration, from the API
	// worker goroutines; it must be goroutine-safe and fast. Default: nil.
	APIObserver func(route string, status int, d time.Duration)
	// Logger receives the server's logs. Default: slog.Default().
	Logger *slog.Logger
	// Debug logs the message flow (connections, messages, broadcasts) at
	// debug level, as `reverb:start --debug` does. Default: false.
	Debug bool
	// Webhooks receives the webhook events of every app (channel_occupied,
	// member_added, client_event, ...), decided cluster-wide through the
	// Tracker. *webhooks.Dispatcher implements it. Default: nil (none).
	Webhooks WebhookSink
	// VacateDelay is how long channel_vacated and member_removed wait before
	// they are sent; nothing is sent if the channel or user is back within
	// it. Negative means no delay. Default: 3 s (as Pusher).
	VacateDelay time.Duration
}

// WebhookSink receives webhook events. Enabled and Emit must be
// goroutine-safe and must never block: the engine calls them from loops.
type WebhookSink interface {
	// Enabled reports whether an event of that name for the app would be
	// sent anywhere, so that the engine does no work for nothing.
	Enabled(appID, name string) bool
	// Emit hands one event over for delivery.
	Emit(appID string, ev webhooks.Event)
}

// Defaults used by Normalize.
const (
	DefaultMaxRequestSize           = 10000
	DefaultAuthTimestampWindow      = 600 * time.Second
	DefaultMaxChannelsPerEvent      = 100
	DefaultMaxBatchSize             = 10
	DefaultMaxNameLength            = 200
	DefaultMaxChannelsPerConnection = 1000
	DefaultMaxPresenceMembers       = 100
	DefaultMaxUserInfoSize          = 1024
	DefaultClientEventsPerSecond    = 10
	DefaultSubscriptionsPerSecond   = 100
	DefaultMaxOutboundBuffer        = 1 << 20
	DefaultFanoutChunk              = 256
	DefaultPongTimeout              = 30 * time.Second
	DefaultPingInterval             = 60 * time.Second
	DefaultActivityTimeout          = 30 * time.Second
	DefaultMaxMessageSize           = 10000
	DefaultVacateDelay              = 3 * time.Second
)

// Normalize fills zero fields with their defaults.
func (o *Options) Normalize() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.MaxRequestSize, DefaultMaxRequestSize)
	def(&o.MaxChannelsPerEvent, DefaultMaxChannelsPerEvent)
	def(&o.MaxBatchSize, DefaultMaxBatchSize)
	def(&o.MaxNameLength, DefaultMaxNameLength)
	def(&o.MaxChannelsPerConnection, DefaultMaxChannelsPerConnection)
	def(&o.MaxPresenceMembers, DefaultMaxPresenceMembers)
	def(&o.MaxUserInfoSize, DefaultMaxUserInfoSize)
	def(&o.ClientEventsPerSecond, DefaultClientEventsPerSecond)
	def(&o.SubscriptionsPerSecond, DefaultSubscriptionsPerSecond)
	def(&o.MaxOutboundBuffer, DefaultMaxOutboundBuffer)
	def(&o.FanoutChunk, DefaultFanoutChunk)
	if o.AuthTimestampWindow == 0 {
		o.AuthTimestampWindow = DefaultAuthTimestampWindow
	}
	if o.PongTimeout == 0 {
		o.PongTimeout = DefaultPongTimeout
	}
	if o.VacateDelay == 0 {
		o.VacateDelay = DefaultVacateDelay
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	for _, a := range o.Apps {
		if a.PingInterval == 0 {
			a.PingInterval = DefaultPingInterval
		}
		if a.ActivityTimeout == 0 {
			a.ActivityTimeout = DefaultActivityTimeout
		}
		if len(a.AllowedOrigins) == 0 {
			a.AllowedOrigins = []string{"*"}
		}
		if a.RateLimit.Enabled {
			if a.RateLimit.MaxAttempts == 0 {
				a.RateLimit.MaxAttempts = 60
			}
			if a.RateLimit.Decay == 0 {
				a.RateLimit.Decay = 60 * time.Second
			}
		}
	}
}
