package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/reverbgo/reverb/pusher"
	"github.com/reverbgo/reverb/webhooks"
)

// envOf returns a lookup function over m.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// writeTemp writes doc to a file in a fresh temp dir and returns its path.
func writeTemp(t testing.TB, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "reverb.toml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustLoad(t *testing.T, doc string, env map[string]string) *Config {
	t.Helper()
	path := ""
	if doc != "" {
		path = writeTemp(t, doc)
	}
	c, err := Load(path, envOf(env))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

// problemsOf loads and returns the validation problems, failing if the
// error is not a *ValidationError.
func problemsOf(t *testing.T, doc string, env map[string]string) []string {
	t.Helper()
	path := ""
	if doc != "" {
		path = writeTemp(t, doc)
	}
	_, err := Load(path, envOf(env))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Load error = %v, want *ValidationError", err)
	}
	return ve.Problems
}

func containsProblem(problems []string, parts ...string) bool {
	for _, p := range problems {
		ok := true
		for _, s := range parts {
			if !strings.Contains(p, s) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func TestDefault(t *testing.T) {
	c := Default()
	a := NewApp("i", "k", "s")
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"server.host", c.Server.Host, "0.0.0.0"},
		{"server.port", c.Server.Port, 8080},
		{"server.path", c.Server.Path, ""},
		{"server.hostname", c.Server.Hostname, ""},
		{"server.max_request_size", c.Server.MaxRequestSize, 10000},
		{"server.loops", c.Server.Loops, 0},
		{"server.handshake_timeout", c.Server.HandshakeTimeout, 10},
		{"server.max_outbound_buffer", c.Server.MaxOutboundBuffer, 1048576},
		{"server.fanout_chunk", c.Server.FanoutChunk, 256},
		{"server.pong_timeout", c.Server.PongTimeout, 30},
		{"server.auth_timestamp_window", c.Server.AuthTimestampWindow, 600},
		{"server.api_workers", c.Server.APIWorkers, 0},
		{"server.api_queue", c.Server.APIQueue, 1024},
		{"server.reuse_port", c.Server.ReusePort, false},
		{"server.drain_timeout", c.Server.DrainTimeout, 10},
		{"server.max_connections", c.Server.MaxConnections, 0},
		{"server.tls.cert", c.Server.TLS.Cert, ""},
		{"server.tls.key", c.Server.TLS.Key, ""},
		{"server.tls.handshake_workers", c.Server.TLS.HandshakeWorkers, 256},
		{"server.tls.handshake_queue", c.Server.TLS.HandshakeQueue, 4096},
		{"apps", len(c.Apps), 0},
		{"apps.allowed_origins", a.AllowedOrigins, []string{"*"}},
		{"apps.ping_interval", a.PingInterval, 60},
		{"apps.activity_timeout", a.ActivityTimeout, 30},
		{"apps.max_message_size", a.MaxMessageSize, 10000},
		{"apps.max_connections", a.MaxConnections, 0},
		{"apps.accept_client_events_from", a.AcceptClientEventsFrom, "members"},
		{"apps.rate_limiting.enabled", a.RateLimiting.Enabled, false},
		{"apps.rate_limiting.max_attempts", a.RateLimiting.MaxAttempts, 60},
		{"apps.rate_limiting.decay_seconds", a.RateLimiting.DecaySeconds, 60},
		{"apps.rate_limiting.terminate_on_limit", a.RateLimiting.TerminateOnLimit, false},
		{"limits.max_channels_per_event", c.Limits.MaxChannelsPerEvent, 100},
		{"limits.max_batch_size", c.Limits.MaxBatchSize, 10},
		{"limits.max_name_length", c.Limits.MaxNameLength, 200},
		{"limits.max_channels_per_connection", c.Limits.MaxChannelsPerConnection, 1000},
		{"limits.max_presence_members", c.Limits.MaxPresenceMembers, 100},
		{"limits.max_user_info_size", c.Limits.MaxUserInfoSize, 1024},
		{"limits.client_events_per_second", c.Limits.ClientEventsPerSecond, 10},
		{"scaling.enabled", c.Scaling.Enabled, false},
		{"scaling.channel", c.Scaling.Channel, "reverb"},
		{"scaling.publish_queue", c.Scaling.PublishQueue, 10000},
		{"scaling.tracker_queue", c.Scaling.TrackerQueue, 10000},
		{"scaling.publish_timeout_ms", c.Scaling.PublishTimeoutMS, 2000},
		{"scaling.redis.mode", c.Scaling.Redis.Mode, "single"},
		{"scaling.redis.addrs", c.Scaling.Redis.Addrs, []string{}},
		{"scaling.redis.master_name", c.Scaling.Redis.MasterName, ""},
		{"scaling.redis.sentinel_username", c.Scaling.Redis.SentinelUsername, ""},
		{"scaling.redis.sentinel_password", c.Scaling.Redis.SentinelPassword, ""},
		{"scaling.redis.tls", c.Scaling.Redis.TLS, false},
		{"scaling.redis.tls_ca_file", c.Scaling.Redis.TLSCAFile, ""},
		{"scaling.redis.tls_insecure_skip_verify", c.Scaling.Redis.TLSInsecureSkipVerify, false},
		{"scaling.redis.url", c.Scaling.Redis.URL, ""},
		{"scaling.redis.host", c.Scaling.Redis.Host, "127.0.0.1"},
		{"scaling.redis.port", c.Scaling.Redis.Port, 6379},
		{"scaling.redis.username", c.Scaling.Redis.Username, ""},
		{"scaling.redis.password", c.Scaling.Redis.Password, ""},
		{"scaling.redis.db", c.Scaling.Redis.DB, 0},
		{"apps.webhooks", a.Webhooks, []webhooks.Endpoint(nil)},
		{"webhooks.timeout_ms", c.Webhooks.TimeoutMS, 5000},
		{"webhooks.retry_budget_ms", c.Webhooks.RetryBudgetMS, 300000},
		{"webhooks.initial_backoff_ms", c.Webhooks.InitialBackoffMS, 1000},
		{"webhooks.max_backoff_ms", c.Webhooks.MaxBackoffMS, 60000},
		{"webhooks.jitter", c.Webhooks.Jitter, 0.2},
		{"webhooks.batch", c.Webhooks.Batch, false},
		{"webhooks.batch_window_ms", c.Webhooks.BatchWindowMS, 250},
		{"webhooks.max_batch_events", c.Webhooks.MaxBatchEvents, 20},
		{"webhooks.vacate_delay_ms", c.Webhooks.VacateDelayMS, 3000},
		{"webhooks.queue_size", c.Webhooks.QueueSize, 10000},
		{"webhooks.concurrency", c.Webhooks.Concurrency, 4},
		{"metrics.enabled", c.Metrics.Enabled, false},
		{"metrics.host", c.Metrics.Host, "127.0.0.1"},
		{"metrics.port", c.Metrics.Port, 9090},
		{"metrics.pprof", c.Metrics.PProf, false},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}
}

func TestDefaultApp(t *testing.T) {
	c := mustLoad(t, "", nil)
	if !c.DefaultApp {
		t.Error("DefaultApp = false, want true")
	}
	want := NewApp(DefaultAppID, DefaultAppKey, DefaultAppSecret)
	if len(c.Apps) != 1 || !reflect.DeepEqual(c.Apps[0], want) {
		t.Fatalf("Apps = %+v, want [%+v]", c.Apps, want)
	}
	if DefaultAppID != "local" || DefaultAppKey != "local-key" || DefaultAppSecret != "local-secret" {
		t.Errorf("default credentials = %q %q %q", DefaultAppID, DefaultAppKey, DefaultAppSecret)
	}
	// Apart from the app, an empty load is Default().
	c.Apps, c.DefaultApp, c.origins = nil, false, nil
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("Load(\"\", nil) = %+v, want Default() plus the default app", c)
	}
	// A nil env works too.
	if _, err := Load("", nil); err != nil {
		t.Errorf("Load with nil env: %v", err)
	}
}

func TestDefaultAppNotAddedWhenConfigured(t *testing.T) {
	fromFile := mustLoad(t, "[[apps]]\napp_id = \"1\"\nkey = \"k\"\nsecret = \"s\"\n", nil)
	fromEnv := mustLoad(t, "", map[string]string{"REVERB_APP_ID": "1", "REVERB_APP_KEY": "k", "REVERB_APP_SECRET": "s"})
	for name, c := range map[string]*Config{"file": fromFile, "env": fromEnv} {
		if c.DefaultApp {
			t.Errorf("%s: DefaultApp = true", name)
		}
		if len(c.Apps) != 1 || c.Apps[0].AppID != "1" || c.Apps[0].Key != "k" || c.Apps[0].Secret != "s" {
			t.Errorf("%s: Apps = %+v", name, c.Apps)
		}
	}
}

func TestPrecedence(t *testing.T) {
	const file = `
[server]
host = "10.0.0.1"
port = 9000
path = "/file"
hostname = "file.example"
max_request_size = 20000
[scaling]
enabled = true
channel = "file-chan"
[scaling.redis]
host = "redis-file"
port = 6000
password = "file-pw"
db = 2
[[apps]]
app_id = "file-id"
key = "file-key"
secret = "file-secret"
ping_interval = 11
activity_timeout = 12
max_message_size = 13
accept_client_events_from = "all"
[apps.rate_limiting]
max_attempts = 14
`
	env := map[string]string{
		"REVERB_SERVER_PORT":                 "9100",
		"REVERB_HOST":                        "env.example",
		"REDIS_HOST":                         "redis-env",
		"REDIS_DB":                           "3",
		"REVERB_APP_SECRET":                  "env-secret",
		"REVERB_APP_ACTIVITY_TIMEOUT":        "22",
		"REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS": "24",
	}
	def := Default()
	defApp := NewApp(DefaultAppID, DefaultAppKey, DefaultAppSecret)
	none := mustLoad(t, "", nil)
	onlyFile := mustLoad(t, file, nil)
	both := mustLoad(t, file, env)

	tests := []struct {
		name                       string
		get                        func(c *Config) any
		wantDef, wantFile, wantEnv any
	}{
		{"server.host", func(c *Config) any { return c.Server.Host }, def.Server.Host, "10.0.0.1", "10.0.0.1"},
		{"server.port", func(c *Config) any { return c.Server.Port }, 8080, 9000, 9100},
		{"server.path", func(c *Config) any { return c.Server.Path }, "", "/file", "/file"},
		{"server.hostname", func(c *Config) any { return c.Server.Hostname }, "", "file.example", "env.example"},
		{"server.max_request_size", func(c *Config) any { return c.Server.MaxRequestSize }, 10000, 20000, 20000},
		{"scaling.enabled", func(c *Config) any { return c.Scaling.Enabled }, false, true, true},
		{"scaling.channel", func(c *Config) any { return c.Scaling.Channel }, "reverb", "file-chan", "file-chan"},
		{"scaling.redis.host", func(c *Config) any { return c.Scaling.Redis.Host }, "127.0.0.1", "redis-file", "redis-env"},
		{"scaling.redis.port", func(c *Config) any { return c.Scaling.Redis.Port }, 6379, 6000, 6000},
		{"scaling.redis.password", func(c *Config) any { return c.Scaling.Redis.Password }, "", "file-pw", "file-pw"},
		{"scaling.redis.db", func(c *Config) any { return c.Scaling.Redis.DB }, 0, 2, 3},
		{"apps[0].app_id", func(c *Config) any { return c.Apps[0].AppID }, defApp.AppID, "file-id", "file-id"},
		{"apps[0].key", func(c *Config) any { return c.Apps[0].Key }, defApp.Key, "file-key", "file-key"},
		{"apps[0].secret", func(c *Config) any { return c.Apps[0].Secret }, defApp.Secret, "file-secret", "env-secret"},
		{"apps[0].ping_interval", func(c *Config) any { return c.Apps[0].PingInterval }, 60, 11, 11},
		{"apps[0].activity_timeout", func(c *Config) any { return c.Apps[0].ActivityTimeout }, 30, 12, 22},
		{"apps[0].max_message_size", func(c *Config) any { return c.Apps[0].MaxMessageSize }, 10000, 13, 13},
		{"apps[0].accept_client_events_from", func(c *Config) any { return c.Apps[0].AcceptClientEventsFrom }, "members", "all", "all"},
		{"apps[0].rate_limiting.max_attempts", func(c *Config) any { return c.Apps[0].RateLimiting.MaxAttempts }, 60, 14, 24},
		{"apps[0].rate_limiting.decay_seconds", func(c *Config) any { return c.Apps[0].RateLimiting.DecaySeconds }, 60, 60, 60},
		{"apps[0].allowed_origins", func(c *Config) any { return c.Apps[0].AllowedOrigins }, []string{"*"}, []string{"*"}, []string{"*"}},
	}
	for _, tt := range tests {
		if got := tt.get(none); !reflect.DeepEqual(got, tt.wantDef) {
			t.Errorf("%s: default = %#v, want %#v", tt.name, got, tt.wantDef)
		}
		if got := tt.get(onlyFile); !reflect.DeepEqual(got, tt.wantFile) {
			t.Errorf("%s: file = %#v, want %#v", tt.name, got, tt.wantFile)
		}
		if got := tt.get(both); !reflect.DeepEqual(got, tt.wantEnv) {
			t.Errorf("%s: file+env = %#v, want %#v", tt.name, got, tt.wantEnv)
		}
	}
}

func TestEnvMapping(t *testing.T) {
	// Every app row starts from a complete app in the environment, so that a
	// row changing one variable still loads.
	base := map[string]string{
		"REVERB_APP_ID":     "base-id",
		"REVERB_APP_KEY":    "base-key",
		"REVERB_APP_SECRET": "base-secret",
	}
	tests := []struct {
		env   string
		value string
		get   func(c *Config) any
		want  any
	}{
		{"REVERB_SERVER_HOST", "127.0.0.9", func(c *Config) any { return c.Server.Host }, "127.0.0.9"},
		{"REVERB_SERVER_PORT", "7001", func(c *Config) any { return c.Server.Port }, 7001},
		{"REVERB_SERVER_PATH", "/ws", func(c *Config) any { return c.Server.Path }, "/ws"},
		{"REVERB_HOST", "ws.example.com", func(c *Config) any { return c.Server.Hostname }, "ws.example.com"},
		{"REVERB_MAX_REQUEST_SIZE", "5000", func(c *Config) any { return c.Server.MaxRequestSize }, 5000},
		{"REVERB_SCALING_ENABLED", "true", func(c *Config) any { return c.Scaling.Enabled }, true},
		{"REVERB_SCALING_CHANNEL", "chan", func(c *Config) any { return c.Scaling.Channel }, "chan"},
		{"REVERB_SCALING_REDIS_MODE", "sentinel", func(c *Config) any { return c.Scaling.Redis.Mode }, "sentinel"},
		{"REVERB_SCALING_REDIS_ADDRS", " s1:26379 , s2:26379,,", func(c *Config) any { return c.Scaling.Redis.Addrs }, []string{"s1:26379", "s2:26379"}},
		{"REVERB_SCALING_REDIS_MASTER_NAME", "mymaster", func(c *Config) any { return c.Scaling.Redis.MasterName }, "mymaster"},
		{"REDIS_URL", "redis://r:6380/1", func(c *Config) any { return c.Scaling.Redis.URL }, "redis://r:6380/1"},
		{"REDIS_HOST", "redis.internal", func(c *Config) any { return c.Scaling.Redis.Host }, "redis.internal"},
		{"REDIS_PORT", "6390", func(c *Config) any { return c.Scaling.Redis.Port }, 6390},
		{"REDIS_USERNAME", "ru", func(c *Config) any { return c.Scaling.Redis.Username }, "ru"},
		{"REDIS_PASSWORD", "rp", func(c *Config) any { return c.Scaling.Redis.Password }, "rp"},
		{"REDIS_DB", "4", func(c *Config) any { return c.Scaling.Redis.DB }, 4},
		{"REVERB_APP_ID", "777", func(c *Config) any { return c.Apps[0].AppID }, "777"},
		{"REVERB_APP_KEY", "kkk", func(c *Config) any { return c.Apps[0].Key }, "kkk"},
		{"REVERB_APP_SECRET", "sss", func(c *Config) any { return c.Apps[0].Secret }, "sss"},
		{"REVERB_APP_PING_INTERVAL", "15", func(c *Config) any { return c.Apps[0].PingInterval }, 15},
		{"REVERB_APP_ACTIVITY_TIMEOUT", "16", func(c *Config) any { return c.Apps[0].ActivityTimeout }, 16},
		{"REVERB_APP_MAX_CONNECTIONS", "17", func(c *Config) any { return c.Apps[0].MaxConnections }, 17},
		{"REVERB_APP_MAX_MESSAGE_SIZE", "18", func(c *Config) any { return c.Apps[0].MaxMessageSize }, 18},
		{"REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM", "none", func(c *Config) any { return c.Apps[0].AcceptClientEventsFrom }, "none"},
		{"REVERB_APP_RATE_LIMITING_ENABLED", "yes", func(c *Config) any { return c.Apps[0].RateLimiting.Enabled }, true},
		{"REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS", "19", func(c *Config) any { return c.Apps[0].RateLimiting.MaxAttempts }, 19},
		{"REVERB_APP_RATE_LIMIT_DECAY_SECONDS", "20", func(c *Config) any { return c.Apps[0].RateLimiting.DecaySeconds }, 20},
		{"REVERB_APP_RATE_LIMIT_TERMINATE", "1", func(c *Config) any { return c.Apps[0].RateLimiting.TerminateOnLimit }, true},
		{"REVERB_ALLOWED_ORIGINS", " a.example , *.b.example,,", func(c *Config) any { return c.Apps[0].AllowedOrigins }, []string{"a.example", "*.b.example"}},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.env] = true
		t.Run(tt.env, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			before := mustLoad(t, "", env)
			if got := tt.get(before); reflect.DeepEqual(got, tt.want) {
				t.Fatalf("test is vacuous: %v is already %#v without %s", tt.env, got, tt.env)
			}
			env[tt.env] = tt.value
			c := mustLoad(t, "", env)
			if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s=%q: got %#v, want %#v", tt.env, tt.value, got, tt.want)
			}
		})
	}
	for _, name := range append(append([]string{}, serverEnvVars...), appVars...) {
		if !seen[name] {
			t.Errorf("no test row for %s", name)
		}
	}
}

func TestEnvValueForms(t *testing.T) {
	bools := []struct {
		value string
		want  bool
	}{
		{"true", true},
		{"TRUE", true},
		{"(true)", true},
		{"1", true},
		{"yes", true},
		{"Yes", true},
		{"false", false},
		{"(false)", false},
		{"0", false},
		{"no", false},
		{"NO", false},
	}
	for _, tt := range bools {
		// Start from the opposite so the row can fail.
		doc := "[scaling]\nenabled = " + map[bool]string{true: "false", false: "true"}[tt.want] + "\n"
		c := mustLoad(t, doc, map[string]string{"REVERB_SCALING_ENABLED": tt.value})
		if c.Scaling.Enabled != tt.want {
			t.Errorf("REVERB_SCALING_ENABLED=%q: got %v, want %v", tt.value, c.Scaling.Enabled, tt.want)
		}
	}

	// Values Laravel's env() turns into null leave the file's value alone.
	const doc = "[scaling.redis]\npassword = \"from-file\"\n"
	for _, v := range []string{"", "null", "(null)", "NULL", "empty", "(empty)", "  "} {
		c := mustLoad(t, doc, map[string]string{"REDIS_PASSWORD": v})
		if c.Scaling.Redis.Password != "from-file" {
			t.Errorf("REDIS_PASSWORD=%q: password = %q, want the file's", v, c.Scaling.Redis.Password)
		}
	}
	// Surrounding quotes are removed.
	for _, v := range []string{`"ws.example"`, `'ws.example'`, ` ws.example `} {
		c := mustLoad(t, "", map[string]string{"REVERB_HOST": v})
		if c.Server.Hostname != "ws.example" {
			t.Errorf("REVERB_HOST=%s: hostname = %q", v, c.Server.Hostname)
		}
	}
}

func TestEnvInvalidValues(t *testing.T) {
	tests := []struct {
		env, value string
		want       []string // substrings of one problem
	}{
		{"REVERB_SERVER_PORT", "abc", []string{"REVERB_SERVER_PORT", `"abc"`, "integer"}},
		{"REVERB_SERVER_PORT", "70000", []string{"server.port", "REVERB_SERVER_PORT", "65535"}},
		{"REVERB_MAX_REQUEST_SIZE", "1e4", []string{"REVERB_MAX_REQUEST_SIZE", "integer"}},
		{"REVERB_SCALING_ENABLED", "maybe", []string{"REVERB_SCALING_ENABLED", "boolean"}},
		{"REDIS_PORT", "x", []string{"REDIS_PORT", "integer"}},
		{"REDIS_DB", "-1", []string{"scaling.redis.db", "REDIS_DB"}}, // checked as scaling is on
		{"REVERB_SCALING_REDIS_MODE", "ring", []string{"scaling.redis.mode", `"ring"`, "REVERB_SCALING_REDIS_MODE"}},
		{"REVERB_SCALING_REDIS_ADDRS", "s1:26379", []string{"scaling.redis.addrs", "sentinel and cluster", "REVERB_SCALING_REDIS_ADDRS"}},
		{"REVERB_APP_PING_INTERVAL", "0", []string{"apps[0].ping_interval", "REVERB_APP_PING_INTERVAL"}},
		{"REVERB_APP_MAX_CONNECTIONS", "-3", []string{"apps[0].max_connections", "REVERB_APP_MAX_CONNECTIONS"}},
		{"REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM", "everyone", []string{"apps[0].accept_client_events_from", "everyone", "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM"}},
		{"REVERB_APP_RATE_LIMITING_ENABLED", "on?", []string{"REVERB_APP_RATE_LIMITING_ENABLED", "boolean"}},
		{"REVERB_APP_RATE_LIMIT_TERMINATE", "2", []string{"REVERB_APP_RATE_LIMIT_TERMINATE", "boolean"}},
	}
	for _, tt := range tests {
		env := map[string]string{"REVERB_SCALING_ENABLED": "true"}
		env[tt.env] = tt.value
		problems := problemsOf(t, "", env)
		if !containsProblem(problems, tt.want...) {
			t.Errorf("%s=%q: problems %q lack one containing %q", tt.env, tt.value, problems, tt.want)
		}
	}
}

func TestEnvAppSelection(t *testing.T) {
	const twoApps = `
[[apps]]
app_id = "a1"
key = "k1"
secret = "s1"
ping_interval = 5
[[apps]]
app_id = "a2"
key = "k2"
secret = "s2"
`
	t.Run("overrides first file app field by field", func(t *testing.T) {
		c := mustLoad(t, twoApps, map[string]string{"REVERB_APP_ID": "env-id", "REVERB_APP_SECRET": "env-s"})
		if len(c.Apps) != 2 {
			t.Fatalf("len(Apps) = %d, want 2", len(c.Apps))
		}
		a := c.Apps[0]
		if a.AppID != "env-id" || a.Secret != "env-s" || a.Key != "k1" || a.PingInterval != 5 {
			t.Errorf("Apps[0] = %+v, want env id/secret over file key/ping", a)
		}
		if c.Apps[1].AppID != "a2" || c.Apps[1].Secret != "s2" {
			t.Errorf("Apps[1] = %+v, want untouched", c.Apps[1])
		}
	})
	t.Run("tuning without credentials applies to the default app", func(t *testing.T) {
		c := mustLoad(t, "", map[string]string{"REVERB_APP_PING_INTERVAL": "7"})
		if !c.DefaultApp || c.Apps[0].AppID != DefaultAppID || c.Apps[0].PingInterval != 7 {
			t.Errorf("DefaultApp=%v Apps=%+v", c.DefaultApp, c.Apps)
		}
	})
	t.Run("partial credentials are reported", func(t *testing.T) {
		problems := problemsOf(t, "", map[string]string{"REVERB_APP_ID": "1"})
		for _, want := range []string{"apps[0].key", "apps[0].secret"} {
			if !containsProblem(problems, want, "empty") {
				t.Errorf("problems %q lack %q", problems, want)
			}
		}
	})
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		doc  string
		want string
	}{
		{"[server]\nprot = 1\n", `"server.prot"`},
		{"[server]\nPort = 1\n", `"server.Port"`},
		{"[server.tls]\ncrt = \"x\"\n", `"server.tls.crt"`},
		{"[[apps]]\napp_id = \"1\"\nkey = \"k\"\nsecret = \"s\"\nsecrets = \"x\"\n", `"apps.secrets"`},
		{"[[apps]]\napp_id = \"1\"\nkey = \"k\"\nsecret = \"s\"\n[apps.rate_limiting]\nenable = true\n", `"apps.rate_limiting.enable"`},
		{"[limits]\nmax_batch = 3\n", `"limits.max_batch"`},
		{"[scaling.redis]\ndatabase = 1\n", `"scaling.redis.database"`},
		{"[metrics]\npath = \"/m\"\n", `"metrics.path"`},
		{"[log]\nfile = \"x\"\n", `"log.file"`},
		{"debug = true\n", `"debug"`},
		{"[sever]\nport = 1\n", `"sever"`},
	}
	for _, tt := range tests {
		problems := problemsOf(t, tt.doc, nil)
		if !containsProblem(problems, "unknown key", tt.want) {
			t.Errorf("%q: problems %q lack unknown key %s", tt.doc, problems, tt.want)
		}
	}
	// Keys under an unknown table are not listed one by one.
	problems := problemsOf(t, "[sever]\nport = 1\nhost = \"x\"\n", nil)
	if len(problems) != 1 {
		t.Errorf("problems = %q, want only the unknown table", problems)
	}
}

func TestAllProblemsAtOnce(t *testing.T) {
	const doc = `
[server]
port = 70000
max_request_size = -1
loops = -2
pong_timeout = 0
[server.tls]
cert = "/c.pem"
handshake_workers = 0
handshake_queue = -1
[[apps]]
app_id = "1"
key = "k"
secret = "s"
ping_interval = 0
accept_client_events_from = "everybody"
allowed_origins = []
[[apps]]
app_id = "1"
key = "k"
secret = ""
max_message_size = -5
[[apps]]
app_id = ""
key = "a/b"
secret = "x"
[limits]
max_batch_size = -1
max_presence_members = 0
[scaling]
enabled = true
channel = ""
publish_timeout_ms = 0
[scaling.redis]
url = "http://redis"
port = 0
[metrics]
enabled = true
port = 70001
[log]
level = "verbose"
format = "xml"
`
	problems := problemsOf(t, doc, map[string]string{"REVERB_SERVER_PATH": "/a b"})
	want := [][]string{
		{"server.port", "70000"},
		{"server.max_request_size"},
		{"server.loops"},
		{"server.pong_timeout"},
		{"server.path", "REVERB_SERVER_PATH"},
		{"server.tls.key", "server.tls.cert"},
		{"server.tls.handshake_workers"},
		{"server.tls.handshake_queue"},
		{"apps[0].ping_interval"},
		{"apps[0].accept_client_events_from", "everybody"},
		{"apps[0].allowed_origins"},
		{"apps[1].app_id", "apps[0]"},
		{"apps[1].key", "apps[0]"},
		{"apps[1].secret", "empty"},
		{"apps[1].max_message_size"},
		{"apps[2].app_id", "empty"},
		{"apps[2].key", "a/b"},
		{"limits.max_batch_size"},
		{"limits.max_presence_members"},
		{"scaling.channel"},
		{"scaling.publish_timeout_ms", "0"},
		{"scaling.redis.url", "http"},
		{"scaling.redis.port"},
		{"metrics.port", "70001"},
		{"log.level", "verbose"},
		{"log.format", "xml"},
	}
	for _, w := range want {
		if !containsProblem(problems, w...) {
			t.Errorf("no problem containing %q", w)
		}
	}
	if len(problems) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(problems), len(want), strings.Join(problems, "\n"))
	}
	// Error() lists them one per line.
	err := &ValidationError{Problems: problems}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(problems)+1 {
		t.Errorf("Error() has %d lines, want %d", len(lines), len(problems)+1)
	}
}

func TestValidateAcceptsEdgeValues(t *testing.T) {
	const doc = `
[server]
port = 0
auth_timestamp_window = 0
drain_timeout = 0
[server.tls]
cert = "/c.pem"
key = "/k.pem"
[[apps]]
app_id = "1"
key = "k"
secret = "s"
max_message_size = 0
accept_client_events_from = "None"
[metrics]
port = 0
[scaling.redis]
url = "::not a url"
port = 0
`
	c := mustLoad(t, doc, nil) // Redis is not checked while scaling is off.
	if !c.Server.TLS.Enabled() {
		t.Error("TLS.Enabled() = false")
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	c.Server.Port = -1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "server.port") {
		t.Errorf("Validate after port = -1: %v", err)
	}
}

func TestLoadFileErrors(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	p := writeTemp(t, "[server\nport = 1\n")
	if _, err := Load(p, nil); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("syntax error: %v, want an error naming %s", err, p)
	}
	p = writeTemp(t, "[server]\nport = \"8080\"\n")
	if _, err := Load(p, nil); err == nil || !strings.Contains(err.Error(), "port") {
		t.Errorf("type error: %v, want an error naming port", err)
	}
}

func TestOptions(t *testing.T) {
	const doc = `
[server]
path = "ws/"
max_request_size = 123
pong_timeout = 7
auth_timestamp_window = 99
max_outbound_buffer = 4096
[[apps]]
app_id = "1"
key = "k1"
secret = "s1"
allowed_origins = ["a.example", "*.b.example"]
ping_interval = 11
activity_timeout = 12
max_message_size = 0
max_connections = 13
accept_client_events_from = "all"
[apps.rate_limiting]
enabled = true
max_attempts = 14
decay_seconds = 15
terminate_on_limit = true
[[apps]]
app_id = "2"
key = "k2"
secret = "s2"
accept_client_events_from = "none"
[limits]
max_channels_per_event = 21
max_batch_size = 22
max_name_length = 23
max_channels_per_connection = 24
max_presence_members = 25
max_user_info_size = 26
client_events_per_second = 27
`
	c := mustLoad(t, doc, nil)
	o := c.Options()
	if len(o.Apps) != 2 {
		t.Fatalf("len(Apps) = %d", len(o.Apps))
	}
	a, b := o.Apps[0], o.Apps[1]
	tests := []struct {
		name      string
		got, want any
	}{
		{"PathPrefix", o.PathPrefix, "/ws"},
		{"MaxRequestSize", o.MaxRequestSize, 123},
		{"AuthTimestampWindow", o.AuthTimestampWindow, 99 * time.Second},
		{"PongTimeout", o.PongTimeout, 7 * time.Second},
		{"MaxOutboundBuffer", o.MaxOutboundBuffer, 4096},
		{"MaxChannelsPerEvent", o.MaxChannelsPerEvent, 21},
		{"MaxBatchSize", o.MaxBatchSize, 22},
		{"MaxNameLength", o.MaxNameLength, 23},
		{"MaxChannelsPerConnection", o.MaxChannelsPerConnection, 24},
		{"MaxPresenceMembers", o.MaxPresenceMembers, 25},
		{"MaxUserInfoSize", o.MaxUserInfoSize, 26},
		{"ClientEventsPerSecond", o.ClientEventsPerSecond, 27},
		{"Apps[0].ID", a.ID, "1"},
		{"Apps[0].Key", a.Key, "k1"},
		{"Apps[0].Secret", a.Secret, "s1"},
		{"Apps[0].AllowedOrigins", a.AllowedOrigins, []string{"a.example", "*.b.example"}},
		{"Apps[0].PingInterval", a.PingInterval, 11 * time.Second},
		{"Apps[0].ActivityTimeout", a.ActivityTimeout, 12 * time.Second},
		{"Apps[0].MaxMessageSize", a.MaxMessageSize, 0},
		{"Apps[0].MaxConnections", a.MaxConnections, 13},
		{"Apps[0].ClientEvents", a.ClientEvents, pusher.ClientEventsAll},
		{"Apps[0].RateLimit", a.RateLimit, pusher.RateLimit{Enabled: true, MaxAttempts: 14, Decay: 15 * time.Second, TerminateOnLimit: true}},
		{"Apps[1].ID", b.ID, "2"},
		{"Apps[1].ClientEvents", b.ClientEvents, pusher.ClientEventsNone},
		{"Apps[1].PingInterval", b.PingInterval, 60 * time.Second},
		{"Apps[1].MaxMessageSize", b.MaxMessageSize, 10000},
		{"Apps[1].RateLimit", b.RateLimit, pusher.RateLimit{MaxAttempts: 60, Decay: 60 * time.Second}},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}

	// The default ClientEvents policy is members.
	if p := mustLoad(t, "", nil).Options().Apps[0].ClientEvents; p != pusher.ClientEventsMembers {
		t.Errorf("default ClientEvents = %v", p)
	}
	// Options does not share slices with the Config.
	a.AllowedOrigins[0] = "changed"
	if c.Apps[0].AllowedOrigins[0] != "a.example" {
		t.Error("Options shares AllowedOrigins with the Config")
	}
	// Normalize leaves a loaded configuration alone.
	before := c.Options()
	after := c.Options()
	after.Normalize()
	after.Logger = nil
	if !reflect.DeepEqual(before, after) {
		t.Errorf("Normalize changed the options:\n%+v\n%+v", before, after)
	}
}

func TestOptionsAuthTimestampWindow(t *testing.T) {
	tests := []struct {
		seconds int
		want    time.Duration
	}{
		{600, 600 * time.Second},
		{1, time.Second},
		{0, -1},
	}
	for _, tt := range tests {
		c := Default()
		c.Server.AuthTimestampWindow = tt.seconds
		got := c.Options().AuthTimestampWindow
		if tt.want < 0 {
			if got >= 0 {
				t.Errorf("window %d: got %v, want negative (no check)", tt.seconds, got)
			}
			continue
		}
		if got != tt.want {
			t.Errorf("window %d: got %v, want %v", tt.seconds, got, tt.want)
		}
	}
}

func TestNormalizePath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"/", ""},
		{"//", ""},
		{"ws", "/ws"},
		{"/ws", "/ws"},
		{"/ws/", "/ws"},
		{"ws/", "/ws"},
		{"/a/b/", "/a/b"},
		{" /ws ", "/ws"},
	}
	for _, tt := range tests {
		if got := NormalizePath(tt.in); got != tt.want {
			t.Errorf("NormalizePath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedacted(t *testing.T) {
	c := mustLoad(t, `
[[apps]]
app_id = "1"
key = "public-key-1"
secret = "very-secret-1"
[[apps]]
app_id = "2"
key = "public-key-2"
secret = "very-secret-2"
[[apps.webhooks]]
url = "https://hook:hook-password@example.com/hook"
event_types = ["channel_occupied"]
headers = { Authorization = "Bearer header-token", X-Tenant = "tenant-value" }
[scaling.redis]
url = "redis://user:url-password@redis:6379/0"
password = "redis-password"
sentinel_password = "sentinel-password"
`, nil)
	out := c.Redacted()
	for _, secret := range []string{"very-secret-1", "very-secret-2", "url-password", "redis-password", "sentinel-password",
		"hook-password", "header-token", "tenant-value"} {
		if strings.Contains(out, secret) {
			t.Errorf("Redacted output contains %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"public-key-1", "public-key-2", "********", "redis://user:********@redis:6379/0",
		"https://hook:********@example.com/hook", "Authorization", "X-Tenant"} {
		if !strings.Contains(out, want) {
			t.Errorf("Redacted output lacks %q:\n%s", want, out)
		}
	}
	// The original is untouched.
	if c.Apps[0].Secret != "very-secret-1" || c.Scaling.Redis.Password != "redis-password" ||
		c.Scaling.Redis.SentinelPassword != "sentinel-password" ||
		c.Apps[1].Webhooks[0].URL != "https://hook:hook-password@example.com/hook" ||
		c.Apps[1].Webhooks[0].Headers["Authorization"] != "Bearer header-token" {
		t.Error("Redacted modified the Config")
	}
	// The output is a valid configuration file.
	r, err := Load(writeTemp(t, out), nil)
	if err != nil {
		t.Fatalf("Load(Redacted()): %v\n%s", err, out)
	}
	if r.Apps[1].Key != "public-key-2" || r.Apps[1].Secret != "********" {
		t.Errorf("reloaded apps = %+v", r.Apps)
	}
	if w := r.Apps[1].Webhooks; len(w) != 1 || w[0].Headers["X-Tenant"] != "********" {
		t.Errorf("reloaded webhooks = %+v", w)
	}
	if r.Webhooks != c.Webhooks {
		t.Errorf("reloaded [webhooks] = %+v, want %+v", r.Webhooks, c.Webhooks)
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct {
		in     string
		hidden string
		keep   string
	}{
		{"redis://user:pw1@h:6379/0", "pw1", "redis://user:********@h:6379/0"},
		{"redis://:pw2@h", "pw2", "redis://:********@h"},
		{"rediss://h:6380?password=pw3&db=1", "pw3", "password=********"},
		{"redis://h:6379", "", "redis://h:6379"},
		{"redis://us er:pw4@h%zz", "pw4", "********"},
	}
	for _, tt := range tests {
		got := redactURL(tt.in)
		if tt.hidden != "" && strings.Contains(got, tt.hidden) {
			t.Errorf("redactURL(%q) = %q, still shows %q", tt.in, got, tt.hidden)
		}
		if !strings.Contains(got, tt.keep) {
			t.Errorf("redactURL(%q) = %q, want it to contain %q", tt.in, got, tt.keep)
		}
	}
}

// serverEnvVars are the node-wide variables Load reads.
var serverEnvVars = []string{
	"REVERB_SERVER_HOST", "REVERB_SERVER_PORT", "REVERB_SERVER_PATH", "REVERB_HOST",
	"REVERB_MAX_REQUEST_SIZE", "REVERB_SCALING_ENABLED", "REVERB_SCALING_CHANNEL",
	"REVERB_SCALING_REDIS_MODE", "REVERB_SCALING_REDIS_ADDRS", "REVERB_SCALING_REDIS_MASTER_NAME",
	"REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_DB",
}

// examplePath is the documented example at the repository root.
const examplePath = "../reverb.toml.example"

func TestExampleFileLoads(t *testing.T) {
	c, err := Load(examplePath, nil)
	if err != nil {
		t.Fatalf("Load(%s): %v", examplePath, err)
	}
	if c.DefaultApp || len(c.Apps) != 1 {
		t.Fatalf("example apps = %+v (DefaultApp %v), want the one example app", c.Apps, c.DefaultApp)
	}
	a := c.Apps[0]
	if want := NewApp(a.AppID, a.Key, a.Secret); !reflect.DeepEqual(a, want) {
		t.Errorf("example app = %+v, want defaults %+v", a, want)
	}
	c.Apps, c.origins = nil, nil
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("example values differ from Default():\n%+v\n%+v", c, Default())
	}
}

// uncommentWebhookExample returns the example file with its commented-out
// [[apps.webhooks]] table turned on: the "# [[apps.webhooks]]" line and the
// "# "-prefixed lines that follow it.
func uncommentWebhookExample(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	found := false
	for i := 0; i < len(lines); i++ {
		if lines[i] != "# [[apps.webhooks]]" {
			continue
		}
		found = true
		for ; i < len(lines) && strings.HasPrefix(lines[i], "# "); i++ {
			lines[i] = strings.TrimPrefix(lines[i], "# ")
		}
	}
	if !found {
		t.Fatalf("%s has no commented-out [[apps.webhooks]] example", examplePath)
	}
	return strings.Join(lines, "\n")
}

func TestExampleFileHasEveryKey(t *testing.T) {
	// The per-app webhook endpoints are optional, so their keys are shown in
	// a commented-out example.
	var v map[string]any
	md, err := toml.Decode(uncommentWebhookExample(t), &v)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, k := range md.Keys() {
		have[k.String()] = true
	}
	for k := range knownKeys() {
		if !have[k] {
			t.Errorf("%s lacks key %q", examplePath, k)
		}
	}
	// Every environment variable is documented next to its key.
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append(append([]string{}, serverEnvVars...), appVars...) {
		if !strings.Contains(string(data), "env: "+name) {
			t.Errorf("%s does not document %s", examplePath, name)
		}
	}
}

func TestMetricsPortConflict(t *testing.T) {
	problems := problemsOf(t, "[metrics]\nenabled = true\nport = 8080\n", nil)
	if !containsProblem(problems, "metrics.port", "server.port") {
		t.Errorf("problems %q lack the port conflict", problems)
	}
	// Disabled metrics do not conflict.
	mustLoad(t, "[metrics]\nenabled = false\nport = 8080\n", nil)
}

func TestMetricsPProf(t *testing.T) {
	c := mustLoad(t, "[metrics]\nenabled = true\npprof = true\n", nil)
	if !c.Metrics.PProf || !c.Metrics.Enabled {
		t.Errorf("metrics = %+v, want pprof on", c.Metrics)
	}
	if c := mustLoad(t, "", nil); c.Metrics.PProf {
		t.Error("pprof is on by default")
	}
}

func TestRedisModes(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want Redis
	}{
		{
			name: "single",
			doc: `
[scaling]
enabled = true
publish_timeout_ms = 500
[scaling.redis]
mode = "single"
url = "rediss://redis.internal:6380/1"
tls_ca_file = "/etc/ssl/redis/ca.pem"
`,
			want: Redis{
				Mode: "single", Addrs: []string{}, URL: "rediss://redis.internal:6380/1",
				TLSCAFile: "/etc/ssl/redis/ca.pem", Host: "127.0.0.1", Port: 6379,
			},
		},
		{
			name: "sentinel",
			doc: `
[scaling]
enabled = true
[scaling.redis]
mode = "sentinel"
addrs = ["s1:26379", "10.0.0.2:26379", "[::1]:26379"]
master_name = "mymaster"
sentinel_username = "su"
sentinel_password = "sp"
password = "rp"
db = 2
tls = true
tls_insecure_skip_verify = true
`,
			want: Redis{
				Mode: "sentinel", Addrs: []string{"s1:26379", "10.0.0.2:26379", "[::1]:26379"},
				MasterName: "mymaster", SentinelUsername: "su", SentinelPassword: "sp",
				TLS: true, TLSInsecureSkipVerify: true,
				Host: "127.0.0.1", Port: 6379, Password: "rp", DB: 2,
			},
		},
		{
			name: "cluster",
			doc: `
[scaling]
enabled = true
[scaling.redis]
mode = "cluster"
addrs = ["r1:6379", "r2:6379"]
username = "ru"
tls = true
`,
			want: Redis{
				Mode: "cluster", Addrs: []string{"r1:6379", "r2:6379"}, TLS: true,
				Host: "127.0.0.1", Port: 6379, Username: "ru",
			},
		},
		{
			// Laravel's REDIS_HOST and REDIS_PORT may be anything: they are
			// not used, hence not checked, outside single mode.
			name: "cluster ignores host and port",
			doc: `
[scaling]
enabled = true
[scaling.redis]
mode = "cluster"
addrs = ["r1:6379"]
host = ""
port = 0
url = "http://unused"
`,
			want: Redis{Mode: "cluster", Addrs: []string{"r1:6379"}, URL: "http://unused"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, tt.doc, nil)
			if !reflect.DeepEqual(c.Scaling.Redis, tt.want) {
				t.Errorf("redis = %+v, want %+v", c.Scaling.Redis, tt.want)
			}
		})
	}
	if c := mustLoad(t, tests[0].doc, nil); c.Scaling.PublishTimeoutMS != 500 {
		t.Errorf("publish_timeout_ms = %d, want 500", c.Scaling.PublishTimeoutMS)
	}
	// The environment selects the topology too.
	c := mustLoad(t, "[scaling]\nenabled = true\n", map[string]string{
		"REVERB_SCALING_REDIS_MODE":        "cluster",
		"REVERB_SCALING_REDIS_ADDRS":       "r1:7000,r2:7001",
		"REVERB_SCALING_REDIS_MASTER_NAME": "unused",
	})
	if r := c.Scaling.Redis; r.Mode != "cluster" || !reflect.DeepEqual(r.Addrs, []string{"r1:7000", "r2:7001"}) || r.MasterName != "unused" {
		t.Errorf("redis from env = %+v", r)
	}
	// The file's addrs are replaced by the environment's, not merged.
	c = mustLoad(t, "[scaling.redis]\nmode = \"sentinel\"\naddrs = [\"a:1\", \"b:2\", \"c:3\"]\nmaster_name = \"m\"\n",
		map[string]string{"REVERB_SCALING_REDIS_ADDRS": "d:4"})
	if !reflect.DeepEqual(c.Scaling.Redis.Addrs, []string{"d:4"}) {
		t.Errorf("addrs = %q, want the environment's", c.Scaling.Redis.Addrs)
	}
}

func TestRedisTopologyProblems(t *testing.T) {
	const on = "[scaling]\nenabled = true\n[scaling.redis]\n"
	tests := []struct {
		name string
		doc  string
		want [][]string // substrings of each expected problem, all of them
	}{
		{"unknown mode", on + `mode = "ring"`, [][]string{{"scaling.redis.mode", `"ring"`, "single", "sentinel", "cluster"}}},
		{"empty mode", on + `mode = ""`, [][]string{{"scaling.redis.mode", `""`}}},
		{"mode is case-sensitive", on + `mode = "Cluster"` + "\naddrs = [\"r:1\"]", [][]string{{"scaling.redis.mode", `"Cluster"`}}},
		{"sentinel without addrs or master_name", on + `mode = "sentinel"`, [][]string{
			{"scaling.redis.addrs", "sentinel mode"},
			{"scaling.redis.master_name", "sentinel mode"},
		}},
		{"sentinel with empty addrs", on + "mode = \"sentinel\"\naddrs = []\nmaster_name = \"m\"", [][]string{{"scaling.redis.addrs", "sentinel mode"}}},
		{"sentinel without master_name", on + "mode = \"sentinel\"\naddrs = [\"s:26379\"]", [][]string{{"scaling.redis.master_name", "must not be empty"}}},
		{"cluster without addrs", on + `mode = "cluster"`, [][]string{{"scaling.redis.addrs", "cluster mode"}}},
		{"single with addrs", on + `addrs = ["r:6379"]`, [][]string{{"scaling.redis.addrs", "used only in sentinel and cluster modes"}}},
		{"malformed addrs", on + "mode = \"cluster\"\naddrs = [\"ok:1\", \"nohost\", \":6379\", \"h:0\", \"h:65536\", \"h:port\", \"h:+80\", \"h:\", \"::1:6379\", \"[::1]:65535\"]", [][]string{
			{"scaling.redis.addrs", "entry 1", `"nohost"`, "host:port"},
			{"scaling.redis.addrs", "entry 2", `":6379"`},
			{"scaling.redis.addrs", "entry 3", `"h:0"`, "1 to 65535"},
			{"scaling.redis.addrs", "entry 4", `"h:65536"`},
			{"scaling.redis.addrs", "entry 5", `"h:port"`},
			{"scaling.redis.addrs", "entry 6", `"h:+80"`},
			{"scaling.redis.addrs", "entry 7", `"h:"`},
			{"scaling.redis.addrs", "entry 8", `"::1:6379"`},
		}},
		{"publish_timeout_ms", "[scaling]\nenabled = true\npublish_timeout_ms = -1\n", [][]string{{"scaling.publish_timeout_ms", "greater than 0", "-1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems := problemsOf(t, tt.doc, nil)
			for _, w := range tt.want {
				if !containsProblem(problems, w...) {
					t.Errorf("no problem containing %q in %q", w, problems)
				}
			}
			if len(problems) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%s", len(problems), len(tt.want), strings.Join(problems, "\n"))
			}
		})
	}

	// Problems from the environment name the variable.
	problems := problemsOf(t, on+`mode = "sentinel"`, map[string]string{"REVERB_SCALING_REDIS_ADDRS": "s:0"})
	if !containsProblem(problems, "scaling.redis.addrs", `"s:0"`, "REVERB_SCALING_REDIS_ADDRS") {
		t.Errorf("problems %q lack the bad address with its variable", problems)
	}

	// Nothing is checked while scaling is off: the Redis keys may be shared
	// with the rest of a Laravel app's configuration.
	mustLoad(t, "[scaling]\npublish_timeout_ms = 0\n[scaling.redis]\nmode = \"ring\"\naddrs = [\"nohost\"]\n", nil)
	mustLoad(t, "[scaling.redis]\nmode = \"sentinel\"\n", nil)
}

func TestTLSKeyExchanges(t *testing.T) {
	c := mustLoad(t, "[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nkey_exchanges = [\"X25519\", \"P-256\"]\n", nil)
	if got := c.Server.TLS.KeyExchanges; len(got) != 2 || got[0] != "X25519" || got[1] != "P-256" {
		t.Fatalf("key_exchanges = %v", got)
	}
	if p := problemsOf(t, "[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nkey_exchanges = [\"X448\"]\n", nil); len(p) != 1 || !strings.Contains(p[0], "server.tls.key_exchanges") {
		t.Fatalf("unknown key exchange: %v", p)
	}
}
