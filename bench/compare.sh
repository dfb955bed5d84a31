#!/usr/bin/env bash
# Side-by-side benchmark of our server and Soketi on this machine (loopback only).
#
#   bench/compare.sh            # from the repository root (or anywhere)
#
# Environment knobs:
#   OUT=/tmp/bench-compare      where the JSON lines, HTML reports and logs go
#   SOKETI_DIR=/tmp/soketi      a copy of ../shared/peers/soketi (created and `npm ci`-ed if missing)
#   CONNS=15000 CHANNELS=100    idle connect scenario
#   FAN_CONNS=15000 FAN_RATE=4 FAN_SECONDS=20 PAYLOAD=100
#   BURST_CONNS=5000 BURST_RATE=0.5 BURST=10 BURST_SECONDS=20
#   API_CLIENTS=16 API_SECONDS=10
#   CE_CONNS=1000 CE_RATE=5 CE_SECONDS=10   client events (pairs on private channels)
#   CHURN_LANES=50 CHURN_SECONDS=10
#   OUR_PORT=18080 SOKETI_PORT=6001
#
# It builds bin/reverb into $OUT, starts our server and Soketi (each remembered by PID and stopped by PID
# on exit), runs every scenario against one server then the other, and prints a table (ours, Soketi,
# ratio ours/Soketi). Every run is bounded by --timeout. Needs go, node/npm and jq.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/bench-compare}"
SOKETI_DIR="${SOKETI_DIR:-/tmp/soketi}"
OUR_PORT="${OUR_PORT:-18080}"
SOKETI_PORT="${SOKETI_PORT:-6001}"
CONNS="${CONNS:-15000}"
CHANNELS="${CHANNELS:-100}"
FAN_CONNS="${FAN_CONNS:-15000}"
FAN_RATE="${FAN_RATE:-4}"
FAN_SECONDS="${FAN_SECONDS:-20}"
PAYLOAD="${PAYLOAD:-100}"
BURST_CONNS="${BURST_CONNS:-5000}"
BURST_RATE="${BURST_RATE:-0.5}"
BURST="${BURST:-10}"
BURST_SECONDS="${BURST_SECONDS:-20}"
API_CLIENTS="${API_CLIENTS:-16}"
API_SECONDS="${API_SECONDS:-10}"
CE_CONNS="${CE_CONNS:-1000}"
CE_RATE="${CE_RATE:-5}"
CE_SECONDS="${CE_SECONDS:-10}"
CHURN_LANES="${CHURN_LANES:-50}"
CHURN_SECONDS="${CHURN_SECONDS:-10}"

mkdir -p "$OUT"
BIN="$OUT/reverb"
echo "building $BIN" >&2
(cd "$ROOT" && go build -o "$BIN" ./cmd/reverb)

if [ ! -f "$SOKETI_DIR/node_modules/@soketi/soketi/bin/server.js" ]; then
  echo "installing soketi into $SOKETI_DIR" >&2
  rm -rf "$SOKETI_DIR"
  cp -r "$ROOT/../shared/peers/soketi" "$SOKETI_DIR"
  chmod -R u+w "$SOKETI_DIR"
  (cd "$SOKETI_DIR" && npm ci --no-audit --no-fund >"$OUT/npm.log" 2>&1)
fi

OUR_PID=""
SOKETI_STARTED=""
cleanup() {
  if [ -n "$OUR_PID" ] && kill -0 "$OUR_PID" 2>/dev/null; then
    kill -TERM "$OUR_PID" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$OUR_PID" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$OUR_PID" 2>/dev/null && kill -KILL "$OUR_PID" 2>/dev/null || true
  fi
  if [ -n "$SOKETI_STARTED" ]; then
    "$SOKETI_DIR/stop.sh" "$SOKETI_PORT" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT INT TERM

wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open" >&2
  return 1
}

start_ours() {
  REVERB_APP_ID=app-id REVERB_APP_KEY=app-key REVERB_APP_SECRET=app-secret REVERB_APP_MAX_MESSAGE_SIZE=100000 \
    "$BIN" start --host 127.0.0.1 --port "$OUR_PORT" >"$OUT/ours.log" 2>&1 &
  OUR_PID=$!
  wait_port "$OUR_PORT"
}

start_soketi() {
  "$SOKETI_DIR/start.sh" "$SOKETI_PORT" >"$OUT/soketi.log" 2>&1 &
  SOKETI_STARTED=1
  wait_port "$SOKETI_PORT"
  SOKETI_PID="$(cat "$SOKETI_DIR/pid.$SOKETI_PORT")"
}

# run NAME SERVER PORT PID ARGS...: one bench run; its JSON line goes to $OUT/NAME.SERVER.json.
run() {
  local name="$1" server="$2" port="$3" pid="$4"
  shift 4
  local cmd=("$BIN" bench --port "$port" --server-pid "$pid" --json --report "$OUT/$name.$server.html" "$@")
  echo "+ ${cmd[*]}" | sed "s|$BIN|reverb|" | tee -a "$OUT/commands.txt" >&2
  "${cmd[@]}" >"$OUT/$name.$server.json" 2>>"$OUT/bench.stderr" || echo "  (exit $?; see $OUT/$name.$server.json)" >&2
  tail -1 "$OUT/$name.$server.json" | jq -c '{scenario, connected, failed, ops_per_s, latency, loss, server_proc}' >&2 || true
}

: >"$OUT/commands.txt"
start_ours
start_soketi
echo "ours PID $OUR_PID on $OUR_PORT, soketi PID $SOKETI_PID on $SOKETI_PORT" >&2

# Fresh servers first: idle connections (RSS and CPU per connect+subscribe).
for s in ours soketi; do
  if [ $s = ours ]; then p=$OUR_PORT; pid=$OUR_PID; else p=$SOKETI_PORT; pid=$SOKETI_PID; fi
  run connect $s $p $pid --scenario connect --connections "$CONNS" --channels "$CHANNELS" --duration 5s --timeout 3m
  sleep 3
done
for s in ours soketi; do
  if [ $s = ours ]; then p=$OUR_PORT; pid=$OUR_PID; else p=$SOKETI_PORT; pid=$SOKETI_PID; fi
  run fanout $s $p $pid --scenario fanout --connections "$FAN_CONNS" --rate "$FAN_RATE" --payload "$PAYLOAD" \
    --duration "${FAN_SECONDS}s" --timeout 4m
  sleep 3
done
for s in ours soketi; do
  if [ $s = ours ]; then p=$OUR_PORT; pid=$OUR_PID; else p=$SOKETI_PORT; pid=$SOKETI_PID; fi
  run burst $s $p $pid --scenario burst --connections "$BURST_CONNS" --rate "$BURST_RATE" --burst "$BURST" \
    --payload "$PAYLOAD" --duration "${BURST_SECONDS}s" --timeout 4m
  sleep 3
done
for s in ours soketi; do
  if [ $s = ours ]; then p=$OUR_PORT; pid=$OUR_PID; else p=$SOKETI_PORT; pid=$SOKETI_PID; fi
  run api $s $p $pid --scenario api --connections "$API_CLIENTS" --payload "$PAYLOAD" --duration "${API_SECONDS}s" --timeout 2m
  sleep 2
done
for s in ours soketi; do
  if [ $s = ours ]; then p=$OUR_PORT; pid=$OUR_PID; else p=$SOKETI_PORT; pid=$SOKETI_PID; fi
  run client-events $s $p $pid --scenario client-events --connections "$CE_CONNS" --rate "$CE_RATE" \
    --payload "$PAYLOAD" --duration "${CE_SECONDS}s" --timeout 2m
  sleep 2
done
for s in ours soketi; do
  if [ $s = ours ]; then p=$OUR_PORT; pid=$OUR_PID; else p=$SOKETI_PORT; pid=$SOKETI_PID; fi
  run churn $s $p $pid --scenario churn --connections "$CHURN_LANES" --duration "${CHURN_SECONDS}s" --timeout 2m
  sleep 2
done

# Side-by-side table.
j() { tail -1 "$OUT/$1.$2.json" 2>/dev/null | jq -r "$3 // empty" 2>/dev/null || true; }
row() { # label scenario jq-expression
  local a b r
  a="$(j "$2" ours "$3")"
  b="$(j "$2" soketi "$3")"
  r="$(awk -v a="$a" -v b="$b" 'BEGIN { if (a != "" && b != "" && b+0 != 0) printf "%.2f", a/b; else print "-" }')"
  printf '| %s | %s | %s | %s |\n' "$1" "${a:--}" "${b:--}" "$r"
}
{
  echo "| metric | ours | soketi | ours/soketi |"
  echo "|---|---|---|---|"
  row "RSS per idle subscribed connection (bytes)" connect '.server_proc.rss_per_conn_bytes'
  row "CPU per connect+subscribe (µs)" connect '.server_proc.cpu_per_op_us'
  row "connects/s" connect '.connects_per_s'
  row "connect+subscribe p99 (µs)" connect '.connect_latency.p99_us'
  row "CPU per fan-out delivery (µs)" fanout '.server_proc.cpu_per_op_us'
  row "fan-out latency p50 (µs)" fanout '.latency.p50_us'
  row "fan-out latency p99 (µs)" fanout '.latency.p99_us'
  row "fan-out loss" fanout '.loss'
  row "CPU per delivery in bursts (µs)" burst '.server_proc.cpu_per_op_us'
  row "burst latency p99 (µs)" burst '.latency.p99_us'
  row "burst loss" burst '.loss'
  row "HTTP triggers/s" api '.ops_per_s'
  row "CPU per HTTP trigger (µs)" api '.server_proc.cpu_per_op_us'
  row "HTTP trigger p99 (µs)" api '.latency.p99_us'
  row "client-event relay p99 (µs)" client-events '.latency.p99_us'
  row "CPU per client-event relay (µs)" client-events '.server_proc.cpu_per_op_us'
  row "client-event loss" client-events '.loss'
  row "churn cycles/s" churn '.ops_per_s'
  row "CPU per churn cycle (µs)" churn '.server_proc.cpu_per_op_us'
} | tee "$OUT/table.md"
echo "JSON lines, HTML reports and commands in $OUT" >&2
