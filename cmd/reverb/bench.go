package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/reverbgo/reverb/bench"
)

// cmdBench runs `reverb bench`: it load-tests a Pusher-protocol server and
// prints a table and one JSON summary line (only the JSON line with
// --json). Exit status: 0 on success, 1 when the run failed or lost
// deliveries, 2 on bad arguments.
func cmdBench(args []string) int {
	for _, a := range args {
		if a == "--worker" || a == "-worker" {
			return bench.RunWorker(os.Stdin, os.Stdout)
		}
	}
	cfg, err := bench.ParseArgs(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "reverb bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	note, err := cfg.PickApp(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reverb bench:", err)
		return 1
	}
	if note != "" {
		fmt.Fprintln(os.Stderr, "reverb bench:", note)
	}
	// The workers' connections stay open until the result is written.
	cfg.KeepWorkers = true
	res, runErr := bench.Run(ctx, cfg, os.Stdout, os.Stderr)
	if res == nil {
		fmt.Fprintln(os.Stderr, "reverb bench:", runErr)
		return 1
	}
	defer res.Release()
	if !cfg.JSON {
		_ = bench.WriteTable(os.Stdout, res)
	}
	_ = bench.WriteJSON(os.Stdout, res)
	if cfg.Report != "" {
		f, err := os.Create(cfg.Report)
		if err == nil {
			err = bench.WriteHTML(f, res)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "reverb bench: report:", err)
			return 1
		}
		if !cfg.JSON {
			fmt.Fprintln(os.Stderr, "report written to", cfg.Report)
		}
	}
	if runErr != nil {
		fmt.Fprintln(os.Stderr, "reverb bench:", runErr)
		return 1
	}
	if res.Loss != 0 || res.TimedOut {
		return 1
	}
	return 0
}
