#!/usr/bin/env bash
# The scale demonstration: N server processes sharing one port with
# reuse_port and one Redis, 100,000 subscribed connections from `reverb bench`
# spread over worker processes and source addresses 127.0.0.2..N, events
# triggered through the HTTP API reaching every connection.
#
#   bench/scale100k.sh            # defaults below; knobs through the environment
#
# Everything it starts it stops by PID when it exits. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=${NODES:-6}
CONNS=${CONNS:-100000}
PORT=${PORT:-18200}
REDIS_PORT=${REDIS_PORT:-16400}
RATE=${RATE:-0.2}
DURATION=${DURATION:-30s}
SOURCE_IPS=${SOURCE_IPS:-127.0.0.2-127.0.0.9}
OUT=${OUT:-/tmp/reverb-scale100k}
mkdir -p "$OUT"

go build -o bin/reverb ./cmd/reverb
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

cat >"$OUT/reverb.toml" <<TOML
[server]
host = "127.0.0.1"
port = $PORT
reuse_port = true
pid_dir = "$OUT"
max_request_size = 100000
api_queue = 4096

[[apps]]
app_id = "app-id"
key = "app-key"
secret = "app-secret"
max_message_size = 100000

[scaling]
enabled = true
channel = "scale100k"

[scaling.redis]
port = $REDIS_PORT
TOML

server_pids=()
for i in $(seq "$NODES"); do
  ./bin/reverb start --config "$OUT/reverb.toml" >"$OUT/node$i.log" 2>&1 &
  pids+=($!); server_pids+=($!)
done
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/up" >/dev/null && break; sleep 0.1; done

rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
echo "== RSS before (KiB)"; before=(); for p in "${server_pids[@]}"; do before+=("$(rss "$p")"); echo "$p ${before[-1]}"; done

# Sample every server's RSS each second while the bench runs.
( while true; do
    line=""; for p in "${server_pids[@]}"; do line="$line $(rss "$p")"; done
    echo "$line" >>"$OUT/rss.samples"; sleep 1
  done ) &
sampler=$!; pids+=($sampler)
: >"$OUT/rss.samples"

set +e
./bin/reverb bench --port "$PORT" --scenario fanout --connections "$CONNS" --rate "$RATE" --payload 100 \
  --duration "$DURATION" --source-ips "$SOURCE_IPS" --connect-rate 4000 --timeout 10m \
  --report "$OUT/fanout.html" 2>"$OUT/bench.err" | tee "$OUT/bench.out"
status=${PIPESTATUS[0]}
set -e

kill "$sampler" 2>/dev/null || true
echo "== peak RSS while connected (KiB), per process"
peak=$(awk '{s=0; for (i=1;i<=NF;i++) s+=$i; if (s>m) {m=s; l=$0}} END {print l}' "$OUT/rss.samples")
read -r -a peaks <<<"$peak"
total=0
for i in "${!server_pids[@]}"; do
  total=$((total + peaks[i] - before[i]))
  echo "pid ${server_pids[$i]}: before ${before[$i]} KiB, peak ${peaks[$i]} KiB"
done
echo "total growth: $total KiB for $CONNS connections = $((total * 1024 / CONNS)) B per connection"
exit "$status"
