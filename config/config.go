// Package config is the configuration of the server: the reverb.toml schema,
// its defaults, the environment variables Laravel Reverb reads, validation,
// and the conversion into the pusher package's runtime types.
//
// Values are resolved in this order, later ones winning:
//
//  1. the built-in defaults (Default), which equal Reverb's config/reverb.php
//     defaults wherever Reverb has the setting;
//  2. the TOML file given to Load;
//  3. the environment, under Reverb's variable names (REVERB_SERVER_PORT,
//     REVERB_APP_KEY, REDIS_HOST, ...).
//
// Every problem found on the way is reported at once as a *ValidationError.
package config

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/reverbgo/reverb/webhooks"
)

// Credentials of the app Load adds when neither the file nor the environment
// configures one. They are public, so the app is for local development only.
const (
	DefaultAppID     = "local"
	DefaultAppKey    = "local-key"
	DefaultAppSecret = "local-secret"
)

// Config is the whole configuration of one server process. The zero value is
// not useful; start from Default or Load.
type Config struct {
	// Server is the listener and node-wide runtime settings.
	Server Server `toml:"server"`
	// Apps are the applications served. Load guarantees at least one.
	// Default: none in Default(); Load adds the local default app when
	// nothing configures one (see DefaultApp).
	Apps []App `toml:"apps"`
	// Limits are the Pusher protocol limits, node-wide for all apps.
	Limits Limits `toml:"limits"`
	// Webhooks are the delivery settings shared by every app's webhooks.
	Webhooks Webhooks `toml:"webhooks"`
	// Scaling is the Redis pub/sub fan-out between nodes.
	Scaling Scaling `toml:"scaling"`
	// Metrics is the Prometheus endpoint.
	Metrics Metrics `toml:"metrics"`
	// Log is the logger setup.
	Log Log `toml:"log"`

	// DefaultApp is true when Apps holds only the built-in local app
	// (DefaultAppID, DefaultAppKey, DefaultAppSecret) because nothing else
	// configured one. The CLI should print the credentials with a warning.
	DefaultApp bool `toml:"-"`

	// origins maps a field path ("server.port") to the environment variable
	// that set it, so that problems can name their source.
	origins map[string]string
}

// Server is the [server] table.
type Server struct {
	// Host is the address to bind. Reverb: servers.reverb.host,
	// REVERB_SERVER_HOST. Default: "0.0.0.0".
	Host string `toml:"host"`
	// Port is the TCP port to listen on; 0 lets the kernel choose one.
	// Reverb: servers.reverb.port, REVERB_SERVER_PORT. Default: 8080.
	Port int `toml:"port"`
	// Path is a prefix of every route (WebSocket, HTTP API and /up), also
	// stripped before HTTP API signatures are checked. "" means none.
	// Reverb: servers.reverb.path, REVERB_SERVER_PATH. Default: "".
	Path string `toml:"path"`
	// Hostname is the public host name, used only in the start-up banner.
	// Reverb: servers.reverb.hostname, REVERB_HOST. Default: "".
	Hostname string `toml:"hostname"`
	// MaxRequestSize caps a whole HTTP request (head and body) in bytes, for
	// API calls and WebSocket upgrades; larger ones get 413. Must be > 0.
	// Reverb: servers.reverb.max_request_size, REVERB_MAX_REQUEST_SIZE.
	// Default: 10000.
	MaxRequestSize int `toml:"max_request_size"`
	// Loops is the number of event loops. 0 means one per CPU. Default: 0.
	Loops int `toml:"loops"`
	// HandshakeTimeout is how many seconds a new TCP connection has to
	// complete its HTTP request or WebSocket upgrade. Must be > 0.
	// Default: 10.
	HandshakeTimeout int `toml:"handshake_timeout"`
	// TCPKeepalive is the idle time, in seconds, after which the kernel
	// probes a connection with TCP keepalive (then every fifth of it, 5
	// times, before it resets the connection). 0 turns it off: Pusher's own
	// pings (apps' ping_interval, pong_timeout) already find dead peers,
	// without a kernel timer per socket. Default: 0.
	TCPKeepalive int `toml:"tcp_keepalive"`
	// MaxOutboundBuffer caps the bytes queued for one slow connection before
	// it is disconnected. Must be > 0. Default: 1048576 (1 MiB).
	MaxOutboundBuffer int `toml:"max_outbound_buffer"`
	// FanoutChunk is how many connections a loop writes a broadcast to
	// before it reads requests and writes answers again; the fan-out goes
	// on right after. Must be > 0. Default: 256.
	FanoutChunk int `toml:"fanout_chunk"`
	// PongTimeout is how many seconds a pinged connection may stay silent
	// before it is closed with 4201. Must be > 0. Default: 30.
	PongTimeout int `toml:"pong_timeout"`
	// AuthTimestampWindow is how many seconds an HTTP API request's
	// auth_timestamp may differ from the server clock. 0 turns the check off
	// (Reverb never checks). Default: 600 (Pusher's window).
	AuthTimestampWindow int `toml:"auth_timestamp_window"`
	// APIWorkers is the number of goroutines handling HTTP API requests.
	// 0 means 4 x the number of CPUs. Default: 0.
	APIWorkers int `toml:"api_workers"`
	// APIQueue is how many HTTP API requests may wait for a worker before new
	// ones are refused. Must be > 0. Default: 1024.
	APIQueue int `toml:"api_queue"`
	// ReusePort sets SO_REUSEPORT so several processes can share the port.
	// A draining server takes its listeners out of the port's group once
	// another process listens on the port, so new connections go to the
	// other processes. Default: false.
	ReusePort bool `toml:"reuse_port"`
	// DrainTimeout is how many seconds a graceful shutdown waits for
	// connections to go before closing them. 0 closes them at once.
	// Default: 10.
	DrainTimeout int `toml:"drain_timeout"`
	// PidDir is the directory where `reverb start` writes its pid file
	// (reverb-<port>.<pid>.pid) and where `reverb restart` looks for the
	// servers to restart. "" means the system's temporary directory.
	// Default: "".
	PidDir string `toml:"pid_dir"`
	// MaxConnections caps the open connections of this node. 0 means no cap
	// besides the file descriptor budget. Default: 0.
	MaxConnections int `toml:"max_connections"`
	// TLS turns on TLS on the listener when both paths are set.
	TLS TLS `toml:"tls"`
}

// TLS is the [server.tls] table: both paths, or neither.
type TLS struct {
	// Cert is the path of a PEM certificate (chain). Reverb:
	// servers.reverb.options.tls.local_cert. Default: "" (no TLS).
	Cert string `toml:"cert"`
	// Key is the path of the PEM private key of Cert. Reverb:
	// servers.reverb.options.tls.local_pk. Default: "" (no TLS).
	Key string `toml:"key"`
	// HandshakeWorkers caps the TLS handshakes running at once, each on its
	// own goroutine. Must be > 0. Default: 256.
	HandshakeWorkers int `toml:"handshake_workers"`
	// HandshakeQueue caps the TLS handshakes waiting for a worker; past it
	// new connections are closed (counted). Must be > 0. Default: 4096.
	HandshakeQueue int `toml:"handshake_queue"`
	// KeyExchanges are the key exchanges the server accepts, most preferred
	// first, by name: "X25519MLKEM768" (post-quantum hybrid), "X25519",
	// "P-256", "P-384", "P-521". Default: empty, Go's defaults (the hybrid
	// first, then X25519 and the NIST curves).
	KeyExchanges []string `toml:"key_exchanges"`
}

// KeyExchangeIDs maps the names allowed in TLS.KeyExchanges to their
// crypto/tls identifiers.
var KeyExchangeIDs = map[string]tls.CurveID{
	"X25519MLKEM768": tls.X25519MLKEM768,
	"X25519":         tls.X25519,
	"P-256":          tls.CurveP256,
	"P-384":          tls.CurveP384,
	"P-521":          tls.CurveP521,
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.Cert != "" || t.Key != "" }

// App is one [[apps]] entry. NewApp returns one filled with the defaults.
type App struct {
	// AppID is the id used in HTTP API paths (/apps/{app_id}/...). Required.
	// Reverb: apps.apps[].app_id, REVERB_APP_ID.
	AppID string `toml:"app_id"`
	// Key is the public key used in WebSocket URLs (/app/{key}). Required.
	// Reverb: apps.apps[].key, REVERB_APP_KEY.
	Key string `toml:"key"`
	// Secret signs channel authorizations and HTTP API requests. Required.
	// Reverb: apps.apps[].secret, REVERB_APP_SECRET.
	Secret string `toml:"secret"`
	// AllowedOrigins are host patterns ('*' wildcard, case-sensitive) matched
	// against the host of the Origin header; a "*" entry allows every origin.
	// Must not be empty. Reverb: apps.apps[].allowed_origins;
	// REVERB_ALLOWED_ORIGINS (comma separated) is our addition.
	// Default: ["*"].
	AllowedOrigins []string `toml:"allowed_origins"`
	// PingInterval is how many seconds a connection may be silent before the
	// server pings it. Must be > 0. Reverb: apps.apps[].ping_interval,
	// REVERB_APP_PING_INTERVAL. Default: 60.
	PingInterval int `toml:"ping_interval"`
	// ActivityTimeout is the number of seconds sent to clients in
	// pusher:connection_established; clients ping after that much silence.
	// Must be > 0. Reverb: apps.apps[].activity_timeout,
	// REVERB_APP_ACTIVITY_TIMEOUT. Default: 30.
	ActivityTimeout int `toml:"activity_timeout"`
	// MaxMessageSize is the largest inbound WebSocket message in bytes;
	// larger ones close the connection with 1009. 0 means unlimited.
	// Reverb: apps.apps[].max_message_size, REVERB_APP_MAX_MESSAGE_SIZE.
	// Default: 10000.
	MaxMessageSize int `toml:"max_message_size"`
	// MaxConnections caps this app's connections on one node; the next one
	// gets pusher:error 4004. 0 means unlimited. Reverb:
	// apps.apps[].max_connections, REVERB_APP_MAX_CONNECTIONS. Default: 0.
	MaxConnections int `toml:"max_connections"`
	// AcceptClientEventsFrom says who may send client events: "members"
	// (connections subscribed to the channel), "all", or "none". Reverb
	// silently treats any other value as "none"; we report it. Reverb:
	// apps.apps[].accept_client_events_from,
	// REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM. Default: "members".
	AcceptClientEventsFrom string `toml:"accept_client_events_from"`
	// RateLimiting limits inbound messages per connection.
	RateLimiting RateLimiting `toml:"rate_limiting"`
	// Webhooks are the [[apps.webhooks]] endpoints that receive this app's
	// Pusher webhooks, each with its own event types (see webhooks.Endpoint
	// for the keys). Default: [] (none).
	Webhooks []webhooks.Endpoint `toml:"webhooks"`
	// SubscriptionCounting sends pusher_internal:subscription_count to the
	// subscribers of non-presence channels when the cluster-wide count
	// changes (Pusher's app setting). Default: false.
	SubscriptionCounting bool `toml:"subscription_counting"`
	// WatchlistEvents sends pusher_internal:watchlist_events to signed-in
	// connections whose user_data carries a "watchlist". Default: false.
	WatchlistEvents bool `toml:"watchlist_events"`
	// Compression offers permessage-deflate (no context takeover) to the
	// clients that ask for it. Default: false.
	Compression bool `toml:"compression"`
}

// RateLimiting is the [apps.rate_limiting] table.
type RateLimiting struct {
	// Enabled turns the limit on. Reverb: rate_limiting.enabled,
	// REVERB_APP_RATE_LIMITING_ENABLED. Default: false.
	Enabled bool `toml:"enabled"`
	// MaxAttempts is the number of messages a connection may send per
	// window. Must be > 0. Reverb: rate_limiting.max_attempts,
	// REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS. Default: 60.
	MaxAttempts int `toml:"max_attempts"`
	// DecaySeconds is the window length in seconds. Must be > 0. Reverb:
	// rate_limiting.decay_seconds, REVERB_APP_RATE_LIMIT_DECAY_SECONDS.
	// Default: 60.
	DecaySeconds int `toml:"decay_seconds"`
	// TerminateOnLimit closes the connection when the limit trips. Reverb:
	// rate_limiting.terminate_on_limit, REVERB_APP_RATE_LIMIT_TERMINATE.
	// Default: false.
	TerminateOnLimit bool `toml:"terminate_on_limit"`
}

// Limits is the [limits] table. Reverb has none of these (it is unlimited
// where Pusher is not); the defaults are Pusher's. Every value must be > 0.
type Limits struct {
	// MaxChannelsPerEvent caps the channels of one triggered event.
	// Default: 100.
	MaxChannelsPerEvent int `toml:"max_channels_per_event"`
	// MaxBatchSize caps the events of one batch_events request. Default: 10.
	MaxBatchSize int `toml:"max_batch_size"`
	// MaxNameLength caps channel and event names, in bytes. Default: 200.
	MaxNameLength int `toml:"max_name_length"`
	// MaxChannelsPerConnection caps the subscriptions of one connection.
	// Default: 1000.
	MaxChannelsPerConnection int `toml:"max_channels_per_connection"`
	// MaxPresenceMembers caps the distinct users of one presence channel.
	// Default: 100.
	MaxPresenceMembers int `toml:"max_presence_members"`
	// MaxUserInfoSize caps a presence member's user_info, in bytes.
	// Default: 1024.
	MaxUserInfoSize int `toml:"max_user_info_size"`
	// ClientEventsPerSecond caps client events per connection per second.
	// Default: 10.
	ClientEventsPerSecond int `toml:"client_events_per_second"`
	// SubscriptionsPerSecond caps pusher:subscribe messages per connection
	// per second; excess ones get pusher:subscription_error and 4301. Must
	// be > 0. Default: 100.
	SubscriptionsPerSecond int `toml:"subscriptions_per_second"`
	// MaxFragments caps the frames of one fragmented WebSocket message;
	// more close the connection with 1008. Must be > 0. Default: 128.
	MaxFragments int `toml:"max_fragments"`
}

// Webhooks is the [webhooks] table: the delivery settings of every app's
// [[apps.webhooks]] endpoints (the fields of webhooks.Config). Durations are
// in milliseconds. 0 means the default, as in webhooks.Config. The settings
// are accepted and validated, but this version does not send webhooks yet.
type Webhooks struct {
	// TimeoutMS bounds one attempt (connect, send, read the answer), in
	// milliseconds; an attempt that runs out is retried. Must not be
	// negative. Default: 5000.
	TimeoutMS int `toml:"timeout_ms"`
	// RetryBudgetMS is how long, in milliseconds after its first attempt, a
	// body is retried; then its events count as failed. Negative means no
	// retries (one attempt). Default: 300000 (5 minutes, as Pusher).
	RetryBudgetMS int `toml:"retry_budget_ms"`
	// InitialBackoffMS is the wait before the first retry, in milliseconds;
	// each next wait doubles, up to MaxBackoffMS. Must not be negative.
	// Default: 1000.
	InitialBackoffMS int `toml:"initial_backoff_ms"`
	// MaxBackoffMS caps the wait between two attempts, in milliseconds
	// (before jitter). Must not be negative. Default: 60000.
	MaxBackoffMS int `toml:"max_backoff_ms"`
	// Jitter spreads each wait uniformly over ±Jitter of its length (a
	// fraction, below 1). Negative means none. Default: 0.2.
	Jitter float64 `toml:"jitter"`
	// Batch puts the events an endpoint receives within BatchWindowMS of
	// each other into one POST (up to MaxBatchEvents); otherwise every event
	// is its own POST. Default: false.
	Batch bool `toml:"batch"`
	// BatchWindowMS is how long a batch stays open after its first event,
	// in milliseconds. Must not be negative. Default: 250 (Pusher's window).
	BatchWindowMS int `toml:"batch_window_ms"`
	// MaxBatchEvents closes a batch early when it holds that many events.
	// Must not be negative. Default: 20 (Pusher's batch size).
	MaxBatchEvents int `toml:"max_batch_events"`
	// VacateDelayMS is how long channel_vacated and member_removed are held
	// back, in milliseconds; the channel occupied again (or the member added
	// again) within it cancels both events. Negative means no delay and no
	// cancellation. Default: 3000 (Pusher's delay).
	VacateDelayMS int `toml:"vacate_delay_ms"`
	// QueueSize bounds the events waiting for each endpoint (past it they are
	// dropped and counted) and the events each app holds back for the vacate
	// delay. Must not be negative. Default: 10000.
	QueueSize int `toml:"queue_size"`
	// Concurrency is the number of requests each endpoint may have in flight
	// at once. Must not be negative. Default: 4.
	Concurrency int `toml:"concurrency"`
}

// Scaling is the [scaling] table.
type Scaling struct {
	// Enabled fans events out to other nodes over Redis pub/sub. Reverb:
	// servers.reverb.scaling.enabled, REVERB_SCALING_ENABLED. Default: false.
	Enabled bool `toml:"enabled"`
	// Channel is the Redis pub/sub channel (and key prefix) shared by the
	// nodes. Must not be empty when Enabled. Reverb:
	// servers.reverb.scaling.channel, REVERB_SCALING_CHANNEL.
	// Default: "reverb".
	Channel string `toml:"channel"`
	// HeartbeatInterval is how many seconds apart a node tells the others it
	// is alive. Must be > 0. Default: 5.
	HeartbeatInterval int `toml:"heartbeat_interval"`
	// NodeTimeout is how many seconds a silent node is kept; then its
	// presence members are removed (and announced) on every other node.
	// Must be > heartbeat_interval. Default: 30.
	NodeTimeout int `toml:"node_timeout"`
	// GatherTimeoutMS bounds, in milliseconds, the wait for other nodes'
	// answers to a cluster-wide HTTP API query. Must be > 0. Default: 1000.
	GatherTimeoutMS int `toml:"gather_timeout_ms"`
	// SyncTimeout bounds, in seconds, how long a starting node waits for the
	// presence state of the nodes alive in the cluster before it listens
	// anyway (without the missing nodes' state until they answer). Must not
	// be negative. Default: 0, node_timeout.
	SyncTimeout int `toml:"sync_timeout"`
	// PublishQueue is how many envelopes may wait to be published (for
	// example while Redis is unreachable). Past it the HTTP API answers 503
	// with Retry-After instead of accepting the event: events are never
	// dropped silently. Must be > 0. Default: 10000.
	PublishQueue int `toml:"publish_queue"`
	// PublishTimeoutMS bounds, in milliseconds, one pipelined publish round
	// trip to Redis. Must be > 0. Default: 2000.
	PublishTimeoutMS int `toml:"publish_timeout_ms"`
	// TrackerQueue is how many cluster-wide count and occupancy operations
	// (webhooks, subscription counts, watchlists) may wait for their round
	// trip to Redis; past it they fail as if Redis were unreachable, and are
	// counted. Must be > 0. Default: 10000.
	TrackerQueue int `toml:"tracker_queue"`
	// Redis is the server to use.
	Redis Redis `toml:"redis"`
}

// Redis topologies (Redis.Mode).
const (
	// RedisSingle is one Redis server, named by URL or Host and Port.
	RedisSingle = "single"
	// RedisSentinel is a master/replica set watched by Redis Sentinel.
	RedisSentinel = "sentinel"
	// RedisCluster is Redis Cluster.
	RedisCluster = "cluster"
)

// Redis is the [scaling.redis] table. As in Laravel, the parts of URL that
// are present win over the separate fields.
type Redis struct {
	// Mode is the Redis topology: "single" (one server, named by URL or
	// Host and Port), "sentinel" (a master/replica set found through the
	// sentinels in Addrs) or "cluster" (Redis Cluster, seeded by Addrs).
	// Reverb has no such setting; REVERB_SCALING_REDIS_MODE is our addition.
	// Default: "single".
	Mode string `toml:"mode"`
	// Addrs are "host:port" addresses: the sentinels in sentinel mode, seed
	// nodes in cluster mode. Must be empty in single mode and not empty in
	// the others. Reverb has no such setting; REVERB_SCALING_REDIS_ADDRS
	// (comma separated) is our addition. Default: [] (none).
	Addrs []string `toml:"addrs"`
	// MasterName is the name of the master set the sentinels watch
	// (sentinel mode, where it is required). Reverb has no such setting;
	// REVERB_SCALING_REDIS_MASTER_NAME is our addition. Default: "".
	MasterName string `toml:"master_name"`
	// SentinelUsername is the ACL user name for the sentinels themselves
	// (sentinel mode). Default: "" (none).
	SentinelUsername string `toml:"sentinel_username"`
	// SentinelPassword authenticates to the sentinels themselves (sentinel
	// mode). Default: "" (none).
	SentinelPassword string `toml:"sentinel_password"`
	// TLS connects to Redis (and to the sentinels) over TLS. A rediss:// URL
	// turns it on too. Default: false.
	TLS bool `toml:"tls"`
	// TLSCAFile is the path of a PEM file of the CAs that sign the Redis
	// servers' certificates. Default: "" (the system's roots).
	TLSCAFile string `toml:"tls_ca_file"`
	// TLSInsecureSkipVerify accepts any certificate from Redis. For tests
	// only. Default: false.
	TLSInsecureSkipVerify bool `toml:"tls_insecure_skip_verify"`
	// URL is a redis://, rediss:// or unix:// URL (single mode). Reverb:
	// scaling.server.url, REDIS_URL. Default: "" (use the fields below).
	URL string `toml:"url"`
	// Host of the Redis server (single mode). Reverb: scaling.server.host,
	// REDIS_HOST. Default: "127.0.0.1".
	Host string `toml:"host"`
	// Port of the Redis server (single mode). Reverb: scaling.server.port,
	// REDIS_PORT. Default: 6379.
	Port int `toml:"port"`
	// Username for Redis ACL auth, on the data nodes in every mode. Reverb:
	// scaling.server.username, REDIS_USERNAME. Default: "" (none).
	Username string `toml:"username"`
	// Password for Redis auth, on the data nodes in every mode. Reverb:
	// scaling.server.password, REDIS_PASSWORD. Default: "" (none).
	Password string `toml:"password"`
	// DB is the database number (single and sentinel modes). Reverb:
	// scaling.server.database, REDIS_DB. Default: 0.
	DB int `toml:"db"`
}

// Metrics is the [metrics] table.
type Metrics struct {
	// Enabled serves Prometheus metrics on Host:Port at /metrics.
	// Default: false.
	Enabled bool `toml:"enabled"`
	// Host to bind the metrics listener to. Default: "127.0.0.1".
	Host string `toml:"host"`
	// Port of the metrics listener; 0 lets the kernel choose. Default: 9090.
	Port int `toml:"port"`
	// PProf also serves Go's net/http/pprof profiles under /debug/pprof/ on
	// the metrics listener (only when Enabled). Profiles reveal internals and
	// cost CPU while they run: keep the listener private. Default: false.
	PProf bool `toml:"pprof"`
}

// Log is the [log] table.
type Log struct {
	// Level is the minimum level logged: "debug", "info", "warn" or "error".
	// Default: "info".
	Level string `toml:"level"`
	// Format is "text" or "json". Default: "text".
	Format string `toml:"format"`
}

// Default returns the built-in defaults. It has no apps; Load adds the local
// default app when nothing configures one.
func Default() *Config {
	return &Config{
		Server: Server{
			Host:                "0.0.0.0",
			Port:                8080,
			MaxRequestSize:      10000,
			HandshakeTimeout:    10,
			MaxOutboundBuffer:   1 << 20,
			FanoutChunk:         256,
			PongTimeout:         30,
			AuthTimestampWindow: 600,
			APIQueue:            1024,
			DrainTimeout:        10,
			TLS:                 TLS{HandshakeWorkers: 256, HandshakeQueue: 4096, KeyExchanges: []string{}},
		},
		Limits: Limits{
			MaxChannelsPerEvent:      100,
			MaxBatchSize:             10,
			MaxNameLength:            200,
			MaxChannelsPerConnection: 1000,
			MaxPresenceMembers:       100,
			MaxUserInfoSize:          1024,
			ClientEventsPerSecond:    10,
			SubscriptionsPerSecond:   100,
			MaxFragments:             128,
		},
		Scaling: Scaling{
			Channel:           "reverb",
			HeartbeatInterval: 5,
			NodeTimeout:       30,
			GatherTimeoutMS:   1000,
			PublishQueue:      10000,
			TrackerQueue:      10000,
			PublishTimeoutMS:  2000,
			Redis: Redis{
				Mode:  RedisSingle,
				Addrs: []string{},
				Host:  "127.0.0.1",
				Port:  6379,
			},
		},
		Webhooks: Webhooks{
			TimeoutMS:        ms(webhooks.DefaultTimeout),
			RetryBudgetMS:    ms(webhooks.DefaultRetryBudget),
			InitialBackoffMS: ms(webhooks.DefaultInitialBackoff),
			MaxBackoffMS:     ms(webhooks.DefaultMaxBackoff),
			Jitter:           webhooks.DefaultJitter,
			BatchWindowMS:    ms(webhooks.DefaultBatchWindow),
			MaxBatchEvents:   webhooks.DefaultMaxBatchEvents,
			VacateDelayMS:    ms(webhooks.DefaultVacateDelay),
			QueueSize:        webhooks.DefaultQueueSize,
			Concurrency:      webhooks.DefaultConcurrency,
		},
		Metrics: Metrics{Host: "127.0.0.1", Port: 9090},
		Log:     Log{Level: "info", Format: "text"},
	}
}

// NewApp returns an app with the given credentials and every other field at
// its default.
func NewApp(appID, key, secret string) App {
	return App{
		AppID:                  appID,
		Key:                    key,
		Secret:                 secret,
		AllowedOrigins:         []string{"*"},
		PingInterval:           60,
		ActivityTimeout:        30,
		MaxMessageSize:         10000,
		AcceptClientEventsFrom: "members",
		RateLimiting:           RateLimiting{MaxAttempts: 60, DecaySeconds: 60},
	}
}

// ValidationError lists every problem found in a configuration.
type ValidationError struct {
	// Problems are human-readable, each naming the key (and the environment
	// variable, when one set it) it is about.
	Problems []string
}

// Error lists the problems one per line under a summary line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	if len(e.Problems) == 1 {
		b.WriteString("invalid configuration (1 problem):")
	} else {
		fmt.Fprintf(&b, "invalid configuration (%d problems):", len(e.Problems))
	}
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p)
	}
	return b.String()
}
