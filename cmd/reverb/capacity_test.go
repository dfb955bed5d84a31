package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestCapacityCheckLog checks that the start-up capacity line, on this
// machine's real limits, carries the keepalive estimate at the configured
// maximum.
func TestCapacityCheckLog(t *testing.T) {
	cfg, err := loadConfig(&startFlags{config: writeConfig(t, "[server]\nmax_connections = 100\n"), set: map[string]bool{}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	if got := capacityCheck(cfg, log, 100); got != 100 {
		t.Errorf("cap %d, want 100", got)
	}
	var line string
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "msg=Capacity") {
			line = l
		}
	}
	for _, want := range []string{"max_connections=100", "keepalive_connections=100", "keepalive_interval_s=30",
		"keepalive_us_per_conn_min=44.3", "keepalive_cpu_cores=7.38e-05", "cpus="} {
		if !strings.Contains(line, want) {
			t.Errorf("capacity line lacks %q:\n%s", want, buf.String())
		}
	}
}
