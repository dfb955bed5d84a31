package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/reverbgo/reverb/webhooks"
)

// WebhookConfig returns the [webhooks] table as the delivery settings of
// webhooks.New. Zero values stay zero, which webhooks.New reads as its
// defaults.
func (c *Config) WebhookConfig() webhooks.Config {
	w := c.Webhooks
	return webhooks.Config{
		Timeout:        millis(w.TimeoutMS),
		RetryBudget:    millis(w.RetryBudgetMS),
		InitialBackoff: millis(w.InitialBackoffMS),
		MaxBackoff:     millis(w.MaxBackoffMS),
		Jitter:         w.Jitter,
		Batch:          w.Batch,
		BatchWindow:    millis(w.BatchWindowMS),
		MaxBatchEvents: w.MaxBatchEvents,
		VacateDelay:    millis(w.VacateDelayMS),
		QueueSize:      w.QueueSize,
		Concurrency:    w.Concurrency,
	}
}

// WebhookApps returns every app with its credentials and [[apps.webhooks]]
// endpoints, in the order of Apps, as webhooks.New takes them. Apps without
// endpoints are included (webhooks.New accepts them and ignores their
// events).
func (c *Config) WebhookApps() []webhooks.App {
	apps := make([]webhooks.App, len(c.Apps))
	for i, a := range c.Apps {
		endpoints := make([]webhooks.Endpoint, len(a.Webhooks))
		for j, e := range a.Webhooks {
			e.EventTypes = append([]string(nil), e.EventTypes...)
			if e.Headers != nil {
				h := make(map[string]string, len(e.Headers))
				for k, v := range e.Headers {
					h[k] = v
				}
				e.Headers = h
			}
			endpoints[j] = e
		}
		apps[i] = webhooks.App{ID: a.AppID, Key: a.Key, Secret: a.Secret, Endpoints: endpoints}
	}
	return apps
}

func millis(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func ms(d time.Duration) int { return int(d / time.Millisecond) }

// webhookKeys maps the field names in webhooks.Config.Validate's messages to
// the keys of the [webhooks] table.
var webhookKeys = []struct{ name, key string }{
	{"timeout", "timeout_ms"},
	{"retry budget", "retry_budget_ms"},
	{"initial backoff", "initial_backoff_ms"},
	{"max backoff", "max_backoff_ms"},
	{"jitter", "jitter"},
	{"batch window", "batch_window_ms"},
	{"max batch events", "max_batch_events"},
	{"vacate delay", "vacate_delay_ms"},
	{"queue size", "queue_size"},
	{"concurrency", "concurrency"},
}

// webhookProblems checks the [webhooks] table and every [[apps.webhooks]]
// endpoint with the webhooks package's own checks, naming the key of each
// problem.
func (c *Config) webhookProblems(v *validator) {
	for _, err := range unjoin(c.WebhookConfig().Validate()) {
		msg := strings.TrimPrefix(err.Error(), "webhooks: ")
		key := "webhooks"
		for _, k := range webhookKeys {
			if rest, ok := strings.CutPrefix(msg, k.name+" "); ok {
				key, msg = "webhooks."+k.key, rest
				break
			}
		}
		v.add(key, msg)
	}
	for i, a := range c.Apps {
		for j, e := range a.Webhooks {
			path := fmt.Sprintf("apps[%d].webhooks[%d]", i, j)
			prefix := fmt.Sprintf("webhooks: endpoint %q: ", e.URL)
			var found [][2]string // key path, message
			for _, err := range unjoin(e.Validate()) {
				msg, ok := strings.CutPrefix(err.Error(), prefix)
				if !ok {
					found = append(found, [2]string{path, strings.TrimPrefix(err.Error(), "webhooks: ")})
					continue
				}
				key, rest, ok := strings.Cut(msg, ": ")
				if !ok || strings.ContainsAny(key, " \"") {
					found = append(found, [2]string{path, msg})
					continue
				}
				if key == "url" {
					if _, perr := url.Parse(e.URL); perr != nil {
						// The parse error echoes the URL, which may hold a
						// password.
						rest = "is not a valid URL"
					}
				}
				found = append(found, [2]string{path + "." + key, rest})
			}
			// The headers are checked in map order: sort their problems.
			h := slices.IndexFunc(found, func(f [2]string) bool { return f[0] == path+".headers" })
			if h >= 0 {
				n := h
				for n < len(found) && found[n][0] == path+".headers" {
					n++
				}
				slices.SortFunc(found[h:n], func(a, b [2]string) int { return strings.Compare(a[1], b[1]) })
			}
			for _, f := range found {
				v.add(f[0], f[1])
			}
		}
	}
}

// unjoin returns the errors an errors.Join holds, or err alone.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
