package main

import (
	"log/slog"
	"time"

	"github.com/reverbgo/reverb/cluster"
	"github.com/reverbgo/reverb/config"
)

// clusterConfig maps [scaling] onto the Redis broker's configuration.
func clusterConfig(cfg *config.Config, log *slog.Logger) cluster.Config {
	sc := cfg.Scaling
	return cluster.Config{
		URL:               sc.Redis.URL,
		Host:              sc.Redis.Host,
		Port:              sc.Redis.Port,
		Username:          sc.Redis.Username,
		Password:          sc.Redis.Password,
		DB:                sc.Redis.DB,
		Channel:           sc.Channel,
		HeartbeatInterval: time.Duration(sc.HeartbeatInterval) * time.Second,
		NodeTimeout:       time.Duration(sc.NodeTimeout) * time.Second,
		GatherTimeout:     time.Duration(sc.GatherTimeoutMS) * time.Millisecond,
		PublishQueue:      sc.PublishQueue,
		Logger:            log,
	}
}
