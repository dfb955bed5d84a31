#!/usr/bin/env bash
# Soak run: 15k subscribed connections receiving events, plus connect/subscribe/
# close churn, for SOAK (default 10m); samples the server's RSS and goroutine
# count every 30 s. RSS and goroutines must stay flat.
#
#   bench/soak.sh        # knobs: SOAK=10m CONNS=15000 RATE=2 CHURN=20 PORT=18500
#
# It stops everything it started, by PID, when it exits. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK=${SOAK:-10m}
CONNS=${CONNS:-15000}
RATE=${RATE:-2}
CHURN=${CHURN:-20}
PORT=${PORT:-18500}
MPORT=${MPORT:-18501}
OUT=${OUT:-/tmp/reverb-soak}
mkdir -p "$OUT"
go build -o bin/reverb ./cmd/reverb
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

cat >"$OUT/reverb.toml" <<TOML
[server]
host = "127.0.0.1"
port = $PORT
[[apps]]
app_id = "app-id"
key = "app-key"
secret = "app-secret"
[metrics]
enabled = true
port = $MPORT
TOML
./bin/reverb start --config "$OUT/reverb.toml" >"$OUT/server.log" 2>&1 &
spid=$!; pids+=($spid)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/up" >/dev/null && break; sleep 0.1; done

sample() {
  local rss g
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$spid/status")
  g=$(curl -fs "http://127.0.0.1:$MPORT/metrics" | awk '/^go_goroutines / {print $2}')
  echo "$(date +%H:%M:%S) rss_kib=$rss goroutines=$g conns=$(curl -fs "http://127.0.0.1:$MPORT/metrics" | awk '/^reverb_connections / {print $2}')"
}
( while true; do sample; sleep 30; done ) >"$OUT/samples.txt" &
pids+=($!)

./bin/reverb bench --port "$PORT" --scenario fanout --connections "$CONNS" --rate "$RATE" --payload 100 \
  --duration "$SOAK" --timeout 30m --progress off --json >"$OUT/fanout.json" 2>"$OUT/fanout.err" &
fpid=$!; pids+=($fpid)
./bin/reverb bench --port "$PORT" --scenario churn --connections "$CHURN" \
  --duration "$SOAK" --timeout 30m --progress off --json >"$OUT/churn.json" 2>"$OUT/churn.err" &
cpid=$!; pids+=($cpid)
status=0
wait "$fpid" || status=$?
wait "$cpid" || status=$?
sample >>"$OUT/samples.txt"
cat "$OUT/samples.txt"
echo "fanout: $(cat "$OUT/fanout.json")"
echo "churn:  $(cat "$OUT/churn.json")"
exit "$status"
