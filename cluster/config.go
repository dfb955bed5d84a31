package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis topologies (Config.Mode).
const (
	// ModeSingle is one Redis server (or a proxy in front of several),
	// named by URL or Host and Port.
	ModeSingle = "single"
	// ModeSentinel is a master/replica set watched by Redis Sentinel:
	// Addrs are the sentinels and MasterName the set. Nodes follow failovers.
	ModeSentinel = "sentinel"
	// ModeCluster is Redis Cluster: Addrs are seed nodes. Events travel
	// over sharded pub/sub (SPUBLISH/SSUBSCRIBE), one subscription per shard.
	ModeCluster = "cluster"
)

// Config configures the Redis broker. Every field's zero value means its
// default, given in the field's comment.
type Config struct {
	// Mode is the Redis topology: ModeSingle, ModeSentinel or ModeCluster.
	// Default: ModeSingle.
	Mode string
	// Addrs are "host:port" addresses: the sentinels in ModeSentinel, seed
	// nodes in ModeCluster. Unused in ModeSingle. Default: none.
	Addrs []string
	// MasterName is the Sentinel master set name (ModeSentinel only).
	// Default: "".
	MasterName string
	// SentinelUsername and SentinelPassword authenticate to the sentinels
	// (ModeSentinel only). Default: none.
	SentinelUsername, SentinelPassword string
	// URL is a redis:// or rediss:// (TLS) URL (ModeSingle only); the parts
	// it has override Host, Port, Username, Password and DB. Default: "".
	URL string
	// Host of Redis (ModeSingle). Default: "127.0.0.1".
	Host string
	// Port of Redis (ModeSingle). Default: 6379.
	Port int
	// Username and Password authenticate to Redis (to the data nodes in
	// every mode). Default: none.
	Username, Password string
	// DB is the database number (ModeSingle and ModeSentinel; pub/sub
	// ignores it, but it selects the connection). Default: 0.
	DB int
	// TLS connects to Redis (and the sentinels) over TLS. A rediss:// URL
	// turns it on too. Default: false.
	TLS bool
	// TLSCAFile is a PEM file of the CAs that sign Redis's certificate.
	// Default: "" (the system's roots).
	TLSCAFile string
	// TLSInsecureSkipVerify accepts any certificate (tests only).
	// Default: false.
	TLSInsecureSkipVerify bool
	// Channel prefixes every Redis pub/sub channel the nodes use; clusters
	// that share a Redis must use different prefixes. Default: "reverb".
	Channel string
	// HeartbeatInterval is how often a node says it is alive (and sends its
	// presence digest). Default: 5 s.
	HeartbeatInterval time.Duration
	// NodeTimeout is how long a silent node is kept; then its presence users
	// are removed everywhere. Default: 30 s.
	NodeTimeout time.Duration
	// GatherTimeout bounds the wait for other nodes' answers to an HTTP API
	// query. Default: 1 s.
	GatherTimeout time.Duration
	// SyncTimeout bounds how long a starting node waits for the state of
	// the nodes the registry lists as alive (Redis.Warm) before it serves
	// without the missing ones'. Default: NodeTimeout.
	SyncTimeout time.Duration
	// PublishQueue is how many envelopes may wait to be published. Past it
	// Publish refuses (the HTTP API answers 503) instead of dropping.
	// Default: 10000.
	PublishQueue int
	// PublishTimeout bounds one pipelined publish round trip to Redis.
	// Default: 2 s.
	PublishTimeout time.Duration
	// MaxEnvelope is the largest envelope published or accepted, in bytes.
	// Default: 1 MiB.
	MaxEnvelope int
	// ReleaseDelay is how long the keys a stopped or dead node held (its
	// channels, presence members and signed-in users) wait, once a
	// surviving node released them on its behalf, before they are announced
	// as released nowhere: one delay for every kind of key. Default: 3 s.
	ReleaseDelay time.Duration
	// TrackerQueue is how many tracker operations (pusher.Tracker) may wait
	// for their round trip to Redis. Past it an operation fails as if Redis
	// were unreachable, and is counted. Default: 10000.
	TrackerQueue int
	// Logger receives the broker's logs. Default: slog.Default().
	Logger *slog.Logger
}

// ErrConfig wraps every configuration error of NewRedis.
var ErrConfig = errors.New("cluster: configuration")

func (c *Config) normalize() {
	if c.Mode == "" {
		c.Mode = ModeSingle
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = 6379
	}
	if c.Channel == "" {
		c.Channel = "reverb"
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 5 * time.Second
	}
	if c.NodeTimeout <= 0 {
		c.NodeTimeout = 30 * time.Second
	}
	if c.GatherTimeout <= 0 {
		c.GatherTimeout = time.Second
	}
	if c.SyncTimeout <= 0 {
		c.SyncTimeout = c.NodeTimeout
	}
	if c.PublishQueue <= 0 {
		c.PublishQueue = 10000
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 2 * time.Second
	}
	if c.MaxEnvelope <= 0 {
		c.MaxEnvelope = 1 << 20
	}
	if c.ReleaseDelay <= 0 {
		c.ReleaseDelay = 3 * time.Second
	}
	if c.TrackerQueue <= 0 {
		c.TrackerQueue = 10000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *Config) tlsConfig(base *tls.Config) (*tls.Config, error) {
	if !c.TLS && base == nil {
		return nil, nil
	}
	t := base
	if t == nil {
		t = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.TLSInsecureSkipVerify {
		// Opt-in, for tests; a rediss:// URL's skip_verify=true also stays.
		t.InsecureSkipVerify = true
	}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: tls_ca_file: %v", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: tls_ca_file %s: no certificate", ErrConfig, c.TLSCAFile)
		}
		t.RootCAs = pool
	}
	return t, nil
}

// newClient builds the go-redis client of the configured topology.
func (c *Config) newClient() (redis.UniversalClient, error) {
	const (
		dial = 2 * time.Second
		rw   = 2 * time.Second
	)
	switch c.Mode {
	case ModeSingle:
		opts := &redis.Options{
			Addr:     net.JoinHostPort(c.Host, strconv.Itoa(c.Port)),
			Username: c.Username,
			Password: c.Password,
			DB:       c.DB,
		}
		var base *tls.Config
		if c.URL != "" {
			u, err := redis.ParseURL(c.URL)
			if err != nil {
				return nil, fmt.Errorf("%w: redis url: %v", ErrConfig, err)
			}
			opts.Network = u.Network
			opts.Addr = u.Addr
			base = u.TLSConfig
			if u.Username != "" {
				opts.Username = u.Username
			}
			if u.Password != "" {
				opts.Password = u.Password
			}
			if u.DB != 0 {
				opts.DB = u.DB
			}
		}
		t, err := c.tlsConfig(base)
		if err != nil {
			return nil, err
		}
		opts.TLSConfig = t
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = dial, rw, rw
		opts.MaxRetries = 0
		return redis.NewClient(opts), nil
	case ModeSentinel:
		if len(c.Addrs) == 0 || c.MasterName == "" {
			return nil, fmt.Errorf("%w: mode sentinel needs addrs (the sentinels) and master_name", ErrConfig)
		}
		t, err := c.tlsConfig(nil)
		if err != nil {
			return nil, err
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       c.MasterName,
			SentinelAddrs:    c.Addrs,
			SentinelUsername: c.SentinelUsername,
			SentinelPassword: c.SentinelPassword,
			Username:         c.Username,
			Password:         c.Password,
			DB:               c.DB,
			TLSConfig:        t,
			DialTimeout:      dial,
			ReadTimeout:      rw,
			WriteTimeout:     rw,
			MaxRetries:       1,
		}), nil
	case ModeCluster:
		if len(c.Addrs) == 0 {
			return nil, fmt.Errorf("%w: mode cluster needs addrs (seed nodes)", ErrConfig)
		}
		t, err := c.tlsConfig(nil)
		if err != nil {
			return nil, err
		}
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:        c.Addrs,
			Username:     c.Username,
			Password:     c.Password,
			TLSConfig:    t,
			DialTimeout:  dial,
			ReadTimeout:  rw,
			WriteTimeout: rw,
			MaxRedirects: 3,
		}), nil
	default:
		return nil, fmt.Errorf("%w: unknown mode %q (single, sentinel or cluster)", ErrConfig, c.Mode)
	}
}
