package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// fileConfig is what the TOML file decodes into. Apps are kept raw so that
// each one can be decoded on top of NewApp's defaults.
type fileConfig struct {
	Server   Server           `toml:"server"`
	Apps     []toml.Primitive `toml:"apps"`
	Limits   Limits           `toml:"limits"`
	Webhooks Webhooks         `toml:"webhooks"`
	Scaling  Scaling          `toml:"scaling"`
	Metrics  Metrics          `toml:"metrics"`
	Log      Log              `toml:"log"`
}

// Load builds the configuration: Default, then the TOML file at path (skipped
// when path is ""), then the environment read through env (os.LookupEnv in
// production; nil means an empty environment). When no app is configured by
// either, it adds the local default app and sets DefaultApp.
//
// Environment values follow Laravel's env(): surrounding quotes are removed,
// and "", "null", "(null)", "empty" and "(empty)" count as unset. Booleans
// accept true/false, 1/0, yes/no and (true)/(false), case-insensitively.
//
// The REVERB_APP_* variables and REVERB_ALLOWED_ORIGINS describe one app. When
// the file has apps they override the first one's fields; otherwise, when
// REVERB_APP_ID, REVERB_APP_KEY or REVERB_APP_SECRET is set, they create it;
// otherwise they tune the local default app.
//
// A file that cannot be read or parsed gives that error. Everything else
// (unknown keys, malformed environment values, invalid values) is collected
// and returned together as a *ValidationError.
func Load(path string, env func(string) (string, bool)) (*Config, error) {
	c := Default()
	var problems []string
	fileApps := false
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		unknown, err := c.decode(string(data))
		if err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
		problems = append(problems, unknown...)
		fileApps = len(c.Apps) > 0
	}
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	e := &envReader{lookup: env, origins: map[string]string{}}
	e.apply(c, fileApps)
	c.origins = e.origins
	problems = append(problems, e.problems...)
	problems = append(problems, c.problems()...)
	if len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	return c, nil
}

// decode applies a TOML document on top of c and returns the unknown keys as
// problems.
func (c *Config) decode(doc string) ([]string, error) {
	f := fileConfig{
		Server:   c.Server,
		Limits:   c.Limits,
		Webhooks: c.Webhooks,
		Scaling:  c.Scaling,
		Metrics:  c.Metrics,
		Log:      c.Log,
	}
	md, err := toml.Decode(doc, &f)
	if err != nil {
		return nil, err
	}
	apps := make([]App, 0, len(f.Apps))
	for _, p := range f.Apps {
		// The decoder overwrites a slice's elements and length, so the
		// file's allowed_origins replaces the default rather than merging.
		a := NewApp("", "", "")
		if err := md.PrimitiveDecode(p, &a); err != nil {
			return nil, err
		}
		apps = append(apps, a)
	}
	c.Server, c.Limits, c.Webhooks, c.Scaling, c.Metrics, c.Log = f.Server, f.Limits, f.Webhooks, f.Scaling, f.Metrics, f.Log
	c.Apps = apps

	// Undecoded catches keys without a field; the exact-spelling check catches
	// keys the decoder matched case-insensitively ("Port" for "port"). The
	// keys of a map field (headers) are free-form.
	undecoded := map[string]bool{}
	for _, k := range md.Undecoded() {
		undecoded[k.String()] = true
	}
	known, maps := schemaKeys()
	var unknown []string
	seen := map[string]bool{}
	for _, k := range md.Keys() {
		ks := k.String()
		if !undecoded[ks] && (known[ks] || len(k) > 1 && maps[k[:len(k)-1].String()]) || seen[ks] {
			continue
		}
		seen[ks] = true
		// Under an unknown table, report the table only.
		if len(k) > 1 && seen[k[:len(k)-1].String()] {
			continue
		}
		unknown = append(unknown, fmt.Sprintf("unknown key %q", ks))
	}
	return unknown, nil
}

// knownKeys returns every valid dotted key path of the TOML schema, tables
// included ("server", "server.port", "apps.rate_limiting.enabled", ...).
func knownKeys() map[string]bool {
	keys, _ := schemaKeys()
	return keys
}

// schemaKeys returns knownKeys and, apart, the keys of the map fields
// ("apps.webhooks.headers"), whose own keys are free-form.
func schemaKeys() (keys, maps map[string]bool) {
	keys, maps = map[string]bool{}, map[string]bool{}
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("toml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			k := tag
			if prefix != "" {
				k = prefix + "." + tag
			}
			keys[k] = true
			ft := f.Type
			if ft.Kind() == reflect.Map {
				maps[k] = true
			}
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				walk(k, ft)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	return keys, maps
}

// envReader applies the environment to a Config, collecting malformed
// values as problems.
type envReader struct {
	lookup   func(string) (string, bool)
	problems []string
	origins  map[string]string // field path -> variable that set it
}

// get returns the value of name, normalized the way Laravel's env() does.
func (e *envReader) get(name string) (string, bool) {
	v, ok := e.lookup(name)
	if !ok {
		return "", false
	}
	v = strings.TrimSpace(v)
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		v = v[1 : len(v)-1]
	}
	switch strings.ToLower(v) {
	case "", "null", "(null)", "empty", "(empty)":
		return "", false
	}
	return v, true
}

func (e *envReader) str(name, path string, dst *string) {
	if v, ok := e.get(name); ok {
		*dst = v
		e.origins[path] = name
	}
}

func (e *envReader) int(name, path string, dst *int) {
	v, ok := e.get(name)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.problems = append(e.problems, fmt.Sprintf("%s: %q is not an integer", name, v))
		return
	}
	*dst = n
	e.origins[path] = name
}

func (e *envReader) bool(name, path string, dst *bool) {
	v, ok := e.get(name)
	if !ok {
		return
	}
	b, ok := parseBool(v)
	if !ok {
		e.problems = append(e.problems, fmt.Sprintf("%s: %q is not a boolean (true/false, 1/0, yes/no)", name, v))
		return
	}
	*dst = b
	e.origins[path] = name
}

func (e *envReader) list(name, path string, dst *[]string) {
	v, ok := e.get(name)
	if !ok {
		return
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	*dst = out
	e.origins[path] = name
}

func parseBool(v string) (bool, bool) {
	switch strings.ToLower(v) {
	case "true", "(true)", "1", "yes":
		return true, true
	case "false", "(false)", "0", "no":
		return false, true
	}
	return false, false
}

// appVars are the variables that describe the one app of the environment.
var appVars = []string{
	"REVERB_APP_ID", "REVERB_APP_KEY", "REVERB_APP_SECRET",
	"REVERB_APP_PING_INTERVAL", "REVERB_APP_ACTIVITY_TIMEOUT",
	"REVERB_APP_MAX_CONNECTIONS", "REVERB_APP_MAX_MESSAGE_SIZE",
	"REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM", "REVERB_APP_RATE_LIMITING_ENABLED",
	"REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS", "REVERB_APP_RATE_LIMIT_DECAY_SECONDS",
	"REVERB_APP_RATE_LIMIT_TERMINATE", "REVERB_ALLOWED_ORIGINS",
}

func (e *envReader) apply(c *Config, fileApps bool) {
	s := &c.Server
	e.str("REVERB_SERVER_HOST", "server.host", &s.Host)
	e.int("REVERB_SERVER_PORT", "server.port", &s.Port)
	e.str("REVERB_SERVER_PATH", "server.path", &s.Path)
	e.str("REVERB_HOST", "server.hostname", &s.Hostname)
	e.int("REVERB_MAX_REQUEST_SIZE", "server.max_request_size", &s.MaxRequestSize)

	sc := &c.Scaling
	e.bool("REVERB_SCALING_ENABLED", "scaling.enabled", &sc.Enabled)
	e.str("REVERB_SCALING_CHANNEL", "scaling.channel", &sc.Channel)
	e.str("REVERB_SCALING_REDIS_MODE", "scaling.redis.mode", &sc.Redis.Mode)
	e.list("REVERB_SCALING_REDIS_ADDRS", "scaling.redis.addrs", &sc.Redis.Addrs)
	e.str("REVERB_SCALING_REDIS_MASTER_NAME", "scaling.redis.master_name", &sc.Redis.MasterName)
	e.str("REDIS_URL", "scaling.redis.url", &sc.Redis.URL)
	e.str("REDIS_HOST", "scaling.redis.host", &sc.Redis.Host)
	e.int("REDIS_PORT", "scaling.redis.port", &sc.Redis.Port)
	e.str("REDIS_USERNAME", "scaling.redis.username", &sc.Redis.Username)
	e.str("REDIS_PASSWORD", "scaling.redis.password", &sc.Redis.Password)
	e.int("REDIS_DB", "scaling.redis.db", &sc.Redis.DB)

	if !fileApps {
		_, id := e.get("REVERB_APP_ID")
		_, key := e.get("REVERB_APP_KEY")
		_, secret := e.get("REVERB_APP_SECRET")
		if id || key || secret {
			c.Apps = []App{NewApp("", "", "")}
		} else {
			c.Apps = []App{NewApp(DefaultAppID, DefaultAppKey, DefaultAppSecret)}
			c.DefaultApp = true
		}
	}
	a := &c.Apps[0]
	const p = "apps[0]."
	e.str("REVERB_APP_ID", p+"app_id", &a.AppID)
	e.str("REVERB_APP_KEY", p+"key", &a.Key)
	e.str("REVERB_APP_SECRET", p+"secret", &a.Secret)
	e.list("REVERB_ALLOWED_ORIGINS", p+"allowed_origins", &a.AllowedOrigins)
	e.int("REVERB_APP_PING_INTERVAL", p+"ping_interval", &a.PingInterval)
	e.int("REVERB_APP_ACTIVITY_TIMEOUT", p+"activity_timeout", &a.ActivityTimeout)
	e.int("REVERB_APP_MAX_CONNECTIONS", p+"max_connections", &a.MaxConnections)
	e.int("REVERB_APP_MAX_MESSAGE_SIZE", p+"max_message_size", &a.MaxMessageSize)
	e.str("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM", p+"accept_client_events_from", &a.AcceptClientEventsFrom)
	r := &a.RateLimiting
	e.bool("REVERB_APP_RATE_LIMITING_ENABLED", p+"rate_limiting.enabled", &r.Enabled)
	e.int("REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS", p+"rate_limiting.max_attempts", &r.MaxAttempts)
	e.int("REVERB_APP_RATE_LIMIT_DECAY_SECONDS", p+"rate_limiting.decay_seconds", &r.DecaySeconds)
	e.bool("REVERB_APP_RATE_LIMIT_TERMINATE", p+"rate_limiting.terminate_on_limit", &r.TerminateOnLimit)
}

// Validate checks c and returns a *ValidationError listing every problem, or
// nil. Load calls it; call it again after changing a loaded Config (for
// example from command-line flags).
func (c *Config) Validate() error {
	if p := c.problems(); len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

func (c *Config) problems() []string {
	v := validator{origins: c.origins}
	s := c.Server
	v.port("server.port", s.Port, 0)
	if s.Host == "" {
		v.add("server.host", "must not be empty (use \"0.0.0.0\" for every interface)")
	}
	if strings.ContainsAny(s.Path, "?# \t\r\n") {
		v.add("server.path", fmt.Sprintf("%q must be a plain URL path", s.Path))
	}
	v.positive("server.max_request_size", s.MaxRequestSize)
	v.nonNegative("server.loops", s.Loops)
	v.positive("server.handshake_timeout", s.HandshakeTimeout)
	v.positive("server.max_outbound_buffer", s.MaxOutboundBuffer)
	v.positive("server.fanout_chunk", s.FanoutChunk)
	v.positive("server.pong_timeout", s.PongTimeout)
	v.nonNegative("server.auth_timestamp_window", s.AuthTimestampWindow)
	v.nonNegative("server.api_workers", s.APIWorkers)
	v.positive("server.api_queue", s.APIQueue)
	v.nonNegative("server.drain_timeout", s.DrainTimeout)
	v.nonNegative("server.max_connections", s.MaxConnections)
	v.positive("server.tls.handshake_workers", s.TLS.HandshakeWorkers)
	v.positive("server.tls.handshake_queue", s.TLS.HandshakeQueue)
	for _, name := range s.TLS.KeyExchanges {
		if _, ok := KeyExchangeIDs[name]; !ok {
			v.add("server.tls.key_exchanges", fmt.Sprintf("unknown key exchange %q (X25519MLKEM768, X25519, P-256, P-384, P-521)", name))
		}
	}
	if (s.TLS.Cert == "") != (s.TLS.Key == "") {
		if s.TLS.Cert == "" {
			v.add("server.tls.cert", "must be set when server.tls.key is")
		} else {
			v.add("server.tls.key", "must be set when server.tls.cert is")
		}
	}

	if len(c.Apps) == 0 {
		v.add("apps", "at least one app is required")
	}
	ids := map[string]int{}
	keys := map[string]int{}
	for i, a := range c.Apps {
		p := fmt.Sprintf("apps[%d].", i)
		v.credential(p+"app_id", a.AppID)
		v.credential(p+"key", a.Key)
		if a.Secret == "" {
			v.add(p+"secret", "must not be empty")
		}
		if a.AppID != "" {
			if j, dup := ids[a.AppID]; dup {
				v.add(p+"app_id", fmt.Sprintf("%q is also the app_id of apps[%d]", a.AppID, j))
			} else {
				ids[a.AppID] = i
			}
		}
		if a.Key != "" {
			if j, dup := keys[a.Key]; dup {
				v.add(p+"key", fmt.Sprintf("%q is also the key of apps[%d]", a.Key, j))
			} else {
				keys[a.Key] = i
			}
		}
		if len(a.AllowedOrigins) == 0 {
			v.add(p+"allowed_origins", "must not be empty (use [\"*\"] to allow every origin)")
		}
		v.positive(p+"ping_interval", a.PingInterval)
		v.positive(p+"activity_timeout", a.ActivityTimeout)
		v.nonNegative(p+"max_message_size", a.MaxMessageSize)
		v.nonNegative(p+"max_connections", a.MaxConnections)
		switch strings.ToLower(strings.TrimSpace(a.AcceptClientEventsFrom)) {
		case "all", "members", "none":
		default:
			v.add(p+"accept_client_events_from",
				fmt.Sprintf("%q must be \"members\", \"all\" or \"none\"", a.AcceptClientEventsFrom))
		}
		v.positive(p+"rate_limiting.max_attempts", a.RateLimiting.MaxAttempts)
		v.positive(p+"rate_limiting.decay_seconds", a.RateLimiting.DecaySeconds)
	}

	l := c.Limits
	v.positive("limits.max_channels_per_event", l.MaxChannelsPerEvent)
	v.positive("limits.max_batch_size", l.MaxBatchSize)
	v.positive("limits.max_name_length", l.MaxNameLength)
	v.positive("limits.max_channels_per_connection", l.MaxChannelsPerConnection)
	v.positive("limits.max_presence_members", l.MaxPresenceMembers)
	v.positive("limits.max_user_info_size", l.MaxUserInfoSize)
	v.positive("limits.client_events_per_second", l.ClientEventsPerSecond)
	v.positive("limits.subscriptions_per_second", l.SubscriptionsPerSecond)
	v.positive("limits.max_fragments", l.MaxFragments)

	// Redis settings are shared with the rest of a Laravel app's .env, so
	// they are only checked when scaling uses them.
	if sc := c.Scaling; sc.Enabled {
		if sc.Channel == "" {
			v.add("scaling.channel", "must not be empty when scaling is enabled")
		}
		v.positive("scaling.heartbeat_interval", c.Scaling.HeartbeatInterval)
		v.positive("scaling.gather_timeout_ms", c.Scaling.GatherTimeoutMS)
		v.nonNegative("scaling.sync_timeout", c.Scaling.SyncTimeout)
		v.positive("scaling.publish_queue", c.Scaling.PublishQueue)
		v.positive("scaling.tracker_queue", c.Scaling.TrackerQueue)
		v.positive("scaling.publish_timeout_ms", c.Scaling.PublishTimeoutMS)
		if c.Scaling.NodeTimeout <= c.Scaling.HeartbeatInterval {
			v.add("scaling.node_timeout", "must be greater than scaling.heartbeat_interval")
		}
		r := sc.Redis
		switch r.Mode {
		case RedisSingle:
			// url, host and port name the server only in single mode.
			if len(r.Addrs) > 0 {
				v.add("scaling.redis.addrs", "is used only in sentinel and cluster modes (scaling.redis.mode is \"single\")")
			}
			if r.URL != "" {
				u, err := url.Parse(r.URL)
				switch {
				case err != nil:
					// The URL may hold a password: do not echo it.
					v.add("scaling.redis.url", "is not a valid URL")
				case !slices.Contains([]string{"redis", "rediss", "unix"}, u.Scheme):
					v.add("scaling.redis.url", fmt.Sprintf("scheme %q must be redis, rediss or unix", u.Scheme))
				}
			} else if r.Host == "" {
				v.add("scaling.redis.host", "must not be empty when scaling is enabled without a url")
			}
			v.port("scaling.redis.port", r.Port, 1)
		case RedisSentinel:
			if len(r.Addrs) == 0 {
				v.add("scaling.redis.addrs", "must list the sentinels (host:port) in sentinel mode")
			}
			if r.MasterName == "" {
				v.add("scaling.redis.master_name", "must not be empty in sentinel mode")
			}
		case RedisCluster:
			if len(r.Addrs) == 0 {
				v.add("scaling.redis.addrs", "must list seed nodes (host:port) in cluster mode")
			}
		default:
			v.add("scaling.redis.mode", fmt.Sprintf("%q must be \"single\", \"sentinel\" or \"cluster\"", r.Mode))
		}
		if r.Mode != RedisSingle {
			for i, a := range r.Addrs {
				if !validAddr(a) {
					v.add("scaling.redis.addrs", fmt.Sprintf("entry %d, %q, must be host:port with a port from 1 to 65535", i, a))
				}
			}
		}
		v.nonNegative("scaling.redis.db", r.DB)
	}

	c.webhookProblems(&v)

	m := c.Metrics
	v.port("metrics.port", m.Port, 0)
	if m.Enabled && m.Port > 0 && m.Port <= 65535 && m.Port == s.Port {
		v.add("metrics.port", fmt.Sprintf("%d is also server.port", m.Port))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", fmt.Sprintf("%q must be debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		v.add("log.format", fmt.Sprintf("%q must be text or json", c.Log.Format))
	}
	return v.problems
}

type validator struct {
	origins  map[string]string
	problems []string
}

func (v *validator) add(path, msg string) {
	if env, ok := v.origins[path]; ok {
		msg += " (set by " + env + ")"
	}
	v.problems = append(v.problems, path+": "+msg)
}

func (v *validator) positive(path string, n int) {
	if n <= 0 {
		v.add(path, fmt.Sprintf("must be greater than 0, got %d", n))
	}
}

func (v *validator) nonNegative(path string, n int) {
	if n < 0 {
		v.add(path, fmt.Sprintf("must not be negative, got %d", n))
	}
}

func (v *validator) port(path string, n, lowest int) {
	if n < lowest || n > 65535 {
		v.add(path, fmt.Sprintf("must be between %d and 65535, got %d", lowest, n))
	}
}

// validAddr reports whether s is host:port with a non-empty host and a
// decimal port from 1 to 65535 ("[::1]:6379" for IPv6).
func validAddr(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || port == "" || len(port) > 5 {
		return false
	}
	n := 0
	for _, c := range port {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n >= 1 && n <= 65535
}

// credential checks an app_id or key, which appear as one URL path segment.
func (v *validator) credential(path, s string) {
	switch {
	case s == "":
		v.add(path, "must not be empty")
	case strings.ContainsAny(s, "/?#% \t\r\n"):
		v.add(path, fmt.Sprintf("%q must not contain '/', '?', '#', '%%' or spaces", s))
	}
}
