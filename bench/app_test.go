package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/reverbgo/reverb/config"
	"github.com/reverbgo/reverb/internal/testkit"
	"github.com/reverbgo/reverb/loop"
	"github.com/reverbgo/reverb/pusher"
)

// noServerConfig hides the server configuration ParseArgs would read: every
// REVERB_* and REDIS_* variable is unset (config.Load takes "" for unset) and
// the test runs in an empty directory (no ./reverb.toml).
func noServerConfig(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "REVERB_") || strings.HasPrefix(k, "REDIS_") {
			t.Setenv(k, "")
		}
	}
	t.Chdir(t.TempDir())
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func candidateKeys(c Config) string {
	var keys []string
	for _, a := range c.candidates {
		keys = append(keys, a.key)
	}
	return strings.Join(keys, ",")
}

// TestParseArgsServerConfig checks that the server and the app default to
// what `reverb start` would serve with the same file and environment, and
// that flags given explicitly win.
func TestParseArgsServerConfig(t *testing.T) {
	const twoApps = `[server]
host = "0.0.0.0"
port = 7200
path = "/ws/"

[[apps]]
app_id = "file-1"
key = "file-key-1"
secret = "file-secret-1"

[[apps]]
app_id = "file-2"
key = "file-key-2"
secret = "file-secret-2"
`
	type want struct{ addr, path, id, key, secret, candidates string }
	for _, tc := range []struct {
		name string
		env  map[string]string
		file string // written to ./reverb.toml
		args []string
		want want
	}{
		{
			name: "nothing configured: the built-in app on 8080",
			want: want{"127.0.0.1:8080", "", "local", "local-key", "local-secret", "local-key,app-key"},
		},
		{
			name: "environment",
			env: map[string]string{"REVERB_APP_ID": "env-id", "REVERB_APP_KEY": "env-key", "REVERB_APP_SECRET": "env-secret",
				"REVERB_SERVER_HOST": "0.0.0.0", "REVERB_SERVER_PORT": "7100", "REVERB_SERVER_PATH": "/ws"},
			want: want{"127.0.0.1:7100", "/ws", "env-id", "env-key", "env-secret", "env-key,local-key,app-key"},
		},
		{
			name: "quoted environment values, as Laravel's env() reads them",
			env:  map[string]string{"REVERB_APP_ID": `"q-id"`, "REVERB_APP_KEY": "'q-key'", "REVERB_APP_SECRET": "q-secret"},
			want: want{"127.0.0.1:8080", "", "q-id", "q-key", "q-secret", "q-key,local-key,app-key"},
		},
		{
			name: "./reverb.toml: its first app",
			file: twoApps,
			want: want{"127.0.0.1:7200", "/ws", "file-1", "file-key-1", "file-secret-1", "file-key-1,local-key,app-key"},
		},
		{
			name: "the environment wins over the file, as for the server",
			file: twoApps,
			env:  map[string]string{"REVERB_SERVER_PORT": "7300", "REVERB_APP_SECRET": "env-secret"},
			want: want{"127.0.0.1:7300", "/ws", "file-1", "file-key-1", "env-secret", "file-key-1,local-key,app-key"},
		},
		{
			name: "--key picks the app it belongs to",
			file: twoApps,
			args: []string{"--key", "file-key-2"},
			want: want{"127.0.0.1:7200", "/ws", "file-2", "file-key-2", "file-secret-2", ""},
		},
		{
			name: "--app-id picks the app it belongs to",
			file: twoApps,
			args: []string{"--app-id", "file-2"},
			want: want{"127.0.0.1:7200", "/ws", "file-2", "file-key-2", "file-secret-2", ""},
		},
		{
			name: "explicit flags win",
			file: twoApps,
			env:  map[string]string{"REVERB_SERVER_PORT": "7300", "REVERB_APP_KEY": "env-key"},
			args: []string{"--host", "127.0.0.2", "--port", "7400", "--path", "", "--app-id", "a", "--key", "k", "--secret", "s"},
			want: want{"127.0.0.2:7400", "", "a", "k", "s", ""},
		},
		{
			name: "all app flags and --port: the configuration is not read",
			file: "not = [valid toml",
			env:  map[string]string{"REVERB_SERVER_PORT": "not a number"},
			args: []string{"--port", "7500", "--app-id", "a", "--key", "k", "--secret", "s"},
			want: want{"127.0.0.1:7500", "", "a", "k", "s", ""},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noServerConfig(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if tc.file != "" {
				writeFile(t, "reverb.toml", tc.file)
			}
			c, err := ParseArgs(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			got := want{c.Addr(), c.Path, c.AppID, c.Key, c.Secret, candidateKeys(c)}
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}

	t.Run("[server.tls] turns --tls on unless it is given", func(t *testing.T) {
		noServerConfig(t)
		writeFile(t, "reverb.toml", "[server]\nport = 7443\n[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n")
		c, err := ParseArgs(nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if !c.TLS || !c.apiTLS() || c.Port != 7443 {
			t.Fatalf("TLS %v, API TLS %v, port %d", c.TLS, c.apiTLS(), c.Port)
		}
		c, err = ParseArgs([]string{"--tls=false"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.TLS || c.apiTLS() {
			t.Fatalf("--tls=false: TLS %v, API TLS %v", c.TLS, c.apiTLS())
		}
		c, err = ParseArgs([]string{"--api-tls=false"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if !c.TLS || c.apiTLS() {
			t.Fatalf("--api-tls=false: TLS %v, API TLS %v", c.TLS, c.apiTLS())
		}
	})

	t.Run("--config, IPv6 wildcard", func(t *testing.T) {
		noServerConfig(t)
		path := filepath.Join(t.TempDir(), "server.toml")
		writeFile(t, path, "[server]\nhost = \"::\"\nport = 7600\n")
		c, err := ParseArgs([]string{"--config", path}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.Addr() != "[::1]:7600" || c.Key != "local-key" {
			t.Fatalf("got %s %s", c.Addr(), c.Key)
		}
	})

	for _, tc := range []struct {
		name, file, wantErr string
		env                 map[string]string
		args                []string
	}{
		{name: "missing --config", args: []string{"--config", "/nonexistent/reverb.toml"}, wantErr: "/nonexistent/reverb.toml"},
		{name: "invalid file", file: "[server]\nport = \"x\"\n", wantErr: "reverb.toml"},
		{name: "invalid environment", env: map[string]string{"REVERB_SERVER_PORT": "x"}, wantErr: "REVERB_SERVER_PORT"},
		{name: "kernel-chosen port", file: "[server]\nport = 0\n", wantErr: "--port"},
		{name: "--tls-ca without TLS", args: []string{"--port", "1", "--tls-ca", "/nonexistent.pem"}, wantErr: "--tls"},
		{name: "unreadable --tls-ca", args: []string{"--port", "1", "--tls", "--tls-ca", "/nonexistent.pem"}, wantErr: "/nonexistent.pem"},
	} {
		t.Run("error: "+tc.name, func(t *testing.T) {
			noServerConfig(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if tc.file != "" {
				writeFile(t, "reverb.toml", tc.file)
			}
			_, err := ParseArgs(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// startUnconfiguredServer runs in-process what `reverb start` runs without
// a configuration file or environment (config.Load("", nil): the built-in
// app), on 127.0.0.1 and a free port, and returns the port.
func startUnconfiguredServer(t *testing.T) int {
	t.Helper()
	sc, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !sc.DefaultApp {
		t.Fatal("config.Load without file or environment did not add the built-in app")
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := sc.Options()
	opts.Logger = quiet
	px, err := pusher.NewServer(opts, 2)
	if err != nil {
		t.Fatal(err)
	}
	px.SetBroker(pusher.NopBroker{})
	srv := loop.New(px, loop.Config{Host: "127.0.0.1", Loops: 2, MaxFragments: sc.Limits.MaxFragments, Logger: quiet})
	return testkit.Port(t, testkit.Serve(t, srv))
}

// TestBenchWithoutAppFlagsAgainstUnconfiguredServer is `reverb start` with
// no configuration, then `reverb bench` with no app flags: bench finds the
// built-in app, its connections succeed and its signed API triggers are
// accepted. The port comes from REVERB_SERVER_PORT, as the server's would.
func TestBenchWithoutAppFlagsAgainstUnconfiguredServer(t *testing.T) {
	noServerConfig(t)
	port := startUnconfiguredServer(t)
	t.Setenv("REVERB_SERVER_PORT", strconv.Itoa(port))
	for _, scenario := range []string{"connect", "fanout"} {
		t.Run(scenario, func(t *testing.T) {
			cfg, err := ParseArgs([]string{"--scenario", scenario, "--connections", "40", "--rate", "10", "--duration", "300ms",
				"--drain", "3s", "--timeout", "20s", "--progress", "off"}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			note, err := cfg.PickApp(context.Background())
			if err != nil || !strings.Contains(note, "app local (key local-key): the built-in app") {
				t.Fatalf("PickApp: %q, %v", note, err)
			}
			res, err := Run(context.Background(), cfg, io.Discard, io.Discard)
			if err != nil {
				t.Fatalf("Run: %v (%+v)", err, res)
			}
			if res.Connected != 40 || res.Failed != 0 || len(res.Errors) != 0 || res.TriggerErrors != 0 || res.Loss != 0 {
				t.Fatalf("%s: connected %d failed %d trigger errors %d loss %d errors %v",
					scenario, res.Connected, res.Failed, res.TriggerErrors, res.Loss, res.Errors)
			}
			if scenario == "fanout" && (res.Triggers != 3 || res.Received != 120) {
				t.Fatalf("fanout: triggers %d received %d", res.Triggers, res.Received)
			}
		})
	}
}

// TestPickApp checks the candidates in order: a server configured with
// app-id/app-key/app-secret (as the bench scripts and Soketi have it) is
// found without app flags; one that knows none of them is an error; an
// unreachable one leaves the first for the run to report.
func TestPickApp(t *testing.T) {
	noServerConfig(t)
	port := startServer(t) // serves app-id/app-key/app-secret only
	parse := func(args ...string) Config {
		t.Helper()
		c, err := ParseArgs(append([]string{"--port", strconv.Itoa(port), "--progress", "off"}, args...), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	c := parse("--scenario", "fanout", "--connections", "10", "--rate", "10", "--duration", "200ms", "--drain", "3s")
	note, err := c.PickApp(context.Background())
	if err != nil || c.AppID != "app-id" || c.Key != "app-key" || c.Secret != "app-secret" ||
		!strings.Contains(note, "does not know key local-key") {
		t.Fatalf("fallback: %q, %v, %+v", note, err, c)
	}
	res, err := Run(context.Background(), c, io.Discard, io.Discard)
	if err != nil || res.Connected != 10 || res.Loss != 0 || res.TriggerErrors != 0 {
		t.Fatalf("run with the app found: %v %+v", err, res)
	}

	// Explicit flags are used as given, without a check.
	c = parse("--key", "local-key")
	if note, err := c.PickApp(context.Background()); note != "" || err != nil || c.Key != "local-key" {
		t.Fatalf("explicit key: %q, %v, %s", note, err, c.Key)
	}

	// A configured app the server does not know either.
	t.Setenv("REVERB_APP_ID", "x")
	t.Setenv("REVERB_APP_KEY", "x-key")
	t.Setenv("REVERB_APP_SECRET", "x-secret")
	c = parse()
	if candidateKeys(c) != "x-key,local-key,app-key" {
		t.Fatalf("candidates %s", candidateKeys(c))
	}
	if _, err := c.PickApp(context.Background()); err != nil || c.Key != "app-key" {
		t.Fatalf("fallback past two unknown keys: %v %s", err, c.Key)
	}
	c = parse()
	c.candidates = c.candidates[:2]
	if _, err := c.PickApp(context.Background()); err == nil || !strings.Contains(err.Error(), "x-key, local-key") {
		t.Fatalf("no known app: %v", err)
	}

	// Nothing listening: the first candidate stays.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()
	c, err = ParseArgs([]string{"--port", strconv.Itoa(closed)}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if note, err := c.PickApp(context.Background()); err != nil || c.Key != "x-key" || !strings.Contains(note, "x-key") {
		t.Fatalf("unreachable server: %q, %v, %s", note, err, c.Key)
	}
}
