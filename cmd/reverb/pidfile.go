package main

import (
	"context"
	"log/slog"
	"time"

	"errors"
	"flag"
	"fmt"
	"github.com/reverbgo/reverb/cluster"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/reverbgo/reverb/config"
)

// pidDir returns the directory of the pid files of cfg.
func pidDir(cfg *config.Config) string {
	if cfg.Server.PidDir != "" {
		return cfg.Server.PidDir
	}
	return os.TempDir()
}

// writePidFile records this process as a server on port; the returned
// function removes the file.
func writePidFile(cfg *config.Config, port int) (func(), error) {
	name := filepath.Join(pidDir(cfg), fmt.Sprintf("reverb-%d.%d.pid", port, os.Getpid()))
	if err := os.WriteFile(name, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return func() {}, err
	}
	return func() { _ = os.Remove(name) }, nil
}

// serverPids returns the pids of the live servers of port recorded in dir,
// removing stale files.
func serverPids(dir string, port int) []int {
	files, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("reverb-%d.*.pid", port)))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if !isReverb(pid) {
			_ = os.Remove(f)
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// isReverb reports whether pid is alive and runs this program.
func isReverb(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return true // no /proc: trust the pid file
	}
	exe, _ := os.Executable()
	args := strings.Split(string(cmdline), "\x00")
	return len(args) > 0 && (filepath.Base(args[0]) == filepath.Base(exe) || strings.Contains(args[0], "reverb"))
}

// cmdRestart makes every server running with this configuration (same port
// and pid directory) drain and exit, so that its process manager starts it
// again, as `php artisan reverb:restart` does.
func cmdRestart(args []string) int {
	fs := flag.NewFlagSet("restart", flag.ContinueOnError)
	path := fs.String("config", "", "path of reverb.toml (default: ./reverb.toml if it exists)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(&startFlags{config: *path, set: map[string]bool{}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "reverb restart: invalid configuration:\n"+err.Error())
		return 2
	}
	failed := false
	if cfg.Scaling.Enabled {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cluster.PublishRestart(ctx, clusterConfig(cfg, slog.Default()))
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "reverb restart: publishing the restart on Redis:", err)
			failed = true
		} else {
			// Every node, this host's included, gets it through Redis.
			fmt.Println("Asked every node of the cluster to drain and restart.")
			return 0
		}
	}
	pids := serverPids(pidDir(cfg), cfg.Server.Port)
	if len(pids) == 0 {
		fmt.Fprintf(os.Stderr, "reverb restart: no server running on port %d (pid files in %s)\n", cfg.Server.Port, pidDir(cfg))
		return 1
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			fmt.Fprintf(os.Stderr, "reverb restart: pid %d: %v\n", pid, err)
			failed = true
			continue
		}
		fmt.Printf("Signalled server %d to drain and restart.\n", pid)
	}
	if failed {
		return 1
	}
	return 0
}
