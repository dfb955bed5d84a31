#!/usr/bin/env bash
# The cost of webhooks at load, ours and Soketi's side by side (loopback only).
#
#   bench/webhooks.sh            # from anywhere
#
# For each server, twice: without webhooks, then with an endpoint (bench/hooksink, which answers 204 and
# counts) receiving client_event, channel_occupied and channel_vacated:
#   client-events  CE_CONNS connections in pairs on private channels, CE_RATE client events/s each: every
#                  client event is a client_event webhook. Server CPU per client event, with and without;
#                  the difference is the CPU per webhook event.
#   churn          CHURN_LANES lanes each connecting, subscribing to a channel of its own for the cycle and
#                  closing: two webhooks per cycle (occupied, vacated; no vacate delay here, so every
#                  vacated is sent).
#   api            HTTP API triggers/s with webhooks configured and not.
#
# Knobs: OUT=/tmp/bench-webhooks SOKETI_DIR=/tmp/soketi-hooks CE_CONNS=1000 CE_RATE=5 CE_SECONDS=10
#        CHURN_LANES=50 CHURN_SECONDS=10 API_CLIENTS=16 API_SECONDS=10 OUR_PORT=18080 SOKETI_PORT=6001
#        SINK_PORT=9800
# Every process is remembered by PID and stopped by PID on exit. Needs go, node/npm, jq and curl.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/bench-webhooks}"
SOKETI_DIR="${SOKETI_DIR:-/tmp/soketi-hooks}"
OUR_PORT="${OUR_PORT:-18080}"
SOKETI_PORT="${SOKETI_PORT:-6001}"
SINK_PORT="${SINK_PORT:-9800}"
CE_CONNS="${CE_CONNS:-1000}"
CE_RATE="${CE_RATE:-5}"
CE_SECONDS="${CE_SECONDS:-10}"
CHURN_LANES="${CHURN_LANES:-50}"
CHURN_SECONDS="${CHURN_SECONDS:-10}"
API_CLIENTS="${API_CLIENTS:-16}"
API_SECONDS="${API_SECONDS:-10}"
HOOK="http://127.0.0.1:$SINK_PORT/hook"

mkdir -p "$OUT"
BIN="$OUT/reverb"
echo "building $BIN and $OUT/hooksink" >&2
(cd "$ROOT" && go build -o "$BIN" ./cmd/reverb && go build -o "$OUT/hooksink" ./bench/hooksink)
if [ ! -f "$SOKETI_DIR/node_modules/@soketi/soketi/bin/server.js" ]; then
  echo "installing soketi into $SOKETI_DIR" >&2
  rm -rf "$SOKETI_DIR"
  cp -r "$ROOT/../shared/peers/soketi" "$SOKETI_DIR"
  chmod -R u+w "$SOKETI_DIR"
  (cd "$SOKETI_DIR" && npm ci --no-audit --no-fund >"$OUT/npm.log" 2>&1)
fi
cp "$SOKETI_DIR/config.json" "$OUT/soketi-config.orig.json" 2>/dev/null || true

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
    fi
  done
  [ -f "$OUT/soketi-config.orig.json" ] && cp "$OUT/soketi-config.orig.json" "$SOKETI_DIR/config.json" || true
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
stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.25; done
  kill -KILL "$1" 2>/dev/null || true
}

"$OUT/hooksink" -addr "127.0.0.1:$SINK_PORT" >"$OUT/hooksink.log" 2>&1 &
PIDS+=($!)
wait_port "$SINK_PORT"

# start_ours HOOKS(0|1): our server, its PID in SRV_PID.
start_ours() {
  local cfg="$OUT/ours.$1.toml"
  cat >"$cfg" <<TOML
[server]
host = "127.0.0.1"
port = $OUR_PORT
[[apps]]
app_id = "app-id"
key = "app-key"
secret = "app-secret"
max_message_size = 100000
accept_client_events_from = "members"
TOML
  if [ "$1" = 1 ]; then
    cat >>"$cfg" <<TOML
[[apps.webhooks]]
url = "$HOOK"
event_types = ["client_event", "channel_occupied", "channel_vacated"]
[webhooks]
vacate_delay_ms = -1
TOML
  fi
  cat >>"$cfg" <<TOML
[limits]
client_events_per_second = 1000
TOML
  "$BIN" start --config "$cfg" >"$OUT/ours.$1.log" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  wait_port "$OUR_PORT"
}
# start_soketi HOOKS(0|1)
start_soketi() {
  if [ "$1" = 1 ]; then
    jq --arg url "$HOOK" '."appManager.array.apps"[0].webhooks = [{url: $url, event_types: ["client_event", "channel_occupied", "channel_vacated"]}]' \
      "$OUT/soketi-config.orig.json" >"$SOKETI_DIR/config.json"
  else
    cp "$OUT/soketi-config.orig.json" "$SOKETI_DIR/config.json"
  fi
  "$SOKETI_DIR/start.sh" "$SOKETI_PORT" >"$OUT/soketi.$1.log" 2>&1 &
  wait_port "$SOKETI_PORT"
  SRV_PID="$(cat "$SOKETI_DIR/pid.$SOKETI_PORT")"
  PIDS+=("$SRV_PID")
}
sink_total() { curl -s "http://127.0.0.1:$SINK_PORT/count" | jq '[.events[]] | add // 0'; }
# run NAME PORT ARGS...: one bench run, its JSON line in $OUT/NAME.json; the webhook events the sink got
# during it (after waiting for them to stop growing, at most 20 s) in $OUT/NAME.hooks.
run() {
  local name="$1" port="$2"
  shift 2
  local before after prev
  before="$(sink_total)"
  local cmd=("$BIN" bench --port "$port" --server-pid "$SRV_PID" --json --key app-key --secret app-secret --app-id app-id "$@")
  echo "+ ${cmd[*]}" | sed "s|$BIN|reverb|" | tee -a "$OUT/commands.txt" >&2
  "${cmd[@]}" >"$OUT/$name.json" 2>>"$OUT/bench.stderr" || echo "  (exit $?; see $OUT/$name.json)" >&2
  after="$(sink_total)"
  for _ in $(seq 1 40); do
    sleep 0.5
    prev="$after"
    after="$(sink_total)"
    [ "$after" = "$prev" ] && break
  done
  echo $((after - before)) >"$OUT/$name.hooks"
  tail -1 "$OUT/$name.json" | jq -c --arg h "$(cat "$OUT/$name.hooks")" '{scenario, ops_per_s, cpu_per_op_us: .server_proc.cpu_per_op_us, webhooks: $h}' >&2 || true
}
: >"$OUT/commands.txt"
for s in ours soketi; do
  for h in 0 1; do
    if [ $s = ours ]; then start_ours $h; port=$OUR_PORT; else start_soketi $h; port=$SOKETI_PORT; fi
    run "ce.$s.$h" "$port" --scenario client-events --connections "$CE_CONNS" --rate "$CE_RATE" --duration "${CE_SECONDS}s" --timeout 2m
    run "churn.$s.$h" "$port" --scenario churn --connections "$CHURN_LANES" --channels 10000000 --duration "${CHURN_SECONDS}s" --timeout 2m
    run "api.$s.$h" "$port" --scenario api --connections "$API_CLIENTS" --duration "${API_SECONDS}s" --timeout 2m
    stop_pid "$SRV_PID"
    sleep 1
  done
done

j() { tail -1 "$OUT/$1.json" 2>/dev/null | jq -r "$2 // empty" 2>/dev/null || true; }
num() { awk -v a="$1" -v b="$2" "BEGIN { if (a != \"\" && b != \"\") printf \"%.2f\", $3; else print \"-\" }"; }
row() { # label per-server-value-function
  local o s
  o="$($2 ours)"; s="$($2 soketi)"
  printf '| %s | %s | %s | %s |\n' "$1" "$o" "$s" "$(num "$o" "$s" 'b+0 != 0 ? a/b : 0')"
}
ce_off() { j "ce.$1.0" '.server_proc.cpu_per_op_us'; }
ce_on() { j "ce.$1.1" '.server_proc.cpu_per_op_us'; }
ce_hooks() { cat "$OUT/ce.$1.1.hooks"; }
ce_ops() { j "ce.$1.1" '.ops'; }
# CPU per webhook event: the extra CPU of the run with webhooks over the webhook events received.
per_hook() {
  local off on ops hooks
  off="$(ce_off "$1")"; on="$(ce_on "$1")"; ops="$(j "ce.$1.1" '.ops // .events // empty')"; hooks="$(ce_hooks "$1")"
  awk -v off="$off" -v on="$on" -v ops="$ops" -v h="$hooks" 'BEGIN { if (off != "" && on != "" && ops != "" && h+0 > 0) printf "%.1f", (on-off)*ops/h; else print "-" }'
}
ce_rate_off() { j "ce.$1.0" '.ops_per_s'; }
ce_rate_on() { j "ce.$1.1" '.ops_per_s'; }
churn_hooks() { cat "$OUT/churn.$1.1.hooks"; }
churn_on() { j "churn.$1.1" '.ops_per_s'; }
churn_off() { j "churn.$1.0" '.ops_per_s'; }
api_on() { j "api.$1.1" '.ops_per_s'; }
api_off() { j "api.$1.0" '.ops_per_s'; }
{
  echo "| metric | ours | soketi | ours/soketi |"
  echo "|---|---|---|---|"
  row "client events/s delivered, webhooks off" ce_rate_off
  row "client events/s delivered, webhooks on" ce_rate_on
  row "CPU per client event, webhooks off (µs)" ce_off
  row "CPU per client event, webhooks on (µs)" ce_on
  row "client_event webhooks received" ce_hooks
  row "CPU per webhook event (µs)" per_hook
  row "churn cycles/s, webhooks off" churn_off
  row "churn cycles/s, webhooks on" churn_on
  row "occupied+vacated webhooks received in churn" churn_hooks
  row "HTTP API triggers/s, webhooks off" api_off
  row "HTTP API triggers/s, webhooks on" api_on
} | tee "$OUT/table.md"
