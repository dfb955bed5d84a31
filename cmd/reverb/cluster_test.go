package main

import (
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/reverbgo/reverb/cluster"
	"github.com/reverbgo/reverb/config"
)

func TestClusterConfig(t *testing.T) {
	cfg := config.Default()
	sc := &cfg.Scaling
	sc.Channel = "chan"
	sc.HeartbeatInterval = 3
	sc.NodeTimeout = 9
	sc.GatherTimeoutMS = 250
	sc.PublishQueue = 77
	sc.PublishTimeoutMS = 1500
	sc.TrackerQueue = 55
	sc.SyncTimeout = 7
	cfg.Webhooks.VacateDelayMS = 1200
	sc.Redis = config.Redis{
		Mode:                  "sentinel",
		Addrs:                 []string{"s1:26379", "s2:26379"},
		MasterName:            "mymaster",
		SentinelUsername:      "su",
		SentinelPassword:      "sp",
		TLS:                   true,
		TLSCAFile:             "/ca.pem",
		TLSInsecureSkipVerify: true,
		URL:                   "redis://u:p@h:1/2",
		Host:                  "h",
		Port:                  6390,
		Username:              "ru",
		Password:              "rp",
		DB:                    3,
	}
	log := slog.New(slog.DiscardHandler)
	got := clusterConfig(cfg, log)
	want := cluster.Config{
		Mode:                  "sentinel",
		Addrs:                 []string{"s1:26379", "s2:26379"},
		MasterName:            "mymaster",
		SentinelUsername:      "su",
		SentinelPassword:      "sp",
		URL:                   "redis://u:p@h:1/2",
		Host:                  "h",
		Port:                  6390,
		Username:              "ru",
		Password:              "rp",
		DB:                    3,
		TLS:                   true,
		TLSCAFile:             "/ca.pem",
		TLSInsecureSkipVerify: true,
		Channel:               "chan",
		HeartbeatInterval:     3 * time.Second,
		NodeTimeout:           9 * time.Second,
		GatherTimeout:         250 * time.Millisecond,
		SyncTimeout:           7 * time.Second,
		PublishQueue:          77,
		PublishTimeout:        1500 * time.Millisecond,
		TrackerQueue:          55,
		ReleaseDelay:          1200 * time.Millisecond,
		Logger:                log,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("clusterConfig =\n%+v\nwant\n%+v", got, want)
	}
	// Every field of cluster.Config but MaxEnvelope (no key) is mapped.
	v := reflect.ValueOf(got)
	for i := range v.NumField() {
		if name := v.Type().Field(i).Name; name != "MaxEnvelope" && v.Field(i).IsZero() {
			t.Errorf("cluster.Config.%s is not mapped", name)
		}
	}
	// The broker's copy of addrs is its own.
	got.Addrs[0] = "changed"
	if sc.Redis.Addrs[0] != "s1:26379" {
		t.Error("clusterConfig shares Addrs with the configuration")
	}
}
