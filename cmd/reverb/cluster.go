package main

import (
	"log/slog"
	"slices"
	"time"

	"github.com/reverbgo/reverb/cluster"
	"github.com/reverbgo/reverb/config"
)

// clusterConfig maps [scaling] onto the Redis broker's configuration.
func clusterConfig(cfg *config.Config, log *slog.Logger) cluster.Config {
	sc := cfg.Scaling
	return cluster.Config{
		Mode:                  sc.Redis.Mode,
		Addrs:                 slices.Clone(sc.Redis.Addrs),
		MasterName:            sc.Redis.MasterName,
		SentinelUsername:      sc.Redis.SentinelUsername,
		SentinelPassword:      sc.Redis.SentinelPassword,
		URL:                   sc.Redis.URL,
		Host:                  sc.Redis.Host,
		Port:                  sc.Redis.Port,
		Username:              sc.Redis.Username,
		Password:              sc.Redis.Password,
		DB:                    sc.Redis.DB,
		TLS:                   sc.Redis.TLS,
		TLSCAFile:             sc.Redis.TLSCAFile,
		TLSInsecureSkipVerify: sc.Redis.TLSInsecureSkipVerify,
		Channel:               sc.Channel,
		HeartbeatInterval:     time.Duration(sc.HeartbeatInterval) * time.Second,
		NodeTimeout:           time.Duration(sc.NodeTimeout) * time.Second,
		GatherTimeout:         time.Duration(sc.GatherTimeoutMS) * time.Millisecond,
		SyncTimeout:           time.Duration(sc.SyncTimeout) * time.Second,
		PublishQueue:          sc.PublishQueue,
		PublishTimeout:        time.Duration(sc.PublishTimeoutMS) * time.Millisecond,
		TrackerQueue:          sc.TrackerQueue,
		ReleaseDelay:          releaseDelay(cfg),
		Logger:                log,
	}
}

// releaseDelay is how long the keys of a dead node wait before they are
// announced released: the webhooks' vacate delay (at least a millisecond,
// since the broker reads 0 as its default).
func releaseDelay(cfg *config.Config) time.Duration {
	d := cfg.Options().VacateDelay
	if d <= 0 {
		d = time.Millisecond
	}
	return d
}
