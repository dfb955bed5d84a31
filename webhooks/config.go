package webhooks

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Config holds the delivery settings shared by every app and endpoint. The
// zero value of each field means its default; Validate reports values that
// are out of range.
type Config struct {
	// Timeout bounds one attempt: connecting, sending the body and reading
	// the answer. An attempt that runs out is a timeout, and is retried.
	// Default: 5s.
	Timeout time.Duration

	// RetryBudget is how long a body is retried after its first attempt.
	// A retry is not started when its start would fall later than the first
	// attempt plus RetryBudget; the body's events are then counted as
	// Failed. Negative means no retries (one attempt). Default: 5m (Pusher
	// retries for about 5 minutes).
	RetryBudget time.Duration

	// InitialBackoff is the wait before the first retry; each next wait
	// doubles, up to MaxBackoff. Default: 1s.
	InitialBackoff time.Duration

	// MaxBackoff caps the wait between two attempts (before jitter).
	// Default: 60s.
	MaxBackoff time.Duration

	// Jitter spreads each wait uniformly over ±Jitter of its length, so
	// that endpoints failing together do not retry in lockstep; it must be
	// below 1. Negative means none (exact waits). Default: 0.2.
	Jitter float64

	// Batch puts the events an endpoint receives within BatchWindow of each
	// other into one POST (at most MaxBatchEvents per POST). Without it every
	// event is its own POST. Default: false.
	Batch bool

	// BatchWindow is how long a batch stays open after its first event.
	// Default: 250ms (Pusher's batch window).
	BatchWindow time.Duration

	// MaxBatchEvents closes a batch early when it holds that many events.
	// Default: 20 (Pusher's batch size).
	MaxBatchEvents int

	// VacateDelay is how long channel_vacated and member_removed are held
	// back; a channel occupied again, or a member added again, within it
	// cancels both events (see the package documentation). Negative means
	// no delay and no cancellation. Default: 3s (Pusher's delay).
	VacateDelay time.Duration

	// QueueSize bounds the events waiting for each endpoint: past it they
	// are dropped for that endpoint and counted (Dropped.QueueFull). It also
	// bounds the events each app holds back for VacateDelay: past it they
	// are sent without the delay and counted (Undelayed). Default: 10000.
	QueueSize int

	// Concurrency is the number of requests each endpoint may have in
	// flight at once: its number of sender goroutines. Endpoints never
	// share them, so a slow endpoint cannot hold up another. Default: 4.
	Concurrency int

	// Client sends the requests. Redirects are not followed by the default
	// client (a 3xx answer is a failed attempt). Default: a client of its
	// own, with a transport cloned from http.DefaultTransport that keeps up
	// to Concurrency idle connections per host.
	Client *http.Client

	// Now reads the clock, for time_ms and the retry budget.
	// Default: time.Now.
	Now func() time.Time

	// AfterFunc calls f in its own goroutine once d has elapsed, and returns
	// a function that cancels the call (reporting whether it did). It times
	// the batch windows, the backoff waits and the delayed events.
	// Default: time.AfterFunc's.
	AfterFunc func(d time.Duration, f func()) (stop func() bool)
}

// The defaults of Config.
const (
	DefaultTimeout        = 5 * time.Second
	DefaultRetryBudget    = 5 * time.Minute
	DefaultInitialBackoff = time.Second
	DefaultMaxBackoff     = time.Minute
	DefaultJitter         = 0.2
	DefaultBatchWindow    = 250 * time.Millisecond
	DefaultMaxBatchEvents = 20
	DefaultVacateDelay    = 3 * time.Second
	DefaultQueueSize      = 10000
	DefaultConcurrency    = 4
)

// Validate reports the fields that are out of range, all at once.
func (c Config) Validate() error {
	var errs []error
	neg := func(name string, d time.Duration) {
		if d < 0 {
			errs = append(errs, fmt.Errorf("webhooks: %s must not be negative, got %s", name, d))
		}
	}
	neg("timeout", c.Timeout)
	neg("initial backoff", c.InitialBackoff)
	neg("max backoff", c.MaxBackoff)
	neg("batch window", c.BatchWindow)
	if c.Jitter >= 1 {
		errs = append(errs, fmt.Errorf("webhooks: jitter must be below 1, got %g", c.Jitter))
	}
	if c.MaxBatchEvents < 0 {
		errs = append(errs, fmt.Errorf("webhooks: max batch events must not be negative, got %d", c.MaxBatchEvents))
	}
	if c.QueueSize < 0 {
		errs = append(errs, fmt.Errorf("webhooks: queue size must not be negative, got %d", c.QueueSize))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("webhooks: concurrency must not be negative, got %d", c.Concurrency))
	}
	return errors.Join(errs...)
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.RetryBudget == 0 {
		c.RetryBudget = DefaultRetryBudget
	}
	if c.InitialBackoff == 0 {
		c.InitialBackoff = DefaultInitialBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxBackoff < c.InitialBackoff {
		c.MaxBackoff = c.InitialBackoff
	}
	if c.Jitter == 0 {
		c.Jitter = DefaultJitter
	}
	if c.BatchWindow == 0 {
		c.BatchWindow = DefaultBatchWindow
	}
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if c.VacateDelay == 0 {
		c.VacateDelay = DefaultVacateDelay
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.AfterFunc == nil {
		c.AfterFunc = func(d time.Duration, f func()) func() bool {
			return time.AfterFunc(d, f).Stop
		}
	}
	return c
}

// App is one app's credentials and webhook endpoints.
type App struct {
	ID     string // the app id Emit is called with
	Key    string // sent as X-Pusher-Key
	Secret string // the HMAC-SHA256 key of X-Pusher-Signature

	// Endpoints receive the app's webhooks, each its own selection.
	Endpoints []Endpoint
}

// Endpoint is one URL that receives webhooks, and what it receives. Its
// fields carry the TOML names of an [[apps.webhooks]] table.
type Endpoint struct {
	// URL is where the webhooks are POSTed: http or https.
	URL string `toml:"url"`

	// EventTypes are the event names the endpoint receives (at least one):
	// channel_occupied, channel_vacated, member_added, member_removed,
	// client_event, cache_miss, subscription_count.
	EventTypes []string `toml:"event_types"`

	// Headers are extra request headers, sent as given. They may not be the
	// headers the wire format sets (Content-Type, X-Pusher-Key,
	// X-Pusher-Signature) nor Content-Length; Host sets the request's Host.
	Headers map[string]string `toml:"headers"`

	// Filter narrows the events by channel name.
	Filter Filter `toml:"filter"`
}

// Filter selects events by channel name. An event passes when its channel
// starts with ChannelNameStartsWith and ends with ChannelNameEndsWith; an
// empty field matches every channel.
type Filter struct {
	ChannelNameStartsWith string `toml:"channel_name_starts_with"`
	ChannelNameEndsWith   string `toml:"channel_name_ends_with"`
}

// Match reports whether the channel passes the filter.
func (f Filter) Match(channel string) bool {
	return strings.HasPrefix(channel, f.ChannelNameStartsWith) &&
		strings.HasSuffix(channel, f.ChannelNameEndsWith)
}

// reservedHeaders are set by the wire format or by the transport.
var reservedHeaders = []string{"Content-Type", "X-Pusher-Key", "X-Pusher-Signature", "Content-Length"}

// Validate reports everything wrong with the endpoint, all at once.
func (e Endpoint) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("webhooks: endpoint %q: "+format, append([]any{e.URL}, args...)...))
	}
	if u, err := url.Parse(e.URL); err != nil {
		bad("url: %v", err)
	} else if u.Scheme != "http" && u.Scheme != "https" {
		bad("url: scheme must be http or https")
	} else if u.Host == "" {
		bad("url: no host")
	}
	if len(e.EventTypes) == 0 {
		bad("event_types: empty; name at least one of %s", strings.Join(eventNames[:], ", "))
	}
	for _, name := range e.EventTypes {
		if _, ok := kindOf(name); !ok {
			bad("event_types: unknown event type %q (known: %s)", name, strings.Join(eventNames[:], ", "))
		}
	}
	for name, value := range e.Headers {
		switch {
		case !validHeaderName(name):
			bad("headers: invalid header name %q", name)
		case !validHeaderValue(value):
			bad("headers: invalid value for %q", name)
		}
		for _, r := range reservedHeaders {
			if strings.EqualFold(name, r) {
				bad("headers: %s is set by the webhook format", r)
			}
		}
	}
	return errors.Join(errs...)
}

// validHeaderName reports whether s is an HTTP token (RFC 9110).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s can be sent as a header value: no
// control characters other than tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
