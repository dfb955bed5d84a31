package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"os"

	"github.com/reverbgo/reverb/config"
)

// cmdInstall does what `php artisan reverb:install` does: a config file with
// a fresh app, and the .env lines the Laravel application needs.
func cmdInstall(args []string) int {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	path := fs.String("config", "reverb.toml", "file to write (never overwritten)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	res, err := config.Install(*path, rand.Reader)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reverb install:", err)
		return 1
	}
	fmt.Printf("Wrote %s with app %s.\n\nAdd these lines to your Laravel application's .env:\n\n", res.Path, res.AppID)
	for _, l := range res.EnvLines() {
		fmt.Println(l)
	}
	return 0
}
