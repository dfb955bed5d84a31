#!/usr/bin/env bash
# CPU that idle subscribed connections cost through their keepalive pings, server and bench client
# (loopback only).
#
#   bench/keepalive.sh            # from anywhere
#
# For each ping interval in INTERVALS (seconds; the app's ping_interval and activity_timeout), it starts our
# server, ramps CONNS connections over 100 channels with `reverb bench --scenario connect`, waits SETTLE
# seconds, then reads both processes' utime+stime (/proc/PID/stat) over WINDOW seconds of idleness and prints
# the CPU per connection per minute. Like pusher-js, the bench client sends pusher:ping after the activity
# timeout (--ping-interval) and answers the server's pings.
#
# Environment knobs: OUT=/tmp/bench-keepalive CONNS=15000 INTERVALS="30 120" SETTLE=20 WINDOW=120 PORT=18080
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/bench-keepalive}"
CONNS="${CONNS:-15000}"
INTERVALS="${INTERVALS:-30 120}"
SETTLE="${SETTLE:-20}"
WINDOW="${WINDOW:-120}"
PORT="${PORT:-18080}"

mkdir -p "$OUT"
BIN="$OUT/reverb"
(cd "$ROOT" && go build -o "$BIN" ./cmd/reverb)
TICK=$(getconf CLK_TCK)

SP="" BP=""
cleanup() {
  [ -n "$BP" ] && kill "$BP" 2>/dev/null || true
  [ -n "$SP" ] && kill "$SP" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }

echo "| ping interval (s) | server CPU per idle connection per minute (µs) | bench client (µs) |"
echo "|---|---|---|"
for t in $INTERVALS; do
  conf="$OUT/keepalive-$t.toml"
  cat >"$conf" <<TOML
[server]
host = "127.0.0.1"
port = $PORT

[[apps]]
app_id = "app-id"
key = "app-key"
secret = "app-secret"
ping_interval = $t
activity_timeout = $t
TOML
  "$BIN" start --config "$conf" >"$OUT/server-$t.log" 2>&1 &
  SP=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/up" >/dev/null && break; sleep 0.1; done
  kill -0 "$SP" 2>/dev/null || { echo "the server did not start: $OUT/server-$t.log" >&2; exit 1; }
  "$BIN" bench --port "$PORT" --app-id app-id --key app-key --secret app-secret --json --progress off \
    --scenario connect --connections "$CONNS" --rate 2000 --channels 100 --ping-interval "${t}s" \
    --duration "$((SETTLE + WINDOW + 10))s" --timeout 10m >"$OUT/bench-$t.json" 2>"$OUT/bench-$t.log" &
  BP=$!
  sleep "$SETTLE"
  s0=$(cpu "$SP"); c0=$(cpu "$BP")
  sleep "$WINDOW"
  s1=$(cpu "$SP"); c1=$(cpu "$BP")
  awk -v s="$((s1 - s0))" -v c="$((c1 - c0))" -v n="$CONNS" -v w="$WINDOW" -v hz="$TICK" -v t="$t" \
    'BEGIN { f = 1e6 / hz / n / (w / 60); printf "| %s | %.1f | %.1f |\n", t, s * f, c * f }'
  wait "$BP" || true
  BP=""
  kill "$SP"; wait "$SP" 2>/dev/null || true
  SP=""
done
