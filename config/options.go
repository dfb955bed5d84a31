package config

import (
	"bytes"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/reverbgo/reverb/pusher"
)

// redactedMark replaces secrets in Redacted.
const redactedMark = "********"

// Options converts c into the pusher package's settings. Seconds become
// durations, accept_client_events_from becomes a pusher.ClientEventPolicy,
// the path prefix is normalized to "" or "/x" (no trailing slash), and an
// auth_timestamp_window of 0 becomes a negative duration (no check), and
// [webhooks] vacate_delay_ms becomes VacateDelay.
// Logger and Debug are left for the caller to set.
func (c *Config) Options() pusher.Options {
	apps := make([]*pusher.App, len(c.Apps))
	for i, a := range c.Apps {
		apps[i] = &pusher.App{
			ID:              a.AppID,
			Key:             a.Key,
			Secret:          a.Secret,
			AllowedOrigins:  append([]string(nil), a.AllowedOrigins...),
			PingInterval:    seconds(a.PingInterval),
			ActivityTimeout: seconds(a.ActivityTimeout),
			MaxMessageSize:  a.MaxMessageSize,
			MaxConnections:  a.MaxConnections,
			ClientEvents:    pusher.ParseClientEventPolicy(a.AcceptClientEventsFrom),
			RateLimit: pusher.RateLimit{
				Enabled:          a.RateLimiting.Enabled,
				MaxAttempts:      a.RateLimiting.MaxAttempts,
				Decay:            seconds(a.RateLimiting.DecaySeconds),
				TerminateOnLimit: a.RateLimiting.TerminateOnLimit,
			},
			SubscriptionCounting: a.SubscriptionCounting,
			WatchlistEvents:      a.WatchlistEvents,
			Compression:          a.Compression,
		}
	}
	window := seconds(c.Server.AuthTimestampWindow)
	if c.Server.AuthTimestampWindow == 0 {
		window = -1
	}
	l := c.Limits
	return pusher.Options{
		Apps:                     apps,
		PathPrefix:               NormalizePath(c.Server.Path),
		MaxRequestSize:           c.Server.MaxRequestSize,
		AuthTimestampWindow:      window,
		MaxChannelsPerEvent:      l.MaxChannelsPerEvent,
		MaxBatchSize:             l.MaxBatchSize,
		MaxNameLength:            l.MaxNameLength,
		MaxChannelsPerConnection: l.MaxChannelsPerConnection,
		MaxPresenceMembers:       l.MaxPresenceMembers,
		MaxUserInfoSize:          l.MaxUserInfoSize,
		ClientEventsPerSecond:    l.ClientEventsPerSecond,
		SubscriptionsPerSecond:   l.SubscriptionsPerSecond,
		MaxOutboundBuffer:        c.Server.MaxOutboundBuffer,
		FanoutChunk:              c.Server.FanoutChunk,
		PongTimeout:              seconds(c.Server.PongTimeout),
		VacateDelay:              vacateDelay(c.Webhooks.VacateDelayMS),
	}
}

// vacateDelay is [webhooks] vacate_delay_ms as pusher.Options.VacateDelay:
// 0 is the default (3 s), negative no delay.
func vacateDelay(ms int) time.Duration {
	if ms == 0 {
		return pusher.DefaultVacateDelay
	}
	return millis(ms)
}

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }

// NormalizePath turns a configured path prefix into "" or "/a/b": a leading
// slash is added and trailing slashes removed, so "ws", "/ws" and "/ws/" are
// all "/ws", and "" and "/" are "".
func NormalizePath(p string) string {
	p = strings.TrimSpace(p)
	p = strings.TrimRight(p, "/")
	if p == "" {
		return ""
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

// Redacted returns c as a TOML document with every app secret, the Redis and
// Sentinel passwords, any password inside the Redis URL or a webhook URL, and
// every webhook header value (they may carry tokens) replaced by "********",
// fit for logs and `check-config` output. Empty secrets stay empty.
func (c *Config) Redacted() string {
	r := *c
	r.Apps = make([]App, len(c.Apps))
	for i, a := range c.Apps {
		if a.Secret != "" {
			a.Secret = redactedMark
		}
		a.Webhooks = slices.Clone(a.Webhooks)
		for j, e := range a.Webhooks {
			e.URL = redactURL(e.URL)
			if e.Headers != nil {
				h := make(map[string]string, len(e.Headers))
				for name := range e.Headers {
					h[name] = redactedMark
				}
				e.Headers = h
			}
			a.Webhooks[j] = e
		}
		r.Apps[i] = a
	}
	if r.Scaling.Redis.Password != "" {
		r.Scaling.Redis.Password = redactedMark
	}
	if r.Scaling.Redis.SentinelPassword != "" {
		r.Scaling.Redis.SentinelPassword = redactedMark
	}
	r.Scaling.Redis.URL = redactURL(r.Scaling.Redis.URL)
	var b bytes.Buffer
	enc := toml.NewEncoder(&b)
	enc.Indent = ""
	if err := enc.Encode(r); err != nil {
		// Config holds only strings, numbers, bools, slices and string maps, which
		// always encode; keep the output safe regardless.
		return "# cannot encode configuration: " + err.Error() + "\n"
	}
	return b.String()
}

// redactURL hides the password of a URL's userinfo and a password query
// parameter. A URL that does not parse is hidden entirely.
func redactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return redactedMark
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), redactedMark)
		}
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", redactedMark)
		u.RawQuery = q.Encode()
	}
	out := u.String()
	// url.String escapes '*' in userinfo; show the mark as written.
	return strings.ReplaceAll(out, url.QueryEscape(redactedMark), redactedMark)
}
