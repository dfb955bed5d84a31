package bench

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/reverbgo/reverb/config"
)

// appCreds is one app bench may use, and where it comes from.
type appCreds struct {
	id, key, secret string
	from            string
}

var (
	// builtinApp is the app `reverb start` serves when nothing configures
	// one.
	builtinApp = appCreds{config.DefaultAppID, config.DefaultAppKey, config.DefaultAppSecret,
		"the built-in app of `reverb start` with no app configured"}
	// legacyApp is Soketi's default app, which bench assumed before it read
	// the server's configuration (and which scripts configure).
	legacyApp = appCreds{"app-id", "app-key", "app-secret", "bench's former default (Soketi's default app)"}
)

// resolveServer fills in what the command line left out (set holds the
// flags given) the way `reverb start` would configure itself: the file at
// path (./reverb.toml when path is "" and it exists), then the environment
// (REVERB_APP_ID, REVERB_APP_KEY, REVERB_APP_SECRET, REVERB_SERVER_HOST,
// REVERB_SERVER_PORT, REVERB_SERVER_PATH, ...), else the built-in app on
// port 8080. The configuration is read only when --config is given or one
// of --app-id, --key, --secret and --port is missing.
//
// When none of --app-id, --key and --secret is given, the configured app
// becomes the first of the candidates PickApp tries.
func (c *Config) resolveServer(path string, set map[string]bool, env func(string) (string, bool)) error {
	appFlags := set["app-id"] && set["key"] && set["secret"]
	if path == "" && appFlags && set["port"] {
		return nil
	}
	file := path
	if file == "" {
		if _, err := os.Stat("reverb.toml"); err == nil {
			file = "reverb.toml"
		}
	}
	source := "the environment"
	if file != "" {
		source = file + " and the environment"
	}
	sc, err := config.Load(file, env)
	if err != nil {
		return fmt.Errorf("reading the server's configuration (%s) for the flags not given: %w\n"+
			"(pass --app-id, --key, --secret and --port to skip it)", source, err)
	}
	s := sc.Server
	if !set["port"] {
		if s.TLS.Enabled() && !set["tls"] {
			// The configured port speaks TLS only.
			c.TLS = true
		}
		if s.Port == 0 {
			return fmt.Errorf("the server's configuration (%s) lets the kernel choose the port (server.port = 0): pass --port", source)
		}
		c.Port = s.Port
	}
	if !set["host"] {
		c.Host = dialHost(s.Host)
	}
	if !set["path"] {
		c.Path = s.Path
	}

	// The app matching the key (or id) given, else the first one.
	pick := sc.Apps[0]
	for _, a := range sc.Apps {
		if (set["key"] && a.Key == c.Key) || (!set["key"] && set["app-id"] && a.AppID == c.AppID) {
			pick = a
			break
		}
	}
	if !set["app-id"] {
		c.AppID = pick.AppID
	}
	if !set["key"] {
		c.Key = pick.Key
	}
	if !set["secret"] {
		c.Secret = pick.Secret
	}
	if set["app-id"] || set["key"] || set["secret"] {
		return nil
	}
	first := appCreds{pick.AppID, pick.Key, pick.Secret, builtinApp.from}
	if !sc.DefaultApp {
		first.from = "the app of the server's configuration (" + source + ")"
		if file == "" {
			first.from = "the app of REVERB_APP_ID, REVERB_APP_KEY and REVERB_APP_SECRET"
		}
	}
	c.candidates = []appCreds{first}
	for _, a := range []appCreds{builtinApp, legacyApp} {
		if a.key != first.key {
			c.candidates = append(c.candidates, a)
		}
	}
	return nil
}

// dialHost returns the address to reach a server bound to host: the
// loopback address of the same family for an unspecified one.
func dialHost(host string) string {
	switch strings.Trim(host, "[]") {
	case "", "0.0.0.0":
		return "127.0.0.1"
	case "::":
		return "::1"
	}
	return strings.Trim(host, "[]")
}

// PickApp settles the app when the command line gave none of --app-id,
// --key and --secret. It connects once with each candidate, in this order:
// the app of the server's configuration (the built-in local app when none
// is configured), the built-in app, and app-id/app-key/app-secret (Soketi's
// default app, which bench assumed before), and keeps the first one the
// server does not refuse as unknown (pusher:error 4001).
//
// It returns a line naming the app in use, or "" when the command line gave
// it. When the server cannot be reached the first candidate stays and the
// run reports the failure; only when the server refuses every candidate is
// it an error.
func (c *Config) PickApp(ctx context.Context) (string, error) {
	if len(c.candidates) == 0 {
		return "", nil
	}
	var refused []string
	for i, a := range c.candidates {
		known, err := c.probeKey(ctx, a.key)
		if err != nil || known {
			c.useApp(a)
			note := fmt.Sprintf("app %s (key %s): %s", a.id, a.key, a.from)
			if i > 0 {
				note += "; the server does not know key " + strings.Join(refused, " nor ")
			}
			return note, nil
		}
		refused = append(refused, a.key)
	}
	c.useApp(c.candidates[0])
	return "", fmt.Errorf("the server at %s knows none of the apps tried (%s): pass --app-id, --key and --secret",
		c.Addr(), strings.Join(refused, ", "))
}

func (c *Config) useApp(a appCreds) {
	c.AppID, c.Key, c.Secret = a.id, a.key, a.secret
	c.candidates = nil
}

// reUnknownApp matches a refusal of the key: pusher:error 4001 or a close
// with code 4001.
var reUnknownApp = regexp.MustCompile(`"code"\s*:\s*4001\b|\(4001\b`)

// probeKey connects with key and reports whether the server knows the app
// (it may still refuse the connection for another reason, such as its
// connection limit). An error means the probe could not tell.
func (c *Config) probeKey(ctx context.Context, key string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d := newDialer(c)
	d.key = key
	nc, err := d.dial(ctx, 0)
	if err != nil {
		return false, err
	}
	defer nc.Close()
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	bc := &blockConn{c: nc, buf: make([]byte, 4096)}
	if err := bc.upgrade(d); err != nil {
		return false, err
	}
	_, err = bc.established()
	switch {
	case err == nil:
		_, _ = nc.Write(closeFrame)
		return true, nil
	case reUnknownApp.MatchString(err.Error()):
		return false, nil
	case strings.Contains(err.Error(), "pusher:error"):
		return true, nil // 4004, 4009, ...: the app exists
	}
	return false, err
}
