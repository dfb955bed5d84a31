// Command reverb is a Pusher-protocol WebSocket server that is a drop-in
// replacement for Laravel Reverb. See the README for usage.
package main

import (
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:]))
}

const usage = `Usage: reverb <command> [options]

Commands:
  start     Start the server (default when no command is given)
  restart   Make the running servers of this configuration drain and exit (their process manager restarts them)
  install   Write a reverb.toml with a new app and print the .env lines for Laravel
  check-limits  Report what this machine allows (open files, sysctls, memory) and the fixes
  bench     Load-test a Pusher-protocol server (this one, Soketi, Reverb)
  version   Print the version

Run 'reverb <command> -h' for the options of a command.
`

func run(args []string) int {
	cmd := "start"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "start":
		return cmdStart(args)
	case "install":
		return cmdInstall(args)
	case "restart":
		return cmdRestart(args)
	case "bench":
		return cmdBench(args)
	case "check-limits":
		return cmdCheckLimits(args)
	case "version", "--version":
		fmt.Println("reverb", version)
		return 0
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "reverb: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}
