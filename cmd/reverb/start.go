package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/reverbgo/reverb/cluster"
	"github.com/reverbgo/reverb/config"
	"github.com/reverbgo/reverb/loop"
	"github.com/reverbgo/reverb/pusher"
)

// startFlags are the flags of `reverb start`. Only flags given explicitly
// override the configuration (defaults < file < environment < flags).
type startFlags struct {
	config   string
	host     string
	port     int
	path     string
	hostname string
	debug    bool
	set      map[string]bool
}

func parseStartFlags(args []string) (*startFlags, error) {
	f := &startFlags{set: map[string]bool{}}
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	fs.StringVar(&f.config, "config", "", "path of reverb.toml (default: ./reverb.toml if it exists)")
	fs.StringVar(&f.host, "host", "", "address to bind (server.host)")
	fs.IntVar(&f.port, "port", 0, "port to listen on (server.port)")
	fs.StringVar(&f.path, "path", "", "route prefix (server.path)")
	fs.StringVar(&f.hostname, "hostname", "", "public host name (server.hostname)")
	fs.BoolVar(&f.debug, "debug", false, "log the message flow")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	return f, nil
}

// loadConfig applies the precedence: defaults < TOML < environment < flags.
func loadConfig(f *startFlags) (*config.Config, error) {
	path := f.config
	if path == "" {
		if _, err := os.Stat("reverb.toml"); err == nil {
			path = "reverb.toml"
		}
	}
	cfg, err := config.Load(path, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if f.set["host"] {
		cfg.Server.Host = f.host
	}
	if f.set["port"] {
		cfg.Server.Port = f.port
	}
	if f.set["path"] {
		cfg.Server.Path = f.path
	}
	if f.set["hostname"] {
		cfg.Server.Hostname = f.hostname
	}
	if f.debug {
		cfg.Log.Level = "debug"
	}
	return cfg, cfg.Validate()
}

func newLogger(cfg *config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(cfg.Log.Format, "json") {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func cmdStart(args []string) int {
	f, err := parseStartFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "reverb start:", err)
		return 2
	}
	cfg, err := loadConfig(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reverb start: invalid configuration:\n"+err.Error())
		return 2
	}
	log := newLogger(cfg)
	slog.SetDefault(log)

	opts := cfg.Options()
	opts.Logger = log
	opts.Debug = f.debug
	api := metricsObserver(cfg, &opts)
	hooks, stopHooks, err := startWebhooks(cfg, &opts, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reverb start: [webhooks]:", err)
		return 2
	}
	defer stopHooks()
	lcfg := loop.Config{
		Host:             cfg.Server.Host,
		Port:             cfg.Server.Port,
		Loops:            cfg.Server.Loops,
		HandshakeTimeout: time.Duration(cfg.Server.HandshakeTimeout) * time.Second,
		TCPKeepAlive:     time.Duration(cfg.Server.TCPKeepalive) * time.Second,
		APIWorkers:       cfg.Server.APIWorkers,
		APIQueue:         cfg.Server.APIQueue,
		ReusePort:        cfg.Server.ReusePort,
		MaxConnections:   cfg.Server.MaxConnections,
		MaxFragments:     cfg.Limits.MaxFragments,
		Logger:           log,
	}
	lcfg.Loops = loopsOrDefault(lcfg.Loops)
	if cfg.Server.TLS.Enabled() {
		cert, err := tls.LoadX509KeyPair(cfg.Server.TLS.Cert, cfg.Server.TLS.Key)
		if err != nil {
			fmt.Fprintln(os.Stderr, "reverb start: [server.tls]:", err)
			return 2
		}
		lcfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		lcfg.TLSHandshakeWorkers = cfg.Server.TLS.HandshakeWorkers
		for _, name := range cfg.Server.TLS.KeyExchanges {
			lcfg.TLS.CurvePreferences = append(lcfg.TLS.CurvePreferences, config.KeyExchangeIDs[name])
		}
		lcfg.TLSHandshakeQueue = cfg.Server.TLS.HandshakeQueue
	}
	lcfg.MaxConnections = capacityCheck(cfg, log, lcfg.MaxConnections)
	px, err := pusher.NewServer(opts, lcfg.Loops)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reverb start:", err)
		return 2
	}
	srv := loop.New(px, lcfg)
	sig := make(chan os.Signal, 2)
	var redisBroker *cluster.Redis
	if cfg.Scaling.Enabled {
		redisBroker, err = cluster.NewRedis(clusterConfig(cfg, log), px)
		if err != nil {
			fmt.Fprintln(os.Stderr, "reverb start:", err)
			return 2
		}
		px.SetBroker(redisBroker)
		redisBroker.OnRestart(func() { sig <- syscall.SIGTERM })
		redisBroker.Start()
		defer redisBroker.Close()
		log.Info("Scaling over Redis", "channel", cfg.Scaling.Channel, "node", redisBroker.NodeID())
	} else {
		px.SetBroker(pusher.NopBroker{})
	}

	if cfg.DefaultApp {
		a := cfg.Apps[0]
		fmt.Fprintf(os.Stderr, "No app configured: serving the built-in local app (for development only).\n  REVERB_APP_ID=%s\n  REVERB_APP_KEY=%s\n  REVERB_APP_SECRET=%s\n", a.AppID, a.Key, a.Secret)
	}

	stopMetrics, err := startMetrics(cfg, api, srv, px, redisBroker, hooks, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reverb start: [metrics]:", err)
		return 1
	}
	defer stopMetrics()

	// Signals are caught from here on: one that comes before the server
	// listens stops it (the broker says bye) without a drain.
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	if redisBroker != nil {
		// Listen once this node has the cluster's state (bounded by
		// [scaling] sync_timeout; at once while Redis is unreachable).
		select {
		case <-redisBroker.Warm():
		case s := <-sig:
			log.Info("Stopped before listening", "signal", s.String())
			return 0
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Run() }()
	select {
	case <-srv.Ready():
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "reverb start:", err)
		return 1
	}
	host := cfg.Server.Hostname
	if host == "" {
		host = "localhost"
	}
	if _, portStr, err := net.SplitHostPort(srv.Addr()); err == nil {
		port, _ := strconv.Atoi(portStr)
		remove, err := writePidFile(cfg, port)
		if err != nil {
			log.Warn("cannot write the pid file; `reverb restart` will not find this server", "err", err)
		}
		defer remove()
	}
	scheme := "ws"
	if lcfg.TLS != nil {
		scheme = "wss"
	}
	log.Info("Starting server on "+srv.Addr()+" ("+host+")", "scheme", scheme,
		"loops", lcfg.Loops, "apps", len(cfg.Apps), "path", cfg.Server.Path, "version", version)

	select {
	case s := <-sig:
		drain := time.Duration(cfg.Server.DrainTimeout) * time.Second
		log.Info("Draining connections", "signal", s.String(), "timeout", drain)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			// A second signal skips the rest of the drain.
			if _, ok := <-sig; ok {
				cancel()
			}
		}()
		start := time.Now()
		if err := srv.Drain(ctx, drain); err != nil {
			log.Error("stop", "err", err)
		}
		if err := <-errc; err != nil {
			log.Error("server stopped", "err", err)
			return 1
		}
		log.Info("Server stopped", "drained_in", time.Since(start).Round(time.Millisecond))
		return 0
	case err := <-errc:
		log.Error("server stopped", "err", err)
		return 1
	}
}

func loopsOrDefault(n int) int {
	if n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}
