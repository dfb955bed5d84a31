package config

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reverbgo/reverb/webhooks"
)

const webhookDoc = `
[[apps]]
app_id = "1"
key = "key-1"
secret = "secret-1"

[[apps.webhooks]]
url = "https://example.com/pusher/webhook"
event_types = ["channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event", "cache_miss", "subscription_count"]
headers = { X-Tenant = "a" }
filter = { channel_name_starts_with = "private-", channel_name_ends_with = "" }

[[apps.webhooks]]
url = "http://127.0.0.1:9000/hook"
event_types = ["client_event"]

[[apps]]
app_id = "2"
key = "key-2"
secret = "secret-2"

[webhooks]
timeout_ms = 1500
retry_budget_ms = -1
initial_backoff_ms = 100
max_backoff_ms = 2000
jitter = 0.5
batch = true
batch_window_ms = 50
max_batch_events = 7
vacate_delay_ms = 0
queue_size = 99
concurrency = 2
`

func TestWebhookKeys(t *testing.T) {
	c := mustLoad(t, webhookDoc, nil)
	want := []webhooks.Endpoint{
		{
			URL: "https://example.com/pusher/webhook",
			EventTypes: []string{"channel_occupied", "channel_vacated", "member_added", "member_removed",
				"client_event", "cache_miss", "subscription_count"},
			Headers: map[string]string{"X-Tenant": "a"},
			Filter:  webhooks.Filter{ChannelNameStartsWith: "private-"},
		},
		{URL: "http://127.0.0.1:9000/hook", EventTypes: []string{"client_event"}},
	}
	if !reflect.DeepEqual(c.Apps[0].Webhooks, want) {
		t.Errorf("apps[0].webhooks = %+v, want %+v", c.Apps[0].Webhooks, want)
	}
	if len(c.Apps[1].Webhooks) != 0 {
		t.Errorf("apps[1].webhooks = %+v, want none", c.Apps[1].Webhooks)
	}

	wantCfg := webhooks.Config{
		Timeout:        1500 * time.Millisecond,
		RetryBudget:    -time.Millisecond,
		InitialBackoff: 100 * time.Millisecond,
		MaxBackoff:     2 * time.Second,
		Jitter:         0.5,
		Batch:          true,
		BatchWindow:    50 * time.Millisecond,
		MaxBatchEvents: 7,
		QueueSize:      99,
		Concurrency:    2,
	}
	if got := c.WebhookConfig(); !reflect.DeepEqual(got, wantCfg) {
		t.Errorf("WebhookConfig() = %+v, want %+v", got, wantCfg)
	}

	apps := c.WebhookApps()
	wantApps := []webhooks.App{
		{ID: "1", Key: "key-1", Secret: "secret-1", Endpoints: want},
		{ID: "2", Key: "key-2", Secret: "secret-2", Endpoints: []webhooks.Endpoint{}},
	}
	if !reflect.DeepEqual(apps, wantApps) {
		t.Errorf("WebhookApps() = %+v, want %+v", apps, wantApps)
	}
	// The result is a copy.
	apps[0].Endpoints[0].Headers["X-Tenant"] = "b"
	apps[0].Endpoints[0].EventTypes[0] = "x"
	if c.Apps[0].Webhooks[0].Headers["X-Tenant"] != "a" || c.Apps[0].Webhooks[0].EventTypes[0] != "channel_occupied" {
		t.Error("WebhookApps shares its maps or slices with the Config")
	}

	// What the config builds is what webhooks.New takes.
	d, err := webhooks.New(c.WebhookConfig(), c.WebhookApps())
	if err != nil {
		t.Fatalf("webhooks.New: %v", err)
	}
	if err := d.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestWebhookDefaultsAccepted(t *testing.T) {
	// The defaults, and zeros (which webhooks.New reads as its defaults).
	for _, c := range []*Config{mustLoad(t, "", nil), {Apps: []App{NewApp("a", "k", "s")}}} {
		d, err := webhooks.New(c.WebhookConfig(), c.WebhookApps())
		if err != nil {
			t.Fatalf("webhooks.New(%+v): %v", c.Webhooks, err)
		}
		if err := d.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	c := Default()
	if got, want := c.WebhookConfig(), (webhooks.Config{
		Timeout:        webhooks.DefaultTimeout,
		RetryBudget:    webhooks.DefaultRetryBudget,
		InitialBackoff: webhooks.DefaultInitialBackoff,
		MaxBackoff:     webhooks.DefaultMaxBackoff,
		Jitter:         webhooks.DefaultJitter,
		BatchWindow:    webhooks.DefaultBatchWindow,
		MaxBatchEvents: webhooks.DefaultMaxBatchEvents,
		VacateDelay:    webhooks.DefaultVacateDelay,
		QueueSize:      webhooks.DefaultQueueSize,
		Concurrency:    webhooks.DefaultConcurrency,
	}); !reflect.DeepEqual(got, want) {
		t.Errorf("Default().WebhookConfig() = %+v, want the webhooks defaults %+v", got, want)
	}
	// Zero is accepted for every key.
	mustLoad(t, `
[webhooks]
timeout_ms = 0
retry_budget_ms = 0
initial_backoff_ms = 0
max_backoff_ms = 0
jitter = 0
batch_window_ms = 0
max_batch_events = 0
vacate_delay_ms = 0
queue_size = 0
concurrency = 0
`, nil)
}

func TestExampleWebhookLoads(t *testing.T) {
	c := mustLoad(t, uncommentWebhookExample(t), nil)
	if len(c.Apps) != 1 || len(c.Apps[0].Webhooks) != 1 {
		t.Fatalf("apps = %+v, want one app with one webhook", c.Apps)
	}
	e := c.Apps[0].Webhooks[0]
	if e.URL == "" || len(e.EventTypes) != 7 || e.Headers["X-Tenant"] != "a" || e.Filter.ChannelNameStartsWith != "private-" {
		t.Errorf("example webhook = %+v", e)
	}
	if _, err := webhooks.New(c.WebhookConfig(), c.WebhookApps()); err != nil {
		t.Errorf("webhooks.New: %v", err)
	}
}

func TestWebhookProblems(t *testing.T) {
	problems := problemsOf(t, `
[[apps]]
app_id = "1"
key = "k"
secret = "s"
[[apps.webhooks]]
url = "https://ok.example.com/"
event_types = ["member_added"]
[[apps.webhooks]]
url = "ftp://example.com/"
event_types = ["channel_occupied", "x"]
headers = { X-Pusher-Signature = "forged" }
[[apps.webhooks]]
url = "https://user:url-password@exa mple.com/"
event_types = []

[webhooks]
timeout_ms = -1
initial_backoff_ms = -2
max_backoff_ms = -3
jitter = 1.0
batch_window_ms = -4
max_batch_events = -5
queue_size = -6
concurrency = -7
`, nil)
	want := []string{
		`apps[0].webhooks[1].url: scheme must be http or https`,
		`apps[0].webhooks[1].event_types: unknown event type "x" (known: channel_occupied, `,
		`apps[0].webhooks[1].headers: X-Pusher-Signature is set by the webhook format`,
		`apps[0].webhooks[2].url: is not a valid URL`,
		`apps[0].webhooks[2].event_types: empty; name at least one of channel_occupied, `,
		`webhooks.timeout_ms: must not be negative, got -1ms`,
		`webhooks.initial_backoff_ms: must not be negative, got -2ms`,
		`webhooks.max_backoff_ms: must not be negative, got -3ms`,
		`webhooks.jitter: must be below 1, got 1`,
		`webhooks.batch_window_ms: must not be negative, got -4ms`,
		`webhooks.max_batch_events: must not be negative, got -5`,
		`webhooks.queue_size: must not be negative, got -6`,
		`webhooks.concurrency: must not be negative, got -7`,
	}
	for _, w := range want {
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.HasPrefix(p, w) }) {
			t.Errorf("problems lack %q:\n%s", w, strings.Join(problems, "\n"))
		}
	}
	if len(problems) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(problems), len(want), strings.Join(problems, "\n"))
	}
	for _, p := range problems {
		if strings.Contains(p, "url-password") || strings.Contains(p, "webhooks: ") {
			t.Errorf("problem %q shows a password or the package prefix", p)
		}
	}
}

func TestWebhookNegativeMeansNone(t *testing.T) {
	// Negative retry budget, vacate delay and jitter mean "none".
	c := mustLoad(t, "[webhooks]\nretry_budget_ms = -1\nvacate_delay_ms = -1\njitter = -1\n", nil)
	if _, err := webhooks.New(c.WebhookConfig(), c.WebhookApps()); err != nil {
		t.Errorf("webhooks.New: %v", err)
	}
}

func TestWebhookUnknownKeys(t *testing.T) {
	problems := problemsOf(t, `
[[apps]]
app_id = "1"
key = "k"
secret = "s"
[[apps.webhooks]]
url = "https://example.com/"
event_type = ["member_added"]
headers = { Any-Name = "v", other = "w" }
filter = { channel_name_start_with = "p" }
[webhooks]
timeout = 5
`, nil)
	for _, key := range []string{"apps.webhooks.event_type", "apps.webhooks.filter.channel_name_start_with", "webhooks.timeout"} {
		if !containsProblem(problems, "unknown key", key) {
			t.Errorf("problems lack unknown key %q:\n%s", key, strings.Join(problems, "\n"))
		}
	}
	if containsProblem(problems, "headers") {
		t.Errorf("header names reported:\n%s", strings.Join(problems, "\n"))
	}
}
