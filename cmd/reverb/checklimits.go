package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/reverbgo/reverb/config"
	"github.com/reverbgo/reverb/limits"
)

const checkLimitsUsage = `Usage: reverb check-limits [--config FILE] [--json]

Reads this machine's limits (open files, kernel queues, ephemeral ports,
memory), compares them with the configured max_connections and prints the
capacity, the CPU the keepalive pings of that many idle connections cost
(at the apps' ping_interval and activity_timeout), and the changes to make.
Exit status: 0 when the configuration can be met (warnings included), 1
when it cannot, 2 on bad usage or config.

Run it the way the server is started (e.g. ExecStartPre= in the systemd
unit): the limits that count are those of the server's process.

Options:
`

// cmdCheckLimits is `reverb check-limits`.
func cmdCheckLimits(args []string) int {
	return checkLimits(args, os.Stdout, os.Stderr, limits.Read)
}

// checkLimits runs check-limits with the facts from read, writing the report
// to stdout and problems to stderr, and returns the exit status.
func checkLimits(args []string, stdout, stderr io.Writer, read func() (*limits.Facts, error)) int {
	fs := flag.NewFlagSet("check-limits", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "path of reverb.toml (default: ./reverb.toml if it exists)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprint(stderr, checkLimitsUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "reverb check-limits: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, err := loadConfig(&startFlags{config: *path, set: map[string]bool{}})
	if err != nil {
		fmt.Fprintln(stderr, "reverb check-limits: invalid configuration:\n"+err.Error())
		return 2
	}
	facts, err := read()
	if err != nil {
		// The other facts are still worth reporting.
		fmt.Fprintln(stderr, "reverb check-limits:", err)
	}
	if facts == nil {
		return 1
	}
	rep := limits.Plan(facts, wantFromConfig(cfg))
	if *asJSON {
		b, err := rep.JSON()
		if err != nil {
			fmt.Fprintln(stderr, "reverb check-limits:", err)
			return 1
		}
		stdout.Write(b)
	} else {
		io.WriteString(stdout, rep.String())
	}
	if rep.Worst() >= limits.Error {
		return 1
	}
	return 0
}

// wantFromConfig is what the configuration asks of the node: the node-wide
// cap, the sum of the apps' caps when every app has one, the loops the
// server would start, and the keepalive settings of the app whose idle
// connections ping most often (the smallest min(ping_interval,
// activity_timeout)), the conservative estimate of their CPU.
func wantFromConfig(cfg *config.Config) limits.Want {
	w := limits.Want{
		MaxConnections: cfg.Server.MaxConnections,
		Loops:          loopsOrDefault(cfg.Server.Loops),
	}
	sum := 0
	for _, a := range cfg.Apps {
		if a.MaxConnections <= 0 {
			sum = 0
			break
		}
		sum += a.MaxConnections
	}
	w.AppMaxConnections = sum
	for _, a := range cfg.Apps {
		if w.PingInterval == 0 || min(a.PingInterval, a.ActivityTimeout) < min(w.PingInterval, w.ActivityTimeout) {
			w.PingInterval, w.ActivityTimeout = a.PingInterval, a.ActivityTimeout
		}
	}
	return w
}
