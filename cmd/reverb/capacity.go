package main

import (
	"log/slog"
	"math"
	"strconv"
	"strings"

	"github.com/reverbgo/reverb/config"
	"github.com/reverbgo/reverb/limits"
)

// capacityCheck reads this machine's limits at start-up, logs how many
// connections the node can hold, the CPU the keepalive pings of that many
// idle connections cost (at the configured maximum, else the capacity), and
// every problem with its fix, and returns
// the connection cap to enforce: the configured one, lowered to the file
// descriptor budget so that accept never fails with EMFILE (gnet would shut
// its whole engine down).
func capacityCheck(cfg *config.Config, log *slog.Logger, configured int) int {
	if _, _, err := limits.RaiseNoFile(); err != nil {
		log.Debug("cannot raise RLIMIT_NOFILE", "err", err)
	}
	facts, err := limits.Read()
	if err != nil {
		log.Warn("cannot read the system limits", "err", err)
		return configured
	}
	report := limits.Plan(facts, wantFromConfig(cfg))
	k := report.Keepalive
	log.Info("Capacity", "connections", report.Capacity, "fd_budget", report.FDBudget,
		"memory_capacity", report.MemoryCapacity, "max_connections", report.Target,
		"keepalive_connections", k.Connections, "keepalive_interval_s", k.IntervalSeconds,
		"keepalive_us_per_conn_min", math.Round(k.ServerMicrosPerConnMinute*10)/10,
		"keepalive_cpu_cores", significant(k.ServerCores, 3), "cpus", report.CPUs)
	for _, f := range report.Findings {
		if f.Severity == limits.OK {
			continue
		}
		var fixes []string
		for _, fx := range f.Fixes {
			fixes = append(fixes, fx.Where+": "+strings.Join(fx.Lines, " / "))
		}
		args := []any{"check", f.Check}
		if len(fixes) > 0 {
			args = append(args, "fix", strings.Join(fixes, "; "))
		}
		log.Warn(f.Message, args...)
	}
	budget := limits.FDBudget(facts)
	if budget >= 0 && (configured == 0 || configured > budget) {
		return budget
	}
	return configured
}

// significant rounds x to n significant digits, for log lines.
func significant(x float64, n int) float64 {
	y, err := strconv.ParseFloat(strconv.FormatFloat(x, 'g', n, 64), 64)
	if err != nil {
		return x
	}
	return y
}
