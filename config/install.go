package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// InstallResult is what Install generated.
type InstallResult struct {
	// Path is the file written.
	Path string
	// AppID is a random number in 100000..999999, as reverb:install makes.
	AppID string
	// Key and Secret are 20 random characters of [a-z0-9] each.
	Key    string
	Secret string
}

// EnvLines returns the lines `php artisan reverb:install` puts in a Laravel
// app's .env, for the user to copy there.
func (r *InstallResult) EnvLines() []string {
	return []string{
		"BROADCAST_CONNECTION=reverb",
		"REVERB_APP_ID=" + r.AppID,
		"REVERB_APP_KEY=" + r.Key,
		"REVERB_APP_SECRET=" + r.Secret,
		`REVERB_HOST="localhost"`,
		"REVERB_PORT=8080",
		"REVERB_SCHEME=http",
		`VITE_REVERB_APP_KEY="${REVERB_APP_KEY}"`,
		`VITE_REVERB_HOST="${REVERB_HOST}"`,
		`VITE_REVERB_PORT="${REVERB_PORT}"`,
		`VITE_REVERB_SCHEME="${REVERB_SCHEME}"`,
	}
}

// Install does what `php artisan reverb:install` does for the server side: it
// generates app credentials from rnd (crypto/rand.Reader in production) and
// writes a commented reverb.toml holding them and the server defaults to
// path, with mode 0600. It never overwrites: if path exists the error wraps
// fs.ErrExist and nothing is written.
func Install(path string, rnd io.Reader) (*InstallResult, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("config: %s: %w", path, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("config: %w", err)
	}
	n, err := randIntn(rnd, 900000)
	if err != nil {
		return nil, fmt.Errorf("config: generating app id: %w", err)
	}
	key, err := randString(rnd, 20)
	if err != nil {
		return nil, fmt.Errorf("config: generating key: %w", err)
	}
	secret, err := randString(rnd, 20)
	if err != nil {
		return nil, fmt.Errorf("config: generating secret: %w", err)
	}
	r := &InstallResult{Path: path, AppID: fmt.Sprint(100000 + n), Key: key, Secret: secret}

	// O_EXCL closes the race between the check above and the write.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	_, werr := fmt.Fprintf(f, installTemplate, r.AppID, r.Key, r.Secret)
	if err := f.Chmod(0o600); err != nil && werr == nil { // in case of an unusual umask
		werr = err
	}
	if err := f.Close(); err != nil && werr == nil {
		werr = err
	}
	if werr != nil {
		os.Remove(path)
		return nil, fmt.Errorf("config: writing %s: %w", path, werr)
	}
	return r, nil
}

const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// randString returns n characters of alphabet, uniformly distributed.
func randString(rnd io.Reader, n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n)
	for len(out) < n {
		if _, err := io.ReadFull(rnd, buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			// 252 = 7*36: rejecting larger bytes keeps the choice uniform.
			if b < 252 && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}

// randIntn returns a uniform integer in [0, n) for 0 < n <= 1<<24.
func randIntn(rnd io.Reader, n int) (int, error) {
	const span = 1 << 24
	limit := span - span%n
	var b [3]byte
	for {
		if _, err := io.ReadFull(rnd, b[:]); err != nil {
			return 0, err
		}
		v := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
		if v < limit {
			return v % n, nil
		}
	}
}

// installTemplate is filled with app_id, key and secret.
const installTemplate = `# reverb.toml: configuration of the Reverb-compatible WebSocket server.
# Written by "reverb install". reverb.toml.example lists every key.
#
# Environment variables override this file, under Laravel Reverb's names
# (REVERB_SERVER_HOST, REVERB_SERVER_PORT, REVERB_APP_KEY, REDIS_HOST, ...).
# This file holds an app secret: keep it private (mode 0600).

[server]
# Address to bind. config/reverb.php: servers.reverb.host, env REVERB_SERVER_HOST.
host = "0.0.0.0"
# Port to listen on. servers.reverb.port, env REVERB_SERVER_PORT.
port = 8080
# Prefix of every route ("/ws" serves /ws/app/{key}); "" for none.
# servers.reverb.path, env REVERB_SERVER_PATH.
path = ""
# Public host name, shown at start-up. servers.reverb.hostname, env REVERB_HOST.
hostname = ""
# Largest HTTP request (head and body) in bytes; larger ones get 413.
# servers.reverb.max_request_size, env REVERB_MAX_REQUEST_SIZE.
max_request_size = 10000

# TLS on the listener: set both paths, or neither.
# [server.tls]
# cert = "/etc/ssl/reverb/fullchain.pem"
# key = "/etc/ssl/reverb/privkey.pem"

# One [[apps]] table per application. The Laravel app's .env must carry the
# same REVERB_APP_ID, REVERB_APP_KEY and REVERB_APP_SECRET.
[[apps]]
# Used in HTTP API paths /apps/{app_id}/... (env REVERB_APP_ID).
app_id = %q
# Used in WebSocket URLs /app/{key} (env REVERB_APP_KEY).
key = %q
# Signs channel authorizations and API requests (env REVERB_APP_SECRET).
secret = %q
# Host patterns ('*' wildcard) allowed in the Origin header; "*" allows all.
allowed_origins = ["*"]
# Seconds of silence before the server pings a connection (env REVERB_APP_PING_INTERVAL).
ping_interval = 60
# Seconds sent to clients as activity_timeout (env REVERB_APP_ACTIVITY_TIMEOUT).
activity_timeout = 30
# Largest inbound WebSocket message in bytes; 0 = unlimited (env REVERB_APP_MAX_MESSAGE_SIZE).
max_message_size = 10000
# Connections of this app per node; 0 = unlimited (env REVERB_APP_MAX_CONNECTIONS).
max_connections = 0
# Who may send client events: "members", "all" or "none" (env REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM).
accept_client_events_from = "members"

[apps.rate_limiting]
# Limit inbound messages per connection (env REVERB_APP_RATE_LIMITING_ENABLED).
enabled = false
# Messages allowed per window (env REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS).
max_attempts = 60
# Window length in seconds (env REVERB_APP_RATE_LIMIT_DECAY_SECONDS).
decay_seconds = 60
# Close the connection when the limit trips (env REVERB_APP_RATE_LIMIT_TERMINATE).
terminate_on_limit = false
`
